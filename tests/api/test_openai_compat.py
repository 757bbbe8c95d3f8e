"""What current OpenAI clients send, through the `openai` SDK as a black box against the live
gateway (issue #19, items 6 and 8): the gpt-4o model names, `instructions`, the newer voice names
and the voice object; `usage` on a streamed transcription's done event; and text whose numbers
are too long to read as words answers audio (or a clear 400), never a 500.
"""

from __future__ import annotations

import math

import httpx
import numpy as np
import openai
import pytest
from openai import OpenAI
from tokenizers import Tokenizer

from ..conftest import LiveServer, decode, models_dir, wer

SENTENCE = "Please remember to water the plants on Monday morning before you leave for work."


@pytest.fixture(scope="module")
def client(base_url: str) -> OpenAI:
    return OpenAI(base_url=base_url, api_key="any-key", timeout=300, max_retries=0)


def _pcm(data: bytes) -> np.ndarray:
    return np.frombuffer(data, "<i2").astype(np.float32) / 32768


@pytest.mark.slow
def test_current_speech_defaults_are_spoken(client: OpenAI) -> None:
    """`gpt-4o-mini-tts` with `instructions` (ignored) and the voice as an object: the same audio
    as `tts-1` with the plain name, sample for sample."""
    base = {"input": "Good morning.", "response_format": "pcm"}
    new = client.audio.speech.create(model="gpt-4o-mini-tts", voice={"id": "alloy"},
                                     instructions="Speak in a cheerful tone.", **base)  # fmt: skip
    old = client.audio.speech.create(model="tts-1", voice="alloy", **base)
    audio = _pcm(new.content)
    assert len(audio) / 24000 > 0.4 and np.sqrt(np.mean(audio**2)) > 0.01
    assert new.content == old.content


@pytest.mark.parametrize("voice", ["marin", "cedar", {"id": "cedar"}])
@pytest.mark.slow
def test_newer_voice_names_speak(client: OpenAI, voice: str | dict) -> None:
    mp3 = client.audio.speech.create(model="tts-1", voice=voice, input=SENTENCE).content  # type: ignore[arg-type]
    heard = client.audio.transcriptions.create(model="gpt-4o-mini-transcribe", file=("a.mp3", mp3))
    assert wer(SENTENCE, heard.text) <= 0.15, (voice, heard.text)


@pytest.mark.slow
def test_newer_voice_names_map_like_the_old_ones(base_url: str, server: LiveServer) -> None:
    """Listed with the installed voice each stands for: `marin` a female voice, `cedar` male,
    the way `nova` and `onyx` are."""
    voices = {v["id"]: v["name"] for v in httpx.get(base_url + "/audio/voices").json()["voices"]}
    engine = server.gateway.models["kokoro"].engine
    for name, gender in [("marin", "f"), ("cedar", "m"), ("nova", "f"), ("onyx", "m")]:
        mapped = engine.openai_voice(name)
        assert voices[name] == f"{name} ({mapped})" and mapped[1] == gender, (name, voices)


def test_unknown_voice_object_is_a_400(client: OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        client.audio.speech.create(model="tts-1", voice={"id": "voice_1234"}, input="Hi.")
    assert err.value.code == "invalid_voice"


def test_models_list_the_names_clients_default_to(client: OpenAI) -> None:
    ids = {m.id for m in client.models.list()}
    assert {"gpt-4o-mini-tts", "gpt-4o-transcribe", "gpt-4o-mini-transcribe"} <= ids, ids
    assert client.models.retrieve("gpt-4o-transcribe").id == "gpt-4o-transcribe"


@pytest.mark.slow
def test_streamed_transcription_done_event_has_usage(client: OpenAI) -> None:
    """The SDK parses the done event into its typed `usage`: output tokens are the transcript in
    Whisper's own tokenizer, input tokens the audio at 10 a second plus the prompt's tokens."""
    wav = client.audio.speech.create(model="tts-1", voice="alloy", input=SENTENCE,
                                     response_format="wav").content  # fmt: skip
    audio, rate = decode(wav)
    prompt = "Gardening notes."
    events = list(client.audio.transcriptions.create(
        model="gpt-4o-transcribe", file=("a.wav", wav), stream=True, prompt=prompt))  # fmt: skip
    assert [e.type for e in events][-1] == "transcript.text.done", events
    done = events[-1]
    assert wer(SENTENCE, done.text) <= 0.15, done.text
    usage = done.usage
    assert usage is not None and usage.type == "tokens", done
    tokenizer = Tokenizer.from_file(str(models_dir() / "whisper-base" / "tokenizer.json"))
    count = len(tokenizer.encode(done.text, add_special_tokens=False).ids)
    prompt_tokens = len(tokenizer.encode(prompt, add_special_tokens=False).ids)
    assert usage.output_tokens == count > 10
    details = usage.input_token_details
    assert details is not None and details.text_tokens == prompt_tokens > 0
    # within one token: the gateway measures the clip after resampling it to 16 kHz
    assert abs(details.audio_tokens - math.ceil(len(audio) / rate * 10)) <= 1
    assert usage.input_tokens == details.audio_tokens + prompt_tokens
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens


@pytest.mark.slow
def test_a_400_digit_number_is_spoken_not_a_500(client: OpenAI) -> None:
    """num2words overflows past 306 digits: such a number is read digit by digit. Streamed, so
    the test needs only the first audio (everything the caller could get wrong is checked before
    the 200); leaving early cancels the rest."""
    number = "9" * 400
    with client.audio.speech.with_streaming_response.create(
        model="tts-1", voice="alloy", input=f"The code is {number}.", response_format="pcm",
        stream_format="audio",
    ) as r:  # fmt: skip
        assert r.status_code == 200
        first = next(r.iter_bytes(48000))
    assert np.sqrt(np.mean(_pcm(first) ** 2)) > 0.01


def test_text_too_long_once_read_aloud_is_a_clear_400(client: OpenAI) -> None:
    """4096 characters fit the input limit, but read one digit at a time they are about 20,000,
    over four times the limit: a 400 before any synthesis. (Latin words make the text English;
    digits alone would go to the embedded Japanese voices' reader, see the report.)"""
    with pytest.raises(openai.BadRequestError) as err:
        client.audio.speech.create(model="tts-1", voice="alloy", input="Code " + "9" * 4091)
    assert err.value.code == "string_above_max_length"
    assert err.value.param == "input" and "read aloud" in err.value.message
