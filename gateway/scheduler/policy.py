"""How the scheduler treats one model: placement, GPU budget, CPU threads, nice, pinning."""

from __future__ import annotations

from dataclasses import dataclass

from ..config import Placement


@dataclass
class ModelPolicy:
    """How the scheduler treats one model (from the engine family's settings)."""

    placement: Placement = Placement.auto
    gpu_budget_mib: int = 1024
    cpu_threads: int = 1
    cpu_nice: int = 0
    pinned: bool = False
