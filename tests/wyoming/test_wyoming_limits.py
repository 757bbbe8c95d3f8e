"""Bad input over Wyoming: each gets its `error` event (the connection stays) or a closed
connection (a frame the server cannot trust, an idle peer), and afterwards the server still
answers describe and HTTP. A second gateway with a one-slot CPU lane and small queues shows queue
full, queue timeout and a client that goes away with its unit queued."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable, Iterator

import httpx
import numpy as np
import pytest
from wyoming.asr import Transcribe
from wyoming.audio import AudioChunk, AudioStart
from wyoming.event import Event
from wyoming.info import Describe, Info
from wyoming.ping import Ping
from wyoming.tts import Synthesize, SynthesizeChunk, SynthesizeStart, SynthesizeVoice

from gateway.config import QueuePolicy, SchedulerSettings, Settings, WyomingSettings

from ..conftest import PASSAGE, LiveServer, encode, metric
from ..support.wyoming_util import COMMAND, client, pcm, read_until, send_utterance, spoken

LIMIT = Settings().server.max_input_chars


def _still_serving(server: LiveServer) -> None:
    async def describe() -> Event | None:
        async with client(server.wyoming_port) as c:
            await c.write_event(Describe().event())
            return await c.read_event()

    event = asyncio.run(describe())
    assert event is not None and Info.is_type(event.type)
    assert httpx.get(server.url + "/health").status_code == 200


BAD_EVENTS: dict[str, tuple[list[Event], str]] = {
    "unknown event": ([Event("frobnicate", {"x": 1})], "unknown_event"),
    "unknown model": ([Transcribe(name="whisper-huge").event()], "model_not_found"),
    "language the model cannot": (
        [Transcribe(name="tiny.en", language="de").event()],
        "invalid_request_error",
    ),
    "unknown voice": (
        [Synthesize("Hello.", SynthesizeVoice(name="nobody")).event()],
        "invalid_voice",
    ),
    "audio before audio-start": (
        [AudioChunk(16000, 2, 1, b"\0" * 2048).event()],
        "audio_before_start",
    ),
    "wrong width": ([AudioStart(16000, 5, 1).event()], "invalid_width"),
    "partial sample": (
        [AudioStart(16000, 2, 2).event(), AudioChunk(16000, 2, 2, b"\0" * 6).event()],
        "invalid_audio",
    ),
    "audio over the limit": (
        [AudioStart(16000, 2, 1).event()] + [AudioChunk(16000, 2, 1, b"\0" * 32000).event()] * 121,
        "audio_too_long",
    ),
    "text over the limit": ([Synthesize("a" * (LIMIT + 1)).event()], "string_above_max_length"),
    "streamed text over the limit": (
        [SynthesizeStart().event()] + [SynthesizeChunk("word " * 100).event()] * (LIMIT // 500 + 1),
        "string_above_max_length",
    ),
    "chunk before synthesize-start": ([SynthesizeChunk("Hi.").event()], "chunk_before_start"),
}


@pytest.mark.parametrize("case", list(BAD_EVENTS))
def test_bad_event_gets_an_error_event_and_the_connection_stays(
    server: LiveServer, case: str
) -> None:
    events, code = BAD_EVENTS[case]

    async def main() -> tuple[list[Event], Event | None]:
        async with client(server.wyoming_port) as c:
            for event in events:
                await c.write_event(event)
            errors = await read_until(c, "error")
            await c.write_event(Describe().event())  # the same connection goes on
            return errors, await c.read_event()

    errors, after = asyncio.run(main())
    assert errors[-1].type == "error" and errors[-1].data["code"] == code, errors[-1]
    assert errors[-1].data["text"]
    assert after is not None and Info.is_type(after.type)
    _still_serving(server)


def _frame(header: dict, body: bytes = b"") -> bytes:
    return json.dumps(header).encode() + b"\n" + body


BAD_FRAMES: dict[str, bytes] = {
    "not JSON": b"this is not json\n",
    "not an object": b"[1, 2, 3]\n",
    "header too long": b'{"type": "describe", "pad": "' + b"x" * 70_000 + b'"}\n',
    "payload too long": _frame({"type": "audio-chunk", "payload_length": 1 << 30}),
    "data too long": _frame({"type": "synthesize", "data_length": 1 << 30}),
    "length not a number": _frame({"type": "describe", "data_length": "12"}),
    "negative length": _frame({"type": "describe", "payload_length": -5}),
    "data not an object": _frame({"type": "describe", "data_length": 2}, b"[]"),
}


async def _raw(port: int, data: bytes) -> bytes:
    """Send bytes, then read to the end: returns once the server closes the connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), 120)  # a guard, not a measurement
    finally:
        writer.close()


@pytest.mark.parametrize("case", list(BAD_FRAMES))
def test_bad_frame_closes_that_connection_only(server: LiveServer, case: str) -> None:
    async def main() -> tuple[bytes, Event | None]:
        async with client(server.wyoming_port) as other:  # a connection already open goes on
            answer = await _raw(server.wyoming_port, BAD_FRAMES[case])
            await other.write_event(Describe().event())
            return answer, await other.read_event()

    answer, other = asyncio.run(main())
    assert b'"malformed_frame"' in answer  # told why, then closed (read() returned)
    assert other is not None and Info.is_type(other.type)
    _still_serving(server)


@pytest.mark.slow
def test_disconnect_mid_utterance_leaves_the_rest_serving(server: LiveServer) -> None:
    async def main() -> None:
        async with client(server.wyoming_port) as c:
            await c.write_event(Transcribe(language="en").event())
            await c.write_event(AudioStart(16000, 2, 1).event())
            await c.write_event(AudioChunk(16000, 2, 1, pcm(spoken(COMMAND))[:16000]).event())

    asyncio.run(main())
    _still_serving(server)


# -- a gateway with one CPU slot, a one-unit interactive queue and a short idle timeout -----------


@pytest.fixture(scope="module")
def small() -> Iterator[LiveServer]:
    settings = Settings(
        scheduler=SchedulerSettings(
            cpu_background_slots=0,
            interactive=QueuePolicy(max_queue_size=1, default_timeout_s=2.0),
        ),
        wyoming=WyomingSettings(port=0, idle_timeout_s=1.0),
    )
    with LiveServer(settings) as live:
        yield live


@pytest.mark.slow
def test_idle_connection_is_closed(small: LiveServer) -> None:
    assert asyncio.run(_raw(small.wyoming_port, b"")) == b""  # read() returned: closed
    _still_serving(small)


def _with_lane_busy(server: LiveServer, work: Callable[[], object]) -> object:
    """Run `work` while a long HTTP transcription holds the only CPU slot."""
    clip = encode(np.tile(spoken(PASSAGE), 3), 16000, "wav", "pcm_s16le", "s16")

    async def main() -> object:
        async with httpx.AsyncClient(base_url=server.url, timeout=600) as http:
            files = {"file": ("long.wav", clip, "audio/wav")}
            post = asyncio.ensure_future(http.post("/v1/audio/transcriptions", files=files))
            try:
                while not server.gateway.scheduler.snapshot().busy["cpu"]:
                    assert not post.done(), post.result().text
                    await asyncio.sleep(0.05)
                return await work()  # type: ignore[misc]
            finally:
                post.cancel()
                # The window running now ends on its thread: wait for it, so no decode outlives
                # the server (a CTranslate2 decode still running at exit crashes the interpreter).
                while server.gateway.scheduler.snapshot().busy["cpu"]:
                    await asyncio.sleep(0.05)

    return asyncio.run(main())


async def _utterance(port: int) -> list[Event]:
    data = pcm(spoken(COMMAND))  # before connecting: the idle timeout is short here
    async with client(port) as c:
        await send_utterance(c, data, transcribe=Transcribe(language="en"))
        return await read_until(c, "transcript-stop")


@pytest.mark.slow
def test_queue_full_and_queue_timeout_are_error_events(small: LiveServer) -> None:
    async def two() -> list[list[Event]]:
        return list(await asyncio.gather(_utterance(small.wyoming_port),
                                         _utterance(small.wyoming_port)))  # fmt: skip

    answers = _with_lane_busy(small, two)
    codes = sorted(a[-1].data.get("code") for a in answers)  # type: ignore[union-attr]
    assert codes == ["queue_full", "queue_timeout"], answers
    _still_serving(small)


@pytest.mark.slow
def test_client_gone_with_its_unit_queued_takes_it_back(small: LiveServer) -> None:
    sched = small.gateway.scheduler
    before = httpx.get(small.url + "/metrics").text

    data = pcm(spoken(COMMAND))

    async def leave() -> None:
        async with client(small.wyoming_port) as c:
            await send_utterance(c, data, transcribe=Transcribe(language="en"))
            while not sched.snapshot().queues["interactive"].depth:
                await asyncio.sleep(0.01)
        while sched.snapshot().queues["interactive"].depth:  # taken back, not run
            await asyncio.sleep(0.01)

    _with_lane_busy(small, leave)
    after = httpx.get(small.url + "/metrics").text
    labels = {"level": "interactive", "engine": "whisper-base"}
    assert (metric(after, "gateway_requests_cancelled_total", **labels)
            - metric(before, "gateway_requests_cancelled_total", **labels)) == 1  # fmt: skip
    assert (metric(after, "gateway_requests_total", protocol="wyoming", status="499")
            - metric(before, "gateway_requests_total", protocol="wyoming", status="499")) == 1  # fmt: skip
    _still_serving(small)


# -- bounds per listener and per connection (issue 29, item 8) -------------------------------------

MAX_CONNECTIONS, MAX_PENDING, IDLE_S = 4, 3, 3.0


@pytest.fixture(scope="module")
def bounded() -> Iterator[LiveServer]:
    settings = Settings(
        scheduler=SchedulerSettings(cpu_background_slots=0),
        wyoming=WyomingSettings(port=0, idle_timeout_s=IDLE_S, max_connections=MAX_CONNECTIONS,
                                max_pending=MAX_PENDING),  # fmt: skip
    )
    with LiveServer(settings) as live:
        yield live


def test_connections_past_the_limit_get_an_error_event(bounded: LiveServer) -> None:
    async def main() -> tuple[Event | None, Event | None]:
        held = [client(bounded.wyoming_port) for _ in range(MAX_CONNECTIONS)]
        try:
            for c in held:
                await c.connect()
                await c.write_event(Describe().event())
                assert (await c.read_event()) is not None  # its handler runs: it is counted
            async with client(bounded.wyoming_port) as extra:
                refused, after = await extra.read_event(), await extra.read_event()
        finally:
            for c in held:
                await c.disconnect()
        return refused, after

    refused, after = asyncio.run(main())
    assert refused is not None and refused.type == "error", refused
    assert refused.data["code"] == "too_many_connections"
    assert after is None  # and closed
    _still_serving(bounded)  # those that left made room


def test_pings_do_not_keep_an_idle_connection_open(bounded: LiveServer) -> None:
    async def main() -> float:
        c = client(bounded.wyoming_port)
        await c.connect()
        t0 = time.monotonic()
        try:
            while time.monotonic() - t0 < IDLE_S + 30:
                try:
                    await c.write_event(Ping("still here").event())
                    pong = await c.read_event()
                except ConnectionError:  # closed by the server between two pings
                    pong = None
                if pong is None:
                    return time.monotonic() - t0
                assert pong.type == "pong", pong
                await asyncio.sleep(0.2)
        finally:
            with contextlib.suppress(ConnectionError):
                await c.disconnect()
        raise AssertionError("pings kept the connection open")

    elapsed = asyncio.run(main())
    assert IDLE_S * 0.9 <= elapsed < IDLE_S + 30, elapsed


def test_pending_replies_are_capped_and_all_cancelled_on_close(bounded: LiveServer) -> None:
    """While the only CPU slot is busy, one connection queues MAX_PENDING utterances; one more
    gets `too_many_pending`. Then it closes: every one of its replies is taken back (none runs,
    none fails), not only the latest."""
    sched = bounded.gateway.scheduler
    data = pcm(spoken(COMMAND))
    labels = {"protocol": "wyoming", "operation": "transcribe"}
    before = httpx.get(bounded.url + "/metrics").text

    async def flood() -> list[Event]:
        async with client(bounded.wyoming_port) as c:
            for _ in range(MAX_PENDING + 1):
                await send_utterance(c, data, transcribe=Transcribe(language="en"))
            answer = await read_until(c, "transcript")
            while not sched.snapshot().queues["interactive"].depth:  # the first one waits
                await asyncio.sleep(0.01)
        deadline = time.monotonic() + 30
        while sched.snapshot().queues["interactive"].depth:  # taken back, not run
            assert time.monotonic() < deadline, "a reply still waits for the slot"
            await asyncio.sleep(0.01)
        return answer

    answer = _with_lane_busy(bounded, flood)
    assert [e.type for e in answer] == ["error"], answer  # type: ignore[union-attr]
    assert answer[0].data["code"] == "too_many_pending"  # type: ignore[index]
    while bounded.gateway.traffic.connections["wyoming"]:
        time.sleep(0.05)
    time.sleep(2.0)  # the slot is free: a reply left behind would start now
    after = httpx.get(bounded.url + "/metrics").text

    def count(name: str, **match: str) -> float:
        return metric(after, name, **match) - metric(before, name, **match)

    # the first reply's unit was queued: taken back, never run; the others never got that far
    unit = {"level": "interactive", "engine": "whisper-base"}
    assert count("gateway_requests_cancelled_total", **unit) == 1
    assert count("gateway_queue_wait_seconds_count", **unit) == 0
    replies = {s: count("gateway_requests_total", status=s, **labels) for s in ("200", "499", "500")}
    assert replies == {"200": 0, "499": MAX_PENDING, "500": 0}, replies
    _still_serving(bounded)
