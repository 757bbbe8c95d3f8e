"""What the scheduler shows: the JSON of /v1/scheduler and the Prometheus glue of queue events."""

from __future__ import annotations

from typing import Any, Protocol

from ..config import QueuePolicy, SchedulerSettings
from ..engines.base import Engine, lane_files
from . import control
from .activity import Ledger
from .gpu import GpuMonitor
from .metrics import SchedulerMetrics
from .placement import Placer
from .policy import ModelPolicy
from .pool import InstancePool
from .pressure import PressureWatch
from .queue import Level, Unit, UnitQueue


class SchedulerView(Protocol):
    """The parts of the scheduler its status reads (the scheduler imports this module)."""

    settings: SchedulerSettings
    engines: dict[str, Engine]
    policies: dict[str, ModelPolicy]
    gpu: GpuMonitor | None
    placer: Placer
    pool: InstancePool
    queue: UnitQueue
    busy: dict[str, int]
    closing: bool
    ledger: Ledger
    pressure: PressureWatch


def queue_policy(settings: SchedulerSettings, level: Level) -> QueuePolicy:
    return settings.interactive if level == Level.interactive else settings.batch


class QueueGauges:
    """Queue depth and rejections, per level and model."""

    def __init__(self, queue: UnitQueue, metrics: SchedulerMetrics | None) -> None:
        self.queue = queue
        self.metrics = metrics

    def depth(self, unit: Unit) -> None:
        if self.metrics:
            level = unit.job.level
            self.metrics.queue_depth.labels(level.name, unit.model).set(
                self.queue.count(level, unit.model)
            )

    def rejected(self, level: Level, reason: str) -> None:
        if self.metrics:
            self.metrics.rejections.labels(level.name, reason).inc()

    def cancelled(self, unit: Unit) -> None:
        """A queued unit taken back because its caller went away."""
        self.depth(unit)
        if self.metrics:
            self.metrics.cancelled.labels(unit.job.level.name, unit.model).inc()


def status(s: SchedulerView) -> dict[str, Any]:
    cfg = s.settings
    placer, pool, queue = s.placer, s.pool, s.queue
    dev = s.gpu.device(cfg.gpu_device) if s.gpu and placer.gpu_present else None
    gpu_lane = {
        "present": placer.gpu_present,
        "slots": cfg.gpu_slots if placer.gpu_present else 0,
        "busy": s.busy["gpu"],
        "reason": placer.gpu_reason,
    }
    cpu_lane = {
        "slots": cfg.cpu_slots,
        "busy": s.busy["cpu"],
        "background_slots": cfg.cpu_background_slots,
        "background_busy": s.busy["cpu-bg"],
        "cores": cfg.cores,
    }
    return {
        "policy": cfg.policy,
        "closing": s.closing,
        "lanes": {"gpu": gpu_lane, "cpu": cpu_lane},
        "queues": {
            lvl.name: {
                "depth": queue.count(lvl),
                "by_model": {m: queue.count(lvl, m) for m in s.engines},
                "max_queue_size": queue_policy(cfg, lvl).max_queue_size,
                "default_timeout_s": queue_policy(cfg, lvl).default_timeout_s,
            }
            for lvl in Level
        },
        "models": {
            m: {
                "placement": s.policies[m].placement.value,
                "gpu_budget_mib": s.policies[m].gpu_budget_mib,
                "gpu_runtime": {"usable": ok, "detail": why},
                "gpu_broken": placer.gpu_broken.get(m),
                "gpu_retry_in_s": placer.retry_in_s(m),
                "preload_error": placer.preload_errors.get(m),
                "variants": lane_files(s.engines[m]),
                "gpu_variant_ok": m not in placer.no_variant | placer.variant_pending,
                "over_budget": m in placer.over_budget,
                "keep_alive_s": _seconds(s.policies[m].keep_alive_s),
            }
            for m, (ok, why) in placer.engine_gpu.items()
        },
        "instances": [i.describe() for i in pool],
        "loaded": control.ps(pool),  # what GET /api/ps lists
        "gpu_pressure": s.pressure.describe(),
        "fallbacks": [
            {"model": m, "reason": r, "count": c}
            for (m, r), c in sorted(s.ledger.fallback_counts.items())
        ],
        "gpu": None
        if dev is None
        else {
            **dev.__dict__,
            "committed_budget_mib": pool.gpu_committed(),
            "pending_load_mib": pool.gpu_pending(),
            "reserve_mib": cfg.gpu_reserve_mib,
        },
        "activity": s.ledger.activity.summary(list(s.engines)),
    }


def _seconds(value: float | None) -> float | None:
    """JSON has no infinity: forever is shown as -1, as in Ollama's keep_alive."""
    return -1 if value == float("inf") else value
