"""POST /v1/audio/transcriptions and /v1/audio/translations: OpenAI speech-to-text on Whisper.

The router parses the form and encodes the transcript; the task checks, admits, decodes, plans
and runs (a full queue refuses the upload before it is decoded).
Clips longer than `batch_threshold_s` default to level batch.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.datastructures import FormData

from ..audio.subtitles import to_srt, to_vtt
from ..runtime import Runtime
from ..scheduler import Level
from ..tasks import transcription as stt
from ..tasks import usage as usage_task
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
from .errors import APIError, bad_request
from .schemas import (
    Transcription,
    TranscriptionSegment,
    TranscriptionVerbose,
    TranscriptionWord,
    UsageDuration,
)

router = APIRouter(prefix="/v1/audio", tags=["transcription"], dependencies=[Depends(require_key)])

TextFormat = Literal["json", "text", "srt", "vtt", "verbose_json"]
TEXT_CONTENT: dict[str, dict] = {
    "application/json": {},
    "text/plain": {},
    "text/vtt": {},
    "text/event-stream": {},
}
RESPONSES: dict[int | str, dict] = {
    **ERRORS,
    200: {"content": TEXT_CONTENT, "description": "Transcript in the requested format"},
    413: {"description": "Upload larger than the limit"},
}


async def _read_upload(request: Request, file: UploadFile | None, gw: Runtime) -> bytes:
    form = await request.form()
    files = [v for k, v in form.multi_items() if k == "file"]
    if file is None or not files or isinstance(files[0], str):
        raise bad_request("missing required parameter: file (a multipart file part)", "file")
    if len(files) > 1:
        raise bad_request("send exactly one `file` part", "file", "too_many_files")
    data = await file.read()
    limit = int(gw.settings.server.max_upload_mb * 1024 * 1024)
    if len(data) > limit:
        raise APIError(
            413,
            f"file is larger than {gw.settings.server.max_upload_mb:g} MiB",
            param="file",
            code="file_too_large",
        )
    return data


async def _transcribe(
    request: Request,
    gw: Runtime,
    req: stt.TranscriptionInput,
    file: UploadFile | None,
    stream: bool,
    level: Level | None,
    timeout_s: float | None,
) -> Response:
    plan = stt.check(gw, req)
    data = await _read_upload(request, file, gw)
    # a client gone during the decode or the VAD takes them back too (a step already running
    # on its thread finishes there, its result dropped)
    work = await until_disconnect(request, stt.prepare(gw, plan, data, level))
    del data
    async with stt.start(gw, work, level, timeout_s) as job:
        if stream:
            first = await until_disconnect(request, job.first())
            usage = functools.partial(
                usage_task.transcription_usage, gw, plan.model, work.duration, plan.prompt
            )
            deltas = _events(job.deltas(first), usage, lambda: job.logprobs)
            events = sse_or_error(deltas, request.url.path)
            heard = None
            if plan.language is None and first is not None and first.language:
                heard = (first.language, first.language_probability)
            return StreamingResponse(
                events, media_type="text/event-stream", headers=language_headers(heard)
            )
        transcript = await until_disconnect(request, job.transcript())
    response = _format(transcript, req, plan)
    if transcript.language_probability is not None:
        heard = (transcript.language, transcript.language_probability)
        response.headers.update(language_headers(heard))
    return response


def language_headers(heard: tuple[str, float] | None) -> dict[str, str]:
    """The language the gateway chose for a request that named none, and how sure it was."""
    if heard is None:
        return {}
    return {"X-Detected-Language": heard[0], "X-Language-Probability": f"{heard[1]:.4f}"}


async def _events(
    deltas: AsyncIterator[str],
    usage: Callable[[str], dict[str, Any]],
    logprobs: Callable[[], list[dict[str, Any]] | None],
) -> AsyncIterator[bytes]:
    texts: list[str] = []
    async for delta in deltas:
        texts.append(delta)
        yield sse({"type": "transcript.text.delta", "delta": delta})
    text = "".join(texts)
    # OpenAI's done event carries `usage` (see tasks/usage.py); tokenizing runs off the loop
    done: dict[str, Any] = {
        "type": "transcript.text.done",
        "text": text,
        "usage": await asyncio.to_thread(usage, text),
    }
    if (heard := logprobs()) is not None:
        done["logprobs"] = heard
    yield sse(done)


def _format(
    t: stt.Transcript, req: stt.TranscriptionInput, plan: stt.TranscriptionPlan
) -> Response:
    text, fmt = t.text, req.response_format
    usage = None if req.translate else usage_task.duration_usage(req.model, t.duration)
    if fmt == "text":
        return PlainTextResponse(text + "\n" if text else "")
    if fmt == "srt":
        return PlainTextResponse(to_srt(t.segments), media_type="text/plain")
    if fmt == "vtt":
        return PlainTextResponse(to_vtt(t.segments), media_type="text/vtt")
    if fmt == "json":
        plain = Transcription.model_validate({"text": text, "logprobs": t.logprobs,
                                              "usage": usage})  # fmt: skip
        return JSONResponse(plain.model_dump(exclude_none=True))
    body = TranscriptionVerbose(
        task=t.task,
        language=stt.language_name(t.language),
        language_probability=None
        if t.language_probability is None
        else round(t.language_probability, 4),
        duration=round(t.duration, 3),
        text=text,
        usage=usage and UsageDuration.model_validate(usage),
    )
    if plan.segments:
        body.segments = [
            TranscriptionSegment(id=i, seek=int(s["start"] * 100), **s)
            for i, s in enumerate(t.segments)
        ]
    if plan.words:
        body.words = [TranscriptionWord(**w) for w in t.words]
    return JSONResponse(body.model_dump(exclude_none=True))


FileField = Annotated[UploadFile, File(description="Audio: webm, ogg, mp4/m4a, mp3, wav, flac.")]
ModelField = Annotated[
    str,
    Form(description="`whisper-1`, `gpt-transcribe`, `gpt-4o-mini-transcribe-2025-12-15` (any "
         "dated OpenAI name), `whisper-base`, `whisper-tiny.en`."),
]  # fmt: skip
LanguageField = Annotated[str | None, Form(max_length=16)]
PromptField = Annotated[str | None, Form(max_length=2000)]
FormatField = Annotated[TextFormat, Form()]
TempField = Annotated[float, Form(ge=0.0, le=1.0, allow_inf_nan=False)]
GrainsField = Annotated[list[str] | None, Form(alias="timestamp_granularities[]")]
StreamField = Annotated[bool, Form()]
LanguagesField = Annotated[list[str] | None, Form(alias="languages[]")]
KeywordsField = Annotated[list[str] | None, Form(alias="keywords[]")]
IncludeField = Annotated[list[str] | None, Form(alias="include[]")]
# `auto` or a JSON object; the openai SDK sends an object as `chunking_strategy[threshold]` etc.
ChunkingField = Annotated[str | None, Form()]
LevelDep = Annotated[Level | None, Depends(priority_level)]
TimeoutDep = Annotated[float | None, Depends(queue_timeout)]


def _chunking(form: FormData, value: str | None) -> Any:
    """`chunking_strategy` as sent: a string (`auto`, JSON), or the fields the openai SDK
    flattens an object into (`chunking_strategy[type]=server_vad`, ...)."""
    prefix = "chunking_strategy["
    nested = {k[len(prefix) : -1]: v for k, v in form.multi_items()
              if k.startswith(prefix) and k.endswith("]")}  # fmt: skip
    if nested and value is not None:
        raise bad_request("send chunking_strategy once", "chunking_strategy", "invalid_value")
    return nested or value


@router.post("/transcriptions", responses=RESPONSES, response_class=Response)
async def create_transcription(
    request: Request,
    gw: GatewayDep,
    file: FileField,
    model: ModelField = "whisper-1",
    language: LanguageField = None,
    prompt: PromptField = None,
    response_format: FormatField = "json",
    temperature: TempField = 0.0,
    timestamp_granularities: GrainsField = None,
    stream: StreamField = False,
    languages: LanguagesField = None,
    keywords: KeywordsField = None,
    include: IncludeField = None,
    chunking_strategy: ChunkingField = None,
    level: LevelDep = None,
    timeout_s: TimeoutDep = None,
) -> Response:
    req = stt.TranscriptionInput(
        model, False, language, prompt, temperature, timestamp_granularities, response_format,
        languages=languages, keywords=keywords, include=include,
        chunking=_chunking(await request.form(), chunking_strategy),
    )  # fmt: skip
    return await _transcribe(request, gw, req, file, stream, level, timeout_s)


@router.post("/translations", responses=RESPONSES, response_class=Response)
async def create_translation(
    request: Request,
    gw: GatewayDep,
    file: FileField,
    model: ModelField = "whisper-1",
    prompt: PromptField = None,
    response_format: FormatField = "json",
    temperature: TempField = 0.0,
    level: LevelDep = None,
    timeout_s: TimeoutDep = None,
) -> Response:
    req = stt.TranscriptionInput(model, True, None, prompt, temperature, None, response_format)
    return await _transcribe(request, gw, req, file, False, level, timeout_s)
