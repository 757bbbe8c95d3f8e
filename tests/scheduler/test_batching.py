"""Dynamic batching on the GPU lane, proven with a SIMULATED GPU and a gated fake engine.

The engine's calls block on an event the test releases, so which units share a call is decided
by the order of events, never by the clock.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Hashable
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from gateway.config import QueuePolicy, SchedulerSettings
from gateway.engines.base import Device
from gateway.scheduler import Level, ModelPolicy, Scheduler, SchedulerMetrics, SimulatedGpu
from gateway.scheduler.batching import Batcher


class GatedBatchEngine:
    """Payloads are (key, value); a call returns value * 10 per payload. Each call waits for
    `gate` (set by the test), and call number i also for `holds[i]` if there is one; calls are
    logged with their lane and payloads. A call advances `clock` by `call_s` (the scheduler's
    run timer in the tests that set it), and each unit is `audio_s` seconds of audio."""

    family = "gated"
    gpu_capped = False

    def __init__(self, model_id: str, gpu: SimulatedGpu) -> None:
        self.model_id = model_id
        self.gpu = gpu
        self.gate = threading.Event()
        self.calls: list[tuple[str, list[Any]]] = []
        self.started = threading.Semaphore(0)
        self.fail: list[str | None] = []  # per GPU call, in order: raise this (None: succeed)
        self.bad_value: Any = None  # a payload value that fails on its own
        self.holds: dict[int, threading.Event] = {}
        self.fail_gpu_load: str | None = None
        self.clock = 0.0
        self.call_s = 0.0
        self.audio_s = 10.0

    def gpu_support(self) -> tuple[bool, str]:
        return True, "simulated CUDA"

    def load(self, device: Device) -> Device:
        if device.lane == "gpu" and self.fail_gpu_load:
            raise RuntimeError(self.fail_gpu_load)
        if device.lane == "gpu":
            self.gpu.allocate(self.model_id, device.gpu_mem_limit_mib or 0)
        return device

    def unload(self, handle: Device) -> None:
        if handle.lane == "gpu":
            self.gpu.release(self.model_id)

    def batch_key(self, payload: tuple[str, int]) -> Hashable | None:
        return payload[0]

    def audio_seconds(self, payload: Any, result: Any) -> float:
        return self.audio_s

    def _call(self, lane: str, payloads: list[Any]) -> list[Any]:
        self.calls.append((lane, list(payloads)))
        hold = self.holds.get(len(self.calls) - 1)
        self.started.release()
        self.gate.wait(10)
        if hold is not None:
            assert hold.wait(10), "a held call was never released"
        self.clock += self.call_s
        if lane == "gpu" and self.fail and (message := self.fail.pop(0)):
            raise RuntimeError(message)
        if any(p[1] == self.bad_value for p in payloads):
            raise ValueError("bad unit")
        return [p[1] * 10 for p in payloads]

    def run_batch(self, handle: Device, payloads: list[Any], batch_size: int) -> list[Any]:
        return self._call(str(handle.lane), payloads)

    def run(self, handle: Device, payload: Any) -> Any:
        return self._call(str(handle.lane), [payload])[0]


def make(engine: GatedBatchEngine, gpu: SimulatedGpu, max_batch: int = 4,
         **settings: Any) -> Scheduler:  # fmt: skip
    s = SchedulerSettings(cores=2, gpu_slots=1, **settings)
    pol = {engine.model_id: ModelPolicy(cpu_threads=2, max_batch=max_batch, batch_latency_s=10)}
    return Scheduler({engine.model_id: engine}, pol, s, gpu, SchedulerMetrics(CollectorRegistry()))  # type: ignore[dict-item]


def gated(open_gate: bool = False) -> tuple[SimulatedGpu, GatedBatchEngine]:
    """Model `w` on a 16 GB simulated GPU; its calls wait for `gate` unless it is open."""
    gpu = SimulatedGpu(total_mib=16000)
    eng = GatedBatchEngine("w", gpu)
    if open_gate:
        eng.gate.set()
    return gpu, eng


async def started(engine: GatedBatchEngine) -> None:
    await asyncio.to_thread(engine.started.acquire, True, 10)


async def one(s: Scheduler, model: str, payload: Any, level: Level = Level.batch) -> Any:
    async with s.job(model, level) as job:
        return await job.run(payload)


async def behind_one(
    s: Scheduler, eng: GatedBatchEngine, payloads: list[Any]
) -> tuple[asyncio.Task[Any], list[asyncio.Task[Any]]]:
    """Unit ("en", 1) takes the GPU slot (and waits at the gate); then `payloads` queue behind
    it, one job each, in order: (the running unit's task, theirs)."""
    first = asyncio.create_task(one(s, "w", ("en", 1)))
    await started(eng)
    rest = [asyncio.create_task(one(s, "w", p)) for p in payloads]
    await asyncio.sleep(0)
    return first, rest


def _limit(s: Scheduler) -> int:
    """Units per GPU call of model `w` now, as the status shows it."""
    return s.snapshot().models["w"].batch_limit


def test_simulated_gpu_queued_units_with_equal_keys_share_one_call() -> None:
    async def main() -> None:
        gpu, eng = gated()
        s = make(eng, gpu, max_batch=3)
        first, rest = await behind_one(s, eng, [("en", 2), ("de", 3), ("en", 4), ("en", 5),
                                                ("en", 6)])  # fmt: skip
        eng.gate.set()
        results = await asyncio.gather(first, *rest)
        assert results == [10, 20, 30, 40, 50, 60]  # each caller gets its own result
        lanes = {lane for lane, _ in eng.calls}
        batches = [[p[1] for p in payloads] for _, payloads in eng.calls]
        assert lanes == {"gpu"}
        assert batches[0] == [1]
        assert batches[1] == [2, 4, 5]  # equal key, arrival order, at most max_batch
        assert sorted(batches[2:]) == [[3], [6]]  # the other key never joins them
        await s.close(1)

    asyncio.run(main())


def test_simulated_gpu_batch_limit_follows_the_latency_budget() -> None:
    gpu, eng = gated()
    s = make(eng, gpu, max_batch=16)
    inner = s.internals_for_tests()
    inner.placer.policies["w"].batch_latency_s = 1.0
    assert _limit(s) == 16  # nothing measured yet: the cap
    inner.batcher.measured("w", 3.0, 1)  # a lone unit (sequential decode) says nothing of batches
    assert _limit(s) == 16
    inner.batcher.measured("w", 2.0, 8)  # measured in a batch: 0.25 s per unit
    assert _limit(s) == 4
    inner.batcher.measured("w", 6.0, 2)  # slower than the budget: one at a time
    assert _limit(s) == 1


def test_simulated_gpu_interactive_unit_waits_for_at_most_one_batch() -> None:
    async def main() -> None:
        gpu, eng = gated()
        s = make(eng, gpu, max_batch=2)
        first, batch = await behind_one(s, eng, [("en", v) for v in (2, 3, 4, 5)])
        speech = asyncio.create_task(one(s, "w", ("xx", 9), Level.interactive))
        await asyncio.sleep(0)
        eng.gate.set()
        await asyncio.gather(first, speech, *batch)
        order = [[p[1] for p in payloads] for _, payloads in eng.calls]
        assert order[1] == [9], order  # right after the running call, before any queued batch
        await s.close(1)

    asyncio.run(main())


def test_simulated_gpu_out_of_memory_halves_the_batch_then_goes_to_cpu_nothing_lost() -> None:
    async def main() -> None:
        gpu, eng = gated()
        s = make(eng, gpu, max_batch=4)
        first, rest = await behind_one(s, eng, [("en", v) for v in (2, 3, 4, 5)])
        # the first call succeeds; the batch of 4, then its first half, then a single unit run
        # out of memory: the single one goes to the CPU, the rest finish on the GPU
        oom = "CUDA failed: out of memory"
        eng.fail = [None, oom, oom, oom]
        eng.gate.set()
        results = await asyncio.gather(first, *rest)
        assert results == [10, 20, 30, 40, 50]
        calls = [(lane, [p[1] for p in payloads]) for lane, payloads in eng.calls]
        assert calls[:4] == [("gpu", [1]), ("gpu", [2, 3, 4, 5]), ("gpu", [2, 3]), ("gpu", [2])]
        assert ("cpu", [2]) in calls
        assert sorted(v for lane, vs in calls[4:] if lane == "gpu" for v in vs) == [3, 4, 5]
        assert _limit(s) == 1  # three lone calls in a row have filled the cap of one
        assert await one(s, "w", ("en", 6)) == 60
        assert _limit(s) == 2  # the fourth doubles it: it recovers
        await s.close(1)

    asyncio.run(main())


def test_simulated_gpu_a_bad_unit_fails_alone_in_its_batch() -> None:
    async def main() -> None:
        gpu, eng = gated()
        eng.bad_value = 3
        s = make(eng, gpu, max_batch=4)
        first, rest = await behind_one(s, eng, [("en", v) for v in (2, 3, 4)])
        eng.gate.set()
        results = await asyncio.gather(first, *rest, return_exceptions=True)
        assert results[:2] == [10, 20] and results[3] == 40
        assert isinstance(results[2], ValueError)
        await s.close(1)

    asyncio.run(main())


def test_simulated_gpu_batch_cap_recovers_after_calls_without_error() -> None:
    """One out-of-memory halves the cap; calls that fill the lowered cap without error double it
    again, back to max_batch (it never stays at the halved limit until a restart)."""

    async def main() -> None:
        gpu, eng = gated(open_gate=True)
        s = make(eng, gpu, max_batch=4)
        eng.fail = ["CUDA failed: out of memory"]  # the first call only
        async with s.job("w", Level.batch) as job:
            assert await job.run_many([("en", v) for v in (1, 2, 3, 4)]) == [10, 20, 30, 40]
        assert _limit(s) == 2
        for start in (10, 20):  # calls of two (four in a row fill the cap), then of four
            async with s.job("w", Level.batch) as job:
                await job.run_many([("en", start + v) for v in range(4)])
        sizes = [len(payloads) for _, payloads in eng.calls]
        assert Batcher.recover_after == 4
        assert sizes == [4, 2, 2, 2, 2, 4], sizes
        assert _limit(s) == 4
        await s.close(1)

    asyncio.run(main())


def test_simulated_gpu_slow_batch_estimate_recovers_from_lone_calls() -> None:
    """A slow batch holds the limit at one; lone calls then bound the estimate (a batched unit
    never costs more than a lone one), and lone calls as slow as the estimate let one call of
    two measure a batch again."""
    gpu = SimulatedGpu(total_mib=16000)
    s = make(GatedBatchEngine("w", gpu), gpu, max_batch=16)
    s.internals_for_tests().placer.policies["w"].batch_latency_s = 1.0
    b = s.internals_for_tests().batcher
    b.measured("w", 6.0, 2)  # 3 s per unit: one at a time
    assert _limit(s) == 1
    b.measured("w", 0.3, 1)  # a lone unit took 0.3 s: a batched one takes at most that
    assert _limit(s) == 3
    b.measured("w", 6.0, 2)
    for _ in range(b.recover_after - 1):
        b.succeeded("w", 0.8, 1, timed=True)  # lone calls too slow to allow two by the bound
        assert _limit(s) == 1
    b.succeeded("w", 0.8, 1, timed=True)
    assert _limit(s) == 2  # the probe
    b.succeeded("w", 0.4, 2, timed=True)  # the batch was fast: 0.2 s per unit
    assert _limit(s) == 5


def test_simulated_gpu_failed_load_in_a_batch_is_a_gpu_failure_not_an_oom() -> None:
    async def main() -> None:
        gpu, eng = gated(open_gate=True)
        eng.fail_gpu_load = "CUDA error: initialization error"
        s = make(eng, gpu, max_batch=4, gpu_retry_cooldown_s=600)
        async with s.job("w", Level.batch) as job:
            assert await job.run_many([("en", v) for v in (1, 2, 3)]) == [10, 20, 30]
        assert {lane for lane, _ in eng.calls} == {"cpu"}  # the load failed before any call
        assert "initialization error" in (s.snapshot().models["w"].gpu_broken or "")
        assert s.snapshot().fallbacks[("w", "gpu_error")] == 3
        eng.fail_gpu_load = None
        placer = s.internals_for_tests().placer
        placer.gpu_retry_at["w"] = 0.0  # the cooldown is over: the GPU again, full batches
        assert _limit(s) == 4
        async with s.job("w", Level.batch) as job:
            await job.run_many([("en", v) for v in (4, 5, 6, 7)])
        assert eng.calls[-1] == ("gpu", [("en", v) for v in (4, 5, 6, 7)])
        await s.close(1)

    asyncio.run(main())


def oom_on_the_second_call(**settings: Any) -> tuple[GatedBatchEngine, Scheduler]:
    """The first two calls wait for `holds[0]` and `holds[1]`; the second runs out of memory."""
    gpu, eng = gated(open_gate=True)
    eng.holds = {0: threading.Event(), 1: threading.Event()}
    eng.fail = [None, "CUDA failed: out of memory"]
    return eng, make(eng, gpu, max_batch=4, **settings)


def test_simulated_gpu_unit_requeued_after_its_deadline_passed_in_a_batch_still_runs() -> None:
    """The queue timeout bounds waiting, not running: units whose deadline passed while their
    batch ran, put back after it failed, wait again with the time they had left (here the
    second waits for the first, run alone after the out-of-memory)."""

    async def main() -> None:
        eng, s = oom_on_the_second_call(batch=QueuePolicy(default_timeout_s=1.5))
        loop = asyncio.get_running_loop()
        first, rest = await behind_one(s, eng, [("en", v) for v in (2, 3)])
        units = list(s.internals_for_tests().queue)
        eng.holds[0].set()
        await started(eng)  # the batch of two runs ...
        assert all(u.started for u in units)
        left = [u.deadline - u.started for u in units]
        while loop.time() <= max(u.deadline for u in units):  # ... past their deadline
            await asyncio.sleep(0.01)
        eng.holds[1].set()  # and runs out of memory
        assert await asyncio.gather(first, *rest) == [10, 20, 30]
        assert [[p[1] for p in payloads] for _, payloads in eng.calls] == [[1], [2, 3], [2], [3]]
        for u, was_left in zip(units, left, strict=True):  # the expiry it was put back with
            assert u.timer is not None
            assert u.timer.when() - u.enqueued == pytest.approx(was_left, abs=1e-6)
        await s.close(1)

    asyncio.run(main())


def test_simulated_gpu_unit_of_a_caller_gone_during_its_batch_is_not_run_again() -> None:
    async def main() -> None:
        eng, s = oom_on_the_second_call()
        first = asyncio.create_task(one(s, "w", ("en", 1)))
        await started(eng)
        gone = asyncio.create_task(one(s, "w", ("en", 2)))
        stays = asyncio.create_task(one(s, "w", ("en", 3)))
        await asyncio.sleep(0)
        eng.holds[0].set()
        await started(eng)  # the batch [2, 3] runs
        gone.cancel()  # its caller disconnects
        with pytest.raises(asyncio.CancelledError):
            await gone
        eng.holds[1].set()  # the batch fails: 3 runs again, 2 does not
        assert await asyncio.gather(first, stays) == [10, 30]
        assert [[p[1] for p in payloads] for _, payloads in eng.calls] == [[1], [2, 3], [3]]
        assert s.queued() == 0
        await s.close(1)

    asyncio.run(main())


def test_simulated_gpu_batched_units_record_their_share_of_the_call() -> None:
    """gateway_unit_run_seconds and the real-time factor count each unit's share of a batched
    call, not the whole call once per unit."""

    async def main() -> CollectorRegistry:
        gpu, eng = gated(open_gate=True)
        registry = CollectorRegistry()
        # each call takes exactly call_s on the engine's clock
        s = Scheduler({"w": eng}, {"w": ModelPolicy(cpu_threads=2, max_batch=4)},  # type: ignore[dict-item]
                      SchedulerSettings(cores=2, gpu_slots=1), gpu, SchedulerMetrics(registry),
                      clock=lambda: eng.clock)  # fmt: skip
        eng.call_s = 2.0
        async with s.job("w", Level.batch) as job:
            await job.run_many([("en", v) for v in (1, 2, 3, 4)])
        assert [len(p) for _, p in eng.calls] == [4]
        assert [r.run_s for r in job.records] == [0.5] * 4
        await s.close(1)
        return registry

    registry = asyncio.run(main())
    sample = registry.get_sample_value
    labels = {"engine": "w", "lane": "gpu"}
    assert sample("gateway_unit_run_seconds_count", labels) == 4
    assert sample("gateway_unit_run_seconds_sum", labels) == pytest.approx(2.0)
    assert sample("gateway_real_time_factor_count", labels) == 4
    assert sample("gateway_real_time_factor_sum", labels) == pytest.approx(4 * 0.5 / 10.0)


@pytest.mark.parametrize("lane_gpu", [True, False])
def test_parallel_units_only_where_the_gpu_batches(lane_gpu: bool) -> None:
    gpu = SimulatedGpu(total_mib=16000) if lane_gpu else None
    eng = GatedBatchEngine("w", SimulatedGpu(total_mib=16000))
    s = make(eng, gpu, max_batch=8)  # type: ignore[arg-type]

    async def main() -> int:
        return s.parallel_units("w")

    assert asyncio.run(main()) == (8 if lane_gpu else 1)


def test_simulated_gpu_units_queued_together_share_a_call_on_an_idle_gpu() -> None:
    """`Job.run_many` queues all before dispatching: the free slot takes them as one batch."""

    async def main() -> None:
        gpu, eng = gated(open_gate=True)
        s = make(eng, gpu, max_batch=4, batch=QueuePolicy(max_queue_size=1))
        async with s.job("w", Level.batch) as job:
            results = await job.run_many([("en", v) for v in (1, 2, 3, 4, 5)])
        assert results == [10, 20, 30, 40, 50]  # five units of one job: one admission check
        assert [[p[1] for p in payloads] for _, payloads in eng.calls] == [[1, 2, 3, 4], [5]]
        await s.close(1)

    asyncio.run(main())


def test_simulated_gpu_run_many_a_bad_unit_fails_the_group_and_the_next_job_runs() -> None:
    async def main() -> None:
        gpu, eng = gated(open_gate=True)
        eng.bad_value = 2
        s = make(eng, gpu, max_batch=4)
        async with s.job("w", Level.batch) as job:
            with pytest.raises(ValueError):
                await job.run_many([("en", v) for v in (1, 2, 3)])
        assert eng.calls[0][1] == [("en", 1), ("en", 2), ("en", 3)]  # batched, then split
        assert ("gpu", [("en", 2)]) in eng.calls  # the bad one ran alone
        assert await one(s, "w", ("en", 7)) == 70
        assert s.queued() == 0
        await s.close(1)

    asyncio.run(main())


def test_simulated_gpu_run_many_cancelled_takes_back_its_queued_units() -> None:
    """A caller that goes away (a disconnect) while its group runs: the units not started leave
    the queue, the running batch finishes, nothing is left behind."""

    async def main() -> None:
        gpu, eng = gated()
        s = make(eng, gpu, max_batch=2)
        async with s.job("w", Level.batch) as job:
            task = asyncio.create_task(job.run_many([("en", v) for v in (1, 2, 3, 4, 5)]))
            await started(eng)  # the first batch of two runs; three units wait
            assert s.queued() == 3
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert s.queued() == 0
        eng.gate.set()
        assert await one(s, "w", ("en", 7)) == 70
        assert [[p[1] for p in payloads] for _, payloads in eng.calls] == [[1, 2], [7]]
        await s.close(1)

    asyncio.run(main())


def test_simulated_gpu_companions_started_in_a_batch_are_not_dispatched_again() -> None:
    """With spillover on, a unit already started as a batch companion must not be seen again
    by the same dispatch pass (it would be started twice: a 500 for its request)."""

    async def main() -> None:
        gpu, eng = gated(open_gate=True)
        s = make(eng, gpu, max_batch=4, spillover_wait_s=0.001)
        estimates = s.internals_for_tests().estimates
        estimates.per_unit[("w", "gpu")] = 1.0  # a measured GPU time: the wait looks long
        async with s.job("w", Level.batch) as job:
            assert await job.run_many([("en", v) for v in (1, 2, 3)]) == [10, 20, 30]
        assert sorted(v for _, payloads in eng.calls for _, v in payloads) == [1, 2, 3]
        await s.close(1)

    asyncio.run(main())


def test_simulated_gpu_a_group_of_units_counts_one_request() -> None:
    async def main() -> None:
        gpu, eng = gated(open_gate=True)
        s = make(eng, gpu, max_batch=4)
        async with s.job("w", Level.batch) as job:
            await job.run_many([("en", v) for v in (1, 2, 3, 4, 5)])
        activity = s.internals_for_tests().ledger.activity
        assert [u.first for u in activity.units] == [True, False, False, False, False]
        await s.close(1)

    asyncio.run(main())
