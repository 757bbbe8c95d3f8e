"""Faster-Whisper speech-to-text on CTranslate2.

A transcription is cut into work units of audio windows (speech regions found by the Silero VAD,
merged up to `window_s`), so a long file yields the device between windows. Timestamps of each
window's segments and words are shifted by the window's start when results are stitched.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ctranslate2
import numpy as np
from faster_whisper import BatchedInferencePipeline, WhisperModel
from faster_whisper.tokenizer import _LANGUAGE_CODES
from faster_whisper.transcribe import Segment
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
    job: int = 0  # the job it belongs to (only for batching: see WhisperEngine.batch_key)


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


def _segment(seg: Segment, shift: float) -> dict[str, Any]:
    """A faster-whisper segment as the OpenAI verbose_json item, moved by `shift` seconds."""
    item: dict[str, Any] = {
        "start": round(seg.start + shift, 3),
        "end": round(seg.end + shift, 3),
        "text": seg.text,
        "tokens": list(seg.tokens),
        "temperature": seg.temperature,
        "avg_logprob": seg.avg_logprob,
        "compression_ratio": seg.compression_ratio,
        "no_speech_prob": seg.no_speech_prob,
    }
    if seg.words:
        item["words"] = [
            {"word": w.word, "start": round(w.start + shift, 3), "end": round(w.end + shift, 3),
             "probability": w.probability}
            for w in seg.words
        ]  # fmt: skip
    return item


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

    def variants(self) -> dict[str, str | None]:
        return {"cpu": f"model.bin ({self.compute_type})",
                "gpu": f"model.bin ({self.gpu_compute_type})"}  # fmt: skip

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
        # a generator: decoding happens while iterating, in this thread
        out = [_segment(seg, payload.offset_s) for seg in segments]
        return TranscribeResult(
            segments=out,
            language=info.language,
            language_probability=info.language_probability,
            duration=len(payload.audio) / SAMPLE_RATE,
        )

    def batch_key(self, payload: TranscribeUnit) -> Hashable | None:
        """Units with equal keys may share one batched decode: same task and options, and a
        known language (detection is per batch; a unit that needs it batches only with the
        windows of its own job, which share one language)."""
        language = payload.language if self.multilingual else "en"
        return (payload.task if self.multilingual else "transcribe", language or payload.job,
                payload.prompt, payload.temperature, payload.word_timestamps, payload.beam_size)  # fmt: skip

    def run_batch(
        self, handle: WhisperModel, payloads: list[TranscribeUnit], batch_size: int
    ) -> list[TranscribeResult]:
        """Decode several windows (of one job or of several with equal `batch_key`) together,
        `batch_size` at a time, with CTranslate2's batched generate: the GPU's width is used
        instead of one window after another. The windows were cut by the VAD already, so they
        are decoded as given (no second VAD pass), one greedy/beam pass (no temperature
        fallback), as faster-whisper's batched pipeline does."""
        if len(payloads) == 1:  # alone: the sequential decode, with its temperature fallback
            return [self.run(handle, payloads[0])]
        first = payloads[0]
        audio = np.concatenate([p.audio for p in payloads])
        bounds = np.cumsum([0] + [len(p.audio) for p in payloads])
        clips = [{"start": bounds[i] / SAMPLE_RATE, "end": bounds[i + 1] / SAMPLE_RATE}
                 for i in range(len(payloads))]  # fmt: skip
        segments, info = BatchedInferencePipeline(handle).transcribe(
            audio,
            language=first.language if self.multilingual else "en",
            task=first.task if self.multilingual else "transcribe",
            initial_prompt=first.prompt or None,
            temperature=first.temperature,
            word_timestamps=first.word_timestamps,
            beam_size=first.beam_size,
            clip_timestamps=clips,
            without_timestamps=False,
            batch_size=batch_size,
        )
        results = [TranscribeResult(language=info.language,
                                    language_probability=info.language_probability,
                                    duration=len(p.audio) / SAMPLE_RATE) for p in payloads]  # fmt: skip
        starts = bounds / SAMPLE_RATE
        for seg in segments:
            # Each clip is decoded on its own, so a segment lies inside one clip; its start may
            # read a few ms before the clip's (20 ms timestamp steps), so look at its middle.
            middle = max((seg.start + seg.end) / 2, seg.start + 0.025)
            i = int(np.searchsorted(starts, middle, side="right")) - 1
            i = min(max(i, 0), len(payloads) - 1)
            shift = payloads[i].offset_s - bounds[i] / SAMPLE_RATE
            results[i].segments.append(_segment(seg, shift))
        return results

    def unload(self, handle: Any) -> None:
        del handle

    def audio_seconds(self, payload: TranscribeUnit, result: TranscribeResult) -> float:
        return len(payload.audio) / SAMPLE_RATE
