"""``--stages 10s:100,30s:1000,10s:0``: a target that moves linearly over time, as k6's
stages. Each stage ramps from the previous stage's target (0 before the first) to its own
over its duration. The target is a rate (open loop: messages per second in total) or a
concurrency (closed loop: sends in flight in total).

Open loop: the schedule is exact in counts. Message k (0-based, over all the senders of
one generator) is sent at the time t where the integral of the rate from 0 to t reaches
k, so a stage holds the messages k with ``planned_before <= k < planned_until`` — e.g.
``10s:100`` (a ramp from 0 to 100/s) plans 500 messages.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

_STAGE = re.compile(r"^\s*([^:]+?)\s*:\s*([0-9]*\.?[0-9]+)\s*$")


@dataclass(frozen=True, slots=True)
class Stage:
    seconds: float
    target: float

    def to_json(self) -> dict:
        return {"seconds": self.seconds, "target": self.target}


def parse_stages(text: str) -> tuple[Stage, ...]:
    """``10s:100,30s:1000,10s:0`` → stages; durations as ``--duration`` (20, 20s, 500ms, 2m)."""
    from .config import parse_seconds  # config imports this module's Stage

    stages = []
    for part in text.split(","):
        m = _STAGE.match(part)
        if not m:
            raise ValueError(f"not a stage: {part.strip()!r} (DURATION:TARGET, e.g. 30s:1000)")
        seconds = parse_seconds(m.group(1))
        if seconds <= 0:
            raise ValueError(f"a stage's duration must be positive: {part.strip()!r}")
        stages.append(Stage(seconds, float(m.group(2))))
    if not stages:
        raise ValueError("no stages")
    return tuple(stages)


def format_stages(stages: tuple[Stage, ...]) -> str:
    return ",".join(f"{s.seconds:g}s:{s.target:g}" for s in stages)


class Schedule:
    """The piecewise-linear target of a stage list, with its integral and its inverse."""

    def __init__(self, stages: tuple[Stage, ...]) -> None:
        if not stages:
            raise ValueError("no stages")
        self.stages = stages
        self.starts: list[float] = []  # each stage's start time
        self.froms: list[float] = []  # each stage's starting target
        self.planned_before: list[float] = []  # integral of the target up to each stage's start
        t = 0.0
        level = 0.0
        area = 0.0
        for s in stages:
            self.starts.append(t)
            self.froms.append(level)
            self.planned_before.append(area)
            area += (level + s.target) / 2 * s.seconds
            t += s.seconds
            level = s.target
        self.duration = t
        self.total = area  # integral over all stages

    def __len__(self) -> int:
        return len(self.stages)

    def stage_at(self, t: float) -> int:
        """The stage running at ``t`` seconds from the start (the last one after the end)."""
        for j in range(len(self.stages) - 1, -1, -1):
            if t >= self.starts[j]:
                return j
        return 0

    def target_at(self, t: float) -> float:
        j = self.stage_at(t)
        s = self.stages[j]
        frac = min(max((t - self.starts[j]) / s.seconds, 0.0), 1.0)
        return self.froms[j] + (s.target - self.froms[j]) * frac

    def planned(self, j: int) -> int:
        """How many messages stage ``j`` holds (open loop)."""
        return self.count_before(self.planned_before[j] + self._area(j)) - self.count_before(self.planned_before[j])

    def _area(self, j: int) -> float:
        return (self.froms[j] + self.stages[j].target) / 2 * self.stages[j].seconds

    @staticmethod
    def count_before(area: float) -> int:
        """Messages k with k < area (k = 0, 1, ...)."""
        return max(math.ceil(area - 1e-9), 0)

    @property
    def messages(self) -> int:
        """Messages in the whole schedule (open loop)."""
        return self.count_before(self.total)

    def time_of(self, k: int) -> tuple[float, int] | None:
        """When message ``k`` is due (seconds from the start) and its stage; None when the
        schedule holds fewer than k + 1 messages."""
        if k >= self.messages:
            return None
        for j in range(len(self.stages)):
            end = self.planned_before[j] + self._area(j)
            if k < end - 1e-9:
                break
        else:
            return None
        a, b = self.froms[j], self.stages[j].target
        d = self.stages[j].seconds
        m = k - self.planned_before[j]
        if m <= 0:
            return self.starts[j], j
        # Solve a·τ + (b − a)·τ²/(2d) = m for τ in [0, d], in the form that stays exact
        # when a = b and when a = 0.
        disc = a * a + 2 * (b - a) * m / d
        tau = 2 * m / (a + math.sqrt(max(disc, 0.0)))
        return self.starts[j] + min(tau, d), j

    def to_json(self, unit: str) -> list[dict]:
        out = []
        for j, s in enumerate(self.stages):
            entry = {"index": j, "start_seconds": round(self.starts[j], 6), "seconds": s.seconds,
                     "from_target": self.froms[j], "to_target": s.target, "unit": unit}
            out.append(entry)
        return out
