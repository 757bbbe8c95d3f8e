"""Jobs, work units, priority levels, the queue with aging, and the errors a queue policy raises.

The queue knows nothing of lanes or engines; it orders units. A `Job` submits and cancels its
units through the small `Submitter` protocol, which the `Scheduler` implements.
"""

from __future__ import annotations

import asyncio
import itertools
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, ClassVar, Protocol

from ..errors import GatewayError, Kind


class Level(IntEnum):
    """Priority levels; a lower value runs first (Triton: priority level 1 is highest)."""

    interactive = 0
    batch = 1


class SchedulerError(GatewayError):
    """A refusal of the scheduler's; its kind says what a front door answers."""

    kind: ClassVar[Kind] = "unavailable"
    code = "unavailable"

    def __init__(self, message: str, retry_after: int | None = None) -> None:
        super().__init__(message, retry_after=retry_after)


class QueueFull(SchedulerError):
    kind = "rate_limit"
    code = "queue_full"


class QueueTimeout(SchedulerError):
    code = "queue_timeout"


class ShuttingDown(SchedulerError):
    code = "shutting_down"


class NotPlaceable(SchedulerError):
    code = "placement_unavailable"


@dataclass
class UnitRecord:
    """What happened to one unit: for logs, headers and tests."""

    lane: str
    reason: str | None
    queue_wait_s: float
    run_s: float
    enqueued_at: float = 0.0  # event-loop clock, so records of different jobs can be ordered
    started_at: float = 0.0


_seq = itertools.count()


@dataclass(eq=False)
class Unit:
    job: Job
    payload: Any
    enqueued: float
    future: asyncio.Future[Any]
    seq: int = field(default_factory=lambda: next(_seq))
    force_cpu: str | None = None
    retried: bool = False
    solo: bool = False  # never batched again (its batch failed for a reason not the GPU's)
    timer: asyncio.TimerHandle | None = None
    deadline: float = math.inf  # loop time its queue wait expires (stopped while it runs)
    abandoned: bool = False  # its caller went away while it ran: never run again
    lane: str | None = None
    reason: str | None = None
    started: float = 0.0
    speculative: bool = False  # a live turn's partial decode (speculation.py)

    @property
    def model(self) -> str:
        return self.job.model


class Submitter(Protocol):
    """What a job needs from the scheduler: queue a unit, and take back one not yet started."""

    def submit(self, job: Job, payload: Any, dispatch: bool = True) -> Unit: ...

    def cancel(self, unit: Unit) -> None: ...

    def parallel_units(self, model: str) -> int: ...


class Job:
    """One API request: a sequence of units run one after another, each scheduled on its own."""

    def __init__(self, scheduler: Submitter, model: str, level: Level, timeout_s: float) -> None:
        self.scheduler = scheduler
        self.model = model
        self.level = level
        self.timeout_s = timeout_s
        self.records: list[UnitRecord] = []
        self.first_enqueued: float | None = None  # when its first unit was queued (aging)
        self._waiting: set[Unit] = set()

    async def run(self, payload: Any) -> Any:
        """Queue one unit and wait for its result; cancelling removes it from the queue."""
        unit = self.scheduler.submit(self, payload)
        self._waiting.add(unit)
        try:
            return await asyncio.shield(unit.future)
        except asyncio.CancelledError:
            self.scheduler.cancel(unit)
            raise
        finally:
            self._waiting.discard(unit)

    async def run_many(self, payloads: list[Any]) -> list[Any]:
        """Queue several units at once and wait for all; results in order. All are queued
        before any is dispatched, so on a batching lane they can share one call even when a
        slot is free. A failure or cancellation takes back the ones not started."""
        units: list[Unit] = []
        try:
            for i, payload in enumerate(payloads):
                last = i == len(payloads) - 1
                units.append(self.scheduler.submit(self, payload, dispatch=last))
        except BaseException:
            for unit in units:
                self.scheduler.cancel(unit)
            raise
        self._waiting.update(units)
        try:
            return list(await asyncio.gather(*(asyncio.shield(u.future) for u in units)))
        except BaseException:
            for unit in units:
                self.scheduler.cancel(unit)
                # a started one still finishes: its outcome is nobody's to read
                unit.future.add_done_callback(_observe)
            raise
        finally:
            self._waiting.difference_update(units)

    def cancel_queued(self) -> None:
        """Take back every unit of this job that has not started (a running one finishes)."""
        for unit in list(self._waiting):
            self.scheduler.cancel(unit)


def _observe(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


class UnitQueue:
    """Queued units of all levels. Under policy `priority` a unit is ordered by its level, then
    by arrival; under `fifo` by arrival alone.

    Aging counts from the job's first unit, not from each unit: every `aging_s` since the job
    queued its first unit promotes all its later units one level, so a long batch job, once
    promoted, keeps its promotion and competes with interactive units in arrival order. With one
    slot, a promoted unit waits only for the units queued before it (never for later ones), so
    the job runs at least one unit per (interactive units queued + 1) unit times."""

    def __init__(self, priority: bool, aging_s: float) -> None:
        self.priority = priority
        self.aging_s = aging_s
        self._units: list[Unit] = []

    def __contains__(self, unit: Unit) -> bool:
        return unit in self._units

    def __len__(self) -> int:
        return len(self._units)

    def __iter__(self) -> Iterator[Unit]:
        return iter(list(self._units))

    def push(self, unit: Unit) -> None:
        if unit.job.first_enqueued is None:
            unit.job.first_enqueued = unit.enqueued
        self._units.append(unit)

    def remove(self, unit: Unit) -> None:
        self._units.remove(unit)

    def count(self, level: Level | None = None, model: str | None = None) -> int:
        return sum(
            1
            for u in self._units
            if not u.speculative
            and (level is None or u.job.level == level)
            and (model is None or u.model == model)
        )

    def _key(self, now: float) -> Callable[[Unit], Any]:
        """Ranks: interactive (and promoted) units 0, partial decodes 1, batch 2 (a level's rank
        is twice the level); under `fifo`, partials after every other unit."""
        if not self.priority:
            return lambda u: (int(u.speculative), u.seq)
        aging = self.aging_s

        def key(u: Unit) -> tuple[int, int]:
            if u.speculative:  # never ages: a partial waiting long is stale, not urgent
                return (1, u.seq)
            since = u.enqueued if u.job.first_enqueued is None else u.job.first_enqueued
            promoted = int((now - since) // aging)
            return (2 * max(0, int(u.job.level) - promoted), u.seq)

        return key

    def level_now(self, unit: Unit, now: float) -> Level:
        """The unit's level with its job's aging promotions (under `fifo`: interactive, since
        there is one queue and no level is held back). A partial decode counts as batch here:
        it never takes an instance's last free runner."""
        if unit.speculative:
            return Level.batch
        if not self.priority:
            return Level.interactive
        return Level(self._key(now)(unit)[0] // 2)

    def in_order(self, now: float) -> list[Unit]:
        """Units in the order dispatch tries them."""
        return sorted(self._units, key=self._key(now))
