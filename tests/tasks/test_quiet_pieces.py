"""Speech input with nothing to say (`---`, `***`, `...`, `$`, `1.`, emoji alone) is a short
silence in the requested format, on every front door: Open WebUI reads a chat reply aloud piece
by piece, and such a piece used to answer 400 `nothing_to_speak`, shown to the user as an
error. Empty or whitespace-only input stays a 400."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import httpx
import numpy as np
import pytest
from wyoming.tts import Synthesize

from ..conftest import LiveServer, decode
from ..support.wyoming_util import audio_of, client, read_until, shape, stream_reply

PIECES = ["---", "***", "...", "$", "1.", "\U0001f600\U0001f389"]
RATE = 24000


def _speech(server: LiveServer, text: str, **over: Any) -> httpx.Response:
    body = {"model": "tts-1", "voice": "alloy", "input": text, **over}
    return httpx.post(server.url + "/v1/audio/speech", json=body, timeout=300)


def _is_short_silence(audio: np.ndarray) -> None:
    assert 0.04 <= len(audio) / RATE <= 1.0, len(audio) / RATE
    assert float(np.max(np.abs(audio))) < 1e-3


@pytest.mark.parametrize("text", PIECES)
def test_a_piece_with_nothing_to_say_is_a_short_silence(server: LiveServer, text: str) -> None:
    r = _speech(server, text, response_format="wav")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("audio/wav")
    audio, rate = decode(r.content)
    assert rate == RATE
    _is_short_silence(audio)


@pytest.mark.parametrize("fmt", ["mp3", "opus", "aac", "flac", "pcm"])
def test_every_audio_format(server: LiveServer, fmt: str) -> None:
    r = _speech(server, "---", response_format=fmt)
    assert r.status_code == 200, r.text
    if fmt == "pcm":
        _is_short_silence(np.frombuffer(r.content, "<i2").astype(np.float32) / 32768)
    else:
        audio, rate = decode(r.content)
        assert rate in (RATE, 48000)  # Opus plays at 48 kHz
        assert 0.04 <= len(audio) / rate <= 1.2 and float(np.max(np.abs(audio))) < 1e-2


def test_streamed_audio_and_sse(server: LiveServer) -> None:
    raw = _speech(server, "...", stream=True, response_format="mp3")
    assert raw.status_code == 200, raw.text
    audio, rate = decode(raw.content)
    assert 0.04 <= len(audio) / rate <= 1.2
    sse = _speech(server, "...", stream_format="sse", response_format="pcm")
    assert sse.status_code == 200, sse.text
    events = [json.loads(x[6:]) for x in sse.text.splitlines() if x.startswith("data: ")]
    assert [e["type"] for e in events][-1] == "speech.audio.done", events
    assert events[-1]["usage"]["input_tokens"] == 0
    pcm = b"".join(base64.b64decode(e["audio"]) for e in events[:-1])
    _is_short_silence(np.frombuffer(pcm, "<i2").astype(np.float32) / 32768)


def test_timestamps_give_no_words(server: LiveServer) -> None:
    r = _speech(server, "***", timestamps=True, response_format="wav")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["words"] == [] and 0.04 <= body["duration"] <= 1.0
    audio, _ = decode(base64.b64decode(body["audio"]))
    _is_short_silence(audio)
    sse = _speech(server, "***", timestamps=True, stream_format="sse", response_format="pcm")
    events = [json.loads(x[6:]) for x in sse.text.splitlines() if x.startswith("data: ")]
    assert sse.status_code == 200 and events[-1]["type"] == "speech.audio.done", sse.text
    assert all(e["words"] == [] for e in events[:-1]) and len(events) >= 2
    vtt = _speech(server, "***", timestamps=True, response_format="vtt")
    assert vtt.status_code == 200 and vtt.text.strip() == "WEBVTT", vtt.text
    srt = _speech(server, "***", timestamps=True, response_format="srt")
    assert srt.status_code == 200 and srt.text == "", srt.text


@pytest.mark.parametrize("text", ["", " ", "\n\t "])
def test_empty_input_is_still_a_400(server: LiveServer, text: str) -> None:
    r = _speech(server, text)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == "empty_input"


def test_wyoming_synthesize_and_stream(server: LiveServer) -> None:
    async def main() -> tuple[list[Any], list[Any]]:
        async with client(server.wyoming_port) as c:
            await c.write_event(Synthesize("---").event())
            plain = await read_until(c, "audio-stop")
            await stream_reply(c, ["Thanks for asking. ", "\n\n", "---"])
            streamed = await read_until(c, "synthesize-stopped")
        return plain, streamed

    plain, streamed = asyncio.run(main())
    assert shape(plain) == ["audio-start", "audio-chunk", "audio-stop"], shape(plain)
    pcm = np.frombuffer(audio_of(plain), "<i2").astype(np.float32) / 32768
    _is_short_silence(pcm)
    assert "error" not in shape(streamed), [(e.type, e.data) for e in streamed]
    assert shape(streamed)[-2:] == ["audio-stop", "synthesize-stopped"]
    assert len(audio_of(streamed)) / 2 / RATE > 1.0  # the sentence, then the pause
