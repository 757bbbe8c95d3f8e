"""Real speech, really transcribed: the OpenAI client against the live gateway."""

from __future__ import annotations

import httpx
import numpy as np
import pytest
from openai import OpenAI

from ..conftest import PASSAGE, LiveServer, decode, encode, wer


@pytest.fixture(scope="module")
def client(base_url: str) -> OpenAI:
    return OpenAI(base_url=base_url, api_key="any-key", timeout=300)


@pytest.fixture(scope="module")
def passage_mp3(client: OpenAI) -> bytes:
    # Open WebUI's defaults: model tts-1, voice alloy, no response_format (so mp3).
    return client.audio.speech.create(model="tts-1", voice="alloy", input=PASSAGE).content


def test_speech_default_is_mp3_and_round_trips(client: OpenAI, passage_mp3: bytes) -> None:
    assert passage_mp3[:3] == b"ID3" or passage_mp3[0] == 0xFF
    audio, rate = decode(passage_mp3)
    assert rate == 24000
    assert 8 < len(audio) / rate < 30  # 36 words: about 12 s of speech
    result = client.audio.transcriptions.create(model="whisper-1", file=("speech.mp3", passage_mp3))
    assert len(PASSAGE.split()) >= 20
    assert wer(PASSAGE, result.text) <= 0.15, result.text


@pytest.mark.parametrize("voice", ["jm_kumo", "jf_nezumi", "echo"])
@pytest.mark.slow
def test_english_text_is_spoken_in_english_whatever_the_voice(client: OpenAI, voice: str) -> None:
    text = "Please remember to water the plants on Monday morning before you leave for work."
    mp3 = client.audio.speech.create(model="kokoro", voice=voice, input=text).content
    result = client.audio.transcriptions.create(model="whisper-tiny.en", file=("a.mp3", mp3))
    assert wer(text, result.text) <= 0.15, (voice, result.text)


@pytest.mark.parametrize("fmt", ["mp3", "opus", "aac", "flac", "wav", "pcm"])
@pytest.mark.slow
def test_every_speech_format_decodes(client: OpenAI, fmt: str) -> None:
    text = "Every format carries the same sentence."
    r = client.audio.speech.with_raw_response.create(
        model="tts-1", voice="alloy", input=text, response_format=fmt
    )
    data = r.content
    expected_type = {"mp3": "audio/mpeg", "opus": "audio/ogg", "aac": "audio/aac",
                     "flac": "audio/flac", "wav": "audio/wav", "pcm": "audio/pcm"}[fmt]  # fmt: skip
    assert r.headers["content-type"] == expected_type
    if fmt == "pcm":
        audio, rate = np.frombuffer(data, "<i2").astype(np.float32) / 32768, 24000
    else:
        audio, rate = decode(data)
    assert rate in (24000, 48000) if fmt == "opus" else rate == 24000
    duration = len(audio) / rate
    assert 1.2 < duration < 6, duration
    assert np.sqrt(np.mean(audio**2)) > 0.01  # not silence


@pytest.mark.slow
def test_speed_two_halves_the_duration(client: OpenAI) -> None:
    text = "Speed changes how long this sentence takes to say out loud."

    def seconds(speed: float) -> float:
        pcm = client.audio.speech.create(
            model="tts-1", voice="alloy", input=text, response_format="pcm", speed=speed
        ).content
        return len(pcm) / 2 / 24000

    normal, fast = seconds(1.0), seconds(2.0)
    assert 0.4 < fast / normal < 0.65, (normal, fast)


@pytest.mark.slow
def test_mixed_voice_differs_from_both_parts(client: OpenAI) -> None:
    text = "A mixed voice sounds like neither of its parts."

    def pcm(voice: str) -> np.ndarray:
        data = client.audio.speech.create(
            model="tts-1", voice=voice, input=text, response_format="pcm"
        ).content
        return np.frombuffer(data, "<i2").astype(np.float32)

    def spectrum(a: np.ndarray) -> np.ndarray:
        mag = np.abs(np.fft.rfft(a, n=1 << 18))
        bands = mag[: 1 << 16].reshape(256, -1).mean(axis=1)
        return bands / bands.sum()

    a, b, mix = pcm("jf_alpha"), pcm("jm_kumo"), pcm("jf_alpha(1)+jm_kumo(1)")
    sa, sb, sm = spectrum(a), spectrum(b), spectrum(mix)
    d_ab = np.abs(sa - sb).sum()
    assert np.abs(sm - sa).sum() > 0.1 * d_ab
    assert np.abs(sm - sb).sum() > 0.1 * d_ab
    # and it is deterministic: the same mix twice gives the same audio
    assert np.array_equal(mix, pcm("jf_alpha(1)+jm_kumo(1)"))


@pytest.mark.slow
def test_webm_opus_named_recording_wav(server: LiveServer, passage_mp3: bytes) -> None:
    audio, rate = decode(passage_mp3)
    webm = encode(audio, 48000 if rate == 48000 else 24000, "webm", "libopus", "flt")
    assert webm[:4] == b"\x1a\x45\xdf\xa3"  # EBML: really webm
    r = httpx.post(
        f"{server.url}/v1/audio/transcriptions",
        files={"file": ("recording.wav", webm, "audio/wav")},
        data={"model": "whisper-1"},
        timeout=300,
    )
    assert r.status_code == 200, r.text
    assert wer(PASSAGE, r.json()["text"]) <= 0.15


@pytest.mark.slow
def test_mp3_part_without_content_type(server: LiveServer, passage_mp3: bytes) -> None:
    # What Open WebUI sends: file=(<uuid>.mp3, bytes) with no content type on the part.
    boundary = "xyzBOUNDARYxyz"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="model"\r\n\r\nwhisper-1\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
            f'filename="6f1c.mp3"\r\n\r\n'
        ).encode()
        + passage_mp3
        + f"\r\n--{boundary}--\r\n".encode()
    )
    r = httpx.post(
        f"{server.url}/v1/audio/transcriptions",
        content=body,
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
        timeout=300,
    )
    assert r.status_code == 200, r.text
    assert wer(PASSAGE, r.json()["text"]) <= 0.15


@pytest.mark.slow
def test_translation_returns_english(client: OpenAI, passage_mp3: bytes) -> None:
    result = client.audio.translations.create(model="whisper-1", file=("a.mp3", passage_mp3))
    assert wer(PASSAGE, result.text) <= 0.25, result.text
