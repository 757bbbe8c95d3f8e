"""Model control, in the shape of Ollama's `/api/ps`: list the loaded instances, load a model now
(with a keep-alive of its own), unload it now.

An unload takes the instance out of the pool at once and unloads it on its own worker thread, so
a unit in flight there finishes first; queued work then loads the model again as usual.
"""

from __future__ import annotations

import asyncio
import math
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ..engines.base import Lane
from . import lifecycle

if TYPE_CHECKING:
    from .core import Scheduler
    from .pool import Instance, InstancePool


def _wall(monotonic: float) -> str:
    """A monotonic time as an ISO 8601 UTC time."""
    at = time.time() - (time.monotonic() - monotonic)
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="seconds")


def entry(pool: InstancePool, inst: Instance) -> dict[str, Any]:
    keep = pool.keep_alive(inst)
    gpu = inst.lane == Lane.gpu
    expires = None
    if not inst.busy and keep != math.inf and not (keep == 0 and not inst.units_run):
        expires = _wall(inst.last_used + keep)
    return {
        "model": inst.model,
        "lane": str(inst.lane),
        "background": inst.background,
        "busy": inst.busy,
        "gpu_used_mib": inst.gpu_used_mib if gpu else None,
        "gpu_budget_mib": inst.budget_mib if gpu else None,
        "idle_since": None if inst.busy else _wall(inst.last_used),
        "expires_at": expires,  # None: kept until unloaded (pinned, -1) or running
        "keep_alive_s": -1 if keep == math.inf else keep,
        "pinned": inst.pinned,
        "units_run": inst.units_run,
        "load_s": None if inst.load_s is None else round(inst.load_s, 3),
    }


def ps(pool: InstancePool) -> list[dict[str, Any]]:
    return [entry(pool, i) for i in pool if i.loaded]


async def load(
    s: Scheduler, model: str, lane: Lane | None, keep_alive_s: float | None
) -> tuple[Instance, str | None]:
    """Load a model now on the lane placement picks (or the one asked for); returns the loaded
    instance and why it is on the CPU when the GPU was possible but not used."""
    force = "requested" if lane == Lane.cpu else None
    before = {id(i) for i in s.pool if i.loaded}
    inst, reason = await lifecycle.load(s.placer, model, force)
    if s.metrics and id(inst) not in before:
        s.metrics.loads.labels(model, inst.lane).inc()
    if keep_alive_s is not None:
        inst.keep_alive_s = keep_alive_s
    inst.last_used = time.monotonic()  # its keep-alive starts now
    if lane == Lane.cpu:
        reason = None
    s.expire_idle()  # keep_alive 0 on a model already used: unloaded now, as in Ollama
    return inst, reason


async def unload(s: Scheduler, model: str) -> list[Instance]:
    """Unload every instance of a model; answered once their memory is given back (a unit in
    flight finishes first)."""
    gone = [i for i in s.pool if i.model == model]
    waits = [asyncio.wrap_future(s.pool.unload(i, "requested")) for i in gone]
    if waits:
        await asyncio.gather(*waits, return_exceptions=True)
    return [i for i in gone if i.load_s is not None]
