"""The input audio buffer and one committed turn's transcription: an interactive job through
tasks/ (the same models, windows and scheduler as HTTP), answered with deltas (one per piece of
text as the turn's windows finish) and then `completed`, or `failed`. In live mode the deltas
come while the turn is spoken (tasks/live.py: words two partial decodes agree on), and the
turn's end adds the rest."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InvalidRequest, as_domain
from ..runtime import Runtime
from ..scheduler import Level
from ..tasks import transcription as stt
from ..tasks.live import LiveTurn, follow
from ..traffic import status_of
from .codecs import RATE
from .events import Event, event

Send = Callable[[Event], Awaitable[None]]
log = logging.getLogger(__name__)


class AudioBuffer:
    """16 kHz samples since the last commit, kept as the appends' own arrays (no copy of the
    whole buffer per append). Positions count samples since the session began."""

    def __init__(self) -> None:
        self.chunks: deque[np.ndarray] = deque()
        self.start = 0  # position of the first sample held
        self.end = 0  # position after the last sample held

    def __len__(self) -> int:
        return self.end - self.start

    def append(self, samples: np.ndarray) -> None:
        if len(samples):
            self.chunks.append(samples)
            self.end += len(samples)

    def drop_before(self, position: int) -> None:
        """Forget whole appends that end before `position` (what no turn can include)."""
        while self.chunks and self.start + len(self.chunks[0]) <= position:
            self.start += len(self.chunks.popleft())

    def peek(self, begin: int) -> np.ndarray:
        """The samples held from `begin` on (a copy; nothing is dropped)."""
        whole = np.concatenate(self.chunks) if self.chunks else np.zeros(0, np.float32)
        return whole[max(begin - self.start, 0) :]

    def take(self, begin: int, stop: int) -> np.ndarray:
        """The samples in [begin, stop) that are held; everything before `stop` is dropped."""
        whole = np.concatenate(self.chunks) if self.chunks else np.zeros(0, np.float32)
        a, b = max(begin - self.start, 0), max(min(stop, self.end) - self.start, 0)
        part = whole[a:b].copy()
        rest = whole[b:]
        self.chunks = deque([rest] if len(rest) else [])
        self.start = self.start + b
        return part

    def clear(self) -> None:
        self.chunks.clear()
        self.start = self.end


class Speaking:
    """A turn transcribed live while it is spoken: partial decodes every `interval_s` whose
    agreed words go out as deltas of its item at once."""

    def __init__(self, gw: Runtime, plan: stt.TranscriptionPlan, item_id: str,
                 audio_now: Callable[[], np.ndarray], interval_s: float,
                 send: Send) -> None:  # fmt: skip
        self.live = LiveTurn(gw, plan)
        self.ended = asyncio.Event()

        async def emit(piece: str) -> None:
            await send(event("conversation.item.input_audio_transcription.delta",
                             item_id=item_id, content_index=0, delta=piece))  # fmt: skip

        self.task = asyncio.create_task(follow(self.live, audio_now, interval_s, emit, self.ended),
                                        name=f"realtime live {item_id}")  # fmt: skip

    def end(self) -> None:
        """The turn is over: no more partials (its `transcribe` waits for the last deltas)."""
        self.ended.set()

    def cancel(self) -> None:
        self.task.cancel()


@dataclass
class Turn:
    item_id: str
    audio: np.ndarray
    plan: stt.TranscriptionPlan
    ended_at: float  # perf_counter when the speech stopped (or the commit came)
    speaking: Speaking | None = None  # live mode: the partials sent while it was spoken

    @property
    def seconds(self) -> float:
        return len(self.audio) / RATE


async def transcribe(gw: Runtime, turn: Turn, send: Send) -> tuple[int, str]:
    """Run the turn as an interactive job and send its deltas and `completed` (or `failed`);
    returns (the status HTTP would answer, the transcript)."""
    base = {"item_id": turn.item_id, "content_index": 0}
    texts: list[str] = []
    logprobs: list[dict[str, Any]] | None = [] if turn.plan.extras.logprobs else None
    try:
        if turn.speaking is not None:
            texts.append(await _finish_live(turn, turn.speaking, send))
            # partial decodes score no tokens: a live turn's completed carries none, rather
            # than the final decode's tail alone (docs/transcription-options.md)
            logprobs = None
        else:
            got = await _whole(gw, turn, send, texts)
            if logprobs is not None:
                logprobs = got or []
    except ConnectionError:
        raise  # the client left: nobody to tell
    except Exception as exc:
        err = as_domain(exc)
        if err.kind == "internal":
            log.error("realtime turn %s failed", turn.item_id, exc_info=exc)
        body = {"type": err.type, "code": err.code, "message": err.message, "param": err.param}
        await send(event("conversation.item.input_audio_transcription.failed", **base,
                         error=body))  # fmt: skip
        return status_of(err), ""
    transcript = "".join(texts)
    usage = {"type": "duration", "seconds": round(turn.seconds, 3)}
    done = {"logprobs": logprobs} if logprobs is not None else {}
    await send(event("conversation.item.input_audio_transcription.completed", **base,
                     transcript=transcript, usage=usage, **done))  # fmt: skip
    return 200, transcript


async def _finish_live(turn: Turn, speaking: Speaking, send: Send) -> str:
    """The deltas already sent, then the final decode's rest as one more delta; returns the
    whole transcript (the deltas joined)."""
    speaking.end()
    await speaking.task  # its last deltas are out; no partial runs any more
    live = speaking.live
    if len(turn.audio) >= stt.MIN_AUDIO_S * RATE:
        await live.final(turn.audio)
    piece = live.take()
    if piece:
        await send(event("conversation.item.input_audio_transcription.delta",
                         item_id=turn.item_id, content_index=0, delta=piece))  # fmt: skip
    return live.text()


async def _whole(
    gw: Runtime, turn: Turn, send: Send, texts: list[str]
) -> list[dict[str, Any]] | None:
    """Today's path: the committed turn's windows, a delta per finished piece; returns the
    tokens' log probabilities where the plan asked for them."""
    base = {"item_id": turn.item_id, "content_index": 0}
    try:
        work = await stt.prepare_samples(gw, turn.plan, turn.audio, Level.interactive)
    except InvalidRequest as exc:
        if exc.code != "audio_too_short":
            raise
        return None
    async with stt.start(gw, work, Level.interactive, None) as job:
        first = await job.first()
        async for piece in job.deltas(first):
            texts.append(piece)
            await send(event("conversation.item.input_audio_transcription.delta", **base,
                             delta=piece))  # fmt: skip
        return job.logprobs


def latency(turn: Turn) -> float:
    return time.perf_counter() - turn.ended_at
