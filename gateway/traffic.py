"""Requests by front door: every protocol counts its requests here (`protocol` label `http` or
`wyoming`), for Prometheus and for the status page. Touched from the event loop only."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram

# Request latency buckets (seconds), shared with the HTTP middleware's histogram.
LATENCY_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32, 64, 128)


class Traffic:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "gateway_requests_total",
            "Requests by front door (protocol: http, wyoming), operation and status (HTTP "
            "status codes; a Wyoming error event counts as the status HTTP would answer).",
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
        self.totals: dict[str, dict[str, int]] = defaultdict(lambda: {"requests": 0, "errors": 0})
        self.connections: dict[str, int] = defaultdict(int)
        self.listening: dict[str, str] = {}

    def record(self, protocol: str, operation: str, status: int, elapsed_s: float) -> None:
        self.requests.labels(protocol, operation, str(status)).inc()
        self.latency.labels(protocol, operation).observe(elapsed_s)
        row = self.totals[protocol]
        row["requests"] += 1
        row["errors"] += 1 if status >= 400 else 0

    def summary(self) -> dict[str, Any]:
        """Per protocol: requests and errors since start; for our own listeners also the open
        connections and the address."""
        out: dict[str, Any] = {}
        for protocol in sorted(set(self.totals) | set(self.listening) | {"http"}):
            out[protocol] = dict(self.totals[protocol])
            if protocol in self.listening:  # a listener of our own (HTTP's is uvicorn's)
                out[protocol]["connections"] = self.connections.get(protocol, 0)
                out[protocol]["listening"] = self.listening[protocol]
        return out
