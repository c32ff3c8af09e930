"""Latency histograms: HdrHistogram in microseconds (1 µs .. 1 h, 3 significant digits),
summarised in milliseconds."""

from __future__ import annotations

import math

from hdrh.histogram import HdrHistogram

LOWEST_US = 1
HIGHEST_US = 3_600_000_000
SIGNIFICANT_DIGITS = 3
PERCENTILES = {"p50": 50.0, "p90": 90.0, "p99": 99.0, "p99_9": 99.9}


class Latency:
    """Seconds in, milliseconds out. Values beyond an hour are clamped to it (the
    histogram's range), below a microsecond to one microsecond."""

    __slots__ = ("hist",)

    def __init__(self) -> None:
        self.hist = HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_DIGITS)

    def record(self, seconds: float) -> None:
        us = int(seconds * 1e6)
        self.hist.record_value(LOWEST_US if us < LOWEST_US else HIGHEST_US if us > HIGHEST_US else us)

    @property
    def count(self) -> int:
        return self.hist.get_total_count()

    def reset(self) -> None:
        self.hist.reset()

    def add(self, other: "Latency") -> None:
        self.hist.add(other.hist)

    def percentile_ms(self, p: float) -> float | None:
        if not self.count:
            return None
        return self.hist.get_value_at_percentile(p) / 1000.0

    def max_ms(self) -> float | None:
        return self.hist.get_max_value() / 1000.0 if self.count else None

    def summary(self) -> dict:
        """``count, min, mean, stddev, p50, p90, p99, p99_9, max`` in ms (None if empty).

        One pass over the non-empty buckets: hdrh's own mean/stddev walk its iterators in
        pure Python and take tens of ms per histogram. Values are those hdrh gives:
        percentiles are the highest value equivalent to the bucket reached, mean and
        stddev use each bucket's median equivalent value."""
        h = self.hist
        n = self.count
        out: dict = {"count": n}
        if not n:
            out.update(dict.fromkeys(["min", "mean", "stddev", *PERCENTILES, "max"]))
            return out
        buckets = [(i, c) for i, c in enumerate(h.counts[: h.counts_len]) if c]
        targets = sorted((h.get_target_count_at_percentile(p), name) for name, p in PERCENTILES.items())
        values: dict[str, float] = {}
        total = 0
        weighted = 0.0
        medians = []
        t = 0
        for i, c in buckets:
            v = h.get_value_from_index(i)
            lo, hi = h.get_lowest_equivalent_value(v), h.get_highest_equivalent_value(v)
            mid = lo + (hi - lo + 1) // 2
            medians.append((mid, c))
            weighted += mid * c
            total += c
            while t < len(targets) and total >= targets[t][0]:
                values[targets[t][1]] = hi
                t += 1
        mean = weighted / total
        var = sum((m - mean) ** 2 * c for m, c in medians) / total
        out["min"] = h.get_min_value() / 1000.0
        out["mean"] = round(mean / 1000.0, 3)
        out["stddev"] = round(math.sqrt(var) / 1000.0, 3)
        for name in PERCENTILES:
            out[name] = values[name] / 1000.0
        out["max"] = h.get_max_value() / 1000.0
        return out
