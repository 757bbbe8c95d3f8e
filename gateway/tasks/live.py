"""Live transcription of one turn while it is spoken: LocalAgreement-2 (Macháček et al., 2023,
"Turning Whisper into Real-Time Transcription System").

Every `interval_s` the turn's audio so far is decoded again, as speculative work (the scheduler's
partial decodes: scheduler/speculation.py). A decode that begins with the words already committed
(case and punctuation aside) gives its hypothesis: the words after them. The words that two
successive hypotheses agree on are committed too: they are final, never taken back, and the front
door sends them at once. When the turn ends, one interactive decode of the whole turn is aligned
to the committed words; what it has after them is the rest. The committed words joined are the
transcript, so the pieces sent add up to it exactly.

Why no forced prefix (faster-whisper's `prefix`): measured with whisper-tiny.en and base on two
Kokoro sentences, a prefix that ends at a sentence's end makes the decode stop there (the second
sentence is never transcribed), and base continued a prefix in Japanese. The committed words are
only compared with each decode, as the paper's implementation does with its timestamps.

A long turn: once the re-decoded audio passes `TRIM_S`, it is cut at the end of the last
Whisper segment made only of committed words, and those words move into the prompt (the paper's
buffer trimming), so a decode stays about one Whisper window long.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from difflib import SequenceMatcher
from typing import Any

import numpy as np

from ..engines.whisper import TranscribeResult, TranscribeUnit
from ..runtime import Runtime
from ..scheduler import Level
from .transcription import (
    MIN_AUDIO_S,
    NO_SPACE_LANGS,
    TranscriptionPlan,
    detection,
    output_language,
)

RATE = 16000
TRIM_S = 20.0  # re-decoded audio past this is cut at a committed segment's end
PROMPT_CHARS = 200  # of the trimmed committed text, kept as the decode's prompt


def split(text: str, lang: str | None) -> list[str]:
    """Words; characters for scripts written without spaces."""
    if lang in NO_SPACE_LANGS:
        return [c for c in text if not c.isspace()]
    return text.split()


def join(words: list[str], lang: str | None) -> str:
    return ("" if lang in NO_SPACE_LANGS else " ").join(words)


def _norm(word: str) -> str:
    """What two decodes must agree on: the word without case or punctuation."""
    return "".join(c for c in word.lower() if c.isalnum())


def trim_point(
    segments: list[dict[str, Any]], held: int, lang: str | None
) -> tuple[int, float] | None:
    """Where the re-decoded audio may be cut: (words before the cut, its time) at the end of
    the last segment made only of committed words (`held` of them lead the decode); None where
    the first segment already holds a word not committed."""
    count, cut = 0, None
    for seg in segments:
        count += len(split(seg["text"], lang))
        if count > held:
            break
        cut = (count, float(seg["end"]))
    return cut if cut is not None and cut[0] > 0 else None


class Agreement:
    """LocalAgreement-2's state: the committed words (append-only) and the previous decode's
    hypothesis of the words that follow them."""

    def __init__(self) -> None:
        self.committed: list[str] = []
        self.pending: list[str] = []

    def feed(self, hypothesis: list[str]) -> list[str]:
        """A new decode's words after the committed ones; returns the words newly committed: the
        longest prefix it shares with the previous hypothesis."""
        n = 0
        for a, b in zip(hypothesis, self.pending, strict=False):
            if _norm(a) != _norm(b):
                break
            n += 1
        new, self.pending = hypothesis[:n], hypothesis[n:]
        self.committed += new
        return new


def after(held: list[str], heard: list[str]) -> int:
    """Where, in a decode's words (`heard`), the committed ones (`held`) end: past the last word
    the two have in common, and past as many more as committed words follow that one."""
    blocks = [b for b in SequenceMatcher(None, held, heard, autojunk=False).get_matching_blocks()
              if b.size]  # fmt: skip
    if not blocks:
        return min(len(held), len(heard))
    last = blocks[-1]
    return min(len(heard), last.b + last.size + len(held) - (last.a + last.size))


class LiveTurn:
    """One turn's live transcription: `partial` while audio comes, `final` once at its end."""

    def __init__(self, gw: Runtime, plan: TranscriptionPlan) -> None:
        self.gw, self.plan = gw, plan
        self.agreement = Agreement()
        self.speculation = gw.scheduler.speculation(plan.model)
        self.language = plan.language
        self.base = 0  # samples of the turn cut from the front of what is re-decoded
        self.kept = 0  # committed words spoken before `base`: the prompt, not re-decoded
        self.sent = 0  # committed words the front door has taken to send

    @property
    def lang(self) -> str | None:
        return output_language(self.plan.task, self.language)

    @property
    def committed(self) -> list[str]:
        return self.agreement.committed

    def text(self) -> str:
        return join(self.committed, self.lang)

    def take(self) -> str:
        """The committed words not yet taken, as the next piece of text (with its leading space
        after the first): the pieces taken joined are `text()`."""
        words, self.sent, first = self.committed[self.sent :], len(self.committed), self.sent == 0
        if not words:
            return ""
        piece = join(words, self.lang)
        return piece if first or self.lang in NO_SPACE_LANGS else " " + piece

    def _unit(self, audio: np.ndarray) -> TranscribeUnit:
        w = self.gw.settings.whisper
        before = join(self.committed[: self.kept], self.lang)[-PROMPT_CHARS:]
        prompt = " ".join(p for p in (self.plan.prompt, before) if p) or None
        return TranscribeUnit(
            audio=audio[self.base :],
            offset_s=self.base / RATE,
            task=self.plan.task,
            language=self.language,
            prompt=prompt,
            temperature=self.plan.temperature,
            vad_filter=w.vad_filter,
            beam_size=w.beam_size,
            detection=detection(w, self.plan.extras.candidates),
            hotwords=self.plan.extras.keywords,  # the deployment's and the session's keywords
            vad=self.plan.extras.vad,
        )

    def _continuation(self, result: TranscribeResult, strict: bool) -> list[str] | None:
        """The decode's words after the committed ones it re-decoded. A partial decode (`strict`)
        that does not begin with them is not trusted (None); the final one is aligned to them."""
        words = split(" ".join(s["text"] for s in result.segments), self.lang)
        held = [_norm(w) for w in self.committed[self.kept :]]
        heard = [_norm(w) for w in words]
        if heard[: len(held)] == held:
            return words[len(held) :]
        if strict:
            return None
        return words[after(held, heard) :]

    async def partial(self, audio: np.ndarray) -> list[str]:
        """Decode the turn so far as speculative work; the words newly committed (none where the
        decode was replaced, skipped or dropped, or the turn ended meanwhile)."""
        if (len(audio) - self.base) < MIN_AUDIO_S * RATE or self.speculation.closed:
            return []
        result = await self.speculation.run(self._unit(audio))
        if result is None or self.speculation.closed:
            return []
        self.language = self.language or result.language
        hypothesis = self._continuation(result, strict=True)
        if hypothesis is None:
            return []
        new = self.agreement.feed(hypothesis)
        self._trim(result, len(audio))
        return new

    def _trim(self, result: TranscribeResult, end: int) -> None:
        if (end - self.base) / RATE <= TRIM_S:
            return
        held = len(self.committed) - self.kept  # committed words in the re-decoded audio
        cut = trim_point(result.segments, held, self.lang)
        if cut is not None:
            self.kept += cut[0]
            self.base = max(self.base, min(int(cut[1] * RATE), end))

    def close(self) -> None:
        """No more partials: a queued one is dropped (stale), a running one is ignored."""
        self.speculation.close()

    async def final(self, audio: np.ndarray) -> list[str]:
        """The turn ended: one interactive decode continues from the committed words; returns
        the words it adds (committed too: `take` has them)."""
        self.close()
        if len(audio) - self.base < MIN_AUDIO_S * RATE:
            return []
        unit = self._unit(audio)
        async with self.gw.scheduler.job(self.plan.model, Level.interactive) as job:
            result = await job.run(unit)
        self.language = self.language or result.language
        rest = self._continuation(result, strict=False) or []
        self.agreement.committed += rest
        return rest


Emit = Callable[[str], Awaitable[None]]


async def follow(
    live: LiveTurn,
    audio_now: Callable[[], np.ndarray],
    interval_s: float,
    emit: Emit,
    ended: asyncio.Event,
) -> None:
    """Decode the turn every `interval_s` until `ended` is set, emitting each newly committed
    piece of text in order. A tick does not wait for its decode: a partial still queued at the
    next tick is replaced by the newer one, and one asked for while the last still runs is
    skipped (scheduler/speculation.py). Emits happen here alone, never in a cancelled task, so
    every committed word is either sent or left for `take` after the final decode."""
    steps: set[asyncio.Task[None]] = set()
    woke = asyncio.Event()
    loop = asyncio.get_running_loop()
    last, due = 0, loop.time() + interval_s

    async def step(audio: np.ndarray) -> None:
        try:
            if await live.partial(audio):
                woke.set()
        except Exception:  # noqa: BLE001 - a failed partial only means no words yet; the final says
            pass

    waits: set[asyncio.Future[bool]] = {asyncio.ensure_future(ended.wait()),
                                        asyncio.ensure_future(woke.wait())}  # fmt: skip
    try:
        while not ended.is_set():
            await asyncio.wait(waits, timeout=max(0.0, due - loop.time()),
                               return_when=asyncio.FIRST_COMPLETED)  # fmt: skip
            if woke.is_set():
                woke.clear()
                waits = {w for w in waits if not w.done()} | {asyncio.ensure_future(woke.wait())}
                piece = live.take()
                if piece:
                    await emit(piece)
            if loop.time() >= due and not ended.is_set():
                due = loop.time() + interval_s
                audio = audio_now()
                if len(audio) != last:  # else nothing new to hear
                    last = len(audio)
                    task = asyncio.create_task(step(audio))
                    steps.add(task)
                    task.add_done_callback(steps.discard)
    finally:
        live.close()
        every: list[asyncio.Future[Any]] = [*waits, *steps]
        for pending in every:
            pending.cancel()
        await asyncio.gather(*every, return_exceptions=True)
