"""Load test of the gateway, modelled on the traffic Open WebUI and its users send.

Users (weights in brackets):
- OpenWebUIChatUser [3]: a chat reply read aloud, one `POST /v1/audio/speech` per sentence, one
  after another, Open WebUI's body (`input`, `voice: alloy`, `model: tts-1`, no format: MP3),
  text varied so no cache could help; short think time between replies.
- VoiceNoteUser [2]: a short recording (3-8 s) uploaded for transcription, `model: whisper-1`,
  multipart part with no content type; MP3 named `<uuid>.mp3` (Open WebUI converts most
  recordings) or WebM/Opus named `recording.wav` (call mode) or `recording.webm`.
- BatchTranscriptionUser [1]: a long file (60 s by default) with `X-Priority: batch`.

A 429 with Retry-After is the gateway's expected backpressure: it is recorded under its own name
(`... [429 backpressure]`), counted as a success and left out of the failure ratio. Thresholds
set the exit code when locust quits (see `--help`, section "Custom arguments"): the failure ratio
without 429s and the p95 of each user class.

    PYTHONPATH=. locust -f loadtests/locustfile.py --headless --host http://127.0.0.1:8000 -u 6 -r 2 -t 60s

Audio inputs are spoken by the gateway under test (its own TTS) before the users start and
cached in a temp folder; nothing is downloaded.
"""

from __future__ import annotations

import logging
import random
import uuid
from typing import Any

import audio_inputs
import gevent
from locust import HttpUser, between, events, task
from locust.runners import MasterRunner

log = logging.getLogger("loadtest")

SPEECH = "chat: speech"
VOICE_NOTE = "voicenote: transcription"
BATCH = "batch: transcription"
BACKPRESSURE = " [429 backpressure]"


@events.init_command_line_parser.add_listener
def _arguments(parser: Any) -> None:
    parser.add_argument("--max-fail-ratio", type=float, default=0.01,
                        env_var="LOADTEST_MAX_FAIL_RATIO",
                        help="Largest share of failed requests (429s excluded).")  # fmt: skip
    parser.add_argument("--p95-speech-ms", type=float, default=15000,
                        env_var="LOADTEST_P95_SPEECH_MS",
                        help="Largest p95 of one chat sentence (ms).")  # fmt: skip
    parser.add_argument("--p95-voicenote-ms", type=float, default=30000,
                        env_var="LOADTEST_P95_VOICENOTE_MS",
                        help="Largest p95 of one voice-note transcription (ms).")  # fmt: skip
    parser.add_argument("--p95-batch-ms", type=float, default=240000,
                        env_var="LOADTEST_P95_BATCH_MS",
                        help="Largest p95 of one long batch transcription (ms).")  # fmt: skip
    parser.add_argument("--min-requests", type=int, default=1, env_var="LOADTEST_MIN_REQUESTS",
                        help="Fewest successful requests for the run to pass.")  # fmt: skip
    parser.add_argument("--batch-seconds", type=float, default=60.0,
                        env_var="LOADTEST_BATCH_SECONDS",
                        help="Length of the batch users' clip (s).")  # fmt: skip
    parser.add_argument("--api-key", default="sk-loadtest", env_var="LOADTEST_API_KEY",
                        help="Bearer key sent with every request.")  # fmt: skip


@events.init.add_listener
def _prepare(environment: Any, **_: Any) -> None:
    """Speak the audio inputs before any user starts (so they do not eat the run time)."""
    opts = environment.parsed_options
    if opts is None or isinstance(environment.runner, MasterRunner) or not opts.host:
        return  # users prepare lazily (web UI without a host, or a master with no users)
    audio_inputs.prepare(opts.host, opts.batch_seconds)


def _auth(user: HttpUser) -> dict[str, str]:
    opts = user.environment.parsed_options
    return {"Authorization": f"Bearer {opts.api_key if opts else 'sk-loadtest'}"}


def _inputs(user: HttpUser) -> audio_inputs.Inputs:
    opts = user.environment.parsed_options
    return audio_inputs.prepare(user.host or "", opts.batch_seconds if opts else 60.0)


def _retry_after(response: Any) -> float | None:
    """Seconds to back off when the response is the gateway's 429 backpressure, else None."""
    if response.status_code != 429:
        return None
    value = response.headers.get("Retry-After")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _backpressure(response: Any, name: str) -> float | None:
    """A 429 with Retry-After: record it under its own name as a success; return the delay."""
    delay = _retry_after(response)
    if delay is None:
        return None
    response.request_meta["name"] = name + BACKPRESSURE
    response.success()
    return min(delay, 10.0)


def _error(response: Any) -> str:
    try:
        return str(response.json()["error"]["message"])[:200]
    except Exception:
        return (response.text or "")[:200]


# -- text: every sentence differs, as in a real conversation ------------------------------------

_OPENERS = ("Sure", "Of course", "Good question", "Here is what I found", "Right", "Okay")
_SUBJECTS = ("the report", "your order", "the train", "this recipe", "the meeting", "the update",
             "the garden", "our flight", "the invoice", "the new library")  # fmt: skip
_VERBS = ("should arrive", "will start", "needs about", "was moved to", "takes roughly",
          "is planned for", "can wait until", "costs around")  # fmt: skip
_TAILS = ("minutes from now", "euros in total", "on Thursday morning", "before lunch",
          "after the break", "steps to finish", "pages in the appendix")  # fmt: skip


def sentence(rng: random.Random) -> str:
    n = rng.randint(2, 97)
    return (f"{rng.choice(_OPENERS)}, {rng.choice(_SUBJECTS)} {rng.choice(_VERBS)} {n} "
            f"{rng.choice(_TAILS)}.")  # fmt: skip


def reply(rng: random.Random, sentences: int) -> list[str]:
    extra = ("Let me know if you need anything else.", "I hope that helps.",
             "You can also check the details online.")  # fmt: skip
    out = [sentence(rng) for _ in range(sentences - 1)]
    return [*out, f"{rng.choice(extra)} Reference {rng.randint(100, 999)}."]


# -- users -------------------------------------------------------------------------------------


class _Person(HttpUser):
    """A user with a random source of their own, so users vary independently."""

    abstract = True

    def on_start(self) -> None:
        self.rng = random.Random()


class OpenWebUIChatUser(_Person):
    """Open WebUI reading a reply aloud: one speech request per sentence, in order."""

    weight = 3
    wait_time = between(1, 4)

    @task
    def read_reply_aloud(self) -> None:
        for text in reply(self.rng, self.rng.randint(2, 4)):
            body = {"input": text, "voice": "alloy", "model": "tts-1"}
            with self.client.post("/v1/audio/speech", json=body, headers=_auth(self),
                                  name=SPEECH, catch_response=True) as r:  # fmt: skip
                if _judge(r, SPEECH, _check_mp3):
                    return  # Open WebUI shows the error; the user moves on


class VoiceNoteUser(_Person):
    """A short recording from the browser (through Open WebUI) to be transcribed."""

    weight = 2
    wait_time = between(2, 6)

    @task
    def transcribe_voice_note(self) -> None:
        fmt, data = self.rng.choice(_inputs(self).voice_notes)
        if fmt == "mp3":
            filename = f"{uuid.uuid4()}.mp3"  # Open WebUI's converted upload
        else:
            filename = self.rng.choice(("recording.wav", "recording.webm"))  # call mode names it .wav
        form = {"model": "whisper-1"}
        if self.rng.random() < 0.5:
            form["language"] = "en"
        # a 2-tuple part: no content type on the part, like python-requests in Open WebUI
        with self.client.post("/v1/audio/transcriptions", files={"file": (filename, data)},
                              data=form, headers=_auth(self), name=VOICE_NOTE,
                              catch_response=True) as r:  # fmt: skip
            _judge(r, VOICE_NOTE, _check_text)


class BatchTranscriptionUser(HttpUser):
    """A long recording (a meeting, a podcast) transcribed at batch priority."""

    weight = 1
    wait_time = between(5, 15)

    @task
    def transcribe_long_file(self) -> None:
        inputs = _inputs(self)
        headers = {**_auth(self), "X-Priority": "batch"}
        with self.client.post("/v1/audio/transcriptions",
                              files={"file": (f"{uuid.uuid4()}.mp3", inputs.batch)},
                              data={"model": "whisper-1"}, headers=headers, name=BATCH,
                              catch_response=True, timeout=900) as r:  # fmt: skip
            _judge(r, BATCH, _check_text)


def _judge(r: Any, name: str, check: Any) -> bool:
    """Backpressure (429) sleeps and is no failure; another non-200 fails; a 200 is checked.
    True when the server pushed back."""
    delay = _backpressure(r, name)
    if delay is not None:
        gevent.sleep(delay)
        return True
    if r.status_code != 200:
        r.failure(f"HTTP {r.status_code}: {_error(r)}")
    else:
        check(r)
    return False


def _check_mp3(r: Any) -> None:
    if not r.headers.get("content-type", "").startswith("audio/mpeg"):
        r.failure(f"content type {r.headers.get('content-type')!r}, expected MP3")
    elif len(r.content) < 100:
        r.failure(f"only {len(r.content)} bytes of audio")


def _check_text(r: Any) -> None:
    try:
        text = r.json()["text"]
    except Exception:
        r.failure("no JSON `text` in the reply")
        return
    if not isinstance(text, str) or not text.strip():
        r.failure("empty transcript")


# -- thresholds -> exit code -------------------------------------------------------------------


def evaluate(stats: Any, opts: Any) -> list[str]:
    """Threshold violations (empty: pass). 429 backpressure entries are not failures."""
    total = failures = 0
    for (name, _method), entry in stats.entries.items():
        if name.endswith(BACKPRESSURE):
            continue
        total += entry.num_requests
        failures += entry.num_failures
    problems = []
    ratio = failures / total if total else 0.0
    if ratio > opts.max_fail_ratio:
        problems.append(f"failure ratio {ratio:.3f} > {opts.max_fail_ratio} "
                        f"({failures} of {total}, 429s excluded)")  # fmt: skip
    if total - failures < opts.min_requests:
        problems.append(f"{total - failures} successful requests < {opts.min_requests}")
    for name, limit in ((SPEECH, opts.p95_speech_ms), (VOICE_NOTE, opts.p95_voicenote_ms),
                        (BATCH, opts.p95_batch_ms)):  # fmt: skip
        entry = stats.entries.get((name, "POST"))
        if entry is None or entry.num_requests == 0:
            continue
        p95 = entry.get_response_time_percentile(0.95)
        if p95 > limit:
            problems.append(f"{name}: p95 {p95:.0f} ms > {limit:.0f} ms")
    return problems


@events.quitting.add_listener
def _thresholds(environment: Any, **_: Any) -> None:
    opts = environment.parsed_options
    if opts is None or environment.runner is None:
        return
    problems = evaluate(environment.runner.stats, opts)
    for (name, _method), e in sorted(environment.runner.stats.entries.items()):
        if e.num_requests:
            log.info("%-45s n=%-5d fail=%-4d p50=%-6.0f p95=%-6.0f ms", name, e.num_requests,
                     e.num_failures, e.get_response_time_percentile(0.5),
                     e.get_response_time_percentile(0.95))  # fmt: skip
    if problems:
        for p in problems:
            log.error("threshold failed: %s", p)
        environment.process_exit_code = 1
    else:
        log.info("all thresholds met")
        environment.process_exit_code = 0
