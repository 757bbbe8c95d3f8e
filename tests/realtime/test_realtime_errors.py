"""Bad input and limits on /v1/realtime against a gateway with API keys and small realtime
limits: each bad event gets OpenAI's `error` event and the session goes on; the key is checked
before the upgrade (401), also in the browsers' subprotocol form; idle, too old and one session
too many are closed with a reason; a client that leaves takes its queued turn back; and none of
it touches another session or the HTTP API."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus

from gateway.config import RealtimeSettings, SchedulerSettings, ServerSettings, Settings

from ..conftest import PASSAGE, LiveServer, encode, metric, spoken_16k
from ..support.realtime_util import (
    COMPLETED,
    MODEL,
    appends,
    pcm16,
    raw,
    recv,
    sdk,
    send,
    sentences,
)

KEY = "sk-realtime-test"
AUTH = {"Authorization": f"Bearer {KEY}"}
SECOND = base64.b64encode(bytes(48000)).decode()  # 1 s of silence, PCM16 at 24 kHz


@pytest.fixture(scope="module")
def keyed() -> Iterator[LiveServer]:
    settings = Settings(
        server=ServerSettings(api_keys=KEY),
        scheduler=SchedulerSettings(cpu_background_slots=0),
        realtime=RealtimeSettings(
            max_sessions=2, idle_timeout_s=2.0, max_buffer_s=4.0, max_append_mb=0.5
        ),  # fmt: skip
    )
    with LiveServer(settings) as live:
        yield live


def _still_serving(server: LiveServer) -> None:
    assert httpx.get(server.url + "/v1/models", headers=AUTH).status_code == 200

    async def session() -> dict[str, Any]:
        async with raw(server.url, additional_headers=AUTH) as ws:
            return await recv(ws)

    assert asyncio.run(session())["type"] == "session.created"


def _manual(**extra: Any) -> dict[str, Any]:
    inp = {"transcription": {"model": MODEL}, "turn_detection": None, **extra}
    return {"type": "session.update", "session": {"type": "transcription", "audio": {"input": inp}}}


def _append(audio: str) -> dict[str, Any]:
    return {"type": "input_audio_buffer.append", "audio": audio}


NESTED = "[" * 100000 + "]" * 100000
BAD: dict[str, tuple[list[Any], str | None, str | None]] = {
    "malformed JSON": (['{"type": "session.update", '], "invalid_json", None),
    "JSON that is not an object": (["[1, 2]"], "invalid_json", None),
    "deeply nested JSON": ([NESTED], "invalid_json", None),
    "binary frame": ([b"\x00\x01"], "invalid_json", None),
    "no type": ([{"audio": SECOND}], "missing_required_parameter", "type"),
    "unknown event type": ([{"type": "response.create"}], "invalid_value", "type"),
    "bad base64": ([_append("not base64!")], "invalid_base64", "audio"),
    "audio not a string": ([_append(123)], "invalid_type", "audio"),  # type: ignore[arg-type]
    "unsupported format": ([_manual(format={"type": "audio/wav"})], "invalid_value",
                           "session.audio.input.format"),
    "pcm at another rate": ([_manual(format={"type": "audio/pcm", "rate": 16000})],
                            "invalid_value", "session.audio.input.format"),
    "unsupported beta format": (
        [{"type": "transcription_session.update", "session": {"input_audio_format": "pcm24"}}],
        "invalid_value", "session.input_audio_format"),
    "a conversation session": (
        [{"type": "session.update", "session": {"type": "realtime"}}], "invalid_value",
        "session.type"),
    "bad VAD threshold": ([_manual(turn_detection={"type": "server_vad", "threshold": "high"})],
                          "invalid_value", "session.audio.input.turn_detection.threshold"),
    "unknown model": ([_manual(transcription={"model": "whisper-huge"})], "model_not_found",
                      "model"),
    "language the model cannot": ([_manual(transcription={"model": MODEL, "language": "de"})],
                                  None, "language"),  # as HTTP answers it: no code
    "commit under 100 ms": ([_manual(), _append(base64.b64encode(bytes(4800)).decode()),
                             {"type": "input_audio_buffer.commit"}],
                            "input_audio_buffer_commit_empty", None),
    "append over its limit": ([_append("A" * (512 * 1024 + 4))],
                              "input_audio_buffer_append_too_large", "audio"),
    "buffer over its limit": ([_manual()] + [_append(SECOND)] * 5,
                              "input_audio_buffer_too_large", "audio"),
    "one append longer than the buffer (server VAD)": (
        [_append(base64.b64encode(bytes(48000 * 5)).decode())],
        "input_audio_buffer_too_large", "audio"),
}  # fmt: skip


async def _bad(url: str, events: list[Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Send the events (the last with an event_id), then a good update: (the first error,
    everything after it up to the update's answer)."""
    async with raw(url, additional_headers=AUTH) as ws:
        assert (await recv(ws))["type"] == "session.created"
        for i, ev in enumerate(events):
            if isinstance(ev, dict) and i == len(events) - 1:
                ev = {**ev, "event_id": "evt_client_1"}
            await ws.send(ev if isinstance(ev, str | bytes) else json.dumps(ev))
        seen = []
        while not seen or seen[-1]["type"] != "error":
            seen.append(await recv(ws))
        await send(ws, type="input_audio_buffer.clear")
        await send(ws, **_manual())
        after = [await recv(ws)]
        while after[-1]["type"] != "session.updated":
            after.append(await recv(ws))
        return seen[-1], after


@pytest.mark.parametrize("case", list(BAD))
def test_bad_event_gets_an_error_event_and_the_session_stays(keyed: LiveServer,
                                                            case: str) -> None:  # fmt: skip
    events, code, param = BAD[case]
    error, after = asyncio.run(_bad(keyed.url, events))
    assert error["type"] == "error" and error["event_id"], error
    body = error["error"]
    assert set(body) == {"type", "code", "message", "param", "event_id"}, body
    assert body["code"] == code and body["param"] == param and body["message"], body
    assert body["type"] == "invalid_request_error"
    if isinstance(events[-1], dict):
        assert body["event_id"] == "evt_client_1"
    # the session goes on (more errors of the same kind may still be on their way)
    assert {e["error"]["code"] for e in after if e["type"] == "error"} <= {code}, after
    assert after[-1]["type"] == "session.updated"


# -- authentication -------------------------------------------------------------------------------


def _refused(url: str, **kw: Any) -> InvalidStatus:
    async def main() -> None:
        async with raw(url, **kw):
            pass

    with pytest.raises(InvalidStatus) as info:
        asyncio.run(main())
    return info.value


@pytest.mark.parametrize("how", ["no key", "wrong bearer", "wrong subprotocol key"])
def test_a_missing_or_wrong_key_is_refused_before_the_upgrade(keyed: LiveServer,
                                                              how: str) -> None:  # fmt: skip
    kw: dict[str, Any] = {
        "no key": {},
        "wrong bearer": {"additional_headers": {"Authorization": "Bearer sk-nope"}},
        "wrong subprotocol key": {"subprotocols": ["realtime", "openai-insecure-api-key.sk-no"]},
    }[how]
    refusal = _refused(keyed.url, **kw)
    assert refusal.response.status_code == 401
    body = json.loads(refusal.response.body or b"{}")
    assert body["error"]["code"] == "invalid_api_key"


def test_the_key_as_a_subprotocol_is_accepted_and_realtime_answered(keyed: LiveServer) -> None:
    async def main() -> tuple[str | None, dict[str, Any]]:
        protocols = ["realtime", f"openai-insecure-api-key.{KEY}"]
        async with raw(keyed.url, subprotocols=protocols) as ws:  # type: ignore[arg-type]
            return ws.subprotocol, await recv(ws)

    subprotocol, first = asyncio.run(main())
    assert subprotocol == "realtime" and first["type"] == "session.created"


def test_the_sdk_sends_its_key_as_a_bearer_header(keyed: LiveServer) -> None:
    async def main() -> str:
        async with sdk(keyed.url, KEY).realtime.connect(extra_query={"intent": "transcription"}
                                                        ) as conn:  # fmt: skip
            return (await conn.recv()).type

    assert asyncio.run(main()) == "session.created"


# -- sessions closed with a reason ----------------------------------------------------------------


async def _closed(ws: Any) -> tuple[list[dict[str, Any]], ConnectionClosed]:
    """Events up to the close, and the close."""
    events = []
    try:
        while True:
            events.append(await recv(ws))
    except ConnectionClosed as exc:
        return events, exc


@pytest.mark.parametrize("query", ["", "?intent=conversation", "?model=gpt-realtime"])
def test_a_conversation_session_is_refused_with_a_reason(keyed: LiveServer, query: str) -> None:
    async def main() -> tuple[list[dict[str, Any]], ConnectionClosed]:
        async with raw(keyed.url, query, additional_headers=AUTH) as ws:
            return await _closed(ws)

    events, closed = asyncio.run(main())
    assert [e["error"]["code"] for e in events] == ["unsupported_intent"]
    assert closed.rcvd is not None and closed.rcvd.code == 1008
    _still_serving(keyed)


@pytest.mark.slow
def test_an_idle_session_is_closed_with_a_reason(keyed: LiveServer) -> None:
    async def main() -> tuple[list[dict[str, Any]], ConnectionClosed]:
        async with raw(keyed.url, additional_headers=AUTH) as ws:
            return await _closed(ws)

    events, closed = asyncio.run(main())
    assert [e["type"] for e in events] == ["session.created", "error"]
    assert events[-1]["error"]["code"] == "idle_timeout"
    assert closed.rcvd is not None and closed.rcvd.reason
    _still_serving(keyed)


def test_one_session_too_many_is_refused_and_the_others_go_on(keyed: LiveServer) -> None:
    async def main() -> tuple[list[dict[str, Any]], ConnectionClosed, list[str]]:
        async with raw(keyed.url, additional_headers=AUTH) as a, \
                raw(keyed.url, additional_headers=AUTH) as b:  # fmt: skip
            await recv(a), await recv(b)
            async with raw(keyed.url, additional_headers=AUTH) as c:
                events, closed = await _closed(c)
            kinds = []
            for ws in (a, b):
                await send(ws, **_manual())
                kinds.append((await recv(ws))["type"])
        return events, closed, kinds

    events, closed, kinds = asyncio.run(main())
    assert [e["error"]["code"] for e in events] == ["session_limit_reached"]
    assert closed.rcvd is not None and closed.rcvd.code == 1013
    assert kinds == ["session.updated", "session.updated"]
    _still_serving(keyed)  # the two have left: a session opens again


@pytest.mark.slow
def test_a_session_older_than_its_maximum_is_closed() -> None:
    settings = Settings(realtime=RealtimeSettings(max_session_s=2.0, idle_timeout_s=30.0))

    async def main(url: str) -> tuple[list[dict[str, Any]], ConnectionClosed]:
        async with raw(url) as ws:
            for _ in range(600):  # busy, never idle: appends of silence until it is closed
                try:
                    await send(ws, **_append(SECOND))
                except ConnectionClosed:
                    break
                await asyncio.sleep(0.1)
            return await _closed(ws)

    with LiveServer(settings) as live:
        events, closed = asyncio.run(main(live.url))
    assert events[0]["type"] == "session.created"
    assert events[-1]["type"] == "error" and events[-1]["error"]["code"] == "session_expired"
    assert closed.rcvd is not None and closed.rcvd.reason == "session expired"


# -- a client that leaves; other sessions and HTTP --------------------------------------------


@pytest.mark.slow
def test_client_gone_with_its_turn_queued_takes_it_back(keyed: LiveServer) -> None:
    sched = keyed.gateway.scheduler
    before = httpx.get(keyed.url + "/metrics", headers=AUTH).text
    long_clip = encode(np.tile(spoken_16k([PASSAGE])[0], 2), 16000, "wav", "pcm_s16le", "s16")
    payloads = appends(pcm16(sentences()[0]), 4800)

    async def main() -> None:
        async with httpx.AsyncClient(base_url=keyed.url, timeout=600, headers=AUTH) as http:
            files = {"file": ("long.wav", long_clip, "audio/wav")}
            post = asyncio.ensure_future(http.post("/v1/audio/transcriptions", files=files,
                                                   data={"model": "whisper-1"}))  # fmt: skip
            try:
                while not sched.snapshot().busy["cpu"]:
                    assert not post.done(), post.result().text
                    await asyncio.sleep(0.05)
                async with raw(keyed.url, additional_headers=AUTH) as ws:
                    await send(ws, **_manual())
                    for audio in payloads:
                        await send(ws, **_append(audio))
                    await send(ws, type="input_audio_buffer.commit")
                    while not sched.snapshot().queues["interactive"].depth:
                        await asyncio.sleep(0.01)
                while sched.snapshot().queues["interactive"].depth:  # taken back, not run
                    await asyncio.sleep(0.01)
            finally:
                post.cancel()
                while sched.snapshot().busy["cpu"]:  # no decode outlives the server
                    await asyncio.sleep(0.05)

    asyncio.run(main())
    after = httpx.get(keyed.url + "/metrics", headers=AUTH).text
    labels = {"level": "interactive", "engine": MODEL}
    assert (metric(after, "gateway_requests_cancelled_total", **labels)
            - metric(before, "gateway_requests_cancelled_total", **labels)) == 1  # fmt: skip
    assert (metric(after, "gateway_requests_total", protocol="realtime", status="499")
            - metric(before, "gateway_requests_total", protocol="realtime", status="499")) == 1  # fmt: skip
    _still_serving(keyed)


@pytest.mark.slow
def test_bad_events_in_one_session_leave_another_and_http_alone(keyed: LiveServer) -> None:
    payloads = appends(pcm16(sentences()[0]), 4800)
    # the event of each case that is wrong on its own (a fresh session's buffer is empty)
    junk = [events[-1] for case, (events, _, _) in BAD.items() if case != "buffer over its limit"]

    async def noisy() -> int:
        errors = 0
        async with raw(keyed.url, additional_headers=AUTH) as ws:
            await recv(ws)
            for ev in junk:
                await ws.send(ev if isinstance(ev, str | bytes) else json.dumps(ev))
                while (await recv(ws))["type"] != "error":
                    pass
                errors += 1
        return errors

    async def good() -> list[dict[str, Any]]:
        async with raw(keyed.url, additional_headers=AUTH) as ws:
            await recv(ws)
            await send(ws, **_manual())
            for audio in payloads:
                await send(ws, **_append(audio))
            await send(ws, type="input_audio_buffer.commit")
            out = [await recv(ws)]
            while out[-1]["type"] not in (COMPLETED, "error"):
                out.append(await recv(ws))
            return out

    async def main() -> tuple[int, list[dict[str, Any]], int]:
        async with httpx.AsyncClient(base_url=keyed.url, headers=AUTH) as http:
            errors, events, models = await asyncio.gather(noisy(), good(),
                                                          http.get("/v1/models"))  # fmt: skip
        return errors, events, models.status_code

    errors, events, status = asyncio.run(main())
    assert errors == len(junk) and status == 200
    # an event type a client makes up is counted, but never becomes a label of its own
    assert 'operation="response.create"' not in httpx.get(keyed.url + "/metrics", headers=AUTH).text
    assert events[-1]["type"] == COMPLETED, events
    assert "robot" in events[-1]["transcript"].lower()
    _still_serving(keyed)


@pytest.mark.slow
def test_shutdown_closes_open_sessions() -> None:
    live = LiveServer(Settings()).__enter__()

    async def main() -> tuple[list[dict[str, Any]], ConnectionClosed]:
        async with raw(live.url) as ws:
            assert (await recv(ws))["type"] == "session.created"
            stopping = asyncio.ensure_future(asyncio.to_thread(live.__exit__, None, None, None))
            closed = await _closed(ws)
            await stopping
            return closed

    events, closed = asyncio.run(main())
    # uvicorn closes open WebSockets itself (1012, service restart) before the app's shutdown,
    # whose own close (1001, with an `error` event) covers servers that do not
    assert closed.rcvd is not None and closed.rcvd.code in (1001, 1012), closed
    assert [e["error"]["code"] for e in events] in ([], ["shutting_down"])
    assert not live.thread.is_alive()


@pytest.mark.slow
def test_a_turn_as_long_as_the_buffer_is_cut_there(keyed: LiveServer) -> None:
    a, _ = sentences()
    speech = np.concatenate([np.zeros(8000, np.float32), a, a, np.zeros(16000, np.float32)])
    payloads = appends(pcm16(speech), 4800)
    vad = {"type": "server_vad", "silence_duration_ms": 500}

    async def main() -> list[dict[str, Any]]:
        async with raw(keyed.url, additional_headers=AUTH) as ws:
            await recv(ws)
            await send(ws, **_manual(turn_detection=vad))
            for audio in payloads:
                await send(ws, **_append(audio))
            out = [await recv(ws)]
            while sum(e["type"] == COMPLETED for e in out) < 2:
                out.append(await recv(ws))
                assert out[-1]["type"] != "error", out
            return out

    events = asyncio.run(main())
    starts = [e["audio_start_ms"] for e in events if e["type"].endswith("speech_started")]
    stops = [e["audio_end_ms"] for e in events if e["type"].endswith("speech_stopped")]
    assert len(starts) == len(stops) == 2, events
    assert stops[0] - starts[0] == 4000  # max_buffer_s: the first turn is cut at 4 s of speech
    assert stops[1] > starts[1] >= stops[0]
