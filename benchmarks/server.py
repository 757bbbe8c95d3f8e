"""What the kernel says about CPU and the machine, for the benchmarks; and the gateway processes
they run, from the harness they share with the tests (tests/support/process.py).

Each benchmark configuration runs in its own `gateway serve` process on a free loopback port,
started with its own GATEWAY_* environment, so policies never share a process and a
configuration's memory is its own.
"""

from __future__ import annotations

import os
import platform
import time
from dataclasses import dataclass

from tests.support.process import (
    GatewayProcess,
    ServerError,
    free_port,
    proc_memory,
    proc_status,
)

# the harness, under the names the benchmark modules have always imported it by
__all__ = [
    "CpuMeter",
    "CpuTimes",
    "GatewayProcess",
    "ServerError",
    "cores",
    "cpu_busy",
    "cpu_times",
    "free_port",
    "load_average",
    "machine_info",
    "proc_cpu_seconds",
    "proc_memory",
    "proc_status",
]


# -- kernel readings ---------------------------------------------------------------------------


@dataclass(frozen=True)
class CpuTimes:
    busy: int  # jiffies, all cores together
    total: int
    at: float


def cpu_times() -> CpuTimes:
    """The first line of /proc/stat: busy = everything but idle and iowait."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    # guest time is already counted in user/nice
    total = sum(fields[:8])
    return CpuTimes(total - idle, total, time.monotonic())


def cpu_busy(before: CpuTimes, after: CpuTimes) -> float:
    """Fraction of all cores' time that was busy between two readings (0..1)."""
    total = after.total - before.total
    return (after.busy - before.busy) / total if total > 0 else 0.0


def proc_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (all its threads), from /proc/<pid>/stat."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    # after "pid (comm)": state is field 3, utime 14 and stime 15 (1-based) -> 11 and 12 here
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


class CpuMeter:
    """Share of all cores used between start() and stop(): by the whole machine, by the given
    gateway processes, and by everything else except this (client) process."""

    def __init__(self, pids: list[int]) -> None:
        self.pids = pids

    def _read(self) -> tuple[CpuTimes, float, float]:
        return (
            cpu_times(),
            sum(proc_cpu_seconds(p) for p in self.pids),
            proc_cpu_seconds(os.getpid()),
        )

    def start(self) -> CpuMeter:
        self._start = self._read()
        return self

    def stop(self) -> dict[str, float]:
        (m0, g0, s0), (m1, g1, s1) = self._start, self._read()
        capacity = max(1e-9, (m1.at - m0.at) * cores())
        machine = cpu_busy(m0, m1)
        gateway = (g1 - g0) / capacity
        return {
            "machine": machine,
            "gateway": gateway,
            "others": max(0.0, machine - gateway - (s1 - s0) / capacity),
        }


def load_average() -> tuple[float, float, float]:
    try:
        return os.getloadavg()
    except OSError:
        return (0.0, 0.0, 0.0)


def machine_info() -> dict[str, str | int | float]:
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem_gib = 0.0
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    mem_gib = int(line.split()[1]) / 1024 / 1024
                    break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "nproc": cores or 1,
        "cpu": cpu or "unknown",
        "ram_gib": round(mem_gib, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
    }
