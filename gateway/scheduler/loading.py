"""Loading and unloading models outside a unit: start-up preloading, and model control (Ollama's
`/api/ps`: load now with a keep-alive of its own, unload now).

A load falls back as a unit would: a failed GPU load marks the model `gpu_broken` (retried after
`gpu_retry_cooldown_s`) and loads it on the CPU instead. A preload that fails never fails
start-up: a model that cannot load at all is logged, shown in status (`preload_error`) and loaded
on first use. An unload takes the instance out of the pool at once and unloads it on its own
worker thread, so a unit in flight there finishes first; queued work then loads the model again.
"""

from __future__ import annotations

import asyncio
import logging
import time

from ..config import Placement
from ..engines.base import Lane
from .metrics import SchedulerMetrics
from .placement import Placer
from .pool import Instance, InstancePool

log = logging.getLogger(__name__)


async def preload(placer: Placer, metrics: SchedulerMetrics, models: list[str]) -> None:
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


async def load_now(
    placer: Placer,
    metrics: SchedulerMetrics,
    model: str,
    lane: Lane | None,
    keep_alive_s: float | None,
) -> tuple[Instance, str | None]:
    """A load request: on the lane placement picks (or the CPU when asked); its keep-alive
    starts now. Returns the instance and why it is on the CPU when the GPU was possible."""
    force = "requested" if lane == Lane.cpu else None
    before = {id(i) for i in placer.pool if i.loaded}
    inst, reason = await load(placer, model, force)
    if id(inst) not in before:
        metrics.loads.labels(model, inst.lane).inc()
    if keep_alive_s is not None:
        inst.keep_alive_s = keep_alive_s
    inst.last_used = time.monotonic()
    return inst, None if lane == Lane.cpu else reason


async def unload(pool: InstancePool, model: str) -> list[Instance]:
    """Unload every instance of a model; answered once their memory is given back (a unit in
    flight finishes first). Returns the instances that had loaded."""
    gone = [i for i in pool if i.model == model]
    waits = [asyncio.wrap_future(pool.unload(i, "requested")) for i in gone]
    if waits:
        await asyncio.gather(*waits, return_exceptions=True)
    return [i for i in gone if i.load_s is not None]
