"""Issue #10: GPU failures are retried after a cooldown, admission never over-commits, the budget
watch holds in a container, a retried unit keeps its deadline, a failed preload falls back, and
eviction and aging protect interactive work while batch work keeps a known minimum rate.

The GPU and NVML are SIMULATED (`SimulatedGpu`); engines take known time and block on events the
test releases, so the order of events is exact.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from gateway.config import Placement, SchedulerSettings
from gateway.engines.base import Device, Lane
from gateway.scheduler import (
    GpuInfo,
    Level,
    ModelPolicy,
    QueueTimeout,
    Scheduler,
    SchedulerMetrics,
    SimulatedGpu,
)

from .test_scheduler import TimedEngine, run_job

OOM = "CUDA error: out of memory (simulated)"


class GatedEngine(TimedEngine):
    """A TimedEngine whose GPU load may fail or block, whose runs may block, and which may hold
    GPU memory outside its arena cap (what ONNX Runtime's CUDA context and cuDNN workspace do)."""

    def __init__(self, model_id: str, unit_s: float, gpu: SimulatedGpu | None = None,
                 **kw: Any) -> None:  # fmt: skip
        super().__init__(model_id, unit_s, gpu, **kw)
        self.fail_load: dict[str, str] = {}  # lane -> error raised by load
        self.load_gate: threading.Event | None = None
        self.run_gate: threading.Event | None = None
        self.running = threading.Event()
        self.extra_mib = 0
        self.gpu_loads = 0

    def load(self, device: Device) -> Device:
        if device.lane == "gpu":
            self.gpu_loads += 1
            if self.load_gate is not None:
                self.load_gate.wait(10)
        if device.lane in self.fail_load:
            raise RuntimeError(self.fail_load[device.lane])
        handle = super().load(device)
        if device.lane == "gpu" and self.extra_mib:
            assert self.gpu is not None
            self.gpu.allocate(self.model_id, self.extra_mib)
        return handle

    def run(self, handle: Device, payload: Any) -> Any:
        self.running.set()
        if self.run_gate is not None:
            self.run_gate.wait(10)
        return super().run(handle, payload)


class ContainerGpu(SimulatedGpu):
    """NVML inside a container: processes are listed with host PIDs, so none matches ours."""

    def device(self, index: int) -> GpuInfo | None:
        info = super().device(index)
        if info is not None:
            info.process_used_mib = None
        return info


def mk(engines: dict[str, Any], gpu: SimulatedGpu | None = None,
       budgets: dict[str, int] | None = None, registry: CollectorRegistry | None = None,
       **settings: Any) -> Scheduler:  # fmt: skip
    pol = {m: ModelPolicy(gpu_budget_mib=(budgets or {}).get(m, 1024), cpu_threads=2)
           for m in engines}  # fmt: skip
    metrics = SchedulerMetrics(registry or CollectorRegistry())
    return Scheduler(engines, pol, SchedulerSettings(cores=2, **settings), gpu, metrics)


async def until(predicate: Any, what: str, timeout: float = 10.0) -> None:
    """Wait for an event (bounded, so a bug fails instead of hanging)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for: {what}")
        await asyncio.sleep(0.002)


def metric(registry: CollectorRegistry, name: str, engine: str) -> float:
    for line in generate_latest(registry).decode().splitlines():
        if line.startswith(name + "{") and f'engine="{engine}"' in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def phantom(s: Scheduler, model: str, blocker: GatedEngine) -> None:
    """Leave `model` admitted on the GPU but never loaded: its unit is queued behind a running
    GPU unit (dispatch admits it) and the client goes away before it starts."""
    blocker.run_gate = threading.Event()
    blocking = asyncio.create_task(run_job(s, blocker.model_id, Level.interactive, ["block"]))
    await until(blocker.running.is_set, "the blocker runs on the GPU")
    waiting = asyncio.create_task(run_job(s, model, Level.interactive, ["gone"]))
    await until(lambda: s.pool.has(model, Lane.gpu), f"{model} admitted")
    waiting.cancel()
    blocker.run_gate.set()
    await blocking
    blocker.run_gate, blocker.running = None, threading.Event()


# -- 1. a failed GPU load is retried after a cooldown --------------------------------------------


def test_simulated_gpu_load_failure_is_retried_after_the_cooldown() -> None:
    async def main() -> tuple[list, dict, dict, int, CollectorRegistry]:
        gpu = SimulatedGpu(16384)
        eng = GatedEngine("m", 0.01, gpu)
        eng.fail_load["gpu"] = OOM
        registry = CollectorRegistry()
        s = mk({"m": eng}, gpu, registry=registry, gpu_retry_cooldown_s=60)
        now = [1000.0]
        s.placer.clock = lambda: now[0]
        await run_job(s, "m", Level.interactive, ["a"])  # the GPU load fails: retried on CPU
        broken = dict(s.status()["models"]["m"])
        now[0] += 30
        await run_job(s, "m", Level.interactive, ["b"])  # still cooling down: CPU, no GPU try
        del eng.fail_load["gpu"]  # the driver recovered
        now[0] += 31
        await run_job(s, "m", Level.interactive, ["c"])  # cooldown over: the GPU again
        return eng.log, broken, s.status()["models"]["m"], eng.gpu_loads, registry

    log, broken, healed, gpu_loads, registry = asyncio.run(main())
    assert log == [("a", "cpu"), ("b", "cpu"), ("c", "gpu")]
    assert gpu_loads == 2
    assert "out of memory" in broken["gpu_broken"] and broken["gpu_retry_in_s"] == 60
    assert healed["gpu_broken"] is None and healed["gpu_retry_in_s"] is None
    assert metric(registry, "gateway_gpu_load_failures_total", "m") == 1
    assert metric(registry, "gateway_gpu_load_retries_total", "m") == 1


# -- 4. a unit retried on the CPU keeps its queue deadline ---------------------------------------


def test_simulated_gpu_error_retry_keeps_the_original_deadline() -> None:
    async def main() -> tuple[BaseException | None, float, float]:
        gpu = SimulatedGpu(16384)
        m = GatedEngine("m", 0.01, gpu)
        m.fail_gpu_with = "CUDA failed with error out of memory"
        hog = GatedEngine("hog", 0.01)
        hog.run_gate = threading.Event()
        s = mk({"m": m, "hog": hog}, gpu)
        s.policies["hog"].placement = Placement.cpu
        loop = asyncio.get_running_loop()
        hogging = asyncio.create_task(run_job(s, "hog", Level.interactive, ["hog"]))
        await until(hog.running.is_set, "the CPU slot is taken")
        t0 = loop.time()
        err: BaseException | None = None
        try:  # GPU error -> queued for the CPU, which stays busy: it must expire at t0 + 0.3
            await asyncio.wait_for(run_job(s, "m", Level.interactive, ["x"], timeout=0.3), 5)
        except (QueueTimeout, TimeoutError) as exc:
            err = exc
        t1 = loop.time()
        hog.run_gate.set()
        await hogging
        return err, t1 - t0, len(m.log)

    err, waited, ran = asyncio.run(main())
    assert isinstance(err, QueueTimeout), err
    assert 0.3 <= waited < 4
    assert ran == 0


# -- 5. a preload that fails falls back instead of crashing start-up -----------------------------


def test_simulated_preload_gpu_failure_falls_back_to_cpu(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> dict:
        gpu = SimulatedGpu(16384)
        m, bad, ok = (GatedEngine(n, 0.01, gpu) for n in ("m", "bad", "ok"))
        m.fail_load["gpu"] = OOM
        bad.fail_load = {"gpu": OOM, "cpu": "cannot open model files"}
        s = mk({"m": m, "bad": bad, "ok": ok}, gpu)
        await s.preload(["m", "bad", "ok"])  # must not raise
        return s.status()

    caplog.set_level(logging.WARNING)
    status = asyncio.run(main())
    loaded = {(i["model"], i["lane"]) for i in status["instances"] if i["loaded"]}
    assert loaded == {("m", "cpu"), ("ok", "gpu")}
    assert "out of memory" in status["models"]["m"]["gpu_broken"]
    assert "cannot open model files" in status["models"]["bad"]["preload_error"]
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert "preload" in logged


# -- 6. eviction spares interactive work; a batch job keeps a known minimum rate -----------------


def test_promoted_batch_job_keeps_a_minimum_rate_under_steady_interactive_load() -> None:
    """Two speakers keep interactive units queued all the time. Once the batch job has waited
    aging_s it stays promoted: each later unit waits only for the units queued before it, so at
    most two interactive units run between two of its units (not aging_s worth of them)."""

    async def main() -> list[str]:
        order: list[str] = []
        tts, stt = TimedEngine("tts", 0.02), TimedEngine("stt", 0.02)
        for eng in (tts, stt):
            run = eng.run
            eng.run = lambda h, p, run=run: (order.append(p), run(h, p))[1]  # type: ignore[method-assign]
        s = mk({"tts": tts, "stt": stt}, None, aging_s=0.3, cpu_background_slots=0)
        stop = False

        async def speaker(name: str) -> None:
            i = 0
            while not stop:
                await run_job(s, "tts", Level.interactive, [f"{name}{i}"])
                i += 1

        speakers = [asyncio.create_task(speaker(n)) for n in ("s", "t")]
        await until(lambda: len(order) >= 2, "interactive load running")
        await run_job(s, "stt", Level.batch, [f"b{i}" for i in range(6)])
        stop = True
        await asyncio.gather(*speakers)
        return order

    order = asyncio.run(main())
    batch_at = [i for i, p in enumerate(order) if p.startswith("b")]
    assert [order[i] for i in batch_at] == [f"b{i}" for i in range(6)]
    gaps = [b - a - 1 for a, b in zip(batch_at, batch_at[1:], strict=False)]
    assert max(gaps) <= 2, gaps
