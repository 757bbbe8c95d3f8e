"""Model control, in Ollama's shape: `GET /api/ps`, `POST /api/ps/{model}` (load now),
`DELETE /api/ps/{model}` (unload now). Behind the API keys: a caller could otherwise make the
gateway drop its models or fill the GPU."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Body, Depends
from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, StrictStr

from ..tasks import models as models_task
from .deps import GatewayDep, require_key

router = APIRouter(tags=["model control"], dependencies=[Depends(require_key)])
_KEY: dict[int | str, dict[str, str]] = {401: {"description": "Missing or invalid API key"}}
_MODEL: dict[int | str, dict[str, str]] = {
    **_KEY,
    404: {"description": "Unknown model"},
    503: {"description": "Model not available here, or set to the GPU only and it cannot go"},
}
_LOAD: dict[int | str, dict[str, str]] = {
    **_MODEL,
    400: {"description": "Invalid lane or keep_alive (OpenAI error shape)"},
}


class LoadRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    lane: Literal["gpu", "cpu"] | None = Field(
        None, description="`cpu` loads on the CPU; otherwise placement decides (GPU if it can)."
    )
    keep_alive: StrictStr | StrictInt | StrictFloat | None = Field(
        None,
        description='How long the model stays loaded after use: a duration ("5m", "1h"), '
        "seconds, -1 (forever) or 0 (unload after its next use). Default: the model's setting.",
    )


@router.get("/api/ps", responses=_KEY)
async def list_loaded(gw: GatewayDep) -> dict:
    """Loaded models: lane, GPU memory held and budget, idle since, expires at, pinned, units
    run; and the GPU pressure from other processes."""
    return models_task.ps(gw)


@router.post("/api/ps/{model}", responses=_LOAD)
async def load(
    model: str,
    gw: GatewayDep,
    req: LoadRequest | None = Body(None),  # noqa: B008
) -> dict:
    """Load a model now; answered once it is loaded, with `reason` saying why it is on the CPU
    when it could not go to the GPU (`gpu_pressure`, `not_admitted`, `no_gpu`...)."""
    req = req or LoadRequest()
    return await models_task.load(gw, model, req.lane, req.keep_alive)


@router.delete("/api/ps/{model}", responses=_MODEL)
async def unload(model: str, gw: GatewayDep) -> dict:
    """Unload a model now: a unit in flight finishes first; queued work loads it again."""
    return await models_task.unload(gw, model)
