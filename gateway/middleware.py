"""ASGI middleware: request ids, access log and HTTP metrics, and body limits enforced while the
body streams in: its size, before it is all read into memory, and its pace (a body that stalls
or takes too long gets 408, so a trickled upload cannot hold a connection for ever)."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
import uuid
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .api.errors import error_body
from .logs import request_id
from .traffic import LATENCY_BUCKETS, Traffic

log = logging.getLogger("gateway.access")
_RID = re.compile(r"^[A-Za-z0-9._\-]{1,128}$")


class BodyTooLarge(Exception):
    pass


class BodyTimeout(Exception):
    pass


class GatewayMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        registry: CollectorRegistry,
        upload_limit: int,
        json_limit: int,
        traffic: Traffic | None = None,
        body_read_timeout_s: float = 30.0,
        body_timeout_s: float = 300.0,
    ) -> None:
        self.app = app
        self.body_read_timeout_s, self.body_timeout_s = body_read_timeout_s, body_timeout_s
        self.traffic = traffic
        self.upload_limit = upload_limit
        self.json_limit = json_limit
        self.requests = Counter(
            "gateway_http_requests_total",
            "HTTP requests by route, method and status.",
            ["route", "method", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "gateway_http_request_duration_seconds",
            "HTTP request latency (to the last byte).",
            ["route", "method"],
            registry=registry,
            buckets=LATENCY_BUCKETS,
        )

    def _limit(self, scope: Scope) -> int:
        headers = dict(scope.get("headers") or [])
        ctype = headers.get(b"content-type", b"").decode("latin-1").lower()
        # multipart overhead on top of the file itself is small; 1 MiB covers the form fields
        return self.upload_limit + (1 << 20) if ctype.startswith("multipart/") else self.json_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        given = headers.get(b"x-request-id", b"").decode("latin-1")
        rid = given if _RID.match(given) else uuid.uuid4().hex
        token = request_id.set(rid)
        limit = self._limit(scope)
        ex = _Exchange(self, receive, send, rid, limit)
        try:
            length = headers.get(b"content-length")
            if length is not None and length.isdigit() and int(length) > limit:
                await self._too_large(ex.send, limit)
            else:
                await self.app(scope, ex.receive, ex.send)
        except BodyTooLarge:
            if not ex.started:
                await self._too_large(ex.send, limit)
        except BodyTimeout:
            log.info("request body timed out", extra={"received_bytes": ex.seen})
        finally:
            self._record(scope, ex.status, time.perf_counter() - ex.t0)
            request_id.reset(token)

    def _record(self, scope: Scope, status: int, elapsed: float) -> None:
        route = _route(scope)
        self.requests.labels(route, scope["method"], str(status)).inc()
        self.latency.labels(route, scope["method"]).observe(elapsed)
        if route in ("/health", "/metrics", "/ready"):
            return  # probes and scrapes: counted, but neither logged nor shown as traffic
        if self.traffic is not None:
            self.traffic.record("http", route, status, elapsed)
        log.info(
            "request",
            extra={
                "method": scope["method"],
                "route": route,
                "status": status,
                "duration_s": round(elapsed, 4),
            },
        )

    async def _too_large(self, send: Send, limit: int) -> None:
        message = f"request body is larger than {limit} bytes"
        await _refuse(send, 413, message, "request_too_large")

    async def _timed_out(self, send: Send) -> None:
        message = (f"request body did not arrive in time (a pause over "
                   f"{self.body_read_timeout_s:g} s, or over {self.body_timeout_s:g} s in all)")  # fmt: skip
        await _refuse(send, 408, message, "request_timeout")


class _Exchange:
    """One request's passage through the middleware: its response status, and its body watched
    as it streams in for size and pace."""

    def __init__(
        self, mw: GatewayMiddleware, receive: Receive, send: Send, rid: str, limit: int
    ) -> None:
        self.mw, self._receive, self._send, self.rid, self.limit = mw, receive, send, rid, limit
        self.t0 = time.perf_counter()
        self.started = False
        self.status = 500
        self.rejected = False  # a 413/408 went out from here: whatever the app answers is dropped
        self.seen = 0
        self.body_done = False  # past the body, receive() waits for a disconnect: no deadline

    async def send(self, message: Message) -> None:
        if self.rejected:
            return
        if message["type"] == "http.response.start":
            self.started = True
            self.status = message["status"]
            message["headers"] = [*message.get("headers", []), (b"x-request-id", self.rid.encode())]
        await self._send(message)

    async def _receive_body(self) -> Message:
        if self.body_done:
            return await self._receive()
        left = self.mw.body_timeout_s - (time.perf_counter() - self.t0)
        try:
            message = await asyncio.wait_for(
                self._receive(), min(self.mw.body_read_timeout_s, left)
            )
        except TimeoutError:
            if not self.started:
                await self.mw._timed_out(self.send)
                self.rejected = True
            raise BodyTimeout() from None
        if message["type"] != "http.request" or not message.get("more_body", False):
            self.body_done = True
        return message

    async def receive(self) -> Message:
        message = await self._receive_body()
        if message["type"] == "http.request":
            self.seen += len(message.get("body", b""))
            if self.seen > self.limit:
                # Answer 413 now: FastAPI turns any error raised while it reads a body into its
                # own 400, so the exception alone would not reach the caller as a 413.
                if not self.started:
                    await self.mw._too_large(self.send, self.limit)
                    self.rejected = True
                raise BodyTooLarge()
        return message


async def _refuse(send: Send, status: int, message: str, code: str) -> None:
    body = json.dumps(error_body(message, "invalid_request_error", None, code)).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _route(scope: Scope) -> str:
    route: Any = scope.get("route")
    path = getattr(route, "path", None)
    return path if path else "unmatched"
