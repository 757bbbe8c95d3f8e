"""The Wyoming front door with the real models and the `wyoming` library's own client, against
the session's gateway (its listener on a free port): describe, speech-to-text, streaming
text-to-speech, a round trip, and a Home-Assistant-shaped session."""

from __future__ import annotations

import asyncio

import httpx
import numpy as np
import pytest
from wyoming.asr import Transcribe
from wyoming.audio import AudioStart, AudioStop
from wyoming.info import Describe, Info
from wyoming.tts import (
    Synthesize,
    SynthesizeChunk,
    SynthesizeStart,
    SynthesizeStop,
    SynthesizeVoice,
)

from gateway.scheduler import render_status

from ..conftest import PASSAGE, LiveServer, encode, metric, wer
from ..support.wyoming_util import (
    COMMAND,
    REPLY,
    REPLY_PIECES,
    audio_of,
    client,
    pcm,
    read_until,
    send_utterance,
    shape,
    spoken,
    stream_reply,
)

STT_ORDER = ["transcript-start", "transcript-chunk", "transcript", "transcript-stop"]
TTS_STREAM_ORDER = ["audio-start", "audio-chunk", "audio-stop", "synthesize-stopped"]


async def _describe(port: int, read_timeout: float | None = None) -> Info:
    c = client(port)
    if read_timeout is not None:
        c.read_timeout = read_timeout
    async with c:
        await c.write_event(Describe().event())
        event = await c.read_event()
    assert event is not None and Info.is_type(event.type), event
    return Info.from_event(event)


def test_describe_lists_models_voices_and_their_languages(server: LiveServer) -> None:
    info = asyncio.run(_describe(server.wyoming_port))
    (asr,) = info.asr
    (tts,) = info.tts
    assert asr.installed and tts.installed and asr.version and asr.attribution.name
    assert asr.supports_transcript_streaming and tts.supports_synthesize_streaming
    models = {m.name: m.languages for m in asr.models}
    assert models["whisper-tiny.en"] == ["en"]
    assert len(models["whisper-base"]) >= 99 and {"en", "de", "ja"} <= set(models["whisper-base"])
    voices = {v.name: v.languages for v in tts.voices}
    assert voices["jf_alpha"] == ["ja", "en"]  # Japanese voices read English text too
    assert set(voices["alloy"]) >= {"en"}  # the OpenAI names are voices too


@pytest.mark.slow
def test_describe_answers_at_once_while_a_long_transcription_runs(server: LiveServer) -> None:
    """Home Assistant waits about 1 s for `info` and tries three times: the protocol's margin."""
    long_clip = encode(np.tile(spoken(PASSAGE), 3), 16000, "wav", "pcm_s16le", "s16")

    async def main() -> Info:
        async with httpx.AsyncClient(base_url=server.url, timeout=600) as http:
            files = {"file": ("long.wav", long_clip, "audio/wav")}
            post = asyncio.ensure_future(http.post("/v1/audio/transcriptions", files=files,
                                                   data={"model": "whisper-1"}))  # fmt: skip
            try:
                while not _running(server):
                    assert not post.done(), post.result().text
                    await asyncio.sleep(0.05)
                for attempt in range(3):
                    try:
                        return await _describe(server.wyoming_port, read_timeout=1.0)
                    except TimeoutError:
                        if attempt == 2:
                            raise
                raise AssertionError("unreachable")
            finally:
                post.cancel()  # the client goes away: the transcription's units are taken back
                while _running(server):  # no decode outlives the test (see test_wyoming_limits)
                    await asyncio.sleep(0.05)

    info = asyncio.run(main())
    assert info.asr and info.tts


def _running(server: LiveServer) -> bool:
    lanes = render_status(server.gateway.scheduler.snapshot())["lanes"]
    return bool(lanes["gpu"]["busy"] or lanes["cpu"]["busy"] or lanes["cpu"]["background_busy"])


@pytest.mark.parametrize(
    "rate, width, channels, request_",
    [
        (44100, 4, 2, Transcribe(name="whisper-1", language="en-US")),
        (8000, 1, 1, Transcribe(name="tiny.en")),
        (22050, 3, 1, None),  # no `transcribe`: the default model
    ],
)
@pytest.mark.slow
def test_speech_to_text_any_format(
    server: LiveServer, rate: int, width: int, channels: int, request_: Transcribe | None
) -> None:
    async def main() -> list:
        async with client(server.wyoming_port) as c:
            data = pcm(spoken(COMMAND), rate, width, channels)
            await send_utterance(c, data, rate, width, channels, 2048, request_)
            return await read_until(c, "transcript-stop")

    events = asyncio.run(main())
    assert shape(events) == STT_ORDER, [e.type for e in events]
    (final,) = [e for e in events if e.type == "transcript"]
    chunks = [e.data["text"] for e in events if e.type == "transcript-chunk"]
    assert "".join(chunks) == final.data["text"]
    assert wer(COMMAND, final.data["text"]) <= 0.15, final.data["text"]
    assert final.data["language"] == "en"


def test_audio_stop_with_no_audio_is_an_empty_transcript(server: LiveServer) -> None:
    async def main() -> tuple[list, list]:
        async with client(server.wyoming_port) as c:
            await c.write_event(Transcribe(language="en").event())
            await c.write_event(AudioStop().event())
            bare = await read_until(c, "transcript-stop")
            await c.write_event(AudioStart(16000, 2, 1).event())
            await c.write_event(AudioStop().event())
            return bare, await read_until(c, "transcript-stop")

    for events in asyncio.run(main()):
        assert [e.type for e in events] == ["transcript-start", "transcript", "transcript-stop"]
        assert events[1].data["text"] == ""


@pytest.mark.slow
def test_streaming_speech_sends_each_sentence_as_it_is_ready_then_reads_back(
    server: LiveServer,
) -> None:
    async def main() -> tuple[list, list, list]:
        async with client(server.wyoming_port) as c:
            v = SynthesizeVoice(name="jf_alpha")
            await c.write_event(SynthesizeStart(voice=v).event())
            for piece in REPLY_PIECES[:2]:  # the first sentence is complete after these
                await c.write_event(SynthesizeChunk(piece).event())
            early = await read_until(c, "audio-chunk")  # before the rest of the text is sent
            for piece in REPLY_PIECES[2:]:
                await c.write_event(SynthesizeChunk(piece).event())
            await c.write_event(Synthesize(REPLY, voice=v).event())  # for old servers: ignored
            await c.write_event(SynthesizeStop().event())
            rest = await read_until(c, "synthesize-stopped")
            audio = audio_of(early + rest)
            await send_utterance(c, audio, 24000, 2, 1, 1024, Transcribe(language="en"))
            return early, rest, await read_until(c, "transcript-stop")

    early, rest, heard = asyncio.run(main())
    events = early + rest
    assert shape(events) == TTS_STREAM_ORDER, shape(events)
    starts = [e for e in events if e.type == "audio-start"]
    assert len(starts) == 1 and starts[0].data | {"timestamp": None} == {
        "rate": 24000, "width": 2, "channels": 1, "timestamp": None}  # fmt: skip
    chunk_formats = {(e.data["rate"], e.data["width"], e.data["channels"])
                     for e in events if e.type == "audio-chunk"}  # fmt: skip
    assert chunk_formats == {(24000, 2, 1)}
    text = [e for e in heard if e.type == "transcript"][0].data["text"]
    assert wer(REPLY, text) <= 0.15, text  # the words once: the repeated `synthesize` is not spoken


@pytest.mark.slow
def test_plain_synthesize(server: LiveServer) -> None:
    async def main() -> list:
        async with client(server.wyoming_port) as c:
            await c.write_event(Synthesize("**Done.** The lights are on.").event())
            return await read_until(c, "audio-stop")

    events = asyncio.run(main())
    assert shape(events) == ["audio-start", "audio-chunk", "audio-stop"]
    assert len(audio_of(events)) > 24000  # over half a second of speech


def test_home_assistant_session_one_connection_after_another(server: LiveServer) -> None:
    """Describe; a command as 16 kHz 16-bit chunks of 1024 samples; a three-sentence reply
    streamed from five text chunks: each on a connection of its own, twice over."""
    before = httpx.get(server.url + "/metrics").text

    async def session() -> tuple[Info, str, bytes]:
        info = await _describe(server.wyoming_port)
        async with client(server.wyoming_port) as c:
            await send_utterance(c, pcm(spoken(COMMAND)), transcribe=Transcribe(language="en"))
            heard = await read_until(c, "transcript-stop")
        async with client(server.wyoming_port) as c:
            await stream_reply(c, REPLY_PIECES, voice="alloy")
            spoken_reply = await read_until(c, "synthesize-stopped")
        assert shape(heard) == STT_ORDER and shape(spoken_reply) == TTS_STREAM_ORDER
        return info, heard[-2].data["text"], audio_of(spoken_reply)

    for _ in range(2):
        info, text, audio = asyncio.run(session())
        assert info.asr and info.tts
        assert wer(COMMAND, text) <= 0.15, text
        assert len(audio) > 2 * 24000 * 2  # more than two seconds of speech

    after = httpx.get(server.url + "/metrics").text
    for op in ("transcribe", "synthesize-stream"):
        moved = metric(after, "gateway_requests_total", protocol="wyoming", operation=op,
                       status="200") - metric(before, "gateway_requests_total",
                                              protocol="wyoming", operation=op, status="200")  # fmt: skip
        assert moved == 2, op
    assert httpx.get(server.url + "/v1/models").status_code == 200  # HTTP counts beside it
    traffic = httpx.get(server.url + "/v1/scheduler").json()["traffic"]
    assert traffic["wyoming"]["listening"].endswith(f":{server.wyoming_port}")
    assert traffic["wyoming"]["requests"] >= 4 and traffic["http"]["requests"] >= 1


def test_zeroconf_announces_the_listener_when_asked() -> None:
    """Off by default; on, Home Assistant finds `_wyoming._tcp.local.` at the listener's port."""
    import threading

    from zeroconf import ServiceBrowser, ServiceListener, Zeroconf

    from gateway.config import Settings, WyomingSettings

    assert WyomingSettings().zeroconf is False
    found: dict[str, int | None] = {}
    seen = threading.Event()

    class Listener(ServiceListener):
        def add_service(self, zc: Zeroconf, type_: str, name: str) -> None:
            info = zc.get_service_info(type_, name)
            found[name] = info.port if info else None
            seen.set()

        def update_service(self, zc: Zeroconf, type_: str, name: str) -> None:
            pass

        def remove_service(self, zc: Zeroconf, type_: str, name: str) -> None:
            pass

    settings = Settings(wyoming=WyomingSettings(port=0, host="127.0.0.1", zeroconf=True))
    with LiveServer(settings) as live:
        zc = Zeroconf()
        try:
            ServiceBrowser(zc, "_wyoming._tcp.local.", Listener())
            seen.wait(60)  # a guard: the announcement arrives within a second or two
        finally:
            zc.close()
        assert live.wyoming_port in found.values(), found
