"""Yielding GPU memory to other processes (a local LLM on the same device).

A periodic task reads the device's free memory through NVML, off the hot path (in a thread, every
`gpu_pressure_check_s`). When other processes push free memory under `gpu_reserve_mib`, idle GPU
instances are unloaded, least recently used first and models with interactive work queued last,
and new loads go to the CPU with reason `gpu_pressure`. The GPU is used for new loads again only
once free memory has stayed above the reserve plus the largest GPU budget for
`gpu_pressure_hold_s`, so a neighbour hovering at the line does not make models flap between
lanes. A unit running on the GPU is never interrupted: its instance is unloaded once it is idle.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import Any

from ..config import Placement, SchedulerSettings
from .gpu import GpuInfo, GpuMonitor
from .placement import Placer
from .pool import Instance, InstancePool
from .queue import Level, UnitQueue

log = logging.getLogger(__name__)


class PressureWatch:
    def __init__(
        self,
        settings: SchedulerSettings,
        gpu: GpuMonitor | None,
        placer: Placer,
        pool: InstancePool,
        queue: UnitQueue,
    ) -> None:
        self.settings = settings
        self.gpu = gpu
        self.placer = placer
        self.pool = pool
        self.queue = queue
        self.metrics = pool.metrics
        self.clock = time.monotonic  # the hold; a test may set a clock of its own
        self.active = False
        self.clear_since: float | None = None  # when free memory rose above the line again
        self.others_mib: int | None = None
        self.free_mib: int | None = None
        self.events: deque[dict[str, Any]] = deque(maxlen=20)  # newest last

    @property
    def enabled(self) -> bool:
        s = self.settings
        return self.gpu is not None and self.placer.gpu_present and s.gpu_pressure_check_s > 0

    def clear_line_mib(self) -> int:
        """Free memory that ends pressure: the reserve plus the largest budget that may load."""
        budgets = [
            p.gpu_budget_mib for p in self.placer.policies.values() if p.placement != Placement.cpu
        ]
        return self.settings.gpu_reserve_mib + max(budgets, default=0)

    async def run(self) -> None:
        assert self.gpu is not None
        index = self.settings.gpu_device
        while True:
            await asyncio.sleep(self.settings.gpu_pressure_check_s)
            try:
                dev = await asyncio.to_thread(self.gpu.device, index)
            except Exception as exc:  # a driver hiccup must not end the watch
                log.warning("cannot read GPU memory: %s", exc)
                continue
            self.check(dev)

    def read(self) -> GpuInfo | None:
        return self.gpu.device(self.settings.gpu_device) if self.gpu is not None else None

    def check(self, dev: GpuInfo | None = None) -> list[Instance]:
        """Apply one reading (taken now when not given); returns the instances unloaded."""
        if not self.enabled:
            return []
        dev = dev if dev is not None else self.read()
        if dev is None:
            return []
        mine = dev.process_used_mib
        if mine is None:  # NVML does not list this PID (a container): what we measured
            mine = sum(i.held_mib for i in self.pool.on_gpu())
        self.others_mib = max(0, dev.used_mib - mine)
        self.free_mib = dev.free_mib
        self.metrics.gpu_other_mib.set(self.others_mib)
        unloaded: list[Instance] = []
        if dev.free_mib < self.settings.gpu_reserve_mib:
            self.clear_since = None
            if not self.active:
                self._begin(dev)
            unloaded = self._yield(self.settings.gpu_reserve_mib - dev.free_mib)
            if unloaded:
                self.events[-1]["unloaded"] += [i.model for i in unloaded]
        elif self.active:
            self._maybe_end(dev)
        return unloaded

    def _begin(self, dev: GpuInfo) -> None:
        self.active = True
        self.placer.gpu_pressure = True
        self.events.append(
            {
                "started": time.time(),
                "ended": None,
                "free_mib": dev.free_mib,
                "others_mib": self.others_mib,
                "unloaded": [],
            }
        )
        self.metrics.gpu_pressure_events.inc()
        self.metrics.gpu_pressure.set(1)
        log.warning(
            "GPU pressure from other processes: yielding memory, new loads go to the CPU",
            extra={"free_mib": dev.free_mib, "others_mib": self.others_mib},
        )

    def _maybe_end(self, dev: GpuInfo) -> None:
        if dev.free_mib < self.clear_line_mib():
            self.clear_since = None  # above the reserve, below the line: still held
            return
        now = self.clock()
        if self.clear_since is None:
            self.clear_since = now
        if now - self.clear_since < self.settings.gpu_pressure_hold_s:
            return
        self.active = False
        self.clear_since = None
        self.placer.gpu_pressure = False
        if self.events:
            self.events[-1]["ended"] = time.time()
        self.metrics.gpu_pressure.set(0)
        log.info("GPU pressure over: new loads use the GPU again", extra={"free_mib": dev.free_mib})

    def _interactive_queued(self, model: str) -> bool:
        return self.queue.count(Level.interactive, model) > 0

    def _yield(self, short_mib: int) -> list[Instance]:
        """Unload idle GPU instances until `short_mib` is freed: least recently used first,
        models with interactive work queued last; busy and pinned ones stay."""
        victims = sorted(
            (
                i
                for i in self.pool.on_gpu()
                if i.loaded and not i.busy and not i.pinned and not i.waiting_for_evictions()
            ),
            key=lambda i: (self._interactive_queued(i.model), i.last_used),
        )
        freed = 0
        out: list[Instance] = []
        for inst in victims:
            if freed >= short_mib:
                break
            freed += inst.held_mib
            self.pool.unload(inst, "gpu_pressure")
            out.append(inst)
        if out:
            log.warning(
                "unloaded idle GPU models for other processes",
                extra={"models": [i.model for i in out], "freed_mib": freed},
            )
        return out

    def describe(self) -> dict[str, Any]:
        return {
            "enabled": self.enabled,
            "active": self.active,
            "free_mib": self.free_mib,
            "other_processes_mib": self.others_mib,
            "clear_line_mib": self.clear_line_mib() if self.enabled else None,
            "hold_s": self.settings.gpu_pressure_hold_s,
            "events": list(self.events),
        }
