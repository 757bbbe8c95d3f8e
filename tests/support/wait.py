"""Wait for a state, never for a duration: the bound only turns a hang into a failure, so it is
generous (a loaded 2-core machine) and the poll is short (a passing test waits no longer than the
state takes)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

TIMEOUT_S = 120.0


async def until(predicate: Callable[[], object], what: str, timeout: float = TIMEOUT_S) -> None:
    """On the event loop: yields to it between looks, so the work the test waits for runs."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for: {what}")
        await asyncio.sleep(0.002)


def wait_until(predicate: Callable[[], object], what: str, timeout: float = TIMEOUT_S) -> None:
    """In a plain thread, while the server runs in another."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for: {what}")
        time.sleep(0.01)
