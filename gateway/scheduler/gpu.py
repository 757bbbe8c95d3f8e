"""GPU inventory through NVML, and a simulated device for tests.

No driver or no GPU is a normal state (CPU-only mode): `NvmlMonitor.open()` returns a monitor with
no devices and a reason, said once, never raised per request.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import Protocol


@dataclass
class GpuInfo:
    index: int
    name: str
    uuid: str
    total_mib: int
    used_mib: int
    free_mib: int
    utilization_pct: int | None
    process_used_mib: int | None  # this process's memory on the device (None: not reported)
    mig: bool = False
    # CUDA compute capability (major, minor); 7.0 and up have tensor cores for fast fp16
    compute_capability: tuple[int, int] | None = None


class GpuMonitor(Protocol):
    reason: str  # why there is no GPU, or a one-line description of what was found

    def devices(self) -> list[GpuInfo]: ...

    def device(self, index: int) -> GpuInfo | None: ...

    def used_mib(self, index: int) -> int | None:
        """Device memory in use alone: read around every measured GPU run, so kept cheap."""
        ...

    def process_used_mib(self, index: int) -> int | None:
        """This process's memory on the device, where NVML lists its PID (None: not listed, as
        in a container, whose processes NVML lists with host PIDs); read around measured runs."""
        ...


class NvmlMonitor:
    """Real readings through nvidia-ml-py (`import pynvml`)."""

    def __init__(self) -> None:
        self.available = False
        self.reason = ""
        self._lock = threading.Lock()
        try:
            import pynvml

            pynvml.nvmlInit()
            self._nvml = pynvml
            count = pynvml.nvmlDeviceGetCount()
            self.driver = _str(pynvml.nvmlSystemGetDriverVersion())
            self.available = count > 0
            self.reason = (
                f"NVML: driver {self.driver}, {count} GPU(s)" if count else "NVML: no GPU visible"
            )
        except Exception as exc:  # NVMLError_LibraryNotFound, DriverNotLoaded, ImportError...
            self.reason = f"no NVIDIA driver/GPU ({type(exc).__name__}: {exc})".strip()

    def devices(self) -> list[GpuInfo]:
        if not self.available:
            return []
        with self._lock:
            return [d for i in range(self._nvml.nvmlDeviceGetCount()) if (d := self._read(i))]

    def device(self, index: int) -> GpuInfo | None:
        if not self.available:
            return None
        with self._lock:
            return self._read(index)

    def used_mib(self, index: int) -> int | None:
        if not self.available:
            return None
        nv = self._nvml
        with self._lock:
            try:
                return int(
                    nv.nvmlDeviceGetMemoryInfo(nv.nvmlDeviceGetHandleByIndex(index)).used
                ) // (1 << 20)
            except Exception:
                return None

    def process_used_mib(self, index: int) -> int | None:
        if not self.available:
            return None
        with self._lock:
            try:
                return self._mine(self._nvml.nvmlDeviceGetHandleByIndex(index))
            except Exception:
                return None

    def _mine(self, handle: object) -> int | None:
        pid = os.getpid()
        for proc in self._nvml.nvmlDeviceGetComputeRunningProcesses(handle):
            if proc.pid == pid and proc.usedGpuMemory is not None:
                return int(proc.usedGpuMemory) // (1 << 20)
        return None

    def _read(self, index: int) -> GpuInfo | None:
        nv = self._nvml
        try:
            h = nv.nvmlDeviceGetHandleByIndex(index)
            mem = nv.nvmlDeviceGetMemoryInfo(h)
        except Exception:
            return None
        util = None
        try:
            util = int(nv.nvmlDeviceGetUtilizationRates(h).gpu)
        except Exception:
            pass
        mine = None
        try:
            mine = self._mine(h)
        except Exception:
            pass
        mig = False
        try:
            mig = bool(nv.nvmlDeviceGetMigMode(h)[0])
        except Exception:
            pass
        capability = None
        try:
            major, minor = nv.nvmlDeviceGetCudaComputeCapability(h)
            capability = (int(major), int(minor))
        except Exception:
            pass
        return GpuInfo(
            index=index,
            name=_str(nv.nvmlDeviceGetName(h)),
            uuid=_str(nv.nvmlDeviceGetUUID(h)),
            total_mib=int(mem.total) // (1 << 20),
            used_mib=int(mem.used) // (1 << 20),
            free_mib=int(mem.free) // (1 << 20),
            utilization_pct=util,
            process_used_mib=mine,
            mig=mig,
            compute_capability=capability,
        )


def _str(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class SimulatedGpu:
    """A simulated NVML device with known memory, for deterministic tests (never used in serving).

    Simulated engines call `allocate`/`release` (this process's memory); `other_used_mib` stands
    for other processes.
    """

    def __init__(
        self,
        total_mib: int = 16384,
        name: str = "Simulated A2",
        compute_capability: tuple[int, int] | None = (8, 6),
    ) -> None:
        self.total_mib = total_mib
        self.name = name
        self.compute_capability = compute_capability
        self.other_used_mib = 0
        self.allocations: dict[str, int] = {}
        self.reason = f"simulated GPU {name}, {total_mib} MiB"
        self._lock = threading.Lock()

    def allocate(self, owner: str, mib: int) -> None:
        with self._lock:
            if self._used() + mib > self.total_mib:
                raise RuntimeError(
                    f"CUDA error: out of memory (simulated, {owner} asked {mib} MiB)"
                )
            self.allocations[owner] = self.allocations.get(owner, 0) + mib

    def release(self, owner: str) -> None:
        with self._lock:
            self.allocations.pop(owner, None)

    def _used(self) -> int:
        return self.other_used_mib + sum(self.allocations.values())

    def devices(self) -> list[GpuInfo]:
        d = self.device(0)
        return [d] if d else []

    def used_mib(self, index: int) -> int | None:
        if index != 0:
            return None
        with self._lock:
            return self._used()

    def process_used_mib(self, index: int) -> int | None:
        if index != 0:
            return None
        with self._lock:
            return sum(self.allocations.values())

    def device(self, index: int) -> GpuInfo | None:
        if index != 0:
            return None
        with self._lock:
            used = self._used()
        mine = self.process_used_mib(index)
        return GpuInfo(
            0,
            self.name,
            "GPU-simulated",
            self.total_mib,
            used,
            self.total_mib - used,
            0,
            mine,
            compute_capability=self.compute_capability,
        )
