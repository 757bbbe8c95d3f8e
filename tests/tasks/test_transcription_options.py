"""The 2026 OpenAI transcription surface (issue 32, part 4) through the `openai` SDK against the
session's gateway: the new model names, `languages[]`, `keywords[]`, `include[]=logprobs`,
`chunking_strategy` and `usage` on HTTP, and the same fields in a Realtime session; each bad
value a 400 (or the protocol's error event) naming its parameter."""

from __future__ import annotations

import asyncio
import math
from functools import lru_cache
from typing import Any

import numpy as np
import openai
import pytest
from faster_whisper import WhisperModel
from openai import OpenAI

from gateway.audio.decode import decode_audio
from gateway.engines.base import Device
from gateway.engines.whisper import TranscribeUnit, WhisperEngine
from gateway.tasks.transcription import live_requested
from gateway.wyoming.speech_to_text import plan as wyoming_plan

from ..conftest import LiveServer, encode, models_dir, spoken_16k, tone_wav
from ..support.realtime_util import appends, pcm16, sdk

# Said by the embedded voice, whisper-tiny.en hears "2-year plug" and "Naboo Casa" without the
# keywords (checked below, so a change of model or voice that makes the test moot shows)
DEVICES = "Switch off the Tuya plug next to the Nabu Casa box."
KEYWORDS = ["Tuya", "Nabu Casa"]
SENTENCE = "Please remember to water the plants on Monday morning before you leave for work."
TINY = "whisper-tiny.en"


@pytest.fixture(scope="module")
def client(base_url: str) -> OpenAI:
    return OpenAI(base_url=base_url, api_key="any-key", timeout=300, max_retries=0)


@lru_cache(maxsize=4)
def _spoken(text: str) -> np.ndarray:
    (audio,) = spoken_16k([text], voice="alloy")
    return audio


def _said(text: str, silence_s: float = 0.3) -> np.ndarray:
    audio = _spoken(text)  # synthesized once, whatever silence leads it
    quiet = np.zeros(int(16000 * silence_s), np.float32)
    return np.concatenate([quiet, audio, np.zeros(4800, np.float32)])


def _wav(audio: np.ndarray) -> tuple[str, bytes]:
    return ("said.wav", encode(audio, 16000, "wav", "pcm_s16le", "s16"))


def test_new_and_dated_names_are_aliases(server: LiveServer) -> None:
    gw = server.gateway
    default = gw.settings.models.transcription_default
    for name in ("gpt-transcribe", "gpt-live-transcribe", "gpt-4o-mini-transcribe-2025-12-15",
                 "gpt-4o-transcribe-2026-03-01", "gpt-transcribe-2026-07-01"):  # fmt: skip
        assert gw.resolve(name, "transcription") == default, name
    assert gw.resolve("whisper-tiny.en", "transcription") == TINY
    assert live_requested("gpt-live-transcribe") and live_requested(
        "gpt-live-transcribe-2026-07-01"
    )
    assert not live_requested("gpt-transcribe") and not live_requested("whisper-1")


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"language": "en", "languages": ["en"]}, "languages"),
        ({"languages": ["xx"]}, "languages"),
        ({"model": TINY, "languages": ["de"]}, "languages"),
        ({"keywords": ["two\nlines"]}, "keywords"),
        ({"keywords": ["<tag>"]}, "keywords"),
        ({"keywords": [f"term{i}" for i in range(51)]}, "keywords"),
        ({"keywords": ["x" * 65]}, "keywords"),
        ({"include": ["logprobs"], "response_format": "text"}, "include[]"),
        ({"include": ["segments"]}, "include[]"),
        ({"chunking_strategy": {"type": "server_vad", "threshold": 2}},
         "chunking_strategy.threshold"),
        ({"chunking_strategy": {"type": "semantic_vad"}}, "chunking_strategy"),
        ({"extra_body": {"chunking_strategy": "sometimes"}}, "chunking_strategy"),
    ],
)  # fmt: skip
def test_bad_new_fields_are_400s(client: OpenAI, fields: dict[str, Any], param: str) -> None:
    fields = {"model": "whisper-1", **fields}
    with pytest.raises(openai.BadRequestError) as err:
        client.audio.transcriptions.create(file=("tone.wav", tone_wav(0.5)), **fields)
    assert err.value.status_code == 400 and err.value.param == param, err.value.body


def test_deployment_keywords_reach_wyoming_requests(
    server: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Wyoming request names no keywords: the deployment's `whisper.keywords` are its hotwords;
    an HTTP request's own are added after them."""
    w = server.gateway.settings.whisper
    monkeypatch.setattr(w, "keywords", "Tuya, Nabu Casa")
    assert wyoming_plan(server.gateway, None, None).extras.keywords == "Tuya, Nabu Casa"
    with pytest.raises(openai.BadRequestError) as err:  # the total length counts both
        OpenAI(base_url=server.url + "/v1", api_key="k", max_retries=0).audio.transcriptions.create(
            model="whisper-1",
            file=("t.wav", tone_wav(0.5)),
            keywords=[f"{i}" + "y" * 63 for i in range(9)],
        )
    assert err.value.param == "keywords" and "whisper.keywords" in err.value.message


@pytest.mark.slow
def test_keywords_make_device_names_recognised(client: OpenAI) -> None:
    file = _wav(_said(DEVICES))
    plain = client.audio.transcriptions.create(model=TINY, file=file).text
    biased = client.audio.transcriptions.create(model=TINY, file=file, keywords=KEYWORDS).text
    assert "Tuya" not in plain and "Nabu Casa" not in plain, plain
    assert "Tuya" in biased and "Nabu Casa" in biased, biased


@lru_cache(maxsize=1)
def _word_probabilities(wav: bytes) -> list[tuple[str, float]]:
    """faster-whisper's own word probabilities (the mean of its aligned token probabilities),
    computed here apart from the gateway, on the audio as it hears the WAV: what the gateway's
    per-token values must agree with."""
    model = WhisperModel(str(models_dir() / TINY), device="cpu", compute_type="int8")
    audio = decode_audio(wav)
    segments, _ = model.transcribe(audio, language="en", word_timestamps=True, vad_filter=True)
    return [(w.word, w.probability) for s in segments for w in s.words or []]


@pytest.mark.slow
def test_logprobs_are_the_models_token_probabilities(client: OpenAI) -> None:
    file = _wav(_said(SENTENCE))
    out = client.audio.transcriptions.create(model=TINY, file=file, include=["logprobs"])
    assert out.logprobs, out
    assert "".join(p.token or "" for p in out.logprobs).strip() == out.text
    for p in out.logprobs:
        assert p.logprob is not None and p.logprob <= 0 and p.bytes is not None
        assert bytes(int(b) for b in p.bytes).decode() == p.token
    # a word of one token: its probability is that token's (a word of several is their mean)
    tokens = {p.token: math.exp(p.logprob or 0.0) for p in out.logprobs}
    words = _word_probabilities(file[1])
    single = [(w, prob) for w, prob in words if w in tokens]
    assert len(single) >= len(words) // 2, (words, tokens)
    for word, prob in single:
        assert abs(tokens[word] - prob) < 0.002, (word, tokens[word], prob)
    assert out.usage is not None and out.usage.type == "duration"
    # streamed, the done event carries them
    events = list(client.audio.transcriptions.create(model=TINY, file=file, stream=True,
                                                      include=["logprobs"]))  # fmt: skip
    done = events[-1]
    assert done.type == "transcript.text.done" and done.logprobs is not None
    assert [(p.token, p.logprob) for p in done.logprobs] == \
        [(p.token, p.logprob) for p in out.logprobs]  # fmt: skip


@pytest.mark.slow
def test_languages_restrict_detection(client: OpenAI) -> None:
    """The embedded English voice is heard as English (the deployment's default where unsure);
    with candidates that leave English out, detection picks among them."""
    file = _wav(_said(SENTENCE))
    kw: dict[str, Any] = {"model": "whisper-base", "file": file, "response_format": "verbose_json"}
    german_or_french = client.audio.transcriptions.create(languages=["de", "fr"], **kw)
    assert german_or_french.language in ("german", "french"), german_or_french.language
    english = client.audio.transcriptions.create(languages=["en"], **kw)
    assert english.language == "english"


@pytest.mark.slow
def test_chunking_strategy_sets_the_vads_padding(client: OpenAI) -> None:
    """`prefix_padding_ms` pads the speech the VAD keeps: the first segment, timed from the
    kept speech, starts about a second earlier with 1000 ms than with none."""
    file = _wav(_said(SENTENCE, silence_s=2.0))
    starts = []
    for pad in (0, 1000):
        out = client.audio.transcriptions.create(
            model=TINY, file=file, response_format="verbose_json",
            chunking_strategy={"type": "server_vad", "prefix_padding_ms": pad},
        )  # fmt: skip
        assert out.segments and out.usage is not None and out.usage.type == "duration"
        assert abs(out.usage.seconds - len(_said(SENTENCE, 2.0)) / 16000) < 0.01
        starts.append(out.segments[0].start)
    assert 0.7 <= starts[0] - starts[1] <= 1.2, starts


@pytest.mark.slow
def test_dated_name_transcribes_with_token_usage_only(client: OpenAI) -> None:
    """A dated gpt name is transcribed; json carries no duration usage for it (its usage is the
    streamed done event's tokens), where a Whisper name's does (tests above)."""
    file = _wav(_said(SENTENCE))
    dated = client.audio.transcriptions.create(model="gpt-4o-mini-transcribe-2025-12-15", file=file)
    assert dated.usage is None and "water the plants" in dated.text.lower(), dated


async def _realtime(url: str, transcription: dict[str, Any], audio: np.ndarray) -> list[Any]:
    async with sdk(url).realtime.connect(extra_query={"intent": "transcription"}) as conn:
        await conn.recv()  # session.created
        session = {
            "type": "transcription",
            "include": ["item.input_audio_transcription.logprobs"],
            "audio": {"input": {"transcription": transcription, "turn_detection": None}},
        }
        await conn.session.update(session=session)  # type: ignore[arg-type]
        out = [await conn.recv()]
        if out[0].type == "error":
            return out
        for payload in appends(pcm16(audio), 4800):
            await conn.input_audio_buffer.append(audio=payload)
        await conn.input_audio_buffer.commit()
        while out[-1].type not in (
            "error",
            "conversation.item.input_audio_transcription.completed",
        ):
            out.append(await asyncio.wait_for(conn.recv(), 300))
        return out


@pytest.mark.slow
def test_realtime_session_takes_languages_keywords_and_logprobs(server: LiveServer) -> None:
    transcription = {"model": TINY, "languages": ["en"], "keywords": KEYWORDS}
    updated, *_, completed = asyncio.run(_realtime(server.url, transcription, _said(DEVICES)))
    given = updated.session
    assert given.include == ["item.input_audio_transcription.logprobs"], given
    assert given.audio.input.transcription.keywords == KEYWORDS
    assert given.audio.input.transcription.languages == ["en"]
    assert "Tuya" in completed.transcript and "Nabu Casa" in completed.transcript, completed
    assert completed.logprobs, completed
    joined = "".join(p.token for p in completed.logprobs).strip()
    assert joined == completed.transcript and all(p.logprob <= 0 for p in completed.logprobs)


def test_realtime_bad_languages_is_an_error_event(server: LiveServer) -> None:
    (error,) = asyncio.run(
        _realtime(server.url, {"model": TINY, "languages": ["xx"]}, np.zeros(1600, np.float32))
    )
    assert error.type == "error" and error.error.param == "languages", error


@pytest.mark.slow
def test_batched_decode_takes_keywords_and_logprobs() -> None:
    """The GPU lane's batched decode (run here on the CPU) gets the keywords and the log
    probabilities as the sequential one does."""
    engine = WhisperEngine(TINY, models_dir() / TINY, multilingual=False)
    handle = engine.load(Device("cpu", threads=1))
    unit = TranscribeUnit(audio=_said(DEVICES), offset_s=0.0, language="en",
                          hotwords=", ".join(KEYWORDS), logprobs=True)  # fmt: skip
    one, two = engine.run_batch(handle, [unit, unit], 2)
    assert one.segments == two.segments
    text = "".join(s["text"] for s in one.segments)
    assert "Tuya" in text and "Nabu Casa" in text, text
    assert one.logprobs and "".join(p["token"] for p in one.logprobs) == text
