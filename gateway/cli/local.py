"""`gateway speak` and `gateway transcribe`: the runtime and tasks/ in this process, with no
listener and no HTTP, so they run beside a server on the same machine. Requests are checked as
the HTTP API checks them, and a refusal is one line with the status that API would answer."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from ..api.errors import as_api_error
from ..audio.encode import FORMATS, WholeEncoder, decoder_delay
from ..audio.subtitles import to_srt, to_vtt, word_cues
from ..errors import GatewayError, InvalidRequest, TooLarge, Unavailable
from ..runtime import Runtime, assemble_defaults
from ..tasks import speech
from ..tasks import transcription as stt
from ..tasks.timings import TimingsUnavailable, WordClock

if TYPE_CHECKING:
    from ..config import Settings

T = TypeVar("T")
TEXT_FORMATS = ("json", "text", "srt", "vtt", "verbose_json")
MIN_SPEED, MAX_SPEED = 0.25, 4.0  # as POST /v1/audio/speech takes it
MAX_LANG = 16  # characters of `lang` / `language`, as the HTTP API takes them


def add_parsers(sub: Any) -> None:
    sp = sub.add_parser("speak", help="synthesize speech to a file, without HTTP")
    sp.add_argument("text")
    sp.add_argument("-o", "--output", required=True, type=Path)
    sp.add_argument("--voice", default="alloy")
    sp.add_argument("--format", default=None, help="mp3|opus|aac|flac|wav|pcm (default: suffix)")
    sp.add_argument("--speed", type=float, default=1.0)
    sp.add_argument("--model", default="tts-1")
    sp.add_argument("--lang", default=None)
    sp.add_argument(
        "--captions", type=Path, default=None,
        help="also write captions of the words' timings (.srt or .vtt; the model needs durations)",
    )  # fmt: skip

    tr = sub.add_parser("transcribe", help="transcribe an audio file, without HTTP")
    tr.add_argument("file", type=Path)
    tr.add_argument("--format", default="text", help="json|text|srt|vtt|verbose_json")
    tr.add_argument("--language", default=None)
    tr.add_argument("--model", default="whisper-1")
    tr.add_argument("--translate", action="store_true", help="translate to English")


def run_speak(args: argparse.Namespace, settings: Settings) -> int:
    fmt = args.format or (args.output.suffix.lstrip(".") or "mp3")
    kind = None
    if args.captions is not None:
        kind = args.captions.suffix.lstrip(".").lower()
        if kind not in ("srt", "vtt"):
            raise SystemExit(f"--captions {args.captions}: name a .srt or .vtt file")
    data, captions = _run(
        speak(settings, args.text, args.voice, fmt, args.speed, args.model, args.lang, kind)
    )
    args.output.write_bytes(data)
    print(f"wrote {len(data)} bytes to {args.output}", file=sys.stderr)
    if args.captions is not None and captions is not None:
        args.captions.write_text(captions, "utf-8")
        print(f"wrote captions to {args.captions}", file=sys.stderr)
    return 0


def run_transcribe(args: argparse.Namespace, settings: Settings) -> int:
    data = args.file.read_bytes()
    out = _run(transcribe(settings, data, args.format, args.language, args.model, args.translate))
    sys.stdout.write(out if isinstance(out, str) else json.dumps(out, ensure_ascii=False))
    return 0


def _run(work: Coroutine[Any, Any, T]) -> T:
    """Run a command's coroutine; a refusal ends the process with one line, as HTTP states it
    (a failure of ours keeps its traceback)."""
    try:
        return asyncio.run(work)
    except GatewayError as exc:
        err = as_api_error(exc)
        raise SystemExit(f"error {err.status}: {err.message}") from None


@asynccontextmanager
async def _runtime(settings: Settings) -> AsyncIterator[Runtime]:
    """The runtime, started for one command: models verified and scheduled as a server's are."""
    rt = Runtime(settings, pull_problems=assemble_defaults(settings))
    await rt.start()
    try:
        yield rt
    finally:
        await rt.stop()


def _check_speech(fmt: str, speed: float, lang: str | None) -> None:
    if fmt not in FORMATS:
        raise InvalidRequest(
            f"unsupported format {fmt!r}; use one of {', '.join(FORMATS)}",
            "response_format",
            "invalid_format",
        )
    if not MIN_SPEED <= speed <= MAX_SPEED:  # NaN fails both
        raise InvalidRequest(
            f"speed must be from {MIN_SPEED} to {MAX_SPEED}, not {speed}", "speed", "invalid_speed"
        )
    if lang is not None and len(lang) > MAX_LANG:
        raise InvalidRequest(f"lang is at most {MAX_LANG} characters", "lang", "invalid_lang")


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
    (one synthesis, timed as `timestamps: true` times it)."""
    _check_speech(fmt, speed, lang)
    timed = captions is not None
    async with _runtime(settings) as rt:
        req = speech.SpeechInput(model, text, voice, speed, lang or None, timed=timed)
        plan = await speech.plan(rt, req)
        encoder = WholeEncoder(fmt, plan.sample_rate, rt.settings.server.mp3_quality)
        clock = WordClock(plan, decoder_delay(fmt, streamed=False)) if timed else None
        words: list[dict[str, Any]] = []

        def sink(result: speech.TimedAudio) -> None:
            if clock is not None:
                words.extend(clock.add(result))
            encoder.encode(result.audio)

        async with speech.start(rt, plan, None, None) as job:
            try:
                await job.each_timed(sink)
            except TimingsUnavailable as exc:
                raise Unavailable(str(exc), "timestamps", "timestamps_unavailable") from None
        data = await asyncio.to_thread(encoder.finish)
    if captions is None:
        return data, None
    cues = word_cues(words)
    return data, to_srt(cues) if captions == "srt" else to_vtt(cues)


async def transcribe(
    settings: Settings, data: bytes, fmt: str, language: str | None, model: str, translate: bool
) -> str | dict[str, Any]:
    """The transcript as the HTTP API formats it: text (also for `json`: its `text`), captions,
    or the verbose_json body."""
    if fmt not in TEXT_FORMATS:
        raise InvalidRequest(
            f"unsupported format {fmt!r}; use one of {', '.join(TEXT_FORMATS)}",
            "response_format",
            "invalid_format",
        )
    if language is not None and len(language) > MAX_LANG:
        raise InvalidRequest(f"language is at most {MAX_LANG} characters", "language")
    limit_mb = settings.server.max_upload_mb
    if len(data) > limit_mb * 1024 * 1024:
        raise TooLarge(f"file is larger than {limit_mb:g} MiB", "file", "file_too_large")
    req = stt.TranscriptionInput(model, translate, None if translate else language,
                                 response_format=fmt)  # fmt: skip
    async with _runtime(settings) as rt:
        plan = stt.check(rt, req)
        work = await stt.prepare(rt, plan, data)
        del data
        async with stt.start(rt, work, None, None) as job:
            transcript = await job.transcript()
    return _format(transcript, fmt, plan)


def _format(t: stt.Transcript, fmt: str, plan: stt.TranscriptionPlan) -> str | dict[str, Any]:
    if fmt in ("text", "json"):
        return t.text + "\n" if t.text or fmt == "json" else ""
    if fmt == "srt":
        return to_srt(t.segments)
    if fmt == "vtt":
        return to_vtt(t.segments)
    from ..api.schemas import TranscriptionSegment, TranscriptionVerbose

    probability = t.language_probability
    body = TranscriptionVerbose(
        task=t.task,
        language=stt.language_name(t.language),
        language_probability=None if probability is None else round(probability, 4),
        duration=round(t.duration, 3),
        text=t.text,
    )
    if plan.segments:
        body.segments = [
            TranscriptionSegment(id=i, seek=int(s["start"] * 100), **s)
            for i, s in enumerate(t.segments)
        ]
    return body.model_dump(exclude_none=True)
