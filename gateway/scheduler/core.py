"""The scheduler: priority queues of work units, lanes with slots, GPU budgets, CPU fallback.

Everything here runs on the event loop except engine calls, which run on each instance's own
worker thread. State is only touched from the loop, so no lock is held across an await.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from ..config import Placement, SchedulerSettings
from ..engines.base import Device, Engine, is_gpu_error
from .activity import Activity
from .gpu import GpuMonitor
from .instances import Instance
from .metrics import SchedulerMetrics
from .units import (
    Job,
    Level,
    NotPlaceable,
    QueueFull,
    QueueTimeout,
    SchedulerError,
    ShuttingDown,
    Unit,
    UnitRecord,
)  # fmt: skip

log = logging.getLogger(__name__)


@dataclass
class ModelPolicy:
    """How the scheduler treats one model (from the engine family's settings)."""

    placement: Placement = Placement.auto
    gpu_budget_mib: int = 1024
    cpu_threads: int = 1
    cpu_nice: int = 0
    pinned: bool = False


class Scheduler:
    def __init__(
        self,
        engines: dict[str, Engine],
        policies: dict[str, ModelPolicy],
        settings: SchedulerSettings,
        gpu: GpuMonitor | None = None,
        metrics: SchedulerMetrics | None = None,
    ) -> None:
        self.engines = engines
        self.policies = policies
        self.settings = settings
        self.gpu = gpu
        self.metrics = metrics
        self.priority = settings.policy == "priority"
        self._queue: list[Unit] = []
        self._instances: dict[tuple[str, str], Instance] = {}
        self._busy = {"gpu": 0, "cpu": 0, "cpu-bg": 0}
        self._running: set[asyncio.Task[None]] = set()
        self._run_times: dict[tuple[str, str], float] = {}
        self.over_budget: dict[str, float] = {}  # model -> monotonic time it may return
        self.gpu_broken: dict[str, str] = {}
        self.fallback_counts: dict[tuple[str, str], int] = defaultdict(int)
        self.closing = False
        self.activity = Activity()
        self._ttl_task: asyncio.Task[None] | None = None
        device = gpu.device(settings.gpu_device) if gpu is not None else None
        self.gpu_present = device is not None
        self.gpu_reason = gpu.reason if gpu is not None else "no GPU monitor"
        self.engine_gpu: dict[str, tuple[bool, str]] = {
            m: e.gpu_support() for m, e in engines.items()
        }
        self._check_cpu_plan()
        if metrics:
            metrics.slots.labels("gpu").set(settings.gpu_slots if self.gpu_present else 0)
            metrics.slots.labels("cpu").set(settings.cpu_slots + settings.cpu_background_slots)

    # -- configuration checks -------------------------------------------------------------------

    def _background(self, model: str) -> bool:
        return (
            self.priority
            and self.policies[model].cpu_nice > 0
            and (self.settings.cpu_background_slots > 0)
        )

    def _nice(self, model: str) -> int:
        return self.policies[model].cpu_nice if self.priority else 0

    def _check_cpu_plan(self) -> None:
        """Foreground CPU slots x threads per unit never exceed the cores."""
        cores = self.settings.cores
        for model, policy in self.policies.items():
            if policy.cpu_threads * self.settings.cpu_slots > cores:
                raise ValueError(
                    f"{model}: {self.settings.cpu_slots} CPU slots x {policy.cpu_threads} "
                    f"threads exceed {cores} cores"
                )

    # -- jobs -----------------------------------------------------------------------------------

    def queue_policy(self, level: Level) -> Any:
        return self.settings.interactive if level == Level.interactive else self.settings.batch

    @asynccontextmanager
    async def job(
        self, model: str, level: Level, timeout_s: float | None = None
    ) -> AsyncIterator[Job]:
        """Open a job; `timeout_s` may lower the level's queue timeout, never raise it."""
        if model not in self.engines:
            raise KeyError(model)
        policy = self.queue_policy(level)
        timeout = policy.default_timeout_s
        if timeout_s is not None and policy.allow_timeout_override:
            timeout = min(timeout, timeout_s)
        yield Job(self, model, level, timeout)

    def queued(self, level: Level | None = None, model: str | None = None) -> int:
        return sum(
            1
            for u in self._queue
            if (level is None or u.job.level == level) and (model is None or u.model == model)
        )

    def _retry_after(self, level: Level) -> int:
        runs = list(self._run_times.values()) or [1.0]
        mean = sum(runs) / len(runs)
        slots = self.settings.cpu_slots + self.settings.cpu_background_slots
        return max(1, math.ceil(self.queued(level) * mean / max(1, slots)))

    def _enqueue(self, job: Job, payload: Any) -> Unit:
        if self.closing:
            raise ShuttingDown("the server is shutting down", retry_after=5)
        loop = asyncio.get_running_loop()
        if job.units_run == 0:
            limit = self.queue_policy(job.level).max_queue_size
            if self.queued(job.level) >= limit:
                self._count_rejection(job.level, "queue_full")
                raise QueueFull(
                    f"the {job.level.name} queue is full ({limit} waiting); retry later",
                    retry_after=self._retry_after(job.level),
                )
        unit = Unit(job=job, payload=payload, enqueued=loop.time(), future=loop.create_future())
        unit.timer = loop.call_later(job.timeout_s, self._expire, unit)
        self._queue.append(unit)
        self._gauge(unit)
        self._dispatch()
        return unit

    def _expire(self, unit: Unit) -> None:
        if unit in self._queue:
            self._queue.remove(unit)
            self._gauge(unit)
            self._count_rejection(unit.job.level, "queue_timeout")
            if not unit.future.done():
                unit.future.set_exception(
                    QueueTimeout(
                        f"waited {unit.job.timeout_s:g} s in the {unit.job.level.name} queue",
                        retry_after=self._retry_after(unit.job.level),
                    )
                )

    def _cancel(self, unit: Unit) -> None:
        """The caller went away: drop the unit if it has not started (a running one finishes)."""
        if unit in self._queue:
            self._queue.remove(unit)
            if unit.timer:
                unit.timer.cancel()
            self._gauge(unit)
            unit.future.cancel()

    # -- placement ------------------------------------------------------------------------------

    def _key(self, now: float) -> Any:
        if not self.priority:
            return lambda u: u.seq
        aging = self.settings.aging_s

        def key(u: Unit) -> tuple[int, int]:
            promoted = int((now - u.enqueued) // aging)
            return (max(0, int(u.job.level) - promoted), u.seq)

        return key

    def _candidates(self, unit: Unit) -> list[tuple[str, str | None]]:
        model = unit.model
        policy = self.policies[model]
        if unit.force_cpu:
            return [("cpu", unit.force_cpu)]
        if policy.placement == Placement.cpu:
            return [("cpu", None)]
        reason = None
        if not self.gpu_present or not self.engine_gpu[model][0] or model in self.gpu_broken:
            reason = "no_gpu"
        elif self._over_budget(model) or (
            (model, "gpu") not in self._instances and not self._admit(model)
        ):
            reason = "not_admitted"
        if reason:
            if policy.placement == Placement.gpu:
                raise NotPlaceable(f"{model} is set to run on the GPU only, but: {reason}")
            return [("cpu", reason)]
        lanes: list[tuple[str, str | None]] = [("gpu", None)]
        if self._spillover(unit):
            lanes.append(("cpu", "spillover"))
        return lanes

    def _over_budget(self, model: str) -> bool:
        until = self.over_budget.get(model)
        if until is not None and time.monotonic() >= until:
            del self.over_budget[model]
            until = None
        return until is not None

    def _spillover(self, unit: Unit) -> bool:
        bound = self.settings.spillover_wait_s
        if not bound or self.policies[unit.model].placement == Placement.gpu:
            return False
        ahead = sum(1 for u in self._queue if u is not unit) + self._busy["gpu"]
        gpu_times = [t for (_, lane), t in self._run_times.items() if lane == "gpu"]
        mean = sum(gpu_times) / len(gpu_times) if gpu_times else 0.0
        return ahead * mean / self.settings.gpu_slots > bound

    def _gpu_committed(self) -> int:
        return sum(i.budget_mib for (_, lane), i in self._instances.items() if lane == "gpu")

    def _admit(self, model: str) -> bool:
        """Admit a GPU load if NVML shows room for budget + reserve and the budgets fit."""
        assert self.gpu is not None
        budget = self.policies[model].gpu_budget_mib
        reserve = self.settings.gpu_reserve_mib
        dev = self.gpu.device(self.settings.gpu_device)
        if dev is None:
            return False
        freed = 0
        evicted: list[Instance] = []
        victims = sorted(
            (i for (_, lane), i in self._instances.items()
             if lane == "gpu" and not i.busy and not i.pinned),
            key=lambda i: i.last_used,
        )  # fmt: skip
        while True:
            fits_budgets = self._gpu_committed() - freed + budget + reserve <= dev.total_mib
            fits_free = dev.free_mib + freed >= budget + reserve
            if fits_budgets and fits_free:
                break
            if not victims:
                log.info("GPU load not admitted", extra={"model": model, "budget_mib": budget})
                return False
            victim = victims.pop(0)
            evicted.append(victim)
            freed += victim.budget_mib
        waits = [self._unload(v, "evicted") for v in evicted]
        self._instance(model, "gpu").wait_for = waits
        return True

    def _instance(self, model: str, lane: str, background: bool = False) -> Instance:
        """The instance for a lane; a niced engine's batch units get a CPU instance of their own
        (nice value, background slot), while its interactive units run at normal priority."""
        key = (model, "cpu-bg" if lane == "cpu" and background else lane)
        inst = self._instances.get(key)
        if inst is None:
            policy = self.policies[model]
            if lane == "gpu":
                device = Device("gpu", self.settings.gpu_device, 1, policy.gpu_budget_mib)
                inst = Instance(self.engines[model], device, policy.gpu_budget_mib, 0, False,
                                policy.pinned)  # fmt: skip
            else:
                device = Device("cpu", 0, policy.cpu_threads)
                nice = self._nice(model) if background else 0
                inst = Instance(self.engines[model], device, 0, nice, background, policy.pinned)
            inst.key = key
            self._instances[key] = inst
        return inst

    def _slot(self, inst: Instance) -> str | None:
        if inst.lane == "gpu":
            return "gpu" if self._busy["gpu"] < self.settings.gpu_slots else None
        if inst.background:
            return "cpu-bg" if self._busy["cpu-bg"] < self.settings.cpu_background_slots else None
        return "cpu" if self._busy["cpu"] < self.settings.cpu_slots else None

    def _dispatch(self) -> None:
        if not self._queue:
            return
        loop = asyncio.get_running_loop()
        for unit in sorted(self._queue, key=self._key(loop.time())):
            try:
                candidates = self._candidates(unit)
            except SchedulerError as exc:
                self._queue.remove(unit)
                self._gauge(unit)
                if not unit.future.done():
                    unit.future.set_exception(exc)
                continue
            background = self._background(unit.model) and unit.job.level == Level.batch
            for lane, reason in candidates:
                inst = self._instance(unit.model, lane, background)
                slot = None if inst.busy else self._slot(inst)
                if slot is not None:
                    self._start(unit, inst, slot, reason)
                    break

    def _start(self, unit: Unit, inst: Instance, slot: str, reason: str | None) -> None:
        loop = asyncio.get_running_loop()
        self._queue.remove(unit)
        if unit.timer:
            unit.timer.cancel()
        self._gauge(unit)
        inst.busy = True
        self._busy[slot] += 1
        unit.lane, unit.reason, unit.started = inst.lane, reason, loop.time()
        if reason:
            self.fallback_counts[(unit.model, reason)] += 1
            self.activity.fallback(unit.model, reason, unit.job.level.name)
            if self.metrics:
                self.metrics.fallbacks.labels(unit.model, reason).inc()
        if self.metrics:
            self.metrics.queue_wait.labels(unit.job.level.name, unit.model).observe(
                unit.started - unit.enqueued
            )
            self.metrics.busy.labels(inst.lane).set(self._busy_in(inst.lane))
        task = loop.create_task(self._execute(unit, inst, slot))
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    def _busy_in(self, lane: str) -> int:
        return self._busy["gpu"] if lane == "gpu" else self._busy["cpu"] + self._busy["cpu-bg"]

    async def _execute(self, unit: Unit, inst: Instance, slot: str) -> None:
        t0 = time.perf_counter()
        was_loaded = inst.loaded
        outcome = "ok"
        try:
            result = await asyncio.wrap_future(inst.submit(unit.payload))
        except Exception as exc:
            outcome = "error"
            if inst.lane == "gpu" and is_gpu_error(exc) and not unit.retried:
                outcome = "gpu_error"
                log.warning(
                    "GPU error, retrying on CPU",
                    extra={"model": unit.model, "error": str(exc)[:200]},
                )
                if not was_loaded and not inst.loaded:
                    self.gpu_broken[unit.model] = str(exc)[:300]
                    self._unload(inst, "load_failed")
                unit.retried, unit.force_cpu = True, "gpu_error"
                unit.enqueued = asyncio.get_running_loop().time()
                self._queue.append(unit)  # keeps its seq: it goes back to the front of its level
                self._gauge(unit)
            elif not unit.future.done():
                unit.future.set_exception(exc)
        else:
            run_s = time.perf_counter() - t0
            if was_loaded:
                self._run_times[(unit.model, inst.lane)] = run_s
            unit.job.records.append(
                UnitRecord(
                    inst.lane,
                    unit.reason,
                    unit.started - unit.enqueued,
                    run_s,
                    unit.enqueued,
                    unit.started,
                )
            )
            seconds = getattr(inst.engine, "audio_seconds", None)
            audio_s = seconds(unit.payload, result) if seconds else 0.0
            self.activity.finished(unit.model, inst.lane, audio_s, unit.job.units_run == 0)
            if self.metrics:
                self.metrics.run_time.labels(unit.model, inst.lane).observe(run_s)
                if audio_s > 0:
                    self.metrics.rtf.labels(unit.model, inst.lane).observe(run_s / audio_s)
            if not unit.future.done():
                unit.future.set_result(result)
        finally:
            if self.metrics:
                self.metrics.units.labels(unit.model, inst.lane, outcome).inc()
                if not was_loaded and inst.loaded:
                    self.metrics.loads.labels(unit.model, inst.lane).inc()
            inst.busy = False
            inst.last_used = time.monotonic()
            self._busy[slot] -= 1
            if self.metrics:
                self.metrics.busy.labels(inst.lane).set(self._busy_in(inst.lane))
            if inst.lane == "gpu" and not inst.engine.gpu_capped:
                self._watch_budget(inst)
            self._dispatch()

    def _watch_budget(self, inst: Instance) -> None:
        """ONNX Runtime is capped by gpu_mem_limit, so process usage beyond the capped budgets
        and the reserve is charged to the uncapped runtime (CTranslate2)."""
        dev = self.gpu.device(self.settings.gpu_device) if self.gpu else None
        if dev is None or dev.process_used_mib is None:
            return
        capped = sum(i.budget_mib for (_, lane), i in self._instances.items()
                     if lane == "gpu" and i.engine.gpu_capped)  # fmt: skip
        usage = dev.process_used_mib - capped - self.settings.gpu_reserve_mib
        if usage > inst.budget_mib and inst.model not in self.over_budget:
            log.warning(
                "engine over its GPU budget; unloading it from the GPU",
                extra={"model": inst.model, "usage_mib": usage, "budget_mib": inst.budget_mib},
            )
            self.over_budget[inst.model] = time.monotonic() + self.settings.over_budget_cooldown_s
            self._unload(inst, "over_budget")

    # -- lifecycle ------------------------------------------------------------------------------

    def _unload(self, inst: Instance, reason: str) -> Any:
        self._instances.pop(inst.key, None)
        if self.metrics and inst.loaded:
            self.metrics.unloads.labels(inst.model, inst.lane, reason).inc()
        return inst.unload()

    def lane_for(self, model: str) -> str:
        """The lane a new unit of this model would use now (for preload and status)."""
        dummy = Unit(job=Job(self, model, Level.interactive, 1.0), payload=None, enqueued=0.0,
                     future=asyncio.get_running_loop().create_future())  # fmt: skip
        return self._candidates(dummy)[0][0]

    async def preload(self, models: list[str]) -> None:
        for model in models:
            inst = self._instance(model, self.lane_for(model))
            await asyncio.wrap_future(inst.preload())
            if self.metrics:
                self.metrics.loads.labels(model, inst.lane).inc()

    def start(self) -> None:
        if self._ttl_task is None:
            self._ttl_task = asyncio.get_running_loop().create_task(self._ttl_loop())

    async def _ttl_loop(self) -> None:
        ttls = {"gpu": self.settings.gpu_idle_ttl_s, "cpu": self.settings.cpu_idle_ttl_s}
        tick = max(0.05, min([t for t in ttls.values() if t] or [5.0]) / 4)
        while True:
            await asyncio.sleep(tick)
            self.expire_idle()

    def expire_idle(self) -> None:
        now = time.monotonic()
        ttls = {"gpu": self.settings.gpu_idle_ttl_s, "cpu": self.settings.cpu_idle_ttl_s}
        for inst in list(self._instances.values()):
            ttl = ttls[inst.lane]
            idle = inst.loaded and not inst.busy and not inst.pinned
            if ttl and idle and now - inst.last_used > ttl:
                self._unload(inst, "idle")

    async def close(self, grace_s: float) -> None:
        """Refuse new work, fail what is queued (503), let running units finish within grace."""
        self.closing = True
        for unit in list(self._queue):
            self._queue.remove(unit)
            if unit.timer:
                unit.timer.cancel()
            self._gauge(unit)
            if not unit.future.done():
                unit.future.set_exception(ShuttingDown("the server is shutting down"))
        if self._running:
            await asyncio.wait(set(self._running), timeout=grace_s)
        if self._ttl_task:
            self._ttl_task.cancel()
        for inst in list(self._instances.values()):
            self._unload(inst, "shutdown")

    # -- observability --------------------------------------------------------------------------

    def _gauge(self, unit: Unit) -> None:
        if self.metrics:
            level = unit.job.level
            self.metrics.queue_depth.labels(level.name, unit.model).set(
                self.queued(level, unit.model)
            )

    def _count_rejection(self, level: Level, reason: str) -> None:
        if self.metrics:
            self.metrics.rejections.labels(level.name, reason).inc()

    def status(self) -> dict[str, Any]:
        s = self.settings
        dev = self.gpu.device(s.gpu_device) if self.gpu and self.gpu_present else None
        return {
            "policy": s.policy,
            "closing": self.closing,
            "lanes": {
                "gpu": {"present": self.gpu_present, "slots": s.gpu_slots if self.gpu_present else 0,
                        "busy": self._busy["gpu"], "reason": self.gpu_reason},
                "cpu": {"slots": s.cpu_slots, "busy": self._busy["cpu"],
                        "background_slots": s.cpu_background_slots,
                        "background_busy": self._busy["cpu-bg"], "cores": s.cores},
            },
            "queues": {
                lvl.name: {
                    "depth": self.queued(lvl),
                    "by_model": {m: self.queued(lvl, m) for m in self.engines},
                    "max_queue_size": self.queue_policy(lvl).max_queue_size,
                    "default_timeout_s": self.queue_policy(lvl).default_timeout_s,
                }
                for lvl in Level
            },
            "models": {
                m: {
                    "placement": self.policies[m].placement.value,
                    "gpu_budget_mib": self.policies[m].gpu_budget_mib,
                    "gpu_runtime": {"usable": ok, "detail": why},
                    "gpu_broken": self.gpu_broken.get(m),
                    "over_budget": m in self.over_budget,
                }
                for m, (ok, why) in self.engine_gpu.items()
            },
            "instances": [i.describe() for i in self._instances.values()],
            "fallbacks": [{"model": m, "reason": r, "count": c}
                          for (m, r), c in sorted(self.fallback_counts.items())],
            "gpu": None if dev is None else {**dev.__dict__,
                                             "committed_budget_mib": self._gpu_committed(),
                                             "reserve_mib": s.gpu_reserve_mib},
            "activity": self.activity.summary(list(self.engines)),
        }  # fmt: skip
