"""Model control (Ollama's /api/ps shape): list loaded models, load one now, unload one now."""

from __future__ import annotations

from typing import Any

from ..errors import InvalidRequest, UnknownModel
from ..runtime import Runtime
from ..scheduler import Lane, control, parse_keep_alive


def resolve(gw: Runtime, name: str) -> str:
    """A model id or alias of any task; raises UnknownModel or ModelUnavailable."""
    for task in ("speech", "transcription"):
        try:
            return gw.resolve(name, task)
        except UnknownModel:
            continue
    raise UnknownModel(name, "model", gw.available("speech") + gw.available("transcription"))


def keep_alive_seconds(value: str | float | None) -> float | None:
    if value is None:
        return None
    try:
        return parse_keep_alive(value)
    except ValueError as exc:
        raise InvalidRequest(str(exc), "keep_alive", "invalid_keep_alive") from None


def ps(gw: Runtime) -> dict[str, Any]:
    s = gw.scheduler
    return {"models": control.ps(s.pool), "gpu_pressure": s.pressure.describe()}


async def load(
    gw: Runtime, name: str, lane: str | None, keep_alive: str | float | None
) -> dict[str, Any]:
    model = resolve(gw, name)
    seconds = keep_alive_seconds(keep_alive)
    s = gw.scheduler
    inst, reason = await control.load(s, model, Lane(lane) if lane else None, seconds)
    return {**control.entry(s.pool, inst), "loaded": inst.loaded, "reason": reason}


async def unload(gw: Runtime, name: str) -> dict[str, Any]:
    model = resolve(gw, name)
    gone = await control.unload(gw.scheduler, model)
    return {"model": model, "unloaded": [str(i.lane) for i in gone]}
