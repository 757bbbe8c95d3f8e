"""What the scheduler shows of itself: one typed, read-only `Snapshot`, taken on the event loop.

The status JSON, `/api/ps`, `/ready`, `gateway doctor` and tests read this; none of them reads
the scheduler's parts. Views render it (status.py); the scheduler core builds it (`take`) and
imports no view.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ..config import SchedulerSettings
from ..engines.base import Engine, Lane, lane_files
from .activity import Ledger
from .batching import Batcher
from .gpu import GpuInfo, GpuMonitor
from .placement import Placer
from .policy import ModelPolicy, queue_policy
from .pool import Instance, InstancePool
from .pressure import PressureWatch
from .queue import Level, UnitQueue


@dataclass(frozen=True)
class LoadedModel:
    """One loaded instance, as Ollama's `/api/ps` lists a model."""

    model: str
    lane: str
    background: bool
    busy: bool
    gpu_used_mib: int | None
    gpu_budget_mib: int | None
    idle_since: str | None
    expires_at: str | None  # None: kept until unloaded (pinned, -1) or running
    keep_alive_s: float  # -1: forever
    pinned: bool
    units_run: int
    load_s: float | None


@dataclass(frozen=True)
class LoadResult:
    """What a load request did: the instance it loaded, whether it is still loaded (keep_alive 0
    on a model already used unloads it at once, as in Ollama), and why it is on the CPU when the
    GPU was possible but not used."""

    entry: LoadedModel
    loaded: bool
    reason: str | None


@dataclass(frozen=True)
class QueueFacts:
    depth: int
    by_model: Mapping[str, int]
    max_queue_size: int
    default_timeout_s: float


@dataclass(frozen=True)
class ModelFacts:
    placement: str
    gpu_budget_mib: int
    gpu_usable: bool  # the engine's runtime can use the GPU here
    gpu_detail: str
    gpu_broken: str | None  # the error of a failed GPU load, while it keeps the model off
    gpu_retry_in_s: float | None
    preload_error: str | None
    variants: Mapping[str, str | None]  # lane -> the file it loads
    gpu_variant_ok: bool
    over_budget: bool
    keep_alive_s: float | None
    batch_limit: int  # units per GPU call now (max_batch, lowered by latency and OOM caps)
    where: str  # where it runs and which file each lane loads, in words (`gateway doctor`)


@dataclass(frozen=True)
class Snapshot:
    policy: str
    closing: bool
    gpu_present: bool
    gpu_reason: str
    slots: Mapping[str, int]  # lane slot -> slots: "gpu", "cpu", "cpu-bg"
    busy: Mapping[str, int]  # the same slots, in use
    cores: int
    queues: Mapping[str, QueueFacts]  # level name -> its queue
    models: Mapping[str, ModelFacts]
    instances: tuple[Mapping[str, Any], ...]  # every instance, loaded or not
    loaded: tuple[LoadedModel, ...]
    gpu_pressure: Mapping[str, Any]
    fallbacks: Mapping[tuple[str, str], int]  # (model, reason) -> units
    gpu: GpuInfo | None  # the device, where there is one
    committed_budget_mib: int
    pending_load_mib: int
    reserve_mib: int
    activity: Mapping[str, Any]  # per-minute rates and recent fallbacks


def _wall(monotonic: float) -> str:
    """A monotonic time as an ISO 8601 UTC time."""
    at = time.time() - (time.monotonic() - monotonic)
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="seconds")


def loaded_model(pool: InstancePool, inst: Instance) -> LoadedModel:
    keep = pool.keep_alive(inst)
    gpu = inst.lane == Lane.gpu
    expires = None
    if not inst.busy and keep != math.inf and not (keep == 0 and not inst.units_run):
        expires = _wall(inst.last_used + keep)
    return LoadedModel(
        model=inst.model,
        lane=str(inst.lane),
        background=inst.background,
        busy=inst.busy,
        gpu_used_mib=inst.gpu_used_mib if gpu else None,
        gpu_budget_mib=inst.budget_mib if gpu else None,
        idle_since=None if inst.busy else _wall(inst.last_used),
        expires_at=expires,
        keep_alive_s=-1 if keep == math.inf else keep,
        pinned=inst.pinned,
        units_run=inst.units_run,
        load_s=None if inst.load_s is None else round(inst.load_s, 3),
    )


def loaded(pool: InstancePool) -> tuple[LoadedModel, ...]:
    return tuple(loaded_model(pool, i) for i in pool if i.loaded)


@dataclass(frozen=True)
class Parts:
    """The scheduler's parts a snapshot reads (handed over by the core, which owns them)."""

    settings: SchedulerSettings
    gpu: GpuMonitor | None
    engines: Mapping[str, Engine]
    policies: Mapping[str, ModelPolicy]
    placer: Placer
    pool: InstancePool
    queue: UnitQueue
    busy: Mapping[str, int]
    ledger: Ledger
    pressure: PressureWatch
    batcher: Batcher


def _model(p: Parts, model: str, ok: bool, why: str) -> ModelFacts:
    policy, placer = p.policies[model], p.placer
    variants = lane_files(p.engines[model])
    return ModelFacts(
        placement=policy.placement.value,
        gpu_budget_mib=policy.gpu_budget_mib,
        gpu_usable=ok,
        gpu_detail=why,
        gpu_broken=placer.gpu_broken.get(model),
        gpu_retry_in_s=placer.retry_in_s(model),
        preload_error=placer.preload_errors.get(model),
        variants=variants,
        gpu_variant_ok=model not in placer.no_variant | placer.variant_pending,
        over_budget=model in placer.over_budget,
        keep_alive_s=policy.keep_alive_s,
        batch_limit=p.batcher.limit(model),
        where=placer.explain(model, variants),
    )


def take(p: Parts, closing: bool) -> Snapshot:
    cfg, placer, queue = p.settings, p.placer, p.queue
    present = placer.gpu_present
    dev = p.gpu.device(cfg.gpu_device) if p.gpu and present else None
    return Snapshot(
        policy=cfg.policy,
        closing=closing,
        gpu_present=present,
        gpu_reason=placer.gpu_reason,
        slots={
            "gpu": cfg.gpu_slots if present else 0,
            "cpu": cfg.cpu_slots,
            "cpu-bg": cfg.cpu_background_slots,
        },
        busy=dict(p.busy),
        cores=cfg.cores,
        queues={
            lvl.name: QueueFacts(
                depth=queue.count(lvl),
                by_model={m: queue.count(lvl, m) for m in p.engines},
                max_queue_size=queue_policy(cfg, lvl).max_queue_size,
                default_timeout_s=queue_policy(cfg, lvl).default_timeout_s,
            )
            for lvl in Level
        },
        models={m: _model(p, m, ok, why) for m, (ok, why) in placer.engine_gpu.items()},
        instances=tuple(i.describe() for i in p.pool),
        loaded=loaded(p.pool),
        gpu_pressure=p.pressure.describe(),
        fallbacks=dict(p.ledger.fallback_counts),
        gpu=dev,
        committed_budget_mib=p.pool.gpu_committed(),
        pending_load_mib=p.pool.gpu_pending(),
        reserve_mib=cfg.gpu_reserve_mib,
        activity=p.ledger.activity.summary(list(p.engines)),
    )
