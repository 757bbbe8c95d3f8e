"""Sections of `python -m benchmarks report` that run against one gateway: overhead against the raw
libraries, throughput against concurrency, and streaming's time to first audio byte."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import httpx

from gateway.config import Settings
from gateway.registry.manifest import load_manifest
from gateway.registry.store import ModelStore

from . import child_env, clips
from .client import median, speech, stream_speech, summary, transcribe
from .server import load_average, proc_cpu_seconds

Say = Callable[[str], None]
VOICE = "jf_alpha"  # what `alloy` maps to in the embedded pack; named, so both sides agree


class RawWorker:
    """The child process of benchmarks.raw, holding both models loaded (`whisper=False`:
    Kokoro only). `spinning`: Kokoro's idle threads spin (ONNX Runtime's default) instead of
    sleeping as on the gateway's CPU lane."""

    def __init__(self, settings: Settings, spinning: bool = False, whisper: bool = True) -> None:
        store = ModelStore(
            settings.models.dir,
            load_manifest(settings.models.manifest),
            settings.models.local_paths,
        )
        self.threads = {
            "kokoro": settings.cpu_threads("kokoro"),
            "whisper": settings.cpu_threads("whisper"),
        }
        kdir = store.folder(settings.models.speech_default)
        wdir = store.folder(settings.models.transcription_default)
        threads = min(self.threads.values())
        cmd = [
            sys.executable,
            "-m",
            "benchmarks.raw",
            str(kdir),
            str(wdir) if whisper else "-",
            str(threads),
            settings.whisper.compute_type,
            "spinning" if spinning else "sleeping",
        ]
        self.proc = subprocess.Popen(
            cmd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
            env=child_env(),
        )
        ready = self._read()
        if not ready.get("ready"):
            raise RuntimeError(f"raw worker failed to start: {ready}")

    def _read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"raw worker exited ({self.proc.poll()})")
        reply: dict[str, Any] = json.loads(line)
        return reply

    def call(self, **cmd: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        reply = self._read()
        if "error" in reply:
            raise RuntimeError(f"raw {cmd.get('op')}: {reply['error']}")
        return reply

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.write(json.dumps({"op": "quit"}) + "\n")
                self.proc.stdin.close()
                self.proc.wait(timeout=20)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()


def overhead(
    base: str, pid: int, settings: Settings, inputs: dict[str, Any], runs: int, say: Say
) -> dict[str, Any]:
    """Gateway over HTTP vs the raw call on the same input, interleaved, median of `runs`: wall
    time, and CPU time (the gateway process's, all threads; the raw worker's), which other
    processes on a shared machine disturb far less than wall time."""
    raw = RawWorker(settings)
    # ONNX Runtime's default (idle threads spin), shown beside the like-for-like baseline
    spin = RawWorker(settings, spinning=True, whisper=False)

    def timed(call: Callable[[], Any]) -> tuple[float, float]:
        c0 = proc_cpu_seconds(pid)
        t0 = time.perf_counter()
        call()
        return time.perf_counter() - t0, proc_cpu_seconds(pid) - c0

    cases: list[dict[str, Any]] = []
    load_before = load_average()
    try:
        mem_raw_idle = raw.call(op="memory")
        with httpx.Client(timeout=httpx.Timeout(600.0, connect=10.0)) as client:
            text = inputs["speech_text"]
            # warm both sides once (first runs pay for allocations and caches)
            raw.call(op="speech", text=text, voice=VOICE)
            spin.call(op="speech", text=text, voice=VOICE)
            speech(client, base, text, VOICE, "wav")
            variants = [("speech, wav", "wav")]
            if runs >= 3:  # the default format too (MP3 encoding is part of what clients get)
                variants.append(("speech, mp3 (default)", "mp3"))
            for label, fmt in variants:
                raw_t: list[tuple[float, float]] = []
                gw_t: list[tuple[float, float]] = []
                spin_t: list[tuple[float, float]] = []
                n = runs if fmt == "wav" else max(1, runs - 2)
                say(f"overhead: {label} x{n}")
                audio_s = 0.0
                for _ in range(n):
                    r = raw.call(op="speech", text=text, voice=VOICE)
                    raw_t.append((r["s"], r["cpu"]))
                    audio_s = r["audio_s"]
                    gw_t.append(timed(partial(speech, client, base, text, VOICE, fmt)))
                    r = spin.call(op="speech", text=text, voice=VOICE)
                    spin_t.append((r["s"], r["cpu"]))
                cases.append(
                    {**_case(label, audio_s, raw_t, gw_t), **_beside("spinning", spin_t, gw_t)}
                )
            detection = {
                "segments": settings.whisper.language_segments,
                "threshold": settings.whisper.language_threshold,
            }
            warmed: set[str] = set()
            for label, path, audio_s, language in inputs["transcription"]:
                data, name = Path(path).read_bytes(), Path(path).name
                # No language: the like-for-like raw call detects with the gateway's settings;
                # faster-whisper's own defaults run beside it, to show what they cost.
                same = {} if language else detection
                if path not in warmed:
                    raw.call(op="transcribe", path=str(path), language=language)
                    transcribe(client, base, data, name, language=language)
                    warmed.add(path)
                raw_t, gw_t, default_t = [], [], []
                n = runs if audio_s <= 30 else max(1, runs - 2)
                say(f"overhead: {label} x{n}")
                for _ in range(n):
                    r = raw.call(op="transcribe", path=str(path), language=language, **same)
                    raw_t.append((r["s"], r["cpu"]))
                    gw_t.append(
                        timed(partial(transcribe, client, base, data, name, language=language))
                    )
                    if not language:
                        r = raw.call(op="transcribe", path=str(path))
                        default_t.append((r["s"], r["cpu"]))
                case = {**_case(label, audio_s, raw_t, gw_t), "language": language}
                if default_t:
                    case.update(_beside("default", default_t, gw_t), detection=detection)
                cases.append(case)
            mp3 = mp3_encoding(base, text, max(3, runs))
        mem_raw = raw.call(op="memory")
    finally:
        raw.close()
        spin.close()
    return {
        "cases": cases,
        "load_before": load_before,
        "load_after": load_average(),
        "mp3_encoding": mp3,
        "raw_memory_idle": mem_raw_idle,
        "raw_memory": mem_raw,
        "threads": raw.threads,
    }


def mp3_encoding(base: str, text: str, runs: int) -> dict[str, Any]:
    """The speech case's audio encoded to MP3 at the gateway's quality both ways, interleaved,
    in this process: PyAV's libmp3lame against LAME through lameenc (the gateway's path)."""
    from gateway.audio.encode import MP3_QUALITY, encode_audio

    audio, rate = clips.speak(base, text, VOICE)
    pyav, lame = [], []
    for _ in range(runs + 1):  # the first pair warms both
        t0 = time.perf_counter()
        clips.pyav_mp3(audio, rate, 64_000, MP3_QUALITY)
        t1 = time.perf_counter()
        encode_audio(audio, "mp3", rate, MP3_QUALITY)
        pyav.append(t1 - t0)
        lame.append(time.perf_counter() - t1)
    pyav, lame = pyav[1:], lame[1:]
    return {
        "audio_s": len(audio) / rate,
        "quality": MP3_QUALITY,
        "pyav": pyav,
        "lame": lame,
        "pyav_median": median(pyav),
        "lame_median": median(lame),
        "speedup": median(pyav) / median(lame),
    }


def _case(
    label: str, audio_s: float, raw: list[tuple[float, float]], gw: list[tuple[float, float]]
) -> dict[str, Any]:
    """(wall, cpu) pairs of both sides -> medians and ratios."""
    raw_s, raw_cpu = [r[0] for r in raw], [r[1] for r in raw]
    gw_s, gw_cpu = [g[0] for g in gw], [g[1] for g in gw]
    return {
        "case": label,
        "audio_s": audio_s,
        "raw": raw_s,
        "gateway": gw_s,
        "raw_cpu": raw_cpu,
        "gateway_cpu": gw_cpu,
        "raw_median": median(raw_s),
        "gateway_median": median(gw_s),
        "ratio": median(gw_s) / median(raw_s),
        "raw_cpu_median": median(raw_cpu),
        "gateway_cpu_median": median(gw_cpu),
        "cpu_ratio": median(gw_cpu) / median(raw_cpu) if median(raw_cpu) else float("nan"),
    }


def _beside(
    name: str, raw: list[tuple[float, float]], gw: list[tuple[float, float]]
) -> dict[str, Any]:
    """A second raw baseline (`name`: ONNX Runtime's default spinning threads, or faster-whisper's
    default detection of one 30 s segment at threshold 0.5) against the same gateway runs."""
    raw_s, raw_cpu = [r[0] for r in raw], [r[1] for r in raw]
    return {
        f"raw_{name}": raw_s,
        f"raw_{name}_cpu": raw_cpu,
        f"raw_{name}_median": median(raw_s),
        f"raw_{name}_cpu_median": median(raw_cpu),
        f"ratio_{name}": median([g[0] for g in gw]) / median(raw_s),
        f"cpu_ratio_{name}": median([g[1] for g in gw]) / median(raw_cpu)
        if median(raw_cpu)
        else float("nan"),
    }


def throughput(
    base: str,
    levels: tuple[int, ...],
    per_client: Callable[[int], int],
    inputs: dict[str, Any],
    say: Say,
) -> dict[str, Any]:
    """Closed-loop clients at each concurrency: requests/s and real-time factor per engine."""
    out: dict[str, Any] = {"speech": [], "transcription": []}
    for engine in ("speech", "transcription"):
        for c in levels:
            say(f"throughput: {engine}, {c} clients x {per_client(c)}")
            out[engine].append(_level(base, engine, c, per_client(c), inputs))
    return out


def _level(base: str, engine: str, clients: int, n: int, inputs: dict[str, Any]) -> dict[str, Any]:
    sentences: list[tuple[str, float]] = inputs["sentences"]  # (text, audio seconds)
    clip = Path(inputs["tp_clip"]).read_bytes()
    latencies: list[float] = []
    audio = [0.0]
    errors: list[str] = []
    lock = threading.Lock()

    def client_loop(i: int) -> None:
        with httpx.Client(timeout=httpx.Timeout(900.0, connect=10.0)) as client:
            for k in range(n):
                try:
                    if engine == "speech":
                        text, secs = sentences[(i * n + k) % len(sentences)]
                        dt = speech(client, base, text)
                    else:
                        secs = inputs["tp_clip_s"]
                        dt = transcribe(client, base, clip, "recording.wav")[0]
                except Exception as exc:  # recorded; the level goes on
                    with lock:
                        errors.append(str(exc)[:200])
                    continue
                with lock:
                    latencies.append(dt)
                    audio[0] += secs

    threads = [threading.Thread(target=client_loop, args=(i,)) for i in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    return {
        "clients": clients,
        "requests": len(latencies),
        "errors": errors[:3],
        "wall_s": wall,
        "rps": len(latencies) / wall,
        "rtf": wall / audio[0] if audio[0] else float("nan"),  # wall s per audio s
        "latency": summary(latencies),
    }


def streaming(base: str, text: str, runs: int, say: Say) -> dict[str, Any]:
    """Time to first audio byte of a streamed multi-sentence request vs the whole response."""
    say(f"streaming x{runs}")
    ttfb, stream_total, full = [], [], []
    with httpx.Client(timeout=httpx.Timeout(600.0, connect=10.0)) as client:
        if runs > 1:
            stream_speech(client, base, text)  # warm
        for _ in range(runs):
            first, total, _ = stream_speech(client, base, text)
            ttfb.append(first)
            stream_total.append(total)
            full.append(speech(client, base, text))
    return {
        "text_chars": len(text),
        "ttfb": summary(ttfb),
        "stream_total": summary(stream_total),
        "full": summary(full),
        "ttfb_runs": ttfb,
        "full_runs": full,
    }


def prepare(base: str, quick: bool, say: Say) -> dict[str, Any]:
    """Inputs of the report sections, built with the gateway's own TTS (cached)."""
    t0 = time.perf_counter()
    pool = clips.POOL[:4] if quick else clips.POOL
    sentences = [(s, len(a) / r) for s in pool for a, r in [clips.speak(base, s)]]
    speech_text = " ".join(clips.POOL[:1] if quick else clips.POOL[1:3])  # ~9 s of audio
    # (seconds, language): a long clip with a language and without one (detection); quick mode
    # one clip of each kind, the full report also the 10 s clip of the earlier reports
    cases = [(48.0, "en"), (48.0, None)]
    if not quick:
        cases = [(10.0, None), *cases, (60.0, "en"), (60.0, None)]
    transcription = []
    for secs, language in cases:
        path = clips.clip_file(base, secs, "mp3")
        how = f"language={language}" if language else "no language"
        transcription.append((f"transcription, {secs:g} s clip, {how}", str(path), secs, language))
    tp_s = 4.0 if quick else 10.0
    stream_text = " ".join(clips.POOL[4:6] if quick else clips.POOL[4:7])
    say(f"report inputs ready in {time.perf_counter() - t0:.1f} s")
    return {
        "sentences": sentences,
        "speech_text": speech_text,
        "transcription": transcription,
        "tp_clip": str(clips.clip_file(base, tp_s, "mp3")),
        "tp_clip_s": tp_s,
        "stream_text": stream_text,
    }
