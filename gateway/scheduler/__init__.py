"""GPU-sharing scheduler: the API layer talks to it; it talks to engines through a protocol."""

from .core import ModelPolicy, Scheduler
from .gpu import GpuInfo, GpuMonitor, NvmlMonitor, SimulatedGpu
from .metrics import GpuCollector, SchedulerMetrics
from .units import (
    Job,
    Level,
    NotPlaceable,
    QueueFull,
    QueueTimeout,
    SchedulerError,
    ShuttingDown,
    UnitRecord,
)  # fmt: skip

__all__ = [
    "GpuCollector", "GpuInfo", "GpuMonitor", "Job", "Level", "ModelPolicy", "NotPlaceable",
    "NvmlMonitor", "QueueFull", "QueueTimeout", "Scheduler", "SchedulerError",
    "SchedulerMetrics", "ShuttingDown", "SimulatedGpu", "UnitRecord",
]  # fmt: skip
