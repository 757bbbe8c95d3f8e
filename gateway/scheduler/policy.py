"""How the scheduler treats one model: placement, GPU budget, CPU threads, nice, pinning."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from ..config import Placement, QueuePolicy, SchedulerSettings
from .queue import Level


@dataclass
class ModelPolicy:
    """How the scheduler treats one model (from the engine family's settings)."""

    placement: Placement = Placement.auto
    gpu_budget_mib: int = 1024
    cpu_threads: int = 1
    cpu_nice: int = 0
    pinned: bool = False
    # GPU dynamic batching (engines that can batch): most units per call, and the longest a
    # batch may take by the measured time per unit, so an interactive unit waits at most that.
    max_batch: int = 1
    batch_latency_s: float = 1.0
    # Units one GPU instance runs at once (its runtime called from that many threads, inside one
    # memory budget); batch units take at most all but one, so interactive work finds one free.
    gpu_concurrency: int = 1
    # Seconds an instance stays loaded after use (inf: forever; 0: unloaded after each use);
    # None: its lane's idle TTL.
    keep_alive_s: float | None = None


_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")


def parse_keep_alive(value: str | float | int) -> float:
    """Ollama's `keep_alive` in seconds: a number of seconds or a Go-style duration ("5m",
    "1h30m", "500ms"); any negative value is forever (inf), 0 unloads after use."""
    if isinstance(value, bool):
        raise ValueError("keep_alive must be a duration or a number of seconds")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        text = value.strip().lower()
        try:
            seconds = float(text)
        except ValueError:
            sign = -1.0 if text.startswith("-") else 1.0
            body = text.lstrip("+-")
            parts = _DURATION.findall(body)
            if not body or "".join(n + u for n, u in parts) != body:
                raise ValueError(
                    f"keep_alive {value!r} is not a duration (e.g. 5m, 1h, 30s), "
                    "a number of seconds, -1 (forever) or 0"
                ) from None
            seconds = sign * sum(float(n) * _UNITS[u] for n, u in parts)
    if math.isnan(seconds):
        raise ValueError("keep_alive must be a number")
    return math.inf if seconds < 0 else seconds


def check_cpu_plan(policies: dict[str, ModelPolicy], settings: SchedulerSettings) -> None:
    """Foreground CPU slots x threads per unit never exceed the cores."""
    for model, policy in policies.items():
        if policy.cpu_threads * settings.cpu_slots > settings.cores:
            raise ValueError(
                f"{model}: {settings.cpu_slots} CPU slots x {policy.cpu_threads} "
                f"threads exceed {settings.cores} cores"
            )


def queue_policy(settings: SchedulerSettings, level: Level) -> QueuePolicy:
    return settings.interactive if level == Level.interactive else settings.batch
