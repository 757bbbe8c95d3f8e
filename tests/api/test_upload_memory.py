"""Uploads are bounded in memory: the decoder writes into one array (its peak is that array, not
the decoded frames plus a joined copy), a full queue refuses an upload before it is decoded,
and the decoded audio that transcriptions hold together is capped (`max_queued_audio_s`).

The long files repeat a short encoded segment, so making them takes well under a second.
"""

from __future__ import annotations

import asyncio
import io
import tracemalloc
from fractions import Fraction
from typing import Any

import av
import httpx
import numpy as np
import pytest

from gateway.app import create_app
from gateway.audio import decode as decoder
from gateway.audio.budget import beside
from gateway.audio.decode import TARGET_RATE, AudioFile, decode_audio
from gateway.config import Settings
from gateway.engines import vad
from gateway.engines import whisper as whisper_mod
from gateway.engines.whisper import WHISPER_INPUT
from gateway.runtime import Runtime
from gateway.tasks import transcription as stt

from ..conftest import metric, run_asgi, tone_wav
from ..support.errors import assert_openai_error
from ..support.faults import blocked
from ..support.wait import until as _until

# long uploads decoded and transcribed to measure memory
pytestmark = pytest.mark.slow

STT = "/v1/audio/transcriptions"
SPEECH = "/v1/audio/speech"
MIB = 1024 * 1024


def _segment(rate: int, seconds: float = 10.0) -> np.ndarray:
    """A tone whose loudness swells three times a second, with a little noise: speech-like
    enough for the codec to spend its bits."""
    t = np.arange(int(rate * seconds)) / rate
    noise = np.random.default_rng(0).standard_normal(len(t))
    x = 0.2 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 3 * t)) + 0.02 * noise
    return x.astype(np.float32)


def _encode_packets(codec: str, fmt: str, options: dict[str, str], rate: int) -> bytes:
    buf = io.BytesIO()
    with av.open(buf, "w", format=fmt, options=options) as c:
        s = c.add_stream(codec, rate=rate, layout="mono")
        s.bit_rate = 8000
        frame = av.AudioFrame.from_ndarray(_segment(rate)[None], format="flt", layout="mono")
        frame.rate = rate
        for p in [*s.encode(frame), *s.encode(None)]:
            c.mux(p)
    return buf.getvalue()


def long_mp3(seconds: float) -> bytes:
    """8 kHz mono MP3 at 8 kbit/s (1 h is 3.6 MB, well under the upload limit) with no Xing or
    ID3 header: a run of CBR frames, so one segment repeated is a valid longer stream whose
    duration FFmpeg estimates from the bit rate."""
    seg = _encode_packets("libmp3lame", "mp3", {"write_xing": "0", "id3v2_version": "0"}, 8000)
    return seg * round(seconds / 10.152)  # a 10 s segment encodes to 10.152 s of frames


def long_webm_no_duration(seconds: float) -> bytes:
    """Opus in a live WebM (as a browser's MediaRecorder writes it): no duration to size by."""
    seg = _encode_packets("libopus", "webm", {}, 16000)
    with av.open(io.BytesIO(seg)) as src:
        packets = [bytes(p) for p in src.demux(src.streams.audio[0]) if p.size]
    out = io.BytesIO()
    with av.open(out, "w", format="webm", options={"live": "1"}) as c:
        s = c.add_stream("libopus", rate=16000, layout="mono")
        n = 0
        for _ in range(round(seconds / 10)):
            for data in packets:  # 20 ms each
                p = av.Packet(data)
                p.pts = p.dts = n * 960
                p.duration, p.time_base, p.stream = 960, Fraction(1, 48000), s
                c.mux(p)
                n += 1
    return out.getvalue()


def decode_peak(data: bytes) -> tuple[np.ndarray, int]:
    """The decoded audio and the most memory Python and numpy held while decoding it."""
    tracemalloc.start()
    try:
        audio = decode_audio(data, 4 * 3600)
        return audio, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.fixture(scope="module")
def hour_mp3() -> bytes:
    return long_mp3(3600)


def test_hour_of_low_bitrate_mp3_decodes_into_one_array(hour_mp3: bytes) -> None:
    """The container states the duration: one array of that size is the whole peak (the old
    decoder held every frame and then the joined copy: 514 MiB for this 223 MiB hour)."""
    assert len(hour_mp3) < 4 * MIB
    audio, peak = decode_peak(hour_mp3)
    assert audio.dtype == np.float32 and audio.flags.owndata
    assert abs(len(audio) / TARGET_RATE - 3600) < 10
    assert 0.05 < float(np.sqrt(np.mean(audio[-TARGET_RATE * 60 :] ** 2))) < 0.5  # the tone
    assert peak <= audio.nbytes * 1.02 + 4 * MIB, (peak / MIB, audio.nbytes / MIB)


def test_upload_without_duration_grows_one_array(monkeypatch: pytest.MonkeyPatch) -> None:
    """No duration in the container: the array grows by half again from a first guess and is
    cut to the audio, so the peak stays under 1.5 arrays (the old decoder: over 2)."""
    monkeypatch.setattr(decoder, "UNKNOWN_FIRST_S", 5.0)  # several growths in two minutes
    data = long_webm_no_duration(120)
    upload = AudioFile(data)
    assert upload.seconds is None
    upload.close()
    audio, peak = decode_peak(data)
    assert abs(len(audio) / TARGET_RATE - 120) < 1
    assert peak <= audio.nbytes * 1.5 + 2 * MIB, (peak / MIB, audio.nbytes / MIB)


def test_vad_pass_over_a_long_upload_holds_a_slice_not_copies() -> None:
    """The VAD that plans a long upload's windows (engines/vad.py) holds a few MiB whatever the
    length; faster-whisper's pass padded a copy of the array and built a second one with each
    window's context (over two arrays: 1.1 GiB beside a two-hour upload)."""
    audio = _segment(TARGET_RATE, 600.0)  # ten minutes, 37 MiB
    vad.get_speech_timestamps(audio[:TARGET_RATE])  # the model's session, once for the process
    tracemalloc.start()
    try:
        vad.get_speech_timestamps(audio)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    probabilities = len(audio) // 512 * 4
    assert peak <= probabilities + 2 * MIB, (peak / MIB, audio.nbytes / MIB)


def test_windows_of_a_long_upload_join_their_audio_one_at_a_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Ten minutes that the VAD finds all speech (4.4 s phrases every 5 s): planning the
    windows holds no copy of their audio (joined for all windows at once, they were as much
    again as the array until the response ended); each unit joins its own when taken, and
    that audio is its window's regions back to back."""
    sr = TARGET_RATE
    audio = _segment(sr, 600.0)
    chunks = [(int(i * 5.0 * sr), int((i * 5.0 + 4.4) * sr)) for i in range(120)]
    monkeypatch.setattr(whisper_mod, "get_speech_timestamps",
                        lambda audio, options: [{"start": a, "end": b} for a, b in chunks])  # fmt: skip
    gw = Runtime(Settings())
    plan = stt.check(gw, stt.TranscriptionInput("whisper-1", language="en"))
    data = tone_wav(1.0)
    monkeypatch.setattr(stt, "AudioFile", lambda data, limit: _Decoded(audio))
    tracemalloc.start()
    try:
        work = asyncio.run(stt.prepare(gw, plan, data))
        planned = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        units = work.units
        assert len(units) >= 20
        for i in range(len(units)):
            unit = units[i]
            pieces = [audio[a : a + n] for a, n in unit.pieces]
            assert np.array_equal(unit.audio, np.concatenate(pieces))
            del unit, pieces
        taken = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert planned <= 2 * MIB, planned / MIB  # the array was decoded before tracing started
    assert taken <= 3 * 30 * sr * 4, taken / MIB  # one window (and its check) at a time


class _Decoded:
    """An AudioFile that hands over an array already decoded."""

    def __init__(self, audio: np.ndarray) -> None:
        self.audio, self.seconds = audio, len(audio) / TARGET_RATE
        self.capacity = len(audio)

    def close(self) -> None:
        pass

    def decode(self, grow: Any = None) -> np.ndarray:
        return self.audio


class Spy:
    """Counts the uploads opened (probed) and decoded by the transcription task."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.opened = 0
        self.decoded = 0
        spy = self

        class Counted(AudioFile):
            def __init__(self, data: bytes, max_seconds: float | None = None) -> None:
                spy.opened += 1
                super().__init__(data, max_seconds)

            def decode(self, grow: Any = None) -> np.ndarray:
                spy.decoded += 1
                return super().decode(grow)

        monkeypatch.setattr(stt, "AudioFile", Counted)


def test_full_queue_refuses_upload_before_decoding(
    hour_mp3: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With both queues full, an hour-long upload (level batch by its stated duration) and a
    short clip get 429 with Retry-After, and neither is decoded; one with X-Priority is not
    even opened. Once the queues drain, the same kind of clip is decoded and transcribed."""
    settings = Settings()
    settings.scheduler.interactive.max_queue_size = 1
    settings.scheduler.batch.max_queue_size = 1
    app = create_app(settings)
    gw = app.state.gateway
    gate, started = blocked(gw.models["kokoro"].engine)
    spy = Spy(monkeypatch)
    sched = gw.scheduler
    say = {"model": "tts-1", "voice": "alloy", "input": "Queued.", "response_format": "pcm"}
    short = tone_wav(2.0)

    async def work(c: httpx.AsyncClient) -> dict[str, Any]:
        out: dict[str, Any] = {}
        speak = lambda **kw: asyncio.ensure_future(c.post(SPEECH, json=say, **kw))  # noqa: E731

        async def hear(data: bytes, **kw: Any) -> httpx.Response:
            return await c.post(STT, files={"file": ("a", data)},
                                data={"model": "whisper-1"}, **kw)  # fmt: skip

        speeches = [speak()]
        await _until(started.is_set, "first speech running")
        speeches.append(speak())
        speeches.append(speak(headers={"X-Priority": "batch"}))
        await _until(lambda: sched.queued() == 2, "both queues full")
        out["hour"] = await hear(hour_mp3)
        out["after_hour"] = (spy.opened, spy.decoded)
        out["chosen"] = await hear(short, headers={"X-Priority": "interactive"})
        out["after_chosen"] = (spy.opened, spy.decoded)
        out["short"] = await hear(short)
        out["after_short"] = (spy.opened, spy.decoded)
        out["metrics"] = (await c.get("/metrics")).text
        gate.set()
        out["speeches"] = await asyncio.gather(*speeches)
        out["drained"] = await hear(short)
        out["after_drained"] = (spy.opened, spy.decoded)
        return out

    try:
        out = run_asgi(app, work)
    finally:
        gate.set()
    for key, level in (("hour", "batch"), ("chosen", "interactive"), ("short", "interactive")):
        err = assert_openai_error(out[key], 429)
        assert err["type"] == "rate_limit_error" and err["code"] == "queue_full", err
        assert f"the {level} queue is full" in err["message"], err
        assert int(out[key].headers["Retry-After"]) >= 1
    assert out["after_hour"] == (1, 0)  # probed for its duration, never decoded
    assert out["after_chosen"] == (1, 0)  # refused before the upload was opened
    assert out["after_short"] == (2, 0)
    m = out["metrics"]
    assert metric(m, "gateway_rejections_total", level="batch", reason="queue_full") == 1
    assert metric(m, "gateway_rejections_total", level="interactive", reason="queue_full") == 2
    assert all(r.status_code == 200 for r in out["speeches"])
    assert out["drained"].status_code == 200, out["drained"].text
    assert out["after_drained"] == (3, 1)
    assert gw.audio_budget.held == 0


def test_decoded_audio_cap_refuses_with_429(monkeypatch: pytest.MonkeyPatch) -> None:
    """The cap holds a 20 s clip and a 5 s one, each with what it holds beside its samples
    (its bytes, its windows in flight and the language probe): with the 20 s clip held (its
    window running), another 20 s clip is refused (429, Retry-After) before it is decoded,
    while the 5 s one fits and is admitted. When the responses end (one of them streamed) the
    budget is back to zero."""
    settings = Settings()
    windows = 2 + settings.whisper.language_segments  # CPU: one window of a job at a time

    def held_s(seconds: float) -> float:
        extra = beside(len(tone_wav(seconds)), windows, WHISPER_INPUT)
        return seconds + extra / TARGET_RATE

    cap_s = held_s(20) + held_s(5) + 5  # the 5 s clip takes its estimate (+1 %, +1 s) to decode
    settings.server.max_queued_audio_s = cap_s
    app = create_app(settings)
    gw = app.state.gateway
    gate, started = blocked(gw.models["whisper-base"].engine)
    spy = Spy(monkeypatch)
    budget = gw.audio_budget

    async def work(c: httpx.AsyncClient) -> dict[str, Any]:
        out: dict[str, Any] = {}

        def hear(seconds: float, **form: str) -> asyncio.Future[httpx.Response]:
            files = {"file": ("a.wav", tone_wav(seconds))}
            form = {"model": "whisper-1", **form}
            return asyncio.ensure_future(c.post(STT, files=files, data=form))

        first = hear(20)
        await _until(started.is_set, "first clip running")
        out["held_first"] = budget.held_s
        out["over"] = await hear(20)
        out["after_over"] = (spy.opened, spy.decoded)
        fits = hear(5, stream="true")
        await _until(lambda: gw.scheduler.queued() == 1, "5 s clip queued")
        out["held_both"] = budget.held_s
        out["metrics"] = (await c.get("/metrics")).text
        gate.set()
        out["first"], out["fits"] = await asyncio.gather(first, fits)
        return out

    try:
        out = run_asgi(app, work)
    finally:
        gate.set()
    assert out["held_first"] == pytest.approx(held_s(20), abs=0.01)
    err = assert_openai_error(out["over"], 429)
    assert err["type"] == "rate_limit_error" and err["code"] == "queue_full", err
    assert "decoded audio" in err["message"] and f"{cap_s:.0f} s" in err["message"], err
    assert int(out["over"].headers["Retry-After"]) >= 1
    assert out["after_over"] == (2, 1)  # opened for its duration; only the first was decoded
    assert out["held_both"] == pytest.approx(held_s(20) + held_s(5), abs=0.01)
    assert metric(out["metrics"], "gateway_rejections_total", reason="audio_held") == 1
    assert out["first"].status_code == 200 and out["fits"].status_code == 200
    assert "transcript.text.done" in out["fits"].text
    assert budget.held == 0 and budget.peak <= cap_s * TARGET_RATE
