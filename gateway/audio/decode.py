"""Decode any supported upload to 16 kHz mono float32, from the bytes alone.

The container is found by probing the bytes (FFmpeg's demuxer probe through PyAV), never from
the file name or the multipart content type: browsers send webm named `recording.wav`, and Open
WebUI sends MP3 parts with no content type at all.
"""

from __future__ import annotations

import io

import av
import numpy as np

TARGET_RATE = 16000
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


def decode_audio(data: bytes, max_seconds: float | None = None) -> np.ndarray:
    """Bytes of a supported container -> mono float32 at 16 kHz."""
    if not data:
        raise AudioDecodeError("the uploaded file is empty")
    try:
        container = av.open(io.BytesIO(data), mode="r", options=_OPEN_OPTIONS)
    except (av.FFmpegError, ValueError, OSError) as exc:
        raise AudioDecodeError("the file is not a supported audio format") from exc
    chunks: list[np.ndarray] = []
    total = 0
    limit = int(max_seconds * TARGET_RATE) if max_seconds else None
    try:
        fmt = container.format.name
        if fmt not in ALLOWED_FORMATS:
            raise AudioDecodeError(f"container {fmt!r} is not a supported audio format")
        if not container.streams.audio:
            raise AudioDecodeError("the file has no audio stream")
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="flt", layout="mono", rate=TARGET_RATE)
        for frame in container.decode(stream):
            for out in resampler.resample(frame):
                arr = out.to_ndarray().reshape(-1)
                chunks.append(arr)
                total += len(arr)
            if limit is not None and total > limit:
                raise AudioDecodeError(f"audio is longer than the limit of {max_seconds:.0f} s")
        for out in resampler.resample(None):
            chunks.append(out.to_ndarray().reshape(-1))
    except AudioDecodeError:
        raise
    except (av.FFmpegError, ValueError, OSError, EOFError) as exc:
        if not chunks:
            raise AudioDecodeError("the audio could not be decoded (corrupt or truncated)") from exc
        # A truncated tail still leaves usable audio: transcribe what decoded.
    finally:
        container.close()
    if not chunks:
        raise AudioDecodeError("the file contains no decodable audio")
    audio = np.concatenate(chunks).astype(np.float32, copy=False)
    if not np.all(np.isfinite(audio)):
        audio = np.nan_to_num(audio, copy=False)
    return audio
