"""The send loop shared by the messaging and fanout scenarios.

Load models (stated in the report as ``model``):

closed loop
    Each sender (stream) has ``concurrency`` slots; a send takes a slot and gives it
    back when the send is complete: every delivery received by its recipient, or failed.
    ``concurrency`` = 1 is ping-pong; latency is measured from the actual send time.
open loop
    Each stream sends on a fixed schedule (``rate`` split evenly over the streams,
    streams staggered), whatever the server does; ``concurrency`` bounds the SENDs
    awaiting their OK per stream. Latency is measured from the *intended* send time, so a
    server that stalls is charged for the whole stall (coordinated omission, as wrk2).

A run is: warm-up (``--warmup`` seconds or sends, excluded from the results), the
measured part (``--duration`` seconds or ``--messages`` sends), then the drain: no new
sends, wait up to ``drain_timeout`` for the deliveries in flight; what is still missing
then is lost. Open-loop sends that were scheduled but could not even be started before
the drain ended are counted as ``unsent``. With no progress at all for
``drain_timeout`` seconds the run gives up the same way.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import trio

from ..client import SMPClient
from .config import LoadConfig
from .progress import INTERVAL, Phases, Progress
from .queues import QueueRef
from .stats import Series, Stats
from .tracker import Tracker

UNSENT = "unsent"

clock = time.perf_counter


def ns(t: float) -> int:
    return int(t * 1e9)


class Slots:
    """A closed loop's in-flight limit for one stream; ``close()`` wakes every waiter
    with False (the run stops sending)."""

    def __init__(self, n: int) -> None:
        self.free = n
        self.closed = False
        self._lot = trio.lowlevel.ParkingLot()

    async def acquire(self) -> bool:
        while self.free <= 0 and not self.closed:
            await self._lot.park()
        if self.closed:
            return False
        self.free -= 1
        return True

    def release(self, *_: object) -> None:
        self.free += 1
        self._lot.unpark()

    def close(self) -> None:
        self.closed = True
        self._lot.unpark_all()


@dataclass(slots=True)
class Claim:
    seq: int
    intended: float
    warm: bool


class Stream:
    """One sender: its connection, its destination queues, its sequence numbers, its
    closed-loop slots and (open loop) its schedule."""

    def __init__(self, index: int, client: SMPClient, queues: list[QueueRef], slots: int) -> None:
        self.index = index
        self.client = client
        self.queues = queues
        self.slots = Slots(slots)
        self.next_seq = 0
        self.limit: int | None = None  # open loop --messages: this stream's share
        self.warm_limit = 0
        self.offset = 0.0
        self.interval = 0.0
        self.dead = False


SendFn = Callable[[Stream, Claim], Awaitable[bool]]


class Engine:
    """Runs the streams' workers; ``send(stream, claim)`` is the scenario's: it registers
    the deliveries with the tracker, sends, resolves failures and returns False when the
    stream's connection is gone."""

    def __init__(self, cfg: LoadConfig, stats: Stats, tracker: Tracker, streams: list[Stream],
                 send: SendFn, deliveries_per_send: int, phases: Phases, progress: Progress,
                 unit: str = "msg") -> None:
        self.cfg = cfg
        self.stats = stats
        self.tracker = tracker
        self.streams = streams
        self.send = send
        self.per_send = deliveries_per_send
        self.phases = phases
        self.progress = progress
        self.unit = unit
        self.open_loop = cfg.open_loop
        self.claimed = 0
        self.stopped = False
        self.t0 = 0.0
        self.measure_start: float | None = None
        self.end: float | None = None
        self.sending_done: float | None = None
        self.series: Series | None = None
        self.lost = 0
        self.unsent = 0
        self.gave_up = False

    # ---------------------------------------------------------------- claims

    def _setup_schedule(self) -> None:
        cfg = self.cfg
        S = len(self.streams)
        w = cfg.warmup
        for i, s in enumerate(self.streams):
            if self.open_loop:
                rate = cfg.rate / S  # type: ignore[operator]
                s.interval = 1.0 / rate
                s.offset = i / cfg.rate  # type: ignore[operator]
                if cfg.messages is not None:
                    s.limit = cfg.messages // S + (i < cfg.messages % S)
                    if w.messages:
                        s.warm_limit = w.messages // S + (i < w.messages % S)
                        s.limit += s.warm_limit

    def claim(self, s: Stream) -> Claim | None:
        if self.stopped:
            return None
        cfg = self.cfg
        seq = s.next_seq
        if self.open_loop:
            intended = self.t0 + s.offset + seq * s.interval
            if s.limit is not None and seq >= s.limit:
                return None
            if self.end is not None and intended >= self.end:
                return None
            warm = seq < s.warm_limit if cfg.warmup.messages else intended < self.t0 + (cfg.warmup.seconds or 0)
        else:
            intended = clock()
            if self.end is not None and intended >= self.end:
                self.stop()
                return None
            index = self.claimed
            if cfg.messages is not None and index >= cfg.messages + (cfg.warmup.messages or 0):
                self.stop()
                return None
            if cfg.warmup.messages:
                warm = index < cfg.warmup.messages
            else:
                warm = intended < self.t0 + (cfg.warmup.seconds or 0)
        s.next_seq = seq + 1
        self.claimed += 1
        if not warm and (self.measure_start is None or intended < self.measure_start):
            self.measure_start = intended
        return Claim(seq, intended, warm)

    def stop(self) -> None:
        """No new sends: wake every closed-loop worker waiting for a slot."""
        if not self.stopped:
            self.stopped = True
            for s in self.streams:
                s.slots.close()

    # ---------------------------------------------------------------- workers

    async def _worker(self, s: Stream) -> None:
        closed = not self.open_loop
        stats = self.stats
        n = self.per_send
        while not s.dead:
            if closed and not await s.slots.acquire():
                return
            c = self.claim(s)
            if c is None:
                if closed:
                    s.slots.release()
                return
            for _ in range(n):
                stats.sent(c.warm, c.intended)
            if not closed:
                try:
                    delay = c.intended - clock()
                    if delay > 0:
                        await trio.sleep(delay)
                except trio.Cancelled:
                    self.unsent += n
                    stats.failed(c.warm, None, UNSENT, n)
                    raise
            if not await self.send(s, c):
                s.dead = True
                return

    # ---------------------------------------------------------------- the run

    async def run(self) -> None:
        cfg = self.cfg
        self.phases.enter("warmup" if cfg.warmup.enabled else "measure")
        self.t0 = clock()
        self._setup_schedule()
        w = cfg.warmup
        if w.seconds:
            self.measure_start = self.t0 + w.seconds
        if cfg.duration is not None:
            self.end = self.t0 + (w.seconds or 0) + cfg.duration
        hard = self.end + cfg.drain_timeout if self.end is not None else math.inf
        self.series = Series(self.stats, self.t0)
        K = cfg.effective_concurrency()
        async with trio.open_nursery() as outer:
            outer.start_soon(self._sampler)
            with trio.move_on_at(_trio_time(hard)) as self._scope:
                outer.start_soon(self._watchdog)
                if self.end is not None and not self.open_loop:
                    outer.start_soon(self._stop_at, self.end)
                async with trio.open_nursery() as workers:
                    for s in self.streams:
                        for _ in range(K):
                            workers.start_soon(self._worker, s)
                self.stop()
                self.sending_done = clock()
                with trio.move_on_after(cfg.drain_timeout):
                    await self.tracker.wait_empty()
            if self._scope.cancelled_caught:
                self.gave_up = True
            outer.cancel_scope.cancel()
        self.stop()
        if self.sending_done is None:
            self.sending_done = clock()
        self.lost = self.tracker.lose_all()
        self.series.sample(clock(), "drain")

    async def _stop_at(self, t: float) -> None:
        await trio.sleep_until(_trio_time(t))
        self.stop()

    async def _watchdog(self) -> None:
        """Give up when nothing at all happens for drain_timeout seconds."""
        s = self.stats
        last = None
        since = clock()
        while True:
            await trio.sleep(min(1.0, self.cfg.drain_timeout / 4))
            now_state = (s.sent_total, s.received_total, s.errors_total)
            if now_state != last:
                last, since = now_state, clock()
            elif clock() - since >= self.cfg.drain_timeout and len(self.tracker):
                # Deliveries are outstanding and nothing moved: the server is stuck.
                self.progress.message(f"no progress for {self.cfg.drain_timeout:g} s: giving up")
                self._scope.cancel()
                return

    def phase(self, now: float) -> str:
        if self.sending_done is not None:
            return "drain"
        if self.measure_start is None or now < self.measure_start:
            return "warmup"
        return "measure"

    async def _sampler(self) -> None:
        assert self.series is not None
        next_t = self.t0 + INTERVAL
        while True:
            await trio.sleep_until(_trio_time(next_t))
            now = clock()
            row = self.series.sample(now, self.phase(now))
            self.progress.update(self.progress_line(row))
            next_t += INTERVAL

    def progress_line(self, row: dict) -> str:
        s = self.stats
        self.phases.name = row["phase"]
        p50 = "-" if row["p50_ms"] is None else f"{row['p50_ms']:.2f}"
        p99 = "-" if row["p99_ms"] is None else f"{row['p99_ms']:.2f}"
        return (
            f"{self.phases.prefix()} sent {s.sent_total} rcvd {s.received_total} err {s.errors_total} | "
            f"{row['per_second']:.0f} {self.unit}/s {row['mb_per_second']:.2f} MB/s | "
            f"p50 {p50} p99 {p99} ms | in flight {len(self.tracker)}"
        )


def _trio_time(t: float) -> float:
    """A perf_counter time as trio's clock time."""
    if math.isinf(t):
        return t
    return trio.current_time() + (t - clock())
