"""Transcription and translation: audio bytes (or 16 kHz samples) -> 16 kHz windows -> one job ->
a typed transcript.

Checks that need no audio run first (`check`), so a bad parameter is refused before the upload
is read; `prepare` decodes and cuts the audio into windows, one work unit each; `prepare_samples`
does the same for audio a front door already holds as samples (Realtime, Wyoming).
"""

from __future__ import annotations

import asyncio
import itertools
import weakref
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from ..audio.budget import AudioBudgetFull, Hold, beside
from ..audio.decode import TARGET_RATE, AudioDecodeError, AudioFile
from ..config import WhisperSettings
from ..engines.whisper import (
    LANGUAGES,
    WHISPER_INPUT,
    TranscribeResult,
    TranscribeUnit,
    plan_windows,
)
from ..errors import InvalidRequest
from ..runtime import Runtime
from ..scheduler import Job, Level, QueueFull
from ..text.languages import LANGUAGE_NAMES, Detection
from .transcription_options import Extras, extras
from .transcription_options import live_requested as live_requested  # for live mode
from .windows import WindowUnits

NO_SPACE_LANGS = {"ja", "zh", "th", "lo", "my", "km", "yue", "bo"}
MIN_AUDIO_S = 0.1  # OpenAI's minimum: shorter audio is a 400 `audio_too_short`


def language_name(code: str) -> str:
    """The full name Whisper gives a language code, as verbose_json reports it."""
    return LANGUAGE_NAMES.get(code, code)


@dataclass(frozen=True)
class TranscriptionInput:
    model: str
    translate: bool = False
    language: str | None = None
    prompt: str | None = None
    temperature: float = 0.0
    granularities: list[str] | None = None
    response_format: str = "json"
    # the 2026 fields, as sent (tasks/transcription_options.py checks them)
    languages: Sequence[str] | None = None
    keywords: Sequence[str] | None = None
    include: Sequence[str] | None = None
    chunking: Any = None


@dataclass(frozen=True)
class TranscriptionPlan:
    model: str
    task: str  # "transcribe" | "translate"
    language: str | None
    prompt: str | None
    temperature: float
    words: bool
    segments: bool
    extras: Extras = Extras()


@dataclass(frozen=True)
class Transcription:
    """A planned transcription: the decoded clip cut into units."""

    plan: TranscriptionPlan
    units: Sequence[TranscribeUnit]  # made as taken (WindowUnits): take each once, when it runs
    duration: float
    default_level: Level


@dataclass
class Transcript:
    """The result: segments (dicts in OpenAI's verbose_json shape), language and text."""

    task: str
    language: str
    duration: float
    segments: list[dict[str, Any]] = field(default_factory=list)
    # how sure the gateway was of a language it chose; None: the request named it
    language_probability: float | None = None
    logprobs: list[dict[str, Any]] | None = None  # asked for with include[]=logprobs

    @property
    def output_language(self) -> str:
        """The language the text is written in: English for a translation."""
        return output_language(self.task, self.language) or self.language

    @property
    def text(self) -> str:
        return join_text([s["text"] for s in self.segments], self.output_language)

    @property
    def words(self) -> list[dict[str, Any]]:
        return [w for s in self.segments for w in s.get("words", [])]


def output_language(task: str, language: str | None) -> str | None:
    """Whisper translates into English only; a transcript keeps the spoken language."""
    return "en" if task == "translate" else language


def separator(lang: str | None) -> str:
    """One space between pieces of text; none for scripts written without spaces."""
    return "" if lang in NO_SPACE_LANGS else " "


def join_text(parts: list[str], lang: str | None) -> str:
    """Join segment texts with the language's separator."""
    return separator(lang).join(p.strip() for p in parts if p.strip())


def detection(w: WhisperSettings, candidates: tuple[str, ...] = ()) -> Detection:
    """The deployment's language settings, as a unit with no language carries them; a
    request's own candidates replace the deployment's (its default stays where it is one)."""
    default = w.language or None
    if candidates and default not in candidates:
        default = None
    return Detection(
        candidates=candidates or tuple(w.languages),
        default=default,
        threshold=w.language_threshold,
        segments=w.language_segments,
    )


def check(gw: Runtime, req: TranscriptionInput) -> TranscriptionPlan:
    """Model, language and granularities; raises before any audio is read."""
    model = gw.resolve(req.model, "transcription")
    multilingual = gw.models[model].spec.multilingual
    if req.translate and not multilingual:
        raise InvalidRequest(f"model {model!r} is English-only and cannot translate", "model")
    language = req.language
    if language is not None:
        language = language.strip().lower() or None
        if language is not None and language not in LANGUAGES:
            raise InvalidRequest(
                f"unsupported language {language!r}; use an ISO-639-1 code",
                "language",
                "invalid_language",
            )
        if language not in (None, "en") and not multilingual:
            raise InvalidRequest(f"model {model!r} is English-only", "language")
    grains = set(req.granularities or [])
    if not grains <= {"segment", "word"}:
        raise InvalidRequest(
            "timestamp_granularities[] takes `segment` and/or `word`", "timestamp_granularities[]"
        )
    if grains and req.response_format != "verbose_json":
        raise InvalidRequest(
            "timestamp_granularities[] needs response_format=verbose_json",
            "timestamp_granularities[]",
        )
    more = extras(gw.settings.whisper, language, multilingual, model, languages_=req.languages,
                  keywords_=req.keywords, include=req.include, chunking_=req.chunking,
                  response_format=req.response_format)  # fmt: skip
    return TranscriptionPlan(
        model=model,
        task="translate" if req.translate else "transcribe",
        language=language,
        prompt=req.prompt,
        temperature=req.temperature,
        words="word" in grains,
        segments="segment" in grains or not grains,
        extras=more,
    )


def default_level(gw: Runtime, duration_s: float) -> Level:
    """Clips longer than `batch_threshold_s` default to level batch."""
    return gw.scheduler.level_for(duration_s)


def _audio_full(gw: Runtime, level: Level | None, exc: AudioBudgetFull) -> QueueFull:
    return gw.scheduler.refuse(level or Level.batch, "audio_held", str(exc))


async def _decode(
    gw: Runtime, data: bytes, level: Level | None, extra: int
) -> tuple[np.ndarray, Hold]:
    """The upload's samples, and its hold on the audio budget (with `extra` samples beside
    them). A full queue (or budget) refuses the job before the decode where the container states
    its duration; without one (browsers' WebM) the queue decides at submit, and the budget as
    the array grows."""
    try:
        upload = await asyncio.to_thread(AudioFile, data, gw.settings.server.max_audio_s)
    except AudioDecodeError as exc:
        raise InvalidRequest(str(exc), "file", "invalid_audio") from None
    hold = gw.audio_budget.hold()
    try:
        if level is None and upload.seconds is not None:
            gw.scheduler.admit(default_level(gw, upload.seconds))
        hold.take(upload.capacity + extra)
    except BaseException as exc:
        upload.close()
        hold.release()
        if isinstance(exc, AudioBudgetFull):
            raise _audio_full(gw, level, exc) from None
        raise
    try:
        audio = await asyncio.to_thread(upload.decode, hold.take)
    except BaseException as exc:
        hold.release()  # a decode left running by a cancelled request stops at its next growth
        if isinstance(exc, AudioDecodeError):
            raise InvalidRequest(str(exc), "file", "invalid_audio") from None
        if isinstance(exc, AudioBudgetFull):
            raise _audio_full(gw, level, exc) from None
        raise
    hold.keep(len(audio) + extra)
    return audio, hold


async def prepare(
    gw: Runtime, plan: TranscriptionPlan, data: bytes, level: Level | None = None
) -> Transcription:
    """Decode the upload (by its bytes) and cut it into windows of at most `window_s`. A job at
    a `level` the caller chose is refused (429) when that queue is full before anything else."""
    if level is not None:
        gw.scheduler.admit(level)
    # the windows of this job in flight at once, each joined and padded, and the language probe
    windows = 2 * gw.scheduler.parallel_units(plan.model) + gw.settings.whisper.language_segments
    audio, hold = await _decode(gw, data, level, beside(len(data), windows, WHISPER_INPUT))
    try:
        work = await _cut(gw, plan, audio)
    except BaseException:
        hold.release()
        raise
    # The samples live as long as the work (its units hold views of them, a streamed response
    # runs them after the handler returns): the budget gets them back when it is dropped.
    weakref.finalize(work, hold.release)
    return work


async def prepare_samples(
    gw: Runtime, plan: TranscriptionPlan, audio: np.ndarray, level: Level | None = None
) -> Transcription:
    """As `prepare`, for 16 kHz float32 mono samples (no container to decode): the same limits
    (`max_audio_s`, the audio budget) and the same windows."""
    if level is not None:
        gw.scheduler.admit(level)
    limit = gw.settings.server.max_audio_s
    if limit and len(audio) > limit * TARGET_RATE:
        raise InvalidRequest(f"audio is longer than the limit of {limit:.0f} s", "file",
                          "audio_too_long")  # fmt: skip
    samples = np.ascontiguousarray(audio, dtype=np.float32)
    windows = 2 * gw.scheduler.parallel_units(plan.model) + gw.settings.whisper.language_segments
    hold = gw.audio_budget.hold()
    try:
        hold.take(len(samples) + beside(0, windows, WHISPER_INPUT))
        work = await _cut(gw, plan, samples)
    except BaseException as exc:
        hold.release()
        if isinstance(exc, AudioBudgetFull):
            raise _audio_full(gw, level, exc) from None
        raise
    weakref.finalize(work, hold.release)  # as `prepare`: the budget gets them back with the work
    return work


async def _cut(gw: Runtime, plan: TranscriptionPlan, audio: np.ndarray) -> Transcription:
    duration = len(audio) / TARGET_RATE
    if duration < MIN_AUDIO_S:
        raise InvalidRequest(
            f"audio file is too short ({duration:.3f} s); the minimum is {MIN_AUDIO_S:g} s",
            "file",
            "audio_too_short",
        )
    w = gw.settings.whisper
    more = plan.extras
    windows = await asyncio.to_thread(plan_windows, audio, w.window_s, more.vad)
    probe = w.language_segments if plan.language is None and len(windows) > 1 else 0
    template = TranscribeUnit(
        audio=audio[:0],
        offset_s=0.0,
        task=plan.task,
        language=plan.language,
        prompt=plan.prompt,
        temperature=plan.temperature,
        word_timestamps=plan.words,
        vad_filter=w.vad_filter,
        beam_size=w.beam_size,
        job=next(_job_ids),
        detection=detection(w, more.candidates),
        hotwords=more.keywords,
        logprobs=more.logprobs,
        vad=more.vad,
    )
    units = WindowUnits(template, audio, windows, probe)
    return Transcription(plan, units, duration, default_level(gw, duration))


_job_ids = itertools.count(1)


def _next_unit(unit: TranscribeUnit, first: TranscribeResult | None) -> TranscribeUnit:
    """Later windows reuse the language detected on the first, so they agree."""
    if unit.language is None and first is not None and first.language:
        return replace(unit, language=first.language)
    return unit


class TranscriptionJob:
    def __init__(self, job: Job, work: Transcription) -> None:
        self.job = job
        self.work = work
        # every window's, as they finish (text and times, no audio): for the logprobs
        self.results: list[TranscribeResult] = []

    @property
    def logprobs(self) -> list[dict[str, Any]] | None:
        """The windows' token log probabilities so far, in order (include[]=logprobs)."""
        if not self.work.plan.extras.logprobs:
            return None
        return [p for r in self.results for p in r.logprobs or []]

    async def _group(self, group: list[TranscribeUnit]) -> list[TranscribeResult]:
        """Units queued at once (on a batching GPU lane they share batched decodes, and may join
        other requests' windows); results in the units' order."""
        if len(group) == 1:
            out = [await self.job.run(group[0])]
        else:
            out = await self.job.run_many(group)
        self.results += out
        return out

    async def _rest(
        self, first: TranscribeResult | None, start: int = 1
    ) -> AsyncIterator[list[TranscribeResult]]:
        """The windows from `start` on, in order, in groups: a batch's worth at a time where
        the model batches on the GPU, elsewhere one window after another."""
        units, i = self.work.units, start
        while i < len(units):
            end = min(i + self.job.scheduler.parallel_units(self.job.model), len(units))
            group = [_next_unit(units[k], first) for k in range(i, end)]
            i = end
            yield await self._group(group)

    async def transcript(self) -> Transcript:
        units = self.work.units
        n = self.job.scheduler.parallel_units(self.job.model)
        if n > 1 and len(units) > 1:
            # Nothing is sent before the end, so the first window need not run alone: its batch
            # detects the language once for all its windows (one job's windows batch only with
            # each other while the language is unknown), and later batches reuse that language.
            results = await self._group(list(units[:n]))
        else:
            first = await self.first()
            results = [] if first is None else [first]
        async for group in self._rest(results[0] if results else None, len(results) or 1):
            results += group
        plan = self.work.plan
        heard = next((r for r in results if r.language), None)
        lang = plan.language or (heard.language if heard else None) or "en"
        segments = [s for r in results for s in r.segments]
        out = Transcript(plan.task, lang, self.work.duration, segments)
        out.logprobs = self.logprobs
        if plan.language is None:
            out.language_probability = heard.language_probability if heard else 0.0
        return out

    async def first(self) -> TranscribeResult | None:
        units = self.work.units
        if not units:
            return None
        first = await self.job.run(units[0])
        self.results.append(first)
        return first

    async def deltas(self, first: TranscribeResult | None) -> AsyncIterator[str]:
        """Text pieces as windows finish (the first already run), each with its leading space;
        the caller joins them for the final text."""
        started = False

        def pieces(result: TranscribeResult) -> list[str]:
            nonlocal started
            out = []
            lang = output_language(self.work.plan.task, result.language)
            sep = separator(lang)
            for seg in result.segments:
                piece = seg["text"].strip()
                if not piece:
                    continue
                out.append(sep + piece if started else piece)
                started = True
            return out

        if first is not None:
            for piece in pieces(first):
                yield piece
        async for group in self._rest(first):
            for result in group:
                for piece in pieces(result):
                    yield piece


@asynccontextmanager
async def start(
    gw: Runtime, work: Transcription, level: Level | None, timeout_s: float | None
) -> AsyncIterator[TranscriptionJob]:
    model = work.plan.model
    async with gw.scheduler.job(model, level or work.default_level, timeout_s) as job:
        yield TranscriptionJob(job, work)
