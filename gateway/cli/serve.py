"""`gateway serve`: the runtime, the HTTP app and the Wyoming listener (gateway/server.py), under
a server that drains on the first SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import os
import signal
import sys
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..config import Settings

log = logging.getLogger("gateway.cli")


def add_parser(sub: Any) -> None:
    s = sub.add_parser("serve", help="run the HTTP server")
    s.add_argument("--host", help="bind address (default: GATEWAY_SERVER__HOST)")
    s.add_argument("--port", type=int, help="port (default: GATEWAY_SERVER__PORT)")


def bind_address(args: argparse.Namespace, settings: Settings) -> tuple[str, int]:
    """Where `gateway serve` listens: a flag given on the command line, else the setting (so an
    image or pod that passes no flags is moved by GATEWAY_SERVER__HOST/PORT alone)."""
    return args.host or settings.server.host, args.port or settings.server.port


def run(args: argparse.Namespace, settings: Settings) -> int:
    from ..app import create_app
    from ..http_server import raise_fd_limit, uvicorn_config
    from ..server import Server

    raise_fd_limit(settings)
    app = create_app(settings)
    gw = app.state.gateway
    grace = settings.server.shutdown_grace_s

    class DrainingServer(Server):
        """The first SIGTERM/SIGINT drains before uvicorn stops listening: readiness turns false
        at once (/ready answers 503 to the probe), queued and new work get 503, running units
        finish within shutdown_grace_s; then uvicorn shuts down as usual. A second signal skips
        the rest of the drain. Pod budget: terminationGracePeriodSeconds >= preStop sleep +
        shutdown_grace_s + ~10 s (k8s/base: 5 + 25 + 10 = 40)."""

        draining = False

        async def serve(self, sockets: Any = None) -> None:
            self.loop = asyncio.get_running_loop()
            await super().serve(sockets)

        def handle_exit(self, sig: int, frame: Any) -> None:
            if not hasattr(self, "loop") or self.should_exit:
                super().handle_exit(sig, frame)  # uvicorn's own: a SIGINT now forces the exit
            elif self.draining:
                self.should_exit = True  # a second signal: stop draining, shut down now
            else:
                # Not recorded for uvicorn to re-raise after shutdown: a drained server exits 0.
                self.draining = True
                self.loop.call_soon_threadsafe(self.start_drain, sig)

        def start_drain(self, sig: int) -> None:
            self.drain_task = self.loop.create_task(self.drain(sig))  # keep a reference

        async def drain(self, sig: int) -> None:
            log.info(
                "%s: draining; not ready, running work may finish within %g s",
                signal.Signals(sig).name,
                grace,
            )
            t0 = time.monotonic()
            try:
                await gw.scheduler.close(grace)
            finally:
                # uvicorn's own wait for open connections gets what is left of the grace period
                # (at least 1 s to write the last responses), so the total stays ~grace.
                left = grace - (time.monotonic() - t0)
                self.config.timeout_graceful_shutdown = max(1, math.ceil(left))
                self.should_exit = True

    host, port = bind_address(args, settings)
    config = uvicorn_config(
        app,
        settings,
        host,
        port,
        timeout_graceful_shutdown=int(grace) + 1,
    )
    try:
        DrainingServer(config).run()
    except KeyboardInterrupt:  # SIGINT re-raised after a clean shutdown, as uvicorn.run ignores
        pass
    if gw.scheduler.left_running:
        # A unit still running past the grace is native code (a CTranslate2 decode, an ONNX run)
        # on a daemon thread: interpreter teardown frees the runtime under it and the process
        # dies of SIGSEGV (exit 139). Everything worth keeping is written; skip the teardown.
        log.warning("exiting with work still running past shutdown_grace_s; it is abandoned")
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    return 0
