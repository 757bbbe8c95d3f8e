"""Gateway processes (for benchmarks, scripts and tests), and what the kernel says about CPU and
memory.

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
    """`python -m gateway.cli serve` on 127.0.0.1:<free port>, with extra GATEWAY_* env, its
    output in a log file. The one way benchmarks, scripts/soak.py and the tests start a gateway
    in a process of its own.

    `log_dir`: where the log goes (kept); without it, a temporary file deleted on close.
    `quiet`: warnings only and a 2 s shutdown grace (benchmarks: no access log per request, and
    a configuration stops at once); else the settings' defaults, as `gateway serve` runs.
    `env` wins over both. Logs are text unless `env` or the environment says otherwise; the
    Wyoming listener takes a free port too unless they name one (two gateways at once, as the
    sharing benchmark's two-servers layout runs, would otherwise both bind 10300).
    """

    def __init__(
        self,
        env: dict[str, str] | None = None,
        name: str = "gateway",
        log_dir: Path | None = None,
        ready_timeout_s: float = 300.0,
        port: int | None = None,
        quiet: bool = False,
    ) -> None:
        self.name = name
        self.port = port or free_port()
        self.url = self.base_url = f"http://127.0.0.1:{self.port}"
        self.env = {"GATEWAY_SERVER__LOG_FORMAT": "text", "GATEWAY_WYOMING__PORT": "0",
                    **os.environ}  # fmt: skip
        if quiet:
            self.env |= {"GATEWAY_SERVER__LOG_LEVEL": "WARNING",
                         "GATEWAY_SERVER__SHUTDOWN_GRACE_S": "2"}  # fmt: skip
        self.env |= env or {}
        self.ready_timeout_s = ready_timeout_s
        self.temporary_log = log_dir is None
        if log_dir is None:
            fd, path = tempfile.mkstemp(prefix=f"{name}-", suffix=".log")
            os.close(fd)
            self.log_path = Path(path)
        else:
            log_dir.mkdir(parents=True, exist_ok=True)
            self.log_path = log_dir / f"{name}-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float | None = None, ready: bool = True) -> GatewayProcess:
        """Start it and wait for /ready (both models usable), or /health with `ready=False`."""
        cmd = [sys.executable, "-m", "gateway.cli", "serve", "--host", "127.0.0.1",
               "--port", str(self.port)]  # fmt: skip
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(cmd, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL)  # fmt: skip
        try:
            self.wait_for("/ready" if ready else "/health", timeout or self.ready_timeout_s)
        except BaseException:
            self.stop()  # never leave a server behind when it did not come up
            raise
        return self

    def wait_for(self, path: str, timeout: float) -> None:
        """Until GET `path` answers 200; ServerError when the process exits or time runs out."""
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise ServerError(f"{self.name} exited with {self.proc.returncode}; see "
                                  f"{self.log_path}:\n{self.log_tail()}")  # fmt: skip
            try:
                r = httpx.get(self.url + path, timeout=10)
                if r.status_code == 200:
                    return
                last = f"{r.status_code} {r.text[:500]}"
            except httpx.HTTPError as exc:
                last = repr(exc)
            time.sleep(0.25)
        raise ServerError(f"{self.name}: {path} not 200 after {timeout:g} s (last: {last}); see "
                          f"{self.log_path}:\n{self.log_tail()}")  # fmt: skip

    def log(self) -> str:
        return self.log_path.read_text("utf-8", "replace") if self.log_path.exists() else ""

    def log_tail(self, n: int = 20) -> str:
        return "\n".join(self.log().splitlines()[-n:])

    def memory(self) -> dict[str, float]:
        """VmHWM and VmRSS in MiB."""
        return proc_memory(self.pid)

    def status(self) -> dict[str, int]:
        """VmRSS and VmHWM in KiB, and Threads."""
        return proc_status(self.pid)

    def send_signal(self, sig: int = signal.SIGTERM) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def wait(self, timeout: float) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def stop(self, timeout: float = 60.0) -> int | None:
        """SIGTERM, then SIGKILL after `timeout`; the exit status (None if never started)."""
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(10)

    def close(self) -> None:
        """Stop it; a temporary log is deleted."""
        self.stop()
        if self.temporary_log:
            self.log_path.unlink(missing_ok=True)

    def __enter__(self) -> GatewayProcess:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


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


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS / VmHWM (KiB) and Threads of a process, from /proc/<pid>/status."""
    out: dict[str, int] = {}
    with open(f"/proc/{pid}/status", encoding="ascii") as fh:
        for line in fh:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM", "Threads"):
                out[key] = int(value.split()[0])
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
