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
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from ..config import QueuePolicy, SchedulerSettings
from ..engines.base import Engine, Lane, is_gpu_error
from . import lifecycle
from . import status as status_view
from .activity import Ledger
from .batching import Batcher
from .estimates import RunTimes
from .gpu import GpuMonitor
from .metrics import SchedulerMetrics
from .placement import Placer
from .policy import ModelPolicy, check_cpu_plan
from .pool import Instance, InstancePool, Slots
from .pressure import PressureWatch
from .queue import (
    Job,
    Level,
    QueueFull,
    SchedulerError,
    ShuttingDown,
    Unit,
    UnitQueue,
)
from .speculation import Speculation
from .status import QueueGauges, queue_policy
from .waiting import Waiting

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
        self.waiting = Waiting(self.queue, self.gauges, self._retry_after)
        self.pool = InstancePool(engines, policies, settings, metrics, gpu)
        self.placer = Placer(engines, policies, settings, gpu, self.pool, self.queue)
        self.pressure = PressureWatch(settings, gpu, self.placer, self.pool, self.queue)
        self.slots = Slots(settings)
        self.busy = self.slots.busy  # slots in use: GPU, CPU, CPU background
        self._running: set[asyncio.Task[None]] = set()
        self.estimates = RunTimes(settings)
        self._run_times = self.estimates.per_unit
        self.batcher = Batcher(engines, policies)
        self.ledger = Ledger(metrics)
        self.clock = time.perf_counter  # times runs; a test may set a clock of its own
        self.closing = False
        self.left_running: list[str] = []  # models still running a unit when close() gave up
        self._ttl_task: asyncio.Task[None] | None = None
        self._pressure_task: asyncio.Task[None] | None = None
        self.open_jobs: dict[str, int] = {}  # model -> jobs open: none expires meanwhile
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

    @property
    def fallback_counts(self) -> dict[tuple[str, str], int]:
        return self.ledger.fallback_counts

    def _background(self, model: str) -> bool:
        return (
            self.priority
            and self.policies[model].cpu_nice > 0
            and (self.settings.cpu_background_slots > 0)
        )

    def _check_cpu_plan(self) -> None:
        check_cpu_plan(self.policies, self.settings)

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
        self.open_jobs[model] = self.open_jobs.get(model, 0) + 1
        try:
            yield job
        finally:
            job.cancel_queued()
            self.open_jobs[model] -= 1
            self.expire_idle()  # keep_alive 0: unloaded once its job is over

    def speculation(self, model: str) -> Speculation:
        """A live turn's partial decodes (speculative work, see speculation.py); close it when
        the turn ends."""
        if model not in self.engines:
            raise KeyError(model)
        job = Job(self, model, Level.interactive, math.inf)
        return Speculation(job, self.queue, self._dispatch, self.waiting.take,
                           lambda: self.closing, self.metrics)  # fmt: skip

    def queued(self, level: Level | None = None, model: str | None = None) -> int:
        return self.queue.count(level, model)

    def _retry_after(self, level: Level) -> int:
        return self.estimates.retry_after(self.queued(level))

    def admit(self, level: Level) -> None:
        """Raise QueueFull where a job of `level` would be refused now (nothing is queued)."""
        limit = self.queue_policy(level).max_queue_size
        if self.queued(level) >= limit:
            self.gauges.rejected(level, "queue_full")
            raise QueueFull(
                f"the {level.name} queue is full ({limit} waiting); retry later",
                retry_after=self._retry_after(level),
            )

    def submit(self, job: Job, payload: Any, dispatch: bool = True) -> Unit:
        """Queue one unit of a job (the queue policy may refuse a job's first: 429 or 503).
        `dispatch=False` holds dispatching back, so units queued together can share a batch."""
        if self.closing:
            raise ShuttingDown("the server is shutting down", retry_after=5)
        loop = asyncio.get_running_loop()
        if job.first_enqueued is None:
            self.admit(job.level)
        unit = Unit(job=job, payload=payload, enqueued=loop.time(), future=loop.create_future())
        unit.deadline = unit.enqueued + job.timeout_s  # stopped while it runs: see waiting.py
        self.waiting.push(unit)
        if dispatch:
            self._dispatch()
        return unit

    def cancel(self, unit: Unit) -> None:
        """The caller went away: drop the unit if it has not started (a running one finishes,
        and is not run again should its batch fail)."""
        self.waiting.cancel(unit)

    # -- dispatch -------------------------------------------------------------------------------

    def _spillover(self, unit: Unit) -> bool:
        ahead = len(self.queue) - 1 + self.busy["gpu"]  # the unit itself is queued
        return self.estimates.gpu_wait_too_long(ahead)

    def _instance(self, model: str, lane: Lane, background: bool) -> Instance:
        nice = self.policies[model].cpu_nice if self.priority and background else 0
        return self.pool.get(model, lane, background, nice)

    def _dispatch(self) -> None:
        if not len(self.queue):
            return
        loop = asyncio.get_running_loop()
        for unit in self.queue.in_order(loop.time()):
            if unit not in self.queue:  # started in this pass, as an earlier unit's companion
                continue
            try:
                candidates = self.placer.candidates(
                    unit.model, unit.force_cpu, self._spillover(unit)
                )
            except SchedulerError as exc:
                self.waiting.fail(unit, exc)
                continue
            for cand in candidates:
                if cand.evict is not None:
                    self.placer.admit(unit.model, cand.evict)
            background = self._background(unit.model) and unit.job.level == Level.batch
            interactive = self.queue.level_now(unit, loop.time()) == Level.interactive
            for cand in candidates:
                inst = self._instance(unit.model, cand.lane, background)
                if not inst.takes(interactive):
                    continue
                # a unit beside others of the same instance rides on the slot it holds
                slot = inst.slot if inst.busy else self.slots.free(inst)
                if slot is not None:
                    units = [unit, *self._companions(unit, inst, loop.time())]
                    self._start(units, inst, slot, cand.reason)
                    break

    # -- dynamic batching -----------------------------------------------------------------------

    def batch_limit(self, model: str) -> int:
        return self.batcher.limit(model)

    def parallel_units(self, model: str) -> int:
        """How many units of one job are worth queueing at once: a batch's worth where the
        model runs on the GPU and batches, else one (units run one after another)."""
        if not self.batcher.can_batch(model) or self.lane_for(model) != Lane.gpu:
            return 1
        return self.batch_limit(model)

    def _companions(self, unit: Unit, inst: Instance, now: float) -> list[Unit]:
        if not self.batcher.batches(inst):
            return []
        return self.batcher.companions(unit, self.queue.in_order(now), self.batch_limit(unit.model))

    def _start(self, units: list[Unit], inst: Instance, slot: str, reason: str | None) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        for unit in units:
            self.waiting.take(unit)
            unit.lane, unit.reason, unit.started = inst.lane, reason, now
            self.ledger.started(unit, reason)
        self.slots.take(inst, slot)
        if self.metrics:
            self.metrics.busy.labels(inst.lane).set(self.slots.in_lane(inst.lane))
            if self.batcher.batches(inst):
                self.metrics.batch_size.labels(inst.model).observe(len(units))
        task = loop.create_task(self._execute(units, inst, slot))
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    # -- execution ------------------------------------------------------------------------------

    async def _execute(self, units: list[Unit], inst: Instance, slot: str) -> None:
        t0 = self.clock()
        was_loaded = inst.loaded
        outcome = "ok"
        unit = units[0]
        batched = self.batcher.batches(inst)
        try:
            if not was_loaded and inst.concurrency > 1:
                # load first, then let queued units start beside this one on the loaded runtime
                await asyncio.wrap_future(inst.preload())
                self._dispatch()
            if batched:
                limit = self.batch_limit(unit.model)
                payloads = [u.payload for u in units]
                results = await asyncio.wrap_future(inst.submit_batch(payloads, limit))
            else:
                results = [await asyncio.wrap_future(inst.submit(unit.payload))]
        except Exception as exc:
            outcome = self._failed(units, inst, exc, was_loaded)
        else:
            run_s = self.clock() - t0
            share_s = run_s / len(units)  # each unit's share of the call
            if was_loaded:
                self._run_times[(unit.model, str(inst.lane))] = share_s
            if batched:
                self.batcher.succeeded(unit.model, run_s, len(units), timed=was_loaded)
            for u, result in zip(units, results, strict=True):
                self.ledger.finished(u, inst, result, share_s)
                if not u.future.done():
                    u.future.set_result(result)
        finally:
            if self.metrics:
                self.metrics.units.labels(unit.model, inst.lane, outcome).inc(len(units))
                if not was_loaded and inst.loaded:
                    self.metrics.loads.labels(unit.model, inst.lane).inc()
            self.slots.give_back(inst)
            inst.last_used = time.monotonic()
            if self.metrics:
                self.metrics.busy.labels(inst.lane).set(self.slots.in_lane(inst.lane))
            if inst.lane == Lane.gpu and not inst.engine.gpu_capped:
                self._watch_budget(inst)
            self._dispatch()
            self.expire_idle()  # keep_alive 0 unloads after use, not a TTL tick later

    def _failed(self, units: list[Unit], inst: Instance, exc: Exception, was_loaded: bool) -> str:
        """A call failed: its units run again where that can help (the outcome is returned).
        A GPU load that failed is the GPU's failure, however many units waited for it: they go
        to the CPU and the model is marked broken. A batch that failed running is shrunk (a
        CUDA error) or split (any other); a lone unit with a CUDA error goes to the CPU once."""
        gpu_error = inst.lane == Lane.gpu and is_gpu_error(exc)
        if gpu_error and not was_loaded and not inst.loaded:
            self._retry_on_cpu(units, inst, exc, load_failed=True)
        elif len(units) > 1:
            self.batcher.failed(units, exc)  # they run again, in smaller batches or alone
            for u in units:
                self.waiting.requeue(u)
        elif gpu_error and not units[0].retried:
            self._retry_on_cpu(units, inst, exc, load_failed=False)
        else:
            if not units[0].future.done():
                units[0].future.set_exception(exc)
            return "error"
        return "gpu_error" if gpu_error else "error"

    def _retry_on_cpu(
        self, units: list[Unit], inst: Instance, exc: Exception, load_failed: bool
    ) -> None:
        log.warning(
            "GPU error, retrying on CPU",
            extra={"model": inst.model, "units": len(units), "error": str(exc)[:200]},
        )
        if load_failed:
            self.placer.mark_gpu_broken(inst.model, str(exc))
            self.pool.unload(inst, "load_failed")
        for unit in units:
            unit.retried, unit.force_cpu = True, "gpu_error"
            self.waiting.requeue(unit)

    def _watch_budget(self, inst: Instance) -> None:
        self.placer.watch_budget(inst)  # per-instance device deltas: see Placer.watch_budget

    # -- lifecycle ------------------------------------------------------------------------------

    def lane_for(self, model: str) -> Lane:
        """The lane a new unit of this model would use now (a query: nothing is loaded)."""
        return self.placer.candidates(model)[0].lane

    async def preload(self, models: list[str]) -> None:
        await lifecycle.preload(self.placer, self.metrics, models)  # falls back, never raises

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        if self._ttl_task is None:
            self._ttl_task = loop.create_task(self._ttl_loop())
        if self._pressure_task is None and self.pressure.enabled:
            self._pressure_task = loop.create_task(self.pressure.run())

    async def _ttl_loop(self) -> None:
        # at least every second: a load request's keep_alive may be shorter than the lane TTLs
        ttls = (self.settings.gpu_idle_ttl_s, self.settings.cpu_idle_ttl_s, 4.0)
        tick = max(0.05, min(t for t in ttls if t) / 4)
        while True:
            await asyncio.sleep(tick)
            self.expire_idle()

    def expire_idle(self) -> None:
        self.pool.expire_idle({m for m, n in self.open_jobs.items() if n})

    async def close(self, grace_s: float) -> None:
        """Refuse new work, fail queued units (503), let running ones end in grace; idempotent."""
        self._closed = self._closed or asyncio.ensure_future(self._close(grace_s))
        await asyncio.shield(self._closed)

    async def _close(self, grace_s: float) -> None:
        self.closing = True
        for unit in self.queue:
            self.waiting.fail(unit, ShuttingDown("the server is shutting down"))
        if self._running:
            await asyncio.wait(set(self._running), timeout=grace_s)
        for task in (self._ttl_task, self._pressure_task):
            if task:
                task.cancel()
        idle = [inst for inst in self.pool if not inst.busy]
        busy = [inst for inst in self.pool if inst.busy]
        self.left_running = [inst.model for inst in busy]  # the process must not tear them down
        unloads = [asyncio.wrap_future(self.pool.unload(i, "shutdown")) for i in idle]
        for inst in busy:  # still running past the grace: left to its daemon thread
            self.pool.unload(inst, "shutdown")
        if unloads:
            # Idle runtimes are released before the interpreter tears down: a CTranslate2 model
            # destroyed during finalization, beside its live worker thread, aborts the process.
            await asyncio.wait(unloads, timeout=1.0)

    # -- observability --------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        return status_view.status(self)
