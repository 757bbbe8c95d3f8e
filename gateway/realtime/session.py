"""One Realtime transcription session over a WebSocket: reads client events with an idle
timeout and a maximum age, keeps the input audio buffer, finds turns with the VAD (in a worker
thread) and transcribes each committed turn as an interactive job, in order. A bad event gets an
`error` event and changes nothing; a turn past `max_pending_turns` gets an `error` event; a
disconnect cancels the session's turns (their queued units are taken back, their audio freed)."""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

import numpy as np

from ..config import RealtimeSettings
from ..errors import GatewayError, InvalidRequest, LimitReached, Unavailable, as_domain
from ..runtime import Runtime
from ..tasks.transcription import MIN_AUDIO_S, TranscriptionPlan
from ..traffic import Traffic, status_of
from .codecs import RATE, Decoder
from .events import Config, Event, error_event, event, new_id, parse, update
from .events import kind as event_kind
from .transcripts import AudioBuffer, Speaking, Turn, latency, transcribe
from .turns import Detector

log = logging.getLogger(__name__)
PROTOCOL = "realtime"
PATH = "/v1/realtime"


class Channel(Protocol):
    """The WebSocket as a session sees it (the api/ route adapts Starlette's)."""

    async def receive(self) -> str | bytes | None: ...  # None: the client went away
    async def send(self, data: Event) -> None: ...
    async def close(self, code: int, reason: str) -> None: ...


KNOWN = {"session.update", "transcription_session.update", "input_audio_buffer.append",
         "input_audio_buffer.commit", "input_audio_buffer.clear"}  # fmt: skip


class Closed(Exception):
    """The session ends: (WebSocket close code, reason)."""

    def __init__(self, code: int, reason: str, err: GatewayError | None = None) -> None:
        super().__init__(reason)
        self.code, self.reason, self.err = code, reason, err


class Realtime:
    """What every session shares: settings, the VAD's threads, the count of open sessions."""

    def __init__(self, gw: Runtime, traffic: Traffic, settings: RealtimeSettings) -> None:
        self.gw, self.traffic, self.settings = gw, traffic, settings
        self.executor = ThreadPoolExecutor(settings.vad_threads, thread_name_prefix="realtime-vad")
        self.open = 0
        self.sessions: set[Session] = set()
        self.closing = False
        traffic.listening[PROTOCOL] = PATH
        traffic.live[PROTOCOL]  # listed (zero turns) from the start

    def _count(self, delta: int) -> None:
        self.open += delta
        self.traffic.connections[PROTOCOL] = self.open
        self.traffic.sessions.labels(PROTOCOL).set(self.open)

    async def serve(self, channel: Channel, intent: str | None, beta: bool = False) -> None:
        """Run one session; `beta`: the client announced the beta protocol (`OpenAI-Beta:
        realtime=v1`), so the session speaks the beta names from its first event on."""
        err: GatewayError
        if intent != "transcription":
            err = InvalidRequest(f"this server serves transcription sessions only, not intent "
                                 f"{intent!r}: connect to {PATH}?intent=transcription", "intent",
                                 "unsupported_intent")  # fmt: skip
            await _refuse(channel, err, 1008, self.traffic)
            return
        if self.closing:
            err = Unavailable("the server is shutting down", None, "shutting_down")
            await _refuse(channel, err, 1001, self.traffic)
            return
        if self.open >= self.settings.max_sessions:
            err = LimitReached(f"at most {self.settings.max_sessions} realtime sessions may be "
                               "open at once; try again later", None,
                               "session_limit_reached")  # fmt: skip
            await _refuse(channel, err, 1013, self.traffic)
            return
        session = Session(self, channel, beta)
        self._count(+1)
        self.sessions.add(session)
        try:
            await session.run()
        finally:
            self.sessions.discard(session)
            self._count(-1)

    async def stop(self) -> None:
        """Refuse new sessions and end the open ones (each gets an `error` event; its turns are
        cancelled)."""
        self.closing = True
        err = Unavailable("the server is shutting down", None, "shutting_down")
        await asyncio.gather(*(_refuse(s.channel, err, 1001, self.traffic)
                               for s in list(self.sessions)))  # fmt: skip
        self.executor.shutdown(wait=False, cancel_futures=True)
        self.traffic.listening.pop(PROTOCOL, None)


async def _refuse(channel: Channel, err: GatewayError, code: int, traffic: Traffic,
                  reason: str | None = None) -> None:  # fmt: skip
    """An `error` event, then the close (its reason at most 123 bytes, as WebSocket allows)."""
    traffic.record(PROTOCOL, "session", status_of(err), 0.0)
    try:
        await channel.send(error_event(err))
        await channel.close(code, (reason or err.message).encode()[:123].decode(errors="ignore"))
    except Exception:  # noqa: BLE001 - the client already left
        pass


class Session:
    def __init__(self, door: Realtime, channel: Channel, beta: bool = False) -> None:
        self.door, self.gw, self.channel = door, door.gw, channel
        self.settings = door.settings
        self.id = new_id("sess")
        self.config = Config(beta=beta)
        self.plan: TranscriptionPlan | None = None  # resolved at the first update or commit
        self.decoder = Decoder(self.config.format)
        self.detector: Detector | None = None
        self.buffer = AudioBuffer()
        self.speech_item: str | None = None  # the turn being spoken (server_vad)
        self.speech_start = 0  # where it started
        self.speaking: Speaking | None = None  # live mode: the turn being spoken
        self.last_item: str | None = None
        self.turns: set[asyncio.Task[None]] = set()
        self.previous: asyncio.Task[None] | None = None  # each turn completes after the last
        self.lock = asyncio.Lock()

    # -- the connection -------------------------------------------------------------------------

    async def send(self, data: Event) -> None:
        async with self.lock:
            await self.channel.send(data)

    def _named(self, ga: str, beta: str) -> str:
        return beta if self.config.beta else ga

    async def run(self) -> None:
        deadline = time.monotonic() + self.settings.max_session_s
        read: asyncio.Future[Any] | None = None
        closed = Closed(1000, "client closed")
        try:
            created = self._named("session.created", "transcription_session.created")
            await self.send(event(created, session=self.config.describe(self.id)))
            while True:
                read = asyncio.ensure_future(self.channel.receive())
                while True:
                    left = deadline - time.monotonic()
                    wait = min(self.settings.idle_timeout_s, left)
                    if (await asyncio.wait({read}, timeout=max(wait, 0)))[0]:
                        break
                    if time.monotonic() >= deadline:
                        raise Closed(
                            1000,
                            "session expired",
                            InvalidRequest(
                                f"the session reached its maximum length of "
                                f"{self.settings.max_session_s:g} s",
                                code="session_expired",
                            ),
                        )
                    if not self._busy():
                        raise Closed(1000, "idle timeout", InvalidRequest(
                            f"no event for {self.settings.idle_timeout_s:g} s; closing "
                            "the session", code="idle_timeout"))  # fmt: skip
                message = read.result()
                if message is None:
                    return
                await self.handle(message)
        except Closed as exc:
            closed = exc
        except (ConnectionError, RuntimeError):
            return  # the client went away mid-send; the finally clause cancels its turns
        finally:
            if read is not None and not read.done():
                read.cancel()
            self._stop_live()
            await self._cancel_turns()
        log.info("realtime session closed: %s", closed.reason, extra={"session": self.id})
        if closed.err is not None:
            await _refuse(self.channel, closed.err, closed.code, self.door.traffic, closed.reason)

    def _busy(self) -> bool:
        return any(not t.done() for t in self.turns)

    async def _cancel_turns(self) -> None:
        turns = list(self.turns)
        for task in turns:
            task.cancel()  # leaves the scheduler job: its queued units are taken back
        await asyncio.gather(*turns, return_exceptions=True)
        # The session and its last turn's task refer to each other (the task's closure holds
        # the session; `previous` the task, whose CancelledError's frames hold every turn's
        # audio): only the cycle collector would free them, at its next full pass.
        self.previous = None

    def _room(self) -> None:
        """Raises when the session has as many turns pending as it may."""
        limit = self.settings.max_pending_turns
        if sum(not t.done() for t in self.turns) >= limit:
            raise LimitReached(f"at most {limit} turns may wait to be transcribed; wait for "
                               "one to complete", None, "too_many_pending_turns")  # fmt: skip

    # -- events ---------------------------------------------------------------------------------

    async def handle(self, message: str | bytes) -> None:
        client_id = None
        kind = "invalid"
        try:
            if not isinstance(message, str):
                raise InvalidRequest(
                    "events are JSON text frames, not binary", None, "invalid_json"
                )
            ev = parse(message)
            client_id = ev.get("event_id") if isinstance(ev.get("event_id"), str) else None
            kind = event_kind(ev)
            await self.dispatch(ev)
        except (Closed, ConnectionError):
            raise
        except Exception as exc:  # what HTTP would answer, as an error event; the session goes on
            err = as_domain(exc)
            if err.kind == "internal":
                log.error("realtime event %s failed", kind, exc_info=exc)
            # the operation label takes known event types only: a client cannot grow the metrics
            operation = kind if kind in KNOWN else "invalid"
            self.door.traffic.record(PROTOCOL, operation, status_of(err), 0.0)
            await self.send(error_event(err, client_id))

    async def dispatch(self, ev: Event) -> None:
        kind = ev["type"]
        if kind in ("session.update", "transcription_session.update"):
            await self._update(ev)
        elif kind == "input_audio_buffer.append":
            await self._append(ev)
        elif kind == "input_audio_buffer.commit":
            await self._commit_all()
        elif kind == "input_audio_buffer.clear":
            self.buffer.clear()
            self.speech_item = None
            self._stop_live()
            if self.detector is not None:
                self.detector.reset()
            await self.send(event("input_audio_buffer.cleared"))
        else:
            raise InvalidRequest(f"unsupported event type {kind!r} in a transcription session",
                                 "type", "invalid_value")  # fmt: skip

    async def _update(self, ev: Event) -> None:
        config = update(self.config, ev)
        plan = config.plan(self.gw)  # an unknown model or language changes nothing
        if config.format != self.config.format:
            self.decoder = Decoder(config.format)
        if config.vad != self.config.vad:
            self.detector, self.speech_item = None, None
            self._stop_live()
        self.config, self.plan = config, plan
        name = self._named("session.updated", "transcription_session.updated")
        await self.send(event(name, session=config.describe(self.id)))

    async def _append(self, ev: Event) -> None:
        audio = ev.get("audio")
        if not isinstance(audio, str):
            raise InvalidRequest("`audio` must be a base64 string", "audio", "invalid_type")
        limit = int(self.settings.max_append_mb * 1024 * 1024)
        if len(audio) > limit:
            raise InvalidRequest(f"one append may carry at most {limit} bytes of base64 audio",
                                 "audio", "input_audio_buffer_append_too_large")  # fmt: skip
        try:
            data = base64.b64decode(audio, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidRequest("`audio` is not valid base64", "audio", "invalid_base64") from None
        limit_samples = int(self.settings.max_buffer_s * RATE)
        incoming = len(data) * RATE // (self.config.format.rate * self.config.format.width)
        held = 0 if self.config.vad is not None else len(self.buffer)  # VAD cuts turns itself
        if held + incoming > limit_samples:
            raise InvalidRequest(f"the input audio buffer holds at most "
                                 f"{self.settings.max_buffer_s:g} s; commit or clear it",
                                 "audio", "input_audio_buffer_too_large")  # fmt: skip
        loop = asyncio.get_running_loop()  # a 15 MiB append takes a while to resample
        samples = await loop.run_in_executor(self.door.executor, self.decoder.decode, data)
        self.buffer.append(samples)
        self.door.traffic.heard(PROTOCOL, len(samples) / RATE)
        if self.config.vad is not None:
            await self._detect(samples, limit_samples)
        elif self.speaking is None and len(self.buffer) and self._live():
            # No turn detection: the turn is the buffer until the commit, its item named now
            self.speech_item = self.speech_item or new_id("item")
            self._start_live(self.speech_item, self.buffer.start)

    # -- live mode ------------------------------------------------------------------------------

    def _live(self) -> bool:
        return self.config.live_mode(self.settings.live)

    def _start_live(self, item: str, start: int) -> None:
        """Decode the turn being spoken (its audio from `start`) every `live_interval_s`."""
        if self.plan is None:
            try:
                self.plan = self.config.plan(self.gw)
            except GatewayError:
                return  # the commit reports it, as without live mode
        buffer = self.buffer
        self.speaking = Speaking(self.gw, self.plan, item, lambda: buffer.peek(start),
                                 self.settings.live_interval_s, self.send)  # fmt: skip

    def _stop_live(self) -> None:
        """The turn being spoken is dropped (a clear, a new turn detection, the session's end)."""
        if self.speaking is not None:
            self.speaking.cancel()
            self.speaking = None

    async def _detect(self, samples: np.ndarray, limit_samples: int) -> None:
        assert self.config.vad is not None
        if self.detector is None:
            self.detector = Detector(self.config.vad)
            self.detector.position = self.buffer.end - len(samples)
        detector = self.detector
        loop = asyncio.get_running_loop()
        edges = await loop.run_in_executor(self.door.executor, detector.feed, samples)
        for kind, position in edges:
            if kind == "start":
                self.speech_item, self.speech_start = new_id("item"), position
                await self.send(event("input_audio_buffer.speech_started",
                                      audio_start_ms=position * 1000 // RATE,
                                      item_id=self.speech_item))  # fmt: skip
                if self._live():
                    self._stop_live()
                    self._start_live(self.speech_item, position - self.config.vad.prefix_samples)
            else:
                await self._speech_stopped(position)
        if detector.speech_start is None:
            self.buffer.drop_before(detector.position - self.config.vad.prefix_samples)
        elif detector.position - detector.speech_start >= limit_samples:
            # a turn as long as the buffer holds is cut there; what follows is the next turn's
            cut = detector.speech_start + limit_samples
            detector.reset()
            await self._speech_stopped(cut)

    async def _speech_stopped(self, position: int) -> None:
        assert self.config.vad is not None
        item = self.speech_item or new_id("item")
        self.speech_item = None
        await self.send(event("input_audio_buffer.speech_stopped",
                              audio_end_ms=position * 1000 // RATE, item_id=item))  # fmt: skip
        start = self.speech_start - self.config.vad.prefix_samples  # with its prefix padding
        await self._commit(item, self.buffer.take(start, position))

    async def _commit_all(self) -> None:
        held = len(self.buffer)
        if held < MIN_AUDIO_S * RATE:
            raise InvalidRequest(f"buffer too small: expected at least {MIN_AUDIO_S * 1000:g} ms "
                                 f"of audio, but the buffer holds {held * 1000 / RATE:.2f} ms",
                                 None, "input_audio_buffer_commit_empty")  # fmt: skip
        self._room()  # refused before the buffer is taken: it stays for a later commit
        item = self.speech_item or new_id("item")
        self.speech_item = None
        if self.detector is not None:
            self.detector.reset()
        await self._commit(item, self.buffer.take(self.buffer.start, self.buffer.end))

    async def _commit(self, item: str, audio: np.ndarray) -> None:
        speaking, self.speaking = self.speaking, None
        if speaking is not None:
            speaking.end()  # no partial decode runs once the turn is over
        try:
            self._room()  # a turn the VAD cut is dropped: no item is committed
            if self.plan is None:
                self.plan = self.config.plan(self.gw)  # raises as HTTP would: no item committed
        except BaseException:
            if speaking is not None:
                speaking.cancel()
            raise
        previous, self.last_item = self.last_item, item
        await self.send(event("input_audio_buffer.committed", previous_item_id=previous,
                              item_id=item))  # fmt: skip
        content = [{"type": "input_audio", "transcript": None}]
        added = {"id": item, "type": "message", "object": "realtime.item", "status": "completed",
                 "role": "user", "content": content}  # fmt: skip
        name = self._named("conversation.item.added", "conversation.item.created")
        await self.send(event(name, previous_item_id=previous, item=added))
        turn = Turn(item, audio, self.plan, time.perf_counter(), speaking)
        self._spawn(turn)

    def _spawn(self, turn: Turn) -> None:
        before, traffic = self.previous, self.door.traffic

        async def run() -> None:
            try:
                if before is not None:
                    await asyncio.wait({before})
                status, _ = await transcribe(self.gw, turn, self.send)
            except asyncio.CancelledError:
                traffic.record(PROTOCOL, "turn", 499, latency(turn))  # the client went away
                raise
            except ConnectionError:
                traffic.record(PROTOCOL, "turn", 499, latency(turn))
                return
            traffic.record(PROTOCOL, "turn", status, latency(turn))
            traffic.turn(PROTOCOL, status < 400, latency(turn))

        task = asyncio.create_task(run(), name=f"realtime turn {turn.item_id}")
        self.previous = task
        self.turns.add(task)
        task.add_done_callback(self.turns.discard)
