"""HTTP calls the benchmarks make, timed end to end as a client sees them, and small statistics."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np

AUTH = {"Authorization": "Bearer sk-bench"}  # any key: none is configured on bench servers


class BenchRequestError(RuntimeError):
    pass


def speech(
    client: httpx.Client,
    base: str,
    text: str,
    voice: str = "alloy",
    fmt: str | None = None,
    headers: dict[str, str] | None = None,
) -> float:
    """One speech request (Open WebUI's shape: no format means mp3); returns seconds."""
    body: dict[str, str] = {"model": "tts-1", "voice": voice, "input": text}
    if fmt:
        body["response_format"] = fmt
    headers = {**AUTH, **(headers or {})}
    elapsed, _ = _post("speech", client, f"{base}/v1/audio/speech", json=body, headers=headers)
    return elapsed


def transcribe(
    client: httpx.Client,
    base: str,
    data: bytes,
    filename: str = "audio.mp3",
    level: str | None = None,
    model: str = "whisper-1",
    language: str | None = None,
) -> tuple[float, str]:
    """One transcription (multipart, no part content type, like Open WebUI); (seconds, text)."""
    headers = dict(AUTH)
    form = {"model": model} if language is None else {"model": model, "language": language}
    if level:
        headers["X-Priority"] = level
    url = f"{base}/v1/audio/transcriptions"
    files = {"file": (filename, data)}
    elapsed, r = _post("transcription", client, url, files=files, data=form, headers=headers)
    return elapsed, str(r.json().get("text", ""))


def _post(
    what: str, client: httpx.Client, url: str, **request: Any
) -> tuple[float, httpx.Response]:
    """One timed POST: (seconds, response); anything but a 200 with a body is an error, so a
    refused request never counts as a fast one."""
    t0 = time.perf_counter()
    r = client.post(url, **request)
    elapsed = time.perf_counter() - t0
    if r.status_code != 200 or not r.content:
        raise BenchRequestError(f"{what}: HTTP {r.status_code}: {r.text[:200]}")
    return elapsed, r


def stream_speech(
    client: httpx.Client, base: str, text: str, voice: str = "alloy", fmt: str = "mp3"
) -> tuple[float, float, int]:
    """A streamed speech request: (time to first audio byte, time to last byte, bytes)."""
    body = {"model": "tts-1", "voice": voice, "input": text, "response_format": fmt, "stream": True}
    t0 = time.perf_counter()
    first = None
    size = 0
    with client.stream("POST", f"{base}/v1/audio/speech", json=body, headers=AUTH) as r:
        if r.status_code != 200:
            r.read()
            raise BenchRequestError(f"stream: HTTP {r.status_code}: {r.text[:200]}")
        for chunk in r.iter_bytes():
            if chunk and first is None:
                first = time.perf_counter() - t0
            size += len(chunk)
    total = time.perf_counter() - t0
    return (first if first is not None else total), total, size


# -- background load ---------------------------------------------------------------------------


@dataclass
class JobRecord:
    start: float
    end: float
    ok: bool
    audio_s: float


@dataclass
class BatchLoop:
    """`loops` client threads, each posting its clip (clips[i % len]) with X-Priority: batch
    until stopped; every job is recorded with its monotonic start and end."""

    base: str
    clips: list[bytes]
    audio_s: float
    loops: int = 2
    level: str = "batch"
    records: list[JobRecord] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    def _run(self, i: int) -> None:
        with httpx.Client(timeout=httpx.Timeout(600.0, connect=10.0)) as client:
            while not self._stop.is_set():
                t0 = time.monotonic()
                ok = True
                try:
                    clip = self.clips[i % len(self.clips)]
                    transcribe(client, self.base, clip, f"batch-{i}.mp3", self.level)
                except (BenchRequestError, httpx.HTTPError) as exc:
                    ok = False
                    if not self._stop.is_set():
                        self.errors.append(str(exc)[:200])
                        time.sleep(0.5)
                with self._lock:
                    self.records.append(JobRecord(t0, time.monotonic(), ok, self.audio_s))

    def start(self) -> BatchLoop:
        for i in range(self.loops):
            t = threading.Thread(target=self._run, args=(i,), daemon=True, name=f"batch-{i}")
            t.start()
            self._threads.append(t)
        return self

    def stop(self, wait_s: float = 0.0) -> None:
        """Ask the loops to stop after their current job; wait up to `wait_s` for them."""
        self._stop.set()
        deadline = time.monotonic() + wait_s
        for t in self._threads:
            t.join(timeout=max(0.0, deadline - time.monotonic()))

    def finished(self, t0: float, t1: float) -> int:
        """Jobs that finished successfully inside [t0, t1] (monotonic clock)."""
        return sum(1 for r in self.records if r.ok and t0 <= r.end <= t1)

    def throughput(self, t0: float, t1: float) -> float:
        """Seconds of audio transcribed per wall second in [t0, t1]: each finished job that
        overlaps the window counts for the share of its run inside it. Call it after the loops
        have stopped, so jobs running at t1 have finished and count too."""
        if t1 <= t0:
            return 0.0
        done = 0.0
        with self._lock:
            records = list(self.records)
        for r in records:
            if not r.ok:
                continue
            overlap = min(r.end, t1) - max(r.start, t0)
            if overlap > 0 and r.end > r.start:
                done += r.audio_s * overlap / (r.end - r.start)
        return done / (t1 - t0)


# -- statistics --------------------------------------------------------------------------------


def summary(values: list[float]) -> dict[str, float]:
    """n, p50, p95, mean, min, max (seconds); empty input gives n = 0 and NaNs."""
    if not values:
        nan = float("nan")
        return {"n": 0, "p50": nan, "p95": nan, "mean": nan, "min": nan, "max": nan}
    arr = np.asarray(values, dtype=float)
    return {
        "n": len(values),
        "p50": float(np.percentile(arr, 50)),
        "p95": float(np.percentile(arr, 95)),
        "mean": float(arr.mean()),
        "min": float(arr.min()),
        "max": float(arr.max()),
    }


def median(values: list[float]) -> float:
    return float(np.median(values)) if values else float("nan")
