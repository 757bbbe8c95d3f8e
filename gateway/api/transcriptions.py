"""POST /v1/audio/transcriptions and /v1/audio/translations: OpenAI speech-to-text on Whisper.

The upload is decoded from its bytes (never its name or part content type), cut into windows,
and each window is one work unit; clips longer than `batch_threshold_s` default to level batch.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from faster_whisper.tokenizer import _LANGUAGE_CODES

from ..audio.decode import AudioDecodeError, decode_audio
from ..audio.subtitles import to_srt, to_vtt
from ..engines.whisper import SAMPLE_RATE, TranscribeResult, TranscribeUnit, plan_windows
from ..errors import APIError, bad_request
from ..scheduler import Job, Level
from ..service import Gateway
from .deps import GatewayDep, priority_level, queue_timeout, require_key, until_disconnect
from .speech import ERRORS

router = APIRouter(prefix="/v1/audio", tags=["transcription"], dependencies=[Depends(require_key)])

TextFormat = Literal["json", "text", "srt", "vtt", "verbose_json"]
LANGUAGES = set(_LANGUAGE_CODES)
NO_SPACE_LANGS = {"ja", "zh", "th", "lo", "my", "km", "yue", "bo"}
RESPONSES: dict[int | str, dict] = {
    **ERRORS,
    200: {"content": {"application/json": {}, "text/plain": {}, "text/vtt": {},
                      "text/event-stream": {}},
          "description": "Transcript in the requested format"},
    413: {"description": "Upload larger than the limit"},
}  # fmt: skip


async def _read_upload(request: Request, file: UploadFile | None, gw: Gateway) -> bytes:
    form = await request.form()
    files = [v for k, v in form.multi_items() if k == "file"]
    if file is None or not files or isinstance(files[0], str):
        raise bad_request("missing required parameter: file (a multipart file part)", "file")
    if len(files) > 1:
        raise bad_request("send exactly one `file` part", "file", "too_many_files")
    data = await file.read()
    limit = int(gw.settings.server.max_upload_mb * 1024 * 1024)
    if len(data) > limit:
        raise APIError(413, f"file is larger than {gw.settings.server.max_upload_mb:g} MiB",
                       param="file", code="file_too_large")  # fmt: skip
    return data


def _model(gw: Gateway, name: str, translate: bool) -> str:
    try:
        model = gw.resolve(name, "transcription")
    except KeyError:
        raise APIError(404, f"model {name!r} does not exist; transcription models: "
                       f"{', '.join(gw.aliases('transcription') + gw.available('transcription'))}",
                       param="model", code="model_not_found") from None  # fmt: skip
    except LookupError:
        raise APIError(503, f"model {name!r} is not available on this server; run "
                       "`gateway models pull`", "server_error", "model",
                       "model_unavailable") from None  # fmt: skip
    if translate and not gw.models[model].spec.multilingual:
        raise bad_request(f"model {model!r} is English-only and cannot translate", "model")
    return model


async def _transcribe(
    request: Request, gw: Gateway, *, translate: bool, file: UploadFile | None, model: str,
    language: str | None, prompt: str | None, response_format: TextFormat, temperature: float,
    granularities: list[str] | None, stream: bool, level: Level | None, timeout_s: float | None,
) -> Response:  # fmt: skip
    model_id = _model(gw, model, translate)
    if language is not None:
        language = language.strip().lower() or None
        if language is not None and language not in LANGUAGES:
            raise bad_request(f"unsupported language {language!r}; use an ISO-639-1 code",
                              "language", "invalid_language")  # fmt: skip
        if language not in (None, "en") and not gw.models[model_id].spec.multilingual:
            raise bad_request(f"model {model_id!r} is English-only", "language")
    grains = set(granularities or [])
    if not grains <= {"segment", "word"}:
        raise bad_request("timestamp_granularities[] takes `segment` and/or `word`",
                          "timestamp_granularities[]")  # fmt: skip
    if grains and response_format != "verbose_json":
        raise bad_request("timestamp_granularities[] needs response_format=verbose_json",
                          "timestamp_granularities[]")  # fmt: skip
    data = await _read_upload(request, file, gw)
    try:
        audio = await asyncio.to_thread(decode_audio, data, gw.settings.server.max_audio_s)
    except AudioDecodeError as exc:
        raise bad_request(str(exc), "file", "invalid_audio") from None
    del data
    duration = len(audio) / SAMPLE_RATE
    window_s = gw.settings.whisper.window_s
    windows = await asyncio.to_thread(plan_windows, audio, window_s)
    default_level = Level.interactive if duration <= gw.settings.scheduler.batch_threshold_s else (
        Level.batch
    )
    w = gw.settings.whisper
    template = TranscribeUnit(
        audio=audio[:0], offset_s=0.0, task="translate" if translate else "transcribe",
        language=language, prompt=prompt, temperature=temperature,
        word_timestamps="word" in grains, vad_filter=w.vad_filter, beam_size=w.beam_size,
    )  # fmt: skip
    units = [
        replace(template, audio=audio[win.start : win.end], offset_s=win.start / SAMPLE_RATE)
        for win in windows
    ]
    async with gw.scheduler.job(model_id, level or default_level, timeout_s) as job:
        if stream:
            first = await until_disconnect(request, job.run(units[0])) if units else None
            return StreamingResponse(_events(job, units[1:], first), media_type="text/event-stream")
        results = await until_disconnect(request, _run_all(job, units))
    return _format(results, response_format, duration, "translate" if translate else "transcribe",
                   language, "word" in grains, "segment" in grains or not grains)  # fmt: skip


def _next_unit(unit: TranscribeUnit, first: TranscribeResult | None) -> TranscribeUnit:
    """Later windows reuse the language detected on the first, so they agree."""
    if unit.language is None and first is not None and first.language:
        return replace(unit, language=first.language)
    return unit


async def _run_all(job: Job, units: list[TranscribeUnit]) -> list[TranscribeResult]:
    results: list[TranscribeResult] = []
    for unit in units:
        results.append(await job.run(_next_unit(unit, results[0] if results else None)))
    return results


async def _events(
    job: Job, rest: list[TranscribeUnit], first: TranscribeResult | None
) -> AsyncIterator[bytes]:
    texts: list[str] = []

    def deltas(result: TranscribeResult) -> list[bytes]:
        out = []
        sep = "" if result.language in NO_SPACE_LANGS else " "
        for seg in result.segments:
            piece = seg["text"].strip()
            if not piece:
                continue
            delta = sep + piece if texts else piece
            texts.append(delta)
            out.append(_sse({"type": "transcript.text.delta", "delta": delta}))
        return out

    if first is not None:
        for event in deltas(first):
            yield event
    for unit in rest:
        for event in deltas(await job.run(_next_unit(unit, first))):
            yield event
    yield _sse({"type": "transcript.text.done", "text": "".join(texts)})


def join_text(parts: list[str], lang: str | None) -> str:
    """Join segment texts with one space (none for scripts written without spaces)."""
    sep = "" if lang in NO_SPACE_LANGS else " "
    return sep.join(p.strip() for p in parts if p.strip())


def _sse(event: dict[str, Any]) -> bytes:
    return f"data: {json.dumps(event, ensure_ascii=False)}\n\n".encode()


def _format(
    results: list[TranscribeResult], fmt: str, duration: float, task: str,
    language: str | None, words: bool, segments: bool,
) -> Response:  # fmt: skip
    segs = [s for r in results for s in r.segments]
    lang = language or next((r.language for r in results if r.language), None) or "en"
    text = join_text([s["text"] for s in segs], lang)
    if fmt == "text":
        return PlainTextResponse(text + "\n" if text else "")
    if fmt == "srt":
        return PlainTextResponse(to_srt(segs), media_type="text/plain")
    if fmt == "vtt":
        return PlainTextResponse(to_vtt(segs), media_type="text/vtt")
    if fmt == "json":
        return JSONResponse({"text": text})
    body: dict[str, Any] = {
        "task": task,
        "language": _LANGUAGE_NAMES.get(lang, lang),
        "duration": round(duration, 3),
        "text": text,
    }
    if segments:
        body["segments"] = [
            {"id": i, "seek": int(s["start"] * 100), **{k: v for k, v in s.items() if k != "words"}}
            for i, s in enumerate(segs)
        ]
    if words:
        body["words"] = [w for s in segs for w in s.get("words", [])]
    return JSONResponse(body)


_LANGUAGE_NAMES = {"en": "english", "de": "german", "fr": "french", "es": "spanish",
                   "it": "italian", "ja": "japanese", "zh": "chinese", "pt": "portuguese",
                   "nl": "dutch", "ru": "russian", "ko": "korean", "pl": "polish"}  # fmt: skip

FileField = Annotated[UploadFile, File(description="Audio: webm, ogg, mp4/m4a, mp3, wav, flac.")]
ModelField = Annotated[str, Form(description="`whisper-1`, `whisper-base`, `whisper-tiny.en`.")]
PromptField = Annotated[str | None, Form(max_length=2000)]
FormatField = Annotated[TextFormat, Form()]
TempField = Annotated[float, Form(ge=0.0, le=1.0, allow_inf_nan=False)]
StreamField = Annotated[bool, Form()]


@router.post("/transcriptions", responses=RESPONSES, response_class=Response)
async def create_transcription(
    request: Request, gw: GatewayDep,
    file: FileField, model: ModelField = "whisper-1",
    language: Annotated[str | None, Form(max_length=16)] = None, prompt: PromptField = None,
    response_format: FormatField = "json", temperature: TempField = 0.0,
    timestamp_granularities: Annotated[
        list[str] | None, Form(alias="timestamp_granularities[]")
    ] = None,
    stream: StreamField = False,
    level: Annotated[Level | None, Depends(priority_level)] = None,
    timeout_s: Annotated[float | None, Depends(queue_timeout)] = None,
) -> Response:  # fmt: skip
    return await _transcribe(
        request, gw, translate=False, file=file, model=model, language=language, prompt=prompt,
        response_format=response_format, temperature=temperature,
        granularities=timestamp_granularities, stream=stream, level=level, timeout_s=timeout_s,
    )  # fmt: skip


@router.post("/translations", responses=RESPONSES, response_class=Response)
async def create_translation(
    request: Request, gw: GatewayDep,
    file: FileField, model: ModelField = "whisper-1", prompt: PromptField = None,
    response_format: FormatField = "json", temperature: TempField = 0.0,
    level: Annotated[Level | None, Depends(priority_level)] = None,
    timeout_s: Annotated[float | None, Depends(queue_timeout)] = None,
) -> Response:  # fmt: skip
    return await _transcribe(
        request, gw, translate=True, file=file, model=model, language=None, prompt=prompt,
        response_format=response_format, temperature=temperature, granularities=None,
        stream=False, level=level, timeout_s=timeout_s,
    )  # fmt: skip
