"""ASGI middleware: request ids, access log and HTTP metrics, and body-size limits enforced while
the body streams in, before it is all read into memory."""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import error_body
from .logs import request_id
from .traffic import LATENCY_BUCKETS, Traffic

log = logging.getLogger("gateway.access")
_RID = re.compile(r"^[A-Za-z0-9._\-]{1,128}$")


class BodyTooLarge(Exception):
    pass


class GatewayMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        registry: CollectorRegistry,
        upload_limit: int,
        json_limit: int,
        traffic: Traffic | None = None,
    ) -> None:
        self.app = app
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
        started = False
        status = 500
        t0 = time.perf_counter()

        rejected = False  # a 413 went out from here: whatever the app answers is dropped

        async def send_wrapper(message: Message) -> None:
            nonlocal started, status
            if rejected:
                return
            if message["type"] == "http.response.start":
                started = True
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", rid.encode())]
            await send(message)

        seen = 0

        async def receive_wrapper() -> Message:
            nonlocal seen, rejected
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    # Answer 413 now: FastAPI turns any error raised while it reads a body into
                    # its own 400, so the exception alone would not reach the caller as a 413.
                    if not started:
                        await self._too_large(send_wrapper, limit)
                        rejected = True
                    raise BodyTooLarge()
            return message

        try:
            length = headers.get(b"content-length")
            if length is not None and length.isdigit() and int(length) > limit:
                await self._too_large(send_wrapper, limit)
            else:
                await self.app(scope, receive_wrapper, send_wrapper)
        except BodyTooLarge:
            if not started:
                await self._too_large(send_wrapper, limit)
        finally:
            route = _route(scope)
            elapsed = time.perf_counter() - t0
            self.requests.labels(route, scope["method"], str(status)).inc()
            self.latency.labels(route, scope["method"]).observe(elapsed)
            if self.traffic is not None and route not in ("/health", "/metrics", "/ready"):
                self.traffic.record("http", route, status, elapsed)
            if route not in ("/health", "/metrics", "/ready"):
                log.info(
                    "request",
                    extra={
                        "method": scope["method"],
                        "route": route,
                        "status": status,
                        "duration_s": round(elapsed, 4),
                    },
                )
            request_id.reset(token)

    async def _too_large(self, send: Send, limit: int) -> None:
        body = json.dumps(
            error_body(
                f"request body is larger than {limit} bytes",
                "invalid_request_error",
                None,
                "request_too_large",
            )
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
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
