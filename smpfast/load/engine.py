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

``--stages``: the open loop follows the stage schedule exactly in counts (stages.py);
the closed loop's slots follow the stages' concurrency, updated every STAGE_TICK seconds.

A lost connection (abort) ends the run at once: sending stops, the drain is skipped and
what is in flight counts as lost. Ctrl-C (interrupt) stops sending and drains briefly
(control.py); what is still in flight then counts as interrupted, and open-loop sends
that were not due yet are not counted at all.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import trio

from ..client import SMPClient
from .config import LoadConfig, spread
from .control import INTERRUPT_DRAIN, Control
from .cpu import CpuMeter
from .progress import INTERVAL, Phases, Progress
from .queues import QueueRef
from .stats import Series, Stats
from .tracker import INTERRUPTED, LOST, Tracker

UNSENT = "unsent"
STAGE_TICK = 0.05  # how often a closed loop's concurrency follows its stages

clock = time.perf_counter


def ns(t: float) -> int:
    return int(t * 1e9)


class Slots:
    """A closed loop's in-flight limit for one stream; ``close()`` wakes every waiter
    with False (the run stops sending). ``set_limit`` moves the limit (stages)."""

    def __init__(self, n: int) -> None:
        self.limit = n
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

    def set_limit(self, n: int) -> None:
        self.free += n - self.limit
        self.limit = n
        if self.free > 0:
            self._lot.unpark(count=self.free)

    def close(self) -> None:
        self.closed = True
        self._lot.unpark_all()


@dataclass(slots=True)
class Claim:
    seq: int
    intended: float
    warm: bool
    stage: int = -1


class Stream:
    """One sender: its connection, its destination queues, its sequence numbers, its
    closed-loop slots and (open loop) its schedule."""

    def __init__(self, index: int, client: SMPClient, queues: list[QueueRef], slots: int) -> None:
        self.index = index
        self.position = index  # place in the engine's stream list (the engine sets it)
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
                 unit: str = "msg", control: Control | None = None) -> None:
        self.cfg = cfg
        self.stats = stats
        self.tracker = tracker
        self.streams = streams
        self.send = send
        self.per_send = deliveries_per_send
        self.phases = phases
        self.progress = progress
        self.unit = unit
        self.control = control or Control()
        for i, stream in enumerate(streams):
            stream.position = i
        self.open_loop = cfg.open_loop
        self.schedule = cfg.schedule
        self.claimed = 0
        self.stopped = False
        self.t0 = 0.0
        self.measure_start: float | None = None
        self.end: float | None = None
        self.sending_done: float | None = None
        self.series: Series | None = None
        self.lost = 0
        self.unsent = 0
        self.unfinished = 0  # in flight when an interrupted run ended
        self.gave_up = False
        self.abort_reason: str | None = None  # set when a lost connection ended the run
        self.interrupted = False
        self.cpu: dict | None = None
        self._scope: trio.CancelScope | None = None
        self._workers: trio.Nursery | None = None
        self._drain: trio.CancelScope | None = None
        self._drain_seconds = cfg.drain_timeout

    # ---------------------------------------------------------------- claims

    def _setup_schedule(self) -> None:
        cfg = self.cfg
        S = len(self.streams)
        w = cfg.warmup
        for i, s in enumerate(self.streams):
            if self.open_loop and self.schedule is None:
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
        stage = -1
        if self.open_loop and self.schedule is not None:
            due = self.schedule.time_of(seq * len(self.streams) + s.position)
            if due is None:
                return None
            intended, stage = self.t0 + due[0], due[1]
            warm = False
        elif self.open_loop:
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
            if self.schedule is not None:
                stage = self.schedule.stage_at(intended - self.t0)
        s.next_seq = seq + 1
        self.claimed += 1
        if not warm and (self.measure_start is None or intended < self.measure_start):
            self.measure_start = intended
        return Claim(seq, intended, warm, stage)

    def stop(self) -> None:
        """No new sends: wake every closed-loop worker waiting for a slot."""
        if not self.stopped:
            self.stopped = True
            for s in self.streams:
                s.slots.close()

    def abort(self, reason: str) -> None:
        """A connection the run needs is gone: end the run now (the rest is lost)."""
        if self.abort_reason is None and not self.interrupted:
            self.abort_reason = reason
            self.progress.message(f"{reason}: ending the run")
        self.stop()
        if self._scope is not None:
            self._scope.cancel()

    def interrupt(self, count: int) -> None:
        """Ctrl-C: stop sending and drain briefly; a second one ends the drain too."""
        if count == 1:
            self.progress.message(f"interrupted: stopping (draining up to {INTERRUPT_DRAIN:g} s; "
                                  "interrupt again to stop at once)")
        self.interrupted = True
        self.stop()
        if self._workers is not None:
            self._workers.cancel_scope.cancel()
        self._drain_seconds = min(self._drain_seconds, INTERRUPT_DRAIN)
        if self._drain is not None:
            self._drain.deadline = min(self._drain.deadline, trio.current_time() + INTERRUPT_DRAIN)
        if count >= 2 and self._scope is not None:
            self._scope.cancel()

    @property
    def ended_early(self) -> bool:
        """Sending stopped before the planned end (a lost connection, no progress, a
        stream whose connection closed, an interrupt)."""
        return (self.abort_reason is not None or self.gave_up or self.interrupted
                or any(s.dead for s in self.streams))

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
            if not closed:
                try:
                    delay = c.intended - clock()
                    if delay > 0:
                        await trio.sleep(delay)
                except trio.Cancelled:
                    # Due and still not sent: unsent. Not due yet (the run was interrupted
                    # or ended early): never offered, so not counted.
                    if not self.interrupted and c.intended <= clock():
                        for _ in range(n):
                            stats.sent(c.warm, c.intended, c.stage)
                        self.unsent += n
                        stats.failed(c.warm, None, UNSENT, n, c.stage)
                    raise
            for _ in range(n):
                stats.sent(c.warm, c.intended, c.stage)
            if not await self.send(s, c):
                s.dead = True
                self.abort("sender connection closed")
                return

    async def _follow_stages(self) -> None:
        """Closed loop with --stages: every stream's slots follow the target concurrency."""
        assert self.schedule is not None
        S = len(self.streams)
        while True:
            t = clock() - self.t0
            if t >= self.schedule.duration:
                self.stop()
                return
            total = round(self.schedule.target_at(t))
            for s, n in zip(self.streams, spread(total, S)):
                s.slots.set_limit(n)
            await trio.sleep(STAGE_TICK)

    # ---------------------------------------------------------------- the run

    async def run(self) -> None:
        self.control.attach(self)
        try:
            await self._run()
        finally:
            self.control.attach(None)

    async def _run(self) -> None:
        cfg = self.cfg
        self.phases.enter("warmup" if cfg.warmup.enabled else ("stage" if self.schedule else "measure"))
        meter = CpuMeter()
        self.t0 = clock()
        self._setup_schedule()
        w = cfg.warmup
        if w.seconds:
            self.measure_start = self.t0 + w.seconds
        planned = cfg.planned_seconds()
        if planned is not None:
            self.end = self.t0 + (w.seconds or 0) + planned
        self.series = Series(self.stats, self.t0)
        K = cfg.effective_concurrency()
        if self.schedule is not None and not self.open_loop:
            for s in self.streams:
                s.slots.set_limit(0)
        async with trio.open_nursery() as outer:
            outer.start_soon(self._sampler)
            hard = self.end + cfg.drain_timeout if self.end is not None else math.inf
            with trio.CancelScope(deadline=_trio_time(hard)) as self._scope:
                if self.abort_reason is not None:  # a connection closed before the start
                    self._scope.cancel()
                outer.start_soon(self._watchdog)
                if self.schedule is not None and not self.open_loop:
                    outer.start_soon(self._follow_stages)
                elif self.end is not None and not self.open_loop:
                    outer.start_soon(self._stop_at, self.end)
                async with trio.open_nursery() as workers:
                    self._workers = workers
                    if self.interrupted:
                        workers.cancel_scope.cancel()
                    for s in self.streams:
                        for _ in range(K):
                            workers.start_soon(self._worker, s)
                self.stop()
                self.sending_done = clock()
                with trio.CancelScope(deadline=trio.current_time() + self._drain_seconds) as self._drain:
                    await self.tracker.wait_empty()
            if self._scope.cancelled_caught and self.abort_reason is None and not self.interrupted:
                self.gave_up = True
            outer.cancel_scope.cancel()
        self.stop()
        if self.sending_done is None:
            self.sending_done = clock()
        if self.interrupted:
            self.unfinished = self.tracker.lose_all(INTERRUPTED)
        else:
            self.lost = self.tracker.lose_all(LOST)
        self.cpu = meter.stop()
        now = clock()
        self.series.sample(now, "drain", *self._stage_info(now))

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
                assert self._scope is not None
                self._scope.cancel()
                return

    def phase(self, now: float) -> str:
        if self.sending_done is not None or self.stopped:
            return "drain"
        if self.schedule is not None:
            return "stage"
        if self.measure_start is None or now < self.measure_start:
            return "warmup"
        return "measure"

    def _stage_info(self, now: float) -> tuple[int | None, float | None]:
        if self.schedule is None:
            return None, None
        t = now - self.t0
        return self.schedule.stage_at(t), (self.schedule.target_at(t) if t < self.schedule.duration else 0.0)

    async def _sampler(self) -> None:
        assert self.series is not None
        next_t = self.t0 + INTERVAL
        while True:
            await trio.sleep_until(_trio_time(next_t))
            now = clock()
            row = self.series.sample(now, self.phase(now), *self._stage_info(now))
            self.progress.update(self.progress_line(row))
            s = self.stats
            self.control.tick(row, {"sent": s.sent_total, "received": s.received_total,
                                    "errors": s.errors_total, "in_flight": len(self.tracker)})
            next_t += INTERVAL

    def progress_line(self, row: dict) -> str:
        s = self.stats
        self.phases.name = row["phase"]
        p50 = "-" if row["p50_ms"] is None else f"{row['p50_ms']:.2f}"
        p99 = "-" if row["p99_ms"] is None else f"{row['p99_ms']:.2f}"
        stage = ""
        if row["stage"] is not None:
            what = "/s" if self.open_loop else " in flight"
            stage = f"stage {row['stage'] + 1}/{len(self.schedule)} target {row['target']:.0f}{what} | "  # type: ignore[arg-type]
        return (
            f"{self.phases.prefix()} {stage}sent {s.sent_total} rcvd {s.received_total} err {s.errors_total} | "
            f"{row['per_second']:.0f} {self.unit}/s {row['mb_per_second']:.2f} MB/s | "
            f"p50 {p50} p99 {p99} ms | in flight {len(self.tracker)} | cpu {row['cpu_percent']:.0f}%"
        )

    def details(self) -> dict:
        """The engine's part of the scenario's figures in the report."""
        return {"lost": self.lost, "unsent": self.unsent, "unfinished": self.unfinished,
                "gave_up": self.gave_up, "interrupted": self.interrupted, "ended_early": self.ended_early, "abort_reason": self.abort_reason,
                "connections_lost": self.stats.connections_lost,
                "planned_seconds": self.cfg.planned_seconds(),
                "sending_seconds": round((self.sending_done or self.t0) - self.t0, 6)}


def _trio_time(t: float) -> float:
    """A perf_counter time as trio's clock time."""
    if math.isinf(t):
        return t
    return trio.current_time() + (t - clock())
