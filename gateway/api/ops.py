"""Operations: liveness, readiness, scheduler status, Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ..scheduler import render_status
from .deps import GatewayDep, require_key

router = APIRouter(tags=["operations"])


@router.get("/health")
async def health() -> dict:
    """Liveness: the process answers."""
    return {"status": "ok"}


_NOT_READY = {
    "type": "object",
    "required": ["status"],
    "properties": {"status": {"type": "string", "enum": ["not_ready"]}},
}


@router.get(
    "/ready",
    responses={
        503: {"description": "Not ready", "content": {"application/json": {"schema": _NOT_READY}}}
    },
)
async def ready(gw: GatewayDep) -> JSONResponse:
    """Readiness: default models present, verified and loadable; false while shutting down."""
    ok, detail = gw.ready()
    return JSONResponse({"status": "ready" if ok else "not_ready", **detail}, 200 if ok else 503)


@router.get("/v1/scheduler", dependencies=[Depends(require_key)])
async def scheduler_status(gw: GatewayDep) -> dict:
    """Lanes, slots, queues, budgets, loaded instances, fallbacks and GPU memory."""
    w = gw.settings.whisper
    languages = {
        "default": w.language or None,
        "candidates": w.languages,
        "threshold": w.language_threshold,
        "segments": w.language_segments,
    }
    return {
        **render_status(gw.scheduler.snapshot()),
        "transcription_languages": languages,
        "diagnosis": gw.diagnosis,
        "traffic": gw.traffic.summary(),
    }


@router.get(
    "/metrics",
    dependencies=[Depends(require_key)],
    response_class=Response,
    responses={
        200: {
            "description": "Prometheus text format",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        }
    },
)
async def metrics(gw: GatewayDep) -> Response:
    return Response(generate_latest(gw.metrics_registry), media_type=CONTENT_TYPE_LATEST)
