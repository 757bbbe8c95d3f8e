"""Faster-Whisper speech-to-text on CTranslate2.

A transcription is cut into work units of audio windows, so a long file yields the device between
windows. A short clip is one window, decoded with faster-whisper's own VAD filter (one VAD pass).
A long one is cut by one Silero VAD pass over the whole file: its speech regions, padded (a phrase
after a long silence may be detected a little late), are packed into as few windows as hold them
with Whisper's margin (`window_s` less MARGIN_S of speech), shared out evenly, each decoded as the
concatenation of its regions followed by silence, with no second VAD pass, as faster-whisper does
inside one call. Each window's timestamps are mapped back to the file's.
"""

from __future__ import annotations

import bisect
from collections.abc import Hashable
from dataclasses import dataclass, field, replace
from math import floor
from pathlib import Path
from typing import Any

import ctranslate2
import numpy as np
from faster_whisper import WhisperModel
from faster_whisper.tokenizer import _LANGUAGE_CODES
from faster_whisper.transcribe import Segment
from faster_whisper.vad import VadOptions

from ..audio.decode import TARGET_RATE as SAMPLE_RATE  # Whisper hears 16 kHz, as decoded
from ..text.languages import Detection
from .base import Device
from .memory import release_free_memory
from .vad import VadTuning, get_speech_timestamps  # faster-whisper's, bounded memory
from .whisper_batch import decode_clips
from .whisper_logprobs import token_logprobs

# ISO-639-1 codes Whisper knows (faster-whisper keeps the list private; only this module reads it).
LANGUAGES = frozenset(_LANGUAGE_CODES)


# Padding of each VAD speech region, on top of the VAD's own 400 ms: before the onset (Silero can
# report a phrase that follows a long silence up to about a second late) and after the end.
PAD_BEFORE_S = 0.6
PAD_AFTER_S = 0.2
# Speech further apart than this never shares a window: Whisper may decode two phrases of one
# window as one segment, timed by the first, and the later phrase's time would be lost.
MAX_GAP_S = 10.0
# Whisper hearing speech up to the end of its 30 s input leaves the last phrase unfinished and
# decodes it again in a second pass (a whole encoder pass for a few seconds of audio): a long
# clip's windows are filled to at most window_s minus this, so each is decoded in one pass.
MARGIN_S = 4.0
WHISPER_INPUT = 30 * SAMPLE_RATE  # what Whisper hears at once


@dataclass(frozen=True)
class Window:
    start: int  # samples
    end: int
    # The speech regions (start, end in samples of the file) decoded back to back; empty: the
    # whole [start, end) with the VAD filter of the unit.
    pieces: tuple[tuple[int, int], ...] = ()

    def audio(self, clip: np.ndarray) -> np.ndarray:
        if not self.pieces:
            return clip[self.start : self.end]
        return np.concatenate([clip[a:b] for a, b in self.pieces])


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
    # Where `audio` came from when it joins several regions of the file: (start in the file,
    # samples) per region, in order; empty: `audio` starts at `offset_s` and is contiguous.
    pieces: tuple[tuple[int, int], ...] = ()
    job: int = 0  # the job it belongs to (only for batching: see WhisperEngine.batch_key)
    detection: Detection = Detection()  # how a unit with no language gets one
    # A long file's first window: the speech of its first windows, which detection hears.
    probe: np.ndarray | None = None
    hotwords: str | None = None  # `keywords`: faster-whisper's hotwords
    logprobs: bool = False  # give each text token's log probability (whisper_logprobs.py)
    vad: VadTuning | None = None  # the request's VAD parameters (`chunking_strategy`)

    def vad_options(self, base: VadOptions | None = None) -> VadOptions:
        options = base or VadOptions()
        return self.vad.apply(options) if self.vad else options


@dataclass
class TranscribeResult:
    segments: list[dict[str, Any]] = field(default_factory=list)
    language: str | None = None
    language_probability: float = 0.0
    duration: float = 0.0
    logprobs: list[dict[str, Any]] | None = None


def plan_windows(audio: np.ndarray, window_s: float, vad: VadTuning | None = None) -> list[Window]:
    """Windows of at most window_s seconds: the whole clip when short (its unit runs the VAD),
    else one VAD pass over the clip whose padded speech regions are packed into windows of at
    most window_s - MARGIN_S seconds of speech (their units need no second VAD pass)."""
    limit = int(window_s * SAMPLE_RATE)
    if len(audio) <= limit:
        return [Window(0, len(audio))]
    before, after = int(PAD_BEFORE_S * SAMPLE_RATE), int(PAD_AFTER_S * SAMPLE_RATE)
    options = VadOptions(
        max_speech_duration_s=window_s - PAD_BEFORE_S - PAD_AFTER_S - 1.0,
        min_silence_duration_ms=500,
    )
    if vad is not None:
        options = vad.apply(options)
    regions: list[tuple[int, int]] = []
    for chunk in get_speech_timestamps(audio, options):
        start = max(int(chunk["start"]) - before, regions[-1][1] if regions else 0)
        end = min(int(chunk["end"]) + after, len(audio))
        while end - start > limit:  # never with the VAD's own maximum; kept as a guarantee
            regions.append((start, start + limit))
            start += limit
        if end > start:
            regions.append((start, end))
    if not regions:
        return []  # no speech anywhere: no unit to run, an empty transcript
    # As few windows as leave Whisper its margin. The first is filled (the language is detected
    # on it, and Whisper detects it more reliably on more speech, as the raw call hears 30 s);
    # the rest share their speech evenly: the smallest fill that packs them into no more
    # windows than the margin's fill does.
    fill = limit - int(MARGIN_S * SAMPLE_RATE)
    first, *rest = _pack(regions, fill)
    regions = [r for r in regions if r[0] >= first.end]
    low, high = 1, fill
    while rest and low < high:
        mid = (low + high) // 2
        low, high = (low, mid) if len(_pack(regions, mid)) <= len(rest) else (mid + 1, high)
    return [first, *_pack(regions, low)]


def _pack(regions: list[tuple[int, int]], fill: int) -> list[Window]:
    """Regions in order into windows of at most `fill` samples of speech (a longer region is a
    window alone), never across a gap of more than MAX_GAP_S."""
    windows: list[Window] = []
    pieces: list[tuple[int, int]] = []
    have, max_gap = 0, int(MAX_GAP_S * SAMPLE_RATE)
    for start, end in regions:
        full = have + end - start > fill
        if pieces and (full or start - pieces[-1][1] > max_gap):
            windows.append(Window(pieces[0][0], pieces[-1][1], tuple(pieces)))
            pieces, have = [], 0
        if pieces and pieces[-1][1] == start:  # touching regions: one piece
            pieces[-1] = (pieces[-1][0], end)
        else:
            pieces.append((start, end))
        have += end - start
    if pieces:
        windows.append(Window(pieces[0][0], pieces[-1][1], tuple(pieces)))
    return windows


class _Timeline:
    """Seconds in a unit's audio -> seconds in the file. A time past the audio's end (Whisper
    pads its input to 30 s and may time a last segment up to there) is read as the end. An end
    belongs to the piece its last instant is in, and a time never reads past its piece's end,
    rounded to the millisecond included: a segment stays inside the window it was decoded from."""

    def __init__(self, payload: TranscribeUnit) -> None:
        self.total = len(payload.audio) / SAMPLE_RATE
        pieces = payload.pieces or ((0, len(payload.audio)),)
        # unit-time start of each piece, how far its file time is ahead of its unit time, and
        # its end in the file
        self.starts: list[float] = []
        self.shifts: list[float] = []
        self.ends: list[float] = []
        at = 0
        for start, length in pieces:
            shift = payload.offset_s if not payload.pieces else (start - at) / SAMPLE_RATE
            self.starts.append(at / SAMPLE_RATE)
            self.shifts.append(shift)
            self.ends.append((at + length) / SAMPLE_RATE + shift)
            at += length

    def _read(self, t: float, piece: int) -> float:
        piece = max(piece, 0)
        at = min(max(t, 0.0), self.total) + self.shifts[piece]
        # rounding half up could carry a time past a piece end that is not a whole millisecond
        return min(round(at, 3), floor(self.ends[piece] * 1000) / 1000)

    def start(self, t: float) -> float:
        return self._read(t, bisect.bisect_right(self.starts, min(max(t, 0.0), self.total)) - 1)

    def end(self, t: float, start: float) -> float:
        """The file time of an end at `t`, never before the (file time) `start`."""
        last = bisect.bisect_left(self.starts, min(max(t, 0.0), self.total)) - 1
        return max(self._read(t, last), start)


def _segment(seg: Segment, when: _Timeline) -> dict[str, Any]:
    """A faster-whisper segment as the OpenAI verbose_json item, its times mapped by `when`."""
    start = when.start(seg.start)
    item: dict[str, Any] = {
        "start": start,
        "end": when.end(seg.end, start),
        "text": seg.text,
        "tokens": list(seg.tokens),
        "temperature": seg.temperature,
        "avg_logprob": seg.avg_logprob,
        "compression_ratio": seg.compression_ratio,
        "no_speech_prob": seg.no_speech_prob,
    }
    if seg.words:
        item["words"] = []
        for w in seg.words:
            word_start = when.start(w.start)
            item["words"].append(
                {
                    "word": w.word,
                    "start": word_start,
                    "end": when.end(w.end, word_start),
                    "probability": w.probability,
                }
            )
    return item


def _speech_only(unit: TranscribeUnit) -> TranscribeUnit:
    """The unit's speech as faster-whisper's VAD filter keeps it (its options, as
    `transcribe(vad_filter=True)` runs it), decoded back to back with no second pass."""
    at = round(unit.offset_s * SAMPLE_RATE)
    chunks = [
        (int(c["start"]), int(c["end"]))
        for c in get_speech_timestamps(unit.audio, unit.vad_options())
    ]
    audio = np.concatenate([unit.audio[a:b] for a, b in chunks]) if chunks else unit.audio[:0]
    return replace(
        unit, audio=audio, pieces=tuple((at + a, b - a) for a, b in chunks), vad_filter=False
    )


def detect(handle: WhisperModel, audio: np.ndarray, vad: bool, how: Detection) -> tuple[str, float]:
    """The language of `audio` and its probability: faster-whisper's detection over up to
    `how.segments` 30 s segments of its speech (it stops at the first sure one, else takes the
    majority), then chosen among the deployment's candidates, or its default where unsure."""
    if how.pinned:
        return how.pinned, 1.0
    if vad:
        chunks = get_speech_timestamps(audio, VadOptions())
        audio = (
            np.concatenate([audio[c["start"] : c["end"]] for c in chunks]) if chunks else audio[:0]
        )
    if not len(audio):  # nothing said: the language does not matter
        return how.default or "en", 0.0
    language, probability, ranked = handle.detect_language(
        audio=audio,
        language_detection_segments=how.segments,
        language_detection_threshold=how.threshold,
    )
    if not how.candidates and how.default is None:
        return language, probability
    # `ranked` is the last segment's; a majority vote over unsure segments chose `language`
    scores = dict(ranked)
    scores[language] = max(scores.get(language, 0.0), probability)
    return how.choose(list(scores.items()))


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
        return {
            "cpu": f"model.bin ({self.compute_type})",
            "gpu": f"model.bin ({self.gpu_compute_type})",
        }

    def load(self, device: Device) -> Any:
        try:
            return self._load(device)
        finally:
            release_free_memory()  # loading converts the weights through temporary buffers

    def _load(self, device: Device) -> Any:
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
        audio = payload.audio
        if payload.pieces and len(audio) < WHISPER_INPUT:
            # A window of a long clip: Whisper hears the rest of its 30 s input as silence, as it
            # was trained. faster-whisper pads the features instead, with values Whisper does not
            # hear as silence, and then more often leaves the window's last phrase for a second
            # pass: a whole encoder pass for a few seconds of audio.
            audio = np.pad(audio, (0, WHISPER_INPUT - len(audio)))
        language, probability = payload.language if self.multilingual else "en", 1.0
        if language is None:
            probe = payload.probe
            vad = payload.vad_filter and probe is None
            language, probability = detect(handle, payload.audio if probe is None else probe, vad,
                                           payload.detection)  # fmt: skip
        segments, info = handle.transcribe(
            audio,
            language=language,
            task=payload.task if self.multilingual else "transcribe",
            initial_prompt=payload.prompt or None,
            temperature=_temperatures(payload.temperature),
            word_timestamps=payload.word_timestamps,
            vad_filter=payload.vad_filter,
            vad_parameters=payload.vad_options() if payload.vad_filter else None,
            beam_size=payload.beam_size,
            hotwords=payload.hotwords,
        )
        # a generator: decoding happens while iterating, in this thread
        when = _Timeline(payload)
        decoded = list(segments)
        out = [_segment(seg, when) for seg in decoded]
        logprobs = None
        if payload.logprobs:
            # the audio the decode heard: the VAD filter's speech, where it ran
            heard = _speech_only(payload).audio if payload.vad_filter else audio
            task = payload.task if self.multilingual else "transcribe"
            logprobs = token_logprobs(handle, heard, [(s.seek, s.tokens) for s in decoded],
                                      info.language, task)  # fmt: skip
        release_free_memory()
        return TranscribeResult(
            segments=out,
            language=info.language,
            language_probability=probability,
            duration=len(payload.audio) / SAMPLE_RATE,
            logprobs=logprobs,
        )

    def batch_key(self, payload: TranscribeUnit) -> Hashable | None:
        """Units with equal keys may share one batched decode: same task and options, and a
        known language (detection is per batch; a unit that needs it batches only with the
        windows of its own job, which share one language)."""
        language = payload.language if self.multilingual else "en"
        return (
            payload.task if self.multilingual else "transcribe",
            language or payload.job,
            payload.prompt,
            payload.temperature,
            payload.word_timestamps,
            payload.beam_size,
            payload.hotwords,
            payload.logprobs,
            payload.vad,
        )

    def run_batch(
        self, handle: WhisperModel, payloads: list[TranscribeUnit], batch_size: int
    ) -> list[TranscribeResult]:
        """Decode several windows (of one job or of several with equal `batch_key`) together,
        `batch_size` at a time, with CTranslate2's batched generate: the GPU's width is used
        instead of one window after another.

        A window gets the same treatment whatever shares its batch, alone included, so its text
        does not depend on the load: its own VAD pass first where it asks for one (faster-
        whisper's filter, as the sequential decode runs it), one batched greedy/beam decode,
        no text where Whisper judges the window silent, and where the decode fails faster-
        whisper's checks (a repetition loop, a low log probability), the sequential decode of
        that window alone at the higher temperatures, as `transcribe` would fall back."""
        units = [_speech_only(p) if p.vad_filter and not p.pieces else p for p in payloads]
        results = [TranscribeResult(duration=len(p.audio) / SAMPLE_RATE) for p in payloads]
        spoken = [i for i, u in enumerate(units) if len(u.audio)]
        if not spoken:
            return results
        first = units[spoken[0]]
        language, probability = first.language if self.multilingual else "en", 1.0
        if language is None:  # one detection for the batch: on the probe of the job's first window
            probe = next((p.probe for p in payloads if p.probe is not None), first.audio)
            language, probability = detect(handle, probe, False, first.detection)
        decoded, language, _ = decode_clips(
            handle,
            [units[i].audio for i in spoken],
            batch_size,
            temperature=first.temperature,
            language=language,
            task=first.task if self.multilingual else "transcribe",
            initial_prompt=first.prompt or None,
            word_timestamps=first.word_timestamps,
            beam_size=first.beam_size,
            hotwords=first.hotwords,
        )
        for i, window in zip(spoken, decoded, strict=True):
            unit, result = replace(units[i], language=language), results[i]
            result.language, result.language_probability = language, probability
            hotter = _temperatures(unit.temperature)[1:]
            if window.failed and hotter:
                again = self.run(handle, replace(unit, temperature=hotter[0]))
                result.segments, result.logprobs = again.segments, again.logprobs
            elif not window.silent:
                when = _Timeline(unit)
                result.segments = [_segment(seg, when) for seg in window.segments]
                if unit.logprobs:
                    task = unit.task if self.multilingual else "transcribe"
                    result.logprobs = token_logprobs(
                        handle, unit.audio, [(0, s.tokens) for s in window.segments],
                        language, task)  # fmt: skip

        release_free_memory()
        return results

    def unload(self, handle: Any) -> None:
        del handle

    def audio_seconds(self, payload: TranscribeUnit, result: TranscribeResult) -> float:
        return len(payload.audio) / SAMPLE_RATE
