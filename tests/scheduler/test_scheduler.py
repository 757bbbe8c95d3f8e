"""Deterministic scheduler tests: engines whose units take known time, and a SIMULATED NVML GPU
with known memory (no real GPU exists here). They prove order and placement, never speed."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from gateway.api.errors import STATUS
from gateway.config import Placement, QueuePolicy, SchedulerSettings
from gateway.engines.base import Device
from gateway.scheduler import (
    Level,
    ModelPolicy,
    QueueFull,
    QueueTimeout,
    Scheduler,
    SchedulerMetrics,
    SimulatedGpu,
    Snapshot,
    render_status,
)  # fmt: skip

from ..support.wait import until


class TimedEngine:
    """A simulated engine: each unit sleeps `unit_s`; GPU loads allocate on the simulated GPU."""

    family = "timed"

    def __init__(self, model_id: str, unit_s: float, gpu: SimulatedGpu | None = None,
                 capped: bool = True, use_mib: int | None = None) -> None:  # fmt: skip
        self.model_id = model_id
        self.unit_s = unit_s
        self.gpu = gpu
        self.gpu_capped = capped
        self.use_mib = use_mib
        self.log: list[tuple[Any, str]] = []
        self.fail_gpu_with: str | None = None
        self.lock = threading.Lock()
        self.started: list[Any] = []  # payloads whose run began
        self.held: dict[Any, threading.Event] = {}

    def hold(self, *payloads: Any) -> None:
        """These payloads' units, once started, block until `release` (the test orders events
        instead of racing a unit's duration)."""
        for p in payloads:
            self.held[p] = threading.Event()

    def release(self, *payloads: Any) -> None:
        for p in payloads or list(self.held):
            self.held[p].set()

    def gpu_support(self) -> tuple[bool, str]:
        return True, "simulated CUDA"

    def variants(self) -> dict[str, str | None]:
        return {"cpu": "simulated", "gpu": "simulated"}

    def load(self, device: Device) -> Device:
        if device.lane == "gpu":
            assert self.gpu is not None
            self.gpu.allocate(self.model_id, self.use_mib or device.gpu_mem_limit_mib or 0)
        return device

    def run(self, handle: Device, payload: Any) -> Any:
        if handle.lane == "gpu" and self.fail_gpu_with:
            raise RuntimeError(self.fail_gpu_with)
        with self.lock:
            self.started.append(payload)
        gate = self.held.get(payload)
        if gate is not None:
            assert gate.wait(60), f"{payload!r} was never released"
        time.sleep(self.unit_s)
        with self.lock:
            self.log.append((payload, handle.lane))
        return payload

    def unload(self, handle: Device) -> None:
        if handle.lane == "gpu" and self.gpu is not None:
            self.gpu.release(self.model_id)


def make(engines: dict[str, TimedEngine], gpu: SimulatedGpu | None = None,
         policies: dict[str, ModelPolicy] | None = None, **settings: Any) -> Scheduler:  # fmt: skip
    s = SchedulerSettings(cores=2, **settings)
    pol = policies or {m: ModelPolicy(cpu_threads=2) for m in engines}
    return Scheduler(engines, pol, s, gpu, SchedulerMetrics(CollectorRegistry()))  # type: ignore[arg-type]


def with_niced(niced: str = "bg", **settings: Any) -> tuple[TimedEngine, TimedEngine, Scheduler]:
    """Engine `fg` and a niced engine (nice 19: it may take the background CPU slot) on one
    scheduler."""
    fg, bg = TimedEngine("fg", 0.01), TimedEngine(niced, 0.01)
    pol = {"fg": ModelPolicy(cpu_threads=2), niced: ModelPolicy(cpu_threads=2, cpu_nice=19)}
    return fg, bg, make({"fg": fg, niced: bg}, None, pol, **settings)


async def run_job(s: Scheduler, model: str, level: Level, payloads: list[Any],
                  timeout: float | None = None) -> list[Any]:  # fmt: skip
    async with s.job(model, level, timeout) as job:
        return [await job.run(p) for p in payloads]


def _queue_order(
    blocker: Level, batch: str, inter: str, batch_older_by_s: float = 0.0, **settings: Any
) -> list:
    """A unit runs (at level `blocker`); a batch unit queues, then, `batch_older_by_s` later,
    an interactive one. The order all three ran in."""

    async def main() -> list:
        eng = TimedEngine("m", 0.01)
        eng.hold("first")
        s = make({"m": eng}, cpu_background_slots=0, **settings)
        blocker_job = asyncio.create_task(run_job(s, "m", blocker, ["first"]))
        await until(lambda: eng.started == ["first"], "first running")
        batch_job = asyncio.create_task(run_job(s, "m", Level.batch, [batch]))
        await until(lambda: s.queued() == 1, f"{batch} queued")
        await asyncio.sleep(batch_older_by_s)  # "first" is held: the batch unit only grows older
        inter_job = asyncio.create_task(run_job(s, "m", Level.interactive, [inter]))
        await until(lambda: s.queued() == 2, f"{inter} queued")
        eng.release()
        await asyncio.gather(blocker_job, batch_job, inter_job)
        return [p for p, _ in eng.log]

    return asyncio.run(main())


def _arrival_order(**settings: Any) -> list:
    return _queue_order(Level.batch, "b1", "i1", **settings)


def test_interactive_runs_before_queued_batch() -> None:
    assert _arrival_order() == ["first", "i1", "b1"]


def test_fifo_policy_keeps_arrival_order() -> None:
    assert _arrival_order(policy="fifo") == ["first", "b1", "i1"]


def test_ten_unit_batch_job_yields_within_one_unit_on_one_gpu_slot() -> None:
    async def main() -> tuple[list, list]:
        gpu = SimulatedGpu(16384)
        tts, stt = TimedEngine("tts", 0.02, gpu), TimedEngine("stt", 0.05, gpu)
        s = make({"tts": tts, "stt": stt}, gpu, gpu_slots=1)
        order: list[str] = []
        orig_tts, orig_stt = tts.run, stt.run
        tts.run = lambda h, p: (order.append(p), orig_tts(h, p))[1]  # type: ignore[method-assign]
        stt.run = lambda h, p: (order.append(p), orig_stt(h, p))[1]  # type: ignore[method-assign]
        stt.hold("b2")  # the interactive job arrives while b2 runs
        batch = asyncio.create_task(run_job(s, "stt", Level.batch, [f"b{i}" for i in range(10)]))
        await until(lambda: "b2" in stt.started, "b2 running")
        arrived_after = len(order)  # batch units started before the interactive job arrived
        speech = asyncio.create_task(run_job(s, "tts", Level.interactive, ["speech"]))
        await until(lambda: s.queued(Level.interactive) == 1, "speech queued")
        stt.release()
        await speech
        await batch
        return order, [arrived_after]

    order, (arrived_after,) = asyncio.run(main())
    # The speech unit starts after at most the one batch unit that was running when it came.
    assert order.index("speech") <= arrived_after
    assert [p for p in order if p != "speech"] == [f"b{i}" for i in range(10)]


def _aging_order(aging_s: float) -> list:
    # old-batch waits 0.08 s before fresh comes: past aging_s = 0.05, not past 100
    return _queue_order(Level.interactive, "old-batch", "fresh", 0.08, aging_s=aging_s)


def test_aging_promotes_a_batch_unit_that_waited_too_long() -> None:
    # The batch unit has waited past aging_s when the slot frees: promoted, and older, it wins.
    assert _aging_order(aging_s=0.05) == ["first", "old-batch", "fresh"]


def test_without_aging_the_fresh_interactive_unit_would_win() -> None:
    assert _aging_order(aging_s=100) == ["first", "fresh", "old-batch"]


def test_full_queue_answers_queue_full_with_retry_after() -> None:
    async def main() -> QueueFull:
        eng = TimedEngine("m", 0.01)
        eng.hold(0)
        s = make({"m": eng}, interactive=QueuePolicy(max_queue_size=2, default_timeout_s=60))
        tasks = [asyncio.create_task(run_job(s, "m", Level.interactive, [i])) for i in range(3)]
        await until(lambda: eng.started == [0] and s.queued() == 2, "one running, two queued")
        with pytest.raises(QueueFull) as info:
            await run_job(s, "m", Level.interactive, ["overflow"])
        eng.release()
        await asyncio.gather(*tasks)
        return info.value

    err = asyncio.run(main())
    assert STATUS[err.kind] == 429 and err.retry_after is not None and err.retry_after >= 1


def test_queue_timeout_expires_with_503_and_a_request_may_only_lower_it() -> None:
    async def main() -> tuple[QueueTimeout, list, list]:
        eng = TimedEngine("m", 0.01)
        eng.hold("long")  # runs until released: far longer than the 0.05 s timeout
        s = make({"m": eng}, interactive=QueuePolicy(max_queue_size=8, default_timeout_s=0.05))
        running = asyncio.create_task(run_job(s, "m", Level.interactive, ["long"]))
        await until(lambda: eng.started == ["long"], "long running")
        with pytest.raises(QueueTimeout) as info:
            await run_job(s, "m", Level.interactive, ["waits"], timeout=30.0)  # cannot raise it
        finished_when_expired = list(eng.log)
        eng.release()
        await running
        return info.value, finished_when_expired, eng.log

    err, when_expired, log = asyncio.run(main())
    assert STATUS[err.kind] == 503
    # It expired at the 0.05 s default, not the 30 s asked for: the held unit was still running.
    assert when_expired == []
    assert log == [("long", "cpu")]


def test_load_that_does_not_fit_the_budget_goes_to_cpu_not_admitted() -> None:
    async def main() -> tuple[list, dict]:
        gpu = SimulatedGpu(4096)
        gpu.other_used_mib = 3000  # another process holds most of the card
        eng = TimedEngine("m", 0.01, gpu)
        s = make({"m": eng}, gpu, {"m": ModelPolicy(gpu_budget_mib=1024, cpu_threads=2)})
        await run_job(s, "m", Level.interactive, ["x"])
        return eng.log, dict(s.snapshot().fallbacks)

    log, fallbacks = asyncio.run(main())
    assert log == [("x", "cpu")]
    assert fallbacks == {("m", "not_admitted"): 1}


def test_budgets_together_must_fit_the_device() -> None:
    async def main() -> list:
        gpu = SimulatedGpu(4096)
        a, b = TimedEngine("a", 0.01, gpu), TimedEngine("b", 0.01, gpu)
        pol = {"a": ModelPolicy(gpu_budget_mib=2000, cpu_threads=2, pinned=True),
               "b": ModelPolicy(gpu_budget_mib=2000, cpu_threads=2)}  # fmt: skip
        s = make({"a": a, "b": b}, gpu, pol, gpu_reserve_mib=512)
        await run_job(s, "a", Level.interactive, ["a1"])
        await run_job(s, "b", Level.interactive, ["b1"])  # 2000 + 2000 + 512 > 4096
        return a.log + b.log

    assert asyncio.run(main()) == [("a1", "gpu"), ("b1", "cpu")]


def test_lru_eviction_makes_room_for_a_new_load() -> None:
    async def main() -> tuple[list, dict]:
        gpu = SimulatedGpu(4096)
        a, b = TimedEngine("a", 0.01, gpu), TimedEngine("b", 0.01, gpu)
        pol = {m: ModelPolicy(gpu_budget_mib=2000, cpu_threads=2) for m in ("a", "b")}
        s = make({"a": a, "b": b}, gpu, pol, gpu_reserve_mib=512)
        await run_job(s, "a", Level.interactive, ["a1"])
        await run_job(s, "b", Level.interactive, ["b1"])  # evicts idle, unpinned "a"
        return a.log + b.log, dict(gpu.allocations)

    log, allocations = asyncio.run(main())
    assert log == [("a1", "gpu"), ("b1", "gpu")]
    assert allocations == {"b": 2000}


def test_simulated_cuda_oom_retries_on_cpu_with_reason_gpu_error() -> None:
    async def main() -> tuple[list, list, dict]:
        gpu = SimulatedGpu(16384)
        eng = TimedEngine("m", 0.01, gpu)
        eng.fail_gpu_with = "CUDA failed with error out of memory"
        s = make({"m": eng}, gpu)
        async with s.job("m", Level.interactive) as job:
            result = [await job.run("x")]
        return result, eng.log, dict(s.snapshot().fallbacks)

    result, log, fallbacks = asyncio.run(main())
    assert result == ["x"]
    assert log == [("x", "cpu")]
    assert fallbacks == {("m", "gpu_error"): 1}


def test_non_cuda_errors_are_not_retried() -> None:
    async def main() -> None:
        gpu = SimulatedGpu(16384)
        eng = TimedEngine("m", 0.01, gpu)
        eng.fail_gpu_with = "ValueError: bad input shape"
        s = make({"m": eng}, gpu)
        with pytest.raises(RuntimeError, match="bad input"):
            await run_job(s, "m", Level.interactive, ["x"])
        assert eng.log == [] and not s.snapshot().fallbacks

    asyncio.run(main())


def test_ttl_unload_frees_simulated_gpu_memory() -> None:
    async def main() -> tuple[dict, dict, list]:
        gpu = SimulatedGpu(16384)
        eng = TimedEngine("m", 0.01, gpu)
        s = make({"m": eng}, gpu, gpu_idle_ttl_s=0.05)
        s.start()
        await run_job(s, "m", Level.interactive, ["x"])
        loaded = dict(gpu.allocations)
        await until(lambda: not gpu.allocations, "the idle TTL unload")
        return loaded, dict(gpu.allocations), list(s.snapshot().instances)

    loaded, after, instances = asyncio.run(main())
    assert loaded == {"m": 1024}
    assert after == {}
    assert instances == []


def test_pinned_model_survives_ttl() -> None:
    async def main() -> dict:
        gpu = SimulatedGpu(16384)
        eng = TimedEngine("m", 0.01, gpu)
        s = make({"m": eng}, gpu, {"m": ModelPolicy(cpu_threads=2, pinned=True)},
                 gpu_idle_ttl_s=0.05)  # fmt: skip
        s.start()
        await run_job(s, "m", Level.interactive, ["x"])
        for inst in s.internals_for_tests().pool:
            inst.last_used -= 3600  # idle for an hour, far past the TTL
        s.internals_for_tests().expire_idle()
        await asyncio.sleep(0.2)  # and the TTL loop's own ticks (every ~12 ms) see it too
        return dict(gpu.allocations)

    assert asyncio.run(main()) == {"m": 1024}


def test_cancelling_a_request_removes_its_queued_unit() -> None:
    async def main() -> tuple[list, int]:
        eng = TimedEngine("m", 0.01)
        eng.hold("running")
        s = make({"m": eng})
        running = asyncio.create_task(run_job(s, "m", Level.interactive, ["running"]))
        await until(lambda: eng.started == ["running"], "running started")
        doomed = asyncio.create_task(run_job(s, "m", Level.interactive, ["doomed"]))
        await until(lambda: s.queued() == 1, "doomed queued")
        doomed.cancel()  # what a client disconnect does
        await asyncio.sleep(0)
        depth = s.queued()
        eng.release()
        await running
        await until(lambda: not any(s.snapshot().busy.values()), "every slot free")
        return [p for p, _ in eng.log], depth

    log, depth = asyncio.run(main())
    assert depth == 0
    assert log == ["running"]


def test_cpu_slots_times_threads_never_exceed_cores() -> None:
    eng = TimedEngine("m", 0.01)
    with pytest.raises(ValueError, match="exceed"):
        make({"m": eng}, None, {"m": ModelPolicy(cpu_threads=2)}, cpu_slots=2)
    # The settings tree derives threads so that the product fits.
    from gateway.config import Settings

    st = Settings(scheduler=SchedulerSettings(cores=4, cpu_slots=2))
    assert st.cpu_threads("kokoro") * st.scheduler.cpu_slots <= 4
    st = Settings(scheduler=SchedulerSettings(cores=2, cpu_slots=1))
    assert st.cpu_threads("whisper") == 2


def test_niced_engine_runs_in_the_background_slot_beside_foreground_work() -> None:
    async def main() -> tuple[list, int]:
        fg, bg, s = with_niced()
        fg.hold("f")
        bg.hold("b")
        batch = asyncio.create_task(run_job(s, "bg", Level.batch, ["b"]))
        await until(lambda: bg.started == ["b"], "b running")
        speech = asyncio.create_task(run_job(s, "fg", Level.interactive, ["f"]))
        await until(lambda: fg.started == ["f"] or s.queued() == 1, "f placed")
        both_running = render_status(s.snapshot())["lanes"]["cpu"]
        fg.release()
        bg.release()
        await asyncio.gather(batch, speech)
        inst = s.snapshot().instances
        return [(i["model"], i["background"], i["nice"]) for i in inst], both_running

    inst, lane = asyncio.run(main())
    assert sorted(inst) == [("bg", True, 19), ("fg", False, 0)]
    assert lane["busy"] == 1 and lane["background_busy"] == 1  # overlapped, not queued


def test_fifo_policy_runs_no_niced_background_instances() -> None:
    _, _, s = with_niced(policy="fifo")

    async def main() -> list:
        await run_job(s, "bg", Level.batch, ["b"])
        return [(i["model"], i["background"], i["nice"]) for i in s.snapshot().instances]

    assert asyncio.run(main()) == [("bg", False, 0)]


def test_over_budget_uncapped_engine_is_unloaded_and_sent_to_cpu() -> None:
    async def main() -> tuple[list, dict]:
        gpu = SimulatedGpu(16384)
        # Uncapped (like CTranslate2) and really using 3000 MiB against a 1024 MiB budget.
        eng = TimedEngine("m", 0.01, gpu, capped=False, use_mib=3000)
        s = make({"m": eng}, gpu, {"m": ModelPolicy(gpu_budget_mib=1024, cpu_threads=2)},
                 gpu_reserve_mib=256)  # fmt: skip
        await run_job(s, "m", Level.interactive, ["first"])
        await run_job(s, "m", Level.interactive, ["second"])
        return eng.log, dict(s.snapshot().fallbacks)

    log, fallbacks = asyncio.run(main())
    assert log[0] == ("first", "gpu")
    assert log[1] == ("second", "cpu")
    assert fallbacks == {("m", "not_admitted"): 1}


def test_no_gpu_means_cpu_with_reason_no_gpu() -> None:
    async def main() -> dict:
        eng = TimedEngine("m", 0.01)
        s = make({"m": eng}, None)
        await run_job(s, "m", Level.interactive, ["x"])
        return dict(s.snapshot().fallbacks)

    assert asyncio.run(main()) == {("m", "no_gpu"): 1}


def test_placement_cpu_is_not_a_fallback() -> None:
    async def main() -> tuple[list, dict]:
        gpu = SimulatedGpu(16384)
        eng = TimedEngine("m", 0.01, gpu)
        s = make({"m": eng}, gpu, {"m": ModelPolicy(placement=Placement.cpu, cpu_threads=2)})
        await run_job(s, "m", Level.interactive, ["x"])
        return eng.log, dict(s.snapshot().fallbacks)

    assert asyncio.run(main()) == ([("x", "cpu")], {})


def test_spillover_uses_idle_cpu_when_gpu_wait_is_long() -> None:
    async def main() -> list:
        gpu = SimulatedGpu(16384)
        slow = TimedEngine("slow", 0.3, gpu)
        fast = TimedEngine("fast", 0.05, gpu)
        s = make({"slow": slow, "fast": fast}, gpu, spillover_wait_s=0.01, gpu_slots=1)
        await run_job(s, "fast", Level.interactive, ["load", "warm"])  # learn the GPU unit time
        slow.hold("hog")
        busy = asyncio.create_task(run_job(s, "slow", Level.batch, ["hog"]))
        await until(lambda: slow.started == ["hog"], "hog running")
        await run_job(s, "fast", Level.interactive, ["spilled"])
        slow.release()
        await busy
        return fast.log

    assert asyncio.run(main()) == [("load", "gpu"), ("warm", "gpu"), ("spilled", "cpu")]


def test_interactive_units_of_a_niced_engine_run_at_normal_priority() -> None:
    # A short voice note must not crawl at nice 19 behind speech: only batch units are niced.
    async def main() -> list:
        eng = TimedEngine("stt", 0.01)
        s = make({"stt": eng}, None, {"stt": ModelPolicy(cpu_threads=2, cpu_nice=19)})
        await run_job(s, "stt", Level.interactive, ["note"])
        await run_job(s, "stt", Level.batch, ["long"])
        return sorted((i["background"], i["nice"]) for i in s.snapshot().instances)

    assert asyncio.run(main()) == [(False, 0), (True, 19)]


def test_without_a_registry_metrics_do_nothing_and_a_snapshot_stays_as_taken() -> None:
    """No `metrics` given: the scheduler records into metrics no registry exports (no guard on
    each use). A snapshot is a picture of its moment: later work does not change it."""

    async def main() -> tuple[Snapshot, Snapshot]:
        eng = TimedEngine("m", 0.001)
        eng.hold("x")
        s = Scheduler({"m": eng}, {"m": ModelPolicy(cpu_threads=2)}, SchedulerSettings(cores=2))  # type: ignore[dict-item]
        running = asyncio.create_task(run_job(s, "m", Level.interactive, ["x"]))
        await until(lambda: eng.started == ["x"], "x runs")
        during = s.snapshot()
        eng.release("x")
        await running
        after = s.snapshot()
        await s.close(1)
        return during, after

    during, after = asyncio.run(main())
    assert during.busy["cpu"] == 1 and after.busy["cpu"] == 0
    assert [i["running"] for i in during.instances] == [1]
    assert [(e.model, e.units_run) for e in after.loaded] == [("m", 1)]
    with pytest.raises(dataclasses.FrozenInstanceError):
        during.closing = True  # type: ignore[misc]
