"""The input audio buffer and one committed turn's transcription: an interactive job through
tasks/ (the same models, windows and scheduler as HTTP), answered with deltas (one per piece of
text as the turn's windows finish) and then `completed`, or `failed`."""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import numpy as np

from ..audio.encode import encode_audio
from ..errors import InvalidRequest, as_domain
from ..runtime import Runtime
from ..scheduler import Level
from ..tasks import transcription as stt
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


@dataclass
class Turn:
    item_id: str
    audio: np.ndarray
    plan: stt.TranscriptionPlan
    ended_at: float  # perf_counter when the speech stopped (or the commit came)

    @property
    def seconds(self) -> float:
        return len(self.audio) / RATE


async def transcribe(gw: Runtime, turn: Turn, send: Send) -> tuple[int, str]:
    """Run the turn as an interactive job and send its deltas and `completed` (or `failed`);
    returns (the status HTTP would answer, the transcript)."""
    base = {"item_id": turn.item_id, "content_index": 0}
    texts: list[str] = []
    try:
        try:
            work = await stt.prepare(
                gw, turn.plan, encode_audio(turn.audio, "wav", RATE), Level.interactive
            )
        except InvalidRequest as exc:
            if exc.code != "audio_too_short":
                raise
        else:
            async with stt.start(gw, work, Level.interactive, None) as job:
                first = await job.first()
                async for piece in job.deltas(first):
                    texts.append(piece)
                    await send(event("conversation.item.input_audio_transcription.delta",
                                     **base, delta=piece))  # fmt: skip
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
    await send(event("conversation.item.input_audio_transcription.completed", **base,
                     transcript=transcript, usage=usage))  # fmt: skip
    return 200, transcript


def latency(turn: Turn) -> float:
    return time.perf_counter() - turn.ended_at
