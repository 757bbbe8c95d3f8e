"""The instance pool. An instance is one loaded copy of a model on one lane, owned by one worker
thread (Triton: a model instance).

All of an instance's runtime calls happen on its own thread. Threads inherit their nice value
from the thread that creates them, so an instance whose thread lowers its priority before loading
also lowers every thread its runtime creates (CTranslate2's workers, ONNX Runtime's pool): the
kernel then gives the cores to foreground work at once and idle cycles to this instance.

A GPU instance with `concurrency` N > 1 (Kokoro's `gpu_concurrency`) runs up to N units at once,
each on a runner thread of its own, all on the one loaded runtime (ONNX Runtime sessions may be
run from several threads; its `gpu_mem_limit` caps them together, inside one budget). It holds
one lane slot while any of them runs, so the lane's slots still say how many models share the
device. Batch units take at most N - 1 of its runners: one is always left for interactive work.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, wait
from contextlib import nullcontext
from typing import Any

from ..config import SchedulerSettings
from ..engines.base import BatchEngine, Device, Engine, Lane
from ..engines.memory import release_free_memory
from .gpu import GpuMonitor
from .meter import GpuMeter
from .metrics import SchedulerMetrics
from .policy import ModelPolicy
from .worker import DaemonWorker

log = logging.getLogger(__name__)


def _trim_heap() -> None:
    """Give freed heap pages back after an unload: glibc keeps a runtime's freed weights in its
    arenas (measured: of whisper-base's ~95 MiB, ~25 MiB came back without this, all with it),
    and memory the process keeps is memory a neighbour cannot have."""
    release_free_memory()


def _lower_priority(nice: int) -> None:
    if nice > 0:
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)
        except OSError as exc:  # a sandbox may forbid it; run at normal priority then
            log.warning("cannot set nice %s: %s", nice, exc)


class Instance:
    def __init__(
        self,
        engine: Engine,
        device: Device,
        budget_mib: int,
        nice: int,
        background: bool,
        pinned: bool,
    ) -> None:
        self.engine = engine
        self.model = engine.model_id
        self.device = device
        self.lane = device.lane
        self.budget_mib = budget_mib
        self.nice = nice
        self.background = background
        self.pinned = pinned
        self.handle: Any = None
        self.concurrency = 1  # units at once (GPU lane: the model's gpu_concurrency)
        self.running = 0  # calls in flight, counted on the loop
        self.slot: str | None = None  # the lane slot held while any call runs
        self.last_used = time.monotonic()
        self.load_s: float | None = None
        self.units_run = 0  # counted on the worker thread, read on the loop
        self.keep_alive_s: float | None = None  # set by a load request; else the model's
        self.wait_for: list[Future[Any]] = []
        # GPU memory this instance holds, in MiB: NVML's change across its load (and, for an
        # uncapped runtime, its runs), charged as meter.py says (GPU lane only).
        self.gpu_used_mib: int | None = None
        self.meter: GpuMeter | None = None
        self.key: tuple[str, str] = (self.model, str(self.lane))
        # a daemon thread: a unit still running at exit never holds the process open
        self._executor = DaemonWorker(f"{self.model}-{self.lane}", _lower_priority, (nice,))
        self._runners: list[DaemonWorker] = [self._executor]  # more made as concurrency asks
        self._idle_runners: list[DaemonWorker] = [self._executor]
        self._runner_lock = threading.Lock()
        self._load_lock = threading.Lock()  # two runners never load the same instance twice

    @property
    def loaded(self) -> bool:
        return self.handle is not None

    @property
    def busy(self) -> bool:
        return self.running > 0

    def takes(self, interactive: bool) -> bool:
        """Whether one more unit may start on this instance now, beside those running. An
        instance not running anything always may (if its lane has a slot); a second one only
        once loaded, and a batch unit never takes the last free runner."""
        if self.running == 0:
            return True
        if not self.loaded:
            return False
        limit = self.concurrency if interactive else max(1, self.concurrency - 1)
        return self.running < limit

    @property
    def held_mib(self) -> int:
        """GPU memory an unload would really free: nothing if it never loaded, else what was
        measured (the budget where nothing could be measured)."""
        if not self.loaded:
            return 0
        return self.budget_mib if self.gpu_used_mib is None else self.gpu_used_mib

    def waiting_for_evictions(self) -> bool:
        return any(not f.done() for f in self.wait_for)

    def submit(self, payload: Any) -> Future[Any]:
        worker = self._runner()
        return worker.submit(self._on_runner, worker, self._call, payload)

    def _runner(self) -> DaemonWorker:
        """An idle runner thread (the scheduler starts at most `concurrency` calls at once)."""
        with self._runner_lock:
            if self._idle_runners:
                return self._idle_runners.pop()
            n = len(self._runners)
            worker = DaemonWorker(f"{self.model}-{self.lane}-{n}", _lower_priority, (self.nice,))
            self._runners.append(worker)
            return worker

    def _on_runner(self, worker: DaemonWorker, fn: Callable[..., Any], *args: Any) -> Any:
        try:
            return fn(*args)
        finally:
            # idle again before the loop hears of the result, so its next unit finds a runner
            with self._runner_lock:
                self._idle_runners.append(worker)

    def submit_batch(self, payloads: list[Any], batch_size: int) -> Future[list[Any]]:
        return self._executor.submit(self._call_batch, payloads, batch_size)

    def _call_batch(self, payloads: list[Any], batch_size: int) -> list[Any]:
        self._ensure_loaded()
        engine = self.engine
        assert isinstance(engine, BatchEngine)
        self.units_run += len(payloads)
        return list(self._run(engine.run_batch, self.handle, payloads, batch_size))

    def preload(self) -> Future[Any]:
        return self._executor.submit(self._ensure_loaded)

    def _ensure_loaded(self) -> None:
        with self._load_lock:
            self._load()

    def _load(self) -> None:
        if self.handle is None:
            wait(self.wait_for)  # memory given back by evicted instances first
            t0 = time.perf_counter()
            self.handle = self._measured(self.engine.load, self.device, load=True)
            self.load_s = time.perf_counter() - t0
            log.info(
                "model loaded",
                extra={"model": self.model, "lane": self.lane, "load_s": round(self.load_s, 3)},
            )

    def _call(self, payload: Any) -> Any:
        self._ensure_loaded()
        self.units_run += 1
        return self._run(self.engine.run, self.handle, payload)

    def _run(self, fn: Callable[..., Any], *args: Any) -> Any:
        if self.meter is None:
            return fn(*args)
        if self.engine.gpu_capped:
            with self.meter.call():  # not measured, but seen by the runs that are
                return fn(*args)
        # an uncapped runtime (CTranslate2) grows its cache while it runs: measure that too
        return self._measured(fn, *args, load=False)

    def _measured(self, fn: Callable[..., Any], *args: Any, load: bool) -> Any:
        """Call fn, charging this instance the GPU memory it took (GPU lane only)."""
        if self.meter is None:
            return fn(*args)
        return self.meter.measure(self._charge, fn, *args, load=load)

    def _charge(self, delta_mib: int) -> None:
        self.gpu_used_mib = max(0, (self.gpu_used_mib or 0) + delta_mib)

    def unload(self) -> Future[Any]:
        """Unload on the instance's own thread, then let the thread end."""
        fut = self._executor.submit(self._unload)
        for worker in self._runners:
            worker.shutdown(wait=False)
        return fut

    def _unload(self) -> None:
        if self.handle is not None:
            handle, self.handle = self.handle, None
            with self.meter.lock if self.meter else nullcontext():  # outside any measurement
                self.engine.unload(handle)
                del handle
            _trim_heap()
            log.info("model unloaded", extra={"model": self.model, "lane": self.lane})

    def audio_seconds(self, payload: Any, result: Any) -> float:
        try:
            return float(self.engine.audio_seconds(payload, result))
        except AttributeError:  # a test double without the method: no real-time factor
            return 0.0

    def describe(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "lane": self.lane,
            "loaded": self.loaded,
            "busy": self.busy,
            "running": self.running,
            "concurrency": self.concurrency,
            "threads": self.device.threads if self.lane == "cpu" else None,
            "nice": self.nice,
            "background": self.background,
            "pinned": self.pinned,
            "gpu_budget_mib": self.budget_mib if self.lane == "gpu" else None,
            "gpu_used_mib": self.gpu_used_mib if self.lane == "gpu" else None,
            "idle_s": round(time.monotonic() - self.last_used, 1),
            "load_s": None if self.load_s is None else round(self.load_s, 3),
            "units_run": self.units_run,
        }


class InstancePool:
    """Every instance, keyed by (model, lane) and (model, "cpu-bg") for niced batch instances."""

    def __init__(
        self,
        engines: dict[str, Engine],
        policies: dict[str, ModelPolicy],
        settings: SchedulerSettings,
        metrics: SchedulerMetrics,
        gpu: GpuMonitor | None = None,
    ) -> None:
        self.engines = engines
        self.policies = policies
        self.settings = settings
        self.metrics = metrics
        self.gpu = gpu
        self.instances: dict[tuple[str, str], Instance] = {}
        self.meter: GpuMeter | None = None
        if gpu is not None:
            index = settings.gpu_device
            self.meter = GpuMeter(lambda: gpu.used_mib(index), lambda: gpu.process_used_mib(index))

    def __iter__(self) -> Iterator[Instance]:
        return iter(list(self.instances.values()))

    def has(self, model: str, lane: Lane) -> bool:
        return (model, str(lane)) in self.instances

    def on_gpu(self) -> list[Instance]:
        return [i for (_, lane), i in self.instances.items() if lane == Lane.gpu]

    def gpu_committed(self, without: Instance | None = None) -> int:
        """Budgets of the GPU instances (admitted, loading or loaded)."""
        return sum(i.budget_mib for i in self.on_gpu() if i is not without)

    def gpu_pending(self, without: Instance | None = None) -> int:
        """Budgets of GPU instances admitted but not loaded yet: NVML does not show them."""
        return sum(i.budget_mib for i in self.on_gpu() if i is not without and not i.loaded)

    def get(self, model: str, lane: Lane, background: bool = False, nice: int = 0) -> Instance:
        """The instance for a lane, created (not loaded) when missing; a niced engine's batch
        units get a CPU instance of their own (nice value, background slot), while its
        interactive units run at normal priority."""
        key = (model, "cpu-bg" if lane == Lane.cpu and background else str(lane))
        inst = self.instances.get(key)
        if inst is None:
            policy = self.policies[model]
            if lane == Lane.gpu:
                device = Device(Lane.gpu, self.settings.gpu_device, 1, policy.gpu_budget_mib)
                inst = Instance(
                    self.engines[model], device, policy.gpu_budget_mib, 0, False, policy.pinned
                )
                inst.meter = self.meter
                inst.concurrency = policy.gpu_concurrency
            else:
                device = Device(Lane.cpu, 0, policy.cpu_threads)
                inst = Instance(
                    self.engines[model],
                    device,
                    0,
                    nice if background else 0,
                    background,
                    policy.pinned,
                )
            inst.key = key
            self.instances[key] = inst
        return inst

    def unload(self, inst: Instance, reason: str) -> Future[Any]:
        self.instances.pop(inst.key, None)
        if inst.loaded:
            self.metrics.unloads.labels(inst.model, inst.lane, reason).inc()
        return inst.unload()

    def keep_alive(self, inst: Instance) -> float:
        """Seconds an idle instance stays loaded (inf: forever): its load request's keep_alive,
        else its model's, else its lane's idle TTL (where 0 means never)."""
        if inst.pinned:
            return math.inf
        if inst.keep_alive_s is not None:
            return inst.keep_alive_s
        policy = self.policies[inst.model].keep_alive_s
        if policy is not None:
            return policy
        s = self.settings
        return (s.gpu_idle_ttl_s if inst.lane == Lane.gpu else s.cpu_idle_ttl_s) or math.inf

    def expire_idle(self, in_use: set[str] | None = None) -> None:
        """Unload instances idle longer than their keep-alive (never pinned ones, nor models
        with a job open: its next unit is coming). keep_alive 0 unloads after use: an instance
        loaded ahead of its first unit waits for that unit."""
        now = time.monotonic()
        for inst in self:
            ttl = self.keep_alive(inst)
            if not inst.loaded or inst.busy or ttl == math.inf or (ttl == 0 and not inst.units_run):
                continue
            if in_use and inst.model in in_use:
                continue
            if now - inst.last_used >= ttl:
                self.unload(inst, "idle")


class Slots:
    """Slots in use per lane: the GPU's, the CPU's foreground ones, and the CPU background ones
    that only niced batch instances take."""

    def __init__(self, settings: SchedulerSettings) -> None:
        self.settings = settings
        self.busy = {"gpu": 0, "cpu": 0, "cpu-bg": 0}

    def free(self, inst: Instance) -> str | None:
        """The slot this instance would take now, or None when its lane is full."""
        s = self.settings
        if inst.lane == Lane.gpu:
            return "gpu" if self.busy["gpu"] < s.gpu_slots else None
        if inst.background:
            return "cpu-bg" if self.busy["cpu-bg"] < s.cpu_background_slots else None
        return "cpu" if self.busy["cpu"] < s.cpu_slots else None

    def take(self, inst: Instance, slot: str) -> None:
        """One more unit starts on `inst`; its first takes the lane slot for all of them."""
        if not inst.busy:
            self.busy[slot] += 1
            inst.slot = slot
        inst.running += 1

    def give_back(self, inst: Instance) -> None:
        """A unit of `inst` ended; its last gives the lane slot back."""
        inst.running -= 1
        if not inst.busy and inst.slot is not None:
            self.busy[inst.slot] -= 1
            inst.slot = None

    def in_lane(self, lane: str) -> int:
        return self.busy["gpu"] if lane == Lane.gpu else self.busy["cpu"] + self.busy["cpu-bg"]
