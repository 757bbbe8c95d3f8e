"""Run-time estimates from measured units: the Retry-After of a full queue, whether the GPU
wait is long enough to spill over to the CPU, and (in batching) how many units fit a budget."""

from __future__ import annotations

import math

from ..config import SchedulerSettings
from ..engines.base import Lane


class RunTimes:
    def __init__(self, settings: SchedulerSettings) -> None:
        self.settings = settings
        # (model, lane) -> the last measured run time per unit (a batch of n counts run / n)
        self.per_unit: dict[tuple[str, str], float] = {}

    def retry_after(self, queued: int) -> int:
        """Seconds until a queue of `queued` units has likely drained through the CPU slots."""
        runs = list(self.per_unit.values()) or [1.0]
        mean = sum(runs) / len(runs)
        slots = self.settings.cpu_slots + self.settings.cpu_background_slots
        return max(1, math.ceil(queued * mean / max(1, slots)))

    def gpu_wait_too_long(self, ahead: int) -> bool:
        """Whether `ahead` units before this one on the GPU exceed `spillover_wait_s`."""
        bound = self.settings.spillover_wait_s
        if not bound:
            return False
        gpu_times = [t for (_, lane), t in self.per_unit.items() if lane == Lane.gpu]
        mean = sum(gpu_times) / len(gpu_times) if gpu_times else 0.0
        return ahead * mean / self.settings.gpu_slots > bound
