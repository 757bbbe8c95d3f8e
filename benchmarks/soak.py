#!/usr/bin/env python3
"""Soak test: run the gateway for N minutes under mixed load and watch its memory.

    .venv/bin/python -m benchmarks.soak --minutes 10
    .venv/bin/python -m benchmarks.soak --minutes 60 --speech-workers 2 --json soak.json

It starts `gateway serve` on a free loopback port (a real uvicorn process, with whatever GATEWAY_*
settings are in the environment), warms both models up, then runs bounded-concurrency loops:
speech workers send Open WebUI-style sentences (varied text, default MP3; some wav/opus, some
streamed), transcription workers upload clips (MP3 / WebM-Opus / WAV, 2-25 s) spoken by the
gateway's own TTS at start-up. Nothing is downloaded; only loopback traffic.

Every 5 s it samples the server's VmRSS and thread count from /proc/<pid>/status (no psutil).
At the end it prints a text report and (with --json) writes the same figures as JSON:
requests and errors per route and status, latency p50/p95/max, RSS of the first and the last
minute (means) and their growth in %, the peak RSS of each half and its growth, the slope over
the second half, threads. Exit status 1 when a request failed (5xx other than 503, transport
error, timeout, or an error body not in the OpenAI shape) or the second half's peak RSS exceeds
the first half's by more than --max-growth-pct: RSS swings with the clips in flight, so two
one-minute means alone can differ either way by chance.

The default load (one speech loop, one transcription loop) keeps 2 cores busy without
saturating them with speech; `--speech-workers 2` does saturate them, and then Whisper, niced
to 19, gets almost no CPU (see docs/robustness.md).

The server process is `benchmarks.server.GatewayProcess`, the one the benchmarks and the tests
start gateways with.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import random
import statistics
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import httpx

from benchmarks.server import GatewayProcess

# -- inputs ---------------------------------------------------------------------------------------

WORDS = [
    "river", "mountain", "window", "garden", "morning", "music", "yellow", "paper", "silver",
    "engine", "quiet", "station", "orange", "basket", "thunder", "pocket", "winter", "candle",
    "forest", "rocket", "planet", "ladder",
]  # fmt: skip


def sentence(rng: random.Random) -> str:
    """Open WebUI sends one sentence per request and caches repeats, so every text differs."""
    n = rng.randint(4, 14)
    words = [rng.choice(WORDS) for _ in range(n)]
    return f"{' '.join(words).capitalize()} number {rng.randint(1, 10**6)}."


def encode(samples: Any, rate: int, fmt: str) -> bytes:
    import av
    import numpy as np
    from av.audio.stream import AudioStream

    codec = {"mp3": "libmp3lame", "webm": "libopus", "wav": "pcm_s16le"}[fmt]
    out_rate = 48000 if fmt == "webm" else rate
    x = np.asarray(samples, np.float32)
    if out_rate != rate:
        n = int(len(x) * out_rate / rate)
        x = np.interp(np.linspace(0, len(x) - 1, n), np.arange(len(x)), x).astype(np.float32)
    buf = io.BytesIO()
    with av.open(buf, "w", format=fmt) as out:
        stream = cast(AudioStream, out.add_stream(codec, rate=out_rate))
        stream.layout = "mono"
        ctx = stream.codec_context
        formats = ctx.codec.audio_formats
        assert formats, codec  # an audio codec names its sample formats
        stream.format = formats[0].name
        size = ctx.frame_size or 1024
        pts = 0
        for i in range(0, len(x), size):
            chunk = x[i : i + size]
            if ctx.frame_size and len(chunk) < size:
                chunk = np.pad(chunk, (0, size - len(chunk)))
            frame = av.AudioFrame(format="flt", layout="mono", samples=len(chunk))
            frame.planes[0].update(chunk.tobytes())
            frame.sample_rate, frame.pts = out_rate, pts
            pts += len(chunk)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buf.getvalue()


def make_clips(url: str, rng: random.Random, headers: dict[str, str]) -> list[tuple[str, bytes]]:
    """Clips of 2-25 s spoken by the gateway's own TTS, in the formats clients upload."""
    import numpy as np

    from gateway.audio.decode import decode_audio

    speech = []
    for _ in range(6):
        r = httpx.post(f"{url}/v1/audio/speech", headers=headers, timeout=300,
                       json={"model": "tts-1", "voice": "alloy", "input": sentence(rng),
                             "response_format": "wav"})  # fmt: skip
        r.raise_for_status()
        speech.append(decode_audio(r.content))
    gap = np.zeros(4000, np.float32)
    clips = []
    for seconds, fmt in ((2, "mp3"), (5, "webm"), (9, "mp3"), (14, "wav"), (25, "mp3")):
        parts, total = [], 0
        while total < seconds * 16000:
            piece = speech[rng.randrange(len(speech))]
            parts += [piece, gap]
            total += len(piece) + len(gap)
        clips.append((fmt, encode(np.concatenate(parts)[: seconds * 16000], 16000, fmt)))
    return clips


# -- load -----------------------------------------------------------------------------------------


@dataclass
class Stats:
    counts: Counter[tuple[str, str]] = field(default_factory=Counter)  # (route, status)
    latency: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    failures: list[str] = field(default_factory=list)

    def record(self, route: str, status: str, seconds: float, failure: str | None = None) -> None:
        self.counts[(route, status)] += 1
        if status == "200":
            self.latency[route].append(seconds)
        if failure:
            self.failures.append(f"{route} {status}: {failure}"[:300])


def _bad_error_shape(r: httpx.Response) -> str | None:
    try:
        err = r.json()["error"]
        if not ({"message", "type", "param", "code"} <= set(err) and err["message"]):
            return f"error body not in the OpenAI shape: {r.text[:200]}"
    except (ValueError, KeyError, TypeError):
        return f"error body not in the OpenAI shape: {r.text[:200]}"
    return None


async def speech_worker(client: httpx.AsyncClient, stats: Stats, stop: float,
                        rng: random.Random) -> None:  # fmt: skip
    while time.monotonic() < stop:
        body: dict[str, Any] = {"model": "tts-1", "voice": rng.choice(["alloy", "nova", "echo"]),
                                "input": sentence(rng)}  # fmt: skip
        pick = rng.random()
        if pick < 0.15:
            body["response_format"] = rng.choice(["wav", "opus", "flac"])
        elif pick < 0.3:
            body["stream"] = True
        await _call(client, stats, "speech", "/v1/audio/speech", json=body)
        await asyncio.sleep(rng.uniform(0.1, 1.0))


async def stt_worker(client: httpx.AsyncClient, stats: Stats, stop: float, rng: random.Random,
                     clips: list[tuple[str, bytes]]) -> None:  # fmt: skip
    while time.monotonic() < stop:
        fmt, data = rng.choice(clips)
        form = {"model": "whisper-1"}
        if rng.random() < 0.2:
            form["response_format"] = rng.choice(["verbose_json", "srt", "text"])
        await _call(client, stats, "transcriptions", "/v1/audio/transcriptions", data=form,
                    files={"file": (f"{rng.getrandbits(32):08x}.{fmt}", data)})  # fmt: skip
        await asyncio.sleep(rng.uniform(0.5, 3.0))


async def _call(client: httpx.AsyncClient, stats: Stats, route: str, path: str,
                **kwargs: Any) -> None:  # fmt: skip
    t0 = time.monotonic()
    try:
        r = await client.post(path, **kwargs)
        await r.aread()
    except httpx.HTTPError as exc:
        stats.record(route, type(exc).__name__, time.monotonic() - t0, repr(exc))
        return
    failure = None
    if r.status_code >= 500 and r.status_code != 503:
        failure = r.text[:200]
    elif r.status_code >= 400:
        failure = _bad_error_shape(r) or (r.text[:200] if r.status_code not in (429, 503) else None)
    stats.record(route, str(r.status_code), time.monotonic() - t0, failure)


async def sampler(server: GatewayProcess, samples: list[dict[str, float]], t0: float,
                  stop: float, every: float) -> None:  # fmt: skip
    while True:
        s = server.status()
        samples.append({"t": round(time.monotonic() - t0, 1), "rss_mib": s["VmRSS"] / 1024,
                        "threads": s["Threads"]})  # fmt: skip
        if time.monotonic() >= stop:
            return
        await asyncio.sleep(min(every, max(0.0, stop - time.monotonic())))


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return round(values[min(len(values) - 1, int(q * len(values)))], 3)


def slope_mib_per_min(samples: list[dict[str, float]]) -> float:
    """Least-squares slope of RSS over the second half of the run: a leak climbs steadily, while
    allocator arenas step up to the largest input seen and then stay flat."""
    half = [s for s in samples if s["t"] >= samples[-1]["t"] / 2]
    if len(half) < 2:
        return 0.0
    ts = [s["t"] / 60 for s in half]
    ys = [s["rss_mib"] for s in half]
    mt, my = statistics.mean(ts), statistics.mean(ys)
    den = sum((t - mt) ** 2 for t in ts)
    if not den:
        return 0.0
    return round(sum((t - mt) * (y - my) for t, y in zip(ts, ys, strict=True)) / den, 2)


def peak_growth(samples: list[dict[str, float]]) -> dict[str, float]:
    """Peak RSS of the second half against the first half's: RSS under mixed load swings by a
    few hundred MiB (a long clip's buffers come and go), so two one-minute means can differ
    either way by chance; a leak shows as the second half going above everything seen before."""
    mid = samples[-1]["t"] / 2
    first = max(s["rss_mib"] for s in samples if s["t"] <= mid)
    second = max(s["rss_mib"] for s in samples if s["t"] >= mid)
    return {"peak_first_half": round(first, 1), "peak_second_half": round(second, 1),
            "peak_growth_pct": round(100 * (second - first) / first, 2)}  # fmt: skip


def summarize(stats: Stats, samples: list[dict[str, float]], minutes: float,
              server: GatewayProcess) -> dict[str, Any]:  # fmt: skip
    window = min(60.0, minutes * 60 / 3)
    end = samples[-1]["t"]
    first = [s["rss_mib"] for s in samples if s["t"] <= window]
    last = [s["rss_mib"] for s in samples if s["t"] >= end - window]
    first_mean, last_mean = statistics.mean(first), statistics.mean(last)
    routes: dict[str, Any] = {}
    for (route, status), n in sorted(stats.counts.items()):
        entry = routes.setdefault(route, {"requests": 0, "by_status": {}})
        entry["requests"] += n
        entry["by_status"][status] = n
    for route, entry in routes.items():
        lat = stats.latency.get(route, [])
        entry["latency_s"] = {"p50": _pct(lat, 0.5), "p95": _pct(lat, 0.95),
                              "max": round(max(lat), 3) if lat else None}  # fmt: skip
    return {
        "minutes": minutes,
        "requests": sum(stats.counts.values()),
        "ok": sum(n for (_, st), n in stats.counts.items() if st == "200"),
        "refused_429_503": sum(n for (_, st), n in stats.counts.items() if st in ("429", "503")),
        "errors": len(stats.failures),
        "error_examples": stats.failures[:10],
        "routes": routes,
        "rss_mib": {
            "first_minute_mean": round(first_mean, 1),
            "last_minute_mean": round(last_mean, 1),
            "growth_pct": round(100 * (last_mean - first_mean) / first_mean, 2),
            **peak_growth(samples),
            "second_half_slope_mib_per_min": slope_mib_per_min(samples),
            "peak": round(max(s["rss_mib"] for s in samples), 1),
            "peak_hwm": round(server.status()["VmHWM"] / 1024, 1),
            "window_s": window,
        },
        "threads": {
            "first": samples[0]["threads"],
            "last": samples[-1]["threads"],
            "max": max(s["threads"] for s in samples),
        },  # fmt: skip
        "samples": samples,
    }


def render(report: dict[str, Any]) -> str:
    rss, thr = report["rss_mib"], report["threads"]
    lines = [
        f"soak: {report['minutes']:g} min, {report['requests']} requests, {report['ok']} ok, "
        f"{report['refused_429_503']} refused (429/503), {report['errors']} errors",
    ]
    for route, entry in report["routes"].items():
        lat = entry["latency_s"]
        lines.append(
            f"  {route:<15} {entry['requests']:>5} requests  by status {entry['by_status']}"
            f"  latency p50 {lat['p50']} s, p95 {lat['p95']} s, max {lat['max']} s"
        )
    lines.append(f"  RSS: first minute {rss['first_minute_mean']} MiB, last minute "
                 f"{rss['last_minute_mean']} MiB, growth {rss['growth_pct']:+.2f} %, peak "
                 f"{rss['peak']} MiB (VmHWM {rss['peak_hwm']} MiB)")  # fmt: skip
    lines.append(f"  RSS peak: first half {rss['peak_first_half']} MiB, second half "
                 f"{rss['peak_second_half']} MiB ({rss['peak_growth_pct']:+.2f} %), second-half "
                 f"slope {rss['second_half_slope_mib_per_min']:+.2f} MiB/min")  # fmt: skip
    lines.append(f"  threads: {thr['first']} -> {thr['last']} (max {thr['max']})")
    for example in report["error_examples"]:
        lines.append(f"  error: {example}")
    return "\n".join(lines)


async def run_soak(args: argparse.Namespace) -> dict[str, Any]:
    rng = random.Random(args.seed)
    env = {"GATEWAY_SERVER__API_KEYS": "soak-key"} if args.with_key else {}
    headers = {"Authorization": "Bearer soak-key"} if args.with_key else {}
    with GatewayProcess(env=env) as server:
        print(f"gateway pid {server.pid} on {server.url}; preparing clips and warming up",
              file=sys.stderr)  # fmt: skip
        clips = await asyncio.to_thread(make_clips, server.url, rng, headers)
        limits = httpx.Limits(max_connections=args.speech_workers + args.stt_workers + 2)
        async with httpx.AsyncClient(base_url=server.url, headers=headers, limits=limits,
                                     timeout=args.request_timeout) as client:  # fmt: skip
            # Warm up every path once (both models, each clip, each speech format), so the
            # first minute measures steady state, not lazy loading and arenas growing.
            warm = Stats()
            for extra in ({}, {"response_format": "wav"}, {"response_format": "opus"},
                          {"response_format": "flac"}, {"stream": True}):  # fmt: skip
                await _call(client, warm, "speech", "/v1/audio/speech",
                            json={"model": "tts-1", "voice": "alloy", "input": sentence(rng),
                                  **extra})  # fmt: skip
            for fmt, data in clips:
                await _call(
                    client,
                    warm,
                    "transcriptions",
                    "/v1/audio/transcriptions",
                    data={"model": "whisper-1"},
                    files={"file": (f"w.{fmt}", data)},
                )
            if warm.failures:
                raise RuntimeError(f"warm-up failed: {warm.failures}")
            print(f"running mixed load for {args.minutes:g} min", file=sys.stderr)
            stats, samples = Stats(), list[dict[str, float]]()
            t0 = time.monotonic()
            stop = t0 + args.minutes * 60
            workers = [speech_worker(client, stats, stop, random.Random(rng.random()))
                       for _ in range(args.speech_workers)]  # fmt: skip
            workers += [stt_worker(client, stats, stop, random.Random(rng.random()), clips)
                        for _ in range(args.stt_workers)]  # fmt: skip
            await asyncio.gather(sampler(server, samples, t0, stop, args.sample_every), *workers)
            samples.append({"t": round(time.monotonic() - t0, 1),
                            "rss_mib": server.status()["VmRSS"] / 1024,
                            "threads": server.status()["Threads"]})  # fmt: skip
            metrics = (await client.get("/metrics")).text
        report = summarize(stats, samples, args.minutes, server)
        report["server_5xx"] = sum(
            float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
            if line.startswith("gateway_http_requests_total") and 'status="5' in line
            and 'status="503"' not in line
        )  # fmt: skip
        report["settings"] = {"speech_workers": args.speech_workers,
                              "stt_workers": args.stt_workers, "seed": args.seed}  # fmt: skip
    return report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=10.0, help="load duration (default 10)")
    p.add_argument("--speech-workers", type=int, default=1, help="concurrent speech loops")
    p.add_argument("--stt-workers", type=int, default=1, help="concurrent transcription loops")
    p.add_argument("--sample-every", type=float, default=5.0, help="RSS sampling period, s")
    p.add_argument("--request-timeout", type=float, default=600.0)
    p.add_argument(
        "--max-growth-pct",
        type=float,
        default=10.0,
        help="fail when the second half's peak RSS exceeds the first half's by more",
    )
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--with-key", action="store_true", help="require and send an API key")
    p.add_argument("--json", type=Path, default=None, help="write the report here as JSON")
    args = p.parse_args(argv)
    report = asyncio.run(run_soak(args))
    print(render(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    failed = report["errors"] or report["server_5xx"]
    grew = report["rss_mib"]["peak_growth_pct"] > args.max_growth_pct
    return 1 if failed or grew else 0


if __name__ == "__main__":
    raise SystemExit(main())
