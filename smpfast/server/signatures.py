"""Signature checks of all connections, gathered per event-loop tick and verified off the loop.

A connection's reader prepares its block's checks (``AuthVerifier.prepare``: the Python
half) and, when they include Ed25519 signatures, parks in ``TickVerifier.verify``. Once the
readers of this tick have run, the verifier's task runs: it joins every parked block's core
requests into one list and verifies it with one ``core.verify_batch`` call, which releases
the GIL, on its worker thread; then it wakes each reader with its block's share of the
results. The hand-off is paid once per tick, not per block, and the event loop serves other
connections meanwhile. A tick with fewer than ``thread_min`` signatures is verified in the
verifier's task itself: a thread round trip costs more CPU than a signature or two.

Parking costs too (two task switches and the queue re-reads, ~50-100 µs a block on the
development machine, more than the check it moves), so a block goes to the verifier only
when that pays (``wants``): it has ``thread_min`` signatures itself, or the server checks
more than ``engage_rate`` signatures a second (measured over ``WINDOW``), when the event
loop is busy enough for the CPU it saves to matter. Otherwise the reader verifies inline.

Which checks pass is decided by ``core.verify_batch`` exactly as inline, so accepting and
rejecting stay as they were; only where and when the checks run changes (a block then
re-reads its queues before it executes, ``Broker.finish_block(reload=True)``).
"""

from __future__ import annotations

import time

import outcome
import trio

import smpfast._core as core

from .offload import WorkerThread

# A tick's signatures below this many are verified on the event loop (one Ed25519 check
# ~50 µs of CPU; a round trip through the worker thread ~100 µs).
TICK_THREAD_MIN = 3
# Above this many signatures a second (~10 % of a core of Ed25519 checks) every block with
# signatures goes to the verifier; the rate is taken over windows of WINDOW seconds.
ENGAGE_RATE = 2000.0
WINDOW = 0.01

_TICK_VERIFIER: trio.lowlevel.RunVar = trio.lowlevel.RunVar("smpfast_tick_verifier")


class TickVerifier:
    """One per trio run (``current()``), shared by all its connections."""

    __slots__ = ("thread_min", "engage_rate", "engaged", "_window_start", "_window_signatures", "_pending",
                 "_signatures", "_wakeup", "_thread", "blocks", "ticks", "threaded")

    def __init__(self, thread_min: int = TICK_THREAD_MIN, engage_rate: float = ENGAGE_RATE) -> None:
        self.thread_min = thread_min
        self.engage_rate = engage_rate
        self.engaged = False  # the signature rate of the last window was above engage_rate
        self._window_start = time.monotonic()
        self._window_signatures = 0
        self._pending: list[tuple[list, trio.lowlevel.Task]] = []
        self._signatures = 0
        self._wakeup = trio.Event()
        self._thread = WorkerThread("smpfast-verify")
        self.blocks = 0  # blocks verified here, in ticks, of them on the thread
        self.ticks = 0
        self.threaded = 0

    @staticmethod
    def current() -> "TickVerifier":
        """The run's verifier; its task is started (as a system task) on first use."""
        try:
            return _TICK_VERIFIER.get()
        except LookupError:
            verifier = TickVerifier()
            _TICK_VERIFIER.set(verifier)
            trio.lowlevel.spawn_system_task(verifier._run, name="smpfast tick verifier")
            return verifier

    def wants(self, signatures: int) -> bool:
        """Whether a block with ``signatures`` Ed25519 checks should be verified here
        (else inline by its reader); counts them into the rate."""
        self._window_signatures += signatures
        now = time.monotonic()
        elapsed = now - self._window_start
        if elapsed >= WINDOW:
            self.engaged = self._window_signatures >= self.engage_rate * elapsed
            self._window_start = now
            self._window_signatures = 0
        return self.engaged or signatures >= self.thread_min

    async def verify(self, core_requests: list, signatures: int) -> list[bool]:
        """``core.verify_batch(core_requests)``, computed with the tick's other blocks'."""
        await trio.lowlevel.checkpoint_if_cancelled()
        self._pending.append((core_requests, trio.lowlevel.current_task()))
        self._signatures += signatures
        self._wakeup.set()
        return await trio.lowlevel.wait_task_rescheduled(_no_abort)

    async def _run(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup = trio.Event()
            batch, self._pending = self._pending, []
            signatures, self._signatures = self._signatures, 0
            flat = [request for requests, _ in batch for request in requests]
            self.ticks += 1
            self.blocks += len(batch)
            if signatures >= self.thread_min:
                self.threaded += 1
                result = await outcome.acapture(self._thread.run, core.verify_batch, flat)
            else:
                result = outcome.capture(core.verify_batch, flat)
            if isinstance(result, outcome.Error):
                for _, task in batch:  # every block's reader sees the failure
                    trio.lowlevel.reschedule(task, result)
                continue
            results = result.value
            start = 0
            for requests, task in batch:
                end = start + len(requests)
                trio.lowlevel.reschedule(task, outcome.Value(results[start:end]))
                start = end


def _no_abort(raise_cancel: object) -> trio.lowlevel.Abort:
    # A parked block's checks are in the batch: it waits for them (a tick, at most the
    # batch's verification) and then sees its cancellation at its next checkpoint.
    return trio.lowlevel.Abort.FAILED
