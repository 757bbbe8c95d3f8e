"""The Realtime API's transcription sessions with the real models and the `openai` SDK's own
realtime client as the caller, against the session's gateway: two spoken sentences with a pause
give two turns (server VAD), or two explicit commits; the beta schema; μ-law input; and the
metrics and status the turns leave behind."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from ..conftest import LiveServer, metric, wer
from ..support.realtime_util import (
    COMPLETED,
    MODEL,
    SENTENCES,
    TURN_ORDER,
    appends,
    clip,
    events_until,
    ga_session,
    pcm16,
    per_item,
    raw,
    recv,
    sdk,
    send,
    sentences,
    shape,
    ulaw,
)

INTENT = {"intent": "transcription"}


def _check_turns(events: list[dict[str, Any]], order: list[str]) -> list[str]:
    """Each item's events in `order`, items chained by previous_item_id, completed in order,
    deltas adding up to the completed text; returns the transcripts."""
    items = per_item(events)
    committed = [e for e in events if e["type"] == "input_audio_buffer.committed"]
    chain = [None] + [c["item_id"] for c in committed[:-1]]
    assert [c.get("previous_item_id") for c in committed] == chain
    done = [e["item_id"] for e in events if e["type"] == COMPLETED]
    assert done == [c["item_id"] for c in committed]  # turns complete in order
    texts = []
    for item in done:
        mine = items[item]
        assert shape(mine) == order, shape(mine)
        deltas = "".join(e["delta"] for e in mine if e["type"].endswith(".delta"))
        (completed,) = (e for e in mine if e["type"] == COMPLETED)
        assert deltas == completed["transcript"] and completed["content_index"] == 0
        texts.append(completed["transcript"])
    return texts


def _matches(texts: list[str]) -> None:
    assert len(texts) == len(SENTENCES), texts
    for said, heard in zip(SENTENCES, texts, strict=True):
        assert wer(said, heard) <= 0.25, (said, heard)


async def _vad_session(url: str) -> list[dict[str, Any]]:
    payloads = appends(pcm16(clip(1.5)), 4800)  # 100 ms of 24 kHz PCM16
    async with sdk(url).realtime.connect(extra_query=INTENT) as conn:
        created = (await conn.recv()).model_dump()
        assert created["type"] == "session.created", created
        await conn.session.update(session=ga_session())  # type: ignore[arg-type]
        updated = (await conn.recv()).model_dump(exclude_unset=True)
        assert updated["type"] == "session.updated", updated
        given = updated["session"]["audio"]["input"]
        assert given["transcription"]["model"] == MODEL
        assert given["turn_detection"]["silence_duration_ms"] == 500  # OpenAI's defaults
        for audio in payloads:
            await conn.input_audio_buffer.append(audio=audio)
        return await events_until(conn, 2)


@pytest.mark.slow
def test_two_sentences_with_a_pause_are_two_turns(server: LiveServer) -> None:
    before = httpx.get(server.url + "/metrics").text
    events = asyncio.run(_vad_session(server.url))
    _matches(_check_turns(events, TURN_ORDER))
    started = [e for e in events if e["type"] == "input_audio_buffer.speech_started"]
    stopped = [e for e in events if e["type"] == "input_audio_buffer.speech_stopped"]
    a, _ = sentences()
    # speech begins after the 0.5 s of silence and the second after the first and its pause
    assert 300 <= started[0]["audio_start_ms"] <= 700, started
    assert stopped[0]["audio_end_ms"] < started[1]["audio_start_ms"] < stopped[1]["audio_end_ms"]
    assert started[1]["audio_start_ms"] >= 500 + len(a) * 1000 // 16000 + 1000, started
    after = httpx.get(server.url + "/metrics").text
    for name, labels in (
        ("gateway_live_turns_total", {"outcome": "completed"}),
        ("gateway_live_turn_latency_seconds_count", {}),
        ("gateway_requests_total", {"operation": "turn", "status": "200"}),
    ):
        grew = metric(after, name, protocol="realtime", **labels) - \
            metric(before, name, protocol="realtime", **labels)  # fmt: skip
        assert grew == 2, name
    heard = metric(after, "gateway_live_audio_seconds_total", protocol="realtime") - \
        metric(before, "gateway_live_audio_seconds_total", protocol="realtime")  # fmt: skip
    assert abs(heard - len(clip(1.5)) / 16000) < 0.1
    row = httpx.get(server.url + "/v1/scheduler").json()["traffic"]["realtime"]
    assert row["listening"] == "/v1/realtime" and row["turns"] >= 2 and row["audio_s"] > 0
    assert row["turn_latency_s"] > 0 and row["connections"] == 0


async def _commit_session(url: str, payloads: list[list[str]], session: dict[str, Any],
                          beta: bool = False) -> list[dict[str, Any]]:  # fmt: skip
    async with sdk(url).realtime.connect(extra_query=INTENT) as conn:
        await conn.recv()  # session.created
        if beta:  # the SDK's types know the GA schema only: the beta event goes as sent
            await conn.send_raw(__import__("json").dumps(
                {"type": "transcription_session.update", "session": session}))  # fmt: skip
        else:
            await conn.session.update(session=session)  # type: ignore[arg-type]
        updated = (await conn.recv()).model_dump(exclude_unset=True)
        for turn in payloads:
            for audio in turn:
                await conn.input_audio_buffer.append(audio=audio)
            await conn.input_audio_buffer.commit()
        return [updated, *await events_until(conn, len(payloads))]


MANUAL_ORDER = TURN_ORDER[2:]  # no speech_started/stopped: the client commits


def test_turn_detection_null_with_explicit_commits(server: LiveServer) -> None:
    payloads = [appends(pcm16(s), 4800) for s in sentences()]
    updated, *events = asyncio.run(_commit_session(server.url, payloads, ga_session(None)))
    assert updated["session"]["audio"]["input"]["turn_detection"] is None
    assert not [e for e in events if "speech_" in e["type"]]
    _matches(_check_turns(events, MANUAL_ORDER))


@pytest.mark.slow
def test_ulaw_input(server: LiveServer) -> None:
    payloads = [appends(ulaw(s), 800) for s in sentences()]  # 100 ms of 8 kHz μ-law
    session = ga_session(None, "audio/pcmu")
    updated, *events = asyncio.run(_commit_session(server.url, payloads, session))
    assert updated["session"]["audio"]["input"]["format"] == {"type": "audio/pcmu", "rate": 8000}
    _matches(_check_turns(events, MANUAL_ORDER))


@pytest.mark.slow
def test_beta_schema(server: LiveServer) -> None:
    session = {"input_audio_format": "pcm16",
               "input_audio_transcription": {"model": MODEL, "language": "en"},
               "turn_detection": None}  # fmt: skip
    payloads = [appends(pcm16(s), 4800) for s in sentences()]
    updated, *events = asyncio.run(_commit_session(server.url, payloads, session, beta=True))
    assert updated["type"] == "transcription_session.updated", updated
    assert updated["session"]["input_audio_format"] == "pcm16"
    assert updated["session"]["input_audio_transcription"]["model"] == MODEL
    order = [k.replace("item.added", "item.created") for k in MANUAL_ORDER]
    _matches(_check_turns(events, order))


def test_model_names_resolve_as_for_http(server: LiveServer) -> None:
    async def main() -> list[dict[str, Any]]:
        out = []
        async with raw(server.url) as ws:
            await recv(ws)
            for model in ("whisper-1", "gpt-4o-transcribe", "gpt-4o-mini-transcribe", MODEL,
                          "whisper-huge"):  # fmt: skip
                session = {"type": "transcription",
                           "audio": {"input": {"transcription": {"model": model}}}}  # fmt: skip
                await send(ws, type="session.update", session=session)
                out.append(await recv(ws))
        return out

    answers = asyncio.run(main())
    assert [a["type"] for a in answers] == ["session.updated"] * 4 + ["error"]
    assert answers[-1]["error"]["code"] == "model_not_found"
    assert answers[-1]["error"]["param"] == "model"


def test_a_client_that_announces_the_beta_gets_beta_names_from_the_start(
    server: LiveServer,
) -> None:
    async def main(**kw: Any) -> dict[str, Any]:
        async with raw(server.url, **kw) as ws:
            return await recv(ws)

    for kw in ({"additional_headers": {"OpenAI-Beta": "realtime=v1"}},
               {"subprotocols": ["realtime", "openai-beta.realtime-v1"]}):  # fmt: skip
        created = asyncio.run(main(**kw))
        assert created["type"] == "transcription_session.created", created
        assert created["session"]["input_audio_format"] == "pcm16"
    assert asyncio.run(main())["type"] == "session.created"
