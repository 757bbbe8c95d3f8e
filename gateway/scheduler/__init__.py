"""GPU-sharing scheduler: the task layer talks to it; it talks to engines through a protocol.

Arrows point one way: core -> lifecycle -> placement -> pool -> policy; pool -> meter;
placement -> queue; core -> pressure -> placement;
control -> lifecycle; core -> queue; core -> waiting -> status; core -> batching;
core -> speculation -> queue.
"""

from ..engines.base import Lane
from .core import Scheduler
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
from .speculation import Speculation

__all__ = [
    "GpuCollector",
    "GpuInfo",
    "GpuMonitor",
    "Job",
    "Lane",
    "Level",
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
    "Speculation",
    "Unit",
    "UnitRecord",
    "parse_keep_alive",
]
