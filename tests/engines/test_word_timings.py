"""Word timings of real speech (the timed Kokoro model), checked against truth that needs no other
model: the pauses in the audio itself. Every pause of at least 150 ms below -40 dB (Kokoro leaves
them between sentences and units, and at some commas) must lie between the two words the text puts
around it: the word before ends with a sentence or clause mark and ends no later than 30 ms into
the pause (a final stop's release, in its own sound, up to 150 ms), the word after starts no earlier than 30 ms before its end. A timing shifted by one word
(or by an encoder delay, a unit's length or a pause) breaks it. Also: every written word of a
corpus is timed, in order, apart, within the audio."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gateway.app import create_app
from gateway.audio.encode import StreamEncoder, WholeEncoder, decoder_delay
from gateway.config import Settings
from gateway.engines.base import Device, Lane
from gateway.engines.kokoro import KokoroEngine
from gateway.tasks.speech import SpeechPlan
from gateway.tasks.timings import WordClock
from gateway.text.normalize import normalize_text
from gateway.text.words import written_words

from ..conftest import decode, missing_tool, run_asgi
from ..text.test_word_map import ENGLISH, JAPANESE, _key

KOKORO = Settings().models.dir / "kokoro"
TIMED = KOKORO / "model.timed.onnx"
RATE = 24000
MARKS = ".,!?;:。、！？"
TEXT = (
    "The storm passed quickly. By noon, the streets were dry again, and people came back "
    "outside. Nobody expected the sun so soon! Children ran to the park; their parents "
    "followed slowly. It was, all in all, a lovely afternoon. Later that evening, the wind "
    "picked up again."
)

Words = list[dict[str, Any]]


def _timed_path() -> Path:
    if not TIMED.is_file():
        missing_tool(f"{TIMED} is not made (gateway models pull kokoro)")
    return TIMED


@pytest.fixture(scope="module")
def engine() -> tuple[KokoroEngine, Any]:
    # short units: more unit boundaries in a short text
    kokoro = KokoroEngine("kokoro", KOKORO, max_unit_phonemes=150, cpu_model=_timed_path())
    return kokoro, kokoro.load(Device(Lane.cpu, threads=2))


def _speak(engine: tuple[KokoroEngine, Any], text: str, voice: str, speed: float = 1.0,
           first_alone: bool = False) -> tuple[np.ndarray, Words, list[float]]:  # fmt: skip
    """The audio, its words, and the unit boundaries (seconds) that follow a sentence mark
    (units cut at a comma get a shorter pause, and the last none)."""
    kokoro, handle = engine
    units, words = kokoro.plan_words(text, voice, speed, first_alone=first_alone)
    clock = WordClock(SpeechPlan("kokoro", units, RATE, words))
    audio, out, boundaries = [], [], []
    for unit in units:
        result = kokoro.run(handle, unit)
        out += clock.add(result)
        audio.append(result.audio)
        if unit.pause_s >= 0.15:  # a sentence's end: the unit's audio ends in that pause
            boundaries.append(clock.seconds - unit.pause_s / 2)
    return np.concatenate(audio), out, boundaries


def pauses(audio: np.ndarray, rate: int = RATE) -> list[tuple[float, float]]:
    """(start, end) seconds of every run of 10 ms frames at least 150 ms long and 40 dB below
    the loudest frame, leading and trailing silence excluded."""
    hop = rate // 100
    frames = audio[: len(audio) // hop * hop].reshape(-1, hop)
    level = 20 * np.log10(np.sqrt((frames**2).mean(axis=1)) + 1e-9)
    quiet = level < level.max() - 40
    out, start = [], None
    for i, q in enumerate([*quiet, False]):
        if q and start is None:
            start = i
        elif not q and start is not None:
            if (i - start) * hop >= 0.15 * rate and start > 0 and i < len(quiet):
                out.append((start * hop / rate, i * hop / rate))
            start = None
    return out


def check_pauses(
    audio: np.ndarray, words: Words, boundaries: list[float] | None = None, rate: int = RATE
) -> int:
    """The pause truth (see the module doc). Kokoro also pauses now and then inside a sentence
    (a breath before `and`), so the text's side is checked where the text is sure: a pause
    holding a unit boundary (given, in seconds) follows the unit's last word, which ends with a
    mark. Returns how many pauses follow a word with a sentence or clause mark."""
    marked = 0
    held = set()
    for p0, p1 in pauses(audio, rate):
        before = [w for w in words if w["start"] < p0]
        after = [w for w in words if w["start"] >= p0]
        if not before or not after:
            continue  # silence before the first word or after the last
        w0, w1 = before[-1], after[0]
        if w0["end"] >= p1 and _paused_inside(str(w0["word"])):
            continue  # `555-123-4567` is read in groups, with pauses: inside one written word
        if w0["end"] > p0 + 0.03:
            # A final stop (`sharp.`): its closure is silence inside the word, and its release,
            # when quieter than the pause threshold, ends the word inside the pause (seen: 1.80 s
            # in a pause from 1.70 s). Only by a closure and a release: the word ends at most
            # 150 ms into the pause, in its own sound.
            assert w0["end"] <= p0 + 0.15 and _ends_in_sound(audio, w0, rate), (p0, p1, w0)
        assert w1["start"] >= p1 - 0.03, (p0, p1, w1)
        marked += str(w0["word"])[-1] in MARKS
        for b in boundaries or []:
            if p0 <= b <= p1:
                assert str(w0["word"])[-1] in MARKS, (p0, p1, w0, w1)
                held.add(b)
    assert held == set(boundaries or []), (boundaries, held)  # each boundary is in a pause
    return marked


def _ends_in_sound(audio: np.ndarray, word: dict[str, Any], rate: int) -> bool:
    """Whether the word's last 30 ms hold a 10 ms frame no more than 40 dB under the loudest
    frame of the word."""
    hop = rate // 100
    first, last = round(float(word["start"]) * 100), round(float(word["end"]) * 100)
    sound = audio[first * hop : last * hop]
    frames = sound[: len(sound) // hop * hop].reshape(-1, hop)
    level = 20 * np.log10(np.sqrt((frames.astype(np.float64) ** 2).mean(axis=1)) + 1e-9)
    return bool((level[-3:] >= level.max() - 40).any())


def _paused_inside(word: str) -> bool:
    return any(mark in normalize_text(word, "en-us").rstrip(MARKS) for mark in MARKS)


def check_words(words: Words, seconds: float) -> None:
    assert words
    for w in words:
        assert 0 <= w["start"] < w["end"] <= seconds + 1e-3, w
    for a, b in zip(words, words[1:], strict=False):
        assert a["end"] <= b["start"], (a, b)


@pytest.mark.parametrize(("speed", "first_alone"), [(1.0, False), (1.4, True), (0.8, False)])
@pytest.mark.slow
def test_pauses_lie_between_the_words_around_them(
    engine: tuple[KokoroEngine, Any], speed: float, first_alone: bool
) -> None:
    audio, words, boundaries = _speak(engine, TEXT, "jf_alpha", speed, first_alone)
    assert boundaries  # offsets across units are part of what is checked
    check_words(words, len(audio) / RATE)
    assert check_pauses(audio, words, boundaries) >= 3


# The words as written: English's are the text's words (its spaces and marks are no words),
# Japanese's are the text itself (no spaces).
@pytest.mark.parametrize(
    ("text", "voice", "written", "pauses"),
    [
        (" ".join(ENGLISH), "jm_kumo", lambda t: "".join(written_words(t)), 5),
        ("".join(JAPANESE), "jf_alpha", lambda t: t, 3),
    ],
    ids=["english", "japanese"],
)
@pytest.mark.slow
def test_corpus_every_word_timed_in_order(
    engine: tuple[KokoroEngine, Any], text: str, voice: str, written: Callable[[str], str],
    pauses: int,
) -> None:  # fmt: skip
    audio, words, boundaries = _speak(engine, text, voice)
    check_words(words, len(audio) / RATE)
    assert _key("".join(str(w["word"]) for w in words)) == _key(written(text))
    assert check_pauses(audio, words, boundaries) >= pauses


@pytest.mark.parametrize("fmt", ["mp3", "aac", "flac", "wav"])
@pytest.mark.parametrize("streamed", [False, True])
def test_decoder_delay_is_where_a_decoder_puts_the_first_sample(fmt: str, streamed: bool) -> None:
    t = np.arange(2400) / RATE
    clip = np.zeros(RATE, np.float32)
    clip[6000:8400] = 0.5 * np.sin(2 * np.pi * 440 * t) * np.hanning(2400)
    if streamed:
        enc = StreamEncoder(fmt, RATE)
        data = enc.encode(clip[:12000]) + enc.encode(clip[12000:]) + enc.finish()
    else:
        whole = WholeEncoder(fmt, RATE)
        whole.encode(clip)
        data = whole.finish()
    out = decode(data)[0]  # the scale does not move the correlation's peak
    out = np.pad(out, (0, max(0, len(clip) + 3000 - len(out))))
    lag = int(np.argmax(np.correlate(out[: len(clip) + 3000], clip, "full"))) - (len(clip) - 1)
    assert lag == decoder_delay(fmt, streamed)


# -- the API -------------------------------------------------------------------------------------


@pytest.fixture
def app() -> Settings:
    """The settings of a gateway on the timed model (one app per request: an app's gateway ends
    with its lifespan)."""
    _timed_path()
    return Settings()


def _post(settings: Settings, **body: Any) -> Any:
    async def work(client: Any) -> Any:
        return await client.post("/v1/audio/speech", json={"model": "tts-1", **body})

    return run_asgi(create_app(settings), work)


@pytest.mark.slow
def test_api_json_gives_the_whole_file_and_its_words(app: Settings) -> None:
    r = _post(app, input=TEXT, voice="jf_alpha", speed=1.2, timestamps=True)
    assert r.status_code == 200, r.text
    body = r.json()
    audio, rate = decode(base64.b64decode(body["audio"]))
    assert body["format"] == "mp3" and rate == RATE
    assert abs(body["duration"] - len(audio) / rate) < 0.01
    check_words(body["words"], body["duration"])
    assert check_pauses(audio, body["words"]) >= 3


def _sse_words(settings: Settings, fmt: str) -> tuple[list[dict[str, Any]], Words, bytes]:
    r = _post(settings, input=TEXT, voice="jf_alpha", timestamps=True, stream_format="sse",
              response_format=fmt)  # fmt: skip
    assert r.status_code == 200, r.text
    events = [json.loads(line[6:]) for line in r.text.split("\n\n") if line.startswith("data: ")]
    assert events[-1]["type"] == "speech.audio.done"
    deltas = [e for e in events if e["type"] == "speech.audio.delta"]
    data = b"".join(base64.b64decode(e["audio"]) for e in deltas)
    return deltas, [w for e in deltas for w in e["words"]], data


@pytest.mark.slow
def test_api_sse_deltas_carry_their_words_with_the_stream_delay(app: Settings) -> None:
    """A streamed MP3 has no gapless tag: its words come 1,105 samples later than the same
    speech's in WAV, and still fit the pauses of the decoded stream."""
    deltas, words, data = _sse_words(app, "mp3")
    assert len(deltas) >= 2 and deltas[0]["words"][-1]["word"] == "quickly."  # the first unit
    audio, _ = decode(data)
    check_words(words, len(audio) / RATE)
    assert check_pauses(audio, words) >= 3
    _, wav_words, _ = _sse_words(app, "wav")
    assert [w["word"] for w in wav_words] == [w["word"] for w in words]
    delay = 1105 / RATE  # LAME's 576 samples and the decoder's 529 (test_decoder_delay_*)
    for mp3, wav in zip(words, wav_words, strict=True):
        assert mp3["start"] - wav["start"] == pytest.approx(delay, abs=0.0011), (mp3, wav)


@pytest.mark.parametrize("fmt", ["srt", "vtt"])
@pytest.mark.slow
def test_api_captions_are_the_words_as_cues(app: Settings, fmt: str) -> None:
    r = _post(app, input="Good morning. The weather is fine!", voice="jf_alpha",
              timestamps=True, response_format=fmt)  # fmt: skip
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/vtt" if fmt == "vtt" else "text/plain")
    sep = "." if fmt == "vtt" else ","
    assert " --> 00:00:0" in r.text and sep in r.text.split("-->")[0]
    assert "Good morning.\n" in r.text and "The weather is fine!\n" in r.text


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        ({"timestamps": True, "stream": True}, "timestamps", "timestamps_need_sse"),
        ({"timestamps": True, "stream_format": "audio"}, "timestamps", "timestamps_need_sse"),
        ({"response_format": "srt"}, "response_format", "captions_need_timestamps"),
        ({"response_format": "vtt", "timestamps": True, "stream_format": "sse"},
         "response_format", "captions_not_streamed"),
        ({"timestamps": "yes"}, "timestamps", None),
    ],
)  # fmt: skip
def test_api_combinations_that_do_not_fit_are_400(
    app: Settings, body: dict[str, Any], param: str, code: str | None
) -> None:
    r = _post(app, input="Hello there.", voice="jf_alpha", **body)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["param"] == param and (code is None or error["code"] == code)


def test_api_model_without_durations_is_400(tmp_path: Path) -> None:
    _timed_path()
    for name in ("model.onnx", "voices.npz"):  # a user's own folder: no duration output
        (tmp_path / name).symlink_to(KOKORO / name)
    settings = Settings()
    settings.models.local_paths = {"kokoro": tmp_path}
    r = _post(settings, input="Hello.", voice="jf_alpha", timestamps=True)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == "timestamps_unsupported"
    r = _post(settings, input="Hello.", voice="jf_alpha")
    assert r.status_code == 200  # plain speech is unaffected


@pytest.mark.slow
def test_cli_writes_audio_and_captions(tmp_path: Path) -> None:
    from gateway.cli import main

    _timed_path()
    out, vtt = tmp_path / "out.mp3", tmp_path / "out.vtt"
    assert (
        main(["speak", "One sentence. And another.", "-o", str(out), "--captions", str(vtt)]) == 0
    )
    audio, rate = decode(out.read_bytes())
    text = vtt.read_text()
    assert text.startswith("WEBVTT") and "One sentence.\n" in text and "And another.\n" in text
    last_end = text.strip().splitlines()[-2].split(" --> ")[1]
    assert 0 < float(last_end.split(":")[-1]) <= len(audio) / rate
