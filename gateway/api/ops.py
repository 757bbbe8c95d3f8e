"""Operations: liveness, readiness, scheduler status, Prometheus metrics."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from .deps import GatewayDep, bearer, require_key

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
    return {**gw.scheduler.status(), "diagnosis": gw.diagnosis, "traffic": gw.traffic.summary()}


def metrics_key(
    request: Request,
    gw: GatewayDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)] = None,
) -> None:
    """The API key check on /metrics, only with `server.metrics_require_key`."""
    if gw.settings.server.metrics_require_key:
        require_key(request, credentials)


@router.get(
    "/metrics",
    dependencies=[Depends(metrics_key)],
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
