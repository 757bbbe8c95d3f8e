"""The queue's clocks: each queued unit expires at its deadline (`queue_timeout`), and a unit put
back after a failed run (a split or shrunk batch, a retry on the CPU) waits again.

The deadline bounds the time a unit spends waiting in the queue, so it stops while the unit
runs: a unit put back keeps the wait it had left when it started, not a deadline that its run
used up (which would expire it at once, a unit that never had its fair chance). A unit whose
caller went away while it ran is not put back: nobody would read its result.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable

from .queue import Level, QueueTimeout, Unit, UnitQueue
from .status import QueueGauges


class Waiting:
    def __init__(
        self, queue: UnitQueue, gauges: QueueGauges, retry_after: Callable[[Level], int]
    ) -> None:
        self.queue = queue
        self.gauges = gauges
        self.retry_after = retry_after

    def push(self, unit: Unit) -> None:
        """Into the queue, expiring at its deadline."""
        if math.isfinite(unit.deadline):  # a partial decode never expires (speculation.py)
            unit.timer = asyncio.get_running_loop().call_at(unit.deadline, self.expire, unit)
        self.queue.push(unit)
        self.gauges.depth(unit)

    def take(self, unit: Unit) -> None:
        """Out of the queue (to start, or to fail): its expiry is off."""
        self.queue.remove(unit)
        if unit.timer:
            unit.timer.cancel()
        self.gauges.depth(unit)

    def fail(self, unit: Unit, exc: Exception) -> None:
        self.take(unit)
        if not unit.future.done():
            unit.future.set_exception(exc)

    def expire(self, unit: Unit) -> None:
        if unit in self.queue:
            level = unit.job.level
            self.gauges.rejected(level, "queue_timeout")
            self.fail(
                unit,
                QueueTimeout(
                    f"waited {unit.job.timeout_s:g} s in the {level.name} queue",
                    retry_after=self.retry_after(level),
                ),
            )

    def cancel(self, unit: Unit) -> None:
        """The caller went away: drop the unit if it has not started; a running one finishes
        but is never put back."""
        if unit in self.queue:
            self.queue.remove(unit)
            if unit.timer:
                unit.timer.cancel()
            self.gauges.cancelled(unit)  # depth, and the cancelled count
            unit.future.cancel()
        else:
            unit.abandoned = True

    def requeue(self, unit: Unit) -> None:
        """Back to the queue after a failed run, with its seq (the front of its level) and the
        wait it had left when it started; a unit whose caller went away is dropped instead."""
        if unit.abandoned or unit.future.done():
            unit.future.cancel()
            return
        now = asyncio.get_running_loop().time()
        unit.deadline += now - unit.started
        unit.enqueued = now
        self.push(unit)
