"""`timestamps: true` on POST /v1/audio/speech: word timings from Kokoro's own phoneme durations.

An extension, off by default (OpenAI's API has no such field; its clients never send it):

* not streamed: a JSON body `{"audio": <base64 of the whole file in response_format>, "format",
  "duration", "words": [{"word", "start", "end"}]}`;
* `response_format` `srt` or `vtt`: the captions alone (the speech is made, its audio not sent);
* `stream_format: "sse"`: each `speech.audio.delta` event carries the `words` its audio completes;
* raw streamed audio (`stream: true` without `sse`) has no place for them: 400.

Times are seconds of the audio as a decoder plays it: a streamed MP3's encoder delay (no gapless
tag) and AAC's priming samples are added (`audio.encode.decoder_delay`).
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from ..audio.encode import StreamEncoder, WholeEncoder, decoder_delay
from ..audio.subtitles import to_srt, to_vtt, word_cues
from ..tasks.speech import SpeechJob, TimedAudio
from ..tasks.timings import TimingsUnavailable, WordClock
from .deps import sse, until_disconnect
from .errors import APIError, bad_request

CAPTIONS = ("srt", "vtt")


def check(timestamps: bool, fmt: str, streaming: bool, sse_out: bool) -> None:
    """Combinations that do not fit together: 400 before any work is queued."""
    if fmt in CAPTIONS and not timestamps:
        raise bad_request(
            f'response_format {fmt!r} is captions, not audio: it needs "timestamps": true',
            "response_format",
            "captions_need_timestamps",
        )
    if fmt in CAPTIONS and streaming:
        raise bad_request(
            f"response_format {fmt!r} is a whole caption file: it cannot be streamed",
            "response_format",
            "captions_not_streamed",
        )
    if timestamps and streaming and not sse_out:
        raise bad_request(
            'raw streamed audio has no place for word timings: ask for stream_format "sse" '
            "(each speech.audio.delta carries its words) or a whole response",
            "timestamps",
            "timestamps_need_sse",
        )


def unavailable(exc: TimingsUnavailable) -> APIError:
    return APIError(503, str(exc), "server_error", "timestamps", "timestamps_unavailable")


async def whole(
    job: SpeechJob, request: Request, fmt: str, mp3_quality: int, headers: dict[str, str]
) -> Response:
    """The JSON body with the whole file and its words, or the captions alone."""
    captions = fmt in CAPTIONS
    clock = WordClock(job.plan, 0 if captions else decoder_delay(fmt, streamed=False))
    encoder = None if captions else WholeEncoder(fmt, job.sample_rate, mp3_quality)
    words: list[dict[str, Any]] = []

    def sink(result: TimedAudio) -> None:
        words.extend(clock.add(result))
        if encoder is not None:
            encoder.encode(result.audio)

    try:
        await until_disconnect(request, job.each_timed(sink))
    except TimingsUnavailable as exc:
        raise unavailable(exc) from None
    if encoder is None:
        cues = word_cues(words)
        if fmt == "srt":
            return PlainTextResponse(to_srt(cues), media_type="text/plain", headers=headers)
        return PlainTextResponse(to_vtt(cues), media_type="text/vtt", headers=headers)
    data = await asyncio.to_thread(encoder.finish)
    body = {
        "audio": base64.b64encode(data).decode(),
        "format": fmt,
        "duration": round(clock.seconds, 3),
        "words": words,
    }
    return JSONResponse(body, headers=headers)


async def sse_events(
    job: SpeechJob, first: TimedAudio, fmt: str, mp3_quality: int, samples: list[int]
) -> AsyncIterator[bytes]:
    """`speech.audio.delta` events, each with the words its audio completes (the caller adds
    `speech.audio.done`)."""
    clock = WordClock(job.plan, decoder_delay(fmt, streamed=True))
    encoder = StreamEncoder(fmt, job.sample_rate, mp3_quality)

    async def results() -> AsyncIterator[TimedAudio]:
        yield first
        async for result in job.rest_timed():
            yield result

    def step(result: TimedAudio) -> tuple[list[dict[str, Any]], bytes]:
        # the word clock reads the unit's loudness frame by frame: numpy work, off the loop
        return clock.add(result), encoder.encode(result.audio)

    words: list[dict[str, Any]] = []
    async for result in results():
        samples.append(len(result.audio))
        try:
            done, data = await asyncio.to_thread(step, result)
        except TimingsUnavailable as exc:
            raise unavailable(exc) from None
        words += done
        if data:  # an encoder holding the audio back keeps its words for the next event
            yield _delta(data, words)
            words = []
    tail = await asyncio.to_thread(encoder.finish)
    if tail or words:
        yield _delta(tail, words)


def _delta(data: bytes, words: list[dict[str, Any]]) -> bytes:
    return sse(
        {"type": "speech.audio.delta", "audio": base64.b64encode(data).decode(), "words": words}
    )
