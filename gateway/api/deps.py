"""Shared request plumbing: the gateway object, API keys, priority and queue-timeout headers."""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
from collections.abc import AsyncIterator, Awaitable
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Header, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from ..runtime import Runtime
from ..scheduler import Level
from .errors import APIError, as_api_error, bad_request, error_body

T = TypeVar("T")
log = logging.getLogger(__name__)

# Error responses every model-backed route documents.
ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "Invalid request (OpenAI error shape)"},
    401: {"description": "Missing or invalid API key"},
    404: {"description": "Unknown model"},
    429: {"description": "Queue full; see Retry-After"},
    503: {"description": "Queue timeout, shutting down or model unavailable"},
}


def sse(event: dict[str, Any]) -> bytes:
    """One server-sent event carrying a JSON object."""
    return f"data: {json.dumps(event, ensure_ascii=False)}\n\n".encode()


async def sse_or_error(events: AsyncIterator[bytes], path: str) -> AsyncIterator[bytes]:
    """Pass the events through; a failure after the 200 was sent (a queue timeout, shutting
    down, an engine crash) ends the stream with an `error` event carrying the OpenAI error
    object, `{"type": "error", "error": {message, type, param, code}}`, instead of cutting the
    body with no word. A client that went away (cancellation) is not an error to report."""
    try:
        async for event in events:
            yield event
    except Exception as exc:
        err = as_api_error(exc)
        if err.status >= 500 and err.code == "internal_error":
            log.error(
                "stream failed after the response started", exc_info=exc, extra={"path": path}
            )
        else:
            log.warning("stream ended with %s: %s", err.code, err.message, extra={"path": path})
        yield sse({"type": "error", **error_body(err.message, err.type, err.param, err.code)})


def get_gateway(request: Request) -> Runtime:
    gw: Runtime = request.app.state.gateway
    return gw


GatewayDep = Annotated[Runtime, Depends(get_gateway)]


# Declares the bearer scheme in the OpenAPI document; the check itself is `require_key`.
bearer = HTTPBearer(
    auto_error=False,
    description="`Authorization: Bearer <key>`; only enforced "
    "when keys are configured (GATEWAY_SERVER__API_KEYS or ..._API_KEYS_FILE).",
)


def require_key(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)] = None,
) -> None:
    """Bearer key check; a no-op when no keys are configured or the path is open (see
    api/guard.py, which checks the same before the body is read). Constant-time, never logged."""
    if request.scope["path"] in request.app.state.open_paths:
        return
    token = credentials.credentials if credentials is not None else None
    if not key_matches(request.app.state.api_keys, token):
        raise invalid_key()


def key_matches(keys: list[bytes], token: str | None) -> bool:
    """True when no keys are configured or `token` is one of them (constant time)."""
    if not keys:
        return True
    given = (token or "").strip().encode()
    # Compare against every key so the time taken does not reveal which one matched.
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(given, key)
    return matched


def invalid_key() -> APIError:
    return APIError(
        401,
        "missing or invalid API key; send `Authorization: Bearer <key>`",
        "invalid_request_error",
        None,
        "invalid_api_key",
        {"WWW-Authenticate": "Bearer"},
    )


def priority_level(
    x_priority: Annotated[
        str | None,
        Header(
            description="Priority level: `interactive` or `batch` (default depends on the job)."
        ),
    ] = None,
) -> Level | None:
    if x_priority is None or not x_priority.strip():
        return None
    try:
        return Level[x_priority.strip().lower()]
    except KeyError:
        raise bad_request(
            "X-Priority must be `interactive` or `batch`", "X-Priority", "invalid_priority"
        ) from None


def queue_timeout(
    x_queue_timeout: Annotated[
        str | None,
        Header(
            description="Seconds a unit may wait in the queue; lowers, never raises, the default."
        ),
    ] = None,
) -> float | None:
    if x_queue_timeout is None or not x_queue_timeout.strip():
        return None
    try:
        value = float(x_queue_timeout)
    except ValueError:
        value = float("nan")
    if not (value > 0 and value < 1e9):
        raise bad_request(
            "X-Queue-Timeout must be a positive number of seconds",
            "X-Queue-Timeout",
            "invalid_timeout",
        )
    return value


async def until_disconnect(request: Request, work: Awaitable[T]) -> T:
    """Run `work`, cancelling it (and so its queued units) if the client goes away first."""
    task = asyncio.ensure_future(work)

    async def watch() -> None:
        while not await request.is_disconnected():
            await asyncio.sleep(0.2)

    watcher = asyncio.ensure_future(watch())
    try:
        done, _ = await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
        if task not in done:
            task.cancel()
            raise APIError(
                499, "client closed the request", "invalid_request_error", None, "client_closed"
            )
        return task.result()
    finally:
        watcher.cancel()
        if not task.done():
            task.cancel()
