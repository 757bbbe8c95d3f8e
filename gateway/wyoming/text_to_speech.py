"""Wyoming text-to-speech: plain `synthesize`, and the stream `synthesize-start` ->
`synthesize-chunk`* -> `synthesize-stop`. The reply is `audio-start` (24 kHz, 16-bit, mono, once
for the whole stream), each sentence's `audio-chunk`s as soon as it is ready, `audio-stop`, and
`synthesize-stopped` after a stream. Every sentence is an interactive speech job via tasks/."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import numpy as np
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.event import Event
from wyoming.tts import SynthesizeStopped

from ..errors import GatewayError, InvalidRequest
from ..runtime import Runtime
from ..scheduler import Level
from ..tasks import catalog, speech

WIDTH, CHANNELS = 2, 1
CHUNK_SAMPLES = 4096  # about 0.17 s a chunk at 24 kHz
Send = Callable[[Event], Awaitable[None]]


def choose_voice(gw: Runtime, voice: dict | None) -> str | None:
    """`{name, speaker}` or `{language}` -> a voice for the speech task (None: its default).
    A speaker that names a voice wins over the name (Kokoro voices have no speakers of their
    own); a language picks the first voice that speaks it."""
    if not isinstance(voice, dict):
        return None
    name, speaker, language = voice.get("name"), voice.get("speaker"), voice.get("language")
    known = {v.name: v for v in catalog.voices(gw)}
    if isinstance(speaker, str) and speaker in known:
        return speaker
    if isinstance(name, str) and name:
        return name
    if isinstance(language, str) and language:
        lang = language.replace("_", "-").split("-")[0].lower()
        for entry in known.values():
            if lang in entry.languages:
                return entry.name
        raise InvalidRequest(f"no voice speaks {language!r}", "voice", "invalid_voice")
    return None


def default_voice(gw: Runtime) -> str:
    """The first installed voice (Home Assistant sends no voice until the user picks one)."""
    voices = catalog.voices(gw)
    return voices[0].name if voices else "alloy"


def pcm16(audio: np.ndarray) -> bytes:
    return (np.clip(audio, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()


class Speaker:
    """Sends one reply's audio: `audio-start` before the first sentence, chunks as each is made."""

    def __init__(self, gw: Runtime, voice: str | None, send: Send) -> None:
        self.gw, self.send = gw, send
        self.voice = voice or default_voice(gw)
        self.rate: int | None = None
        self.chars = 0

    def count(self, text: str) -> None:
        """Characters for the whole reply are limited as one HTTP request's are."""
        self.chars += len(text)
        limit = self.gw.settings.server.max_input_chars
        if self.chars > limit:
            raise InvalidRequest(f"text is {self.chars} characters; the limit is {limit}",
                                 "text", "string_above_max_length")  # fmt: skip

    async def _start(self, rate: int) -> None:
        if self.rate is None:
            self.rate = rate
            await self.send(AudioStart(rate, WIDTH, CHANNELS).event())

    async def _audio(self, audio: np.ndarray) -> None:
        data = pcm16(audio)
        step = CHUNK_SAMPLES * WIDTH
        assert self.rate is not None
        for i in range(0, len(data), step):
            await self.send(AudioChunk(self.rate, WIDTH, CHANNELS, data[i : i + step]).event())

    async def say(self, text: str, quiet_if_nothing: bool = False) -> None:
        """Speak a piece of text (one sentence in a stream, the whole text otherwise)."""
        req = speech.SpeechInput("tts-1", text, self.voice, stream=True)
        try:
            plan = await speech.plan(self.gw, req)
        except InvalidRequest as exc:
            if quiet_if_nothing and exc.code in ("empty_input", "nothing_to_speak"):
                return  # a piece of Markdown with no words in it
            raise
        async with speech.start(self.gw, plan, Level.interactive, None) as job:
            first = await job.first()
            await self._start(job.sample_rate)
            await self._audio(first)
            async for audio in job.rest():
                await self._audio(audio)

    async def finish(self, stream: bool) -> None:
        if self.rate is None:  # nothing was spoken: still a well-formed (empty) reply
            await self._start(24000)
        await self.send(AudioStop().event())
        if stream:
            await self.send(SynthesizeStopped().event())


class SpeechStream:
    """A `synthesize-start` stream: text pieces are cut into whole sentences, which a worker
    speaks one after another while more text arrives."""

    def __init__(self, speaker: Speaker) -> None:
        self.speaker = speaker
        self.buffer = ""
        self.sentences: asyncio.Queue[str | None] = asyncio.Queue()
        self.failed = False

    def add(self, text: str) -> None:
        if self.failed:
            return
        self.speaker.count(text)
        done, self.buffer = catalog.sentences_so_far(self.buffer + text)
        if done.strip():
            self.sentences.put_nowait(done)

    def fail(self, exc: GatewayError) -> None:
        """The stream broke a limit (the error was sent): speak nothing more, end no stream."""
        self.failed = True
        self.buffer = ""
        self.sentences.put_nowait(None)

    def close(self) -> None:
        if self.failed:
            return
        if self.buffer.strip():
            self.sentences.put_nowait(self.buffer)
        self.buffer = ""
        self.sentences.put_nowait(None)

    async def run(self) -> None:
        while (text := await self.sentences.get()) is not None:
            if not self.failed:
                await self.speaker.say(text, quiet_if_nothing=True)
        if not self.failed:
            await self.speaker.finish(stream=True)
