"""MP3 through LAME (`gateway/audio/mp3.py`): a whole file carries an Info/LAME tag, so decoders
give back exactly the samples that went in (no encoder delay, no padding), and the gateway's
default speech format (Open WebUI's) holds the same samples as its WAV."""

from __future__ import annotations

import io

import av
import httpx
import numpy as np
import pytest

from gateway.audio.encode import StreamEncoder, encode_audio
from gateway.audio.mp3 import ENCODER_DELAY, FrameHeader, count_frames

from ..conftest import LiveServer, decode

RATE = 24000


def _speechlike(seconds: float) -> np.ndarray:
    """Gliding tones under an envelope: no two windows of it alike, so alignment is unique."""
    t = np.arange(int(seconds * RATE)) / RATE
    f = 180 + 120 * np.sin(2 * np.pi * 0.7 * t)
    env = 0.5 + 0.5 * np.sin(2 * np.pi * 3.1 * t) ** 2
    return (0.3 * env * np.sin(2 * np.pi * np.cumsum(f) / RATE)).astype(np.float32)


def _lag(decoded: np.ndarray, original: np.ndarray) -> int:
    """Where `original` starts in `decoded`, searched over two frames either way."""
    n = min(len(original), len(decoded)) - 2400
    lags = range(-1200, 1201)
    return max(lags, key=lambda d: float(np.dot(decoded[1200 + d : 1200 + d + n - 2400],
                                               original[1200 : 1200 + n - 2400])))  # fmt: skip


@pytest.mark.parametrize("seconds", [0.2, 1.0, 3.7])
def test_whole_mp3_decodes_to_exactly_the_input(seconds: float) -> None:
    audio = _speechlike(seconds)
    data = encode_audio(audio, "mp3", RATE)
    decoded, rate = decode(data)
    assert rate == RATE
    assert len(decoded) == len(audio)  # the tag's delay and padding were honoured
    if seconds >= 1.0:
        assert _lag(decoded, audio) == 0
        assert np.corrcoef(decoded, audio)[0, 1] > 0.99
    with av.open(io.BytesIO(data)) as container:
        assert container.duration == pytest.approx(seconds * 1e6, abs=50)


def test_tag_names_lames_delay_and_the_frames() -> None:
    audio = _speechlike(2.0)
    data = encode_audio(audio, "mp3", RATE)
    tag = FrameHeader(data)
    assert (tag.version, tag.rate, tag.kbps, tag.mono) == (2, RATE, 64, True)
    body = data[tag.size :]
    frames, _ = count_frames(body)
    at = 4 + tag.side_info
    assert data[at : at + 4] == b"Info"
    assert int.from_bytes(data[at + 8 : at + 12], "big") == frames
    lame = data.index(b"LAME3.100")
    delays = int.from_bytes(data[lame + 21 : lame + 24], "big")
    assert delays >> 12 == ENCODER_DELAY
    assert delays & 0xFFF == frames * 576 - ENCODER_DELAY - len(audio)


def test_streamed_mp3_is_plain_frames_that_decode_to_the_audio() -> None:
    """A stream cannot know its length: no tag, so decoders keep LAME's delay and padding."""
    audio = _speechlike(3.0)
    enc = StreamEncoder("mp3", RATE)
    parts = [enc.encode(audio[:10_001]), enc.encode(audio[10_001:40_000]), enc.encode(audio[40_000:])]
    data = b"".join(parts) + enc.finish()
    assert b"Info" not in data[:200]
    decoded, _ = decode(data)
    assert 0 < len(decoded) - len(audio) <= 3 * 576 + ENCODER_DELAY
    assert 0 < _lag(decoded, audio) <= ENCODER_DELAY + 576


def test_quality_setting_reaches_lame() -> None:
    audio = _speechlike(1.0)
    fast, best = encode_audio(audio, "mp3", RATE, 7), encode_audio(audio, "mp3", RATE, 2)
    assert fast != best
    assert len(decode(fast)[0]) == len(decode(best)[0]) == len(audio)


@pytest.mark.slow
def test_default_speech_mp3_holds_the_wav_samples(server: LiveServer) -> None:
    """Open WebUI's request (no response_format): the MP3 decodes to as many samples as the WAV
    of the same text, aligned, so sentences played one after another keep their timing."""
    body = {"model": "tts-1", "voice": "alloy", "input": "The lighthouse keeper climbed the stairs."}
    mp3 = httpx.post(f"{server.url}/v1/audio/speech", json=body, timeout=120)
    wav = httpx.post(f"{server.url}/v1/audio/speech", json=body | {"response_format": "wav"},
                     timeout=120)  # fmt: skip
    assert mp3.status_code == wav.status_code == 200
    a, rate_a = decode(mp3.content)
    b, rate_b = decode(wav.content)
    assert rate_a == rate_b == RATE
    assert len(a) == len(b)
    assert _lag(a, b) == 0
    assert np.corrcoef(a, b)[0, 1] > 0.98
