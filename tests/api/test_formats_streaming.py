"""Every transcription format checked for real content, and streaming of both endpoints."""

from __future__ import annotations

import base64
import json
import re

import httpx
import numpy as np
import pytest

from ..conftest import PASSAGE, LiveServer, decode, wer

# each output format is a real round trip (test_api_roundtrip keeps one)
pytestmark = pytest.mark.slow

TS = re.compile(r"(\d\d):(\d\d):(\d\d)[,.](\d\d\d) --> (\d\d):(\d\d):(\d\d)[,.](\d\d\d)")


def _seconds(h: str, m: str, s: str, ms: str) -> float:
    return int(h) * 3600 + int(m) * 60 + int(s) + int(ms) / 1000


@pytest.fixture(scope="module")
def passage_wav(server: LiveServer) -> bytes:
    r = httpx.post(f"{server.url}/v1/audio/speech", timeout=300,
                   json={"model": "tts-1", "voice": "jm_kumo", "input": PASSAGE,
                         "response_format": "wav"})  # fmt: skip
    assert r.status_code == 200
    return r.content


def _transcribe(server: LiveServer, wav: bytes, **form: str) -> httpx.Response:
    r = httpx.post(f"{server.url}/v1/audio/transcriptions", timeout=300,
                   files={"file": ("clip.wav", wav)}, data={"model": "whisper-1", **form})  # fmt: skip
    assert r.status_code == 200, r.text
    return r


def _cues(text: str) -> list[tuple[float, float]]:
    cues = []
    for m in TS.finditer(text):
        g = m.groups()
        cues.append((_seconds(*g[:4]), _seconds(*g[4:])))
    return cues


@pytest.mark.parametrize("fmt", ["srt", "vtt"])
def test_subtitle_cues_parse_and_increase(server: LiveServer, passage_wav: bytes, fmt: str) -> None:
    text = _transcribe(server, passage_wav, response_format=fmt).text
    if fmt == "vtt":
        assert text.startswith("WEBVTT")
    cues = _cues(text)
    assert len(cues) >= 2
    duration = len(decode(passage_wav)[0]) / 24000
    for start, end in cues:
        assert 0 <= start < end <= duration + 0.5
    assert all(a[0] <= b[0] for a, b in zip(cues, cues[1:], strict=False))
    spoken = " ".join(
        line
        for line in text.splitlines()
        if line and not TS.search(line) and not line.isdigit() and line != "WEBVTT"
    )
    assert wer(PASSAGE, spoken) <= 0.15


def test_text_and_json(server: LiveServer, passage_wav: bytes) -> None:
    plain = _transcribe(server, passage_wav, response_format="text")
    assert plain.headers["content-type"].startswith("text/plain")
    as_json = _transcribe(server, passage_wav, response_format="json").json()
    # whisper-1's usage, as OpenAI meters it: the audio's seconds
    assert set(as_json) == {"text", "usage"} and as_json["usage"]["type"] == "duration"
    assert wer(PASSAGE, plain.text) <= 0.15 and wer(PASSAGE, as_json["text"]) <= 0.15


def test_verbose_json_segments_and_words(server: LiveServer, passage_wav: bytes) -> None:
    r = httpx.post(f"{server.url}/v1/audio/transcriptions", timeout=300,
                   files={"file": ("clip.wav", passage_wav)},
                   data={"model": "whisper-1", "response_format": "verbose_json",
                         "timestamp_granularities[]": ["word", "segment"]})  # fmt: skip
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["task"] == "transcribe" and body["language"] == "english"
    assert body["duration"] == pytest.approx(len(decode(passage_wav)[0]) / 24000, abs=0.1)
    segs = body["segments"]
    assert segs and all(s["start"] < s["end"] for s in segs)
    assert [s["id"] for s in segs] == list(range(len(segs)))
    words = body["words"]
    assert len(words) >= 30
    assert all(w["start"] <= w["end"] for w in words)
    assert all(a["start"] <= b["start"] for a, b in zip(words, words[1:], strict=False))
    assert wer(PASSAGE, " ".join(w["word"] for w in words)) <= 0.15


def test_transcription_stream_sends_deltas_then_done(
    server: LiveServer, passage_wav: bytes
) -> None:
    events = []
    with httpx.stream("POST", f"{server.url}/v1/audio/transcriptions", timeout=300,
                      files={"file": ("clip.wav", passage_wav)},
                      data={"model": "whisper-1", "stream": "true"}) as r:  # fmt: skip
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        for line in r.iter_lines():
            if line.startswith("data: "):
                events.append(json.loads(line[6:]))
    deltas = [e for e in events if e["type"] == "transcript.text.delta"]
    assert deltas and events[-1]["type"] == "transcript.text.done"
    assert "".join(d["delta"] for d in deltas) == events[-1]["text"]
    assert wer(PASSAGE, events[-1]["text"]) <= 0.15


@pytest.mark.parametrize("fmt", ["mp3", "pcm", "opus", "aac"])
def test_speech_stream_sends_audio_in_chunks(server: LiveServer, fmt: str) -> None:
    chunks = []
    with httpx.stream("POST", f"{server.url}/v1/audio/speech", timeout=300,
                      json={"model": "tts-1", "voice": "alloy", "input": PASSAGE, "stream": True,
                            "response_format": fmt}) as r:  # fmt: skip
        assert r.status_code == 200
        chunks = [c for c in r.iter_raw() if c]
    data = b"".join(chunks)
    assert len(chunks) >= 2  # the first sentence arrives before the rest is synthesized
    if fmt == "pcm":
        audio = np.frombuffer(data, "<i2").astype(np.float32) / 32768
        rate = 24000
    else:
        audio, rate = decode(data)
    assert 8 < len(audio) / rate < 30


def test_speech_sse_events(server: LiveServer) -> None:
    events = []
    with httpx.stream("POST", f"{server.url}/v1/audio/speech", timeout=300,
                      json={"model": "tts-1", "voice": "alloy", "input": PASSAGE, "stream": True,
                            "stream_format": "sse", "response_format": "pcm"}) as r:  # fmt: skip
        assert r.headers["content-type"].startswith("text/event-stream")
        for line in r.iter_lines():
            if line.startswith("data: "):
                events.append(json.loads(line[6:]))
    assert [e["type"] for e in events[:-1]] == ["speech.audio.delta"] * (len(events) - 1)
    assert events[-1]["type"] == "speech.audio.done"
    pcm = b"".join(base64.b64decode(e["audio"]) for e in events[:-1])
    assert 8 < len(pcm) / 2 / 24000 < 30


DURATION_3S = {"type": "duration", "seconds": 3.0}


def test_silence_transcribes_to_empty_text(server: LiveServer) -> None:
    from ..conftest import encode

    wav = encode(np.zeros(16000 * 3, np.float32), 16000, "wav", "pcm_s16le", "s16")
    assert _transcribe(server, wav).json() == {"text": "", "usage": DURATION_3S}
