"""The small protocol the scheduler knows engines by.

An engine turns one work unit into a result on a given device. It never sees queues, lanes or
HTTP. `load`, `run` and `unload` block and are called from the one worker thread that owns a
loaded instance, so thread-local runtime state (CUDA context, nice value) stays consistent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

LaneName = Literal["gpu", "cpu"]


@dataclass(frozen=True)
class Device:
    """Where an instance runs: the lane, the GPU index, CPU threads and the GPU memory cap."""

    lane: LaneName
    index: int = 0
    threads: int = 1
    gpu_mem_limit_mib: int | None = None


@runtime_checkable
class Engine(Protocol):
    model_id: str
    family: str
    # False when the runtime cannot cap its own GPU memory (CTranslate2): the scheduler then
    # attributes any process usage beyond the budgets to this engine.
    gpu_capped: bool

    def gpu_support(self) -> tuple[bool, str]:
        """Whether this runtime can use CUDA here, and why (for logs, status and doctor)."""
        ...

    def load(self, device: Device) -> Any: ...

    def run(self, handle: Any, payload: Any) -> Any: ...

    def unload(self, handle: Any) -> None: ...


GPU_ERROR_MARKERS = (
    "cuda",
    "cudnn",
    "cublas",
    "out of memory",
    "outofmemory",
    "onnxruntimeerror: [onnxruntimeerror] : 6",
)


def is_gpu_error(exc: BaseException) -> bool:
    """CUDA failures (OOM, launch errors) are retried on the CPU; other errors are not."""
    text = f"{type(exc).__name__}: {exc}".lower()
    return any(marker in text for marker in GPU_ERROR_MARKERS)
