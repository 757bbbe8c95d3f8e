"""Live transcription (tasks/live.py): LocalAgreement-2's commit rule, and Realtime sessions
whose deltas carry words while the speaker talks, with the real models and the `openai` SDK's
realtime client, audio appended at the speaker's pace."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from functools import lru_cache
from typing import Any

import numpy as np
import pytest
from wyoming.asr import Transcribe
from wyoming.audio import AudioChunk, AudioStart, AudioStop

from gateway.config import Settings
from gateway.errors import InvalidRequest
from gateway.realtime.events import Config, update
from gateway.runtime import Runtime
from gateway.tasks import transcription as stt
from gateway.tasks.live import Agreement, LiveTurn, after, split, trim_point

from ..conftest import LiveServer, spoken_16k, wer
from ..support.realtime_util import COMPLETED, MODEL, READ_TIMEOUT, appends, ga_session, pcm16, sdk
from ..support.wyoming_util import client, pcm, shape

# Spoken by Kokoro this lasts about 8 s: partial decodes have time to agree while it is spoken.
LONG = ("The little robot walked slowly across the kitchen floor, then it picked up a red cup "
        "and placed it carefully on the wooden table by the window.")  # fmt: skip
DELTA = "conversation.item.input_audio_transcription.delta"
STOPPED = "input_audio_buffer.speech_stopped"


def test_agreement_commits_what_two_decodes_share_and_never_takes_it_back() -> None:
    a = Agreement()
    assert a.feed(["The", "little", "robot", "walks"]) == []  # one decode: nothing agreed yet
    assert a.feed(["The", "little", "robot", "walked", "slowly"]) == ["The", "little", "robot"]
    # the next decode continues the committed words; case and punctuation do not disagree
    assert a.feed(["Walked", "slowly,", "across"]) == ["Walked", "slowly,"]
    assert a.feed(["slowly", "across"]) == []  # it disagrees: nothing more, nothing taken back
    assert a.committed == ["The", "little", "robot", "Walked", "slowly,"]


@pytest.mark.slow
def test_live_without_turn_detection_names_the_item_at_the_first_append(
    live_server: LiveServer,
) -> None:
    session = ga_session(None)
    session["audio"]["input"]["transcription"]["live"] = True
    events = asyncio.run(_live_session(live_server.url, session, long_speech(), commit=True))
    kinds = [e["type"] for e in events]
    (committed,) = (e for e in events if e["type"] == "input_audio_buffer.committed")
    deltas = [e for e in events if e["type"] == DELTA]
    assert {d["item_id"] for d in deltas} == {committed["item_id"]}, deltas
    assert kinds.index(DELTA) < kinds.index("input_audio_buffer.committed"), kinds
    (completed,) = (e for e in events if e["type"] == COMPLETED)
    assert "".join(d["delta"] for d in deltas) == completed["transcript"]


def test_a_long_turn_is_cut_only_after_a_segment_of_committed_words() -> None:
    segments = [{"text": " The little robot walked.", "end": 9.5},
                {"text": " It picked up a cup", "end": 21.0},
                {"text": " and placed it", "end": 24.0}]  # fmt: skip
    assert trim_point(segments, held=6, lang="en") == (4, 9.5)  # "It picked..." is not all in
    assert trim_point(segments, held=9, lang="en") == (9, 21.0)
    assert trim_point(segments, held=3, lang="en") is None  # no whole segment committed yet


def test_the_final_decode_is_aligned_past_the_committed_words() -> None:
    held = ["the", "little", "robot", "walked"]
    assert after(held, ["the", "little", "robot", "walked", "slowly"]) == 4  # as committed
    assert after(held, ["the", "little", "robots", "walked", "slowly"]) == 4  # one word heard anew
    assert after(held, ["a", "little", "robot", "walked", "slowly", "on"]) == 4
    assert after(held, ["the", "little", "robot", "walked"]) == 4  # nothing more
    assert after(held, ["something", "else", "entirely"]) == 3  # nothing shared: as many words
    assert after([], ["then", "it"]) == 0


TWO = ("Our new library opens at nine and closes at six on most weekdays.",
       "She poured a cup of tea and read a letter twice before answering.")  # fmt: skip


@pytest.mark.slow
def test_the_final_decode_keeps_the_speech_after_committed_sentences() -> None:
    """The turn's first sentence is committed; the final decode must still hear the second.
    (Forcing the committed words as Whisper's decoder prefix made it stop at the sentence's end:
    the `completed` transcript lost everything after it.)"""
    (audio,) = spoken_16k([" ".join(TWO)])
    settings = Settings()

    async def main() -> str:
        rt = Runtime(settings)
        await rt.start()
        try:
            plan = stt.check(rt, stt.TranscriptionInput("whisper-tiny.en", language="en"))
            turn = LiveTurn(rt, plan)
            turn.agreement.committed = split(TWO[0].replace("nine", "9").replace("six", "6"), "en")
            await turn.final(audio)
            return turn.text()
        finally:
            await rt.stop()

    text = asyncio.run(main())
    assert wer(" ".join(TWO), text) <= 0.2, text


@pytest.fixture(scope="module")
def live_server() -> Iterator[LiveServer]:
    """A gateway with Wyoming's live mode on, and no CPU background slot. With one, Whisper's
    partials run niced (scheduler/speculation.py), and on this shared, loaded test machine nice-19
    threads get almost no CPU: the pace test would measure the kernel, not live mode."""
    s = Settings()
    s = s.model_copy(update={
        "scheduler": s.scheduler.model_copy(update={"cpu_background_slots": 0}),
        "wyoming": s.wyoming.model_copy(update={"live": True}),
    })  # fmt: skip
    with LiveServer(s) as live:
        yield live


@lru_cache(maxsize=1)
def long_speech() -> np.ndarray:
    (speech,) = spoken_16k([LONG])
    return speech


def long_turn() -> np.ndarray:
    """The sentence with silence around it: half a second before, the VAD's pause after."""
    quiet = np.zeros(8000, np.float32)
    return np.concatenate([quiet, long_speech(), quiet, quiet, quiet, quiet])


async def _live_session(
    url: str, session: dict[str, Any], audio: np.ndarray, commit: bool = False
) -> list[dict[str, Any]]:
    """Append the turn in real time (100 ms a step) while reading the server's events, then
    commit it where asked; returns the events up to `completed`."""
    payloads = appends(pcm16(audio), 4800)
    events: list[dict[str, Any]] = []
    async with sdk(url).realtime.connect(extra_query={"intent": "transcription"}) as conn:
        await conn.recv()  # session.created
        await conn.session.update(session=session)  # type: ignore[arg-type]

        async def read() -> None:
            while not events or events[-1]["type"] != COMPLETED:
                ev = await asyncio.wait_for(conn.recv(), READ_TIMEOUT)
                events.append(ev.model_dump(exclude_unset=True))
                assert events[-1]["type"] != "error", events[-1]

        reader = asyncio.create_task(read())
        start = time.perf_counter()
        for i, payload in enumerate(payloads):
            await conn.input_audio_buffer.append(audio=payload)
            await asyncio.sleep(max(0.0, start + (i + 1) * 0.1 - time.perf_counter()))
        if commit:
            await conn.input_audio_buffer.commit()
        await reader
    return events


@pytest.mark.slow
def test_live_deltas_come_while_the_speaker_talks_and_add_up_to_completed(
    live_server: LiveServer,
) -> None:
    # a long pause ends the turn, not the sentence's comma
    session = ga_session({"type": "server_vad", "silence_duration_ms": 1200})
    session["audio"]["input"]["transcription"]["live"] = True  # the gateway's session field
    events = asyncio.run(_live_session(live_server.url, session, long_turn()))
    kinds = [e["type"] for e in events]
    started = next(e for e in events if e["type"] == "input_audio_buffer.speech_started")
    item = started["item_id"]
    deltas = [e for e in events if e["type"] == DELTA]
    assert {d["item_id"] for d in deltas} == {item}, deltas
    # words arrived before the speaker stopped (the turn is ~8 s; deltas ran from its start)
    assert kinds.index(DELTA) < kinds.index(STOPPED), kinds
    (completed,) = (e for e in events if e["type"] == COMPLETED)
    assert completed["item_id"] == item
    # append-only: what was sent is never taken back, so the pieces joined are the transcript
    assert "".join(d["delta"] for d in deltas) == completed["transcript"]
    assert wer(LONG, completed["transcript"]) <= 0.25, completed["transcript"]


async def _wyoming_live(port: int) -> tuple[list[Any], int]:
    """One utterance streamed in real time (64 ms chunks) while reading the reply; returns the
    events and how many of them came before `audio-stop` was sent."""
    audio = long_turn()
    data = pcm(audio)
    step = 1024 * 2
    events: list[Any] = []
    async with client(port) as c:

        async def read() -> None:
            while not events or events[-1].type not in ("transcript-stop", "error"):
                event = await asyncio.wait_for(c.read_event(), READ_TIMEOUT)
                assert event is not None, f"connection closed after {[e.type for e in events]}"
                events.append(event)

        await c.write_event(Transcribe(name=MODEL, language="en").event())
        await c.write_event(AudioStart(16000, 2, 1).event())
        reader = asyncio.create_task(read())
        start = time.perf_counter()
        for i in range(0, len(data), step):
            await c.write_event(AudioChunk(16000, 2, 1, data[i : i + step]).event())
            await asyncio.sleep(max(0.0, start + (i + step) / 32000 - time.perf_counter()))
        before = len(events)
        await c.write_event(AudioStop().event())
        await reader
    return events, before


@pytest.mark.slow
def test_wyoming_live_chunks_stream_and_join_to_the_transcript(live_server: LiveServer) -> None:
    events, before = asyncio.run(_wyoming_live(live_server.wyoming_port))
    kinds = [e.type for e in events]
    assert shape(events) == ["transcript-start", "transcript-chunk", "transcript",
                             "transcript-stop"], kinds  # fmt: skip
    chunks = [e.data["text"] for e in events if e.type == "transcript-chunk"]
    (final,) = [e for e in events if e.type == "transcript"]
    # words came while the audio streamed, before the client said it had stopped
    assert "transcript-chunk" in kinds[:before], (before, kinds)
    assert "".join(chunks) == final.data["text"]
    assert wer(LONG, final.data["text"]) <= 0.25, final.data["text"]


def test_live_mode_follows_the_session_then_the_model_then_the_deployment() -> None:
    def session(transcription: dict[str, Any]) -> Config:
        ev = {"type": "session.update", "session": {"type": "transcription",
              "audio": {"input": {"transcription": transcription}}}}  # fmt: skip
        return update(Config(), ev)

    assert session({"model": "gpt-live-transcribe"}).live_mode(default=False)
    assert not session({"model": "whisper-1"}).live_mode(default=False)
    assert session({"model": "whisper-1"}).live_mode(default=True)
    assert session({"model": "whisper-1", "live": True}).live_mode(default=False)
    assert not session({"model": "gpt-live-transcribe", "live": False}).live_mode(default=True)
    with pytest.raises(InvalidRequest) as bad:
        session({"live": "yes"})
    assert bad.value.param == "session.audio.input.transcription.live"
