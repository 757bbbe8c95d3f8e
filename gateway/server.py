"""What `gateway serve` runs: the runtime, the HTTP app and the Wyoming listener, composed. The
app's own lifespan starts the runtime alone (in-process clients, `TestClient`); here the listeners
are added around it, and shut down in order: Wyoming stops taking connections, Realtime sessions
end, running work drains with the scheduler, then the Wyoming connections close. The tests' live
server runs this same composition."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import cast

import uvicorn
from fastapi import FastAPI

from .app import running
from .runtime import Runtime
from .wyoming import WyomingListener


@asynccontextmanager
async def serving(app: FastAPI) -> AsyncIterator[WyomingListener | None]:
    """The app's runtime and Realtime door started, then the Wyoming listener (when enabled);
    yields the listener (its `port` is the bound one)."""
    gw: Runtime = app.state.gateway
    enabled = gw.settings.wyoming.enabled
    wyoming = WyomingListener(gw, gw.traffic) if enabled else None
    try:
        async with running(app):
            try:
                if wyoming is not None:
                    await wyoming.start()
                app.state.wyoming = wyoming
                yield wyoming
            finally:
                if wyoming is not None:
                    wyoming.close()  # no new connections; running replies drain with the scheduler
    finally:
        if wyoming is not None:
            await wyoming.stop()


class Server(uvicorn.Server):
    """uvicorn serving the HTTP app inside `serving`: the config must turn uvicorn's lifespan off,
    or the app's lifespan would start the runtime a second time."""

    def __init__(self, config: uvicorn.Config) -> None:
        if config.lifespan != "off":
            raise ValueError("serve the app with lifespan='off': `serving` starts the runtime")
        super().__init__(config)

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        # create_app's app, or a wrapper that serves it and carries its `state` (a profiler's)
        app = cast(FastAPI, self.config.app)
        async with serving(app):
            await super().serve(sockets)
