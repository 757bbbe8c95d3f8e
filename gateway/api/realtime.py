"""WebSocket /v1/realtime: OpenAI's Realtime API for transcription sessions. Checks the API key
before the upgrade (401, as HTTP answers), accepts, and hands the socket to the realtime front
door (gateway/realtime/), which speaks the protocol."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, WebSocket
from starlette.websockets import WebSocketState

from ..realtime import PATH, Realtime
from .deps import invalid_key, key_matches
from .errors import error_response

router = APIRouter()
KEY_PROTOCOL = "openai-insecure-api-key."  # browsers cannot set headers: the key rides here
BETA_PROTOCOL = "openai-beta.realtime-v1"  # and so does the beta protocol's announcement


def offered_key(ws: WebSocket) -> str | None:
    """The key from `Authorization: Bearer`, else from the subprotocol browsers send."""
    auth = ws.headers.get("authorization", "")
    scheme, _, token = auth.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    for proto in ws.scope.get("subprotocols") or []:
        if proto.startswith(KEY_PROTOCOL):
            return proto[len(KEY_PROTOCOL) :]
    return None


class Socket:
    """Starlette's WebSocket as a realtime session's channel."""

    def __init__(self, ws: WebSocket) -> None:
        self.ws = ws

    async def receive(self) -> str | bytes | None:
        message = await self.ws.receive()
        if message["type"] == "websocket.disconnect":
            return None
        text = message.get("text")
        return text if text is not None else (message.get("bytes") or b"")

    async def send(self, data: dict[str, Any]) -> None:
        try:
            await self.ws.send_text(json.dumps(data, ensure_ascii=False))
        except Exception as exc:  # the client left: uvicorn and Starlette each have their own
            raise ConnectionError(str(exc)) from exc

    async def close(self, code: int, reason: str) -> None:
        if self.ws.application_state == WebSocketState.CONNECTED:
            await self.ws.close(code, reason)


@router.websocket(PATH)
async def realtime(ws: WebSocket) -> None:
    door: Realtime | None = ws.app.state.realtime
    if door is None or not key_matches(ws.app.state.api_keys, offered_key(ws)):
        refusal = invalid_key()
        if door is None:
            refusal.status, refusal.message, refusal.code = 404, "realtime is disabled", "not_found"
            refusal.headers = None
        if "websocket.http.response" in ws.scope.get("extensions", {}):
            await ws.send_denial_response(error_response(refusal))
        else:
            await ws.close(1008, refusal.message)
        return
    offered = ws.scope.get("subprotocols") or []
    await ws.accept(subprotocol="realtime" if "realtime" in offered else None)
    beta = "realtime=v1" in ws.headers.get("openai-beta", "") or BETA_PROTOCOL in offered
    await door.serve(Socket(ws), ws.query_params.get("intent"), beta)
