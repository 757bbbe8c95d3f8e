"""Shared fixtures: one real gateway (uvicorn on a loopback port) per test session, on the real
embedded models, and helpers to make and measure audio."""

from __future__ import annotations

import asyncio
import io
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av
import httpx
import numpy as np
import pytest

# Every gateway a test starts opens its Wyoming listener on a free port, never 10300 (tests of
# several worktrees run at once on one machine); LiveServer.wyoming_port says which.
os.environ.setdefault("GATEWAY_WYOMING__PORT", "0")

from gateway.config import Settings  # noqa: E402

from .support.live import LiveServer  # noqa: E402
from .support.media import mux  # noqa: E402
from .support.process import free_port  # noqa: E402
from .support.wer import wer  # noqa: E402

__all__ = ["LiveServer", "free_port", "wer"]  # where the tests have always found them

PASSAGE = (
    "The little robot walked slowly across the kitchen floor. It picked up a red cup and placed "
    "it carefully on the wooden table. Then it turned toward the window and watched the rain "
    "falling on the green garden outside."
)


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def missing_tool(reason: str) -> None:
    """A tool the test needs is not installed: skip locally, but fail under `CI=true`, where a
    skipped check would pass the run without checking anything."""
    if in_ci():
        pytest.fail(f"{reason} (CI=true: a missing tool fails the run)", pytrace=False)
    pytest.skip(reason, allow_module_level=True)


def models_dir() -> Path:
    """Where the models are: GATEWAY_MODELS__DIR when set, else the default cache."""
    return Path(Settings().models.dir)


@pytest.fixture(scope="session")
def server() -> Iterator[LiveServer]:
    """The default configuration, as `make run` serves it (no keys)."""
    with LiveServer(Settings()) as live:
        yield live


@pytest.fixture(scope="session")
def base_url(server: LiveServer) -> str:
    return server.url + "/v1"


def decode(data: bytes) -> tuple[np.ndarray, int]:
    """Any container -> (mono float32 samples at the stream's own rate, that rate)."""
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.audio[0]
        rate = stream.codec_context.sample_rate
        chunks = [f.to_ndarray().astype(np.float32).mean(axis=0) if f.format.is_planar
                  else f.to_ndarray().astype(np.float32).reshape(-1)
                  for f in container.decode(stream)]  # fmt: skip
    return np.concatenate(chunks), rate


def encode(audio: np.ndarray, rate: int, container: str, codec: str, fmt: str = "fltp",
           layout: str = "mono") -> bytes:  # fmt: skip
    """Encode float32 samples (channels x n or n) into a container, for upload tests."""
    buf = io.BytesIO()
    with av.open(buf, "w", format=container) as out:
        stream = out.add_stream(codec, rate=rate)
        stream.layout = layout
        stream.format = fmt
        size = stream.codec_context.frame_size or 1024
        channels = 1 if audio.ndim == 1 else audio.shape[0]
        data = audio.reshape(channels, -1)

        def frames() -> Iterator[av.AudioFrame]:
            for i in range(0, data.shape[1], size):
                chunk = data[:, i : i + size]
                if chunk.shape[1] < size and stream.codec_context.frame_size:
                    chunk = np.pad(chunk, ((0, 0), (0, size - chunk.shape[1])))
                if fmt == "s16":
                    arr = (np.clip(chunk, -1, 1) * 32767).astype(np.int16).T.reshape(1, -1)
                elif fmt.endswith("p"):
                    arr = np.ascontiguousarray(chunk.astype(np.float32))
                else:
                    arr = chunk.astype(np.float32).T.reshape(1, -1)
                frame = av.AudioFrame.from_ndarray(arr, format=fmt, layout=layout)
                frame.sample_rate, frame.pts = rate, i
                yield frame

        mux(out, stream, frames())
    return buf.getvalue()


def spoken_16k(texts: list[str], voice: str = "jf_alpha") -> list[np.ndarray]:
    """Each text spoken by the embedded Kokoro on the CPU, as the gateway hands audio to Whisper
    (16-bit WAV decoded to 16 kHz mono)."""
    from gateway.audio.decode import decode_audio

    from .support.roundtrip import kokoro as loaded

    kokoro, handle = loaded()  # one load for the session (seconds on 2 busy cores): only read
    out = []
    for text in texts:
        audio = np.concatenate([kokoro.run(handle, u) for u in kokoro.plan(text, voice, 1.0)])
        out.append(decode_audio(encode(audio, 24000, "wav", "pcm_s16le", "s16")))
    return out


def tone_wav(seconds: float = 1.0, rate: int = 16000) -> bytes:
    """A 440 Hz tone as 16-bit mono WAV: audio that decodes, with no speech in it."""
    x = (0.2 * np.sin(2 * np.pi * 440 * np.arange(int(rate * seconds)) / rate)).astype(np.float32)
    return encode(x, rate, "wav", "pcm_s16le", "s16")


def run_asgi(app: Any, work: Any) -> Any:
    """Run `work(client)` against the app in-process (lifespan included), with no socket."""

    async def main() -> Any:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
            async with httpx.AsyncClient(transport=transport, base_url="http://t",
                                         timeout=300) as client:  # fmt: skip
                return await work(client)

    return asyncio.run(main())


def metric(text: str, name: str, **labels: str) -> float:
    """The sum of a Prometheus metric's samples whose labels include `labels`."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total
