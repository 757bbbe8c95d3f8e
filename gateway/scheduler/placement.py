"""Placement, admission and eviction.

`candidates` is a query: the lanes a unit may run on now, each with its fallback reason. When the
GPU lane needs a new instance (or one admitted earlier has not loaded yet), the candidate carries
the admission plan (the idle instances to evict); `admit` is the action that carries it out and
creates the instance.

Admission counts what NVML cannot see yet (instances admitted but not loaded hold their budget)
and credits an eviction only with memory it really frees (a never-loaded instance frees none on
the device). A model whose GPU load failed, or that went over its budget, runs on the CPU for a
cooldown and is then tried on the GPU again.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from ..config import Placement, SchedulerSettings
from ..engines.base import Engine, Lane, lane_files
from .gpu import GpuMonitor
from .policy import ModelPolicy
from .pool import Instance, InstancePool
from .queue import Level, NotPlaceable, UnitQueue

log = logging.getLogger(__name__)


@dataclass
class Candidate:
    lane: Lane
    reason: str | None = None
    # Set when a GPU instance must be loaded first: the idle instances to evict for it.
    evict: list[Instance] | None = field(default=None)


class Placer:
    def __init__(
        self,
        engines: dict[str, Engine],
        policies: dict[str, ModelPolicy],
        settings: SchedulerSettings,
        gpu: GpuMonitor | None,
        pool: InstancePool,
        queue: UnitQueue | None = None,
    ) -> None:
        self.policies = policies
        self.settings = settings
        self.gpu = gpu
        self.pool = pool
        self.queue = queue  # read to spare models with interactive work queued from eviction
        self.metrics = pool.metrics
        self.clock = time.monotonic  # cooldowns; a test may set a clock of its own
        device = gpu.device(settings.gpu_device) if gpu is not None else None
        self.gpu_present = device is not None
        self.gpu_reason = gpu.reason if gpu is not None else "no GPU monitor"
        self.engine_gpu: dict[str, tuple[bool, str]] = {
            m: e.gpu_support() for m, e in engines.items()
        }
        # Models whose GPU lane file (e.g. Kokoro's float variant) is missing or corrupt.
        self.no_variant: set[str] = {
            m for m, e in engines.items() if lane_files(e).get(Lane.gpu, "") is None
        }
        # Models whose GPU lane file is present but its checksum not yet checked: CPU until then.
        self.variant_pending: set[str] = set()
        self.over_budget: dict[str, float] = {}  # model -> monotonic time it may return
        self.gpu_broken: dict[str, str] = {}  # model -> the error of its failed GPU load
        self.gpu_retry_at: dict[str, float] = {}  # model -> clock time its GPU is tried again
        self.preload_errors: dict[str, str] = {}
        # Other processes hold the device's memory (set by pressure.py): no new GPU loads.
        self.gpu_pressure = False

    # -- queries --------------------------------------------------------------------------------

    def candidates(
        self, model: str, force_cpu: str | None = None, spillover: bool = False
    ) -> list[Candidate]:
        """Lanes to try, in order. Raises NotPlaceable when a GPU-only model cannot go there."""
        policy = self.policies[model]
        if force_cpu:
            return [Candidate(Lane.cpu, force_cpu)]
        if policy.placement == Placement.cpu:
            return [Candidate(Lane.cpu)]
        reason = None
        evict: list[Instance] | None = None
        if self.gpu_present and (model in self.no_variant or model in self.variant_pending):
            reason = "gpu_variant"
        elif not self.gpu_present or not self.engine_gpu[model][0] or self._broken(model):
            reason = "no_gpu"
        elif self._in_cooldown(model):
            reason = "not_admitted"
        elif self._needs_admission(model):
            if self.gpu_pressure and policy.placement != Placement.gpu:
                return [Candidate(Lane.cpu, "gpu_pressure")]
            evict = self.admission_plan(model)
            if evict is None:
                reason = "not_admitted"
        if reason:
            if policy.placement == Placement.gpu:
                raise NotPlaceable(f"{model} is set to run on the GPU only, but: {reason}")
            return [Candidate(Lane.cpu, reason)]
        lanes = [Candidate(Lane.gpu, None, evict)]
        if spillover and policy.placement != Placement.gpu:
            lanes.append(Candidate(Lane.cpu, "spillover"))
        return lanes

    def _in_cooldown(self, model: str) -> bool:
        """Whether an over-budget engine is still kept off the GPU (an expired mark is dropped)."""
        until = self.over_budget.get(model)
        if until is not None and self.clock() >= until:
            del self.over_budget[model]
            until = None
        return until is not None

    def _broken(self, model: str) -> bool:
        """Whether a failed GPU load still keeps the model on the CPU; once the cooldown is over
        the mark is dropped and the next unit tries the GPU again."""
        if model not in self.gpu_broken:
            return False
        if self.clock() < self.gpu_retry_at.get(model, 0.0):
            return True
        error = self.gpu_broken.pop(model)
        self.gpu_retry_at.pop(model, None)
        log.info("retrying the GPU after a failed load", extra={"model": model, "error": error})
        self.metrics.gpu_load_retries.labels(model).inc()
        return False

    def retry_in_s(self, model: str) -> float | None:
        """Seconds until a model whose GPU load failed is tried on the GPU again (None: not)."""
        if model not in self.gpu_broken:
            return None
        return round(max(0.0, self.gpu_retry_at.get(model, 0.0) - self.clock()), 1)

    def _needs_admission(self, model: str) -> bool:
        """A new GPU instance, or one admitted earlier that has not loaded yet (and is neither
        loading nor waiting for its evictions): memory may have changed since its admission."""
        inst = self.pool.instances.get((model, str(Lane.gpu)))
        if inst is None:
            return True
        return not (inst.loaded or inst.busy or inst.waiting_for_evictions())

    def _interactive_queued(self, model: str) -> int:
        return self.queue.count(Level.interactive, model) if self.queue is not None else 0

    def admission_plan(self, model: str) -> list[Instance] | None:
        """The idle instances to evict so a GPU load fits (the device has room for budget +
        reserve and the budgets fit the device), or None when it cannot be admitted.

        Free memory is NVML's free less the budgets of instances admitted but not loaded yet;
        evicting a loaded instance frees what it was measured to hold, a never-loaded one only
        its reservation. Victims: never-loaded ones first, then models with no interactive work
        queued, then least recently used."""
        assert self.gpu is not None
        budget = self.policies[model].gpu_budget_mib
        reserve = self.settings.gpu_reserve_mib
        dev = self.gpu.device(self.settings.gpu_device)
        if dev is None:
            return None
        own = self.pool.instances.get((model, str(Lane.gpu)))  # admitted before, not loaded
        free = dev.free_mib - self.pool.gpu_pending(without=own)
        committed = self.pool.gpu_committed(without=own)
        freed_budget = freed_mib = 0
        evict: list[Instance] = []
        victims = sorted(
            (i for i in self.pool.on_gpu() if i is not own and not i.busy and not i.pinned),
            key=lambda i: (i.loaded, self._interactive_queued(i.model) > 0, i.last_used),
        )
        while True:
            fits_budgets = committed - freed_budget + budget + reserve <= dev.total_mib
            fits_free = free + freed_mib >= budget + reserve
            if fits_budgets and fits_free:
                return evict
            if not victims:
                log.info("GPU load not admitted", extra={"model": model, "budget_mib": budget})
                return None
            victim = victims.pop(0)
            evict.append(victim)
            freed_budget += victim.budget_mib
            freed_mib += victim.held_mib if victim.loaded else victim.budget_mib

    def explain(self, model: str, variants: dict[str, str | None]) -> str:
        """Where a model runs and which file each lane loads, in words (for `gateway doctor`)."""
        policy = self.policies[model]
        ok, why = self.engine_gpu[model]
        cpu = f" [{variants.get('cpu')}]" if variants.get("cpu") else ""
        if policy.placement == Placement.cpu:
            return f"CPU (placement=cpu){cpu}"
        if not self.gpu_present:
            return f"CPU (no_gpu: {self.gpu_reason}){cpu}"
        if model in self.no_variant:
            return f"CPU (gpu_variant: {why}){cpu}"
        if model in self.variant_pending:
            return f"CPU until its GPU variant's checksum passes, then GPU{cpu}"
        if not ok:
            return f"CPU (no_gpu: {why}){cpu}"
        return (
            f"GPU {self.settings.gpu_device} when admitted (budget {policy.gpu_budget_mib} "
            f"MiB) [{variants.get('gpu')}], else CPU{cpu}"
        )

    # -- actions --------------------------------------------------------------------------------

    def admit(self, model: str, evict: list[Instance]) -> Instance:
        """Evict the planned victims and create the GPU instance, which loads once they are gone."""
        waits = [self.pool.unload(v, "evicted") for v in evict]
        inst = self.pool.get(model, Lane.gpu)
        inst.wait_for = [f for f in inst.wait_for if not f.done()] + waits
        return inst

    def hold_gpu_variant(self, model: str) -> None:
        """The GPU lane's file is being hashed: the model runs on the CPU until it passes."""
        self.variant_pending.add(model)

    def pass_gpu_variant(self, model: str) -> None:
        self.variant_pending.discard(model)

    def refuse_gpu_variant(self, model: str, problem: str) -> None:
        """The GPU lane's file failed its checksum: that model runs on the CPU from now on."""
        self.variant_pending.discard(model)
        self.no_variant.add(model)
        self.engine_gpu[model] = (False, f"GPU variant unusable: {problem}")
        log.error(
            "GPU variant unusable; the model runs on the CPU",
            extra={"model": model, "problem": problem},
        )

    def mark_over_budget(self, model: str) -> None:
        self.over_budget[model] = self.clock() + self.settings.over_budget_cooldown_s

    def mark_gpu_broken(self, model: str, error: str) -> None:
        """A GPU load failed: the model runs on the CPU for `gpu_retry_cooldown_s`."""
        cooldown = self.settings.gpu_retry_cooldown_s
        self.gpu_broken[model] = error[:300]
        self.gpu_retry_at[model] = self.clock() + cooldown
        log.warning(
            "GPU load failed; running on the CPU, retrying the GPU in %g s",
            cooldown,
            extra={"model": model, "error": error[:300]},
        )
        self.metrics.gpu_load_failures.labels(model).inc()

    def watch_budget(self, inst: Instance) -> None:
        """After a GPU unit of an uncapped runtime (CTranslate2): unload it from the GPU when the
        memory measured for this instance alone (device deltas around its load and runs, so
        neither ONNX Runtime's memory beyond its arena nor NVML's PID view matter) exceeds its
        budget plus the reserve (its first load may carry the CUDA context)."""
        used = inst.gpu_used_mib
        if inst.lane != Lane.gpu or inst.engine.gpu_capped or used is None:
            return
        usage = used - self.settings.gpu_reserve_mib
        if usage > inst.budget_mib and self.pool.instances.get(inst.key) is inst:
            log.warning(
                "engine over its GPU budget; unloading it from the GPU",
                extra={"model": inst.model, "usage_mib": usage, "budget_mib": inst.budget_mib},
            )
            self.mark_over_budget(inst.model)
            self.pool.unload(inst, "over_budget")
