"""GPU check for a machine with a real NVIDIA GPU (never part of the test suite).

Run from the repository root with the project importable (`PYTHONPATH=.` is enough when the
dependencies are installed):

    python scripts/gpu_check.py --out results/gpu-check.json

What it exercises on the real device, each step independent, each result reported:
1. NVML inventory: total/free/used memory, utilization, this process's own usage, MIG mode.
2. Budget admission against real NVML readings: the real scheduler with two engines that allocate
   real CUDA memory (PyTorch tensors the size of their budget). Both fit and run on the GPU; then
   other memory is taken until less than budget + reserve is free, and the next load must be
   refused (`not_admitted`) and run on the CPU; an over-budget uncapped engine is sent off the GPU.
3. The real runtimes where their CUDA libraries exist: `gateway doctor`'s verdicts, then Whisper
   (CTranslate2) and Kokoro (onnxruntime-gpu) on the GPU, timed on real speech (a sentence
   Kokoro speaks, resampled to 16 kHz; the transcript must contain its words).
Steps that cannot run (no torch, no CUDA runtime for an engine) are reported as skipped with the
reason, never as passed. An engine that says it can use the GPU but fails to load or run there is
broken: that step fails, and the script exits 1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import traceback
from pathlib import Path
from typing import Any

RESULTS: dict[str, Any] = {}


def step(name: str):  # type: ignore[no-untyped-def]
    def wrap(fn):  # type: ignore[no-untyped-def]
        def run() -> None:
            t0 = time.perf_counter()
            try:
                RESULTS[name] = {"status": "ok", **(fn() or {})}
            except SkipStep as exc:
                RESULTS[name] = {"status": "skipped", "why": str(exc)}
            except Exception as exc:
                RESULTS[name] = {"status": "failed", "error": repr(exc),
                                 "trace": traceback.format_exc()[-2000:]}  # fmt: skip
            RESULTS[name]["seconds"] = round(time.perf_counter() - t0, 2)
            print(f"[{RESULTS[name]['status']}] {name}", flush=True)

        return run

    return wrap


class SkipStep(Exception):
    pass


def pressure_mib(free_mib: int, budget_mib: int, reserve_mib: int, margin_mib: int = 256) -> int:
    """MiB to take so that what stays free is `margin_mib` short of budget + reserve: the next
    load must then be refused. Read `free_mib` after every unload that should count."""
    return max(0, free_mib - (budget_mib + reserve_mib - margin_mib))


@step("nvml_inventory")
def nvml_inventory() -> dict:
    from gateway.scheduler import NvmlMonitor

    mon = NvmlMonitor()
    if not mon.available:
        raise SkipStep(mon.reason)
    return {"reason": mon.reason, "devices": [d.__dict__ for d in mon.devices()]}


class TorchEngine:
    """A stand-in engine whose GPU load really allocates its budget with PyTorch."""

    family = "torch"

    def __init__(self, model_id: str, capped: bool = True, extra_mib: int = 0) -> None:
        self.model_id = model_id
        self.gpu_capped = capped
        self.extra_mib = extra_mib

    def gpu_support(self) -> tuple[bool, str]:
        import torch

        return torch.cuda.is_available(), f"torch {torch.__version__}"

    def variants(self) -> dict[str, str | None]:
        return {"cpu": "no memory", "gpu": "a torch tensor of the budget"}

    def load(self, device: Any) -> Any:
        import torch

        if device.lane != "gpu":
            return None
        mib = (device.gpu_mem_limit_mib or 0) + self.extra_mib
        return torch.empty(mib * 1024 * 1024, dtype=torch.uint8, device=f"cuda:{device.index}")

    def run(self, handle: Any, payload: Any) -> Any:
        if handle is not None:
            import torch

            handle[:1024].fill_(1)
            torch.cuda.synchronize()
        time.sleep(0.05)
        return payload

    def unload(self, handle: Any) -> None:
        import torch

        del handle
        torch.cuda.empty_cache()


@step("budget_admission_real_memory")
def budget_admission() -> dict:
    try:
        import torch
    except ImportError as exc:
        raise SkipStep(f"no torch: {exc}") from exc
    if not torch.cuda.is_available():
        raise SkipStep("torch sees no CUDA device")
    from prometheus_client import CollectorRegistry

    from gateway.config import SchedulerSettings
    from gateway.scheduler import (
        Level,
        ModelPolicy,
        NvmlMonitor,
        Scheduler,
        SchedulerMetrics,
    )  # fmt: skip

    async def main() -> dict:
        mon = NvmlMonitor()
        engines = {
            "a": TorchEngine("a"),
            "b": TorchEngine("b"),
            "hog": TorchEngine("hog", False, 2048),
        }
        pol = {
            "a": ModelPolicy(gpu_budget_mib=1024, cpu_threads=1),
            "b": ModelPolicy(gpu_budget_mib=1024, cpu_threads=1),
            "hog": ModelPolicy(gpu_budget_mib=512, cpu_threads=1),
        }
        cfg = SchedulerSettings(cores=2, gpu_reserve_mib=512)
        sched = Scheduler(engines, pol, cfg, mon, SchedulerMetrics(CollectorRegistry()))  # type: ignore[arg-type]
        out: dict[str, Any] = {}
        for model in ("a", "b"):
            async with sched.job(model, Level.interactive) as job:
                await job.run(model)
            out[f"{model}_lane"] = job.records[-1].lane
        dev = mon.device(0)
        assert dev is not None
        out["process_used_mib_after_two_loads"] = dev.process_used_mib
        # Unload "a" first (a new admission for it), and only then read what is free: its budget
        # comes back to the free memory, and the pressure must account for it.
        await sched.unload("a")
        torch.cuda.empty_cache()
        dev = mon.device(0)
        assert dev is not None
        take = pressure_mib(dev.free_mib, pol["a"].gpu_budget_mib, cfg.gpu_reserve_mib)
        pressure = torch.empty(take * 1024 * 1024, dtype=torch.uint8, device="cuda:0")
        torch.cuda.synchronize()
        out["free_mib_under_pressure"] = mon.device(0).free_mib  # type: ignore[union-attr]
        async with sched.job("a", Level.interactive) as job:
            await job.run("again")
        out["under_pressure"] = {
            "lane": job.records[-1].lane,
            "reason": job.records[-1].reason,
            "free_mib": mon.device(0).free_mib,
        }  # type: ignore[union-attr]
        del pressure
        torch.cuda.empty_cache()
        # An uncapped engine that uses 2 GiB more than its 512 MiB budget is sent off the GPU.
        for payload in ("first", "second"):
            async with sched.job("hog", Level.interactive) as job:
                await job.run(payload)
            out[f"hog_{payload}"] = {"lane": job.records[-1].lane,
                                     "reason": job.records[-1].reason}  # fmt: skip
        await sched.close(5)
        return out

    result = asyncio.run(main())
    assert result["a_lane"] == "gpu" and result["b_lane"] == "gpu", result
    assert result["under_pressure"]["reason"] == "not_admitted", result
    assert result["hog_second"]["lane"] == "cpu", result
    return result


@step("doctor")
def doctor() -> dict:
    from gateway.runtime import Runtime

    return {"verdicts": Runtime().diagnose()}


SPOKEN = "The quick brown fox jumps over the lazy dog near the riverbank."


def speech_clip(gw: Any) -> Any:
    """SPOKEN as 16 kHz float32 speech, synthesized by Kokoro on the CPU (Whisper timed on
    silence measures nothing: the VAD drops it all)."""
    import numpy as np

    from gateway.engines.base import Device

    kokoro = gw.models["kokoro"].engine
    handle = kokoro.load(Device("cpu", 0, 2))
    try:
        audio = np.concatenate([kokoro.run(handle, u) for u in kokoro.plan(SPOKEN, "alloy", 1.0)])
    finally:
        kokoro.unload(handle)
    n = int(len(audio) * 16000 / kokoro.sample_rate)
    return np.interp(np.linspace(0, len(audio) - 1, n), np.arange(len(audio)), audio).astype(
        np.float32
    )


@step("engines_on_gpu")
def engines_on_gpu() -> dict:
    from gateway.config import Settings
    from gateway.engines.base import Device
    from gateway.runtime import Runtime

    gw = Runtime(Settings())
    out: dict[str, Any] = {}
    for model_id in ("kokoro", "whisper-base"):
        engine = gw.models[model_id].engine
        ok, why = engine.gpu_support()
        if not ok:
            out[model_id] = {"skipped": why}
            continue
        try:
            if model_id == "kokoro":
                unit = engine.plan(SPOKEN, "alloy", 1.0)[0]
            else:
                from gateway.engines.whisper import TranscribeUnit

                unit = TranscribeUnit(audio=speech_clip(gw), offset_s=0.0, language="en")
            handle = engine.load(Device("gpu", 0, 1, 1536))
            times, result = [], None
            for _ in range(5):
                t0 = time.perf_counter()
                result = engine.run(handle, unit)
                times.append(time.perf_counter() - t0)
            item: dict[str, Any] = {"solo_median_s": sorted(times)[2], "runs": times}
            if model_id != "kokoro":
                item["text"] = " ".join(s["text"] for s in result.segments).strip()
                assert "fox" in item["text"].lower(), f"Whisper on the GPU heard {item['text']!r}"
            out[model_id] = item
        except Exception as exc:
            out[model_id] = {"failed": repr(exc)[:500], "trace": traceback.format_exc()[-1500:]}
    broken = {m: v for m, v in out.items() if "failed" in v}
    if broken:  # it said it could use the GPU and then could not: broken, not skipped
        raise AssertionError(f"engines broken on the GPU: {json.dumps(broken)[:1500]}")
    if not any("solo_median_s" in v for v in out.values()):
        raise SkipStep(json.dumps(out)[:1000])
    return out


STEPS = [nvml_inventory, budget_admission, doctor, engines_on_gpu]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--out", type=Path, default=Path("gpu-check.json"))
    args = p.parse_args(argv)
    for fn in STEPS:
        fn()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(RESULTS, indent=2, default=str))
    return 1 if any(r["status"] == "failed" for r in RESULTS.values()) else 0


if __name__ == "__main__":
    raise SystemExit(main())
