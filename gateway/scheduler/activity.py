"""Recent activity of the scheduler, for the status page: what ran, where, and why it fell back.

Two bounded ring buffers, touched only from the event loop (like the rest of the scheduler):
units that finished (engine, lane, audio seconds, whether it was the first unit of its request)
and fallbacks (engine, reason, level, when). `summary()` turns them into per-minute rates per
engine and the most recent fallbacks, newest first. Memory stays constant however long it runs.
"""

from __future__ import annotations

import time
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .metrics import SchedulerMetrics
from .pool import Instance
from .queue import Unit, UnitRecord


@dataclass(frozen=True)
class Finished:
    at: float  # wall clock (time.time), so the page can show it as a local time
    model: str
    lane: str
    audio_s: float
    first: bool  # the first unit of its request: counts one request


@dataclass(frozen=True)
class Fallback:
    at: float
    model: str
    reason: str
    level: str


class Activity:
    def __init__(
        self,
        max_units: int = 4096,
        max_fallbacks: int = 50,
        window_s: float = 60.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.window_s = window_s
        self.clock = clock
        self.units: deque[Finished] = deque(maxlen=max_units)
        self.fallbacks: deque[Fallback] = deque(maxlen=max_fallbacks)

    def finished(self, model: str, lane: str, audio_s: float, first: bool) -> None:
        self.units.append(Finished(self.clock(), model, lane, max(0.0, audio_s), first))

    def fallback(self, model: str, reason: str, level: str) -> None:
        self.fallbacks.append(Fallback(self.clock(), model, reason, level))

    def summary(self, engines: list[str], recent: int = 10) -> dict[str, Any]:
        """Requests, units and audio seconds per engine over the last `window_s` seconds, scaled
        to a minute, and the last `recent` fallbacks (newest first)."""
        now = self.clock()
        since = now - self.window_s
        per: dict[str, dict[str, float]] = {
            m: {"requests": 0, "units": 0, "audio_s": 0.0} for m in engines
        }
        for u in self.units:
            if u.at < since:
                continue
            row = per.setdefault(u.model, {"requests": 0, "units": 0, "audio_s": 0.0})
            row["units"] += 1
            row["requests"] += 1 if u.first else 0
            row["audio_s"] += u.audio_s
        scale = 60.0 / self.window_s
        return {
            "window_s": self.window_s,
            "per_minute": {
                m: {
                    "requests": round(r["requests"] * scale, 2),
                    "units": round(r["units"] * scale, 2),
                    "audio_s": round(r["audio_s"] * scale, 2),
                }
                for m, r in per.items()
            },
            "recent_fallbacks": [
                {
                    "at": round(f.at, 3),
                    "age_s": round(now - f.at, 1),
                    "model": f.model,
                    "reason": f.reason,
                    "level": f.level,
                }
                for f in list(self.fallbacks)[-recent:][::-1]
            ],
        }


class Ledger:
    """Per-unit bookkeeping when a unit starts and finishes: fallback counts, the unit's record
    for its job, recent activity and the Prometheus metrics."""

    def __init__(self, metrics: SchedulerMetrics | None) -> None:
        self.metrics = metrics
        self.fallback_counts: dict[tuple[str, str], int] = defaultdict(int)
        self.activity = Activity()

    def started(self, unit: Unit, reason: str | None) -> None:
        if reason:
            self.fallback_counts[(unit.model, reason)] += 1
            self.activity.fallback(unit.model, reason, unit.job.level.name)
            if self.metrics:
                self.metrics.fallbacks.labels(unit.model, reason).inc()
        if self.metrics:
            wait_s = unit.started - unit.enqueued
            level = "speculative" if unit.speculative else unit.job.level.name
            self.metrics.queue_wait.labels(level, unit.model).observe(wait_s)

    def finished(self, unit: Unit, inst: Instance, result: Any, run_s: float) -> None:
        wait_s = unit.started - unit.enqueued
        first = not unit.job.records  # the request's first unit to finish: counts one request
        unit.job.records.append(
            UnitRecord(inst.lane, unit.reason, wait_s, run_s, unit.enqueued, unit.started)
        )
        audio_s = inst.audio_seconds(unit.payload, result)
        self.activity.finished(unit.model, inst.lane, audio_s, first)
        if self.metrics:
            self.metrics.run_time.labels(unit.model, inst.lane).observe(run_s)
            if audio_s > 0:
                self.metrics.rtf.labels(unit.model, inst.lane).observe(run_s / audio_s)
