"""The API key checked at the door, from the request head alone: a request without a valid key
gets its 401 before a byte of its body is read (FastAPI would read and parse a whole upload
before a route's dependencies run). Open without a key: the probes and the model and voice lists
(Open WebUI reads them without one) and the paths `server.open_paths` names. The routes keep
their own `require_key` too, which declares the scheme in the OpenAPI document."""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from .deps import invalid_key, key_matches
from .errors import error_response

ALWAYS_OPEN = frozenset({"/health", "/ready", "/v1/models", "/v1/audio/models",
                         "/v1/audio/voices"})  # fmt: skip
OPEN_PREFIXES = ("/v1/models/",)  # one model, as Open WebUI may ask


def open_paths(setting: list[str]) -> frozenset[str]:
    """The paths that need no key: those always open and those the setting adds."""
    return ALWAYS_OPEN | {p.rstrip("/") or "/" for p in setting}


def is_open(paths: frozenset[str], path: str) -> bool:
    return path in paths or path.startswith(OPEN_PREFIXES)


def bearer_token(scope: Scope) -> str | None:
    """The token of `Authorization: Bearer <token>` (the scheme in any case), else None."""
    for name, value in scope.get("headers") or []:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            return token if scheme.lower() == "bearer" and token.strip() else None
    return None


class KeyGuard:
    def __init__(self, app: ASGIApp, keys: list[bytes], paths: frozenset[str]) -> None:
        self.app, self.keys, self.paths = app, keys, paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # A WebSocket's key is checked by its route (browsers send it as a subprotocol); a CORS
        # preflight carries no key by design.
        if (
            scope["type"] != "http"
            or not self.keys
            or scope["method"] == "OPTIONS"
            or is_open(self.paths, scope["path"])
            or key_matches(self.keys, bearer_token(scope))
        ):
            await self.app(scope, receive, send)
            return
        await error_response(invalid_key())(scope, receive, send)
