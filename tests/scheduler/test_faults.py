"""Fault injection: GPU errors fall back to the CPU, engine crashes stay inside one request, and
corrupt or missing model files are reported (CLI, /ready, start-up log) instead of crashing.

The GPU here is simulated (`SimulatedGpu`): this machine has none, so the "GPU" instance is a
stand-in whose every unit fails with CUDA's out-of-memory message, exactly as a real OOM
surfaces from ONNX Runtime / CTranslate2.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from gateway.app import create_app
from gateway.config import Settings
from gateway.engines.kokoro import KokoroEngine
from gateway.engines.whisper import WhisperEngine
from gateway.runtime import Runtime
from gateway.scheduler import SimulatedGpu

from ..conftest import metric, missing_tool, models_dir, run_asgi, tone_wav
from ..support.errors import assert_openai_error
from ..support.faults import crash_on_call

CACHE = models_dir()  # GATEWAY_MODELS__DIR when set
DEFAULTS = ("kokoro", "whisper-base", "whisper-tiny.en")



async def _verified(gw: Runtime) -> None:
    assert gw.verification is not None
    await asyncio.wait_for(gw.verification, 300)


# -- GPU out of memory -> retried on the CPU ------------------------------------------------------

OOM = "CUDA failed with error out of memory"


@pytest.mark.parametrize("model", ["kokoro", "whisper-base"])
@pytest.mark.slow
def test_simulated_cuda_oom_mid_unit_retries_on_cpu(model: str,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    # Both runtimes say CUDA works, so the scheduler places units on the (simulated) GPU lane.
    for cls in (KokoroEngine, WhisperEngine):
        monkeypatch.setattr(cls, "gpu_support", lambda self: (True, "simulated CUDA"))
    gw = Runtime(Settings(), gpu=SimulatedGpu(total_mib=16384))
    engine = gw.models[model].engine
    real_load, real_run = engine.load, engine.run
    gpu_calls = []

    def load(device: Any) -> Any:
        # the "GPU" copy never computes anything: its units fail as an OOM would
        return ("gpu", None) if device.lane == "gpu" else ("cpu", real_load(device))

    def run(handle: Any, payload: Any) -> Any:
        lane, inner = handle
        if lane == "gpu":
            gpu_calls.append(payload)
            raise RuntimeError(OOM)
        return real_run(inner, payload)

    def run_batch(handle: Any, payloads: list[Any], batch_size: int) -> Any:
        # Whisper's GPU lane decodes through its batched path, a lone window included
        lane, inner = handle
        if lane == "gpu":
            gpu_calls.extend(payloads)
            raise RuntimeError(OOM)
        return real_run_batch(inner, payloads, batch_size)

    monkeypatch.setattr(engine, "load", load)
    monkeypatch.setattr(engine, "run", run)
    if hasattr(engine, "run_batch"):
        real_run_batch = engine.run_batch
        monkeypatch.setattr(engine, "run_batch", run_batch)
    with TestClient(create_app(runtime=gw), raise_server_exceptions=False) as client:
        # Kokoro's GPU lane file is not used until its checksum passes (start-up hashing)
        client.portal.call(_verified, gw)
        if model == "kokoro":
            r = client.post("/v1/audio/speech", json={"model": "tts-1", "voice": "alloy",
                                                      "input": "Hello there. How are you?",
                                                      "response_format": "wav"})  # fmt: skip
            assert r.status_code == 200, r.text
            assert r.content.startswith(b"RIFF") and len(r.content) > 24000
        else:
            r = client.post("/v1/audio/transcriptions", files={"file": ("a.wav", tone_wav())},
                            data={"model": "whisper-1"})  # fmt: skip
            assert r.status_code == 200, r.text
            assert "text" in r.json()
        assert gpu_calls, "the unit was never tried on the GPU lane"
        text = client.get("/metrics").text
        fallbacks = metric(text, "gateway_fallbacks_total", engine=model, reason="gpu_error")
        assert fallbacks == len(gpu_calls) >= 1
        assert metric(text, "gateway_units_total", engine=model, lane="gpu",
                      outcome="gpu_error") == len(gpu_calls)  # fmt: skip
        status = client.get("/v1/scheduler").json()
        assert {"model": model, "reason": "gpu_error", "count": len(gpu_calls)} in status[
            "fallbacks"
        ]


# -- an engine that crashes ---------------------------------------------------------------------


@pytest.fixture
def crashy_app():  # type: ignore[no-untyped-def]
    """The real app whose engines crash (a plain exception) on a marker in the request.
    (One per test: a gateway's lifespan runs once, as in a process.)"""
    app = create_app()
    gw = app.state.gateway
    kokoro, whisper = gw.models["kokoro"].engine, gw.models["whisper-base"].engine
    k_run, w_run = kokoro.run, whisper.run

    def kokoro_run(handle: Any, unit: Any) -> Any:
        if abs(unit.speed - 1.23) < 1e-9:
            raise ValueError("simulated engine crash: /secret/path token=abc")
        return k_run(handle, unit)

    def whisper_run(handle: Any, unit: Any) -> Any:
        if unit.prompt == "CRASH":
            raise KeyError("simulated engine crash")
        return w_run(handle, unit)

    kokoro.run, whisper.run = kokoro_run, whisper_run
    return app



@pytest.mark.slow
def test_engine_crash_is_a_clean_500_and_concurrent_requests_succeed(crashy_app: Any) -> None:
    wav = tone_wav()

    async def work(client: httpx.AsyncClient) -> list[httpx.Response]:
        def speech(text: str, speed: float = 1.0) -> Any:
            return client.post("/v1/audio/speech", json={"model": "tts-1", "voice": "alloy",
                                                         "input": text, "speed": speed})  # fmt: skip

        def stt(prompt: str | None = None) -> Any:
            data = {"model": "whisper-1", **({"prompt": prompt} if prompt else {})}
            return client.post("/v1/audio/transcriptions", files={"file": ("a.wav", wav)},
                               data=data)  # fmt: skip

        return list(await asyncio.gather(
            speech("This one crashes.", 1.23), speech("First neighbour."), stt("CRASH"),
            speech("Second neighbour."), stt(),
        ))  # fmt: skip

    crash_tts, ok1, crash_stt, ok2, ok_stt = run_asgi(crashy_app, work)
    for r in (crash_tts, crash_stt):
        err = assert_openai_error(r, 500)
        assert err["type"] == "server_error" and err["code"] == "internal_error"
        assert "secret" not in r.text and "simulated" not in r.text  # no internals leak out
    for r in (ok1, ok2):
        assert r.status_code == 200 and r.headers["content-type"] == "audio/mpeg", r.text[:200]
    assert ok_stt.status_code == 200 and "text" in ok_stt.json()


def test_engine_crash_leaves_the_engine_usable(crashy_app: Any) -> None:
    async def work(client: httpx.AsyncClient) -> list[httpx.Response]:
        out = []
        for speed in (1.23, 1.0, 1.23, 1.0):
            out.append(
                await client.post(
                    "/v1/audio/speech",
                    json={"model": "tts-1", "voice": "alloy", "input": "Again.", "speed": speed},
                )
            )
        out.append(await client.get("/metrics"))
        return out

    *responses, metrics = run_asgi(crashy_app, work)
    assert [r.status_code for r in responses] == [500, 200, 500, 200]
    assert metric(metrics.text, "gateway_units_total", engine="kokoro", outcome="error") >= 2


def test_engine_crash_mid_stream_ends_that_stream_only(crashy_app: Any) -> None:
    """Once audio is streaming the status is sent; a crash in a later unit cuts that body short.
    The server goes on serving."""
    gw = crashy_app.state.gateway
    kokoro = gw.models["kokoro"].engine
    run = kokoro.run
    calls = crash_on_call(kokoro, 2)
    try:

        async def work(client: httpx.AsyncClient) -> tuple[int, bytes | None, int]:
            body = {"model": "tts-1", "voice": "alloy", "input": "One sentence. Then another one.",
                    "response_format": "pcm", "stream": True}  # fmt: skip
            data: bytes | None = b""
            async with client.stream("POST", "/v1/audio/speech", json=body) as r:
                status = r.status_code
                try:
                    async for chunk in r.aiter_bytes():
                        data += chunk
                except httpx.HTTPError:
                    data = None  # the body was cut: also acceptable
            after = await client.post("/v1/audio/speech", json={"model": "tts-1", "voice": "alloy",
                                                                "input": "Fine."})  # fmt: skip
            return status, data, after.status_code

        status, data, after = run_asgi(crashy_app, work)
    finally:
        kokoro.run = run
    assert status == 200
    assert len(calls) >= 2
    assert after == 200


# -- corrupt and missing model files ------------------------------------------------------------


def _model_dir(tmp: Path, copy: dict[str, str]) -> Path:
    """A models dir whose files link to the real cache, except `copy` ({model: file}): real copies
    we may damage without touching the shared cache."""
    root = tmp / "models"
    for model in DEFAULTS:
        (root / model).mkdir(parents=True)
        for src in (CACHE / model).iterdir():
            dest = root / model / src.name
            if src.name == ".gateway-model.json" or copy.get(model) == src.name:
                shutil.copyfile(src, dest)
            else:
                dest.symlink_to(src)
    return root


def _flip(path: Path, at: float = 0.5, n: int = 64) -> None:
    """Flip n bytes in place: same size, different content (what a bad disk does)."""
    with open(path, "r+b") as fh:
        fh.seek(int(path.stat().st_size * at))
        block = fh.read(n)
        fh.seek(int(path.stat().st_size * at))
        fh.write(bytes(b ^ 0xFF for b in block))


def _cli(*args: str, models_dir: Path | None = None, **env: str) -> subprocess.CompletedProcess:
    full_env = {**os.environ, **env}
    if models_dir is not None:
        full_env["GATEWAY_MODELS__DIR"] = str(models_dir)
    return subprocess.run([sys.executable, "-m", "gateway.cli", *args], env=full_env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip


def _wait_verified(client: TestClient, task: str) -> dict:
    deadline = time.monotonic() + 120
    while True:
        r = client.get("/ready")
        detail = r.json()
        if (
            detail[task]["verified"] is not None
            or detail[task]["problems"]
            or (time.monotonic() > deadline)
        ):
            return {**detail, "http_status": r.status_code}
        time.sleep(0.2)


@pytest.mark.parametrize(
    "model,file,task,expect",
    [
        # bytes flipped inside a file the engine opens lazily: found by hashing
        ("whisper-base", "vocabulary.json", "transcription", "does not match"),
        # bytes flipped inside the voice pack, which is read at start-up: its parser fails
        ("kokoro", "voices.npz", "speech", "cannot open model files"),
    ],
)
@pytest.mark.slow
def test_corrupt_model_file(model: str, file: str, task: str, expect: str, tmp_path: Path,
                            caplog: pytest.LogCaptureFixture) -> None:  # fmt: skip
    needed = [CACHE / m for m in DEFAULTS] + [CACHE / model / file]
    missing = [str(p) for p in needed if not p.exists()]
    if missing:  # skipped locally, a failure under CI=true
        missing_tool(f"models not pulled ({', '.join(missing)}): gateway models pull")
    root = _model_dir(tmp_path, {model: file})
    _flip(root / model / file)

    verify = _cli("models", "verify", models_dir=root)
    assert verify.returncode != 0
    assert f"{model}: CORRUPT" in verify.stdout, verify.stdout
    assert f"gateway models pull --force {model}" in verify.stdout
    assert "Traceback" not in verify.stderr, verify.stderr
    for other in DEFAULTS:
        if other != model:
            assert f"{other}: ok" in verify.stdout, verify.stdout

    settings = Settings()
    settings.models.dir = root
    caplog.set_level(logging.WARNING)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        ready = _wait_verified(client, task)
        assert ready["http_status"] == 503 and ready["status"] == "not_ready"
        assert ready[task]["ready"] is False
        assert any(expect in p for p in ready[task]["problems"]), ready
        # the other task is still served
        other = "transcription" if task == "speech" else "speech"
        assert ready[other]["ready"] is True or ready[other]["verified"] is None
        if task == "speech":
            r = client.post("/v1/audio/speech", json={"model": "tts-1", "voice": "alloy",
                                                      "input": "Hi."})  # fmt: skip
        else:
            r = client.post("/v1/audio/transcriptions", files={"file": ("a.wav", tone_wav())},
                            data={"model": "whisper-1"})  # fmt: skip
        err = assert_openai_error(r, 503)
        assert err["code"] == "model_unavailable" and "gateway models pull" in err["message"]
    logged = [rec.getMessage() for rec in caplog.records if rec.levelno >= logging.WARNING]
    assert any(f"gateway models pull --force {model}" in m for m in logged), logged
    assert not any(rec.exc_info for rec in caplog.records), "a traceback was logged"


def test_missing_model_is_a_clear_message(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    missing = tmp_path / "no-such-folder"
    settings = Settings()
    settings.models.local_paths = {"whisper-base": missing}
    caplog.set_level(logging.WARNING)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        ready = client.get("/ready")
        assert ready.status_code == 503
        problems = ready.json()["transcription"]["problems"]
        assert any(str(missing) in p and "does not exist" in p for p in problems), problems
        r = client.post("/v1/audio/transcriptions", files={"file": ("a.wav", tone_wav())},
                        data={"model": "whisper-1"})  # fmt: skip
        err = assert_openai_error(r, 503)
        assert err["code"] == "model_unavailable"
        assert "gateway models pull" in err["message"]
        # speech is unaffected
        assert client.get("/v1/audio/models").json()["models"]
        voices = client.get("/v1/audio/voices")
        assert voices.status_code == 200
    logged = [rec.getMessage() for rec in caplog.records if rec.levelno >= logging.WARNING]
    assert any("gateway models pull whisper-base" in m for m in logged), logged
    assert not any(rec.exc_info for rec in caplog.records), "a traceback was logged"

    env = {"GATEWAY_MODELS__LOCAL_PATHS": f'{{"whisper-base": "{missing}"}}'}
    verify = _cli("models", "verify", "whisper-base", **env)
    assert verify.returncode != 0
    assert "does not exist" in verify.stdout and "Traceback" not in verify.stderr
    out = tmp_path / "a.wav"
    out.write_bytes(tone_wav())
    transcribe = _cli("transcribe", str(out), **env)
    assert transcribe.returncode != 0
    assert "Traceback" not in transcribe.stderr, transcribe.stderr
    assert re.search(r"error 503: .*not available.*gateway models pull", transcribe.stderr)
