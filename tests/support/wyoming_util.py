"""A Wyoming caller for tests: the `wyoming` library's own AsyncTcpClient, and audio as Home
Assistant (or any other client) would send it."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from wyoming.asr import Transcribe
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.client import AsyncTcpClient
from wyoming.event import Event
from wyoming.tts import SynthesizeChunk, SynthesizeStart, SynthesizeStop, SynthesizeVoice

from ..conftest import spoken_16k

READ_TIMEOUT = 300.0  # a guard against a hang on a busy machine, not a measurement
COMMAND = "Switch off the lights in the kitchen."
REPLY_PIECES = ["The kitchen lights are ", "now on. The living ro", "om lights are off. ",
                "Is there anything else I can", " do for you?"]  # fmt: skip
REPLY = "".join(REPLY_PIECES)


def client(port: int) -> AsyncTcpClient:
    return AsyncTcpClient("127.0.0.1", port, connect_timeout=30, read_timeout=READ_TIMEOUT)


@lru_cache(maxsize=4)
def spoken(text: str) -> np.ndarray:
    """Text spoken by the embedded Kokoro, as 16 kHz mono float32."""
    return spoken_16k([text])[0]


def pcm(audio: np.ndarray, rate: int = 16000, width: int = 2, channels: int = 1) -> bytes:
    """16 kHz float32 -> interleaved PCM of the given rate, width and channels."""
    if rate != 16000:
        n = int(len(audio) * rate / 16000)
        audio = np.interp(np.arange(n) * 16000 / rate, np.arange(len(audio)), audio)
    scale = float(2 ** (8 * width - 1) - 1)
    ints = np.round(np.clip(audio, -1, 1) * scale).astype(np.int64)
    frames = np.repeat(ints[:, None], channels, axis=1).reshape(-1)
    if width == 1:
        return (frames + 128).astype(np.uint8).tobytes()
    if width == 3:
        raw = frames.astype("<i4").tobytes()
        return b"".join(raw[i : i + 3] for i in range(0, len(raw), 4))
    return frames.astype({2: "<i2", 4: "<i4"}[width]).tobytes()


async def send_utterance(c: AsyncTcpClient, data: bytes, rate: int = 16000, width: int = 2,
                         channels: int = 1, samples: int = 1024,
                         transcribe: Transcribe | None = None) -> None:  # fmt: skip
    if transcribe is not None:
        await c.write_event(transcribe.event())
    await c.write_event(AudioStart(rate, width, channels).event())
    step = samples * width * channels
    for i in range(0, len(data), step):
        await c.write_event(AudioChunk(rate, width, channels, data[i : i + step]).event())
    await c.write_event(AudioStop().event())


async def read_until(c: AsyncTcpClient, *last: str) -> list[Event]:
    """Events up to one of the types in `last` (or an error); fails on a closed connection."""
    out: list[Event] = []
    while True:
        event = await c.read_event()
        assert event is not None, f"connection closed after {[e.type for e in out]}"
        out.append(event)
        if event.type in last or event.type == "error":
            return out


def shape(events: list[Event]) -> list[str]:
    """Event types with runs of one type collapsed: the order, whatever the chunk counts."""
    return [e.type for i, e in enumerate(events) if i == 0 or e.type != events[i - 1].type]


async def stream_reply(c: AsyncTcpClient, pieces: list[str], voice: str = "jf_alpha") -> None:
    """A streamed reply as Home Assistant sends it: start, chunks, the whole text once more as
    `synthesize` (for old servers), stop."""
    from wyoming.tts import Synthesize

    v = SynthesizeVoice(name=voice)
    await c.write_event(SynthesizeStart(voice=v).event())
    for piece in pieces:
        await c.write_event(SynthesizeChunk(piece).event())
    await c.write_event(Synthesize("".join(pieces), voice=v).event())
    await c.write_event(SynthesizeStop().event())


def audio_of(events: list[Event]) -> bytes:
    return b"".join(e.payload or b"" for e in events if e.type == "audio-chunk")
