"""Wyoming speech-to-text: `transcribe` -> `audio-start` -> `audio-chunk`* -> `audio-stop`, run as
an interactive transcription job through tasks/ (the same models, aliases, languages and VAD as
HTTP), answered `transcript-start` -> `transcript-chunk`* -> `transcript` -> `transcript-stop`.
With `wyoming.live` the chunks come while the audio streams (tasks/live.py's commit rule) and
the utterance's end adds the rest; the `transcript` is the chunks joined either way."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import numpy as np
from wyoming.asr import Transcript, TranscriptChunk, TranscriptStart, TranscriptStop
from wyoming.audio import AudioChunk, AudioChunkConverter, AudioFormat
from wyoming.event import Event

from ..errors import InvalidRequest
from ..runtime import Runtime
from ..scheduler import Level
from ..tasks import transcription as stt
from ..tasks.live import LiveTurn, follow

RATE, WIDTH, CHANNELS = 16000, 2, 1  # what Whisper hears
Send = Callable[[Event], Awaitable[None]]


def check_format(data: dict) -> AudioFormat:
    """The audio format of an `audio-start` or `audio-chunk`; raises InvalidRequest."""
    rate, width, channels = data.get("rate"), data.get("width"), data.get("channels")
    if type(width) is not int or width not in (1, 2, 3, 4):
        raise InvalidRequest(f"width must be 1, 2, 3 or 4 bytes, not {width!r}", "width",
                             "invalid_width")  # fmt: skip
    if type(rate) is not int or not 1000 <= rate <= 384000:
        raise InvalidRequest(f"rate must be 1000-384000 Hz, not {rate!r}", "rate", "invalid_rate")
    if type(channels) is not int or not 1 <= channels <= 16:
        raise InvalidRequest(f"channels must be 1-16, not {channels!r}", "channels",
                             "invalid_channels")  # fmt: skip
    return AudioFormat(rate, width, channels)


def plan(gw: Runtime, name: str | None, language: str | None) -> stt.TranscriptionPlan:
    """Model by name (an alias, a model id, or none or our program's name: the default) and the
    language as Home Assistant sends it (`en`, `en-US`, `en_US`) as an explicit language."""
    model = "whisper-1" if not name or name == "gateway" else name
    lang = language.replace("_", "-").split("-")[0] if isinstance(language, str) else None
    return stt.check(gw, stt.TranscriptionInput(model, language=lang or None))


class Utterance:
    """The audio of one utterance, converted to 16 kHz mono 16-bit as it arrives."""

    def __init__(self, plan: stt.TranscriptionPlan, max_audio_s: float) -> None:
        self.plan = plan
        self.max_bytes = int(max_audio_s * RATE) * WIDTH
        self.converter = AudioChunkConverter(rate=RATE, width=WIDTH, channels=CHANNELS)
        self.pcm = bytearray()
        self.max_audio_s = max_audio_s
        self.live: Live | None = None

    def add(self, event: Event) -> None:
        fmt = check_format(event.data)
        audio = event.payload or b""
        if len(audio) % (fmt.width * fmt.channels):
            raise InvalidRequest("audio-chunk holds a partial sample frame", "audio",
                                 "invalid_audio")  # fmt: skip
        chunk = AudioChunk(fmt.rate, fmt.width, fmt.channels, audio)
        self.pcm += self.converter.convert(chunk).audio
        if len(self.pcm) > self.max_bytes:
            raise InvalidRequest(f"utterance is longer than {self.max_audio_s:g} s", "audio",
                                 "audio_too_long")  # fmt: skip

    def samples(self) -> np.ndarray:
        """The utterance as Whisper hears it: float32 in [-1, 1)."""
        return np.frombuffer(bytes(self.pcm), np.int16).astype(np.float32) / 32768.0


class Live:
    """An utterance transcribed while it streams: `transcript-start` before its first chunk,
    then a chunk per piece of words two partial decodes agree on."""

    def __init__(self, gw: Runtime, utt: Utterance, interval_s: float, send: Send) -> None:
        self.turn = LiveTurn(gw, utt.plan)
        self.ended = asyncio.Event()
        self.started = False
        self.send = send
        self.task = asyncio.create_task(follow(self.turn, utt.samples, interval_s, self.chunk,
                                               self.ended))  # fmt: skip

    async def chunk(self, piece: str) -> None:
        if not self.started:
            self.started = True
            await self.send(TranscriptStart(language=self.turn.lang).event())
        await self.send(TranscriptChunk(piece).event())

    def cancel(self) -> None:
        self.task.cancel()

    async def finish(self, utt: Utterance) -> None:
        """The audio stopped: the last chunks, the final decode's rest, the transcript."""
        self.ended.set()
        await self.task
        await self.turn.final(utt.samples())
        piece = self.turn.take()
        if piece:
            await self.chunk(piece)
        elif not self.started:
            await self.send(TranscriptStart(language=self.turn.lang).event())
        await self.send(Transcript(self.turn.text(), language=self.turn.lang).event())
        await self.send(TranscriptStop().event())


async def _empty(send: Send, language: str | None) -> None:
    await send(TranscriptStart(language=language).event())
    await send(Transcript("", language=language).event())
    await send(TranscriptStop().event())


async def transcribe(gw: Runtime, utt: Utterance, send: Send) -> None:
    """Transcribe an utterance as an interactive job and send the streaming reply."""
    language = utt.plan.language
    live, utt.live = utt.live, None
    if live is not None and len(utt.pcm) >= stt.MIN_AUDIO_S * RATE * WIDTH:
        await live.finish(utt)
        return
    if live is not None:
        live.cancel()  # a blip: answered as without live mode
    if not utt.pcm:
        await _empty(send, language)
        return
    try:
        work = await stt.prepare_samples(gw, utt.plan, utt.samples())
    except InvalidRequest as exc:
        if exc.code == "audio_too_short":  # a blip of sound is heard as nothing said
            await _empty(send, language)
            return
        raise
    async with stt.start(gw, work, Level.interactive, None) as job:
        first = await job.first()
        if first is not None and first.language:
            language = stt.output_language(utt.plan.task, first.language)
        await send(TranscriptStart(language=language).event())
        texts = []
        async for piece in job.deltas(first):
            texts.append(piece)
            await send(TranscriptChunk(piece).event())
    # Many clients stop reading at `transcript`: it comes after the chunks.
    await send(Transcript("".join(texts), language=language).event())
    await send(TranscriptStop().event())
