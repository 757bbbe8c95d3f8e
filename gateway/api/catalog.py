"""Model and voice listings. Open WebUI calls the /v1/audio/* listings without a key, so they
never require one; /v1/models is open too (Open WebUI's later fallback)."""

from __future__ import annotations

import time

from fastapi import APIRouter, Query

from ..errors import ModelLookupError
from ..tasks import speech as speech_task
from .deps import GatewayDep
from .errors import APIError

router = APIRouter(tags=["catalog"])
_CREATED = int(time.time())


def _entry(model_id: str) -> dict:
    return {"id": model_id, "object": "model", "created": _CREATED, "owned_by": "gateway"}


def _ids(gw: GatewayDep) -> list[str]:
    ids = []
    for task in ("speech", "transcription"):
        available = gw.available(task)
        if available:
            ids += gw.aliases(task) + available
    return ids


@router.get("/v1/models")
async def list_models(gw: GatewayDep) -> dict:
    return {"object": "list", "data": [_entry(m) for m in _ids(gw)]}


@router.get("/v1/models/{model_id:path}", responses={404: {"description": "Unknown model"}})
async def get_model(model_id: str, gw: GatewayDep) -> dict:
    if model_id not in _ids(gw):
        raise APIError(
            404, f"model {model_id!r} does not exist", param="model", code="model_not_found"
        )
    return _entry(model_id)


@router.get("/v1/audio/models")
async def audio_models(gw: GatewayDep) -> dict:
    """Speech models, in the shape Open WebUI's admin page expects."""
    speech = gw.available("speech")
    ids = (gw.aliases("speech") + speech) if speech else []
    return {"models": [{"id": m} for m in ids]}


@router.get("/v1/audio/voices", responses={404: {"description": "Unknown model"}})
async def audio_voices(
    gw: GatewayDep, model: str | None = Query(None, description="Speech model; default: tts-1")
) -> dict:
    try:
        voices = speech_task.voices(gw, model)
    except ModelLookupError:
        raise APIError(
            404, f"speech model {model!r} is not available", param="model", code="model_not_found"
        ) from None
    return {"voices": voices}
