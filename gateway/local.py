"""`gateway speak` and `gateway transcribe`: the same app, called in-process (no socket), so the
CLI validates, schedules and formats exactly as the HTTP API does."""

from __future__ import annotations

import base64
from typing import Any

import httpx

from .app import create_app
from .audio.subtitles import to_srt, to_vtt, word_cues
from .config import Settings


async def _call(settings: Settings, method: str, path: str, **kwargs: Any) -> httpx.Response:
    settings.server.api_keys, settings.server.api_keys_file = [], None  # local use: no key
    # A local command opens no listener: a server on this machine already holds Wyoming's port.
    settings.wyoming.enabled = False
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://local") as client:
            response = await client.request(method, path, timeout=None, **kwargs)
    if response.status_code != 200:
        try:
            message = response.json()["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = response.text
        raise SystemExit(f"error {response.status_code}: {message}")
    return response


async def speak(
    settings: Settings,
    text: str,
    voice: str,
    fmt: str,
    speed: float,
    model: str,
    lang: str | None,
    captions: str | None = None,
) -> tuple[bytes, str | None]:
    """The audio, and with `captions` ("srt" or "vtt") its captions from the words' timings
    (one synthesis: the JSON form of `timestamps: true`)."""
    body: dict[str, Any] = {
        "model": model, "input": text, "voice": voice, "response_format": fmt, "speed": speed,
    }  # fmt: skip
    if lang:
        body["lang"] = lang
    if captions is None:
        return (await _call(settings, "POST", "/v1/audio/speech", json=body)).content, None
    body["timestamps"] = True
    timed = (await _call(settings, "POST", "/v1/audio/speech", json=body)).json()
    cues = word_cues(timed["words"])
    return base64.b64decode(timed["audio"]), to_srt(cues) if captions == "srt" else to_vtt(cues)


async def transcribe(
    settings: Settings, data: bytes, fmt: str, language: str | None, model: str, translate: bool
) -> str | dict:
    form = {"model": model, "response_format": fmt}
    if language:
        form["language"] = language
    path = "/v1/audio/translations" if translate else "/v1/audio/transcriptions"
    response = await _call(settings, "POST", path, data=form, files={"file": ("audio", data)})
    if response.headers.get("content-type", "").startswith("application/json"):
        return response.json() if fmt == "verbose_json" else response.json()["text"] + "\n"
    return response.text
