"""Faster-Whisper speech-to-text on CTranslate2.

A transcription is cut into work units of audio windows (speech regions found by the Silero VAD,
merged up to `window_s`), so a long file yields the device between windows. Timestamps of each
window's segments and words are shifted by the window's start when results are stitched.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ctranslate2
import numpy as np
from faster_whisper import WhisperModel
from faster_whisper.tokenizer import _LANGUAGE_CODES
from faster_whisper.vad import VadOptions, get_speech_timestamps

from ..audio.decode import TARGET_RATE as SAMPLE_RATE  # Whisper hears 16 kHz, as decoded
from .base import Device

# ISO-639-1 codes Whisper knows (faster-whisper keeps the list private; only this module reads it).
LANGUAGES = frozenset(_LANGUAGE_CODES)


@dataclass(frozen=True)
class Window:
    start: int  # samples
    end: int


@dataclass(frozen=True)
class TranscribeUnit:
    audio: np.ndarray
    offset_s: float
    task: str = "transcribe"
    language: str | None = None
    prompt: str | None = None
    temperature: float = 0.0
    word_timestamps: bool = False
    vad_filter: bool = True
    beam_size: int = 5


@dataclass
class TranscribeResult:
    segments: list[dict[str, Any]] = field(default_factory=list)
    language: str | None = None
    language_probability: float = 0.0
    duration: float = 0.0


def plan_windows(audio: np.ndarray, window_s: float) -> list[Window]:
    """Windows of at most window_s seconds: the whole clip when short, else VAD-merged speech."""
    limit = int(window_s * SAMPLE_RATE)
    if len(audio) <= limit:
        return [Window(0, len(audio))]
    options = VadOptions(max_speech_duration_s=window_s - 1, min_silence_duration_ms=500)
    chunks = get_speech_timestamps(audio, options)
    windows: list[Window] = []
    for chunk in chunks:
        start, end = int(chunk["start"]), int(chunk["end"])
        if windows and end - windows[-1].start <= limit:
            windows[-1] = Window(windows[-1].start, end)
        else:
            windows.append(Window(start, min(end, start + limit)))
    return windows


def _temperatures(t: float) -> list[float]:
    # OpenAI: 0 means "start greedy, raise the temperature when decoding fails".
    steps = [round(t + 0.2 * i, 2) for i in range(6)]
    return [s for s in steps if s <= 1.0] or [t]


class WhisperEngine:
    family = "whisper"
    gpu_capped = False
    sample_rate = SAMPLE_RATE

    def __init__(
        self,
        model_id: str,
        folder: Path,
        multilingual: bool,
        compute_type: str = "int8",
        gpu_compute_type: str = "int8_float16",
    ) -> None:
        if not (folder / "model.bin").is_file():
            raise FileNotFoundError(f"no model.bin in {folder}")
        self.model_id = model_id
        self.folder = folder
        self.multilingual = multilingual
        self.compute_type = compute_type
        self.gpu_compute_type = gpu_compute_type

    def gpu_support(self) -> tuple[bool, str]:
        try:
            count = ctranslate2.get_cuda_device_count()
        except Exception as exc:  # broken CUDA libraries raise here
            return False, f"ctranslate2 {ctranslate2.__version__}: {exc}"
        if count == 0:
            return False, f"ctranslate2 {ctranslate2.__version__} sees no CUDA device"
        return True, f"ctranslate2 {ctranslate2.__version__} sees {count} CUDA device(s)"

    def load(self, device: Device) -> Any:
        if device.lane == "gpu":
            return WhisperModel(
                str(self.folder),
                device="cuda",
                device_index=device.index,
                compute_type=self.gpu_compute_type,
            )
        return WhisperModel(
            str(self.folder),
            device="cpu",
            compute_type=self.compute_type,
            cpu_threads=device.threads,
            num_workers=1,
        )

    def run(self, handle: WhisperModel, payload: TranscribeUnit) -> TranscribeResult:
        segments, info = handle.transcribe(
            payload.audio,
            language=payload.language if self.multilingual else "en",
            task=payload.task if self.multilingual else "transcribe",
            initial_prompt=payload.prompt or None,
            temperature=_temperatures(payload.temperature),
            word_timestamps=payload.word_timestamps,
            vad_filter=payload.vad_filter,
            beam_size=payload.beam_size,
        )
        offset = payload.offset_s
        out = []
        for seg in segments:  # a generator: decoding happens while iterating, in this thread
            item = {
                "start": round(seg.start + offset, 3),
                "end": round(seg.end + offset, 3),
                "text": seg.text,
                "tokens": list(seg.tokens),
                "temperature": seg.temperature,
                "avg_logprob": seg.avg_logprob,
                "compression_ratio": seg.compression_ratio,
                "no_speech_prob": seg.no_speech_prob,
            }
            if seg.words:
                item["words"] = [
                    {
                        "word": w.word,
                        "start": round(w.start + offset, 3),
                        "end": round(w.end + offset, 3),
                        "probability": w.probability,
                    }
                    for w in seg.words
                ]
            out.append(item)
        return TranscribeResult(
            segments=out,
            language=info.language,
            language_probability=info.language_probability,
            duration=len(payload.audio) / SAMPLE_RATE,
        )

    def unload(self, handle: Any) -> None:
        del handle

    def audio_seconds(self, payload: TranscribeUnit, result: TranscribeResult) -> float:
        return len(payload.audio) / SAMPLE_RATE
