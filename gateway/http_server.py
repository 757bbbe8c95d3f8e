"""The HTTP listener's connection bounds, which ASGI middleware cannot see: a cap on open
connections and a deadline for each request head. uvicorn's own `limit_concurrency` answers 503
but keeps the socket, so idle connections still use up the process's file descriptors; and its
keep-alive timeout starts only after a first response, so a peer that connects and sends nothing
(or a head one byte at a time) is held for ever. Both are enforced here in a subclass of
uvicorn's HTTP protocol; `gateway serve` and the tests' live server build their config here."""

from __future__ import annotations

import asyncio
import json
import logging
import resource
from typing import Any

import uvicorn
from uvicorn.protocols.http.auto import AutoHTTPProtocol

from .api.errors import error_body
from .config import Settings


def _busy_response() -> bytes:
    body = json.dumps(
        error_body(
            "too many open connections; try again later",
            "server_error",
            None,
            "too_many_connections",
        )
    ).encode()
    head = (
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nretry-after: 1\r\nconnection: close\r\n\r\n"
    )
    return head.encode() + body


BUSY = _busy_response()

# Descriptors beside the connections: model files, thread pools' pipes, the log, the Wyoming
# listener's clients, a margin for what a library opens.
FD_MARGIN = 256
log = logging.getLogger("gateway.http")


def raise_fd_limit(settings: Settings) -> int:
    """Raise the soft limit on open files toward the hard one, so that the connection caps, not
    the descriptor table, are what refuses a client: at a soft limit of 1024 (a common default)
    a thousand idle connections would leave no descriptor for a model file or a new request.
    Returns the soft limit in force; warns when it is still below what the caps need."""
    needed = settings.server.max_connections + settings.wyoming.max_connections + FD_MARGIN
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(hard, needed)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    if soft != resource.RLIM_INFINITY and soft < needed:
        log.warning(
            "open-file limit %d is below what the connection caps need (%d): lower "
            "GATEWAY_SERVER__MAX_CONNECTIONS or raise the limit (ulimit -n)", soft, needed
        )
    return int(soft)


def bounded_protocol(max_connections: int, header_timeout_s: float) -> type[asyncio.Protocol]:
    """uvicorn's HTTP protocol (h11 or httptools, whichever it picks) with the two bounds."""
    base: Any = AutoHTTPProtocol

    class Bounded(base):
        _head_timer: asyncio.TimerHandle | None = None
        _waiting_after: object = None  # the request cycle the timer waits to be followed

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            super().connection_made(transport)
            if len(self.connections) > max_connections:
                # Closed at once, so the descriptor is free again; whoever reads gets the 503.
                transport.write(BUSY)  # type: ignore[attr-defined]
                transport.close()
                return
            self._wait_for_head()

        def _wait_for_head(self) -> None:
            self._stop_waiting()
            self._waiting_after = self.cycle
            self._head_timer = self.loop.call_later(header_timeout_s, self._head_timed_out)

        def _stop_waiting(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _head_timed_out(self) -> None:
            self._head_timer = None
            if not self.transport.is_closing():
                self.transport.close()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            # A new request cycle means the head is complete; an upgrade hands the socket over.
            if self.cycle is not self._waiting_after or self.transport.get_protocol() is not self:
                self._stop_waiting()

        def on_response_complete(self) -> None:
            before = self.cycle
            super().on_response_complete()
            # the next request on this connection gets its own deadline, unless a pipelined one
            # already started inside the call above
            if self.cycle is before and not self.transport.is_closing():
                self._wait_for_head()

        def connection_lost(self, exc: Exception | None) -> None:
            self._stop_waiting()
            super().connection_lost(exc)

    return Bounded


def uvicorn_config(
    app: Any, settings: Settings, host: str, port: int, **extra: Any
) -> uvicorn.Config:
    """The uvicorn config `gateway serve` runs (the tests' live server uses it too), for
    server.Server: uvicorn's lifespan is off, as `server.serving` starts the runtime."""
    server = settings.server
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=None,
        lifespan="off",
        http=bounded_protocol(server.max_connections, server.header_timeout_s),
        # the largest realtime append (base64 audio) fits one WebSocket message, with its JSON
        ws_max_size=max(16 << 20, int(settings.realtime.max_append_mb * (1 << 20)) + (64 << 10)),
        **extra,
    )
