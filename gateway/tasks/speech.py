"""Speech: text -> Kokoro work units -> one job -> float32 audio (whole, or unit by unit).

With `SpeechInput.timed` every unit also reports where each of its phoneme characters is spoken:
`SpeechJob.each_timed / first_timed / rest_timed` give one `TimedAudio(audio, edges)` per unit
(see engines/timing.py; `unit.phonemes` of `SpeechPlan.units` are the characters the edges
bound). The plain methods give the audio alone, timed plan or not."""

from __future__ import annotations

import asyncio
import unicodedata
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import numpy as np

from ..engines.kokoro import (
    OPENAI_VOICES,
    KokoroEngine,
    NothingToSpeak,
    NoTimings,
    SpeechUnit,
    TimedAudio,
    VoiceError,
)
from ..errors import InvalidRequest, ModelLookupError
from ..runtime import Runtime
from ..scheduler import Job, Level
from ..text.normalize import SpokenTooLong
from ..text.words import WordMap

# Read aloud, text grows (`$1,234,567` is 10 characters, its words 78; a digit read alone, 5):
# the words may be this many times the input limit, so the work a request can ask for stays
# bounded by the limit callers see. The chat replies in tests/data grow 1.3x, a table of prices
# with cents 4.3x; 4096 digits (20,475 characters read one by one) are refused.
SPOKEN_CHARS_PER_INPUT_CHAR = 4
# The shortest answer to text with nothing to say: some players refuse a file of no samples.
MIN_QUIET_S = 0.05


@dataclass(frozen=True)
class SpeechInput:
    model: str
    text: str
    voice: str
    speed: float = 1.0
    lang: str | None = None
    normalize: bool = True
    stream: bool = False  # the first sentence becomes a unit of its own (sent first)
    timed: bool = False  # every unit reports its phoneme edges (the *_timed methods of SpeechJob)


@dataclass(frozen=True)
class SpeechPlan:
    model: str
    units: list[SpeechUnit]
    sample_rate: int
    # timed plans: which phoneme characters of the units belong to which written word
    words: WordMap | None = None


def clean_text(text: str) -> str:
    """Drop control and format characters (keep newlines for Markdown, tabs as spaces)."""
    out = []
    for ch in text.replace("\r\n", "\n"):
        cat = unicodedata.category(ch)
        if ch == "\n":
            out.append(ch)
        elif ch in "\t\r":
            out.append(" ")
        elif cat[0] != "C":
            out.append(ch)
    return "".join(out).strip()


def _engine(gw: Runtime, model: str) -> KokoroEngine:
    engine = gw.models[model].engine
    assert isinstance(engine, KokoroEngine), f"{model} is not a Kokoro model"
    return engine


async def plan(gw: Runtime, req: SpeechInput) -> SpeechPlan:
    """Everything that can be the caller's fault is checked here, before any audio is made."""
    model = gw.resolve(req.model, "speech")
    limit = gw.settings.server.max_input_chars
    if len(req.text) > limit:
        raise InvalidRequest(
            f"input is {len(req.text)} characters; the limit is {limit}",
            "input",
            "string_above_max_length",
        )
    text = clean_text(req.text)
    if not text:
        raise InvalidRequest("input is empty", "input", "empty_input")
    engine = _engine(gw, model)
    try:
        units, words = await asyncio.to_thread(
            _plan_units, engine, text, req, SPOKEN_CHARS_PER_INPUT_CHAR * limit
        )
    except SpokenTooLong as exc:
        raise InvalidRequest(
            f"{exc} ({SPOKEN_CHARS_PER_INPUT_CHAR} times the input limit of {limit}); send "
            "less text, or fewer long numbers",
            "input",
            "string_above_max_length",
        ) from None
    except VoiceError as exc:
        raise InvalidRequest(str(exc), "voice", "invalid_voice") from None
    except NoTimings as exc:
        raise InvalidRequest(str(exc), "timestamps", "timestamps_unsupported") from None
    except NothingToSpeak as exc:
        if req.lang and exc.__cause__ is not None:  # the phonemizer refused the given language
            raise InvalidRequest(str(exc), "lang", "invalid_lang") from None
        if exc.__cause__ is not None:
            raise InvalidRequest(str(exc), "input", "nothing_to_speak") from None
        # `---`, `...`, `$`, emoji: chat clients read a reply aloud piece by piece, and such a
        # piece is part of a reply, not a mistake. It is a short pause, like a sentence's end.
        return _quiet_plan(engine, req, model)
    return SpeechPlan(model, units, engine.sample_rate, words)


def _quiet_plan(engine: KokoroEngine, req: SpeechInput, model: str) -> SpeechPlan:
    """One unit with no phonemes: `SpeechJob` answers it with silence and no words, without
    queueing it (nothing for the model to do)."""
    pause = max(engine.sentence_pause_s, MIN_QUIET_S)
    unit = SpeechUnit("", np.zeros(0, np.float32), req.speed, pause, req.lang or "", req.timed)
    words = WordMap("", [], []) if req.timed else None
    return SpeechPlan(model, [unit], engine.sample_rate, words)


def _plan_units(
    engine: KokoroEngine, text: str, req: SpeechInput, most: int
) -> tuple[list[SpeechUnit], WordMap | None]:
    if req.timed:
        return engine.plan_words(
            text, req.voice, req.speed, req.lang,
            normalize=req.normalize, first_alone=req.stream, max_spoken_chars=most,
        )  # fmt: skip
    units = engine.plan(
        text, req.voice, req.speed, req.lang,
        normalize=req.normalize, first_alone=req.stream, max_spoken_chars=most,
    )  # fmt: skip
    return units, None


def input_tokens(plan: SpeechPlan) -> int:
    """Phoneme tokens the model reads for this plan (one per phoneme symbol, as Kokoro's
    vocabulary has them)."""
    return sum(len(unit.phonemes) for unit in plan.units)


class SpeechJob:
    """The scheduled synthesis of one plan: all at once, or the first unit then the rest."""

    def __init__(self, job: Job, plan: SpeechPlan) -> None:
        self.job = job
        self.plan = plan
        self.model = plan.model
        self.level = job.level
        self.sample_rate = plan.sample_rate

    async def each(self, sink: Callable[[np.ndarray], object]) -> None:
        """Every unit's audio, in order, handed to `sink` on a worker thread while the next unit
        runs (e.g. an encoder: MP3 of one unit costs about as much as a few percent of its
        synthesis, and only the last one's stays on the critical path)."""
        await self.each_timed(lambda result: sink(result.audio))

    async def each_timed(self, sink: Callable[[TimedAudio], object]) -> None:
        """`each`, with every unit's TimedAudio (edges None unless the plan is timed)."""
        pending: asyncio.Future[object] | None = None
        try:
            for unit in self.plan.units:
                result = await self._run(unit)
                if pending is not None:
                    await pending
                pending = asyncio.ensure_future(asyncio.to_thread(sink, result))
            if pending is not None:
                await pending
        finally:
            if pending is not None and not pending.done():
                pending.cancel()

    async def _run(self, unit: SpeechUnit) -> TimedAudio:
        if not unit.phonemes:  # a quiet plan's unit (see `_quiet_plan`)
            quiet = np.zeros(round(unit.pause_s * self.sample_rate), np.float32)
            return TimedAudio(quiet, np.zeros(1, np.int64) if unit.timed else None)
        result = await self.job.run(unit)
        return result if isinstance(result, TimedAudio) else TimedAudio(result, None)

    async def first(self) -> np.ndarray:
        return (await self.first_timed()).audio

    async def first_timed(self) -> TimedAudio:
        return await self._run(self.plan.units[0])

    async def rest(self) -> AsyncIterator[np.ndarray]:
        """The units after the first; a consumer that goes away cancels the queued unit."""
        async for result in self.rest_timed():
            yield result.audio

    async def rest_timed(self) -> AsyncIterator[TimedAudio]:
        """`rest`, with every unit's TimedAudio (edges None unless the plan is timed)."""
        for unit in self.plan.units[1:]:
            yield await self._run(unit)


@asynccontextmanager
async def start(
    gw: Runtime, plan: SpeechPlan, level: Level | None, timeout_s: float | None
) -> AsyncIterator[SpeechJob]:
    async with gw.scheduler.job(plan.model, level or Level.interactive, timeout_s) as job:
        yield SpeechJob(job, plan)


def voices(gw: Runtime, model: str | None) -> list[dict[str, str]]:
    """Installed voices, then the OpenAI names mapped onto them; raises ModelLookupError."""
    model_id = gw.resolve(model or "tts-1", "speech")
    engine = _engine(gw, model_id)
    out = [{"id": v, "name": v} for v in engine.voice_ids()]
    out += [
        {"id": name, "name": f"{name} ({engine.openai_voice(name)})"}
        for name in OPENAI_VOICES
        if name not in engine.voices
    ]
    return out


__all__ = [
    "ModelLookupError",
    "SpeechInput",
    "input_tokens",
    "SpeechJob",
    "SpeechPlan",
    "TimedAudio",
    "plan",
    "start",
    "voices",
]
