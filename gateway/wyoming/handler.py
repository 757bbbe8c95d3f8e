"""One Wyoming connection: reads events with bounds and an idle timeout, answers `describe` at
once, and runs its replies (a transcript, speech) one after another in a task of their own, so
that streamed text keeps arriving while earlier sentences are spoken. Connections and the replies
each may have pending are capped (one over gets an `error` event). A malformed frame, an idle
connection or a peer that goes away closes the connection and takes all its work back."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine
from typing import Any

from wyoming.asr import Transcribe
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.error import Error
from wyoming.event import Event
from wyoming.info import Describe
from wyoming.ping import Ping, Pong
from wyoming.server import AsyncEventHandler
from wyoming.tts import Synthesize, SynthesizeChunk, SynthesizeStart, SynthesizeStop

from ..config import WyomingSettings
from ..errors import GatewayError, InvalidRequest, LimitReached, Unavailable, as_domain
from ..runtime import Runtime
from ..tasks.transcription import TranscriptionPlan
from ..traffic import Traffic, status_of
from . import speech_to_text as asr
from . import text_to_speech as tts
from .framing import FrameError, read_event
from .info import describe

log = logging.getLogger(__name__)
PROTOCOL = "wyoming"
now = time.monotonic


class Connection(AsyncEventHandler):
    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        gw: Runtime,
        settings: WyomingSettings,
        traffic: Traffic,
    ) -> None:
        super().__init__(reader, writer)
        self.gw, self.settings, self.traffic = gw, settings, traffic
        self.peer = str(writer.get_extra_info("peername"))
        self.plan: TranscriptionPlan | None = None  # from `transcribe`, for the next utterance
        self.utterance: asr.Utterance | None = None
        self.skip_audio = False  # this utterance already failed: its audio is dropped quietly
        self.stream: tts.SpeechStream | None = None
        self.work: asyncio.Task[None] | None = None  # the latest reply; each waits for the last
        self.pending: set[asyncio.Task[None]] = set()  # every reply not yet done

    # -- the connection -------------------------------------------------------------------------

    async def run(self) -> None:
        if self.traffic.connections[PROTOCOL] >= self.settings.max_connections:
            await self._refuse()
            return
        self._is_running = True
        self.traffic.connections[PROTOCOL] += 1
        read: asyncio.Future[Event | None] | None = None
        idle = self.settings.idle_timeout_s
        active = now()  # the last event that asked for work (ping and describe don't)
        try:
            while self._is_running:
                read = asyncio.ensure_future(read_event(self.reader))
                while not (await asyncio.wait({read}, timeout=max(active + idle - now(), 0)))[0]:
                    if not self._busy():
                        log.info("wyoming connection idle; closing", extra={"peer": self.peer})
                        return
                    active = now()  # its work runs: the clock starts again
                event = read.result()
                if event is None:
                    break
                if not (Ping.is_type(event.type) or Describe.is_type(event.type)):
                    active = now()
                await self.handle_event(event)
        except FrameError as exc:
            log.warning("wyoming frame refused; closing: %s", exc, extra={"peer": self.peer})
            await self._send_quietly(Error(str(exc), "malformed_frame").event())
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the peer went away: the finally clause takes its work back
        finally:
            if read is not None and not read.done():
                read.cancel()
            self._drop_utterance()
            await self._cancel_work()
            self.traffic.connections[PROTOCOL] -= 1
            self.writer.close()

    async def _refuse(self) -> None:
        limit = self.settings.max_connections
        log.warning("wyoming connection refused: %d open", limit, extra={"peer": self.peer})
        err = Unavailable(f"at most {limit} Wyoming connections may be open at once", None,
                          "too_many_connections")  # fmt: skip
        self.traffic.record(PROTOCOL, "connection", status_of(err), 0.0)
        await self._send_quietly(Error(err.message, err.code).event())
        self.writer.close()

    def _busy(self) -> bool:
        return self.stream is not None or bool(self.pending)

    async def _cancel_work(self) -> None:
        """Every reply of the connection is cancelled (each leaves its scheduler job: its queued
        units are taken back), and what they held (audio, text) is let go at once."""
        work = list(self.pending)
        for task in work:
            task.cancel()
        await asyncio.gather(*work, return_exceptions=True)
        # The connection and its last reply's task refer to each other (the closure holds the
        # connection, `work` the task, whose CancelledError's frames hold the utterances): only
        # the cycle collector would free them, at its next full pass.
        self.work = None

    async def _send_quietly(self, event: Event) -> None:
        try:
            await asyncio.wait_for(self.write_event(event), 5.0)
        except (TimeoutError, ConnectionError, RuntimeError):
            pass

    async def error(self, exc: GatewayError) -> None:
        log.info("wyoming error event: %s", exc.message, extra={"code": exc.code})
        await self.write_event(Error(exc.message, exc.code or exc.type).event())

    def room(self) -> None:
        """Raises when the connection has as many replies pending as it may."""
        limit = self.settings.max_pending
        if len(self.pending) >= limit:
            raise LimitReached(f"at most {limit} replies may be pending on one connection; "
                               "wait for one to finish", None, "too_many_pending")  # fmt: skip

    def spawn(self, operation: str, reply: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Run a reply after the one before it; its failure becomes an `error` event. Refused
        (LimitReached) when the connection has too many replies pending."""
        try:
            self.room()
        except LimitReached:
            reply.close()
            raise
        before = self.work

        async def run() -> None:
            t0 = time.perf_counter()
            status = 200
            try:
                if before is not None:
                    await asyncio.wait({before})
                await reply
            except asyncio.CancelledError:
                status = 499
                raise
            except ConnectionError:
                status = 499  # the peer went away mid-reply: no one to tell, nothing failed
            except Exception as exc:
                err = as_domain(exc)
                status = status_of(err)
                if err.kind == "internal":
                    log.error("wyoming %s failed", operation, exc_info=exc)
                await self._send_quietly(Error(err.message, err.code or err.type).event())
            finally:
                reply.close()  # never awaited when cancelled while waiting: no warning
                elapsed = time.perf_counter() - t0
                self.traffic.record(PROTOCOL, operation, status, elapsed)

        self.work = asyncio.create_task(run(), name=f"wyoming {operation}")
        self.pending.add(self.work)
        self.work.add_done_callback(self.pending.discard)
        return self.work

    # -- events ---------------------------------------------------------------------------------

    async def handle_event(self, event: Event) -> bool:
        err: GatewayError
        try:
            self._dispatch(event)
        except (KeyError, TypeError, ValueError, AttributeError):  # a field missing or mistyped
            err = InvalidRequest(f"malformed {event.type!r} event", None, "invalid_event")
            self.traffic.record(PROTOCOL, event.type, status_of(err), 0.0)
            await self.error(err)
        except Exception as exc:  # a domain error, an unknown model...: what HTTP would answer
            err = as_domain(exc)
            self.traffic.record(PROTOCOL, event.type, status_of(err), 0.0)
            await self.error(err)
        if Describe.is_type(event.type):
            await self.write_event(describe(self.gw).event())
        elif Ping.is_type(event.type):
            await self.write_event(Pong(text=Ping.from_event(event).text).event())
        return True

    def _dispatch(self, event: Event) -> None:
        kind = event.type
        if Describe.is_type(kind) or Ping.is_type(kind):
            return
        if Transcribe.is_type(kind):
            self._transcribe(Transcribe.from_event(event))
        elif AudioStart.is_type(kind) or AudioChunk.is_type(kind) or AudioStop.is_type(kind):
            self._audio(event)
        elif SynthesizeStart.is_type(kind):
            voice = tts.choose_voice(self.gw, event.data.get("voice"))
            self.stream = tts.SpeechStream(tts.Speaker(self.gw, voice, self.write_event))
            try:
                self.spawn("synthesize-stream", self.stream.run())
            except GatewayError as exc:
                self.stream.fail(exc)  # its chunks are dropped quietly until its stop
                raise
        elif SynthesizeChunk.is_type(kind):
            if self.stream is None:
                raise InvalidRequest("synthesize-chunk before synthesize-start", None,
                                     "chunk_before_start")  # fmt: skip
            self._chunk(SynthesizeChunk.from_event(event).text)
        elif SynthesizeStop.is_type(kind):
            if self.stream is not None:
                self.stream.close()
                self.stream = None
        elif Synthesize.is_type(kind):
            if self.stream is None:  # inside a stream it repeats the text for old servers
                self._synthesize(event)
        else:
            raise InvalidRequest(f"unknown or unexpected event {kind!r}", None, "unknown_event")

    def _transcribe(self, request: Transcribe) -> None:
        self._drop_utterance()
        self.plan, self.skip_audio = None, False
        try:
            self.plan = asr.plan(self.gw, request.name, request.language)
        except Exception:
            self.skip_audio = True  # the error is the answer to this utterance
            raise

    def _audio(self, event: Event) -> None:
        if AudioStop.is_type(event.type):
            utt, self.utterance = self.utterance, None
            if self.skip_audio:
                self.skip_audio = False
                return
            if utt is None:  # audio-stop with no audio: an empty transcript
                utt = asr.Utterance(self.plan or asr.plan(self.gw, None, None), 0.0)
            self.plan = None
            self.spawn("transcribe", asr.transcribe(self.gw, utt, self.write_event))
            return
        if self.skip_audio:
            return
        try:
            if AudioStart.is_type(event.type):
                self.room()  # refused before its audio is held
                asr.check_format(event.data)
                plan = self.plan or asr.plan(self.gw, None, None)
                self.utterance = asr.Utterance(plan, self.settings.max_audio_s)
                if self.settings.live:
                    self.utterance.live = asr.Live(self.gw, self.utterance,
                                                   self.gw.settings.realtime.live_interval_s,
                                                   self.write_event)  # fmt: skip
            elif self.utterance is None:
                raise InvalidRequest(
                    "audio-chunk before audio-start", "audio", "audio_before_start"
                )
            else:
                self.utterance.add(event)
        except Exception:
            self._drop_utterance()
            self.skip_audio = True
            raise

    def _drop_utterance(self) -> None:
        if self.utterance is not None and self.utterance.live is not None:
            self.utterance.live.cancel()
        self.utterance = None

    def _chunk(self, text: str) -> None:
        assert self.stream is not None
        try:
            self.stream.add(text)
        except GatewayError as exc:
            self.stream.fail(exc)
            raise

    def _synthesize(self, event: Event) -> None:
        request = Synthesize.from_event(event)
        voice = tts.choose_voice(self.gw, event.data.get("voice"))
        speaker = tts.Speaker(self.gw, voice, self.write_event)
        speaker.count(request.text)

        async def reply() -> None:
            await speaker.say(request.text)
            await speaker.finish(stream=False)

        self.spawn("synthesize", reply())
