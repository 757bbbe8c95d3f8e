"""Graceful shutdown of a real `gateway serve` process on SIGTERM.

- readiness turns false at once: /ready answers 503 (shutting_down) while running work finishes;
- the unit already running finishes and its caller gets the result;
- work still queued gets a 503 in the OpenAI shape (code shutting_down), and so does new work
  (the server keeps listening while it drains);
- the process then exits on its own, well within the grace period plus a margin.

Nothing here asserts a duration of work: the waits are for states (a unit running, one queued),
with generous upper bounds only so that a broken build fails instead of hanging. The unit that
must still be running when readiness turns false is held by a file the test removes (HOLD_HOOK),
so "still running" is an order of events, not a race against the unit's length.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from ..conftest import tone_wav
from ..support.errors import assert_openai_error
from ..support.process import REPO, GatewayProcess, free_port

# gateway processes drained mid-inference, one per test
pytestmark = pytest.mark.slow

MODEL = "whisper-tiny.en"  # the quick one: the test needs a unit running, not a long one
GRACE_S = 60  # generous: the running unit must finish inside it even on a busy 2-core machine
PHRASE = "The quick brown fox jumps over the lazy dog, and then it runs far away into the woods."


# Loaded as sitecustomize in the server process: Whisper units wait while the hold file exists.
HOLD_HOOK = """
import os
hold = os.environ.get("GATEWAY_TEST_HOLD")
if hold:
    import time
    from gateway.engines import whisper
    _real_run = whisper.WhisperEngine.run
    def _held_run(self, handle, unit):
        while os.path.exists(hold):
            time.sleep(0.01)
        return _real_run(self, handle, unit)
    whisper.WhisperEngine.run = _held_run
"""


def _hold_env(tmp: Path) -> tuple[dict[str, str], Path]:
    (tmp / "sitecustomize.py").write_text(HOLD_HOOK)
    hold = tmp / "hold"
    path = os.pathsep.join([str(tmp), str(REPO), os.environ.get("PYTHONPATH", "")])
    return {"GATEWAY_TEST_HOLD": str(hold), "PYTHONPATH": path}, hold


def _clips(url: str) -> tuple[bytes, bytes]:
    """~28 s of speech (one work unit: windows are up to 30 s) and a short one, spoken by the
    server's own TTS."""
    from gateway.audio.decode import decode_audio
    from gateway.audio.encode import encode_audio

    r = httpx.post(
        url + "/v1/audio/speech",
        timeout=300,
        json={"model": "tts-1", "voice": "alloy", "input": PHRASE, "response_format": "wav"},
    )
    r.raise_for_status()
    speech = decode_audio(r.content)
    gap = np.zeros(4000, np.float32)
    reps = int(28 * 16000 // (len(speech) + len(gap))) + 1
    audio = np.concatenate([speech, gap] * reps)[: 28 * 16000]
    return encode_audio(audio, "mp3", 16000), encode_audio(speech, "mp3", 16000)


async def _wait_state(client: httpx.AsyncClient, predicate: Any, what: str) -> None:
    deadline = time.monotonic() + 300
    while True:
        status = (await client.get("/v1/scheduler")).json()
        if predicate(status):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}: {status}")
        await asyncio.sleep(0.05)


def _whisper_busy(status: dict) -> bool:
    return any(i["model"] == MODEL and i["busy"] for i in status["instances"])


def test_sigterm_drains_running_work_and_refuses_queued(tmp_path: Path) -> None:
    hold_env, hold = _hold_env(tmp_path)
    server = GatewayProcess(env={"GATEWAY_SERVER__SHUTDOWN_GRACE_S": str(GRACE_S), **hold_env})
    try:
        server.start()
        clip, short = _clips(server.url)
        # warm Whisper so that "running" below means transcribing, not loading
        warm = httpx.post(
            server.url + "/v1/audio/transcriptions",
            timeout=600,
            files={"file": ("w.mp3", short)},
            data={"model": MODEL},
        )
        assert warm.status_code == 200, warm.text

        async def scenario() -> dict[str, Any]:
            out: dict[str, Any] = {}
            async with httpx.AsyncClient(base_url=server.url, timeout=600) as c:

                def stt(name: str) -> Any:
                    return asyncio.ensure_future(
                        c.post(
                            "/v1/audio/transcriptions",
                            files={"file": (name, clip)},
                            data={"model": MODEL},
                        )
                    )

                hold.touch()  # the next unit stays running until the probes below are done
                running = stt("running.mp3")
                await _wait_state(c, _whisper_busy, "a transcription unit running")
                queued = stt("queued.mp3")
                await _wait_state(c, lambda s: s["queues"]["interactive"]["depth"] == 1,
                                  "a second transcription queued")  # fmt: skip
                server.send_signal(signal.SIGTERM)
                # readiness turns false at once, while the running unit is still running
                ready = await c.get("/ready")
                deadline = time.monotonic() + 60
                while ready.status_code == 200 and time.monotonic() < deadline:
                    await asyncio.sleep(0.01)  # the signal is handled on the next loop turn
                    ready = await c.get("/ready")
                out["ready"] = ready
                out["still_running"] = _whisper_busy((await c.get("/v1/scheduler")).json())
                out["queued"] = await queued
                # The held unit keeps the drain going, so the server still listens: a new caller
                # (a new connection, not one from this client's pool) gets an answer, a 503.
                async with httpx.AsyncClient(base_url=server.url, timeout=600) as fresh:
                    out["new"] = await fresh.post(
                        "/v1/audio/speech",
                        json={"model": "tts-1", "voice": "alloy", "input": "Too late."},
                    )
                hold.unlink()  # now the running unit may finish, inside the grace period
                out["running"] = await running
            return out

        out = asyncio.run(scenario())
        code = server.wait(GRACE_S + 60)
    finally:
        server.stop()
        log = server.log()
        server.close()

    ready = out["ready"]
    assert ready.status_code == 503, ready.text
    assert ready.json()["status"] == "not_ready" and ready.json()["shutting_down"] is True
    assert out["still_running"], "the probe came after the running unit had finished"

    err = assert_openai_error(out["queued"], 503)
    assert err["code"] == "shutting_down" and err["type"] == "server_error"
    assert assert_openai_error(out["new"], 503)["code"] == "shutting_down"

    running = out["running"]
    assert running.status_code == 200, running.text
    assert "fox" in running.json()["text"].lower()

    assert code in (0, -signal.SIGTERM), (code, log[-2000:])
    assert "SIGTERM: draining" in log
    assert "Traceback" not in log, log[-3000:]


def _signalled(grace_s: int, sig: signal.Signals, count: int = 1) -> tuple[int, str]:
    """A gateway, not waited for to be ready, sent `sig` `count` times: its exit code (within
    120 s) and its log."""
    server = GatewayProcess(env={"GATEWAY_SERVER__SHUTDOWN_GRACE_S": str(grace_s)})
    try:
        server.start(ready=False)
        for _ in range(count):
            server.send_signal(sig)
        code = server.wait(120)
    finally:
        server.stop()
        log = server.log()
        server.close()
    return code, log


def test_sigterm_when_idle_exits_cleanly() -> None:
    code, log = _signalled(5, signal.SIGTERM)
    assert code in (0, -signal.SIGTERM), (code, log[-2000:])
    assert "Traceback" not in log


def test_sigint_drains_too_and_a_second_one_stops_at_once() -> None:
    """Ctrl-C drains like SIGTERM and exits cleanly; Ctrl-C twice stops without waiting for the
    grace period (here 600 s)."""
    for count in (1, 2):
        code, log = _signalled(600, signal.SIGINT, count)
        assert code == 0, (count, code, log[-2000:])
        assert "SIGINT: draining" in log
        if count == 1:
            assert "Traceback" not in log, log[-3000:]


# A `gateway serve` whose Whisper unit outlasts any test (a stand-in engine: the point is the
# length of the unit, not the model). Everything else is the real server and its signal handling.
LONG_UNIT_SERVER = """
import sys, time
from gateway.engines.whisper import TranscribeResult, WhisperEngine
WhisperEngine.load = lambda self, device: object()
def run(self, handle, unit):
    print("UNIT STARTED", flush=True)
    time.sleep(3600)
    return TranscribeResult([], "en")
WhisperEngine.run = run
from gateway.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_sigterm_while_a_unit_runs_past_the_grace_exits_after_one_grace_period() -> None:
    """SIGTERM while a unit runs far longer than the grace period: the signal handler's drain and
    the lifespan's shutdown share one grace period (close is idempotent), and the worker thread
    running the unit does not hold the process open.

    Measured in the process's own log, from the drain's first line to its last before exit: the
    drain waits the grace period for the unit, then at most 1 s for idle models to unload and at
    least 1 s for open connections (cli.py), so one grace period plus a few seconds; a second
    grace period (a drain that is not shared) would pass 2 x grace. A process held open by the
    unit's thread would not exit within the hour the unit sleeps."""
    grace = 8.0
    port = free_port()
    env = {**os.environ, "GATEWAY_SERVER__LOG_FORMAT": "text",
           "GATEWAY_SERVER__SHUTDOWN_GRACE_S": str(grace)}  # fmt: skip
    cmd = [sys.executable, "-c", LONG_UNIT_SERVER, "serve", "--host", "127.0.0.1",
           "--port", str(port)]  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    log_path = Path(tempfile.mkstemp(suffix=".log")[1])
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen(cmd, env=env, cwd=REPO, stdout=log_file, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 300
        while True:
            assert proc.poll() is None, log_path.read_text()
            try:
                if httpx.get(url + "/health", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.2)

        async def scenario() -> None:
            async with httpx.AsyncClient(base_url=url, timeout=120) as c:
                request = asyncio.ensure_future(c.post(
                    "/v1/audio/transcriptions", files={"file": ("a.wav", tone_wav())},
                    data={"model": "whisper-1"}))  # fmt: skip
                await _wait_state(c, lambda s: any(i["busy"] for i in s["instances"]),
                                  "the long unit running")  # fmt: skip
                while not _logged(log_path, "UNIT STARTED"):  # in the engine's run, not loading
                    await asyncio.sleep(0.05)
                proc.send_signal(signal.SIGTERM)
                t0 = time.monotonic()
                # a bound only against a hang (the unit sleeps an hour), never reached otherwise
                while proc.poll() is None and time.monotonic() - t0 < 120:
                    await asyncio.sleep(0.05)
                request.cancel()

        asyncio.run(scenario())
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(30)
    log = log_path.read_text()
    log_path.unlink()
    assert proc.returncode in (0, -signal.SIGTERM), (proc.returncode, log[-2000:])  # not killed
    drained = _logged_at(log, "SIGTERM: draining")
    abandoned = _logged_at(log, "exiting with work still running past shutdown_grace_s")
    assert grace <= abandoned - drained < 2 * grace, (abandoned - drained, log[-3000:])


def _logged_at(log: str, text: str) -> float:
    """When the first line of the text log holding `text` was written (epoch seconds)."""
    line = next((line for line in log.splitlines() if text in line), None)
    assert line is not None, f"not logged: {text!r}\n{log[-3000:]}"
    stamp = datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f")
    return stamp.timestamp()


def _logged(path: Path, text: str) -> bool:
    return text in path.read_text()


def test_sigterm_while_a_real_ctranslate2_decode_runs_exits_0_not_sigsegv() -> None:
    """A real Whisper decode (native CTranslate2 code on a worker thread) still running when the
    grace period ends: the process leaves without tearing the interpreter down under it. Before,
    the teardown freed the runtime beside the live decode and the process died of SIGSEGV
    (exit -11 / 139), seen twice in two runs."""
    server = GatewayProcess(env={"GATEWAY_SERVER__SHUTDOWN_GRACE_S": "1",
                                 "GATEWAY_SERVER__LOG_FORMAT": "text"})  # fmt: skip
    try:
        server.start()
        long, _ = _clips(server.url)

        async def scenario() -> None:
            async with httpx.AsyncClient(base_url=server.url, timeout=300) as c:
                requests = [
                    asyncio.ensure_future(c.post(
                        "/v1/audio/transcriptions", files={"file": ("a.mp3", long)},
                        data={"model": "whisper-base"}))  # fmt: skip
                    for _ in range(2)
                ]
                await _wait_state(c, lambda s: any(
                    i["busy"] and i["model"] == "whisper-base" for i in s["instances"]
                ), "a whisper-base decode running")  # fmt: skip
                server.send_signal(signal.SIGTERM)
                await asyncio.to_thread(server.wait, 120)
                for r in requests:
                    r.cancel()

        asyncio.run(scenario())
        code = server.wait(10)
    finally:
        server.stop()
        log = server.log()
        server.close()
    # The scenario happened: a unit was still running when the grace ran out.
    assert "still running past shutdown_grace_s" in log, log[-3000:]
    assert code == 0, (code, log[-3000:])
