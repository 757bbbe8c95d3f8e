"""The FastAPI application: routers, error handlers, middleware; its lifespan starts and stops
the runtime and the Realtime front door (a WebSocket route of this app). It opens no other
listener: `gateway serve` adds the Wyoming one (gateway/server.py)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from . import __version__
from .api import catalog, errors, ops, ps, realtime, speech, transcriptions
from .api.guard import KeyGuard, open_paths
from .api.status_page import router as status_router
from .config import Settings
from .middleware import GatewayMiddleware
from .realtime import Realtime
from .runtime import Runtime, assemble_defaults

log = logging.getLogger(__name__)


@asynccontextmanager
async def running(app: FastAPI) -> AsyncIterator[None]:
    """The app's runtime and Realtime door, started; on leaving, sessions end (their turns leave
    the queues), then running work drains with the scheduler. The app's lifespan, and the core
    of what `gateway serve` runs (server.serving)."""
    gw: Runtime = app.state.gateway
    settings = gw.settings
    await gw.start()
    live = Realtime(gw, gw.traffic, settings.realtime) if settings.realtime.enabled else None
    app.state.realtime = live
    try:
        yield
    finally:
        if live is not None:
            await live.stop()
        await gw.stop()


def create_app(settings: Settings | None = None, runtime: Runtime | None = None) -> FastAPI:
    if runtime is None:
        settings = settings or Settings()
        runtime = Runtime(settings, pull_problems=assemble_defaults(settings))
    gw = runtime
    settings = gw.settings

    app = FastAPI(
        title="GPU-sharing audio gateway",
        version=__version__,
        description="OpenAI-compatible speech (Kokoro) and transcription (Faster-Whisper) that "
        "share one GPU through a priority scheduler. Send `Authorization: Bearer <key>` when "
        "keys are configured; the listing routes and probes never need one.",
        lifespan=running,
    )
    app.state.gateway = gw
    app.state.realtime = None  # the realtime front door, while the app runs
    app.state.api_keys = [k.encode() for k in settings.api_keys()]
    app.state.open_paths = open_paths(settings.server.open_paths)
    errors.install(app)
    for router in (speech.router, transcriptions.router, catalog.router, ops.router, ps.router,
                   realtime.router):  # fmt: skip
        app.include_router(router)
    app.include_router(status_router)  # GET /status, the live status page
    # innermost of the three: a 401 still gets CORS headers and is counted with the others
    app.add_middleware(KeyGuard, keys=app.state.api_keys, paths=app.state.open_paths)
    origins = settings.server.cors_origins
    if origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=origins,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=[
                "Authorization",
                "Content-Type",
                "X-Priority",
                "X-Queue-Timeout",
                "X-Request-ID",
            ],
            # a browser client may read which language the gateway chose for a transcript
            expose_headers=["X-Detected-Language", "X-Language-Probability"],
        )
    app.add_middleware(
        GatewayMiddleware,
        registry=gw.metrics_registry,
        traffic=gw.traffic,
        upload_limit=int(settings.server.max_upload_mb * 1024 * 1024),
        json_limit=1 << 20,
        body_read_timeout_s=settings.server.body_read_timeout_s,
        body_timeout_s=settings.server.body_timeout_s,
    )
    return app
