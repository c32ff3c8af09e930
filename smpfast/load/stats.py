"""Counting: every message the generator commits to send ends as exactly one of
received or failed (with an error type), so ``sent = received + errors`` for the measured
messages and, separately, for the warm-up ones. Errors that belong to no message (an
unexpected event, a lost connection) are counted apart as ``other_errors``.

Also the latency histograms (measured messages only) and the per-second series."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field

from .histogram import Latency


@dataclass(slots=True)
class Phase:
    sent: int = 0
    received: int = 0
    errors: int = 0
    errors_by_type: Counter = field(default_factory=Counter)

    def to_json(self) -> dict:
        return {"sent": self.sent, "received": self.received, "errors": self.errors}


@dataclass(slots=True)
class StageCounts:
    """One ``--stages`` stage: its sends (by intended time in an open loop, by send time in
    a closed one), how they ended, their primary latency, the most sends in flight."""

    sent: int = 0
    received: int = 0
    errors: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    latency: Latency = field(default_factory=Latency)

    def to_json(self) -> dict:
        return {"sent": self.sent, "received": self.received, "errors": self.errors,
                "max_in_flight": self.max_in_flight, "latency_ms": self.latency.summary(),
                "histogram_us": self.latency.encode()}


# Errors that mean the data is wrong, not merely late: a run with any fails.
INTEGRITY_ERRORS = ("corrupt body", "message on the wrong queue", "duplicate or unexpected message",
                    "MSG decryption failed", "MSG for an unknown queue")


class Stats:
    """``latencies``: named histograms; the first name is the primary latency (the one
    ``--max-p99`` checks and the series reports)."""

    def __init__(self, latency_names: tuple[str, ...], body_size: int = 0, stages: int = 0) -> None:
        self.measured = Phase()
        self.stages = [StageCounts() for _ in range(stages)]
        self.connections_lost = 0  # connections that closed while the run needed them
        self.integrity_errors = 0  # other errors of the INTEGRITY_ERRORS kinds
        self.warmup = Phase()
        self.other_errors: Counter = Counter()
        self.latencies = {name: Latency() for name in latency_names}
        self.primary = self.latencies[latency_names[0]]
        self.interval = Latency()  # primary latency of every message (warm-up too) this second
        self.body_size = body_size
        self.first_measured: float | None = None  # when the first measured message was sent
        self.last_measured: float | None = None  # when the last measured one completed
        # totals over both phases, for the series and the progress line
        self.sent_total = 0
        self.received_total = 0
        self.errors_total = 0  # message failures and other errors

    # ---------------------------------------------------------------- messages

    def phase(self, warm: bool) -> Phase:
        return self.warmup if warm else self.measured

    def sent(self, warm: bool, now: float, stage: int = -1) -> None:
        self.sent_total += 1
        if stage >= 0:
            st = self.stages[stage]
            st.sent += 1
            st.in_flight += 1
            if st.in_flight > st.max_in_flight:
                st.max_in_flight = st.in_flight
        if warm:
            self.warmup.sent += 1
        else:
            self.measured.sent += 1
            if self.first_measured is None or now < self.first_measured:
                self.first_measured = now

    def received(self, warm: bool, now: float, latency: float, stage: int = -1, **others: float) -> None:
        """One message delivered and checked: ``latency`` (seconds) goes to the primary
        histogram, ``others`` to the histograms of those names."""
        self.received_total += 1
        self.interval.record(latency)
        if stage >= 0:
            st = self.stages[stage]
            st.received += 1
            st.in_flight -= 1
            st.latency.record(latency)
        if warm:
            self.warmup.received += 1
            return
        self.measured.received += 1
        self.primary.record(latency)
        for name, value in others.items():
            self.latencies[name].record(value)
        self._measured_done(now)

    def received_many(self, n: int, now: float, latency: float) -> None:
        """``n`` measured operations completed together (a batch): one latency sample."""
        self.received_total += n
        self.measured.received += n
        self.interval.record(latency)
        self.primary.record(latency)
        self._measured_done(now)

    def failed(self, warm: bool, now: float | None, kind: str, count: int = 1, stage: int = -1) -> None:
        """``count`` messages ended with the error ``kind`` (never delivered, or
        delivered but wrong). ``now`` None: the failure was only noticed at the end (lost,
        unsent), so it does not stretch the measured window."""
        self.errors_total += count
        if stage >= 0:
            self.stages[stage].errors += count
            self.stages[stage].in_flight -= count
        if kind.startswith(INTEGRITY_ERRORS):
            self.integrity_errors += count
        ph = self.phase(warm)
        ph.errors += count
        ph.errors_by_type[kind] += count
        if not warm and now is not None:
            self._measured_done(now)

    def record(self, name: str, seconds: float, warm: bool = False) -> None:
        """A latency that is not a message's delivery (SEND → OK, a complete fanout)."""
        if not warm:
            self.latencies[name].record(seconds)

    def other(self, kind: str, count: int = 1) -> None:
        self.other_errors[kind] += count
        self.errors_total += count
        if kind.startswith(INTEGRITY_ERRORS):
            self.integrity_errors += count

    def connection_lost(self, kind: str) -> None:
        """A connection the run needed closed (an error of its own, counted once)."""
        self.connections_lost += 1
        self.other(kind)

    def _measured_done(self, now: float) -> None:
        if self.last_measured is None or now > self.last_measured:
            self.last_measured = now

    # ---------------------------------------------------------------- results

    @property
    def errors(self) -> int:
        """Measured message errors plus other errors (what --max-errors checks)."""
        return self.measured.errors + sum(self.other_errors.values())

    def elapsed(self, start: float | None = None) -> float:
        """The measured window: from ``start`` (default: the first measured send) to the
        last measured completion."""
        begin = self.first_measured if start is None else start
        if begin is None or self.last_measured is None:
            return 0.0
        return max(self.last_measured - begin, 1e-9)

    def errors_by_type(self) -> dict[str, int]:
        out = Counter(self.measured.errors_by_type)
        out.update(self.other_errors)
        return dict(sorted(out.items()))


class Series:
    """One row per second: deltas of the totals and the interval histogram, the stage and
    its target (with --stages), and the generator's CPU use over the second."""

    def __init__(self, stats: Stats, start: float) -> None:
        self.stats = stats
        self.start = start
        self.rows: list[dict] = []
        self._last = (0, 0, 0)
        self._last_time = start
        self._last_cpu = time.process_time()

    def sample(self, now: float, phase: str, stage: int | None = None, target: float | None = None) -> dict:
        s = self.stats
        totals = (s.sent_total, s.received_total, s.errors_total)
        sent, received, errors = (a - b for a, b in zip(totals, self._last))
        dt = max(now - self._last_time, 1e-9)
        cpu = time.process_time()
        row = {
            "t": round(now - self.start, 3),
            "phase": phase,
            "sent": sent,
            "received": received,
            "errors": errors,
            "per_second": round(received / dt, 1),
            "mb_per_second": round(received * s.body_size / dt / 1e6, 3),
            "p50_ms": s.interval.percentile_ms(50),
            "p99_ms": s.interval.percentile_ms(99),
            "max_ms": s.interval.max_ms(),
            "stage": stage,
            "target": None if target is None else round(target, 3),
            "cpu_percent": round(100 * (cpu - self._last_cpu) / dt, 1),
        }
        self._last_cpu = cpu
        s.interval.reset()
        self._last = totals
        self._last_time = now
        self.rows.append(row)
        return row
