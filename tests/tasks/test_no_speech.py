"""Audio with no speech in it, longer than one 30 s window, on every front door: an empty
transcript in each format's empty form (the VAD finds no region, so there is no window to run;
it used to be a 500 / `internal_error`). And a WAV whose header claims an impossible sample rate
is the caller's mistake: 400."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import struct
import wave
from typing import Any

import httpx
import numpy as np
import pytest
from wyoming.asr import Transcribe

from ..conftest import LiveServer
from ..support.realtime_util import COMPLETED, events_until, ga_session, sdk
from ..support.wyoming_util import client, read_until, send_utterance, shape

RATE = 16000
rng = np.random.default_rng(29)


def _wav(audio: np.ndarray, rate: int = RATE) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes())
    return buf.getvalue()


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * RATE), np.float32)


def hum(seconds: float) -> np.ndarray:
    """Mains hum: 50 Hz and its harmonics, as a cheap microphone picks it up."""
    t = np.arange(int(seconds * RATE)) / RATE
    return (0.05 * np.sin(2 * np.pi * 50 * t) + 0.02 * np.sin(2 * np.pi * 150 * t)).astype(
        np.float32
    )


def noise(seconds: float, level: float) -> np.ndarray:
    return (level * rng.standard_normal(int(seconds * RATE))).astype(np.float32)


def _usage(r: Any) -> dict[str, Any]:
    """whisper-1's usage, `{"type": "duration", "seconds"}` (each case's own seconds)."""
    seconds = r.json()["usage"]["seconds"]
    assert seconds > 0
    return {"type": "duration", "seconds": seconds}


def _post(server: LiveServer, audio: bytes, path: str = "transcriptions", **form: Any) -> Any:
    return httpx.post(f"{server.url}/v1/audio/{path}", files={"file": ("a.wav", audio)},
                      data={"model": "whisper-1", **form}, timeout=300)  # fmt: skip


@pytest.mark.parametrize(
    "name, audio",
    [
        ("31 s of silence", lambda: silence(31)),
        ("60 s of hum", lambda: hum(60)),
        ("60 s of noise", lambda: noise(60, 0.1)),
        ("10 min of faint noise", lambda: noise(600, 0.003)),
    ],  # fmt: skip
)
def test_no_speech_is_an_empty_transcript(server: LiveServer, name: str, audio: Any) -> None:
    r = _post(server, _wav(audio()))
    assert r.status_code == 200, (name, r.status_code, r.text)
    assert r.json() == {"text": "", "usage": _usage(r)}, name


EMPTY = {
    "json": lambda r: r.json() == {"text": "", "usage": _usage(r)},
    "text": lambda r: r.text == "",
    "srt": lambda r: r.text == "",
    "vtt": lambda r: (
        r.text.strip() == "WEBVTT" and r.headers["content-type"].startswith("text/vtt")
    ),
}


@pytest.mark.parametrize("fmt", list(EMPTY))
def test_every_format_has_its_empty_form(server: LiveServer, fmt: str) -> None:
    r = _post(server, _wav(silence(31)), response_format=fmt)
    assert r.status_code == 200, r.text
    assert EMPTY[fmt](r), r.text


def test_verbose_json_is_empty_with_its_duration(server: LiveServer) -> None:
    r = _post(
        server,
        _wav(silence(45)),
        response_format="verbose_json",
        **{"timestamp_granularities[]": ["word", "segment"]},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["text"] == "" and body["segments"] == [] and body["words"] == []
    assert body["task"] == "transcribe" and body["duration"] == pytest.approx(45, abs=0.01)
    named = _post(server, _wav(silence(31)), response_format="verbose_json", language="de")
    assert named.status_code == 200, named.text
    assert named.json()["language"] == "german" and named.json()["text"] == ""


def test_translation_of_no_speech_is_empty(server: LiveServer) -> None:
    r = _post(server, _wav(silence(31)), "translations")
    assert r.status_code == 200, r.text
    assert r.json() == {"text": ""}


def test_streamed_no_speech_is_one_done_event(server: LiveServer) -> None:
    r = _post(server, _wav(silence(31)), stream="true")
    assert r.status_code == 200, r.text
    events = [json.loads(line[6:]) for line in r.text.splitlines() if line.startswith("data: ")]
    assert [e["type"] for e in events] == ["transcript.text.done"], events
    assert events[0]["text"] == "" and events[0]["usage"]["output_tokens"] == 0


def test_wyoming_silent_utterance_is_an_empty_transcript(server: LiveServer) -> None:
    async def main() -> list[Any]:
        async with client(server.wyoming_port) as c:
            await send_utterance(c, _wav(silence(60))[44:], samples=16000,
                                 transcribe=Transcribe(language="en"))  # fmt: skip
            return await read_until(c, "transcript-stop")

    events = asyncio.run(main())
    assert "error" not in [e.type for e in events], [(e.type, e.data) for e in events]
    assert shape(events)[-2:] == ["transcript", "transcript-stop"]
    (final,) = [e for e in events if e.type == "transcript"]
    assert final.data["text"] == ""


def test_realtime_silent_turn_completes_empty(server: LiveServer) -> None:
    pcm = np.zeros(60 * 24000, "<i2").tobytes()  # 60 s of PCM16 at 24 kHz

    async def main() -> list[dict[str, Any]]:
        async with sdk(server.url).realtime.connect(
            extra_query={"intent": "transcription"}
        ) as conn:
            await conn.recv()  # session.created
            await conn.session.update(session=ga_session(turn_detection=None))  # type: ignore[arg-type]
            await conn.recv()  # session.updated
            step = 24000 * 2 * 5  # 5 s an append
            for i in range(0, len(pcm), step):
                await conn.input_audio_buffer.append(
                    audio=base64.b64encode(pcm[i : i + step]).decode()
                )
            await conn.input_audio_buffer.commit()
            return await events_until(conn, 1)

    events = asyncio.run(main())
    (done,) = [e for e in events if e["type"] == COMPLETED]
    assert done["transcript"] == ""
    assert not [e for e in events if "failed" in e["type"]], events


def _mulaw_wav(rate: int) -> bytes:
    """A G.711 μ-law WAV (format tag 7) with `rate` in its header and a second of silence."""
    data = bytes([0xFF]) * 8000
    fmt = struct.pack("<HHIIHH", 7, 1, rate, rate, 1, 8)
    return (b"RIFF" + struct.pack("<I", 4 + 8 + len(fmt) + 8 + len(data)) + b"WAVE"
            + b"fmt " + struct.pack("<I", len(fmt)) + fmt
            + b"data" + struct.pack("<I", len(data)) + data)  # fmt: skip


def test_mulaw_wav_claiming_1_hz_is_a_400(server: LiveServer) -> None:
    r = _post(server, _mulaw_wav(1))
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == "invalid_audio" and r.json()["error"]["param"] == "file"
    ok = _post(server, _mulaw_wav(8000))  # the same file with a true header is fine
    assert ok.status_code == 200 and ok.json() == {"text": "", "usage": _usage(ok)}, ok.text
