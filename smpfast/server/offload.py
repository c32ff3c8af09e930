"""A worker thread the event loop hands blocking or GIL-free work to cheaply.

``trio.to_thread.run_sync`` costs ~170 µs of CPU per call on the development machine
(limiter, thread cache, context copy, two wake-ups through the run queue): more than the
fsync or the signature checks it carries. ``WorkerThread.run`` puts the job on a
``queue.SimpleQueue`` read by one thread, and the thread hands the outcome back with one
``run_sync_soon`` that reschedules the waiting task. The thread starts with the first job
and ends after ``idle`` seconds without one (so nothing outlives a server or a test).

A job that has started cannot be cancelled (like ``to_thread.run_sync`` by default): the
waiting task is cancelled only after the job returns.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import outcome
import trio

_R = TypeVar("_R")


class WorkerThread:
    """Runs jobs one after another, in order, on one thread."""

    __slots__ = ("name", "idle", "_jobs", "_lock", "_alive")

    def __init__(self, name: str, idle: float = 5.0) -> None:
        self.name = name
        self.idle = idle
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._alive = False

    async def run(self, fn: Callable[..., _R], *args: Any) -> _R:
        """``fn(*args)`` on the worker thread; its result or exception."""
        await trio.lowlevel.checkpoint_if_cancelled()
        self._jobs.put((fn, args, trio.lowlevel.current_task(), trio.lowlevel.current_trio_token()))
        # The job is queued before the thread is checked: a thread that finds the queue
        # empty and ends has done so before this put, so a new one starts here.
        with self._lock:
            if not self._alive:
                self._alive = True
                threading.Thread(target=self._work, name=self.name, daemon=True).start()
        return await trio.lowlevel.wait_task_rescheduled(_no_abort)  # the outcome, unwrapped

    def _work(self) -> None:
        jobs = self._jobs
        reschedule = trio.lowlevel.reschedule
        while True:
            try:
                fn, args, task, token = jobs.get(timeout=self.idle)
            except queue.Empty:
                with self._lock:
                    if jobs.empty():
                        self._alive = False
                        return
                continue
            result = outcome.capture(fn, *args)
            try:
                token.run_sync_soon(reschedule, task, result)
            except trio.RunFinishedError:
                pass  # the run ended meanwhile: nobody waits


def _no_abort(raise_cancel: object) -> trio.lowlevel.Abort:
    return trio.lowlevel.Abort.FAILED
