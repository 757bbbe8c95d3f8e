"""How the scheduler treats one model: placement, GPU budget, CPU threads, nice, pinning."""

from __future__ import annotations

from dataclasses import dataclass

from ..config import Placement, SchedulerSettings


@dataclass
class ModelPolicy:
    """How the scheduler treats one model (from the engine family's settings)."""

    placement: Placement = Placement.auto
    gpu_budget_mib: int = 1024
    cpu_threads: int = 1
    cpu_nice: int = 0
    pinned: bool = False
    # GPU dynamic batching (engines that can batch): most units per call, and the longest a
    # batch may take by the measured time per unit, so an interactive unit waits at most that.
    max_batch: int = 1
    batch_latency_s: float = 1.0


def check_cpu_plan(policies: dict[str, ModelPolicy], settings: SchedulerSettings) -> None:
    """Foreground CPU slots x threads per unit never exceed the cores."""
    for model, policy in policies.items():
        if policy.cpu_threads * settings.cpu_slots > settings.cores:
            raise ValueError(
                f"{model}: {settings.cpu_slots} CPU slots x {policy.cpu_threads} "
                f"threads exceed {settings.cores} cores"
            )
