"""POST /v1/audio/speech: OpenAI text-to-speech, on Kokoro.

Everything that can be the caller's fault (model, voice, text, speed, format) is checked before
the first byte; when streaming, the first work unit also runs before the response starts, so a
full queue or a timeout is still a clean 429/503.

Streaming, as OpenAI's API and SDKs ask for it: `stream_format: "sse"` streams server-sent events
(`speech.audio.delta` with base64 audio, then `speech.audio.done` with `usage`), and an explicit
`stream_format: "audio"` streams the raw format. `stream: true` (our older switch) streams too, in
the given `stream_format`. A request with neither (Open WebUI's) gets the whole file at once, so a
failure in a later sentence is still a clean error status, never a truncated file.

`usage` in `speech.audio.done` (OpenAI reports input, output and total tokens): `input_tokens`
counts the phoneme tokens Kokoro read (exact, one per phoneme symbol); `output_tokens` is the audio
at 20 tokens a second (an estimate: OpenAI bills about 1,250 audio tokens a minute of speech, and
Kokoro has no audio tokens of its own); `total_tokens` their sum. An error after the 200 ends the
event stream with an `error` event (see `deps.sse_or_error`).
"""

from __future__ import annotations

import asyncio
import base64
import math
from collections.abc import AsyncIterator
from typing import Annotated, Literal

import numpy as np
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from ..audio.encode import FORMATS, StreamEncoder, WholeEncoder
from ..scheduler import Level
from ..tasks import speech
from . import speech_timings as timings
from .deps import (
    ERRORS,
    GatewayDep,
    priority_level,
    queue_timeout,
    require_key,
    sse,
    sse_or_error,
    until_disconnect,
)

router = APIRouter(prefix="/v1/audio", tags=["speech"], dependencies=[Depends(require_key)])

SpeechFormat = Literal["mp3", "opus", "aac", "flac", "wav", "pcm", "srt", "vtt"]
AUDIO_CONTENT: dict[str, dict] = {f.media_type: {} for f in FORMATS.values()} | {
    "text/event-stream": {},
    "application/json": {},  # timestamps: true
    "text/plain": {},  # srt
    "text/vtt": {},
}


class VoiceId(BaseModel):
    """OpenAI's voice object (`{"id": "voice_1234"}`, a custom voice there): here its `id` names a
    voice as the plain string would."""

    model_config = ConfigDict(extra="ignore", strict=True)

    id: str = Field(..., min_length=1, examples=["alloy"])


class SpeechRequest(BaseModel):
    # strict: JSON types as documented (no "1.0" for a number, no 0 for a boolean)
    model_config = ConfigDict(extra="ignore", strict=True)

    model: str = Field(
        ...,
        min_length=1,
        description="`tts-1`, `tts-1-hd`, `gpt-4o-mini-tts` (all the default speech model), "
        "`kokoro` or a model id.",
        examples=["tts-1"],
    )
    input: str = Field(..., description="Text to speak.", examples=["Hello."])
    voice: Annotated[str, Field(min_length=1)] | VoiceId = Field(
        ...,
        examples=["alloy"],
        description="An OpenAI voice name (`alloy` ... `marin`, `cedar`), an installed voice id, "
        'or a mix `a+b` / `a(2)+b(1)`; or any of them as `{"id": ...}`.',
    )
    response_format: SpeechFormat = Field(
        "mp3",
        description="An audio format; `srt` and `vtt` (with `timestamps: true`) are captions "
        "of the speech instead of its audio.",
    )
    speed: float = Field(1.0, ge=0.25, le=4.0, allow_inf_nan=False)
    stream: bool = Field(
        False,
        description="Extension: send each sentence's audio as soon as it is ready, in "
        "`stream_format` (an alias of setting `stream_format`).",
    )
    stream_format: Literal["audio", "sse"] = Field(
        "audio",
        description="`sse`: server-sent events `speech.audio.delta` (base64 audio) then "
        "`speech.audio.done` with `usage`; `audio` when given: the raw format, streamed.",
    )
    lang: str | None = Field(
        None, max_length=16, description="Phonemizer language (e.g. `en-us`); default: from text."
    )
    instructions: str | None = Field(
        None,
        description="Accepted for compatibility (`gpt-4o-mini-tts` clients send it); ignored: "
        "Kokoro has no way to follow a spoken-style prompt.",
    )
    normalize: bool = Field(
        True,
        description="Extension: read Markdown, emoji, URLs and (in English) numbers, dates "
        "and units as a person would; `false` speaks the text as given.",
    )
    timestamps: bool = Field(
        False,
        description="Extension: word timings from the model's phoneme durations. Not streamed: "
        'JSON `{"audio": base64, "format", "duration", "words": [{"word", "start", "end"}]}` '
        "(`srt`/`vtt`: the captions alone); with `stream_format: sse` each "
        "`speech.audio.delta` carries its `words`; raw streamed audio cannot carry them (400).",
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
    streaming = body.stream or "stream_format" in body.model_fields_set
    fmt = body.response_format
    sse_out = body.stream_format == "sse"
    timed = body.timestamps
    timings.check(timed, fmt, streaming, sse_out)
    voice = body.voice.id if isinstance(body.voice, VoiceId) else body.voice
    plan = await speech.plan(
        gw,
        speech.SpeechInput(
            body.model, body.input, voice, body.speed, body.lang, body.normalize, streaming, timed
        ),
    )
    quality = gw.settings.server.mp3_quality
    async with speech.start(gw, plan, level, timeout_s) as job:
        headers = {"X-Model": job.model, "X-Priority": job.level.name}
        if timed and not streaming:
            return await timings.whole(job, request, fmt, quality, headers)
        if timed:
            first_timed = await until_disconnect(request, job.first_timed())
            samples: list[int] = []
            usage = _Usage(speech.input_tokens(plan), samples, job.sample_rate)
            events = timings.sse_events(job, first_timed, fmt, quality, samples)
            chunks = sse_or_error(_done(events, usage), request.url.path)
            return StreamingResponse(chunks, media_type="text/event-stream", headers=headers)
        media = "text/event-stream" if sse_out else FORMATS[fmt].media_type
        if not streaming:
            # each unit is encoded while the next one runs
            encoder = WholeEncoder(fmt, job.sample_rate, gw.settings.server.mp3_quality)
            await until_disconnect(request, job.each(encoder.encode))
            data = await asyncio.to_thread(encoder.finish)
            return Response(data, media_type=media, headers=headers)
        first = await until_disconnect(request, job.first())
        samples = []
        stream_enc = StreamEncoder(fmt, job.sample_rate, gw.settings.server.mp3_quality)
        chunks = _stream(first, job.rest(), stream_enc, samples)
        if sse_out:
            usage = _Usage(speech.input_tokens(plan), samples, job.sample_rate)
            chunks = sse_or_error(_sse(chunks, usage), request.url.path)
        return StreamingResponse(chunks, media_type=media, headers=headers)


async def _stream(
    first: np.ndarray,
    rest: AsyncIterator[np.ndarray],
    encoder: StreamEncoder,
    samples: list[int],
) -> AsyncIterator[bytes]:
    # Encoding (tens of ms a sentence) runs on a thread, never on the event loop; the calls
    # are awaited one by one, so the encoder is never used by two threads at once.
    samples.append(len(first))
    data = await asyncio.to_thread(encoder.encode, first)
    if data:
        yield data
    async for audio in rest:  # a client that goes away cancels this generator and the queued unit
        samples.append(len(audio))
        data = await asyncio.to_thread(encoder.encode, audio)
        if data:
            yield data
    tail = await asyncio.to_thread(encoder.finish)
    if tail:
        yield tail


class _Usage:
    """`usage` of speech.audio.done: see the module's docstring."""

    AUDIO_TOKENS_PER_S = 20

    def __init__(self, input_tokens: int, samples: list[int], sample_rate: int) -> None:
        self.input_tokens, self.samples, self.sample_rate = input_tokens, samples, sample_rate

    def as_dict(self) -> dict[str, int]:
        seconds = sum(self.samples) / self.sample_rate
        output = math.ceil(seconds * self.AUDIO_TOKENS_PER_S)
        return {
            "input_tokens": self.input_tokens,
            "output_tokens": output,
            "total_tokens": self.input_tokens + output,
        }


async def _sse(chunks: AsyncIterator[bytes], usage: _Usage) -> AsyncIterator[bytes]:
    async for chunk in chunks:
        yield sse({"type": "speech.audio.delta", "audio": base64.b64encode(chunk).decode()})
    yield sse({"type": "speech.audio.done", "usage": usage.as_dict()})


async def _done(events: AsyncIterator[bytes], usage: _Usage) -> AsyncIterator[bytes]:
    async for event in events:
        yield event
    yield sse({"type": "speech.audio.done", "usage": usage.as_dict()})
