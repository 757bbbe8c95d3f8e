"""OpenAI semantics that must tell the truth (issue #10, items 7-10):

- `stream_format: "sse"` alone streams SSE events (delta, then done with usage);
  an explicit `stream_format: "audio"` streams the raw format;
- an error after the 200 ends an SSE stream with an `error` event (speech and transcription);
- a translation is joined as English, whatever the source language's script;
- audio under 0.1 s is a 400 `audio_too_short`; verbose_json names every Whisper language.

Whisper is replaced by a stand-in where the test is about the API, not the model, so these run in
seconds; speech uses the real Kokoro.
"""

from __future__ import annotations

import asyncio
import base64
import json
import threading
import time
from typing import Any

import httpx
import numpy as np
import pytest

from gateway.app import create_app
from gateway.config import Settings
from gateway.engines.whisper import LANGUAGES, TranscribeResult, Window
from gateway.tasks import transcription as stt_task

from ..conftest import encode, run_asgi, tone_wav
from ..support.faults import crash_on_call

HOLD_S = 60  # an upper bound on each hold, so that a broken build fails instead of hanging


def _events(body: bytes) -> list[dict]:
    out = []
    for block in body.decode().split("\n\n"):
        if block.startswith("data: "):
            out.append(json.loads(block[len("data: ") :]))
    return out


def _segment(text: str) -> dict[str, Any]:
    return {"start": 0.0, "end": 1.0, "text": text, "tokens": [1], "temperature": 0.0,
            "avg_logprob": -0.1, "compression_ratio": 1.0, "no_speech_prob": 0.0}  # fmt: skip


def _fake_whisper(app: Any, results: list[Any]) -> list[Any]:
    """whisper-base answers from `results` in turn (an exception is raised); nothing is loaded."""
    engine = app.state.gateway.models["whisper-base"].engine
    calls: list[Any] = []

    def run(_handle: Any, unit: Any) -> Any:
        calls.append(unit)
        item = results[min(len(calls), len(results)) - 1]
        if isinstance(item, BaseException):
            raise item
        return item

    engine.load = lambda device: object()
    engine.run = run
    return calls


# -- 7. stream_format: "sse" alone streams SSE ----------------------------------------------------


def test_speech_stream_format_sse_alone_streams_events_with_usage() -> None:
    app = create_app()
    text = "Hello there. This is the second sentence."

    async def work(client: httpx.AsyncClient) -> httpx.Response:
        body = {"model": "tts-1", "voice": "alloy", "input": text, "stream_format": "sse",
                "response_format": "pcm"}  # fmt: skip
        return await client.post("/v1/audio/speech", json=body)

    r = run_asgi(app, work)
    assert r.status_code == 200, r.text[:300]
    assert r.headers["content-type"].startswith("text/event-stream"), r.headers
    events = _events(r.content)
    deltas = [e for e in events if e["type"] == "speech.audio.delta"]
    assert deltas and events[-1]["type"] == "speech.audio.done", [e["type"] for e in events]
    pcm = b"".join(base64.b64decode(e["audio"]) for e in deltas)
    seconds = len(pcm) / 2 / 24000
    assert seconds > 1.0
    usage = events[-1]["usage"]
    assert set(usage) == {"input_tokens", "output_tokens", "total_tokens"}
    assert 10 <= usage["input_tokens"] <= 4 * len(text)  # phoneme tokens
    assert usage["output_tokens"] == pytest.approx(seconds * 20, abs=2)
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]


@pytest.mark.slow
def test_speech_stream_format_audio_streams_raw_and_default_is_whole() -> None:
    app = create_app()

    async def work(client: httpx.AsyncClient) -> list[httpx.Response]:
        base = {"model": "tts-1", "voice": "alloy", "input": "One. Two."}
        return [
            await client.post("/v1/audio/speech", json={**base, "stream_format": "audio"}),
            await client.post("/v1/audio/speech", json=base),
        ]

    streamed, whole = run_asgi(app, work)
    assert streamed.status_code == 200 and whole.status_code == 200
    assert streamed.headers["content-type"] == "audio/mpeg"
    assert "content-length" not in streamed.headers  # streamed (chunked), not one body
    assert whole.headers["content-type"] == "audio/mpeg"
    assert int(whole.headers["content-length"]) == len(whole.content) > 1000


# -- 8. an error after the 200 ends the SSE stream with an `error` event ---------------------------


def test_speech_sse_error_after_200_is_an_error_event() -> None:
    app = create_app()
    crash_on_call(app.state.gateway.models["kokoro"].engine, 2)

    async def work(client: httpx.AsyncClient) -> httpx.Response:
        body = {"model": "tts-1", "voice": "alloy", "stream_format": "sse",
                "input": "One sentence here. Then another one. And a third."}  # fmt: skip
        return await client.post("/v1/audio/speech", json=body)

    r = run_asgi(app, work)
    assert r.status_code == 200
    events = _events(r.content)
    _assert_error_after_delta(events, "speech", "internal_error")
    assert "simulated" not in json.dumps(events[-1])  # no internals leak out


def test_transcription_sse_error_after_200_is_an_error_event(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app = create_app()
    _fake_whisper(app, [TranscribeResult([_segment(" First window.")], "en"),
                        KeyError("simulated engine crash")])  # fmt: skip
    _two_windows(monkeypatch)

    async def work(client: httpx.AsyncClient) -> httpx.Response:
        return await client.post("/v1/audio/transcriptions", files={"file": ("a.wav", tone_wav(2))},
                                 data={"model": "whisper-1", "stream": "true"})  # fmt: skip

    r = run_asgi(app, work)
    assert r.status_code == 200, r.text
    events = _events(r.content)
    assert events[0] == {"type": "transcript.text.delta", "delta": "First window."}
    _assert_error_after_delta(events, "transcript", "internal_error")


def _assert_error_after_delta(events: list[dict], kind: str, code: str) -> None:
    done = "speech.audio.done" if kind == "speech" else "transcript.text.done"
    assert events[0]["type"].endswith(".delta"), events[:1]
    assert events[-1]["type"] == "error", [e["type"] for e in events]
    err = events[-1]["error"]
    assert err["code"] == code and err["type"] == "server_error" and err["message"], err
    assert not any(e["type"] == done for e in events)


def _two_windows(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two windows whatever the audio: the first runs before the 200, the second after it."""
    monkeypatch.setattr(stt_task, "plan_windows",
                        lambda audio, _w, _vad=None: [Window(0, len(audio) // 2),
                                           Window(len(audio) // 2, len(audio))])  # fmt: skip


@pytest.mark.parametrize("kind", ["speech", "transcription"])
@pytest.mark.slow
def test_sse_queue_timeout_after_200_comes_from_the_queue(
    kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The second unit of a streamed request waits in the real queue behind another request's
    unit (one CPU slot) past its X-Queue-Timeout: the scheduler expires it, the engine never
    runs it, and the stream, already 200, ends with a `queue_timeout` error event.

    The order is made by events, not by durations: the first unit holds until the other request
    is queued (so that request takes the slot next), and the other request's unit holds until the
    streamed response has ended (so the second unit can only leave the queue by expiring)."""
    settings = Settings()
    settings.scheduler.cpu_slots = 1
    settings.scheduler.cpu_background_slots = 0
    app = create_app(settings)
    gw = app.state.gateway
    first_running, streamed_done = threading.Event(), threading.Event()
    kokoro = gw.models["kokoro"].engine
    real_speak = kokoro.run
    runs: list[str] = []

    def first_unit(handle: Any, unit: Any, real: Any) -> Any:
        runs.append("first")
        first_running.set()
        deadline = time.monotonic() + HOLD_S
        while gw.scheduler.queued() == 0 and time.monotonic() < deadline:
            time.sleep(0.01)  # until the other request's unit waits for this slot
        return real(handle, unit)

    def other_request(handle: Any, unit: Any) -> Any:
        runs.append("other")
        streamed_done.wait(HOLD_S)
        return real_speak(handle, unit)

    def then(real: Any, after_first: Any) -> Any:
        def run(handle: Any, unit: Any) -> Any:
            if not runs:
                return first_unit(handle, unit, real)
            if after_first is not None and runs == ["first"]:
                return after_first(handle, unit)
            runs.append("more")
            return real(handle, unit)

        return run

    if kind == "speech":
        kokoro.run = then(real_speak, other_request)
    else:
        first = TranscribeResult([_segment(" First window.")], "en")
        _fake_whisper(app, [first, first])
        whisper = gw.models["whisper-base"].engine
        whisper.run = then(whisper.run, None)
        kokoro.run = other_request  # the other request is speech
        _two_windows(monkeypatch)
    timeout = {"X-Queue-Timeout": "1"}

    async def work(client: httpx.AsyncClient) -> tuple[httpx.Response, httpx.Response]:
        if kind == "speech":
            streamed = client.post("/v1/audio/speech", headers=timeout, json={
                "model": "tts-1", "voice": "alloy", "stream_format": "sse",
                "input": "One sentence here. Then another one."})  # fmt: skip
        else:
            streamed = client.post("/v1/audio/transcriptions", headers=timeout,
                                   files={"file": ("a.wav", tone_wav(2))},
                                   data={"model": "whisper-1", "stream": "true"})  # fmt: skip
        task = asyncio.ensure_future(streamed)
        while not first_running.is_set():
            await asyncio.sleep(0.01)
        other = asyncio.ensure_future(client.post("/v1/audio/speech", json={
            "model": "tts-1", "voice": "alloy", "input": "Hold on."}))  # fmt: skip
        r = await task
        streamed_done.set()
        return r, await other

    r, other = run_asgi(app, work)
    assert r.status_code == 200 and other.status_code == 200, (r.text[:300], other.text[:300])
    _assert_error_after_delta(_events(r.content), kind, "queue_timeout")
    assert runs == ["first", "other"], runs  # the second unit never reached an engine


# -- 9. a translation joins its text as English -----------------------------------------------------


def test_translation_from_a_language_without_spaces_joins_with_spaces() -> None:
    segments = [_segment(" Good morning."), _segment(" The weather is nice today.")]
    translated = stt_task.Transcript("translate", "ja", 3.0, segments)
    assert translated.text == "Good morning. The weather is nice today."
    transcribed = stt_task.Transcript("transcribe", "ja", 3.0,
                                      [_segment("おはよう。"), _segment("いい天気です。")])  # fmt: skip
    assert transcribed.text == "おはよう。いい天気です。"


def test_translation_over_http_joins_windows_with_spaces(monkeypatch: pytest.MonkeyPatch) -> None:
    app = create_app()
    _fake_whisper(app, [TranscribeResult([_segment(" Good morning.")], "zh"),
                        TranscribeResult([_segment(" See you tomorrow.")], "zh")])  # fmt: skip
    monkeypatch.setattr(stt_task, "plan_windows",
                        lambda audio, _w, _vad=None: [Window(0, len(audio) // 2),
                                           Window(len(audio) // 2, len(audio))])  # fmt: skip

    async def work(client: httpx.AsyncClient) -> httpx.Response:
        return await client.post("/v1/audio/translations", files={"file": ("a.wav", tone_wav(2))},
                                 data={"model": "whisper-1"})  # fmt: skip

    r = run_asgi(app, work)
    assert r.status_code == 200, r.text
    assert r.json()["text"] == "Good morning. See you tomorrow."


# -- 10. audio_too_short; every language named --------------------------------------------------------


@pytest.mark.parametrize("samples", [1, 160, 1599])
def test_audio_shorter_than_a_tenth_of_a_second_is_400_audio_too_short(samples: int) -> None:
    app = create_app()
    calls = _fake_whisper(app, [TranscribeResult([], "en")])
    wav = encode(np.zeros((1, samples), np.float32), 16000, "wav", "pcm_s16le", "s16")

    async def work(client: httpx.AsyncClient) -> httpx.Response:
        return await client.post("/v1/audio/transcriptions", files={"file": ("a.wav", wav)},
                                 data={"model": "whisper-1"})  # fmt: skip

    r = run_asgi(app, work)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["code"] == "audio_too_short" and err["param"] == "file"
    assert err["type"] == "invalid_request_error" and "0.1" in err["message"]
    assert not calls


def test_every_whisper_language_has_its_full_name() -> None:
    assert LANGUAGES, "faster-whisper's language table is empty"
    for code in LANGUAGES:
        name = stt_task.language_name(code)
        assert name != code and name.isascii() and name == name.lower(), (code, name)
    names = {c: stt_task.language_name(c) for c in LANGUAGES}
    assert names["sw"] == "swahili" and names["yue"] == "cantonese" and names["jw"] == "javanese"
    assert len(set(names.values())) == len(names)


@pytest.mark.parametrize("code,name", [("sw", "swahili"), ("yue", "cantonese"), ("th", "thai")])
def test_verbose_json_reports_the_full_language_name(code: str, name: str) -> None:
    app = create_app()
    _fake_whisper(app, [TranscribeResult([_segment(" x")], code)])

    async def work(client: httpx.AsyncClient) -> httpx.Response:
        return await client.post("/v1/audio/transcriptions", files={"file": ("a.wav", tone_wav())},
                                 data={"model": "whisper-1",
                                       "response_format": "verbose_json"})  # fmt: skip

    r = run_asgi(app, work)
    assert r.status_code == 200, r.text
    assert r.json()["language"] == name
