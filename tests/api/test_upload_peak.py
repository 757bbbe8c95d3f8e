"""A whole transcription request (decode, VAD, window planning, decoding) grows a running
server's memory by at most 1.25 times the upload's decoded array, beside what any request costs
it, and the decoded-audio cap counts what uploads hold at that peak.

A separate `gateway serve` process takes the uploads over HTTP; its peak RSS (VmHWM, reset
through /proc/PID/clear_refs before each upload) is compared with its RSS before. What any
request costs, whatever its length (Whisper's buffers for one window, faster-whisper's features),
is measured the same way on a one-minute upload of speech. The long files repeat a short encoded segment
(CBR frames with no header), so making them costs one TTS call.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import av
import httpx
import numpy as np
import pytest

from gateway.audio.decode import TARGET_RATE

from ..support.process import GatewayProcess, proc_status

pytestmark = pytest.mark.slow  # a gateway process and hours of audio

MODEL = "whisper-tiny.en"  # the process's memory is what is measured, not the model's accuracy
STT = "/v1/audio/transcriptions"
PHRASE = "The quick brown fox jumps over the lazy dog, and then it runs far away into the woods."
BOUND = 1.25  # peak growth / decoded array, per request
MIB = 1024 * 1024
CAP_S = 3.5 * 1200  # three 20-minute uploads fit, with what they hold beside; four do not


def _mp3(segment: np.ndarray, repeats: int, bit_rate: int) -> bytes:
    """16 kHz mono MP3 of `segment` `repeats` times: CBR frames with no Xing or ID3 header, so
    one encoded segment repeated is a valid stream whose duration FFmpeg estimates from the bit
    rate (as a long upload's header states it)."""
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp3", options={"write_xing": "0", "id3v2_version": "0"}) as c:
        s = c.add_stream("libmp3lame", rate=TARGET_RATE, layout="mono")
        s.bit_rate = bit_rate
        frame = av.AudioFrame.from_ndarray(segment[None], format="flt", layout="mono")
        frame.rate = TARGET_RATE
        for p in [*s.encode(frame), *s.encode(None)]:
            c.mux(p)
    return buf.getvalue() * repeats


def _faint(seconds: float) -> np.ndarray:
    noise = np.random.default_rng(0).standard_normal(int(seconds * TARGET_RATE))
    return (0.002 * noise).astype(np.float32)


def _dense(speech: np.ndarray, seconds: float) -> np.ndarray:
    """The sentence over and over, with half a second between."""
    gap = np.zeros(int(0.5 * TARGET_RATE), np.float32)
    return np.concatenate([speech, gap] * int(seconds * TARGET_RATE // (len(speech) + len(gap))))


def _spoken(url: str) -> np.ndarray:
    from gateway.audio.decode import decode_audio

    r = httpx.post(url + "/v1/audio/speech", timeout=300, json={
        "model": "tts-1", "voice": "alloy", "input": PHRASE, "response_format": "wav"})  # fmt: skip
    r.raise_for_status()
    return decode_audio(r.content)


class Server:
    """The gateway process, and its peak RSS growth per request."""

    def __init__(self, proc: GatewayProcess, speech: np.ndarray) -> None:
        self.proc = proc
        self.url = proc.url
        self.speech = speech  # PHRASE, spoken by the server's TTS
        self.fixed = 0  # bytes: the peak growth of a one-minute upload of speech

    def growth(self, send: Callable[[], Any]) -> tuple[int, Any]:
        """Peak RSS growth in bytes while `send()` runs, and what it returned."""
        with open(f"/proc/{self.proc.pid}/clear_refs", "w") as fh:
            fh.write("5")  # VmHWM := VmRSS
        before = proc_status(self.proc.pid)["VmRSS"]
        out = send()
        return (proc_status(self.proc.pid)["VmHWM"] - before) * 1024, out

    def check(self, case: str, grew: int, array: int) -> None:
        print(f"{case}: peak growth {grew / MIB:.0f} MiB / decoded array {array / MIB:.0f} MiB "
              f"= {grew / array:.2f}; less a one-minute upload's {self.fixed / MIB:.0f} MiB: "
              f"{(grew - self.fixed) / array:.2f}")  # fmt: skip
        assert grew <= BOUND * array + self.fixed, (grew / MIB, array / MIB, self.fixed / MIB)

    def wait_idle(self) -> None:
        """Until no model instance runs a unit (a cancelled job's last one finishes)."""
        deadline = time.monotonic() + 300
        while any(i["busy"] for i in httpx.get(self.url + "/v1/scheduler").json()["instances"]):
            assert time.monotonic() < deadline, "the server stayed busy"
            time.sleep(0.2)


def _post(url: str, data: bytes, **kw: Any) -> httpx.Response:
    return httpx.post(url + STT, files={"file": ("a.mp3", data)},
                      data={"model": MODEL}, timeout=600, **kw)  # fmt: skip


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    if not os.path.exists("/proc/self/clear_refs"):
        pytest.skip("needs Linux's /proc/PID/clear_refs")
    proc = GatewayProcess({
        "GATEWAY_SERVER__MAX_QUEUED_AUDIO_S": str(CAP_S),
        "GATEWAY_WHISPER__BEAM_SIZE": "1",
        "GATEWAY_WHISPER__CPU_NICE": "0",  # other tests' load would starve a niced Whisper
    })  # fmt: skip
    try:
        proc.start()
        server = Server(proc, _spoken(proc.url))
        minute = _mp3(_dense(server.speech, 60.0), 1, 24000)  # Whisper's costliest windows
        r = _post(server.url, minute)  # loads the model, the VAD session, the decoder
        assert r.status_code == 200, r.text
        for _ in range(2):
            grew, r = server.growth(lambda: _post(server.url, minute))
            assert r.status_code == 200, r.text
            server.fixed = max(server.fixed, grew)
        yield server
    finally:
        proc.close()


def _array_bytes(r: httpx.Response) -> int:
    """The decoded array of the upload the response answers (its duration at 16 kHz)."""
    return round(r.json()["duration"] * TARGET_RATE) * 4


def _verbose(url: str, data: bytes) -> httpx.Response:
    return httpx.post(url + STT, files={"file": ("a.mp3", data)},
                      data={"model": MODEL, "response_format": "verbose_json"}, timeout=600)  # fmt: skip


def test_long_silent_upload(server: Server) -> None:
    """45 minutes of faint noise after one sentence, 8 kbit/s MP3 (2.7 MB, array 173 MB)."""
    speech = server.speech
    segment = np.concatenate([speech, _faint(20.0 - len(speech) / TARGET_RATE)])
    data = _mp3(segment, 1, 8000) + _mp3(_faint(20.0), 134, 8000)
    grew, r = server.growth(lambda: _verbose(server.url, data))
    assert r.status_code == 200, r.text
    array = _array_bytes(r)
    assert array > 160 * MIB
    assert "fox" in r.json()["text"].lower(), r.json()["text"]
    server.check("silent", grew, array)


def test_long_upload_of_speech(server: Server) -> None:
    """24 minutes of one sentence over and over, 24 kbit/s MP3 (array 92 MB): the peak comes
    with the decode, the VAD and the windows' planning, all done before the first window runs
    (the windows, all speech, used to be joined at once then: as much again as the array), so
    the stream is read for a few windows and then left, which cancels the rest."""
    segment = _dense(server.speech, 20.0)
    reps = round(len(segment) / (len(server.speech) + TARGET_RATE // 2))  # sentences in it
    repeats = round(24 * 60 * TARGET_RATE / len(segment))
    data = _mp3(segment, repeats, 24000)
    form = {"model": MODEL, "stream": "true"}

    def three_windows() -> str:
        text = ""
        with httpx.stream("POST", server.url + STT, files={"file": ("a.mp3", data)}, data=form,
                          timeout=600) as r:  # fmt: skip
            assert r.status_code == 200, r.read()
            for line in r.iter_lines():
                if line.startswith("data: "):
                    text += json.loads(line[6:]).get("delta", "")
                if text.lower().count("fox") >= 3 * reps:
                    return text
        raise AssertionError(f"the stream ended: {text[:300]}")

    grew, text = server.growth(three_windows)
    server.wait_idle()
    assert text.lower().count("fox") >= 3 * reps
    server.check("speech", grew, len(segment) * repeats * 4)  # the decoder adds a few frames


def test_uploads_at_once_fit_the_cap(server: Server) -> None:
    """Four 20-minute uploads at once, the cap set for three and a half: three are admitted,
    one is refused (429) before it is decoded, and the three together grow the server by at
    most 1.25 times their arrays, and by no more than the cap (beside what any request costs)."""
    speech = server.speech
    segment = np.concatenate([speech, _faint(20.0 - len(speech) / TARGET_RATE)])
    data = _mp3(segment, 1, 8000) + _mp3(_faint(20.0), 59, 8000)
    form = {"model": MODEL, "response_format": "verbose_json"}

    async def four() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=server.url, timeout=600) as c:
            return await asyncio.gather(*(
                c.post(STT, files={"file": ("a.mp3", data)}, data=form)
                for _ in range(4)))  # fmt: skip

    grew, rs = server.growth(lambda: asyncio.run(four()))
    codes = sorted(r.status_code for r in rs)
    assert codes == [200, 200, 200, 429], [r.text[:200] for r in rs]
    assert all("fox" in r.json()["text"].lower() for r in rs if r.status_code == 200)
    array = sum(_array_bytes(r) for r in rs if r.status_code == 200)
    server.check("three at once", grew, array)
    assert grew <= CAP_S * TARGET_RATE * 4 + server.fixed, (grew / MIB, CAP_S)
