"""A gateway to test against: `LiveServer` runs the app in this process (uvicorn in a thread: the
test can reach into `gateway` and `app.state`); `GatewayProcess` runs `gateway serve` in a process
of its own (signals, exit status, its memory, its log), the same class the benchmarks and
scripts/soak.py use."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import cast

from gateway.app import create_app
from gateway.bench.server import GatewayProcess, free_port
from gateway.config import Settings
from gateway.http_server import uvicorn_config
from gateway.runtime import Runtime
from gateway.server import Server

__all__ = ["REPO", "GatewayProcess", "LiveServer", "free_port"]

REPO = Path(__file__).resolve().parents[2]


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
