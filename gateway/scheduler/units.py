"""Jobs, work units, priority levels and the errors a queue policy raises."""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field
from enum import IntEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .core import Scheduler


class Level(IntEnum):
    """Priority levels; a lower value runs first (Triton: priority level 1 is highest)."""

    interactive = 0
    batch = 1


class SchedulerError(Exception):
    status = 503
    code = "unavailable"

    def __init__(self, message: str, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class QueueFull(SchedulerError):
    status = 429
    code = "queue_full"


class QueueTimeout(SchedulerError):
    status = 503
    code = "queue_timeout"


class ShuttingDown(SchedulerError):
    status = 503
    code = "shutting_down"


class NotPlaceable(SchedulerError):
    status = 503
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
    timer: asyncio.TimerHandle | None = None
    lane: str | None = None
    reason: str | None = None
    started: float = 0.0

    @property
    def model(self) -> str:
        return self.job.model


class Job:
    """One API request: a sequence of units run one after another, each scheduled on its own."""

    def __init__(self, scheduler: Scheduler, model: str, level: Level, timeout_s: float) -> None:
        self.scheduler = scheduler
        self.model = model
        self.level = level
        self.timeout_s = timeout_s
        self.records: list[UnitRecord] = []
        self.units_run = 0

    async def run(self, payload: Any) -> Any:
        """Queue one unit and wait for its result; cancelling removes it from the queue."""
        unit = self.scheduler._enqueue(self, payload)
        try:
            return await asyncio.shield(unit.future)
        except asyncio.CancelledError:
            self.scheduler._cancel(unit)
            raise
        finally:
            self.units_run += 1
