"""Latency histograms: HdrHistogram in microseconds (1 µs .. 1 h, 3 significant digits),
summarised in milliseconds.

``encode``/``decode`` use HdrHistogram's own compressed V2 encoding (base64 text, as
HistogramLogWriter writes), so a report's histograms can be merged by any HdrHistogram
implementation; ``spectrum``/``hgrm`` give the full percentile distribution in the
``.hgrm`` text format of HdrHistogram's outputPercentileDistribution (values in ms), which
HdrHistogram's plotter and wrk2's ``--latency`` output share."""

from __future__ import annotations

import math
from typing import TextIO

from hdrh.histogram import HdrHistogram
from hdrh.iterators import PercentileIterator

LOWEST_US = 1
HIGHEST_US = 3_600_000_000
SIGNIFICANT_DIGITS = 3
PERCENTILES = {"p50": 50.0, "p90": 90.0, "p99": 99.0, "p99_9": 99.9}
TICKS_PER_HALF_DISTANCE = 5  # the spectrum's resolution, as HdrHistogram's default
MS = 1000.0  # histogram units (µs) per reported unit (ms)


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
        if other.count:  # hdrh would take an empty histogram's min (0) as a value
            self.hist.add(other.hist)

    def encode(self) -> str:
        """The compressed HdrHistogram V2 encoding, base64 ("HISTF...")."""
        return self.hist.encode().decode("ascii")

    @classmethod
    def decode(cls, text: str) -> "Latency":
        """Raises ValueError for text that is not an encoded histogram of this range."""
        try:
            hist = HdrHistogram.decode(text.encode("ascii"))
        except Exception as e:  # hdrh raises assorted types for bad input
            raise ValueError(f"not an encoded HdrHistogram: {e}") from None
        out = cls()
        if hist.get_total_count():
            if hist.get_max_value() > out.hist.get_highest_equivalent_value(HIGHEST_US):
                raise ValueError("histogram values beyond the range of 1 µs .. 1 h")
            out.hist.add(hist)
        return out

    def same_counts(self, other: "Latency") -> bool:
        """Whether both histograms hold the same count in every bucket."""
        a, b = self.hist, other.hist
        n = max(a.counts_len, b.counts_len)
        return (a.get_total_count() == b.get_total_count()
                and all(a.get_count_at_index(i) == b.get_count_at_index(i) for i in range(n)))

    def spectrum(self) -> list[dict]:
        """The percentile distribution: ``{value_ms, percentile, count}`` rows, from 0 %
        towards 100 % in steps that halve the remaining distance every
        TICKS_PER_HALF_DISTANCE rows (percentile as a fraction, as .hgrm files)."""
        if not self.count:
            return []
        rows = []
        for it in PercentileIterator(self.hist, TICKS_PER_HALF_DISTANCE):
            rows.append({
                "value_ms": it.value_iterated_to / MS,
                "percentile": round(it.percentile_level_iterated_to / 100.0, 12),
                "count": it.total_count_to_this_value,
            })
        return rows

    def write_hgrm(self, out: TextIO) -> None:
        """The spectrum as an ``.hgrm`` file (HdrHistogram's percentile output, ms)."""
        out.write(f"{'Value':>12} {'Percentile':>14} {'TotalCount':>10} {'1/(1-Percentile)':>14}\n\n")
        for r in self.spectrum():
            p = r["percentile"]
            tail = f" {1 / (1 - p):14.2f}" if p < 1 else ""
            out.write(f"{r['value_ms']:12.3f} {p:14.12f} {r['count']:10d}{tail}\n")
        s = self.summary()
        mean = s["mean"] or 0.0
        std = s["stddev"] or 0.0
        mx = s["max"] or 0.0
        out.write(f"#[Mean    = {mean:12.3f}, StdDeviation   = {std:12.3f}]\n")
        out.write(f"#[Max     = {mx:12.3f}, Total count    = {self.count:12d}]\n")
        out.write(f"#[Buckets = {self.hist.bucket_count:12d}, SubBuckets     = {self.hist.sub_bucket_count:12d}]\n")

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
