"""`WholeEncoder`: a file encoded unit by unit (while the next unit runs) holds the joined audio.
Checked against references made without the gateway's encoder: WAV and PCM byte for byte against
the standard library's `wave` writer and numpy's 16-bit samples; the compressed formats decode
(FFmpeg) to the joined audio, aligned past the codec's priming, at its level, with no sample lost
or repeated at a unit's edge beyond the codec's own padding."""

from __future__ import annotations

import io
import wave

import numpy as np
import pytest

from gateway.audio.decode import decode_audio
from gateway.audio.encode import FORMATS, WholeEncoder

RATE = 24000
PAD = 2048  # at 16 kHz: the codecs' priming and final-frame padding stay under this


def _parts() -> list[np.ndarray]:
    return [
        (0.3 * np.sin(2 * np.pi * f * np.arange(n) / RATE)).astype(np.float32)
        for n, f in ((RATE + 123, 220.0), (2 * RATE - 7, 330.0), (999, 440.0))
    ]


def _reference_wav(audio: np.ndarray) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(RATE)
        out.writeframes((audio * 32767.0).astype("<i2").tobytes())
    return buf.getvalue()


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_whole_encoder_holds_the_joined_audio(fmt: str) -> None:
    parts = _parts()
    joined = np.concatenate(parts)
    enc = WholeEncoder(fmt, RATE)
    for part in parts:
        enc.encode(part)
    ours, reference = enc.finish(), _reference_wav(joined)
    if fmt == "wav":
        assert ours == reference
        return
    if fmt == "pcm":
        assert ours == (joined * 32767.0).astype("<i2").tobytes()
        return
    got, want = decode_audio(ours, 60), decode_audio(reference)
    assert 0 <= len(got) - len(want) <= PAD, (len(got), len(want))
    n = len(want) - PAD
    lag = int(np.argmax(np.correlate(got[: n + PAD], want[:n], "valid")))
    aligned = got[lag : lag + n]
    assert np.corrcoef(aligned, want[:n])[0, 1] > 0.99
    assert 0.9 < np.std(aligned) / np.std(want[:n]) < 1.1
