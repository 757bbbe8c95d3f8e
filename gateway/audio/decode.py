"""Decode any supported upload to 16 kHz mono float32, from the bytes alone, into one array.

The container is found by probing the bytes (FFmpeg's demuxer probe through PyAV), never from
the file name or the multipart content type: browsers send webm named `recording.wav`, and Open
WebUI sends MP3 parts with no content type at all.

A 4-hour upload is 0.9 GiB of samples: the decoder writes the resampled frames straight into one
array sized from the container's duration, so the peak is that array (keeping the frames and
joining them once cost twice as much).
"""

from __future__ import annotations

import io
from collections.abc import Callable

import av
import numpy as np

TARGET_RATE = 16000
# First allocation where the container gives no duration; grown by half again as needed.
UNKNOWN_FIRST_S = 60.0
# A header's duration is believed up to this (or the caller's limit) for the first allocation.
GUESS_MAX_S = 4 * 3600.0
# Below this a header's sample rate is a lie or a joke (telephone audio is 8 kHz): 8 kB of
# μ-law "at 1 Hz" would be over two hours of 16 kHz samples to hold and run the VAD over.
MIN_RATE = 1000
# Demuxers we accept (FFmpeg names; several are comma-joined aliases).
ALLOWED_FORMATS = {
    "matroska,webm",
    "ogg",
    "mov,mp4,m4a,3gp,3g2,mj2",
    "mp3",
    "wav",
    "flac",
    "aac",
    "aiff",
    "caf",
    "w64",
}
# Enforced by FFmpeg after probing and before a demuxer reads anything: bytes that probe as SDP,
# HLS or concat lists never get a demuxer that opens the sockets, URLs or files they name (an SDP
# upload used to open RTP/UDP sockets for the address it names and hold a worker for 10 s).
_OPEN_OPTIONS = {
    "format_whitelist": ",".join(sorted(ALLOWED_FORMATS)),
    "protocol_whitelist": "none",
}


class AudioDecodeError(ValueError):
    """The bytes are not audio we can decode; the message is safe to show the caller."""


class AudioFile:
    """An upload opened and probed, nothing decoded yet: `seconds` is the container's own
    estimate of the duration (None where it has none, as in browsers' WebM), so a caller can
    refuse the job before paying for the decode. `decode` then runs once and closes it."""

    def __init__(self, data: bytes, max_seconds: float | None = None) -> None:
        if not data:
            raise AudioDecodeError("the uploaded file is empty")
        try:
            self._container = av.open(io.BytesIO(data), mode="r", options=_OPEN_OPTIONS)
        except (av.FFmpegError, ValueError, OSError) as exc:
            raise AudioDecodeError("the file is not a supported audio format") from exc
        try:
            fmt = self._container.format.name
            if fmt not in ALLOWED_FORMATS:
                raise AudioDecodeError(f"container {fmt!r} is not a supported audio format")
            if not self._container.streams.audio:
                raise AudioDecodeError("the file has no audio stream")
            rate = self._container.streams.audio[0].rate or 0
            if rate < MIN_RATE:
                raise AudioDecodeError(
                    f"the audio's sample rate ({rate} Hz) is below {MIN_RATE} Hz: not real audio"
                )
        except BaseException:
            self.close()
            raise
        self._stream = self._container.streams.audio[0]
        self.max_seconds = max_seconds
        self.seconds = self._estimate()
        # Past the limit by less than a frame is still checked below; more is never stored.
        self._max = int(max_seconds * TARGET_RATE) + TARGET_RATE if max_seconds else None
        guess = self.seconds * 1.01 + 1 if self.seconds is not None else UNKNOWN_FIRST_S
        self.capacity = self._bounded(int(min(guess, GUESS_MAX_S) * TARGET_RATE))

    def _estimate(self) -> float | None:
        stream, container = self._stream, self._container
        if stream.duration and stream.time_base:
            return float(stream.duration * stream.time_base)
        if container.duration and container.duration > 0:
            return container.duration / av.time_base
        return None

    def _bounded(self, samples: int) -> int:
        return max(1, samples if self._max is None else min(samples, self._max))

    def close(self) -> None:
        self._container.close()

    def decode(self, grow: Callable[[int], None] | None = None) -> np.ndarray:
        """Mono float32 at 16 kHz, decoded into one array of `capacity` samples, grown (by half
        again, up to the limit) only where the estimate was short; `grow(n)` is told each n
        samples past `capacity` before they are allocated, and may raise to stop the decode.
        The array is cut to the audio in place, so the peak is about the array itself."""
        try:
            return self._decode(grow)
        finally:
            self.close()

    def _decode(self, grow: Callable[[int], None] | None) -> np.ndarray:
        limit = int(self.max_seconds * TARGET_RATE) if self.max_seconds else None
        audio = np.empty(self.capacity, np.float32)
        total = 0

        def put(frame: av.AudioFrame) -> None:
            nonlocal total
            pcm: np.ndarray = frame.to_ndarray().reshape(-1)
            end = total + len(pcm)
            if limit is not None and end > limit:
                raise AudioDecodeError(
                    f"audio is longer than the limit of {self.max_seconds:.0f} s"
                )
            if end > len(audio):
                size = self._bounded(max(end, len(audio) * 3 // 2))
                if grow is not None:
                    grow(size - len(audio))
                audio.resize(size, refcheck=False)  # realloc: no second array beside the first
            if not np.isfinite(pcm).all():
                pcm = np.nan_to_num(pcm)
            audio[total:end] = pcm
            total = end

        resampler = av.AudioResampler(format="flt", layout="mono", rate=TARGET_RATE)
        try:
            for frame in self._container.decode(self._stream):
                for out in resampler.resample(frame):
                    put(out)
            for out in resampler.resample(None):
                put(out)
        except (av.FFmpegError, ValueError, OSError, EOFError) as exc:
            if isinstance(exc, AudioDecodeError):
                raise
            if not total:
                raise AudioDecodeError(
                    "the audio could not be decoded (corrupt or truncated)"
                ) from exc
            # A truncated tail still leaves usable audio: transcribe what decoded.
        if not total:
            raise AudioDecodeError("the file contains no decodable audio")
        audio.resize(total, refcheck=False)
        return audio


def decode_audio(data: bytes, max_seconds: float | None = None) -> np.ndarray:
    """Bytes of a supported container -> mono float32 at 16 kHz."""
    return AudioFile(data, max_seconds).decode()
