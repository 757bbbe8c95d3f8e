"""The scheduler: wires the queue, placement and the instance pool, dispatches units to lane
slots and runs them.

Everything here runs on the event loop except engine calls, which run on each instance's own
worker thread. State is only touched from the loop, so no lock is held across an await.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from ..config import QueuePolicy, SchedulerSettings
from ..engines.base import Engine, Lane, is_gpu_error
from . import loading
from . import snapshot as snapshots
from .activity import Ledger
from .batching import Batcher
from .estimates import RunTimes
from .gpu import GpuMonitor
from .metrics import QueueGauges, SchedulerMetrics
from .placement import Placer
from .policy import ModelPolicy, check_cpu_plan, queue_policy
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
from .snapshot import LoadedModel, LoadResult, Snapshot
from .speculation import Speculation
from .waiting import Waiting

log = logging.getLogger(__name__)

__all__ = ["Internals", "ModelPolicy", "Scheduler"]


@dataclass(frozen=True)
class Internals:
    """The scheduler's parts, for a test that must drive one directly (a pressure reading, a
    cooldown clock). The gateway's own code never uses this: tests/test_architecture.py checks
    that tasks and front doors use the public API alone."""

    pool: InstancePool
    placer: Placer
    pressure: PressureWatch
    batcher: Batcher
    queue: UnitQueue
    estimates: RunTimes
    ledger: Ledger
    metrics: SchedulerMetrics
    expire_idle: Callable[[], None]


class Scheduler:
    """The GPU-sharing scheduler, in Triton's words: jobs of units at priority levels, model
    instances on lanes, dynamic batching. Its public API is what follows; every other attribute
    is private (tests/test_architecture.py keeps tasks and front doors to this list).

    Lifecycle: `start()`, `preload(models)`, `close(grace_s)`, `closing`, `left_running`.
    Work: `job(model, level, timeout_s)` opens a job; a `Job` queues units through `submit` and
    takes back unstarted ones through `cancel`. `speculation(model)` gives a live turn its
    partial decodes: speculative work, one queued per turn at most (speculation.py).
    Admission: `admit(level)` refuses a job a full queue would refuse; `queued(level, model)`,
    `parallel_units(model)`, `level_for(audio_s)` and `refuse(level, reason, message)` are the
    facts and refusals a task needs to plan its job.
    Model control: `loaded()`, `load(model, lane, keep_alive_s)`, `unload(model)`.
    Views: `snapshot()`, one typed read-only picture for status, ps, doctor and readiness.
    Runtime hooks: `hold_gpu_variant`, `pass_gpu_variant`, `refuse_gpu_variant` (a GPU lane file
    is used only once its checksum passes).
    Tests: `internals_for_tests()`.
    """

    def __init__(
        self,
        engines: dict[str, Engine],
        policies: dict[str, ModelPolicy],
        settings: SchedulerSettings,
        gpu: GpuMonitor | None = None,
        metrics: SchedulerMetrics | None = None,
        clock: Callable[[], float] = time.perf_counter,  # times runs; a test may pass its own
    ) -> None:
        self._engines = engines
        self._policies = policies
        self._settings = settings
        self._gpu = gpu
        self._metrics = metrics = metrics or SchedulerMetrics()  # unregistered: exported nowhere
        self._priority = settings.policy == "priority"
        self._queue = UnitQueue(self._priority, settings.aging_s)
        self._gauges = QueueGauges(self._queue, metrics)
        self._waiting = Waiting(self._queue, self._gauges, self._retry_after)
        self._pool = InstancePool(engines, policies, settings, metrics, gpu)
        self._placer = Placer(engines, policies, settings, gpu, self._pool, self._queue)
        self._pressure = PressureWatch(settings, gpu, self._placer, self._pool, self._queue)
        self._slots = Slots(settings)
        self._busy = self._slots.busy  # slots in use: GPU, CPU, CPU background
        self._running: set[asyncio.Task[None]] = set()
        self._estimates = RunTimes(settings)
        self._run_times = self._estimates.per_unit
        self._batcher = Batcher(engines, policies)
        self._ledger = Ledger(metrics)
        self._clock = clock
        self._closing = False
        self._left_running: list[str] = []  # models still running a unit when close() gave up
        self._ttl_task: asyncio.Task[None] | None = None
        self._pressure_task: asyncio.Task[None] | None = None
        self._open_jobs: dict[str, int] = {}  # model -> jobs open: none expires meanwhile
        self._closed: asyncio.Future[None] | None = None  # the one close(); later calls await it
        check_cpu_plan(policies, settings)
        gpu_slots = settings.gpu_slots if self._placer.gpu_present else 0
        metrics.slots.labels(Lane.gpu).set(gpu_slots)
        metrics.slots.labels(Lane.cpu).set(settings.cpu_slots + settings.cpu_background_slots)

    @property
    def closing(self) -> bool:
        """Whether `close()` has begun: new work is refused, readiness fails."""
        return self._closing

    @property
    def left_running(self) -> list[str]:
        """Models still running a unit when `close()` gave up waiting (the process must not tear
        their runtimes down)."""
        return list(self._left_running)

    def internals_for_tests(self) -> Internals:
        """The parts behind the API, for a test that must drive one (see `Internals`)."""
        return Internals(
            self._pool,
            self._placer,
            self._pressure,
            self._batcher,
            self._queue,
            self._estimates,
            self._ledger,
            self._metrics,
            self._expire_idle,
        )

    def _background(self, model: str) -> bool:
        return (
            self._priority
            and self._policies[model].cpu_nice > 0
            and (self._settings.cpu_background_slots > 0)
        )

    # -- jobs -----------------------------------------------------------------------------------

    def _queue_policy(self, level: Level) -> QueuePolicy:
        return queue_policy(self._settings, level)

    @asynccontextmanager
    async def job(
        self, model: str, level: Level, timeout_s: float | None = None
    ) -> AsyncIterator[Job]:
        """Open a job; `timeout_s` may lower the level's queue timeout, never raise it. Leaving
        the block takes back the job's units still queued (a streaming response that runs its
        units after the handler returns has none queued when it leaves)."""
        if model not in self._engines:
            raise KeyError(model)
        policy = self._queue_policy(level)
        timeout = policy.default_timeout_s
        if timeout_s is not None and policy.allow_timeout_override:
            timeout = min(timeout, timeout_s)
        job = Job(self, model, level, timeout)
        self._open_jobs[model] = self._open_jobs.get(model, 0) + 1
        try:
            yield job
        finally:
            job.cancel_queued()
            self._open_jobs[model] -= 1
            self._expire_idle()  # keep_alive 0: unloaded once its job is over

    def speculation(self, model: str) -> Speculation:
        """A live turn's partial decodes (speculative work, see speculation.py); close it when
        the turn ends."""
        if model not in self._engines:
            raise KeyError(model)
        job = Job(self, model, Level.interactive, math.inf)
        return Speculation(job, self._queue, self._dispatch, self._waiting.take,
                           lambda: self.closing, self._metrics)  # fmt: skip

    # -- admission ------------------------------------------------------------------------------

    def queued(self, level: Level | None = None, model: str | None = None) -> int:
        """Units waiting now (of one level, one model, or all)."""
        return self._queue.count(level, model)

    def _retry_after(self, level: Level | None) -> int:
        return self._estimates.retry_after(self.queued(level))

    def admit(self, level: Level) -> None:
        """Raise QueueFull where a job of `level` would be refused now (nothing is queued)."""
        limit = self._queue_policy(level).max_queue_size
        if self.queued(level) >= limit:
            self._gauges.rejected(level, "queue_full")
            raise QueueFull(
                f"the {level.name} queue is full ({limit} waiting); retry later",
                retry_after=self._retry_after(level),
            )

    def refuse(self, level: Level, reason: str, message: str) -> QueueFull:
        """A job refused for a reason of the caller's (e.g. `audio_held`: the decoded-audio
        budget is full): counted as a rejection, with a Retry-After for the whole queue."""
        self._gauges.rejected(level, reason)
        return QueueFull(message, self._retry_after(None))

    def level_for(self, audio_s: float) -> Level:
        """The level a job of this much audio runs at when its caller names none: longer than
        `batch_threshold_s` is batch."""
        return Level.interactive if audio_s <= self._settings.batch_threshold_s else Level.batch

    def submit(self, job: Job, payload: Any, dispatch: bool = True) -> Unit:
        """Queue one unit of a job (the queue policy may refuse a job's first: 429 or 503).
        `dispatch=False` holds dispatching back, so units queued together can share a batch."""
        if self._closing:
            raise ShuttingDown("the server is shutting down", retry_after=5)
        loop = asyncio.get_running_loop()
        if job.first_enqueued is None:
            self.admit(job.level)
        unit = Unit(job=job, payload=payload, enqueued=loop.time(), future=loop.create_future())
        unit.deadline = unit.enqueued + job.timeout_s  # stopped while it runs: see waiting.py
        self._waiting.push(unit)
        if dispatch:
            self._dispatch()
        return unit

    def cancel(self, unit: Unit) -> None:
        """The caller went away: drop the unit if it has not started (a running one finishes,
        and is not run again should its batch fail)."""
        self._waiting.cancel(unit)

    # -- dispatch -------------------------------------------------------------------------------

    def _spillover(self, unit: Unit) -> bool:
        # queued work ahead of it (partials never are), the unit itself not counted
        ahead = self._queue.count() - (0 if unit.speculative else 1) + self._busy["gpu"]
        return self._estimates.gpu_wait_too_long(ahead)

    def _instance(self, model: str, lane: Lane, background: bool) -> Instance:
        nice = self._policies[model].cpu_nice if self._priority and background else 0
        return self._pool.get(model, lane, background, nice)

    def _dispatch(self) -> None:
        if not len(self._queue):
            return
        loop = asyncio.get_running_loop()
        for unit in self._queue.in_order(loop.time()):
            if unit not in self._queue:  # started in this pass, as an earlier unit's companion
                continue
            try:
                candidates = self._placer.candidates(
                    unit.model, unit.force_cpu, self._spillover(unit)
                )
            except SchedulerError as exc:
                self._waiting.fail(unit, exc)
                continue
            for cand in candidates:
                if cand.evict is not None:
                    self._placer.admit(unit.model, cand.evict)
            # a partial decode is speculative: a niced engine runs it on the background slot,
            # beside interactive work and with idle cycles only (speculation.py)
            low = unit.job.level == Level.batch or unit.speculative
            background = self._background(unit.model) and low
            interactive = self._queue.level_now(unit, loop.time()) == Level.interactive
            for cand in candidates:
                inst = self._instance(unit.model, cand.lane, background)
                if not inst.takes(interactive):
                    continue
                # a unit beside others of the same instance rides on the slot it holds
                slot = inst.slot if inst.busy else self._slots.free(inst)
                if slot is not None:
                    units = [unit, *self._companions(unit, inst, loop.time())]
                    self._start(units, inst, slot, cand.reason)
                    break

    # -- dynamic batching -----------------------------------------------------------------------

    def parallel_units(self, model: str) -> int:
        """How many units of one job are worth queueing at once: a batch's worth where the
        model runs on the GPU and batches, else one (units run one after another)."""
        if not self._batcher.can_batch(model) or self._lane_for(model) != Lane.gpu:
            return 1
        return self._batcher.limit(model)

    def _companions(self, unit: Unit, inst: Instance, now: float) -> list[Unit]:
        if not self._batcher.batches(inst):
            return []
        limit = self._batcher.limit(unit.model)
        return self._batcher.companions(unit, self._queue.in_order(now), limit)

    def _start(self, units: list[Unit], inst: Instance, slot: str, reason: str | None) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        for unit in units:
            self._waiting.take(unit)
            unit.lane, unit.reason, unit.started = inst.lane, reason, now
            self._ledger.started(unit, reason)
        self._slots.take(inst, slot)
        self._metrics.busy.labels(inst.lane).set(self._slots.in_lane(inst.lane))
        if self._batcher.batches(inst):
            self._metrics.batch_size.labels(inst.model).observe(len(units))
        task = loop.create_task(self._execute(units, inst, slot))
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    # -- execution ------------------------------------------------------------------------------

    async def _execute(self, units: list[Unit], inst: Instance, slot: str) -> None:
        t0 = self._clock()
        was_loaded = inst.loaded
        outcome = "ok"
        unit = units[0]
        batched = self._batcher.batches(inst)
        try:
            if not was_loaded and inst.concurrency > 1:
                # load first, then let queued units start beside this one on the loaded runtime
                await asyncio.wrap_future(inst.preload())
                self._dispatch()
            if batched:
                limit = self._batcher.limit(unit.model)
                payloads = [u.payload for u in units]
                results = await asyncio.wrap_future(inst.submit_batch(payloads, limit))
            else:
                results = [await asyncio.wrap_future(inst.submit(unit.payload))]
        except Exception as exc:
            outcome = self._failed(units, inst, exc, was_loaded)
        else:
            run_s = self._clock() - t0
            share_s = run_s / len(units)  # each unit's share of the call
            if was_loaded:
                self._run_times[(unit.model, str(inst.lane))] = share_s
            if batched:
                self._batcher.succeeded(unit.model, run_s, len(units), timed=was_loaded)
            for u, result in zip(units, results, strict=True):
                self._ledger.finished(u, inst, result, share_s)
                if not u.future.done():
                    u.future.set_result(result)
        finally:
            self._metrics.units.labels(unit.model, inst.lane, outcome).inc(len(units))
            if not was_loaded and inst.loaded:
                self._metrics.loads.labels(unit.model, inst.lane).inc()
            self._slots.give_back(inst)
            inst.last_used = time.monotonic()
            self._metrics.busy.labels(inst.lane).set(self._slots.in_lane(inst.lane))
            if inst.lane == Lane.gpu and not inst.engine.gpu_capped:
                self._placer.watch_budget(inst)  # per-instance device deltas: see there
            self._dispatch()
            self._expire_idle()  # keep_alive 0 unloads after use, not a TTL tick later

    def _failed(self, units: list[Unit], inst: Instance, exc: Exception, was_loaded: bool) -> str:
        """A call failed: its units run again where that can help (the outcome is returned).
        A GPU load that failed is the GPU's failure, however many units waited for it: they go
        to the CPU and the model is marked broken. A batch that failed running is shrunk (a
        CUDA error) or split (any other); a lone unit with a CUDA error goes to the CPU once."""
        gpu_error = inst.lane == Lane.gpu and is_gpu_error(exc)
        if gpu_error and not was_loaded and not inst.loaded:
            self._retry_on_cpu(units, inst, exc, load_failed=True)
        elif len(units) > 1:
            self._batcher.failed(units, exc)  # they run again, in smaller batches or alone
            for u in units:
                self._waiting.requeue(u)
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
            self._placer.mark_gpu_broken(inst.model, str(exc))
            self._pool.unload(inst, "load_failed")
        for unit in units:
            unit.retried, unit.force_cpu = True, "gpu_error"
            self._waiting.requeue(unit)

    # -- lifecycle ------------------------------------------------------------------------------

    def _lane_for(self, model: str) -> Lane:
        """The lane a new unit of this model would use now (a query: nothing is loaded)."""
        return self._placer.candidates(model)[0].lane

    async def preload(self, models: list[str]) -> None:
        """Load models at start-up; a failure falls back or is shown in status, never raised."""
        await loading.preload(self._placer, self._metrics, models)

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        if self._ttl_task is None:
            self._ttl_task = loop.create_task(self._ttl_loop())
        if self._pressure_task is None and self._pressure.enabled:
            self._pressure_task = loop.create_task(self._pressure.run())

    async def _ttl_loop(self) -> None:
        # at least every second: a load request's keep_alive may be shorter than the lane TTLs
        ttls = (self._settings.gpu_idle_ttl_s, self._settings.cpu_idle_ttl_s, 4.0)
        tick = max(0.05, min(t for t in ttls if t) / 4)
        while True:
            await asyncio.sleep(tick)
            self._expire_idle()

    def _expire_idle(self) -> None:
        self._pool.expire_idle({m for m, n in self._open_jobs.items() if n})

    async def close(self, grace_s: float) -> None:
        """Refuse new work, fail queued units (503), let running ones end in grace; idempotent."""
        self._closed = self._closed or asyncio.ensure_future(self._close(grace_s))
        await asyncio.shield(self._closed)

    async def _close(self, grace_s: float) -> None:
        self._closing = True
        for unit in self._queue:
            self._waiting.fail(unit, ShuttingDown("the server is shutting down"))
        if self._running:
            await asyncio.wait(set(self._running), timeout=grace_s)
        for task in (self._ttl_task, self._pressure_task):
            if task:
                task.cancel()
        idle = [inst for inst in self._pool if not inst.busy]
        busy = [inst for inst in self._pool if inst.busy]
        self._left_running = [inst.model for inst in busy]  # the process must not tear them down
        unloads = [asyncio.wrap_future(self._pool.unload(i, "shutdown")) for i in idle]
        for inst in busy:  # still running past the grace: left to its daemon thread
            self._pool.unload(inst, "shutdown")
        if unloads:
            # Idle runtimes are released before the interpreter tears down: a CTranslate2 model
            # destroyed during finalization, beside its live worker thread, aborts the process.
            await asyncio.wait(unloads, timeout=1.0)

    # -- model control (Ollama's /api/ps) -------------------------------------------------------

    def loaded(self) -> list[LoadedModel]:
        """The loaded instances, as `/api/ps` lists them."""
        return list(snapshots.loaded(self._pool))

    async def load(
        self, model: str, lane: Lane | None = None, keep_alive_s: float | None = None
    ) -> LoadResult:
        """Load a model now, on the lane placement picks (or the CPU when `lane` is cpu), with a
        keep-alive of its own (None: the model's); answered once it is loaded."""
        inst, reason = await loading.load_now(
            self._placer, self._metrics, model, lane, keep_alive_s
        )
        self._expire_idle()  # keep_alive 0 on a model already used: unloaded now, as in Ollama
        return LoadResult(snapshots.loaded_model(self._pool, inst), inst.loaded, reason)

    async def unload(self, model: str) -> list[str]:
        """Unload every instance of a model now (a unit in flight finishes first; queued work
        loads it again); returns the lanes it was loaded on."""
        return [str(i.lane) for i in await loading.unload(self._pool, model)]

    # -- GPU variant verification (the runtime hashes the GPU lane's file) ----------------------

    def hold_gpu_variant(self, model: str) -> None:
        """The GPU lane's file is being hashed: the model runs on the CPU until it passes (a
        model without a usable GPU variant has nothing to wait for)."""
        if model not in self._placer.no_variant:
            self._placer.hold_gpu_variant(model)

    def pass_gpu_variant(self, model: str) -> None:
        self._placer.pass_gpu_variant(model)

    def refuse_gpu_variant(self, model: str, problem: str) -> None:
        """The GPU lane's file failed its checksum: that model runs on the CPU from now on."""
        self._placer.refuse_gpu_variant(model, problem)

    # -- observability --------------------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        parts = snapshots.Parts(
            settings=self._settings,
            gpu=self._gpu,
            engines=self._engines,
            policies=self._policies,
            placer=self._placer,
            pool=self._pool,
            queue=self._queue,
            busy=self._busy,
            ledger=self._ledger,
            pressure=self._pressure,
            batcher=self._batcher,
        )
        return snapshots.take(parts, self._closing)
