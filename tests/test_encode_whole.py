"""`WholeEncoder`: a file encoded unit by unit (while the next unit runs) holds the audio
`encode_audio` makes from the joined audio: byte for byte for WAV and PCM, the same decoded
audio (within the codec's padding and loss) for the compressed formats."""

from __future__ import annotations

import numpy as np
import pytest

from gateway.audio.decode import decode_audio
from gateway.audio.encode import FORMATS, WholeEncoder, encode_audio

RATE = 24000


def _parts() -> list[np.ndarray]:
    return [
        (0.3 * np.sin(2 * np.pi * f * np.arange(n) / RATE)).astype(np.float32)
        for n, f in ((RATE + 123, 220.0), (2 * RATE - 7, 330.0), (999, 440.0))
    ]


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_whole_encoder_holds_the_joined_audio(fmt: str) -> None:
    parts = _parts()
    enc = WholeEncoder(fmt, RATE)
    for part in parts:
        enc.encode(part)
    ours, whole = enc.finish(), encode_audio(np.concatenate(parts), fmt, RATE)
    if fmt in ("wav", "pcm"):
        assert ours == whole
        return
    a, b = decode_audio(ours, 60), decode_audio(whole, 60)
    assert abs(len(a) - len(b)) <= 2048  # codec padding (one or two frames at 16 kHz)
    n = min(len(a), len(b)) - 1600
    assert np.corrcoef(a[:n], b[:n])[0, 1] > 0.99
