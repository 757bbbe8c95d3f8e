"""POST /v1/audio/speech: OpenAI text-to-speech, on Kokoro.

Everything that can be the caller's fault (model, voice, text, speed, format) is checked before
the first byte; with `stream: true` the first work unit also runs before the response starts, so
a full queue or a timeout is still a clean 429/503.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from typing import Annotated, Literal

import numpy as np
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from ..audio.encode import FORMATS, StreamEncoder, WholeEncoder
from ..scheduler import Level
from ..tasks import speech
from .deps import (
    ERRORS,
    GatewayDep,
    priority_level,
    queue_timeout,
    require_key,
    sse,
    until_disconnect,
)

router = APIRouter(prefix="/v1/audio", tags=["speech"], dependencies=[Depends(require_key)])

SpeechFormat = Literal["mp3", "opus", "aac", "flac", "wav", "pcm"]
AUDIO_CONTENT: dict[str, dict] = {f.media_type: {} for f in FORMATS.values()} | {
    "text/event-stream": {}
}


class SpeechRequest(BaseModel):
    # strict: JSON types as documented (no "1.0" for a number, no 0 for a boolean)
    model_config = ConfigDict(extra="ignore", strict=True)

    model: str = Field(
        ...,
        min_length=1,
        description="`tts-1`, `tts-1-hd`, `kokoro` or a model id.",
        examples=["tts-1"],
    )
    input: str = Field(..., description="Text to speak.", examples=["Hello."])
    voice: str = Field(
        ...,
        min_length=1,
        examples=["alloy"],
        description="An OpenAI voice name, an installed voice id, or a mix `a+b` / `a(2)+b(1)`.",
    )
    response_format: SpeechFormat = "mp3"
    speed: float = Field(1.0, ge=0.25, le=4.0, allow_inf_nan=False)
    stream: bool = Field(False, description="Send each sentence's audio as soon as it is ready.")
    stream_format: Literal["audio", "sse"] = "audio"
    lang: str | None = Field(
        None, max_length=16, description="Phonemizer language (e.g. `en-us`); default: from text."
    )
    instructions: str | None = Field(None, description="Accepted for compatibility; ignored.")
    normalize: bool = Field(
        True,
        description="Extension: read Markdown, emoji, URLs and (in English) numbers, dates "
        "and units as a person would; `false` speaks the text as given.",
    )


@router.post(
    "/speech",
    responses={
        **ERRORS,
        200: {"content": AUDIO_CONTENT, "description": "Audio in the requested format"},
    },
    response_class=Response,
)
async def create_speech(
    body: SpeechRequest,
    request: Request,
    gw: GatewayDep,
    level: Annotated[Level | None, Depends(priority_level)] = None,
    timeout_s: Annotated[float | None, Depends(queue_timeout)] = None,
) -> Response:
    plan = await speech.plan(
        gw,
        speech.SpeechInput(
            body.model, body.input, body.voice, body.speed, body.lang, body.normalize
        ),
    )
    fmt = body.response_format
    sse_out = body.stream and body.stream_format == "sse"
    media = "text/event-stream" if sse_out else FORMATS[fmt].media_type
    async with speech.start(gw, plan, level, timeout_s) as job:
        headers = {"X-Model": job.model, "X-Priority": job.level.name}
        if not body.stream:
            # each unit is encoded while the next one runs
            encoder = WholeEncoder(fmt, job.sample_rate)
            await until_disconnect(request, job.each(encoder.encode))
            data = await asyncio.to_thread(encoder.finish)
            return Response(data, media_type=media, headers=headers)
        first = await until_disconnect(request, job.first())
        chunks = _stream(first, job.rest(), StreamEncoder(fmt, job.sample_rate))
        if sse_out:
            chunks = _sse(chunks)
        return StreamingResponse(chunks, media_type=media, headers=headers)


async def _stream(
    first: np.ndarray, rest: AsyncIterator[np.ndarray], encoder: StreamEncoder
) -> AsyncIterator[bytes]:
    data = encoder.encode(first)
    if data:
        yield data
    async for audio in rest:  # a client that goes away cancels this generator and the queued unit
        data = encoder.encode(audio)
        if data:
            yield data
    tail = encoder.finish()
    if tail:
        yield tail


async def _sse(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    async for chunk in chunks:
        yield sse({"type": "speech.audio.delta", "audio": base64.b64encode(chunk).decode()})
    yield sse({"type": "speech.audio.done", "usage": None})
