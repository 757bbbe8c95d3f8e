"""MP3 through LAME in one C call per chunk (`lameenc`), with a gapless Info/LAME tag.

Why not PyAV's libmp3lame: measured by `python -m benchmarks report` on the same 9.2 s of Kokoro speech
at the same LAME quality (3, LAME's default and the one ffmpeg uses), PyAV's bundled LAME took
2.8x as long (199 ms against 70 ms on the 2-core CI machine; `docs/benchmarks.md`, section 1). MP3 is what Open WebUI asks for, and
on a GPU host its encoding was the largest part of the gateway's overhead over raw synthesis.

LAME delays the signal by 576 samples and pads the last frame. A whole file starts with an
Info frame whose LAME extension names that delay and padding, as LAME's own tag does, so decoders
that honour it (ffmpeg, hence Chrome; Firefox; Safari) give back exactly the input's samples. A
streamed file cannot know its length up front and goes without the tag (about 46 ms of leading
silence on decoders).
"""

from __future__ import annotations

import struct

import lameenc
import numpy as np

ENCODER_DELAY = 576  # lame_get_encoder_delay() for these settings (no resampling)
_BITRATES = {  # kbps by header index, for MPEG-1 and MPEG-2/2.5 Layer III
    1: [0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320],
    2: [0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160],
}
_RATES = {3: [44100, 48000, 32000], 2: [22050, 24000, 16000], 0: [11025, 12000, 8000]}


def _crc16(data: bytes) -> int:
    """CRC-16/ARC, the one LAME's tag carries over its first 190 bytes."""
    crc = 0
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def to_s16(audio: np.ndarray) -> bytes:
    """Float32 samples in [-1, 1] as 16-bit little-endian PCM."""
    return (np.clip(audio, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()


class FrameHeader:
    """The fields of an MPEG audio Layer III frame header that the tag needs."""

    def __init__(self, raw: bytes) -> None:
        (word,) = struct.unpack(">I", raw[:4])
        if word >> 21 != 0x7FF or (word >> 17) & 3 != 1:
            raise ValueError("not an MPEG Layer III frame")
        self.word = word
        self.version = (word >> 19) & 3  # 3: MPEG-1, 2: MPEG-2, 0: MPEG-2.5
        self.mono = (word >> 6) & 3 == 3
        self.kbps = _BITRATES[1 if self.version == 3 else 2][(word >> 12) & 0xF]
        self.rate = _RATES[self.version][(word >> 10) & 3]
        self.padding = (word >> 9) & 1

    @property
    def samples(self) -> int:
        return 1152 if self.version == 3 else 576

    @property
    def size(self) -> int:
        return self.samples // 8 * self.kbps * 1000 // self.rate + self.padding

    @property
    def side_info(self) -> int:
        if self.version == 3:
            return 17 if self.mono else 32
        return 9 if self.mono else 17


def count_frames(data: bytes) -> tuple[int, FrameHeader]:
    """Frames in a run of MP3 frames, and the first one's header."""
    first = FrameHeader(data)
    n, pos = 0, 0
    while pos < len(data):
        pos += FrameHeader(data[pos : pos + 4]).size
        n += 1
    return n, first


def info_frame(audio: bytes, n_samples: int) -> bytes:
    """A silent frame carrying the Info (CBR Xing) tag and LAME's extension for `audio`, the
    encoder's frames of `n_samples` input samples: the decoder skips the encoder delay and the
    last frame's padding."""
    frames, first = count_frames(audio)
    header = first.word & ~(1 << 9)  # no padding slot: the tag frame has a fixed size
    tag = FrameHeader(struct.pack(">I", header))
    end_pad = frames * first.samples - ENCODER_DELAY - n_samples
    frame = bytearray(tag.size)
    frame[:4] = struct.pack(">I", header)
    at = 4 + tag.side_info
    frame[at : at + 16] = b"Info" + struct.pack(">III", 0x3, frames, len(audio) + tag.size)
    at += 16
    lame = (
        b"LAME3.100"
        + bytes([0x01, 0])  # tag revision 0, CBR; lowpass unknown
        + bytes(8)  # replay gain: peak, radio, audiophile (none)
        + bytes([0, min(first.kbps, 255)])  # encoding flags, bitrate
        + (ENCODER_DELAY << 12 | max(end_pad, 0)).to_bytes(3, "big")
        + bytes(4)  # misc, MP3 gain, preset/surround
        + struct.pack(">I", tag.size + len(audio))  # music length
        + bytes(2)  # music CRC (not computed; decoders do not need it)
    )
    frame[at : at + len(lame)] = lame
    at += len(lame)
    frame[at : at + 2] = struct.pack(">H", _crc16(bytes(frame[:190])))
    return bytes(frame)


class Mp3Encoder:
    """Float32 mono chunks in, MP3 frames out as soon as LAME has them."""

    def __init__(self, sample_rate: int, kbps: int, quality: int) -> None:
        self._lame = lameenc.Encoder()
        self._lame.set_bit_rate(kbps)
        self._lame.set_in_sample_rate(sample_rate)
        self._lame.set_out_sample_rate(sample_rate)
        self._lame.set_channels(1)
        self._lame.set_quality(quality)

    def encode(self, audio: np.ndarray) -> bytes:
        return bytes(self._lame.encode(to_s16(audio))) if len(audio) else b""

    def finish(self) -> bytes:
        return bytes(self._lame.flush())
