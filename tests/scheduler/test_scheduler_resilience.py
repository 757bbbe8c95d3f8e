"""Issues #10 and #19: GPU failures are retried after a cooldown, admission never over-commits,
the budget watch holds in a container and charges no instance for a run beside it or for other
processes, a retried unit keeps the queue wait it had left, a failed preload falls back, and
eviction and aging protect interactive work while batch work keeps a known minimum rate.

The GPU and NVML are SIMULATED (`SimulatedGpu`); engines take known time and block on events the
test releases, so the order of events is exact.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from gateway.config import Placement, SchedulerSettings
from gateway.engines.base import Device, Lane
from gateway.scheduler import (
    Level,
    ModelPolicy,
    QueueTimeout,
    Scheduler,
    SchedulerMetrics,
    SimulatedGpu,
    render_status,
)

from ..support.wait import until
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
        self.run_mib = 0  # allocated on the GPU by the next GPU run (an arena growing)
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
        if handle.lane == "gpu" and self.run_mib:
            assert self.gpu is not None
            self.gpu.allocate(self.model_id, self.run_mib)
            self.run_mib = 0
        return super().run(handle, payload)


class ContainerGpu(SimulatedGpu):
    """NVML inside a container: processes are listed with host PIDs, so none matches ours."""

    def process_used_mib(self, index: int) -> int | None:
        return None


def mk(engines: dict[str, Any], gpu: SimulatedGpu | None = None,
       budgets: dict[str, int] | None = None, registry: CollectorRegistry | None = None,
       **settings: Any) -> Scheduler:  # fmt: skip
    pol = {m: ModelPolicy(gpu_budget_mib=(budgets or {}).get(m, 1024), cpu_threads=2)
           for m in engines}  # fmt: skip
    metrics = SchedulerMetrics(registry or CollectorRegistry())
    # one GPU slot unless a test says otherwise: the scenarios queue behind a running unit
    cfg = SchedulerSettings(cores=2, **{"gpu_slots": 1, **settings})
    return Scheduler(engines, pol, cfg, gpu, metrics)


def metric(registry: CollectorRegistry, name: str, engine: str) -> float:
    for line in generate_latest(registry).decode().splitlines():
        if line.startswith(name + "{") and f'engine="{engine}"' in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def _over_budget(s: Scheduler) -> list[str]:
    """Models kept off the GPU for going over their budget."""
    return [m for m, f in s.snapshot().models.items() if f.over_budget]


def _admitted(s: Scheduler, model: str) -> bool:
    """Whether the model has a GPU instance (admitted; loaded or not)."""
    return any(i["model"] == model and i["lane"] == Lane.gpu for i in s.snapshot().instances)


async def phantom(s: Scheduler, model: str, blocker: GatedEngine) -> None:
    """Leave `model` admitted on the GPU but never loaded: its unit is queued behind a running
    GPU unit (dispatch admits it) and the client goes away before it starts."""
    blocker.run_gate = threading.Event()
    blocking = asyncio.create_task(run_job(s, blocker.model_id, Level.interactive, ["block"]))
    await until(blocker.running.is_set, "the blocker runs on the GPU")
    waiting = asyncio.create_task(run_job(s, model, Level.interactive, ["gone"]))
    await until(lambda: _admitted(s, model), f"{model} admitted")
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
        s.internals_for_tests().placer.clock = lambda: now[0]
        await run_job(s, "m", Level.interactive, ["a"])  # the GPU load fails: retried on CPU
        broken = dict(render_status(s.snapshot())["models"]["m"])
        now[0] += 30
        await run_job(s, "m", Level.interactive, ["b"])  # still cooling down: CPU, no GPU try
        del eng.fail_load["gpu"]  # the driver recovered
        now[0] += 31
        await run_job(s, "m", Level.interactive, ["c"])  # cooldown over: the GPU again
        return eng.log, broken, render_status(s.snapshot())["models"]["m"], eng.gpu_loads, registry

    log, broken, healed, gpu_loads, registry = asyncio.run(main())
    assert log == [("a", "cpu"), ("b", "cpu"), ("c", "gpu")]
    assert gpu_loads == 2
    assert "out of memory" in broken["gpu_broken"] and broken["gpu_retry_in_s"] == 60
    assert healed["gpu_broken"] is None and healed["gpu_retry_in_s"] is None
    assert metric(registry, "gateway_gpu_load_failures_total", "m") == 1
    assert metric(registry, "gateway_gpu_load_retries_total", "m") == 1


# -- 2. admission never over-commits -------------------------------------------------------------


def test_simulated_admission_counts_loads_in_flight() -> None:
    async def main() -> tuple[list, list, dict]:
        gpu = SimulatedGpu(4096)
        gpu.other_used_mib = 2000  # 2096 MiB free: room for one 1000 MiB budget + 512 reserve
        a, b = GatedEngine("a", 0.01, gpu), GatedEngine("b", 0.01, gpu)
        s = mk({"a": a, "b": b}, gpu, {"a": 1000, "b": 1000}, gpu_slots=2, gpu_reserve_mib=512)
        a.load_gate = threading.Event()
        first = asyncio.create_task(run_job(s, "a", Level.interactive, ["a1"]))
        await until(lambda: a.gpu_loads == 1, "a's GPU load started")  # admitted, not loaded
        await run_job(s, "b", Level.interactive, ["b1"])  # NVML free still shows a's 1000 MiB
        a.load_gate.set()
        await first
        return a.log, b.log, dict(s.snapshot().fallbacks)

    a_log, b_log, fallbacks = asyncio.run(main())
    assert a_log == [("a1", "gpu")]
    assert b_log == [("b1", "cpu")]
    assert fallbacks == {("b", "not_admitted"): 1}


def test_simulated_admitted_but_unloaded_instance_is_admitted_again() -> None:
    async def main() -> tuple[list, int, dict]:
        gpu = SimulatedGpu(4096)
        blk, m = GatedEngine("blk", 0.01, gpu), GatedEngine("m", 0.01, gpu)
        s = mk({"blk": blk, "m": m}, gpu, {"blk": 500, "m": 1000}, gpu_reserve_mib=512)
        await phantom(s, "m", blk)
        gpu.other_used_mib = 3000  # another process takes the card: 596 MiB free
        await run_job(s, "m", Level.interactive, ["x"])
        return m.log, m.gpu_loads, dict(s.snapshot().fallbacks)

    log, gpu_loads, fallbacks = asyncio.run(main())
    assert log == [("x", "cpu")]
    assert gpu_loads == 0  # never tried: no CUDA OOM
    assert fallbacks == {("m", "not_admitted"): 1}


def test_simulated_evicting_a_never_loaded_instance_frees_nothing() -> None:
    async def main() -> tuple[list, int, dict]:
        gpu = SimulatedGpu(8192)
        blk, p, c = (GatedEngine(n, 0.01, gpu) for n in ("blk", "p", "c"))
        s = mk({"blk": blk, "p": p, "c": c}, gpu, {"blk": 500, "p": 2000, "c": 1000},
               gpu_reserve_mib=512)  # fmt: skip
        await phantom(s, "p", blk)  # p: admitted, 2000 MiB budget, never loaded
        gpu.other_used_mib = 8192 - 500 - 896  # 896 MiB free: c needs 1000 + 512
        await run_job(s, "c", Level.interactive, ["x"])
        return c.log, c.gpu_loads, dict(s.snapshot().fallbacks)

    log, gpu_loads, fallbacks = asyncio.run(main())
    assert log == [("x", "cpu")]
    assert gpu_loads == 0
    assert fallbacks == {("c", "not_admitted"): 1}


# -- 3. the budget watch holds in a container and charges each engine its own memory -------------


def test_simulated_container_nvml_without_our_pid_still_watches_the_budget() -> None:
    async def main() -> tuple[list, dict]:
        gpu = ContainerGpu(16384)
        eng = GatedEngine("m", 0.01, gpu, capped=False, use_mib=3000)  # CTranslate2-like
        s = mk({"m": eng}, gpu, {"m": 1024}, gpu_reserve_mib=256)
        await run_job(s, "m", Level.interactive, ["first"])
        await run_job(s, "m", Level.interactive, ["second"])
        return eng.log, dict(s.snapshot().fallbacks)

    log, fallbacks = asyncio.run(main())
    assert log == [("first", "gpu"), ("second", "cpu")]
    assert fallbacks == {("m", "not_admitted"): 1}


def test_simulated_ort_memory_beyond_its_arena_cap_is_not_charged_to_whisper() -> None:
    async def main() -> tuple[list, list, dict]:
        gpu = SimulatedGpu(16384)
        tts = GatedEngine("tts", 0.01, gpu)  # capped: 1024 MiB arena ...
        tts.extra_mib = 900  # ... plus CUDA context and cuDNN workspace outside the arena
        stt = GatedEngine("stt", 0.01, gpu, capped=False, use_mib=1200)  # within its 1536
        s = mk({"tts": tts, "stt": stt}, gpu, {"tts": 1024, "stt": 1536}, gpu_reserve_mib=256)
        await run_job(s, "tts", Level.interactive, ["t"])
        await run_job(s, "stt", Level.interactive, ["s1"])
        await run_job(s, "stt", Level.interactive, ["s2"])
        used = {i["model"]: i.get("gpu_used_mib") for i in s.snapshot().instances}
        return stt.log, _over_budget(s), used

    log, over, used = asyncio.run(main())
    assert log == [("s1", "gpu"), ("s2", "gpu")]
    assert over == []
    assert used == {"tts": 1924, "stt": 1200}  # device deltas around each load


def _stt_beside_tts(gpu: SimulatedGpu, during: Any) -> tuple[list, list, dict]:
    """Whisper-like `stt` (uncapped, 1200 of its 1536 MiB) runs a unit on one GPU slot while
    `during(tts, stt)` happens; then one more stt unit. Returns stt's log, the over-budget
    marks and the memory charged to each instance."""

    async def main() -> tuple[list, list, dict]:
        tts = GatedEngine("tts", 0.01, gpu)
        stt = GatedEngine("stt", 0.01, gpu, capped=False, use_mib=1200)
        s = mk({"tts": tts, "stt": stt}, gpu, {"tts": 1024, "stt": 1536}, gpu_reserve_mib=256,
               gpu_slots=2)  # fmt: skip
        await run_job(s, "tts", Level.interactive, ["t0"])  # both loaded, alone
        await run_job(s, "stt", Level.interactive, ["s1"])
        stt.run_gate, stt.running = threading.Event(), threading.Event()
        held = asyncio.create_task(run_job(s, "stt", Level.batch, ["s2"]))
        await until(stt.running.is_set, "stt runs on the GPU")
        await during(s, tts)
        stt.run_gate.set()
        await held
        stt.run_gate = None
        await run_job(s, "stt", Level.batch, ["s3"])
        used = {i["model"]: i.get("gpu_used_mib") for i in s.snapshot().instances}
        return stt.log, _over_budget(s), used

    return asyncio.run(main())


def test_simulated_gpu_a_run_beside_another_instance_is_not_charged_to_it() -> None:
    async def kokoro_grows(s: Scheduler, tts: GatedEngine) -> None:
        tts.run_mib = 900  # Kokoro's run on the second slot grows its memory by 900 MiB
        await run_job(s, "tts", Level.interactive, ["t1"])

    log, over, used = _stt_beside_tts(SimulatedGpu(16384), kokoro_grows)
    assert log == [("s1", "gpu"), ("s2", "gpu"), ("s3", "gpu")]
    assert over == []
    assert used == {"tts": 1024, "stt": 1200}


def test_simulated_gpu_other_processes_are_not_charged_where_nvml_lists_ours() -> None:
    async def another_process(s: Scheduler, tts: GatedEngine) -> None:
        gpu.other_used_mib += 2000  # another program takes 2000 MiB while stt runs

    gpu = SimulatedGpu(16384)
    log, over, used = _stt_beside_tts(gpu, another_process)
    assert log == [("s1", "gpu"), ("s2", "gpu"), ("s3", "gpu")]
    assert over == []
    assert used == {"tts": 1024, "stt": 1200}


# -- 4. a unit retried on the CPU keeps the queue wait it had left --------------------------------


def test_simulated_gpu_error_retry_keeps_the_wait_it_had_left() -> None:
    """The unit waits (behind another GPU unit), runs on the GPU, fails with a CUDA error and
    is queued for the CPU, which stays busy: it expires once its waits add up to its timeout
    (the run does not count), neither at its first deadline nor a full timeout later."""

    async def main() -> tuple[BaseException | None, float, float, list]:
        gpu = SimulatedGpu(16384)
        blk, m = GatedEngine("blk", 0.01, gpu), GatedEngine("m", 0.01, gpu)
        m.fail_gpu_with = "CUDA failed with error out of memory"
        blk.run_gate, m.run_gate = threading.Event(), threading.Event()
        hog = GatedEngine("hog", 0.01)
        hog.run_gate = threading.Event()
        s = mk({"m": m, "hog": hog, "blk": blk}, gpu)
        s.internals_for_tests().placer.policies["hog"].placement = Placement.cpu
        hogging = asyncio.create_task(run_job(s, "hog", Level.interactive, ["hog"]))
        await until(hog.running.is_set, "the CPU slot is taken")
        blocking = asyncio.create_task(run_job(s, "blk", Level.interactive, ["blk"]))
        await until(blk.running.is_set, "the GPU slot is taken")
        job = asyncio.create_task(run_job(s, "m", Level.interactive, ["x"], timeout=0.5))
        await until(lambda: s.queued(model="m") == 1, "m queued")
        (unit,) = list(s.internals_for_tests().queue)
        queued_at, first_deadline = unit.enqueued, unit.deadline
        await asyncio.sleep(0.05)  # it waits ...
        blk.run_gate.set()
        await until(m.running.is_set, "m runs on the GPU")
        await asyncio.sleep(0.05)  # ... runs ...
        m.run_gate.set()
        await until(lambda: unit.force_cpu is not None, "m queued for the CPU")
        assert unit.timer is not None
        waited = (unit.started - queued_at) + (unit.timer.when() - unit.enqueued)
        ran_s = unit.enqueued - unit.started
        err: BaseException | None = None
        try:  # ... and waits again on the busy CPU, until it expires
            await asyncio.wait_for(job, 5)
        except (QueueTimeout, TimeoutError) as exc:
            err = exc
        hog.run_gate.set()
        await asyncio.gather(hogging, blocking)
        return err, waited, unit.timer.when() - first_deadline, ran_s, m.log

    err, waited, moved, ran_s, ran = asyncio.run(main())
    assert isinstance(err, QueueTimeout), err
    assert waited == pytest.approx(0.5, abs=1e-6)  # first wait + the wait after the retry
    assert moved == pytest.approx(ran_s, abs=1e-6) and ran_s > 0.04  # its run did not count
    assert ran == []


# -- 5. a preload that fails falls back instead of crashing start-up -----------------------------


def test_simulated_preload_gpu_failure_falls_back_to_cpu(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> dict:
        gpu = SimulatedGpu(16384)
        m, bad, ok = (GatedEngine(n, 0.01, gpu) for n in ("m", "bad", "ok"))
        m.fail_load["gpu"] = OOM
        bad.fail_load = {"gpu": OOM, "cpu": "cannot open model files"}
        s = mk({"m": m, "bad": bad, "ok": ok}, gpu)
        await s.preload(["m", "bad", "ok"])  # must not raise
        return render_status(s.snapshot())

    caplog.set_level(logging.WARNING)
    status = asyncio.run(main())
    loaded = {(i["model"], i["lane"]) for i in status["instances"] if i["loaded"]}
    assert loaded == {("m", "cpu"), ("ok", "gpu")}
    assert "out of memory" in status["models"]["m"]["gpu_broken"]
    assert "cannot open model files" in status["models"]["bad"]["preload_error"]
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert "preload" in logged


# -- 6. eviction spares interactive work; a batch job keeps a known minimum rate -----------------


def test_simulated_eviction_spares_a_model_with_interactive_work_queued() -> None:
    async def main() -> tuple[bool, bool, list]:
        gpu = SimulatedGpu(4096)
        names = ("tts", "stt", "blk", "x")
        e = {n: GatedEngine(n, 0.01, gpu) for n in names}
        s = mk(e, gpu, {"tts": 1500, "stt": 1500, "blk": 1000, "x": 1500}, gpu_reserve_mib=0)
        await run_job(s, "tts", Level.interactive, ["t0"])  # tts is now the least recently used
        await run_job(s, "stt", Level.batch, ["s0"])
        e["blk"].run_gate = threading.Event()
        blocking = asyncio.create_task(run_job(s, "blk", Level.interactive, ["b"]))
        await until(e["blk"].running.is_set, "the blocker runs on the GPU")
        speech = asyncio.create_task(run_job(s, "tts", Level.interactive, ["t1"]))
        await until(lambda: s.queued(Level.interactive, "tts") == 1, "speech queued")
        batch = asyncio.create_task(run_job(s, "x", Level.batch, ["x1"]))  # must evict one
        await until(lambda: s.queued(Level.batch, "x") == 1, "batch queued")
        kept = _admitted(s, "tts"), _admitted(s, "stt")
        e["blk"].run_gate.set()
        await asyncio.gather(blocking, speech, batch)
        return *kept, e["tts"].log

    tts_kept, stt_kept, tts_log = asyncio.run(main())
    assert tts_kept and not stt_kept
    assert tts_log == [("t0", "gpu"), ("t1", "gpu")]


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
