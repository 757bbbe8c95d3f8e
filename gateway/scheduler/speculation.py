"""Speculative work: the partial decodes of a live turn, scheduled after interactive units.

A live transcription re-decodes its turn's growing audio every interval (tasks/live.py). Those
partial decodes are worth running only while they are fresh, so they are their own kind of work:

- A `Speculation` (one per live turn) holds at most one queued partial. A newer one replaces it
  (the older is dropped, never run: outcome `replaced`), and a partial asked for while the
  turn's previous one still runs is not queued at all (`skipped`): its successor will carry
  more audio. Closing the speculation (the turn ended, the session left) drops the queued one
  (`stale`). Partials that started are counted `run`.
- Queued partials sit in the scheduler's one queue, ordered after every interactive unit (and
  every batch unit that aging promoted), before batch units not yet promoted (queue.py): batch
  keeps the share its aging guarantees it against interactive work. They never take the last
  free runner of an instance and never age, so an interactive unit waits at most for the one
  unit already running. They count in no level's queue depth, admission or timeout.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from .metrics import SchedulerMetrics
from .queue import Job, ShuttingDown, Unit, UnitQueue


class Speculation:
    """One live turn's partial decodes: `run` one, `close` when the turn is over."""

    def __init__(
        self,
        job: Job,
        queue: UnitQueue,
        dispatch: Callable[[], None],
        take: Callable[[Unit], None],
        closing: Callable[[], bool],
        metrics: SchedulerMetrics | None,
    ) -> None:
        self.job = job
        self._queue, self._dispatch, self._take, self._closing = queue, dispatch, take, closing
        self.metrics = metrics
        self.current: Unit | None = None  # the latest partial, queued or running
        self.closed = False
        self.counts = {"run": 0, "replaced": 0, "skipped": 0, "stale": 0}

    def _count(self, outcome: str) -> None:
        self.counts[outcome] += 1
        if self.metrics:
            self.metrics.partials.labels(self.job.model, outcome).inc()

    def _drop(self, outcome: str) -> None:
        """Take the queued partial back, never run (its waiter gets None)."""
        unit = self.current
        if unit is not None and unit in self._queue:
            self._take(unit)
            unit.abandoned = True
            unit.future.set_result(None)
            self._count(outcome)

    @property
    def busy(self) -> bool:
        """A partial of this turn is running now."""
        unit = self.current
        return unit is not None and unit not in self._queue and not unit.future.done()

    async def run(self, payload: Any) -> Any | None:
        """Queue one partial decode and wait for its result; None where it never ran (replaced by
        a newer one, skipped, or its turn ended). A failed decode raises as a unit would."""
        if self.closed:
            return None
        if self._closing():
            raise ShuttingDown("the server is shutting down", retry_after=5)
        if self.busy:
            self._count("skipped")
            return None
        self._drop("replaced")
        loop = asyncio.get_running_loop()
        unit = Unit(job=self.job, payload=payload, enqueued=loop.time(),
                    future=loop.create_future(), speculative=True)  # fmt: skip
        self.current = unit
        self._queue.push(unit)  # no deadline: a stale one is dropped, it never times out
        self._dispatch()
        try:
            return await asyncio.shield(unit.future)
        except asyncio.CancelledError:
            if unit in self._queue:
                self._drop("stale")
            unit.abandoned = True  # a running one finishes; nobody reads it
            raise
        finally:
            if unit.started:
                self._count("run")

    def close(self) -> None:
        """The turn is over: its queued partial is dropped, never run; later runs do nothing."""
        self.closed = True
        self._drop("stale")
