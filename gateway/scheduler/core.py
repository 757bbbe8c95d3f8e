"""The scheduler: wires the queue, placement, the instance pool and status, dispatches units to
lane slots and runs them.

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
from typing import Any

from ..config import QueuePolicy, SchedulerSettings
from ..engines.base import Engine, Lane, is_gpu_error
from . import status as status_view
from .activity import Activity
from .gpu import GpuMonitor
from .metrics import SchedulerMetrics
from .placement import Placer
from .policy import ModelPolicy
from .pool import Instance, InstancePool
from .queue import (
    Job,
    Level,
    QueueFull,
    QueueTimeout,
    SchedulerError,
    ShuttingDown,
    Unit,
    UnitQueue,
    UnitRecord,
)
from .status import QueueGauges, queue_policy

log = logging.getLogger(__name__)

__all__ = ["ModelPolicy", "Scheduler"]


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
        self.queue = UnitQueue(self.priority, settings.aging_s)
        self.gauges = QueueGauges(self.queue, metrics)
        self.pool = InstancePool(engines, policies, settings, metrics)
        self.placer = Placer(engines, policies, settings, gpu, self.pool)
        self.busy = {"gpu": 0, "cpu": 0, "cpu-bg": 0}  # slots in use: GPU, CPU, CPU background
        self._running: set[asyncio.Task[None]] = set()
        self._run_times: dict[tuple[str, str], float] = {}
        self.fallback_counts: dict[tuple[str, str], int] = defaultdict(int)
        self.closing = False
        self.activity = Activity()
        self._ttl_task: asyncio.Task[None] | None = None
        self._closed: asyncio.Future[None] | None = None  # the one close(); later calls await it
        self._check_cpu_plan()
        if metrics:
            metrics.slots.labels(Lane.gpu).set(settings.gpu_slots if self.gpu_present else 0)
            metrics.slots.labels(Lane.cpu).set(settings.cpu_slots + settings.cpu_background_slots)

    # -- read-only views used by the service, doctor and tests ---------------------------------

    @property
    def gpu_present(self) -> bool:
        return self.placer.gpu_present

    @property
    def gpu_reason(self) -> str:
        return self.placer.gpu_reason

    @property
    def engine_gpu(self) -> dict[str, tuple[bool, str]]:
        return self.placer.engine_gpu

    @property
    def gpu_broken(self) -> dict[str, str]:
        return self.placer.gpu_broken

    @property
    def over_budget(self) -> dict[str, float]:
        return self.placer.over_budget

    def _background(self, model: str) -> bool:
        return (
            self.priority
            and self.policies[model].cpu_nice > 0
            and (self.settings.cpu_background_slots > 0)
        )

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

    def queue_policy(self, level: Level) -> QueuePolicy:
        return queue_policy(self.settings, level)

    @asynccontextmanager
    async def job(
        self, model: str, level: Level, timeout_s: float | None = None
    ) -> AsyncIterator[Job]:
        """Open a job; `timeout_s` may lower the level's queue timeout, never raise it. Leaving
        the block takes back the job's units still queued (a streaming response that runs its
        units after the handler returns has none queued when it leaves)."""
        if model not in self.engines:
            raise KeyError(model)
        policy = self.queue_policy(level)
        timeout = policy.default_timeout_s
        if timeout_s is not None and policy.allow_timeout_override:
            timeout = min(timeout, timeout_s)
        job = Job(self, model, level, timeout)
        try:
            yield job
        finally:
            job.cancel_queued()

    def queued(self, level: Level | None = None, model: str | None = None) -> int:
        return self.queue.count(level, model)

    def _retry_after(self, level: Level) -> int:
        runs = list(self._run_times.values()) or [1.0]
        mean = sum(runs) / len(runs)
        slots = self.settings.cpu_slots + self.settings.cpu_background_slots
        return max(1, math.ceil(self.queued(level) * mean / max(1, slots)))

    def submit(self, job: Job, payload: Any) -> Unit:
        """Queue one unit of a job (the queue policy may refuse it: 429 or 503)."""
        if self.closing:
            raise ShuttingDown("the server is shutting down", retry_after=5)
        loop = asyncio.get_running_loop()
        if job.units_run == 0:
            limit = self.queue_policy(job.level).max_queue_size
            if self.queued(job.level) >= limit:
                self.gauges.rejected(job.level, "queue_full")
                raise QueueFull(
                    f"the {job.level.name} queue is full ({limit} waiting); retry later",
                    retry_after=self._retry_after(job.level),
                )
        unit = Unit(job=job, payload=payload, enqueued=loop.time(), future=loop.create_future())
        unit.timer = loop.call_later(job.timeout_s, self._expire, unit)
        self.queue.push(unit)
        self.gauges.depth(unit)
        self._dispatch()
        return unit

    def _expire(self, unit: Unit) -> None:
        if unit in self.queue:
            self.queue.remove(unit)
            self.gauges.depth(unit)
            self.gauges.rejected(unit.job.level, "queue_timeout")
            if not unit.future.done():
                unit.future.set_exception(
                    QueueTimeout(
                        f"waited {unit.job.timeout_s:g} s in the {unit.job.level.name} queue",
                        retry_after=self._retry_after(unit.job.level),
                    )
                )

    def cancel(self, unit: Unit) -> None:
        """The caller went away: drop the unit if it has not started (a running one finishes)."""
        if unit in self.queue:
            self.queue.remove(unit)
            if unit.timer:
                unit.timer.cancel()
            self.gauges.cancelled(unit)  # depth, and the cancelled count
            unit.future.cancel()

    # -- dispatch -------------------------------------------------------------------------------

    def _spillover(self, unit: Unit) -> bool:
        """Whether the GPU wait estimate for this unit exceeds `spillover_wait_s`."""
        bound = self.settings.spillover_wait_s
        if not bound:
            return False
        ahead = sum(1 for u in self.queue if u is not unit) + self.busy["gpu"]
        gpu_times = [t for (_, lane), t in self._run_times.items() if lane == Lane.gpu]
        mean = sum(gpu_times) / len(gpu_times) if gpu_times else 0.0
        return ahead * mean / self.settings.gpu_slots > bound

    def _slot(self, inst: Instance) -> str | None:
        if inst.lane == Lane.gpu:
            return "gpu" if self.busy["gpu"] < self.settings.gpu_slots else None
        if inst.background:
            return "cpu-bg" if self.busy["cpu-bg"] < self.settings.cpu_background_slots else None
        return "cpu" if self.busy["cpu"] < self.settings.cpu_slots else None

    def _instance(self, model: str, lane: Lane, background: bool) -> Instance:
        nice = self.policies[model].cpu_nice if self.priority and background else 0
        return self.pool.get(model, lane, background, nice)

    def _dispatch(self) -> None:
        if not len(self.queue):
            return
        loop = asyncio.get_running_loop()
        for unit in self.queue.in_order(loop.time()):
            try:
                candidates = self.placer.candidates(
                    unit.model, unit.force_cpu, self._spillover(unit)
                )
            except SchedulerError as exc:
                self.queue.remove(unit)
                self.gauges.depth(unit)
                if not unit.future.done():
                    unit.future.set_exception(exc)
                continue
            for cand in candidates:
                if cand.evict is not None:
                    self.placer.admit(unit.model, cand.evict)
            background = self._background(unit.model) and unit.job.level == Level.batch
            for cand in candidates:
                inst = self._instance(unit.model, cand.lane, background)
                slot = None if inst.busy else self._slot(inst)
                if slot is not None:
                    self._start(unit, inst, slot, cand.reason)
                    break

    def _start(self, unit: Unit, inst: Instance, slot: str, reason: str | None) -> None:
        loop = asyncio.get_running_loop()
        self.queue.remove(unit)
        if unit.timer:
            unit.timer.cancel()
        self.gauges.depth(unit)
        inst.busy = True
        self.busy[slot] += 1
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
        return self.busy["gpu"] if lane == Lane.gpu else self.busy["cpu"] + self.busy["cpu-bg"]

    # -- execution ------------------------------------------------------------------------------

    async def _execute(self, unit: Unit, inst: Instance, slot: str) -> None:
        t0 = time.perf_counter()
        was_loaded = inst.loaded
        outcome = "ok"
        try:
            result = await asyncio.wrap_future(inst.submit(unit.payload))
        except Exception as exc:
            outcome = "error"
            if inst.lane == Lane.gpu and is_gpu_error(exc) and not unit.retried:
                outcome = "gpu_error"
                self._retry_on_cpu(unit, inst, exc, was_loaded)
            elif not unit.future.done():
                unit.future.set_exception(exc)
        else:
            run_s = time.perf_counter() - t0
            self._record(unit, inst, result, run_s, was_loaded)
            if not unit.future.done():
                unit.future.set_result(result)
        finally:
            if self.metrics:
                self.metrics.units.labels(unit.model, inst.lane, outcome).inc()
                if not was_loaded and inst.loaded:
                    self.metrics.loads.labels(unit.model, inst.lane).inc()
            inst.busy = False
            inst.last_used = time.monotonic()
            self.busy[slot] -= 1
            if self.metrics:
                self.metrics.busy.labels(inst.lane).set(self._busy_in(inst.lane))
            if inst.lane == Lane.gpu and not inst.engine.gpu_capped:
                self._watch_budget(inst)
            self._dispatch()

    def _retry_on_cpu(self, unit: Unit, inst: Instance, exc: Exception, was_loaded: bool) -> None:
        log.warning(
            "GPU error, retrying on CPU", extra={"model": unit.model, "error": str(exc)[:200]}
        )
        if not was_loaded and not inst.loaded:
            self.placer.gpu_broken[unit.model] = str(exc)[:300]
            self.pool.unload(inst, "load_failed")
        unit.retried, unit.force_cpu = True, "gpu_error"
        unit.enqueued = asyncio.get_running_loop().time()
        self.queue.push(unit)  # keeps its seq: it goes back to the front of its level
        self.gauges.depth(unit)

    def _record(
        self, unit: Unit, inst: Instance, result: Any, run_s: float, was_loaded: bool
    ) -> None:
        if was_loaded:
            self._run_times[(unit.model, str(inst.lane))] = run_s
        wait_s = unit.started - unit.enqueued
        unit.job.records.append(
            UnitRecord(inst.lane, unit.reason, wait_s, run_s, unit.enqueued, unit.started)
        )
        audio_s = inst.audio_seconds(unit.payload, result)
        self.activity.finished(unit.model, inst.lane, audio_s, unit.job.units_run == 0)
        if self.metrics:
            self.metrics.run_time.labels(unit.model, inst.lane).observe(run_s)
            if audio_s > 0:
                self.metrics.rtf.labels(unit.model, inst.lane).observe(run_s / audio_s)

    def _watch_budget(self, inst: Instance) -> None:
        """ONNX Runtime is capped by gpu_mem_limit, so process usage beyond the capped budgets
        and the reserve is charged to the uncapped runtime (CTranslate2)."""
        dev = self.gpu.device(self.settings.gpu_device) if self.gpu else None
        if dev is None or dev.process_used_mib is None:
            return
        capped = sum(i.budget_mib for i in self.pool.on_gpu() if i.engine.gpu_capped)
        usage = dev.process_used_mib - capped - self.settings.gpu_reserve_mib
        if usage > inst.budget_mib and inst.model not in self.over_budget:
            log.warning(
                "engine over its GPU budget; unloading it from the GPU",
                extra={"model": inst.model, "usage_mib": usage, "budget_mib": inst.budget_mib},
            )
            self.placer.mark_over_budget(inst.model)
            self.pool.unload(inst, "over_budget")

    # -- lifecycle ------------------------------------------------------------------------------

    def lane_for(self, model: str) -> Lane:
        """The lane a new unit of this model would use now (a query: nothing is loaded)."""
        return self.placer.candidates(model)[0].lane

    async def preload(self, models: list[str]) -> None:
        for model in models:
            first = self.placer.candidates(model)[0]
            if first.evict is not None:
                inst = self.placer.admit(model, first.evict)
            else:
                inst = self.pool.get(model, first.lane)
            await asyncio.wrap_future(inst.preload())
            if self.metrics:
                self.metrics.loads.labels(model, inst.lane).inc()

    def start(self) -> None:
        if self._ttl_task is None:
            self._ttl_task = asyncio.get_running_loop().create_task(self._ttl_loop())

    async def _ttl_loop(self) -> None:
        ttls = (self.settings.gpu_idle_ttl_s, self.settings.cpu_idle_ttl_s)
        tick = max(0.05, min([t for t in ttls if t] or [5.0]) / 4)
        while True:
            await asyncio.sleep(tick)
            self.expire_idle()

    def expire_idle(self) -> None:
        self.pool.expire_idle()

    async def close(self, grace_s: float) -> None:
        """Refuse new work, fail queued units (503), let running ones end in grace; idempotent."""
        self._closed = self._closed or asyncio.ensure_future(self._close(grace_s))
        await asyncio.shield(self._closed)

    async def _close(self, grace_s: float) -> None:
        self.closing = True
        for unit in self.queue:
            self.queue.remove(unit)
            if unit.timer:
                unit.timer.cancel()
            self.gauges.depth(unit)
            if not unit.future.done():
                unit.future.set_exception(ShuttingDown("the server is shutting down"))
        if self._running:
            await asyncio.wait(set(self._running), timeout=grace_s)
        if self._ttl_task:
            self._ttl_task.cancel()
        for inst in self.pool:
            self.pool.unload(inst, "shutdown")

    # -- observability --------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        return status_view.status(self)
