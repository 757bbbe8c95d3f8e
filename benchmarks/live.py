"""The live-transcription benchmark (issue 32), in one run against one `gateway serve` process:

- word-to-delta latency: turns of speech appended to a Realtime transcription session in real
  time (20 or 100 ms chunks paced by the clock), from the end of each word in the audio (its
  end from the TTS's own word timings) to the first delta that carries it;
- accuracy: the `completed` transcripts with live mode on and off, same audio, 20 sentences;
- isolation: a chat sentence's p95 while one live session and two batch transcriptions run,
  against its idle p95, and the batch loops' throughput against theirs alone.

`python -m benchmarks.live [--quick] [--chunk-ms 20|100] [--out DIR]` prints the Markdown section
(`benchmarks/live_figures.py` renders it) and writes DIR/live.json, DIR/live.md and the
gateway's log to DIR. The full run (whisper-tiny.en and whisper-base, 10 turns each way, then
isolation with whisper-base) should take about 10 minutes on a quiet 2-core machine; `--quick`
(whisper-tiny.en, 2 turns, short isolation phases) took 3.5 min at load 10-13 on 2 cores (67 s
of CPU), so under 2 min quiet. Sentences with word timings are cached (GATEWAY_BENCH_CACHE).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from websockets.sync.client import ClientConnection, connect

from . import clips
from . import live_figures as fig
from .client import AUTH, BatchLoop, speech, summary, transcribe
from .server import GatewayProcess, load_average, machine_info

RATE = 24000  # the Realtime API's audio/pcm rate, and Kokoro's
DELTA = "conversation.item.input_audio_transcription.delta"
DONE = "conversation.item.input_audio_transcription.completed"
FAILED = "conversation.item.input_audio_transcription.failed"
LIVE_MODEL = "gpt-live-transcribe"  # the OpenAI name that turns live mode on

# Twenty sentences: the clip pool, and eight more of the same kind.
SENTENCES = (*clips.POOL,
    "The printer on the second floor has been out of paper since Monday.",
    "Please book a table for four at the Italian restaurant on Friday evening.",
    "The new software update fixed the battery problem on most older phones.",
    "Our neighbors planted tomatoes, beans and sunflowers in their garden this spring.",
    "The pilot announced that we would land twenty minutes ahead of schedule.",
    "Remember to water the plants and feed the cat while I am away.",
    "The students finished their science project just before the deadline.",
    "A thick fog covered the hills until the sun finally broke through at noon.",
)  # fmt: skip

Say = Callable[[str], None]


@dataclass(frozen=True)
class Params:
    models: tuple[str, ...]  # latency and accuracy, each model in turn
    turns: int  # of two sentences each
    iso_model: str  # the live session's model during the isolation phase
    idle_runs: int
    load_runs: int
    clip_s: float  # each batch clip
    gap_s: float  # between two chat sentences
    batch_only_s: float
    settle_s: float
    drain_s: float


FULL = Params(("whisper-tiny.en", "whisper-base"), 10, "whisper-base", idle_runs=8, load_runs=10,
              clip_s=48, gap_s=0.75, batch_only_s=12, settle_s=3, drain_s=60)  # fmt: skip
QUICK = Params(("whisper-tiny.en",), 2, "whisper-tiny.en", idle_runs=2, load_runs=3, clip_s=8,
               gap_s=0.2, batch_only_s=3, settle_s=1, drain_s=15)  # fmt: skip


def transcription(model: str, live: bool) -> dict[str, Any]:
    """The session's `audio.input.transcription` object: live mode asked for explicitly both
    ways, so the deployment's default does not decide."""
    return {"model": model, "live": live}


# -- inputs ------------------------------------------------------------------------------------


def timed_speech(base: str, text: str) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """A sentence through the gateway's TTS with `timestamps: true` (cached like clips.speak):
    24 kHz float32 samples and the words with their start and end in seconds."""
    key = hashlib.sha256(f"timed\n{clips.VOICE}\n{text}".encode()).hexdigest()[:20]
    path = clips.cache_dir() / f"{key}.timed.json"
    if not path.is_file():
        body = {"model": "tts-1", "voice": clips.VOICE, "input": text,
                "response_format": "wav", "timestamps": True}  # fmt: skip
        r = httpx.post(f"{base}/v1/audio/speech", json=body, headers=AUTH, timeout=300)
        r.raise_for_status()
        tmp = path.with_suffix(".tmp")
        tmp.write_text(r.text)
        tmp.replace(path)
    got = json.loads(path.read_text())
    audio, rate = clips.read_wav(base64.b64decode(got["audio"]))
    if rate != RATE:
        n = int(len(audio) * RATE / rate)
        audio = np.interp(np.arange(n) * rate / RATE, np.arange(len(audio)), audio)
    return audio.astype(np.float32), list(got["words"])


@dataclass(frozen=True)
class Turn:
    text: str
    pcm: bytes  # 24 kHz PCM16 LE mono
    words: list[fig.Word]
    speech_end_s: float  # the last word's end


def build_turn(base: str, sentences: tuple[str, ...], lead_s: float = 0.3, gap_s: float = 0.2,
               tail_s: float = 1.5) -> Turn:  # fmt: skip
    """Sentences spoken one after another (a gap shorter than server VAD's 500 ms of silence,
    so one turn), then silence for the VAD to end it."""
    parts: list[np.ndarray] = []
    words: list[fig.Word] = []
    at = 0.0
    for i, text in enumerate(sentences):
        pause = np.zeros(int((lead_s if i == 0 else gap_s) * RATE), np.float32)
        audio, timed = timed_speech(base, text)
        at += len(pause) / RATE
        words += fig.spoken_words(timed, at)
        parts += [pause, audio]
        at += len(audio) / RATE
    parts.append(np.zeros(int(tail_s * RATE), np.float32))
    pcm = (np.clip(np.concatenate(parts), -1, 1) * 32767).astype("<i2").tobytes()
    return Turn(" ".join(sentences), pcm, words, max(w.end_s for w in words))


# -- a Realtime session ------------------------------------------------------------------------


@dataclass
class TurnResult:
    t0: float  # perf_counter when the turn's first sample was
    deltas: fig.Deltas
    transcript: str
    items: int


class Stopped(Exception):
    """A paced turn given up half way: the benchmark is done with its session."""


class LiveSession:
    """One Realtime transcription session with server VAD; a reader thread stamps each event
    with its arrival, so deltas are timed while the sender sleeps between chunks."""

    def __init__(self, base: str, model: str, live: bool) -> None:
        url = base.replace("http://", "ws://", 1) + "/v1/realtime?intent=transcription"
        self.ws: ClientConnection = connect(url, additional_headers=AUTH, open_timeout=60,
                                            max_size=None)  # fmt: skip
        self.events: list[tuple[float, dict[str, Any]]] = []
        self._cond = threading.Condition()
        threading.Thread(target=self._read, daemon=True, name="live-reader").start()
        self.ws.send(json.dumps({"type": "session.update", "session": {
            "type": "transcription", "audio": {"input": {
                "format": {"type": "audio/pcm", "rate": RATE},
                "transcription": transcription(model, live),
                "turn_detection": {"type": "server_vad"}}}}}))  # fmt: skip
        self._wait(0, lambda evs: any(e["type"] == "session.updated" for e in evs), 60)

    def _read(self) -> None:
        try:
            for message in self.ws:
                ev = json.loads(message)
                with self._cond:
                    self.events.append((time.perf_counter(), ev))
                    self._cond.notify_all()
        except Exception as exc:  # noqa: BLE001 - a closed socket ends the session either way
            with self._cond:
                self.events.append((time.perf_counter(), {"type": "closed", "why": repr(exc)}))
                self._cond.notify_all()

    def _wait(
        self, start: int, done: Callable[[list[dict[str, Any]]], bool], timeout: float
    ) -> None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                evs = [e for _, e in self.events[start:]]
                bad = [e for e in evs if e["type"] in ("error", FAILED, "closed")]
                if bad:
                    raise RuntimeError(f"realtime: {bad[0]}")
                if done(evs):
                    return
                if not self._cond.wait(max(0.0, deadline - time.monotonic())):
                    raise TimeoutError(f"realtime: no end of turn after {timeout:g} s")

    def stream(
        self, turn: Turn, chunk_s: float, paced: bool = True, stop: threading.Event | None = None
    ) -> TurnResult:
        """Append the turn chunk by chunk (paced: each one when a microphone would have it, at
        t0 + its end) and wait until every item its speech made is completed. Raises Stopped
        when `stop` is set on the way (the turn is left unfinished)."""
        start = len(self.events)
        step = int(RATE * chunk_s) * 2
        t0 = time.perf_counter()
        for k, i in enumerate(range(0, len(turn.pcm), step)):
            if paced:
                time.sleep(max(0.0, t0 + (k + 1) * chunk_s - time.perf_counter()))
            if stop is not None and stop.is_set():
                raise Stopped
            chunk = base64.b64encode(turn.pcm[i : i + step]).decode()
            self.ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": chunk}))
        self._wait(start, _turn_over, 300)
        return _result(self.events[start:], t0)

    def close(self) -> None:
        self.ws.close()


def _turn_over(evs: list[dict[str, Any]]) -> bool:
    """Every speech start committed, and every committed item completed."""
    committed = {e["item_id"] for e in evs if e["type"] == "input_audio_buffer.committed"}
    started = sum(1 for e in evs if e["type"] == "input_audio_buffer.speech_started")
    finished = {e.get("item_id") for e in evs if e["type"] == DONE}
    return bool(committed) and started == len(committed) and committed <= finished


def _result(events: list[tuple[float, dict[str, Any]]], t0: float) -> TurnResult:
    """The turn's deltas in arrival order (a space between two items' words) and its items'
    transcripts joined in commit order."""
    order = [e["item_id"] for _, e in events if e["type"] == "input_audio_buffer.committed"]
    done = {e["item_id"]: str(e.get("transcript", "")) for _, e in events if e["type"] == DONE}
    deltas: fig.Deltas = []
    last = None
    for t, e in events:
        if e["type"] == DELTA:
            sep = " " if last is not None and e["item_id"] != last else ""
            deltas.append((t, sep + str(e.get("delta", ""))))
            last = e["item_id"]
    return TurnResult(t0, deltas, " ".join(done[i] for i in order), len(order))


# -- the three measurements --------------------------------------------------------------------


def measure_model(
    base: str, model: str, turns: list[Turn], chunk_s: float, say: Say
) -> dict[str, Any]:
    """Live mode off (appended at once: its transcripts do not depend on pacing), then on in
    real time; latency per word, WER of each."""
    off = LiveSession(base, model, live=False)
    try:
        off.stream(turns[0], chunk_s, paced=False)  # loads the model
        say(f"live: {model}, {len(turns)} turns, live mode off")
        offs = [off.stream(t, chunk_s, paced=False) for t in turns]
    finally:
        off.close()
    on = LiveSession(base, model, live=True)
    try:
        say(f"live: {model}, {len(turns)} turns in real time, live mode on")
        ons = [on.stream(t, chunk_s) for t in turns]
    finally:
        on.close()
    parts = [fig.word_latencies(t.words, r.deltas, r.t0, t.speech_end_s)
             for t, r in zip(turns, ons, strict=True)]  # fmt: skip
    refs = [t.text for t in turns]
    joined = ["".join(d for _, d in r.deltas) for r in ons]
    return {
        "latency": fig.latency_summary(parts),
        "latency_runs": [s for p in parts for s in p.seconds],
        "wer_live": fig.corpus_wer(refs, [r.transcript for r in ons]),
        "wer_off": fig.corpus_wer(refs, [r.transcript for r in offs]),
        "mismatched_turns": sum(
            fig.tokens(j) != fig.tokens(r.transcript) for j, r in zip(joined, ons, strict=True)
        ),
        "transcripts_live": [r.transcript for r in ons],
        "transcripts_off": [r.transcript for r in offs],
    }


@dataclass
class LiveLoop:
    """One live session streaming the turns in real time, over and over, until stopped."""

    base: str
    model: str
    turns: list[Turn]
    chunk_s: float
    latency: list[fig.Latency] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="live-loop")

    def _run(self) -> None:
        try:
            session = LiveSession(self.base, self.model, live=True)
        except Exception as exc:  # noqa: BLE001 - reported with the figures
            self.errors.append(repr(exc)[:200])
            return
        try:
            i = 0
            while not self._stop.is_set():
                turn = self.turns[i % len(self.turns)]
                r = session.stream(turn, self.chunk_s, stop=self._stop)
                self.latency.append(
                    fig.word_latencies(turn.words, r.deltas, r.t0, turn.speech_end_s)
                )
                i += 1
        except Stopped:
            pass
        except Exception as exc:  # noqa: BLE001
            self.errors.append(repr(exc)[:200])
        finally:
            session.close()

    def start(self) -> LiveLoop:
        self._thread.start()
        return self

    def stop(self, wait_s: float) -> None:
        self._stop.set()
        self._thread.join(wait_s)


def _chat(client: httpx.Client, base: str, runs: int, gap_s: float) -> list[float]:
    out = []
    for _ in range(runs):
        out.append(speech(client, base, clips.PROBE_SENTENCE))
        time.sleep(gap_s)
    return out


def isolation(base: str, p: Params, turns: list[Turn], chunk_s: float, say: Say) -> dict[str, Any]:
    """As `python -m benchmarks sharing` measures the priority layout, with a live session added."""
    batch = [clips.encode(*clips.build_clip(base, p.clip_s, i * 6), "mp3") for i in range(2)]
    with httpx.Client(timeout=httpx.Timeout(600.0, connect=10.0)) as client:
        for _ in range(2):
            speech(client, base, clips.PROBE_SENTENCE)  # loads Kokoro, warms its session
        transcribe(client, base, batch[0], "warm.mp3")
        say(f"isolation: chat sentence idle x{p.idle_runs}")
        idle = _chat(client, base, p.idle_runs, p.gap_s)
        loop = BatchLoop(base, batch, p.clip_s, loops=2).start()
        live: LiveLoop | None = None
        try:
            time.sleep(p.settle_s)
            say(f"isolation: two batch loops alone for {p.batch_only_s:g} s")
            tb0 = time.monotonic()
            time.sleep(p.batch_only_s)
            tb1 = time.monotonic()
            live = LiveLoop(base, p.iso_model, turns, chunk_s).start()
            time.sleep(p.settle_s)
            say(f"isolation: chat sentence x{p.load_runs} with a live session and the batch loops")
            c0 = time.monotonic()
            loaded = _chat(client, base, p.load_runs, p.gap_s)
            c1 = time.monotonic()
        finally:
            if live is not None:
                live.stop(wait_s=120)
            loop.stop(wait_s=p.drain_s)
    alone, shared = loop.throughput(tb0, tb1), loop.throughput(c0, c1)
    idle_s, loaded_s = summary(idle), summary(loaded)
    return {
        "model": p.iso_model,
        "chat_idle": idle_s,
        "chat_loaded": loaded_s,
        "chat_runs": {"idle": idle, "loaded": loaded},
        "chat_ratio": loaded_s["p95"] / idle_s["p95"],
        "batch_rate_alone": alone,
        "batch_rate_shared": shared,
        "batch_share": shared / alone if alone else float("nan"),
        "batch_errors": loop.errors[:5],
        "live_turns": len(live.latency) if live else 0,
        "live_latency": fig.latency_summary(live.latency) if live else {},
        "live_errors": live.errors[:5] if live else [],
    }


def _gpu(base: str) -> bool:
    r = httpx.get(f"{base}/v1/scheduler", headers=AUTH, timeout=30)
    return r.status_code == 200 and bool(r.json()["lanes"]["gpu"]["present"])


def run(quick: bool, chunk_ms: int, logs: Path, say: Say) -> dict[str, Any]:
    p = QUICK if quick else FULL
    chunk_s = chunk_ms / 1000
    res: dict[str, Any] = {"quick": quick, "params": asdict(p), "chunk_ms": chunk_ms,
                           "machine": machine_info(), "models": {}}  # fmt: skip
    res["load"] = {"before": load_average()}
    started = time.monotonic()
    with GatewayProcess({}, "live", logs, quiet=True) as gw:
        base = gw.base_url
        res["gpu"] = _gpu(base)
        sentences = SENTENCES[: 2 * p.turns]
        say(f"live: {len(sentences)} sentences with word timings (cached in {clips.cache_dir()})")
        turns = [build_turn(base, sentences[i : i + 2]) for i in range(0, len(sentences), 2)]
        res |= {"turns": len(turns), "sentences": len(sentences)}
        for model in p.models:
            res["models"][model] = measure_model(base, model, turns, chunk_s, say)
        res["isolation"] = isolation(base, p, turns, chunk_s, say)
    res["load"]["after"] = load_average()
    res["wall_s"] = time.monotonic() - started
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks.live", description=__doc__.split("\n")[0]
    )
    ap.add_argument("--quick", action="store_true", help="a smoke run: one model, two turns")
    ap.add_argument("--chunk-ms", type=int, choices=(20, 100), default=100,
                    help="audio per append, paced by the clock")  # fmt: skip
    ap.add_argument("--out", type=Path, default=None, help="folder for live.json and live.md")
    args = ap.parse_args(argv)
    logs = args.out or Path(tempfile.mkdtemp(prefix="gateway-bench-live-"))
    res = run(args.quick, args.chunk_ms, logs,
              lambda msg: print(f"[bench] {msg}", file=sys.stderr, flush=True))  # fmt: skip
    res["command"] = " ".join(
        ["python -m benchmarks.live", *(argv if argv is not None else sys.argv[1:])]
    )
    md = "\n".join(fig.render(res))
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "live.json").write_text(json.dumps(res, indent=2) + "\n")
        (args.out / "live.md").write_text(md + "\n")
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
