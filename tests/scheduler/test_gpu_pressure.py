"""A neighbour on the GPU (a local LLM) on a SIMULATED NVML device: its memory grows and shrinks,
and the scheduler yields idle models, sends new loads to the CPU (`gpu_pressure`) and comes back
to the GPU only after the hysteresis. No real GPU exists here; these prove order and placement."""

from __future__ import annotations

import asyncio
from dataclasses import asdict
from typing import Any

from prometheus_client.metrics import MetricWrapperBase

from gateway.scheduler import Level, ModelPolicy, Scheduler, SimulatedGpu, render_status

from ..support.wait import until
from .test_scheduler import TimedEngine, make, run_job

BUDGET = 2000
RESERVE = 512


def _setup(
    models: str, total: int = 16384, **settings: Any
) -> tuple[Scheduler, SimulatedGpu, dict[str, TimedEngine]]:
    gpu = SimulatedGpu(total)
    engines = {m: TimedEngine(m, 0.001, gpu) for m in models}
    pol = {m: ModelPolicy(gpu_budget_mib=BUDGET, cpu_threads=2) for m in models}
    settings.setdefault("gpu_reserve_mib", RESERVE)
    s = make(engines, gpu, pol, **settings)  # type: ignore[arg-type]
    return s, gpu, engines


def _check(s: Scheduler) -> list[str]:
    """One reading of the GPU pressure watch, taken now; the models it unloaded."""
    return [i.model for i in s.internals_for_tests().pressure.check()]


def _neighbour_leaves_free(gpu: SimulatedGpu, free_mib: int) -> None:
    """The other process grows or shrinks until the device has `free_mib` free."""
    mine = sum(gpu.allocations.values())
    gpu.other_used_mib = gpu.total_mib - mine - free_mib


def _sample(metric: MetricWrapperBase, name: str) -> float:
    return next(x.value for f in metric.collect() for x in f.samples if x.name == name)


def _gpu_models(s: Scheduler) -> list[str]:
    return sorted(e.model for e in s.loaded() if e.lane == "gpu")


def test_simulated_neighbour_growth_unloads_idle_models_lru_first_never_a_busy_one() -> None:
    async def main() -> None:
        s, gpu, eng = _setup("abc", gpu_reserve_mib=3000)  # a reserve bigger than one model
        for m in "abc":  # loaded in this order: "a" is the least recently used
            assert await run_job(s, m, Level.interactive, [f"{m}1"]) == [f"{m}1"]
        eng["c"].hold("c2")
        busy = asyncio.create_task(run_job(s, "c", Level.interactive, ["c2"]))
        await until(lambda: eng["c"].started[-1:] == ["c2"], "c2 running")

        _neighbour_leaves_free(gpu, 2500)  # 500 MiB short of the reserve: one model is enough
        assert _check(s) == ["a"]
        await until(lambda: "a" not in gpu.allocations, "a's memory given back")
        assert _gpu_models(s) == ["b", "c"]

        _neighbour_leaves_free(gpu, 0)  # it takes all: "b" is not enough, yet busy "c" stays
        assert _check(s) == ["b"]
        assert [(e.model, e.busy) for e in s.loaded() if e.lane == "gpu"] == [("c", True)]

        eng["c"].release()
        assert await busy == ["c2"]  # the running unit finished on the GPU
        assert eng["c"].log[-1] == ("c2", "gpu")
        await until(lambda: "b" not in gpu.allocations, "b's memory given back")
        # b's 2000 MiB leave the device still short of the reserve: "c", idle now, goes too
        assert _check(s) == ["c"]
        await until(lambda: not gpu.allocations, "every model's memory given back")

    asyncio.run(main())


def test_simulated_pressure_sends_new_loads_to_cpu_until_free_memory_holds_above_the_line() -> None:
    async def main() -> None:
        s, gpu, eng = _setup("a", gpu_pressure_hold_s=30.0)
        now = [0.0]
        pressure = s.internals_for_tests().pressure
        pressure.clock = lambda: now[0]
        await run_job(s, "a", Level.interactive, ["before"])
        _neighbour_leaves_free(gpu, 100)
        _check(s)
        await until(lambda: not gpu.allocations, "a unloaded")
        assert await run_job(s, "a", Level.interactive, ["squeezed"]) == ["squeezed"]
        done = await s.load("a")  # POST /api/ps/a says why
        assert (done.entry.lane, done.reason) == ("cpu", "gpu_pressure")

        # Room for the reserve, not for the reserve plus a budget: still the CPU.
        _neighbour_leaves_free(gpu, RESERVE + BUDGET - 1)
        _check(s)
        assert await run_job(s, "a", Level.batch, ["tight"]) == ["tight"]

        # Above the line, but not for the hold yet; a dip under the reserve starts it over.
        _neighbour_leaves_free(gpu, 8000)
        _check(s)
        now[0] = 20.0
        _neighbour_leaves_free(gpu, 300)
        _check(s)
        now[0] = 25.0
        _neighbour_leaves_free(gpu, 8000)
        _check(s)
        now[0] = 50.0  # 30 s since the first clear reading, only 25 s since the last dip
        _check(s)
        assert s.snapshot().gpu_pressure["active"]
        assert await run_job(s, "a", Level.interactive, ["holding"]) == ["holding"]
        now[0] = 55.0
        _check(s)
        assert not s.snapshot().gpu_pressure["active"]
        assert await run_job(s, "a", Level.interactive, ["after"]) == ["after"]

        lanes = [(p, lane) for p, lane in eng["a"].log]
        assert lanes == [
            ("before", "gpu"),
            ("squeezed", "cpu"),
            ("tight", "cpu"),
            ("holding", "cpu"),
            ("after", "gpu"),
        ]
        assert s.snapshot().fallbacks == {("a", "gpu_pressure"): 3}
        status = s.snapshot().gpu_pressure
        assert [e["unloaded"] for e in status["events"]] == [["a"]]
        assert status["events"][0]["ended"] is not None
        m = s.internals_for_tests().metrics
        assert _sample(m.gpu_pressure_events, "gateway_gpu_pressure_events_total") == 1
        assert _sample(m.gpu_other_mib, "gateway_gpu_other_processes_memory_mib") == (
            gpu.other_used_mib
        )
        assert _sample(m.gpu_pressure, "gateway_gpu_pressure") == 0

    asyncio.run(main())


def test_simulated_model_with_interactive_work_queued_is_the_last_to_go() -> None:
    async def main() -> None:
        s, gpu, eng = _setup("abc", gpu_slots=1)
        for m in "abc":
            await run_job(s, m, Level.interactive, [f"{m}1"])
        eng["c"].hold("c2")
        busy = asyncio.create_task(run_job(s, "c", Level.batch, ["c2"]))
        await until(lambda: eng["c"].started[-1:] == ["c2"], "c2 holding the only GPU slot")
        waiting = asyncio.create_task(run_job(s, "a", Level.interactive, ["a2"]))
        await until(lambda: s.queued(Level.interactive, "a") == 1, "a2 queued")

        _neighbour_leaves_free(gpu, 200)
        # "a" is the least recently used, but its interactive unit waits: "b" goes instead.
        assert _check(s) == ["b"]
        eng["c"].release()
        assert await asyncio.gather(busy, waiting) == [["c2"], ["a2"]]
        assert eng["a"].log[-1] == ("a2", "gpu")

    asyncio.run(main())


def test_simulated_pressure_watch_runs_in_the_background_and_stops_on_close() -> None:
    async def main() -> None:
        s, gpu, _ = _setup("a", gpu_pressure_check_s=0.01)
        s.start()
        await run_job(s, "a", Level.interactive, ["x"])
        _neighbour_leaves_free(gpu, 0)
        pressure = s.internals_for_tests().pressure
        await until(lambda: pressure.active and not gpu.allocations, "the watch yielded")
        assert pressure.others_mib == gpu.other_used_mib
        await s.close(1.0)

    asyncio.run(main())


def test_simulated_keep_alive_zero_unloads_after_use_and_forever_keeps() -> None:
    async def main() -> None:
        s, gpu, _ = _setup("ab", gpu_idle_ttl_s=0.001)
        a = await s.load("a", keep_alive_s=0.0)
        b = await s.load("b", keep_alive_s=float("inf"))
        assert a.loaded and b.loaded
        s.internals_for_tests().expire_idle()  # "a" has not been used yet: kept for its first unit
        assert _gpu_models(s) == ["a", "b"]
        await run_job(s, "a", Level.interactive, ["a1"])
        await run_job(s, "b", Level.interactive, ["b1"])
        await until(lambda: "a" not in gpu.allocations, "a unloaded after its use")
        s.internals_for_tests().expire_idle()  # the lane TTL has long passed; "b" is kept forever
        assert _gpu_models(s) == ["b"]
        assert [e.model for e in s.loaded()] == ["b"]
        # the status page shows the same
        assert render_status(s.snapshot())["loaded"] == [asdict(e) for e in s.loaded()]
        assert s.loaded()[0].keep_alive_s == -1 and s.loaded()[0].expires_at is None

    asyncio.run(main())
