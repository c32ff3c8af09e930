"""CI thresholds: each given limit is checked against the run's results; any breach
makes the exit code 2."""

from __future__ import annotations

from .config import Thresholds


def check(limits: Thresholds, results: dict) -> list[dict]:
    """``results``: the report's ``results`` section. One entry per given limit:
    ``{name, limit, value, passed}``. An undefined value (no latency sample, nothing
    measured) does not pass."""
    out = []
    if limits.max_p99_ms is not None:
        p99 = results["latency_ms"]["p99"]
        out.append(_entry("max_p99_ms", limits.max_p99_ms, p99, p99 is not None and p99 <= limits.max_p99_ms))
    if limits.min_throughput is not None:
        tput = results["throughput"]["per_second"]
        out.append(_entry("min_throughput", limits.min_throughput, tput, tput >= limits.min_throughput))
    if limits.max_errors is not None:
        errors = results["counts"]["errors"] + results["other_errors"]
        out.append(_entry("max_errors", limits.max_errors, errors, errors <= limits.max_errors))
    return out


def _entry(name: str, limit: float, value: float | None, passed: bool) -> dict:
    return {"name": name, "limit": limit, "value": value, "passed": bool(passed)}
