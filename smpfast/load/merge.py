"""Merging load reports: the worker processes of one run (--workers), or several runs
(``smpfast load merge A.json B.json``).

Histograms merge exactly (HdrHistogram addition of the encoded histograms: the merged
histogram is the one all the samples would have made), so the merged percentiles are true
percentiles, not averages of percentiles. Counts, errors and traffic add up.

Throughput depends on whether the runs happened at the same time: ``concurrent`` (the
workers of a run, or generators on several machines started together: their wall-clock
spans overlap) adds the rates and takes the longest elapsed time; ``sequential`` divides
all the messages by the sum of the elapsed times. ``auto`` (default) decides from the
reports' started_at/finished_at. Thresholds, failures and the exit code are decided again
on the merged results, with the first report's options (--max-p99 ..., --allow-errors).
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime

from . import cpu, report, thresholds
from .config import LoadConfig, Thresholds
from .histogram import Latency

MODES = ("auto", "concurrent", "sequential")

# scenario figures that do not add up across reports
_FIRST = {"queues_per_pair", "group", "batch", "abort_reason"}
_LONGEST = {"planned_seconds", "connect_seconds", "subscribe_seconds", "storm_seconds"}


class MergeError(ValueError):
    """Reports that cannot be merged (exit code 1)."""


def read_report(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except OSError as e:
        raise MergeError(f"cannot read {path}: {e.strerror or e}") from None
    except json.JSONDecodeError as e:
        raise MergeError(f"{path} is not JSON: {e}") from None
    if not isinstance(doc, dict) or doc.get("tool") != "smpfast load":
        raise MergeError(f"{path} is not an smpfast load report")
    if doc.get("schema_version") != report.SCHEMA_VERSION:
        raise MergeError(f"{path} has schema_version {doc.get('schema_version')}; this smpfast merges "
                         f"version {report.SCHEMA_VERSION} (the reports must come from the same smpfast release)")
    if doc.get("results") is None:
        raise MergeError(f"{path} has no results (the run was interrupted before its traffic began)")
    return doc


def _time(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def _overlap(reports: list[dict]) -> bool:
    start = max(_time(r["started_at"]) for r in reports)
    end = min(_time(r["finished_at"]) for r in reports)
    return start < end


def _sum_counters(dicts: list[dict]) -> dict:
    out: Counter = Counter()
    for d in dicts:
        out.update(d)
    return dict(sorted(out.items()))


def _sum_fields(dicts: list[dict]) -> dict:
    out = dict.fromkeys(dicts[0], 0)
    for d in dicts:
        for k, v in d.items():
            out[k] = out.get(k, 0) + v
    return out


def _merge_latencies(encoded: list[str]) -> Latency:
    total = Latency()
    for text in encoded:
        total.add(Latency.decode(text))
    return total


def _scenario(details: list[dict], concurrent: bool) -> dict:
    out: dict = {}
    for key in details[0]:
        values = [d.get(key) for d in details]
        present = [v for v in values if v is not None]
        if not present:
            out[key] = None
        elif key in _FIRST or isinstance(present[0], str):
            out[key] = present[0]
        elif isinstance(present[0], bool):
            out[key] = any(present)
        elif key in _LONGEST:
            out[key] = max(present) if concurrent else sum(present)
        elif key == "sending_seconds":
            out[key] = min(present) if concurrent else sum(present)
        elif key.endswith("_per_second") and not concurrent:
            out[key] = None  # recomputing needs the elapsed times per figure
        else:
            out[key] = round(sum(present), 6) if isinstance(present[0], float) else sum(present)
    return out


def _stages(all_stages: list[list[dict] | None], concurrent: bool) -> list[dict] | None:
    if any(s is None for s in all_stages):
        return None
    first = all_stages[0]
    if any(len(s) != len(first) for s in all_stages):  # type: ignore[arg-type]
        raise MergeError("the reports have different --stages")
    out = []
    for j, entry in enumerate(first):  # type: ignore[union-attr]
        parts = [s[j] for s in all_stages]  # type: ignore[index]
        hist = _merge_latencies([p["histogram_us"] for p in parts])
        merged = dict(entry)
        for k in ("sent", "received", "errors"):
            merged[k] = sum(p[k] for p in parts)
        merged["planned"] = None if entry["planned"] is None else sum(p["planned"] for p in parts)
        merged["max_in_flight"] = (sum if concurrent else max)(p["max_in_flight"] for p in parts)
        if concurrent:
            merged["from_target"] = round(sum(p["from_target"] for p in parts), 6)
            merged["to_target"] = round(sum(p["to_target"] for p in parts), 6)
        merged["latency_ms"] = hist.summary()
        merged["histogram_us"] = hist.encode()
        out.append(merged)
    return out


def _generator(gens: list[dict | None]) -> dict | None:
    present = [g for g in gens if g is not None]
    if not present:
        return None
    processes = sum(g["processes"] for g in present)
    out = cpu.usage(sum(g["cpu_seconds"] for g in present), max(g["wall_seconds"] for g in present), processes)
    out["saturated"] = out["saturated"] or any(g["saturated"] for g in present)  # one busy process is enough
    return out


def _series(all_rows: list[list[dict]], concurrent: bool) -> list[dict]:
    if not concurrent:
        out, offset = [], 0.0
        for rows in all_rows:
            for row in rows:
                out.append({**row, "t": round(row["t"] + offset, 3)})
            if rows:
                offset += rows[-1]["t"]
        return out
    out = []
    for i in range(max((len(r) for r in all_rows), default=0)):
        rows = [r[i] for r in all_rows if i < len(r)]
        merged = dict(rows[0])
        for k in ("sent", "received", "errors"):
            merged[k] = sum(r[k] for r in rows)
        for k in ("per_second", "mb_per_second", "cpu_percent"):
            merged[k] = round(sum(r[k] for r in rows), 3)
        for k in ("p50_ms", "p99_ms", "max_ms"):  # a second's worst process: the rows keep no histogram
            values = [r[k] for r in rows if r[k] is not None]
            merged[k] = max(values) if values else None
        targets = [r["target"] for r in rows if r["target"] is not None]
        merged["target"] = round(sum(targets), 3) if targets else None
        out.append(merged)
    return out


def part_summary(index: int, doc: dict, source: str | None = None) -> dict:
    """One input of a merge (a worker or a file) in the merged report's list."""
    r = doc["results"]
    return {
        "index": index,
        "source": source,
        "started_at": doc["started_at"],
        "finished_at": doc["finished_at"],
        "exit_code": doc["exit_code"],
        "outcome": doc["outcome"],
        "counts": r["counts"] if r else {"sent": 0, "received": 0, "errors": 0},
        "per_second": r["throughput"]["per_second"] if r else 0.0,
        "generator": r["generator"] if r else None,
    }


def merge_results(reports: list[dict], concurrent: bool, spectrum: bool) -> dict:
    rs = [d["results"] for d in reports]
    units = {r["unit"] for r in rs}
    if len(units) > 1:
        raise MergeError(f"cannot merge reports of different units: {', '.join(sorted(units))}")
    names = list(rs[0]["histograms_us"])
    if any(list(r["histograms_us"]) != names for r in rs):
        raise MergeError("the reports measured different latencies (different scenarios?)")
    try:
        hists = {n: _merge_latencies([r["histograms_us"][n] for r in rs]) for n in names}
    except ValueError as e:
        raise MergeError(str(e)) from None
    primary = rs[0]["latency_ms"]["name"]
    counts = _sum_fields([r["counts"] for r in rs])
    elapsed = max(r["elapsed_seconds"] for r in rs) if concurrent else sum(r["elapsed_seconds"] for r in rs)
    if concurrent:
        per_second = sum(r["throughput"]["per_second"] for r in rs)
        mbs = [r["throughput"]["mb_per_second"] for r in rs]
        mb = None if any(m is None for m in mbs) else sum(mbs)  # type: ignore[misc]
    else:
        per_second = counts["received"] / elapsed if elapsed > 0 else 0.0
        mb = None
        if rs[0]["throughput"]["mb_per_second"] is not None and rs[0]["throughput"]["per_second"] > 0:
            size = rs[0]["throughput"]["mb_per_second"] * 1e6 / rs[0]["throughput"]["per_second"]
            mb = per_second * size / 1e6
    sent = [r["messages_sent"] for r in rs]
    warm = [r["warmup"] for r in rs]
    return {
        "unit": rs[0]["unit"],
        "elapsed_seconds": round(elapsed, 6),
        "counts": counts,
        "messages_sent": None if any(s is None for s in sent) else sum(sent),  # type: ignore[misc]
        "deliveries_per_message": rs[0]["deliveries_per_message"],
        "warmup": {**_sum_fields([{k: w[k] for k in ("sent", "received", "errors")} for w in warm]),
                   "errors_by_type": _sum_counters([w["errors_by_type"] for w in warm])},
        "throughput": {"per_second": round(per_second, 3), "mb_per_second": None if mb is None else round(mb, 6)},
        "latency_ms": {"name": primary, **hists[primary].summary()},
        "latencies_ms": {n: h.summary() for n, h in hists.items()},
        "histograms_us": {n: h.encode() for n, h in hists.items()},
        "latency_spectrum": hists[primary].spectrum() if spectrum or any(r["latency_spectrum"] for r in rs) else None,
        "errors_by_type": _sum_counters([r["errors_by_type"] for r in rs]),
        "other_errors": sum(r["other_errors"] for r in rs),
        "other_errors_by_type": _sum_counters([r["other_errors_by_type"] for r in rs]),
        "integrity_errors": sum(r["integrity_errors"] for r in rs),
        "interrupted": any(r["interrupted"] for r in rs),
        "traffic": {"run": _sum_fields([r["traffic"]["run"] for r in rs]),
                    "total": _sum_fields([r["traffic"]["total"] for r in rs])},
        "setup": [step for r in rs for step in r["setup"]],
        "stages": _stages([r["stages"] for r in rs], concurrent),
        "generator": _generator([r["generator"] for r in rs]),
        "scenario": _scenario([r["scenario"] for r in rs], concurrent),
    }


def merge_reports(reports: list[dict], mode: str = "auto", *, spectrum: bool = False,
                  cfg: LoadConfig | None = None, sources: list[str] | None = None,
                  as_workers: bool = False) -> dict:
    """One report from several. ``cfg``: the configuration to record and to judge by
    (default: the first report's thresholds and --allow-errors). ``as_workers``: the
    inputs are one run's worker processes (listed as ``workers``, not ``merged_from``)."""
    if not reports:
        raise MergeError("nothing to merge")
    if mode not in MODES:
        raise MergeError(f"mode must be one of {', '.join(MODES)}")
    concurrent = _overlap(reports) if mode == "auto" else mode == "concurrent"
    results = merge_results(reports, concurrent, spectrum)
    first = reports[0]
    conf = first["configuration"]
    if cfg is None:
        t = conf["thresholds"]
        limits = Thresholds(t["max_p99_ms"], t["min_throughput"], t["max_errors"])
        allow = conf.get("allow_errors", False)
        configuration = {**conf}
    else:
        limits, allow, configuration = cfg.thresholds, cfg.allow_errors, cfg.to_json()
    checks = thresholds.check(limits, results)
    code, outcome, failures = report.verdict(allow, results, checks, results["interrupted"])
    parts = [part_summary(i, d, sources[i] if sources else None) for i, d in enumerate(reports)]
    servers = [d["server"] for d in reports if d["server"] is not None]
    return {
        "schema": report.SCHEMA_ID,
        "schema_version": report.SCHEMA_VERSION,
        "tool": "smpfast load",
        "started_at": min(reports, key=lambda d: _time(d["started_at"]))["started_at"],
        "finished_at": max(reports, key=lambda d: _time(d["finished_at"]))["finished_at"],
        "configuration": configuration,
        "environment": first["environment"],
        "server": servers[0] if servers else None,
        "results": results,
        "thresholds": checks,
        "passed": outcome == "passed",
        "outcome": outcome,
        "failures": failures,
        "failures_allowed": allow,
        "interrupted_during": None,
        "exit_code": code,
        "series": _series([d["series"] for d in reports], concurrent),
        "workers": parts if as_workers else None,
        "merged_from": None if as_workers else parts,
        "merge_mode": "concurrent" if concurrent else "sequential",
    }

