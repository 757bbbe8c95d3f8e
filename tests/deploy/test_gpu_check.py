"""scripts/gpu_check.py dry, on the CPU (issue #10, item 13): it imports, a failing step is
"failed" with a non-zero exit, an engine that claims the GPU and then breaks there fails (not
"skipped"), and the admission step's memory pressure leaves less than budget + reserve free."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from gateway.engines.kokoro import KokoroEngine
from gateway.engines.whisper import WhisperEngine

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "gpu_check.py"


@pytest.fixture
def gpu_check() -> Any:
    spec = importlib.util.spec_from_file_location("gpu_check_under_test", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


def test_a_failing_step_is_failed_and_the_exit_code_non_zero(gpu_check: Any, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    @gpu_check.step("simulated")
    def broken() -> dict:
        raise RuntimeError("CUDA failed with error out of memory")

    @gpu_check.step("not_here")
    def absent() -> dict:
        raise gpu_check.SkipStep("no torch")

    monkeypatch.setattr(gpu_check, "STEPS", [broken, absent])
    out = tmp_path / "r.json"
    assert gpu_check.main(["--out", str(out)]) == 1
    results = json.loads(out.read_text())
    assert results["simulated"]["status"] == "failed"
    assert "out of memory" in results["simulated"]["error"]
    assert results["not_here"]["status"] == "skipped"


def test_an_engine_broken_on_the_gpu_fails_the_step(gpu_check: Any,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """Kokoro says CUDA works, then its GPU load fails; Whisper has no CUDA here (skipped)."""
    monkeypatch.setattr(KokoroEngine, "gpu_support", lambda self: (True, "simulated CUDA"))
    monkeypatch.setattr(WhisperEngine, "gpu_support", lambda self: (False, "no CUDA"))
    real_load = KokoroEngine.load

    def load(self: KokoroEngine, device: Any) -> Any:
        if device.lane == "gpu":
            raise RuntimeError("CUDA failure 100: no CUDA-capable device is detected")
        return real_load(self, device)

    monkeypatch.setattr(KokoroEngine, "load", load)
    monkeypatch.setattr(gpu_check, "RESULTS", {})
    gpu_check.engines_on_gpu()
    result = gpu_check.RESULTS["engines_on_gpu"]
    assert result["status"] == "failed", result
    assert "CUDA failure 100" in result["error"]


@pytest.mark.slow
def test_whisper_is_timed_on_real_speech(gpu_check: Any) -> None:
    from gateway.config import Settings
    from gateway.engines.base import Device
    from gateway.engines.whisper import TranscribeUnit, plan_windows
    from gateway.runtime import Runtime

    gw = Runtime(Settings())
    clip = gpu_check.speech_clip(gw)
    assert len(clip) / 16000 > 2.0
    assert plan_windows(clip, 30.0)  # not dropped as silence
    whisper = gw.models["whisper-tiny.en"].engine
    handle = whisper.load(Device("cpu", 0, 2))
    result = whisper.run(handle, TranscribeUnit(audio=clip, offset_s=0.0, language="en"))
    assert "fox" in " ".join(s["text"] for s in result.segments).lower()


def test_pressure_is_computed_from_what_is_free_after_the_unload(gpu_check: Any) -> None:
    budget, reserve = 1024, 512
    # H200-like: 140 GB free after "a" was unloaded (its 1 GiB already back in the free count)
    free_after_unload = 140_000
    left = free_after_unload - gpu_check.pressure_mib(free_after_unload, budget, reserve)
    assert left < budget + reserve  # the next load of "a" must be refused: not_admitted
    assert left > 0
    assert gpu_check.pressure_mib(100, budget, reserve) == 0  # never negative
