"""Test audio made by the gateway itself: sentences spoken by its own TTS, cached on disk.

Nothing is downloaded. A sentence is asked for once per cache folder (keyed by text and voice),
and longer clips for transcription are built by joining cached sentences with short pauses, so
a 60 s clip costs about a minute of TTS the first time and nothing after.
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
import wave
from pathlib import Path

import av
import httpx
import numpy as np

from gateway.audio.encode import encode_audio

# The interactive probe of the sharing benchmark: one sentence, about 3.6 s of audio.
PROBE_SENTENCE = "The quick brown fox jumps over the lazy dog near the riverbank."

# Distinct sentences that clips for transcription are built from (about 3-5 s each).
POOL = (
    "Please remember to bring the quarterly report to the meeting on Thursday morning.",
    "The weather station recorded heavy rain and strong winds along the northern coast.",
    "Our new library opens at nine and closes at six on most weekdays.",
    "She poured a cup of tea and read the letter twice before answering.",
    "The train to the airport leaves every fifteen minutes from platform four.",
    "Engineers replaced the old bridge with a lighter design made of steel and glass.",
    "A small bakery on the corner sells fresh bread and cinnamon rolls every morning.",
    "The committee agreed to postpone the vote until the budget numbers are final.",
    "Children in the park were flying bright red kites in the afternoon breeze.",
    "He checked the map again and decided to take the longer road through the valley.",
    "The museum will show a collection of paintings from the early twentieth century.",
    "After dinner we walked along the harbor and watched the fishing boats come in.",
)

VOICE = "alloy"


def cache_dir() -> Path:
    folder = Path(
        os.environ.get("GATEWAY_BENCH_CACHE") or Path(tempfile.gettempdir()) / "gateway-bench-audio"
    )
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def read_wav(data: bytes) -> tuple[np.ndarray, int]:
    with wave.open(io.BytesIO(data)) as w:
        rate = w.getframerate()
        frames = w.readframes(w.getnframes())
    return np.frombuffer(frames, "<i2").astype(np.float32) / 32767.0, rate


def speak(
    base_url: str,
    text: str,
    voice: str = VOICE,
    folder: Path | None = None,
    timeout_s: float = 300.0,
) -> tuple[np.ndarray, int]:
    """One sentence through the gateway's TTS (cached), as float32 samples and their rate."""
    folder = folder or cache_dir()
    key = hashlib.sha256(f"{voice}\n{text}".encode()).hexdigest()[:20]
    path = folder / f"{key}.wav"
    if path.is_file():
        return read_wav(path.read_bytes())
    body = {"model": "tts-1", "voice": voice, "input": text, "response_format": "wav"}
    r = httpx.post(f"{base_url}/v1/audio/speech", json=body, timeout=timeout_s)
    r.raise_for_status()
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_bytes(r.content)
    tmp.replace(path)
    return read_wav(r.content)


def padded_pcm16(base_url: str, text: str, seconds: float, rate: int) -> bytes:
    """`text` spoken by the gateway's TTS, resampled to `rate` and padded with silence (or cut)
    to `seconds`: 16-bit little-endian mono, as a voice command or a live turn is sent."""
    audio, src = speak(base_url, text)
    n = int(len(audio) * rate / src)
    x = np.interp(np.arange(n) * src / rate, np.arange(len(audio)), audio)
    x = np.pad(x, (0, max(0, int(seconds * rate) - n)))[: int(seconds * rate)]
    return (np.clip(x, -1, 1) * 32767).astype("<i2").tobytes()


def build_clip(
    base_url: str,
    seconds: float,
    start: int = 0,
    pause_s: float = 0.6,
    folder: Path | None = None,
    pool: tuple[str, ...] = POOL,
) -> tuple[np.ndarray, int]:
    """Sentences from `pool` (from index `start`, cycling) with pauses, cut to `seconds`."""
    parts: list[np.ndarray] = []
    total = 0
    rate = 24000
    i = start
    while total < seconds * rate:
        audio, rate = speak(base_url, pool[i % len(pool)], folder=folder)
        pause = np.zeros(int(pause_s * rate), np.float32)
        parts += [audio, pause]
        total += len(audio) + len(pause)
        i += 1
    clip = np.concatenate(parts)[: int(seconds * rate)]
    fade = min(len(clip), int(0.05 * rate))
    if fade:
        clip[-fade:] *= np.linspace(1.0, 0.0, fade, dtype=np.float32)
    return clip, rate


def encode(audio: np.ndarray, rate: int, fmt: str) -> bytes:
    """wav | mp3 | flac | opus (Ogg) | webm (Opus in WebM, what browsers record)."""
    if fmt == "webm":
        return _webm(audio, rate)
    return encode_audio(audio, fmt, rate)


def pyav_mp3(audio: np.ndarray, rate: int, bit_rate: int, quality: int | None = None) -> bytes:
    """MP3 through PyAV's bundled libmp3lame (not the gateway's LAME): the accuracy section's
    uploads, and the encoder the gateway's is measured against. `quality`: LAME's, or its
    default."""
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp3") as out:
        stream = out.add_stream("libmp3lame", rate=rate)
        stream.layout, stream.format, stream.bit_rate = "mono", "fltp", bit_rate
        if quality is not None:
            stream.codec_context.options = {"compression_level": str(quality)}
        frame = av.AudioFrame.from_ndarray(
            np.ascontiguousarray(audio.reshape(1, -1), dtype=np.float32),
            format="fltp",
            layout="mono",
        )
        frame.sample_rate, frame.pts = rate, 0
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            out.mux(packet)
    return buf.getvalue()


def _webm(audio: np.ndarray, rate: int) -> bytes:
    buf = io.BytesIO()
    container = av.open(buf, "w", format="webm")
    stream = container.add_stream("libopus", rate=48000)
    stream.layout = "mono"
    stream.bit_rate = 32000
    resampler = av.AudioResampler(format="flt", layout="mono", rate=48000)
    frame = av.AudioFrame.from_ndarray(
        audio.astype(np.float32).reshape(1, -1), format="flt", layout="mono"
    )
    frame.sample_rate = rate
    frame.pts = 0
    for out in [*resampler.resample(frame), *resampler.resample(None)]:
        for packet in stream.encode(out):
            container.mux(packet)
    for packet in stream.encode(None):
        container.mux(packet)
    container.close()
    return buf.getvalue()


def clip_file(
    base_url: str, seconds: float, fmt: str, start: int = 0, folder: Path | None = None
) -> Path:
    """A clip encoded to `fmt`, cached as a file (so locust users can re-read it cheaply)."""
    folder = folder or cache_dir()
    path = folder / f"clip-{seconds:g}s-{start}.{fmt}"
    if not path.is_file():
        audio, rate = build_clip(base_url, seconds, start, folder=folder)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(encode(audio, rate, fmt))
        tmp.replace(path)
    return path
