"""Encode float32 mono audio to the OpenAI speech formats, whole or incrementally.

Everything is encoded in-process, no ffmpeg subprocess: MP3 with LAME through `lameenc` (see
`mp3.py` for why), the other codecs with PyAV. A `StreamEncoder` turns each work unit's audio into
the bytes that can be sent right away, so streaming and whole responses share one code path.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass
from typing import cast

import av
import numpy as np
from av.audio.stream import AudioStream

from .mp3 import ENCODER_DELAY, Mp3Encoder, info_frame, to_s16

MP3_QUALITY = 3  # LAME's default (and ffmpeg's): 2 is best, 7 fastest


@dataclass(frozen=True)
class Format:
    name: str
    media_type: str
    container: str | None  # None: written here (pcm, wav) or by LAME (mp3)
    codec: str | None
    sample_format: str | None
    bit_rate: int | None = None


FORMATS: dict[str, Format] = {
    "mp3": Format("mp3", "audio/mpeg", None, None, None, 64_000),
    "opus": Format("opus", "audio/ogg", "ogg", "libopus", "flt", 32_000),
    "aac": Format("aac", "audio/aac", "adts", "aac", "fltp", 64_000),
    "flac": Format("flac", "audio/flac", "flac", "flac", "s16"),
    "wav": Format("wav", "audio/wav", None, None, None),
    "pcm": Format("pcm", "audio/pcm", None, None, None),
}


# Where a decoder puts the first input sample, measured with ffmpeg's decoders through PyAV
# (tests/engines/test_word_timings.py checks each): a whole MP3's gapless tag has the decoder skip LAME's
# delay; a streamed MP3 has no tag, so LAME's 576 samples and the decoder's own 529 come first;
# ADTS cannot state AAC's 1024 priming samples; Ogg Opus's pre-skip is honoured; the rest are
# sample for sample.
MP3_DECODER_DELAY = 529


def decoder_delay(fmt: str, streamed: bool) -> int:
    """Samples a decoder plays before the first sample given to the encoder."""
    if fmt == "mp3":
        return ENCODER_DELAY + MP3_DECODER_DELAY if streamed else 0
    return 1024 if fmt == "aac" else 0


def wav_header(sample_rate: int, n_samples: int | None) -> bytes:
    """A 16-bit mono WAV header; unknown length (streaming) uses the maximum sizes."""
    data_size = 0xFFFFFFFF - 36 if n_samples is None else n_samples * 2
    return (
        b"RIFF"
        + struct.pack("<I", min(36 + data_size, 0xFFFFFFFF))
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, 1, sample_rate, sample_rate * 2, 2, 16)
        + b"data"
        + struct.pack("<I", data_size)
    )


class StreamEncoder:
    """Feed float32 chunks, get encoded bytes back as soon as the muxer writes them."""

    def __init__(self, fmt: str, sample_rate: int, mp3_quality: int = MP3_QUALITY) -> None:
        self.format = FORMATS[fmt]
        self.sample_rate = sample_rate
        self._mp3 = (
            Mp3Encoder(sample_rate, (self.format.bit_rate or 0) // 1000, mp3_quality)
            if fmt == "mp3"
            else None
        )
        self._pending = np.zeros(0, dtype=np.float32)
        self._header_sent = False
        self._buf = io.BytesIO()
        self._pos = 0
        self._container: av.container.OutputContainer | None = None
        self._sample_format = self.format.sample_format or "s16"
        if self.format.container is not None and self.format.codec is not None:
            # Ogg holds pages back for a second by default; 100 ms pages let streamed opus flow.
            options = {"page_duration": "100000"} if self.format.container == "ogg" else {}
            self._container = av.open(
                self._buf, mode="w", format=self.format.container, options=options
            )
            stream = cast(
                AudioStream, self._container.add_stream(self.format.codec, rate=sample_rate)
            )
            stream.layout = "mono"
            stream.format = self._sample_format
            if self.format.bit_rate:
                stream.bit_rate = self.format.bit_rate
            self._stream = stream
            self._pts = 0

    def _frames(self, audio: np.ndarray, final: bool) -> list[av.AudioFrame]:
        size = self._stream.codec_context.frame_size or 0
        data = np.concatenate([self._pending, audio]) if len(self._pending) else audio
        frames = []
        if size:
            n_full = len(data) // size
            if final and len(data) % size:
                data = np.concatenate([data, np.zeros(size - len(data) % size, np.float32)])
                n_full = len(data) // size
            for i in range(n_full):
                frames.append(data[i * size : (i + 1) * size])
            self._pending = data[n_full * size :]
        else:
            if len(data):
                frames.append(data)
            self._pending = np.zeros(0, dtype=np.float32)
        out = []
        for chunk in frames:
            if self._sample_format == "s16":
                arr = (np.clip(chunk, -1, 1) * 32767).astype(np.int16).reshape(1, -1)
            else:
                arr = chunk.astype(np.float32).reshape(1, -1)
            frame = av.AudioFrame.from_ndarray(arr, format=self._sample_format, layout="mono")
            frame.sample_rate = self.sample_rate
            frame.pts = self._pts
            self._pts += len(chunk)
            out.append(frame)
        return out

    def _drain(self) -> bytes:
        data = self._buf.getvalue()[self._pos :]
        self._pos += len(data)
        return data

    def written(self) -> bytes:
        """Everything the muxer wrote, as it stands now (after `finish`: the whole file)."""
        return self._buf.getvalue()

    def encode(self, audio: np.ndarray) -> bytes:
        audio = np.asarray(audio, dtype=np.float32).reshape(-1)
        if self._mp3 is not None:
            return self._mp3.encode(audio)
        if self._container is None:
            head = b""
            if self.format.name == "wav" and not self._header_sent:
                head = wav_header(self.sample_rate, None)
            self._header_sent = True
            return head + to_s16(audio)
        for frame in self._frames(audio, final=False):
            for packet in self._stream.encode(frame):
                self._container.mux(packet)
        return self._drain()

    def finish(self) -> bytes:
        if self._mp3 is not None:
            return self._mp3.finish()
        if self._container is None:
            if self.format.name == "wav" and not self._header_sent:
                self._header_sent = True
                return wav_header(self.sample_rate, None)
            return b""
        for frame in self._frames(np.zeros(0, np.float32), final=True):
            for packet in self._stream.encode(frame):
                self._container.mux(packet)
        for packet in self._stream.encode(None):
            self._container.mux(packet)
        self._container.close()
        return self._drain()


class WholeEncoder:
    """A whole file built chunk by chunk (each chunk encoded as it arrives, e.g. while the next
    work unit runs), with the same bytes `encode_audio` gives for the joined audio: WAV gets its
    exact sizes, FLAC its final STREAMINFO and MP3 its gapless tag at `finish`."""

    def __init__(self, fmt: str, sample_rate: int, mp3_quality: int = MP3_QUALITY) -> None:
        self.format = FORMATS[fmt]
        self.sample_rate = sample_rate
        self._raw: list[bytes] = []
        self._samples = 0
        self._stream = (
            None if fmt in ("wav", "pcm") else StreamEncoder(fmt, sample_rate, mp3_quality)
        )

    def encode(self, audio: np.ndarray) -> None:
        audio = np.asarray(audio, dtype=np.float32).reshape(-1)
        self._samples += len(audio)
        if self._stream is None:
            self._raw.append(to_s16(audio))
        elif self.format.name == "mp3":  # LAME's frames, joined behind the tag at `finish`
            self._raw.append(self._stream.encode(audio))
        else:  # the muxer's buffer holds the whole file
            self._stream.encode(audio)

    def finish(self) -> bytes:
        if self._stream is None:
            head = wav_header(self.sample_rate, self._samples) if self.format.name == "wav" else b""
            return head + b"".join(self._raw)
        tail = self._stream.finish()
        if self.format.name == "mp3":
            body = b"".join(self._raw) + tail
            return info_frame(body, self._samples) + body if body else b""
        # Not the concatenation of the parts: FLAC seeks back to fill in its header on close.
        return self._stream.written()


def encode_audio(
    audio: np.ndarray, fmt: str, sample_rate: int, mp3_quality: int = MP3_QUALITY
) -> bytes:
    """Encode a whole clip; WAV gets exact sizes, FLAC its final STREAMINFO, MP3 its gapless
    tag."""
    enc = WholeEncoder(fmt, sample_rate, mp3_quality)
    enc.encode(audio)
    return enc.finish()
