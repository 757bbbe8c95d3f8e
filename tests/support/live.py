"""A gateway to test against in this process: `LiveServer` runs the app under uvicorn in a thread
(the test can reach into `gateway` and `app.state`). A gateway in a process of its own (signals,
exit status, its memory, its log) is `process.GatewayProcess`."""

from __future__ import annotations

import threading
import time
from typing import cast

from gateway.app import create_app
from gateway.config import Settings
from gateway.http_server import uvicorn_config
from gateway.runtime import Runtime
from gateway.server import Server

from .process import free_port

__all__ = ["LiveServer"]


class LiveServer:
    def __init__(self, settings: Settings) -> None:
        self.app = create_app(settings)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        # what `gateway serve` runs: the runtime, Wyoming and HTTP with its connection bounds
        config = uvicorn_config(self.app, settings, "127.0.0.1", self.port)
        self.server = Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("gateway did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=60)

    @property
    def gateway(self) -> Runtime:
        return cast(Runtime, self.app.state.gateway)

    @property
    def wyoming_port(self) -> int:
        return int(self.app.state.wyoming.port)
