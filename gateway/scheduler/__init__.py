"""GPU-sharing scheduler: the task layer talks to it; it talks to engines through a protocol.

Arrows point one way: core -> loading -> placement -> pool -> policy; pool -> meter;
placement -> queue; core -> pressure -> placement; core -> queue; core -> waiting -> metrics;
core -> batching; core -> snapshot; core -> speculation -> queue. The view (status) sits above:
status -> snapshot; nothing below imports it. Everything outside the package uses `Scheduler`'s
public API (see its docstring) and the names exported here.
"""

from ..engines.base import Lane
from .core import Internals, Scheduler
from .gpu import GpuInfo, GpuMonitor, NvmlMonitor, SimulatedGpu
from .metrics import GpuCollector, SchedulerMetrics
from .policy import ModelPolicy, parse_keep_alive
from .queue import (
    Job,
    Level,
    NotPlaceable,
    QueueFull,
    QueueTimeout,
    SchedulerError,
    ShuttingDown,
    Unit,
    UnitRecord,
)
from .snapshot import LoadedModel, LoadResult, ModelFacts, Snapshot
from .speculation import Speculation
from .status import render as render_status

__all__ = [
    "GpuCollector",
    "GpuInfo",
    "GpuMonitor",
    "Internals",
    "Job",
    "Lane",
    "Level",
    "LoadResult",
    "LoadedModel",
    "ModelFacts",
    "ModelPolicy",
    "NotPlaceable",
    "NvmlMonitor",
    "QueueFull",
    "QueueTimeout",
    "Scheduler",
    "SchedulerError",
    "SchedulerMetrics",
    "ShuttingDown",
    "SimulatedGpu",
    "Snapshot",
    "Speculation",
    "Unit",
    "UnitRecord",
    "parse_keep_alive",
    "render_status",
]
