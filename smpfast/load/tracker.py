"""Messages in flight: registered before their SEND is written (a MSG can reach the
recipient before the sender sees OK), resolved exactly once by a delivery or a failure,
and after the drain the rest are counted as lost.

A delivery is keyed by ``(stream, seq)`` for messaging and ``(seq, member)`` for fanout.
Deliveries of one send share a ``Send``: it completes when all its deliveries have; its
``done`` callback then frees the sender's closed-loop slot."""

from __future__ import annotations

from typing import Callable

import trio

from .stats import Stats

LOST = "lost"
INTERRUPTED = "in flight when interrupted"


class Send:
    """One send (a message, or one fanout to G members): its times and what remains."""

    __slots__ = ("intended", "sent", "warm", "remaining", "failed", "done", "stage")

    def __init__(self, intended: float, sent: float, warm: bool, deliveries: int,
                 done: Callable[["Send", float], None] | None = None, stage: int = -1) -> None:
        self.stage = stage  # the --stages stage it was sent in (-1: no stages)
        self.intended = intended
        self.sent = sent
        self.warm = warm
        self.remaining = deliveries
        self.failed = 0
        self.done = done


class Tracker:
    def __init__(self, stats: Stats) -> None:
        self.stats = stats
        self.pending: dict[tuple[int, int], Send] = {}
        self._empty = trio.Event()
        self._empty.set()

    def __len__(self) -> int:
        return len(self.pending)

    def expect(self, key: tuple[int, int], send: Send) -> None:
        if not self.pending:
            self._empty = trio.Event()
        self.pending[key] = send

    def take(self, key: tuple[int, int]) -> Send | None:
        """The send a delivery belongs to (None: not expected, e.g. a duplicate)."""
        send = self.pending.pop(key, None)
        if not self.pending:
            self._empty.set()
        return send

    def resolve(self, send: Send, now: float | None, error: str | None = None,
                latency: float = 0.0, **latencies: float) -> None:
        """One delivery of ``send`` ended: received (``error`` None) or failed."""
        if error is None:
            self.stats.received(send.warm, now, latency, send.stage, **latencies)
        else:
            send.failed += 1
            self.stats.failed(send.warm, now, error, stage=send.stage)
        send.remaining -= 1
        if send.remaining == 0 and send.done is not None:
            send.done(send, now)

    def fail(self, key: tuple[int, int], now: float, error: str) -> None:
        send = self.take(key)
        if send is not None:
            self.resolve(send, now, error)

    async def wait_empty(self) -> None:
        await self._empty.wait()

    def lose_all(self, kind: str = LOST) -> int:
        """Count everything still pending as lost, or ``kind`` (at no particular time:
        losses do not extend the measured window); returns how many."""
        pending, self.pending = self.pending, {}
        for send in pending.values():
            self.resolve(send, None, kind)
        self._empty.set()
        return len(pending)
