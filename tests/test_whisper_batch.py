"""Whisper's batched decode (the GPU lane's path), proven on the CPU with the real models.

Windows of different texts at different offsets are decoded in one call; each result must hold
its own window's words, at its own times, in the order the windows were given.
"""

from __future__ import annotations

import numpy as np
import pytest

from gateway.config import Settings
from gateway.engines.base import Device
from gateway.engines.whisper import TranscribeUnit, WhisperEngine

from .conftest import spoken_16k, wer

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
        for seg in result.segments:
            assert unit.offset_s - 0.01 <= seg["start"] <= seg["end"] <= end + 0.5, seg
            for word in seg["words"]:
                assert unit.offset_s - 0.01 <= word["start"] <= end + 0.5, word
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
