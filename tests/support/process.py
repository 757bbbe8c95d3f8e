"""A gateway in a process of its own (`GatewayProcess`: `gateway serve` on a free loopback port,
its signals, exit status, memory and log), and what the kernel says about a process's memory.
The one harness the tests, the benchmarks and benchmarks.soak start gateways with; it imports
nothing of the app, so a process that only measures (the benchmarks' raw worker) stays light.
`LiveServer` (the app in this process) is in `live.py`."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType

import httpx

__all__ = ["REPO", "GatewayProcess", "ServerError", "free_port", "proc_memory", "proc_status"]

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerError(RuntimeError):
    pass


class GatewayProcess:
    """`python -m gateway.cli serve` on 127.0.0.1:<free port>, with extra GATEWAY_* env, its
    output in a log file. The one way benchmarks (benchmarks.soak too) and the tests start a gateway
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


# -- kernel readings -------------------------------------------------------------------------


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
