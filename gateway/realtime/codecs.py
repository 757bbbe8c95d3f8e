"""Audio formats of the Realtime API -> the 16 kHz mono float32 Whisper hears. PCM16 arrives at
24 kHz, G.711 at 8 kHz; the resampler keeps its state between appends, so the cut between two
appends leaves no click in what the VAD and Whisper hear."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import av
import numpy as np

from ..errors import InvalidRequest

RATE = 16000  # what Whisper and the VAD hear


@dataclass(frozen=True)
class AudioFormat:
    name: str  # the GA name: audio/pcm, audio/pcmu, audio/pcma
    rate: int
    width: int  # bytes per sample as sent


FORMATS = {
    "audio/pcm": AudioFormat("audio/pcm", 24000, 2),
    "audio/pcmu": AudioFormat("audio/pcmu", 8000, 1),
    "audio/pcma": AudioFormat("audio/pcma", 8000, 1),
}
BETA_NAMES = {"pcm16": "audio/pcm", "g711_ulaw": "audio/pcmu", "g711_alaw": "audio/pcma"}
GA_TO_BETA = {v: k for k, v in BETA_NAMES.items()}


def ga_format(value: object, param: str) -> AudioFormat:
    """A GA format object (`{"type": "audio/pcm", "rate": 24000}`) or a beta name; raises."""
    name: Any
    if isinstance(value, str):
        name, rate = BETA_NAMES.get(value, value), None
    elif isinstance(value, dict):
        name, rate = value.get("type"), value.get("rate")
    else:
        name, rate = None, None
    fmt = FORMATS.get(name) if isinstance(name, str) else None
    if fmt is None:
        known = ", ".join([*FORMATS, *BETA_NAMES])
        raise InvalidRequest(f"unsupported audio format {value!r}; use one of {known}", param,
                             "invalid_value")  # fmt: skip
    if rate is not None and rate != fmt.rate:
        raise InvalidRequest(f"{fmt.name} is sent at {fmt.rate} Hz, not {rate!r}", param,
                             "invalid_value")  # fmt: skip
    return fmt


def _ulaw_table() -> np.ndarray:
    u = ~np.arange(256, dtype=np.int32) & 0xFF
    sign, exponent, mantissa = u & 0x80, (u >> 4) & 0x07, u & 0x0F
    magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84
    return np.where(sign, -magnitude, magnitude).astype(np.float32) / 32768.0


def _alaw_table() -> np.ndarray:
    a = np.arange(256, dtype=np.int32) ^ 0x55
    sign, exponent, mantissa = a & 0x80, (a >> 4) & 0x07, a & 0x0F
    magnitude = np.where(
        exponent == 0, (mantissa << 4) + 8, ((mantissa << 4) + 0x108) << np.maximum(exponent - 1, 0)
    )
    return np.where(sign, magnitude, -magnitude).astype(np.float32) / 32768.0


TABLES = {"audio/pcmu": _ulaw_table(), "audio/pcma": _alaw_table()}


class Decoder:
    """Bytes of one format, append after append -> 16 kHz float32 samples."""

    def __init__(self, fmt: AudioFormat) -> None:
        self.format = fmt
        self.resampler = av.AudioResampler(format="flt", layout="mono", rate=RATE)
        self.pending = b""  # an odd byte of PCM16 split between two appends
        self.pts = 0

    def samples(self, data: bytes) -> np.ndarray:
        """Samples at the format's own rate, as float32 in [-1, 1)."""
        if self.format.width == 1:
            return TABLES[self.format.name][np.frombuffer(data, np.uint8)]
        data, self.pending = self.pending + data, b""
        if len(data) % 2:
            data, self.pending = data[:-1], data[-1:]
        return np.frombuffer(data, "<i2").astype(np.float32) / 32768.0

    def decode(self, data: bytes) -> np.ndarray:
        x = self.samples(data)
        if not len(x):
            return np.zeros(0, np.float32)
        frame = av.AudioFrame.from_ndarray(x.reshape(1, -1), format="flt", layout="mono")
        frame.sample_rate, frame.pts = self.format.rate, self.pts
        self.pts += len(x)
        out = [f.to_ndarray().reshape(-1) for f in self.resampler.resample(frame)]
        return np.concatenate(out).astype(np.float32) if out else np.zeros(0, np.float32)
