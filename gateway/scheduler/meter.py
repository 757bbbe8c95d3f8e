"""The GPU memory each instance holds, from NVML readings around its loads and runs.

NVML reports memory per device, and per process where it lists this process's PID (inside a
container it lists host PIDs, so none matches). A change read around one instance's call is
charged to that instance only when nothing else can have made it:

- the process's own figure is used where NVML gives it, so other processes never count;
- loads and measured runs hold one lock, so two of them never share a window;
- a run that overlapped another GPU call of this process (a Kokoro unit on the second GPU slot
  beside a Whisper batch) is not charged at all: its window holds both. The instance's next run
  alone is. A false charge would unload Whisper from the GPU as over budget; a skipped one only
  waits for the next quiet run.

A load is always charged: it happens once, and its weights dwarf what a run beside it adds.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

Reading = tuple[int | None, int | None]  # (this process's MiB, the device's MiB)


class GpuMeter:
    def __init__(
        self, device_mib: Callable[[], int | None], process_mib: Callable[[], int | None]
    ) -> None:
        self.device_mib = device_mib
        self.process_mib = process_mib
        self.lock = threading.Lock()  # one load or measured run at a time
        self._count = threading.Lock()
        self.in_flight = 0  # GPU calls of this process running now
        self.begun = 0  # GPU calls begun so far

    @contextmanager
    def call(self) -> Iterator[int]:
        """Every GPU call (load or run, measured or not) runs inside; yields the calls begun
        before it if it started alone, else -1."""
        with self._count:
            self.in_flight += 1
            self.begun += 1
            mark = self.begun if self.in_flight == 1 else -1
        try:
            yield mark
        finally:
            with self._count:
                self.in_flight -= 1

    def _alone_since(self, mark: int) -> bool:
        with self._count:
            return mark >= 0 and self.begun == mark

    def read(self) -> Reading:
        return self.process_mib(), self.device_mib()

    def measure(
        self, charge: Callable[[int], None], fn: Callable[..., Any], *args: Any, load: bool
    ) -> Any:
        """Call fn, charging the change in memory (see the module's docstring)."""
        with self.lock, self.call() as mark:
            before = self.read()
            try:
                return fn(*args)
            finally:
                delta = change(before, self.read())
                if delta is not None and (load or self._alone_since(mark)):
                    charge(delta)


def change(before: Reading, after: Reading) -> int | None:
    """The process's own change where NVML gave it both times, else the device's."""
    (proc0, dev0), (proc1, dev1) = before, after
    if proc0 is not None and proc1 is not None:
        return proc1 - proc0
    if dev0 is not None and dev1 is not None:
        return dev1 - dev0
    return None
