"""Gateway processes for benchmarks, and what the kernel says about CPU and memory.

Each benchmark configuration runs in its own `gateway serve` process on a free loopback port,
started with its own GATEWAY_* environment, so policies never share a process and a
configuration's memory is its own.
"""

from __future__ import annotations

import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import httpx


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerError(RuntimeError):
    pass


class GatewayProcess:
    """`python -m gateway.cli serve` on 127.0.0.1:<free port>, with extra GATEWAY_* env."""

    def __init__(
        self,
        env: dict[str, str] | None = None,
        name: str = "gateway",
        log_dir: Path | None = None,
        ready_timeout_s: float = 120.0,
    ) -> None:
        self.name = name
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.extra_env = dict(env or {})
        self.ready_timeout_s = ready_timeout_s
        self.log_dir = Path(log_dir or tempfile.gettempdir())
        self.log_path = self.log_dir / f"{name}-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> GatewayProcess:
        env = {**os.environ, **self.extra_env}
        env.setdefault("GATEWAY_SERVER__LOG_LEVEL", "WARNING")
        env.setdefault("GATEWAY_SERVER__SHUTDOWN_GRACE_S", "2")
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("wb")
        cmd = [
            sys.executable,
            "-m",
            "gateway.cli",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
        ]
        self.proc = subprocess.Popen(
            cmd, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        log.close()
        deadline = time.monotonic() + self.ready_timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServerError(
                    f"{self.name} exited with {self.proc.returncode}; see "
                    f"{self.log_path}:\n{self.log_tail()}"
                )
            try:
                if httpx.get(self.base_url + "/ready", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        self.stop()
        raise ServerError(
            f"{self.name} not ready after {self.ready_timeout_s:g} s; see {self.log_path}"
        )

    def log_tail(self, n: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def memory(self) -> dict[str, float]:
        return proc_memory(self.pid)

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)

    def __enter__(self) -> GatewayProcess:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


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


def proc_memory(pid: int) -> dict[str, float]:
    """VmHWM (peak RSS) and VmRSS of a process in MiB, from /proc/<pid>/status."""
    out: dict[str, float] = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in ("VmHWM", "VmRSS"):
                    out[key] = int(value.split()[0]) / 1024.0
    except OSError:
        pass
    return out


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
