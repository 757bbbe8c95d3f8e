"""A Realtime API caller for tests: the `openai` SDK's own realtime client (and the `websockets`
library for what the SDK will not send, such as broken JSON), and audio as clients send it:
PCM16 at 24 kHz, G.711 at 8 kHz, in 100 ms appends."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import lru_cache
from typing import Any

import av
import numpy as np
from openai import AsyncOpenAI
from websockets.asyncio.client import ClientConnection, connect

from ..conftest import spoken_16k

READ_TIMEOUT = 300.0  # a guard against a hang on a busy machine, not a measurement
SENTENCES = ("The little robot walked slowly across the kitchen floor.",
             "It picked up a red cup and placed it on the wooden table.")  # fmt: skip
MODEL = "whisper-tiny.en"  # the small model keeps the suite short
TURN_ORDER = ["input_audio_buffer.speech_started", "input_audio_buffer.speech_stopped",
              "input_audio_buffer.committed", "conversation.item.added",
              "conversation.item.input_audio_transcription.delta",
              "conversation.item.input_audio_transcription.completed"]  # fmt: skip
COMPLETED = "conversation.item.input_audio_transcription.completed"


@lru_cache(maxsize=1)
def sentences() -> tuple[np.ndarray, np.ndarray]:
    """The two sentences spoken by our TTS, 16 kHz float32."""
    a, b = spoken_16k(list(SENTENCES))
    return a, b


def clip(pause_s: float = 1.5) -> np.ndarray:
    """Both sentences with a pause between them, and a little silence around them."""
    a, b = sentences()
    quiet = np.zeros
    return np.concatenate([quiet(8000, np.float32), a, quiet(int(16000 * pause_s), np.float32),
                           b, quiet(16000, np.float32)])  # fmt: skip


def resample(audio: np.ndarray, rate: int) -> np.ndarray:
    """16 kHz -> `rate`, low-passed as a sound card would (8 kHz without one is aliased)."""
    resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
    frame = av.AudioFrame.from_ndarray(audio.reshape(1, -1), format="flt", layout="mono")
    frame.sample_rate = 16000
    out = [*resampler.resample(frame), *resampler.resample(None)]
    return np.concatenate([f.to_ndarray().reshape(-1) for f in out])


def pcm16(audio: np.ndarray) -> bytes:
    """16 kHz float32 -> PCM16 little-endian at 24 kHz (`audio/pcm`)."""
    return (np.clip(resample(audio, 24000), -1, 1) * 32767).astype("<i2").tobytes()


def ulaw(audio: np.ndarray) -> bytes:
    """16 kHz float32 -> G.711 μ-law at 8 kHz (`audio/pcmu`), the textbook encoder."""
    x = np.round(np.clip(resample(audio, 8000), -1, 1) * 32767).astype(np.int32)
    sign = np.where(x < 0, 0x80, 0)
    magnitude = np.minimum(np.abs(x), 32635) + 0x84
    exponent = np.floor(np.log2(magnitude)).astype(np.int32) - 7
    mantissa = (magnitude >> (exponent + 3)) & 0x0F
    return (~(sign | (exponent << 4) | mantissa) & 0xFF).astype(np.uint8).tobytes()


def appends(data: bytes, bytes_per_100ms: int) -> list[str]:
    """The audio as the base64 payloads of 100 ms appends."""
    step = bytes_per_100ms
    return [base64.b64encode(data[i : i + step]).decode() for i in range(0, len(data), step)]


def sdk(url: str, key: str = "unused") -> AsyncOpenAI:
    return AsyncOpenAI(base_url=url + "/v1", api_key=key)


def ga_session(turn_detection: Any = "default", fmt: str = "audio/pcm") -> dict[str, Any]:
    rate = 24000 if fmt == "audio/pcm" else 8000
    inp: dict[str, Any] = {"format": {"type": fmt, "rate": rate},
                           "transcription": {"model": MODEL, "language": "en"}}  # fmt: skip
    if turn_detection != "default":
        inp["turn_detection"] = turn_detection
    return {"type": "transcription", "audio": {"input": inp}}


async def events_until(conn: Any, done: int, last: str = COMPLETED) -> list[dict[str, Any]]:
    """Server events (as dicts) until `done` events of type `last` (or an error)."""
    out: list[dict[str, Any]] = []
    while sum(e["type"] == last for e in out) < done:
        ev = await asyncio.wait_for(conn.recv(), READ_TIMEOUT)
        out.append(ev if isinstance(ev, dict) else ev.model_dump(exclude_unset=True))
        assert out[-1]["type"] != "error", out
    return out


def shape(events: list[dict[str, Any]]) -> list[str]:
    """Event types with runs of one type collapsed: the order, whatever the delta counts."""
    kinds = [e["type"] for e in events]
    return [k for i, k in enumerate(kinds) if i == 0 or k != kinds[i - 1]]


def per_item(events: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Events by the item they belong to, in arrival order."""
    out: dict[str, list[dict[str, Any]]] = {}
    for e in events:
        item = e.get("item_id") or (e.get("item") or {}).get("id")
        if item:
            out.setdefault(item, []).append(e)
    return out


@asynccontextmanager
async def raw(url: str, query: str = "?intent=transcription",
              **kw: Any) -> AsyncIterator[ClientConnection]:  # fmt: skip
    """A plain WebSocket to /v1/realtime, for what the SDK will not send."""
    ws_url = url.replace("http://", "ws://") + "/v1/realtime" + query
    async with connect(ws_url, open_timeout=30, max_size=None, **kw) as ws:
        yield ws


async def recv(ws: ClientConnection) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), READ_TIMEOUT))
    return data


async def send(ws: ClientConnection, **event: Any) -> None:
    await ws.send(json.dumps(event))
