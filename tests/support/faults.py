"""Faults put into a real engine's `run`: it waits at a gate, or crashes on one call. The real
model still does the work of every other call, so what the tests see around the fault is real."""

from __future__ import annotations

import threading
from typing import Any


def blocked(engine: Any) -> tuple[threading.Event, threading.Event]:
    """Make the engine's runs wait for `gate` (bounded, so nothing hangs); `started` is set
    when the first one starts."""
    gate, started = threading.Event(), threading.Event()
    real_run = engine.run

    def run(handle: Any, unit: Any) -> Any:
        started.set()
        gate.wait(120)
        return real_run(handle, unit)

    engine.run = run
    return gate, started


def crash_on_call(engine: Any, n: int) -> list[Any]:
    """Make the engine's `n`-th run raise (a simulated crash); returns the units it was called
    with, as they come."""
    real_run = engine.run
    calls: list[Any] = []

    def run(handle: Any, unit: Any) -> Any:
        calls.append(unit)
        if len(calls) == n:
            raise RuntimeError(f"simulated crash in unit {n}")
        return real_run(handle, unit)

    engine.run = run
    return calls
