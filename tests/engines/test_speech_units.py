"""How speech text becomes Kokoro work units (real phonemizer and voices): a whole response packs
sentences into as few units as the limit allows (each call has a fixed cost); a streamed one
sends its first sentence as a unit of its own."""

from __future__ import annotations

import pytest

from gateway.config import Settings
from gateway.engines.kokoro import KokoroEngine

TWO = "The meeting starts at nine sharp. Please bring the blue folder and two pens."


@pytest.fixture(scope="module")
def engine() -> KokoroEngine:
    return KokoroEngine("kokoro", Settings().models.dir / "kokoro", max_unit_phonemes=250)


def test_whole_response_packs_sentences_into_one_unit(engine: KokoroEngine) -> None:
    units = engine.plan(TWO, "jf_alpha", 1.0)
    assert len(units) == 1
    assert units[0].pause_s == 0.0


def test_streamed_response_sends_the_first_sentence_alone(engine: KokoroEngine) -> None:
    units = engine.plan(TWO, "jf_alpha", 1.0, first_alone=True)
    assert len(units) == 2
    assert units[0].phonemes.rstrip().endswith(".")
    assert units[0].pause_s > 0  # the sentence's pause, between the two units


@pytest.mark.parametrize("first_alone", [False, True])
def test_long_text_stays_within_the_unit_limit_and_keeps_every_phoneme(
    engine: KokoroEngine, first_alone: bool
) -> None:
    text = " ".join([TWO] * 12)
    units = engine.plan(text, "jf_alpha", 1.0, first_alone=first_alone)
    # the reference: espeak's phonemes for the whole text in one piece, with no cutting at all
    whole = engine.tokenizer().phonemize(text, "en-us")
    assert all(len(u.phonemes) <= 250 for u in units)
    assert len(units) >= 3
    assert "".join(u.phonemes for u in units).replace(" ", "") == whole.replace(" ", "")
    if first_alone:
        assert units[0].phonemes.count(".") == 1
