"""Start-up preloading. A preload that fails never fails start-up: a failed GPU load marks the
model `gpu_broken` (retried after `gpu_retry_cooldown_s`) and loads it on the CPU instead; a model
that cannot load at all is logged, shown in status (`preload_error`) and loaded on first use."""

from __future__ import annotations

import asyncio
import logging

from ..config import Placement
from ..engines.base import Lane
from .metrics import SchedulerMetrics
from .placement import Placer
from .pool import Instance

log = logging.getLogger(__name__)


async def preload(placer: Placer, metrics: SchedulerMetrics | None, models: list[str]) -> None:
    for model in models:
        try:
            inst, _ = await load(placer, model)
        except Exception as exc:
            placer.preload_errors[model] = f"{type(exc).__name__}: {exc}"[:300]
            log.error(
                "preload failed; the model loads on first use instead",
                extra={"model": model, "error": str(exc)[:300]},
            )
            continue
        if metrics:
            metrics.loads.labels(model, inst.lane).inc()


async def load(
    placer: Placer, model: str, force_cpu: str | None = None
) -> tuple[Instance, str | None]:
    """Load a model where a unit of it would run now (preloading, or a load request); returns
    the instance and its fallback reason. A failed GPU load falls back to the CPU."""
    first = placer.candidates(model, force_cpu)[0]
    if first.evict is not None:
        inst = placer.admit(model, first.evict)
    else:
        inst = placer.pool.get(model, first.lane)
    try:
        await asyncio.wrap_future(inst.preload())
        return inst, first.reason
    except Exception as exc:
        placer.pool.unload(inst, "load_failed")
        if inst.lane != Lane.gpu or placer.policies[model].placement == Placement.gpu:
            raise
        placer.mark_gpu_broken(model, str(exc))
        log.warning(
            "preload on the GPU failed; falling back to the CPU",
            extra={"model": model, "error": str(exc)[:300]},
        )
    inst = placer.pool.get(model, Lane.cpu)
    try:
        await asyncio.wrap_future(inst.preload())
    except Exception:
        placer.pool.unload(inst, "load_failed")
        raise
    return inst, "gpu_error"
