"""A Realtime session's turns are bounded (issue 29, item 8): with the only CPU slot busy, turns
past `max_pending_turns` get an `error` event, and when the client leaves, its waiting turns are
cancelled and their audio freed at once, not at the cycle collector's next full pass."""

from __future__ import annotations

import asyncio
import base64
import gc
import tracemalloc
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import httpx
import numpy as np
import pytest

from gateway.config import RealtimeSettings, SchedulerSettings, Settings

from ..conftest import PASSAGE, LiveServer, encode, spoken_16k
from ..support.realtime_util import MODEL, pcm16, raw, recv, send, sentences

MAX_PENDING = 2
TURN_S = 40.0


@pytest.fixture(scope="module")
def live() -> Iterator[LiveServer]:
    settings = Settings(
        scheduler=SchedulerSettings(cpu_background_slots=0),
        realtime=RealtimeSettings(max_pending_turns=MAX_PENDING),
    )
    with LiveServer(settings) as server:
        yield server


def _manual() -> dict[str, Any]:
    inp = {"transcription": {"model": MODEL, "language": "en"}, "turn_detection": None}
    return {"type": "session.update", "session": {"type": "transcription", "audio": {"input": inp}}}


def _with_lane_busy(live: LiveServer, work: Callable[[], Awaitable[Any]]) -> Any:
    """Run `work` while a long HTTP transcription holds the only CPU slot."""
    sched = live.gateway.scheduler
    clip = encode(np.tile(spoken_16k([PASSAGE])[0], 3), 16000, "wav", "pcm_s16le", "s16")

    async def main() -> Any:
        async with httpx.AsyncClient(base_url=live.url, timeout=600) as http:
            files = {"file": ("long.wav", clip, "audio/wav")}
            post = asyncio.ensure_future(http.post("/v1/audio/transcriptions", files=files))
            try:
                while not sched.snapshot().busy["cpu"]:
                    assert not post.done(), post.result().text
                    await asyncio.sleep(0.05)
                return await work()
            finally:
                post.cancel()
                while sched.snapshot().busy["cpu"]:  # no decode outlives the server
                    await asyncio.sleep(0.05)

    return asyncio.run(main())


async def _turns(live: LiveServer, audio: str, commits: int) -> list[dict[str, Any]]:
    """Commit `commits` turns of `audio` in one session; the events up to the last commit's
    answer (an item added, or an error). The session is closed then, its turns still waiting
    (the first is prepared or queued behind the busy slot, the others wait for it)."""
    events: list[dict[str, Any]] = []
    async with raw(live.url) as ws:
        await send(ws, **_manual())
        for _ in range(commits):
            await send(ws, type="input_audio_buffer.append", audio=audio)
            await send(ws, type="input_audio_buffer.commit")
            while (event := await recv(ws))["type"] not in ("conversation.item.added", "error"):
                events.append(event)
            events.append(event)
    door = live.app.state.realtime
    while door.open:  # the server has seen the close and ended the session
        await asyncio.sleep(0.01)
    return events


def test_turns_past_the_limit_get_an_error_event(live: LiveServer) -> None:
    speech = base64.b64encode(pcm16(sentences()[0])).decode()

    events = _with_lane_busy(live, lambda: _turns(live, speech, MAX_PENDING + 1))
    kinds = [e["type"] for e in events]
    assert kinds.count("input_audio_buffer.committed") == MAX_PENDING, kinds
    assert kinds[-1] == "error" and events[-1]["error"]["code"] == "too_many_pending_turns"
    assert live.gateway.scheduler.queued() == 0  # the session's turns left with it


def test_a_closed_sessions_turns_free_their_audio(live: LiveServer) -> None:
    """With the cycle collector off, the turns' audio (here 2 x 40 s, 2.6 MB each as float32
    plus what preparing the first one made) is gone once the session has ended."""
    speech = np.tile(sentences()[0], int(TURN_S * 16000 / len(sentences()[0])) + 1)
    audio = base64.b64encode(pcm16(speech[: int(TURN_S * 16000)])).decode()
    one_turn = TURN_S * 16000 * 4

    async def session() -> int:
        tracemalloc.start()
        try:
            base = tracemalloc.get_traced_memory()[0]
            events = await _turns(live, audio, MAX_PENDING)
            assert [e["type"] for e in events].count("conversation.item.added") == MAX_PENDING
            # a decode or VAD already running on its thread ends there, then lets go
            deadline = asyncio.get_running_loop().time() + 60
            while (left := tracemalloc.get_traced_memory()[0] - base) >= one_turn / 2:
                if asyncio.get_running_loop().time() > deadline:
                    break
                await asyncio.sleep(0.2)
            return int(left)
        finally:
            tracemalloc.stop()

    gc.collect()
    gc.disable()
    try:
        left = _with_lane_busy(live, session)
    finally:
        gc.enable()
    assert left < one_turn / 2, f"{left / 1e6:.1f} MB still held after the session ended"
