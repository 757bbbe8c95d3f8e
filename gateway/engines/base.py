"""The small protocol the scheduler knows engines by.

An engine turns one work unit into a result on a given device. It never sees queues, lanes or
HTTP. `load`, `run` and `unload` block and are called from the one worker thread that owns a
loaded instance, so thread-local runtime state (CUDA context, nice value) stays consistent. The
exception: a family with a GPU concurrency above 1 (Kokoro's `gpu_concurrency`) has `run` called
from that many threads at once on the one loaded handle, which its runtime must allow (an ONNX
Runtime session does; kokoro-onnx's `_create_batch` keeps no state between calls).
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol, TypeVar, runtime_checkable


class Lane(StrEnum):
    """Where a unit runs. The values are the labels of metrics and the keys of JSON status."""

    gpu = "gpu"
    cpu = "cpu"


BatchUnitT = TypeVar("BatchUnitT")
UnitT = TypeVar("UnitT", contravariant=True)
ResultT = TypeVar("ResultT")


@dataclass(frozen=True)
class Device:
    """Where an instance runs: the lane, the GPU index, CPU threads and the GPU memory cap."""

    lane: Lane
    index: int = 0
    threads: int = 1
    gpu_mem_limit_mib: int | None = None


@runtime_checkable
class Engine(Protocol[UnitT, ResultT]):
    """One model family's runtime, generic in its work unit and its result."""

    model_id: str
    family: str
    # False when the runtime cannot cap its own GPU memory (CTranslate2): the scheduler then
    # attributes any process usage beyond the budgets to this engine.
    gpu_capped: bool

    def gpu_support(self) -> tuple[bool, str]:
        """Whether this runtime can use CUDA here, and why (for logs, status and doctor)."""
        ...

    def variants(self) -> dict[str, str | None]:
        """What each lane loads, in words (None: that lane cannot run this model)."""
        ...

    def load(self, device: Device) -> Any: ...

    def run(self, handle: Any, payload: UnitT) -> ResultT: ...

    def unload(self, handle: Any) -> None: ...

    def audio_seconds(self, payload: UnitT, result: ResultT) -> float:
        """Seconds of audio a unit spoke or heard, for the real-time-factor metric (0: unknown)."""
        ...


@runtime_checkable
class BatchEngine(Protocol[BatchUnitT, ResultT]):
    """An engine that can decode several units in one call on the GPU (dynamic batching).

    Units with equal, non-None `batch_key` may share a call; `run_batch` returns one result per
    payload, in order, decoding at most `batch_size` at a time."""

    def batch_key(self, payload: BatchUnitT) -> Hashable | None: ...

    def run_batch(
        self, handle: Any, payloads: list[BatchUnitT], batch_size: int
    ) -> list[ResultT]: ...


def lane_files(engine: Engine[Any, Any]) -> dict[str, str | None]:
    """`engine.variants()`, or {} for an engine (a test double) that does not say."""
    try:
        return engine.variants()
    except AttributeError:
        return {}


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
