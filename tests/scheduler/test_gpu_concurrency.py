"""Speech concurrency on the GPU lane (`GATEWAY_KOKORO__GPU_CONCURRENCY`), on a SIMULATED GPU:
one GPU instance runs up to N units at once on one loaded runtime, holds one lane slot while it
does, and never lets batch units take its last runner. No real GPU exists here; the simulated
engine's units block until the test releases them, so these prove order and counts, not speed."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from gateway.engines.base import Device
from gateway.scheduler import Level, ModelPolicy, Scheduler, SimulatedGpu

from .test_scheduler import TimedEngine, make, run_job, until


class ThreadedEngine(TimedEngine):
    """The simulated engine, recording how many of its runs overlap and on which threads."""

    def __init__(self, model_id: str, gpu: SimulatedGpu) -> None:
        super().__init__(model_id, 0.001, gpu)
        self.loads = 0
        self.load_gate = threading.Event()
        self.load_gate.set()
        self.now = 0
        self.peak = 0
        self.threads: set[str] = set()

    def load(self, device: Device) -> Device:
        self.loads += 1
        assert self.load_gate.wait(60), "the load was never released"
        return super().load(device)

    def run(self, handle: Device, payload: Any) -> Any:
        with self.lock:
            self.now += 1
            self.peak = max(self.peak, self.now)
            self.threads.add(threading.current_thread().name)
        try:
            return super().run(handle, payload)
        finally:
            with self.lock:
                self.now -= 1


def _setup(concurrency: int, **settings: Any) -> tuple[Scheduler, dict[str, ThreadedEngine]]:
    gpu = SimulatedGpu(16384)
    engines = {"speech": ThreadedEngine("speech", gpu), "stt": ThreadedEngine("stt", gpu)}
    pol = {
        "speech": ModelPolicy(gpu_budget_mib=1536, cpu_threads=2, gpu_concurrency=concurrency),
        "stt": ModelPolicy(gpu_budget_mib=2048, cpu_threads=2),
    }
    settings.setdefault("cpu_background_slots", 0)
    return make(engines, gpu, pol, **settings), engines  # type: ignore[arg-type]


def _inst(s: Scheduler, model: str) -> Any:
    return s.internals_for_tests().pool.instances[(model, "gpu")]


def test_simulated_gpu_runs_n_speech_units_at_once_on_one_load_and_one_slot() -> None:
    async def main() -> None:
        s, eng = _setup(4, gpu_slots=2)
        sp, stt = eng["speech"], eng["stt"]
        assert await run_job(s, "speech", Level.interactive, ["warm"]) == ["warm"]
        stt.hold("t")
        other = asyncio.create_task(run_job(s, "stt", Level.interactive, ["t"]))
        await until(lambda: stt.started == ["t"], "the other model on the second slot")
        units = [f"u{i}" for i in range(6)]
        sp.hold(*units)
        jobs = [asyncio.create_task(run_job(s, "speech", Level.interactive, [u])) for u in units]
        await until(lambda: len(sp.started) == 1 + 4, "four units running")
        await asyncio.sleep(0.05)  # give a fifth the chance it must not take
        assert sp.now == 4 and len(sp.started) == 5
        # both slots taken (speech's four units hold one), yet units 2 to 4 started beside unit 1
        assert s.snapshot().busy["gpu"] == 2 and _inst(s, "speech").running == 4
        stt.release()
        assert await other == ["t"] and stt.log == [("t", "gpu")]
        sp.release()
        assert [await j for j in jobs] == [[u] for u in units]
        assert sp.peak == 4 and sp.loads == 1
        assert len(sp.threads) == 4  # each running unit had a runner thread of its own
        assert all(lane == "gpu" for _, lane in sp.log)
        assert s.snapshot().busy["gpu"] == 0 and _inst(s, "speech").slot is None
        assert not _inst(s, "speech").busy

    asyncio.run(main())


def test_simulated_gpu_concurrency_1_runs_one_unit_at_a_time() -> None:
    async def main() -> None:
        s, eng = _setup(1)
        sp = eng["speech"]
        await run_job(s, "speech", Level.interactive, ["warm"])
        sp.hold("a", "b")
        jobs = [asyncio.create_task(run_job(s, "speech", Level.interactive, [u])) for u in "ab"]
        await until(lambda: len(sp.started) == 2, "one unit running")
        await asyncio.sleep(0.05)
        assert sp.now == 1
        sp.release()
        await asyncio.gather(*jobs)
        assert sp.peak == 1

    asyncio.run(main())


def test_simulated_gpu_batch_units_never_take_the_last_runner() -> None:
    """Batch speech fills all but one runner; an interactive unit queued after them starts at
    once on the one left, without waiting for any batch unit to end."""

    async def main() -> None:
        s, eng = _setup(3)
        sp = eng["speech"]
        await run_job(s, "speech", Level.interactive, ["warm"])
        batch = [f"b{i}" for i in range(4)]
        sp.hold(*batch, "i1", "i2")
        jobs = [asyncio.create_task(run_job(s, "speech", Level.batch, [u])) for u in batch]
        await until(lambda: len(sp.started) == 1 + 2, "two batch units running")
        await asyncio.sleep(0.05)
        assert sp.now == 2  # not three: one runner is kept for interactive work
        inter = asyncio.create_task(run_job(s, "speech", Level.interactive, ["i1"]))
        await until(lambda: "i1" in sp.started, "the interactive unit running")
        assert sp.now == 3 and not any(p in sp.log for p in batch)  # no batch unit ended first
        # all runners busy now: the next interactive unit waits for one unit, then goes first
        inter2 = asyncio.create_task(run_job(s, "speech", Level.interactive, ["i2"]))
        await asyncio.sleep(0.05)
        assert "i2" not in sp.started
        sp.release("b0")
        await until(lambda: "i2" in sp.started, "i2 on the runner b0 left")
        assert sp.started.count("b2") == 0 and sp.started.count("b3") == 0
        sp.release()
        await asyncio.gather(*jobs, inter, inter2)
        assert sp.peak == 3

    asyncio.run(main())


def test_simulated_gpu_second_unit_waits_for_the_first_load() -> None:
    """While the instance loads, no second unit starts on it (one load, never two at once)."""

    async def main() -> None:
        s, eng = _setup(4)
        sp = eng["speech"]
        sp.load_gate.clear()
        sp.hold("a", "b")
        first = asyncio.create_task(run_job(s, "speech", Level.interactive, ["a"]))
        await until(lambda: sp.loads == 1, "loading")
        second = asyncio.create_task(run_job(s, "speech", Level.interactive, ["b"]))
        await asyncio.sleep(0.05)
        assert _inst(s, "speech").running == 1 and sp.started == []  # b waits for the load
        sp.load_gate.set()
        await until(lambda: sorted(sp.started) == ["a", "b"], "a and b running, once loaded")
        assert sp.now == 2
        sp.release()
        assert await first == ["a"] and await second == ["b"]
        assert sp.loads == 1

    asyncio.run(main())


def test_cpu_lane_ignores_gpu_concurrency() -> None:
    async def main() -> None:
        s, eng = _setup(4)
        s.internals_for_tests().placer.gpu_present = False
        sp = eng["speech"]
        sp.hold("a", "b")
        jobs = [asyncio.create_task(run_job(s, "speech", Level.interactive, [u])) for u in "ab"]
        await until(lambda: len(sp.started) == 1, "one unit running")
        await asyncio.sleep(0.05)
        assert sp.now == 1 and sp.log == []
        sp.release()
        await asyncio.gather(*jobs)
        assert sp.peak == 1 and {lane for _, lane in sp.log} == {"cpu"}

    asyncio.run(main())
