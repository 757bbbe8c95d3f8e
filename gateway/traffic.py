"""Requests by front door: every protocol counts its requests here (`protocol` label `http`,
`wyoming` or `realtime`), for Prometheus and for the status page; live sessions (the Realtime
WebSocket) also count their turns, audio and turn latency. Touched from the event loop only."""

from __future__ import annotations

from collections import defaultdict, deque
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from .errors import GatewayError, Kind

# Request latency buckets (seconds), shared with the HTTP middleware's histogram.
LATENCY_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32, 64, 128)

# The status an error event of Wyoming or Realtime is counted with: the one HTTP answers for the
# same error (api/errors.py), so one dashboard compares the doors.
STATUS: dict[Kind, int] = {  # api/errors.py answers with the same map
    "invalid_request": 400,
    "not_found": 404,
    "too_large": 413,
    "rate_limit": 429,
    "unavailable": 503,
    "internal": 500,
}


def status_of(err: GatewayError) -> int:
    return STATUS[err.kind]


class Traffic:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "gateway_requests_total",
            "Requests by front door (protocol: http, wyoming, realtime), operation and status "
            "(HTTP status codes; an error event counts as the status HTTP would answer; a "
            "realtime turn is one `turn` request).",
            ["protocol", "operation", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "gateway_request_duration_seconds",
            "Request latency by front door, to the last byte or event sent.",
            ["protocol", "operation"],
            registry=registry,
            buckets=LATENCY_BUCKETS,
        )
        self.sessions = Gauge(
            "gateway_live_sessions",
            "Live transcription sessions open (protocol: realtime).",
            ["protocol"],
            registry=registry,
        )
        self.turns = Counter(
            "gateway_live_turns_total",
            "Turns of live speech committed and transcribed, by outcome (completed, failed).",
            ["protocol", "outcome"],
            registry=registry,
        )
        self.audio = Counter(
            "gateway_live_audio_seconds_total",
            "Seconds of audio received by live sessions.",
            ["protocol"],
            registry=registry,
        )
        self.turn_latency = Histogram(
            "gateway_live_turn_latency_seconds",
            "From the end of a turn's speech (speech stopped, or the client's commit) to its "
            "completed transcript.",
            ["protocol"],
            registry=registry,
            buckets=LATENCY_BUCKETS,
        )
        self.live: dict[str, dict[str, float]] = defaultdict(lambda: {"turns": 0, "audio_s": 0.0})
        self.latencies: dict[str, deque[float]] = defaultdict(lambda: deque(maxlen=100))
        self.totals: dict[str, dict[str, int]] = defaultdict(lambda: {"requests": 0, "errors": 0})
        self.connections: dict[str, int] = defaultdict(int)
        self.listening: dict[str, str] = {}

    def record(self, protocol: str, operation: str, status: int, elapsed_s: float) -> None:
        self.requests.labels(protocol, operation, str(status)).inc()
        self.latency.labels(protocol, operation).observe(elapsed_s)
        row = self.totals[protocol]
        row["requests"] += 1
        row["errors"] += 1 if status >= 400 else 0

    def heard(self, protocol: str, seconds: float) -> None:
        self.audio.labels(protocol).inc(seconds)
        self.live[protocol]["audio_s"] += seconds

    def turn(self, protocol: str, ok: bool, latency_s: float) -> None:
        self.turns.labels(protocol, "completed" if ok else "failed").inc()
        self.live[protocol]["turns"] += 1
        if ok:
            self.turn_latency.labels(protocol).observe(latency_s)
            self.latencies[protocol].append(latency_s)

    def summary(self) -> dict[str, Any]:
        """Per protocol: requests and errors since start; for our own listeners also the open
        connections and the address; for live sessions their turns, audio seconds and the
        median turn latency of the last 100 turns."""
        out: dict[str, Any] = {}
        for protocol in sorted(set(self.totals) | set(self.listening) | {"http"}):
            out[protocol] = dict(self.totals[protocol])
            if protocol in self.listening:  # a listener of our own (HTTP's is uvicorn's)
                out[protocol]["connections"] = self.connections.get(protocol, 0)
                out[protocol]["listening"] = self.listening[protocol]
            if protocol in self.live:
                recent = sorted(self.latencies[protocol])
                out[protocol].update(
                    turns=int(self.live[protocol]["turns"]),
                    audio_s=round(self.live[protocol]["audio_s"], 1),
                    turn_latency_s=round(recent[len(recent) // 2], 3) if recent else None,
                )
        return out
