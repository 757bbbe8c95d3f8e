"""An instance: one loaded copy of a model on one lane, owned by one worker thread.

All of an instance's runtime calls happen on its own thread. Threads inherit their nice value
from the thread that creates them, so an instance whose thread lowers its priority before loading
also lowers every thread its runtime creates (CTranslate2's workers, ONNX Runtime's pool): the
kernel then gives the cores to foreground work at once and idle cycles to this instance.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any

from ..engines.base import Device, Engine

log = logging.getLogger(__name__)


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
        self.busy = False
        self.last_used = time.monotonic()
        self.load_s: float | None = None
        self.wait_for: list[Future[Any]] = []
        self.key: tuple[str, str] = (self.model, self.lane)
        self._executor = ThreadPoolExecutor(
            max_workers=1,
            thread_name_prefix=f"{self.model}-{self.lane}",
            initializer=_lower_priority,
            initargs=(nice,),
        )

    @property
    def loaded(self) -> bool:
        return self.handle is not None

    def submit(self, payload: Any) -> Future[Any]:
        return self._executor.submit(self._call, payload)

    def preload(self) -> Future[Any]:
        return self._executor.submit(self._ensure_loaded)

    def _ensure_loaded(self) -> None:
        if self.handle is None:
            wait(self.wait_for)  # memory given back by evicted instances first
            t0 = time.perf_counter()
            self.handle = self.engine.load(self.device)
            self.load_s = time.perf_counter() - t0
            log.info(
                "model loaded",
                extra={"model": self.model, "lane": self.lane, "load_s": round(self.load_s, 3)},
            )

    def _call(self, payload: Any) -> Any:
        self._ensure_loaded()
        return self.engine.run(self.handle, payload)

    def unload(self) -> Future[Any]:
        """Unload on the instance's own thread, then let the thread end."""
        fut = self._executor.submit(self._unload)
        self._executor.shutdown(wait=False)
        return fut

    def _unload(self) -> None:
        if self.handle is not None:
            handle, self.handle = self.handle, None
            self.engine.unload(handle)
            del handle
            log.info("model unloaded", extra={"model": self.model, "lane": self.lane})

    def describe(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "lane": self.lane,
            "loaded": self.loaded,
            "busy": self.busy,
            "threads": self.device.threads if self.lane == "cpu" else None,
            "nice": self.nice,
            "background": self.background,
            "pinned": self.pinned,
            "gpu_budget_mib": self.budget_mib if self.lane == "gpu" else None,
            "idle_s": round(time.monotonic() - self.last_used, 1),
            "load_s": None if self.load_s is None else round(self.load_s, 3),
        }
