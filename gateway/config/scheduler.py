"""The `scheduler` settings section (queue policies, lanes, slots, memory)."""

from __future__ import annotations

import os
from typing import Literal

from pydantic import BaseModel, Field, model_validator


class QueuePolicy(BaseModel):
    max_queue_size: int = Field(64, ge=1, description="Queued jobs before 429.")
    default_timeout_s: float = Field(
        120.0, gt=0, description="Longest a unit waits in the queue before 503."
    )
    allow_timeout_override: bool = Field(
        True, description="A request may lower (never raise) the timeout with `X-Queue-Timeout`."
    )


class SchedulerSettings(BaseModel):
    policy: Literal["priority", "fifo"] = Field(
        "priority",
        description="`priority`: levels, aging and niced batch threads; `fifo`: one queue in "
        "arrival order, no nice (for comparison).",
    )
    interactive: QueuePolicy = Field(
        default_factory=lambda: QueuePolicy(max_queue_size=64, default_timeout_s=60.0),
        description="Queue policy of level `interactive`.",
    )
    batch: QueuePolicy = Field(
        default_factory=lambda: QueuePolicy(max_queue_size=16, default_timeout_s=3600.0),
        description="Queue policy of level `batch`.",
    )
    batch_threshold_s: float = Field(
        30.0, gt=0, description="Transcriptions longer than this default to level `batch`."
    )
    aging_s: float = Field(
        30.0,
        gt=0,
        description="A job waiting longer than this since its first unit was queued is promoted "
        "one level for the rest of the job.",
    )
    gpu_slots: int = Field(
        2,
        ge=1,
        le=8,
        description="Units running on the GPU at once. 2 (measured on an H200, "
        "docs/benchmarks-gpu.md): a speech unit runs beside a transcription batch instead of "
        "waiting for it; 1: strictly one at a time, in priority order.",
    )
    cpu_slots: int = Field(
        1, ge=1, description="Foreground CPU units at once; slots x threads <= cores."
    )
    cpu_background_slots: int = Field(
        1,
        ge=0,
        description="Extra CPU slots for niced engines (cpu_nice > 0) only; they take idle "
        "cycles, so they do not count against the cores.",
    )
    gpu_device: int = Field(0, ge=0, description="Index of the GPU this replica uses.")
    gpu_reserve_mib: int = Field(
        512, ge=0, description="GPU memory kept free on top of the budgets (CUDA context...)."
    )
    gpu_idle_ttl_s: float = Field(
        300.0, ge=0, description="Unload a GPU model idle this long; 0: never."
    )
    cpu_idle_ttl_s: float = Field(
        0.0, ge=0, description="Unload a CPU model idle this long; 0: never."
    )
    gpu_pressure_check_s: float = Field(
        2.0,
        ge=0,
        description="How often the device's free memory is read for other processes' pressure; "
        "under `gpu_reserve_mib` free, idle GPU models are unloaded and new loads go to the CPU "
        "(`gpu_pressure`). 0: off.",
    )
    gpu_pressure_hold_s: float = Field(
        30.0,
        ge=0,
        description="After GPU pressure, free memory must stay above the reserve plus the "
        "largest GPU budget this long before new loads use the GPU again (no flapping).",
    )
    over_budget_cooldown_s: float = Field(
        300.0,
        ge=0,
        description="An engine found over its GPU budget is unloaded and kept on the CPU this long.",
    )
    gpu_retry_cooldown_s: float = Field(
        300.0,
        ge=0,
        description="After a failed GPU load (at start-up or on first use) the model runs on the "
        "CPU this long, then the GPU is tried again; `/v1/scheduler` shows `gpu_broken` and "
        "`gpu_retry_in_s`.",
    )
    spillover_wait_s: float = Field(
        0.0,
        ge=0,
        description="Run on the idle CPU when the GPU wait estimate exceeds this; 0: off.",
    )
    cores: int = Field(0, ge=0, description="CPU cores to plan for; 0: what the process may use.")

    @model_validator(mode="after")
    def _cores(self) -> SchedulerSettings:
        if self.cores == 0:
            self.cores = (
                len(os.sched_getaffinity(0))
                if hasattr(os, "sched_getaffinity")
                else (os.cpu_count() or 1)
            )
        return self
