"""Stopping a run from outside (Ctrl-C / SIGINT) and the point between set-up and traffic.

The first SIGINT stops sending: the run drains for at most INTERRUPT_DRAIN seconds, then
reports what it did (a partial report, exit code 130). A second SIGINT ends the drain at
once. SIGINT during set-up cancels the set-up.

A worker process (--workers) uses a subclass that waits at ``ready()`` for the parent's
start signal and reports its per-second rows upwards (see workers.py).
"""

from __future__ import annotations

import signal
from typing import Protocol

import trio

INTERRUPT_DRAIN = 1.0  # seconds the messages in flight get after a Ctrl-C


class Interrupted(Exception):
    """Interrupted before the traffic began (during ``phase`` of the set-up)."""

    def __init__(self, phase: str) -> None:
        super().__init__(f"interrupted during {phase}")
        self.phase = phase


class Interruptible(Protocol):
    def interrupt(self, count: int) -> None:
        """The ``count``-th interrupt of the run (1: stop sending, 2+: stop now)."""


class Control:
    def __init__(self) -> None:
        self.interrupts = 0
        self.setup_scope: trio.CancelScope | None = None
        self._target: Interruptible | None = None

    @property
    def interrupted(self) -> bool:
        return self.interrupts > 0

    def interrupt(self) -> None:
        self.interrupts += 1
        if self._target is not None:
            self._target.interrupt(self.interrupts)
        elif self.setup_scope is not None:
            self.setup_scope.cancel()

    def attach(self, target: Interruptible | None) -> None:
        """The traffic phase takes the interrupts from now on (None: nobody does)."""
        self._target = target
        if target is not None and self.interrupts:
            target.interrupt(self.interrupts)

    async def ready(self) -> None:
        """Set-up is done; returns when the traffic may start."""
        if self.interrupted:
            raise Interrupted("set-up")

    def tick(self, row: dict, totals: dict) -> None:
        """One per-second row of the traffic phase (workers pass it on)."""

    async def watch_signals(self, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Turn SIGINT into interrupts until cancelled (call from the main thread)."""
        with trio.open_signal_receiver(signal.SIGINT) as signals:
            task_status.started()
            async for _ in signals:
                self.interrupt()
