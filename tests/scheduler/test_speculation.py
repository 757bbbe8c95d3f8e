"""The scheduler's speculative work (live transcription's partial decodes), on simulated engines
whose units take known time: what runs, in which order, and what is dropped unrun."""

from __future__ import annotations

import asyncio
from typing import Any

from gateway.scheduler import Level, Scheduler, render_status

from ..support.wait import until
from .test_scheduler import TimedEngine, make, run_job, with_niced


def _partials(s: Scheduler, outcome: str) -> float:
    """The Prometheus count of partial decodes with this outcome."""
    return sum(x.value for m in s.internals_for_tests().metrics.partials.collect() for x in m.samples
               if x.name.endswith("_total") and x.labels["outcome"] == outcome)  # fmt: skip


def test_a_replaced_or_stale_partial_is_dropped_never_run() -> None:
    async def main() -> tuple[list[Any], list[Any], Scheduler]:
        eng = TimedEngine("m", 0.01)
        eng.hold("running")
        s = make({"m": eng}, cpu_background_slots=0)
        running = asyncio.create_task(run_job(s, "m", Level.interactive, ["running"]))
        await until(lambda: eng.started == ["running"], "running started")
        spec = s.speculation("m")
        older = asyncio.create_task(spec.run("p1"))
        await until(lambda: len(s.internals_for_tests().queue) == 1, "p1 queued")
        newer = asyncio.create_task(spec.run("p2"))  # the next tick's: p1 is stale now
        await until(lambda: older.done(), "p1 replaced")
        spec.close()  # the turn ended before a slot came: p2 is stale too
        results = [await older, await newer]
        eng.release()
        await running
        await until(lambda: not any(s.snapshot().busy.values()), "every slot free")
        return [p for p, _ in eng.log], results, s

    log, results, s = asyncio.run(main())
    assert log == ["running"]
    assert results == [None, None]
    assert len(s.internals_for_tests().queue) == 0
    assert (_partials(s, "replaced"), _partials(s, "stale"), _partials(s, "run")) == (1, 1, 0)


def test_a_session_that_leaves_takes_its_queued_partial_back() -> None:
    async def main() -> tuple[list[Any], int, Scheduler]:
        eng = TimedEngine("m", 0.01)
        eng.hold("running")
        s = make({"m": eng}, cpu_background_slots=0)
        running = asyncio.create_task(run_job(s, "m", Level.interactive, ["running"]))
        await until(lambda: eng.started == ["running"], "running started")
        partial = asyncio.create_task(s.speculation("m").run("partial"))
        await until(lambda: len(s.internals_for_tests().queue) == 1, "partial queued")
        partial.cancel()  # what a session's end does to its live turn
        await asyncio.gather(partial, return_exceptions=True)
        left = len(s.internals_for_tests().queue)
        eng.release()
        await running
        await until(lambda: not any(s.snapshot().busy.values()), "every slot free")
        return [p for p, _ in eng.log], left, s

    log, left, s = asyncio.run(main())
    assert left == 0
    assert log == ["running"]
    assert _partials(s, "stale") == 1


def test_partials_run_after_interactive_units_and_before_unpromoted_batch() -> None:
    """One slot: a partial runs; then a batch unit, another session's partial and an interactive
    unit queue, in that order. The interactive unit waits only for the running partial."""

    async def main() -> tuple[list[Any], list[Any], Scheduler]:
        eng = TimedEngine("m", 0.01)
        eng.hold("p1")
        s = make({"m": eng}, cpu_background_slots=0, aging_s=100)
        one, two = s.speculation("m"), s.speculation("m")
        first = asyncio.create_task(one.run("p1"))
        await until(lambda: eng.started == ["p1"], "p1 running")
        skipped = await one.run("p1-again")  # its turn's previous partial still runs
        batch = asyncio.create_task(run_job(s, "m", Level.batch, ["b1"]))
        await until(lambda: s.queued() == 1, "b1 queued")
        second = asyncio.create_task(two.run("p2"))
        await until(lambda: len(s.internals_for_tests().queue) == 2, "p2 queued")
        inter = asyncio.create_task(run_job(s, "m", Level.interactive, ["i1"]))
        await until(lambda: len(s.internals_for_tests().queue) == 3, "i1 queued")
        eng.release()
        results = await asyncio.gather(first, second, batch, inter)
        return [p for p, _ in eng.log], [skipped, *results], s

    log, results, s = asyncio.run(main())
    assert log == ["p1", "i1", "p2", "b1"]
    assert results == [None, "p1", "p2", ["b1"], ["i1"]]
    assert (_partials(s, "run"), _partials(s, "skipped")) == (2, 1)


def test_a_niced_engine_runs_partials_on_the_background_slot_beside_interactive_work() -> None:
    async def main() -> dict[str, Any]:
        fg, stt, s = with_niced("stt")
        fg.hold("speech")
        stt.hold("partial")
        speech = asyncio.create_task(run_job(s, "fg", Level.interactive, ["speech"]))
        await until(lambda: fg.started == ["speech"], "speech running")
        partial = asyncio.create_task(s.speculation("stt").run("partial"))
        queue = s.internals_for_tests().queue
        await until(lambda: stt.started == ["partial"] or len(queue) == 1, "partial placed")
        lane: dict[str, Any] = render_status(s.snapshot())["lanes"]["cpu"]
        fg.release()
        stt.release()
        await asyncio.gather(speech, partial)
        return lane

    lane = asyncio.run(main())
    assert lane["busy"] == 1 and lane["background_busy"] == 1  # beside it, not queued behind
