"""The generator's own CPU use, so that a saturated generator is visible in the report.

One generator process runs one trio event loop: it cannot use much more than one core, so
the figure is a percentage of one core, and at SATURATED_PERCENT or more the generator
itself may be what limits the run (use --workers)."""

from __future__ import annotations

import time

SATURATED_PERCENT = 90.0


def usage(cpu_seconds: float, wall_seconds: float, processes: int = 1) -> dict:
    """The report's ``generator`` figures: CPU seconds over a wall-clock span, as a
    percentage of one core per process."""
    per_process = 100 * cpu_seconds / wall_seconds / processes if wall_seconds > 0 else 0.0
    return {
        "processes": processes,
        "cpu_seconds": round(cpu_seconds, 3),
        "wall_seconds": round(wall_seconds, 3),
        "cpu_percent": round(per_process, 1),
        "saturated": per_process >= SATURATED_PERCENT,
    }


class CpuMeter:
    """This process's CPU time (user + system, every thread) over a span."""

    def __init__(self) -> None:
        self.cpu0 = time.process_time()
        self.wall0 = time.perf_counter()
        self.result: dict | None = None

    def stop(self) -> dict:
        if self.result is None:
            self.result = usage(time.process_time() - self.cpu0, time.perf_counter() - self.wall0)
        return self.result
