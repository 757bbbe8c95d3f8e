"""A one-thread executor whose thread never holds the process open.

`concurrent.futures.ThreadPoolExecutor` joins its workers at interpreter exit
(`threading._register_atexit`), so a unit still running when the server shuts down (a 30 s
Whisper window, a stuck runtime call) would keep the process alive past the pod's grace period.
This worker is a daemon thread that nothing joins: shutdown waits for running work only as long
as the scheduler's grace period says, and the process then exits.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

_Item = tuple[Future[Any], Callable[..., Any], tuple[Any, ...]]


class DaemonWorker:
    """`submit` / `shutdown` as a single-worker ThreadPoolExecutor has them, on a daemon thread
    started with the first call."""

    def __init__(
        self,
        name: str,
        initializer: Callable[..., None] | None = None,
        initargs: tuple[Any, ...] = (),
    ) -> None:
        self.name = name
        self._initializer, self._initargs = initializer, initargs
        self._queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._closed = False
        self._thread: threading.Thread | None = None

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        with self._lock:
            if self._closed:
                raise RuntimeError("cannot schedule new futures after shutdown")
            fut: Future[Any] = Future()
            self._queue.put((fut, fn, args))
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name=self.name, daemon=True)
                self._thread.start()
        return fut

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Accept no more work; the thread ends after what is queued (or cancelled). Never
        interrupts a running call; `wait` joins the thread."""
        with self._lock:
            self._closed = True
            if cancel_futures:
                while True:
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if item is not None:
                        item[0].cancel()
            self._queue.put(None)
            thread = self._thread
        if wait and thread is not None:
            thread.join()

    def _work(self) -> None:
        if self._initializer is not None:
            self._initializer(*self._initargs)
        while True:
            item = self._queue.get()
            if item is None:
                return
            fut, fn, args = item
            if not fut.set_running_or_notify_cancel():
                continue
            try:
                result = fn(*args)
            except BaseException as exc:  # as ThreadPoolExecutor: the caller gets it
                fut.set_exception(exc)
            else:
                fut.set_result(result)
