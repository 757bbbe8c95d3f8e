"""Speak with the real Kokoro engine and hear it back with real Whisper (no server, no mocks)."""

from __future__ import annotations

import threading
from functools import lru_cache
from typing import Any

import numpy as np

from gateway.audio.decode import decode_audio
from gateway.audio.encode import encode_audio
from gateway.config import Settings
from gateway.engines.base import Device
from gateway.engines.kokoro import KokoroEngine

_LOCK = threading.Lock()


@lru_cache(maxsize=1)
def kokoro() -> tuple[KokoroEngine, Any]:
    engine = KokoroEngine("kokoro", Settings().models.dir / "kokoro")
    return engine, engine.load(Device("cpu", threads=2))


@lru_cache(maxsize=2)
def whisper(name: str) -> Any:
    from faster_whisper import WhisperModel

    return WhisperModel(str(Settings().models.dir / name), device="cpu", compute_type="int8",
                        cpu_threads=2)  # fmt: skip


def speak(text: str, voice: str = "jf_alpha", lang: str | None = None,
          normalize: bool = True) -> np.ndarray:  # fmt: skip
    """Text -> 16 kHz mono speech, through `KokoroEngine.plan` and `run` as the API uses them."""
    engine, handle = kokoro()
    with _LOCK:
        units = engine.plan(text, voice, 1.0, lang, normalize=normalize)
        audio = np.concatenate([engine.run(handle, unit) for unit in units])
    return decode_audio(encode_audio(audio, "wav", engine.sample_rate))


def transcribe(audio: np.ndarray, model: str, language: str) -> str:
    segments, _ = whisper(model).transcribe(audio, language=language, beam_size=1,
                                            condition_on_previous_text=False)  # fmt: skip
    return " ".join(s.text.strip() for s in segments)
