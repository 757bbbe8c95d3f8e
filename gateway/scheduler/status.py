"""The JSON of /v1/scheduler: a view of a `Snapshot` (it reads nothing else of the scheduler)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from .snapshot import ModelFacts, Snapshot


def render(snap: Snapshot) -> dict[str, Any]:
    gpu_lane = {
        "present": snap.gpu_present,
        "slots": snap.slots["gpu"],
        "busy": snap.busy["gpu"],
        "reason": snap.gpu_reason,
    }
    cpu_lane = {
        "slots": snap.slots["cpu"],
        "busy": snap.busy["cpu"],
        "background_slots": snap.slots["cpu-bg"],
        "background_busy": snap.busy["cpu-bg"],
        "cores": snap.cores,
    }
    return {
        "policy": snap.policy,
        "closing": snap.closing,
        "lanes": {"gpu": gpu_lane, "cpu": cpu_lane},
        "queues": {
            level: {**asdict(q), "by_model": dict(q.by_model)} for level, q in snap.queues.items()
        },
        "models": {m: _model(f) for m, f in snap.models.items()},
        "instances": [dict(i) for i in snap.instances],
        "loaded": [asdict(e) for e in snap.loaded],  # what GET /api/ps lists
        "gpu_pressure": dict(snap.gpu_pressure),
        "fallbacks": [
            {"model": m, "reason": r, "count": c} for (m, r), c in sorted(snap.fallbacks.items())
        ],
        "gpu": None
        if snap.gpu is None
        else {
            **snap.gpu.__dict__,
            "committed_budget_mib": snap.committed_budget_mib,
            "pending_load_mib": snap.pending_load_mib,
            "reserve_mib": snap.reserve_mib,
        },
        "activity": dict(snap.activity),
    }


def _model(f: ModelFacts) -> dict[str, Any]:
    return {
        "placement": f.placement,
        "gpu_budget_mib": f.gpu_budget_mib,
        "gpu_runtime": {"usable": f.gpu_usable, "detail": f.gpu_detail},
        "gpu_broken": f.gpu_broken,
        "gpu_retry_in_s": f.gpu_retry_in_s,
        "preload_error": f.preload_error,
        "variants": dict(f.variants),
        "gpu_variant_ok": f.gpu_variant_ok,
        "over_budget": f.over_budget,
        "keep_alive_s": _seconds(f.keep_alive_s),
        "batch_limit": f.batch_limit,
    }


def _seconds(value: float | None) -> float | None:
    """JSON has no infinity: forever is shown as -1, as in Ollama's keep_alive."""
    return -1 if value == float("inf") else value
