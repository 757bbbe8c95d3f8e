"""Model control, in Ollama's shape: list the loaded models (`ps`), load one now (`load`, with a
keep-alive of its own), unload one now (`unload`). The one home of these operations: the
`/api/ps` routes (api/ps.py) call them, `gateway models ps|load|unload` (remote.py) calls those
routes, and the scheduler carries them out (`Scheduler.loaded/load/unload`)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from ..errors import InvalidRequest, UnknownModel
from ..runtime import Runtime
from ..scheduler import Lane, parse_keep_alive


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
    snap = gw.scheduler.snapshot()
    return {"models": [asdict(m) for m in snap.loaded], "gpu_pressure": dict(snap.gpu_pressure)}


async def load(
    gw: Runtime, name: str, lane: str | None, keep_alive: str | float | None
) -> dict[str, Any]:
    model = resolve(gw, name)
    seconds = keep_alive_seconds(keep_alive)
    done = await gw.scheduler.load(model, Lane(lane) if lane else None, seconds)
    return {**asdict(done.entry), "loaded": done.loaded, "reason": done.reason}


async def unload(gw: Runtime, name: str) -> dict[str, Any]:
    model = resolve(gw, name)
    return {"model": model, "unloaded": await gw.scheduler.unload(model)}
