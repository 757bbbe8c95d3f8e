"""Whisper's batched decode (the GPU lane's path), proven on the CPU with the real models.

Windows of different texts at different offsets are decoded in one call; each result must hold
its own window's words, at its own times, in the order the windows were given.
"""

from __future__ import annotations

import numpy as np
import pytest
from faster_whisper import BatchedInferencePipeline

from gateway.config import Settings
from gateway.engines.base import Device
from gateway.engines.whisper import TranscribeUnit, WhisperEngine

from ..conftest import spoken_16k, wer

# batched Whisper decodes on real speech throughout
pytestmark = pytest.mark.slow

MODELS = Settings().models.dir
TEXTS = [
    "The little robot walked slowly across the kitchen floor.",
    "She opened the window and looked at the snowy mountains.",
    "Please send the quarterly report to the finance team before Friday.",
]
OFFSETS = [0.0, 41.5, 95.25]


@pytest.fixture(scope="module")
def windows() -> list[np.ndarray]:
    return spoken_16k(TEXTS)


@pytest.fixture(scope="module")
def whisper() -> tuple[WhisperEngine, object]:
    engine = WhisperEngine("whisper-base", MODELS / "whisper-base", multilingual=True)
    return engine, engine.load(Device("cpu", 0, 2))


@pytest.mark.parametrize("batch_size", [1, 2, 3])
def test_batched_windows_keep_their_own_words_times_and_order(
    windows: list[np.ndarray], whisper: tuple[WhisperEngine, object], batch_size: int
) -> None:
    engine, handle = whisper
    units = [TranscribeUnit(audio=a, offset_s=o, language="en", word_timestamps=True)
             for a, o in zip(windows, OFFSETS, strict=True)]  # fmt: skip
    results = engine.run_batch(handle, units, batch_size)
    assert len(results) == len(units)
    for text, unit, result in zip(TEXTS, units, results, strict=True):
        said = " ".join(s["text"] for s in result.segments)
        assert wer(text, said) <= 0.1, (text, said)
        end = unit.offset_s + len(unit.audio) / 16000
        for seg in result.segments:  # inside its window, to the millisecond
            assert unit.offset_s <= seg["start"] <= seg["end"] <= end, seg
            for word in seg["words"]:
                assert seg["start"] <= word["start"] <= word["end"] <= seg["end"], (seg, word)
        assert result.language == "en"


def test_batch_key_groups_only_units_that_can_share_a_decode(
    whisper: tuple[WhisperEngine, object],
) -> None:
    engine, _ = whisper
    silence = np.zeros(16000, np.float32)

    def key(**kw: object) -> object:
        return engine.batch_key(TranscribeUnit(audio=silence, offset_s=0.0, **kw))  # type: ignore[arg-type]

    assert key(language="en", job=1) == key(language="en", job=2)  # known language: any job
    assert key(language=None, job=1) != key(language=None, job=2)  # detection: own job only
    assert key(language=None, job=1) == key(language=None, job=1)
    assert key(language="en") != key(language="de")
    assert key(language="en") != key(language="en", task="translate")
    assert key(language="en") != key(language="en", word_timestamps=True)
    assert key(language="en") != key(language="en", prompt="names: Kubernetes")


def test_overrunning_segments_stay_with_the_window_they_were_decoded_from(
    windows: list[np.ndarray],
    whisper: tuple[WhisperEngine, object],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Whisper pads each window to 30 s, and its timestamps may run past a short window's end,
    into the time of the next window of the batch. Stand-in for such a decode: the real batched
    decode, each window's last timestamp token moved to 29 s (what the model may emit)."""
    real = BatchedInferencePipeline.generate_segment_batched

    def overrunning(self, features, tokenizer, options):  # type: ignore[no-untyped-def]
        encoder_output, outputs = real(self, features, tokenizer, options)
        for out in outputs:
            tokens = list(out["tokens"])
            last = max(i for i, t in enumerate(tokens) if t >= tokenizer.timestamp_begin)
            tokens[last] = tokenizer.timestamp_begin + 1450  # <|29.00|>
            out["tokens"] = tokens
        return encoder_output, outputs

    monkeypatch.setattr(BatchedInferencePipeline, "generate_segment_batched", overrunning)
    engine, handle = whisper
    # Each window cut to end 0.5625 ms past a whole millisecond (9 samples of 16 per ms), where
    # rounding to the ms goes up, whatever length this machine's Kokoro gave the speech.
    cut = [a[: len(a) - (len(a) - 9) % 16] for a in windows]
    units = [TranscribeUnit(audio=a, offset_s=o, language="en", job=j)
             for j, (a, o) in enumerate(zip(cut, OFFSETS, strict=True))]  # fmt: skip
    results = engine.run_batch(handle, units, 3)
    for text, unit, result in zip(TEXTS, units, results, strict=True):
        said = " ".join(s["text"] for s in result.segments)
        assert wer(text, said) <= 0.1, (text, said)  # its own words, and no one else's
        end = unit.offset_s + len(unit.audio) / 16000
        # <|29.00|> is read as the window's end: never past it, rounding to the ms included
        assert end - 0.001 <= result.segments[-1]["end"] <= end, (result.segments[-1], end)


SHORT = [
    "Good morning, everyone.",
    "Please call me back tomorrow.",
    "The meeting starts at noon.",
    "Thank you so much.",
]


def test_short_windows_of_several_jobs_keep_their_own_words(
    whisper: tuple[WhisperEngine, object],
) -> None:
    """Interactive voice notes of four callers, one short window each, batched together."""
    engine, handle = whisper
    units = [TranscribeUnit(audio=a, offset_s=0.0, language="en", job=j)
             for j, a in enumerate(spoken_16k(SHORT))]  # fmt: skip
    results = engine.run_batch(handle, units, 4)
    for text, unit, result in zip(SHORT, units, results, strict=True):
        said = " ".join(s["text"] for s in result.segments)
        assert wer(text, said) <= 0.34, (text, said)  # a word of these few may be misheard
        foreign = set(_words(" ".join(SHORT))) - set(_words(text))
        assert not foreign & set(_words(said)), (text, said)  # but none is someone else's
        assert all(s["end"] <= len(unit.audio) / 16000 for s in result.segments), result.segments


def _words(text: str) -> list[str]:
    return "".join(c for c in text.lower() if c.isalpha() or c == " ").split()


def _with_pauses(audio: np.ndarray) -> np.ndarray:
    """Speech after a pause of 2 s, and 3 s of a faint hum after it (what a VAD takes out)."""
    t = np.arange(3 * 16000) / 16000
    hum = (0.002 * np.sin(2 * np.pi * 50 * t)).astype(np.float32)
    return np.concatenate([np.zeros(2 * 16000, np.float32), audio, hum])


def test_a_clip_reads_the_same_alone_and_batched_with_other_requests(
    windows: list[np.ndarray], whisper: tuple[WhisperEngine, object]
) -> None:
    """A short interactive clip (a whole clip: its unit asks for the VAD) decoded alone and in
    a batch with two other requests' windows (cut by the VAD already) gives the same segments."""
    engine, handle = whisper
    clip = TranscribeUnit(audio=_with_pauses(windows[1]), offset_s=0.0, language="en", job=1)
    others = [TranscribeUnit(audio=windows[i], offset_s=30.0, language="en", vad_filter=False,
                             pieces=((30 * 16000, len(windows[i])),), job=2 + i) for i in (0, 2)]  # fmt: skip
    alone = engine.run_batch(handle, [clip], 4)[0]
    batched = engine.run_batch(handle, [others[0], clip, others[1]], 4)[1]
    assert [s["text"] for s in batched.segments] == [s["text"] for s in alone.segments]
    assert batched.segments == alone.segments
    assert wer(TEXTS[1], " ".join(s["text"] for s in alone.segments)) <= 0.1
    assert alone.segments[0]["start"] >= 1.5  # timed in the clip, past the pause


def test_a_window_whose_batched_decode_fails_is_decoded_again_hotter(
    windows: list[np.ndarray],
    whisper: tuple[WhisperEngine, object],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """As the sequential decode falls back: the window whose batched decode loops (a
    compression ratio far above 2.4) is decoded again at the higher temperatures; the others
    keep their batched decode."""
    real = BatchedInferencePipeline.generate_segment_batched

    def looping_first(self, features, tokenizer, options):  # type: ignore[no-untyped-def]
        encoder_output, outputs = real(self, features, tokenizer, options)
        text = [t for t in outputs[0]["tokens"] if t < tokenizer.eot]
        outputs[0]["tokens"] = [
            tokenizer.timestamp_begin,
            *text[:3] * 40,
            tokenizer.timestamp_begin + 100,
        ]
        return encoder_output, outputs

    monkeypatch.setattr(BatchedInferencePipeline, "generate_segment_batched", looping_first)
    engine, handle = whisper
    units = [TranscribeUnit(audio=a, offset_s=0.0, language="en", job=j)
             for j, a in enumerate(windows)]  # fmt: skip
    results = engine.run_batch(handle, units, 3)
    for text, result in zip(TEXTS, results, strict=True):
        said = " ".join(s["text"] for s in result.segments)
        assert wer(text, said) <= 0.1, (text, said)
    assert all(s["temperature"] > 0 for s in results[0].segments)
    assert all(s["temperature"] == 0 for r in results[1:] for s in r.segments)
