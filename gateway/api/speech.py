"""POST /v1/audio/speech: OpenAI text-to-speech, on Kokoro.

Everything that can be the caller's fault (model, voice, text, speed, format) is checked before
the first byte; with `stream: true` the first work unit also runs before the response starts, so
a full queue or a timeout is still a clean 429/503.
"""

from __future__ import annotations

import asyncio
import base64
import json
import unicodedata
from collections.abc import AsyncIterator
from typing import Annotated, Literal

import numpy as np
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from ..audio.encode import FORMATS, StreamEncoder, encode_audio
from ..engines.kokoro import KokoroEngine, NothingToSpeak, VoiceError
from ..errors import APIError, bad_request
from ..scheduler import Job, Level
from .deps import GatewayDep, priority_level, queue_timeout, require_key, until_disconnect

router = APIRouter(prefix="/v1/audio", tags=["speech"], dependencies=[Depends(require_key)])

SpeechFormat = Literal["mp3", "opus", "aac", "flac", "wav", "pcm"]
ERRORS: dict[int | str, dict] = {
    400: {"description": "Invalid request (OpenAI error shape)"},
    401: {"description": "Missing or invalid API key"},
    404: {"description": "Unknown model"},
    429: {"description": "Queue full; see Retry-After"},
    503: {"description": "Queue timeout, shutting down or model unavailable"},
}


class SpeechRequest(BaseModel):
    # strict: JSON types as documented (no "1.0" for a number, no 0 for a boolean)
    model_config = ConfigDict(extra="ignore", strict=True)

    model: str = Field(..., min_length=1, description="`tts-1`, `tts-1-hd`, `kokoro` or a model id.",
                       examples=["tts-1"])
    input: str = Field(..., description="Text to speak.", examples=["Hello."])
    voice: str = Field(
        ..., min_length=1, examples=["alloy"],
        description="An OpenAI voice name, an installed voice id, or a mix `a+b` / `a(2)+b(1)`.",
    )  # fmt: skip
    response_format: SpeechFormat = "mp3"
    speed: float = Field(1.0, ge=0.25, le=4.0, allow_inf_nan=False)
    stream: bool = Field(False, description="Send each sentence's audio as soon as it is ready.")
    stream_format: Literal["audio", "sse"] = "audio"
    lang: str | None = Field(
        None, max_length=16, description="Phonemizer language (e.g. `en-us`); default: from text."
    )
    instructions: str | None = Field(None, description="Accepted for compatibility; ignored.")
    normalize: bool = Field(
        True, description="Extension: read Markdown, emoji, URLs and (in English) numbers, dates "
        "and units as a person would; `false` speaks the text as given.",
    )  # fmt: skip


def clean_text(text: str) -> str:
    """Drop control and format characters (keep newlines for Markdown, tabs as spaces)."""
    out = []
    for ch in text.replace("\r\n", "\n"):
        cat = unicodedata.category(ch)
        if ch == "\n":
            out.append(ch)
        elif ch in "\t\r":
            out.append(" ")
        elif cat[0] != "C":
            out.append(ch)
    return "".join(out).strip()


@router.post(
    "/speech",
    responses={
        **ERRORS,
        200: {"content": {f.media_type: {} for f in FORMATS.values()} | {"text/event-stream": {}},
              "description": "Audio in the requested format"},
    },  # fmt: skip
    response_class=Response,
)
async def create_speech(
    body: SpeechRequest,
    request: Request,
    gw: GatewayDep,
    level: Annotated[Level | None, Depends(priority_level)] = None,
    timeout_s: Annotated[float | None, Depends(queue_timeout)] = None,
) -> Response:
    try:
        model = gw.resolve(body.model, "speech")
    except KeyError:
        raise APIError(404, f"model {body.model!r} does not exist; speech models: "
                       f"{', '.join(gw.aliases('speech') + gw.available('speech'))}",
                       param="model", code="model_not_found") from None  # fmt: skip
    except LookupError:
        raise APIError(503, f"model {body.model!r} is not available on this server; run "
                       "`gateway models pull`", "server_error", "model",
                       "model_unavailable") from None  # fmt: skip
    limit = gw.settings.server.max_input_chars
    if len(body.input) > limit:
        raise bad_request(f"input is {len(body.input)} characters; the limit is {limit}",
                          "input", "string_above_max_length")  # fmt: skip
    text = clean_text(body.input)
    if not text:
        raise bad_request("input is empty", "input", "empty_input")
    engine: KokoroEngine = gw.models[model].engine
    try:
        units = await asyncio.to_thread(engine.plan, text, body.voice, body.speed, body.lang,
                                      normalize=body.normalize)  # fmt: skip
    except VoiceError as exc:
        raise bad_request(str(exc), "voice", "invalid_voice") from None
    except NothingToSpeak as exc:
        if body.lang and exc.__cause__ is not None:  # the phonemizer refused the given language
            raise bad_request(str(exc), "lang", "invalid_lang") from None
        raise bad_request(str(exc), "input", "nothing_to_speak") from None
    fmt = body.response_format
    media = "text/event-stream" if body.stream and body.stream_format == "sse" else (
        FORMATS[fmt].media_type
    )
    async with gw.scheduler.job(model, level or Level.interactive, timeout_s) as job:
        if not body.stream:
            audio = await until_disconnect(request, _synthesize(job, units))
            data = await asyncio.to_thread(encode_audio, audio, fmt, engine.sample_rate)
            return Response(data, media_type=media, headers=_headers(job, model))
        first = await until_disconnect(request, job.run(units[0]))
        encoder = StreamEncoder(fmt, engine.sample_rate)
        chunks = _stream(job, units[1:], first, encoder)
        if body.stream_format == "sse":
            chunks = _sse(chunks)
        return StreamingResponse(chunks, media_type=media, headers=_headers(job, model))


async def _synthesize(job: Job, units: list) -> np.ndarray:
    parts = [await job.run(unit) for unit in units]
    return np.concatenate(parts) if parts else np.zeros(0, np.float32)


async def _stream(
    job: Job, rest: list, first: np.ndarray, encoder: StreamEncoder
) -> AsyncIterator[bytes]:
    data = encoder.encode(first)
    if data:
        yield data
    for unit in rest:  # a client that goes away cancels this generator and the queued unit
        data = encoder.encode(await job.run(unit))
        if data:
            yield data
    tail = encoder.finish()
    if tail:
        yield tail


async def _sse(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    async for chunk in chunks:
        event = {"type": "speech.audio.delta", "audio": base64.b64encode(chunk).decode()}
        yield f"data: {json.dumps(event)}\n\n".encode()
    done = {"type": "speech.audio.done", "usage": None}
    yield f"data: {json.dumps(done)}\n\n".encode()


def _headers(job: Job, model: str) -> dict[str, str]:
    return {"X-Model": model, "X-Priority": job.level.name}
