"""The report: the versioned JSON document (schema: smpfast/load/schema.json) and the
human summary printed at the end of a run."""

from __future__ import annotations

import json
from importlib import resources
import sys
from datetime import datetime, timezone
from typing import TextIO

from . import exitcodes
from .config import LoadConfig
from .failures import evaluate as failures_of
from .histogram import PERCENTILES, Latency
from .scenarios.base import Result

SCHEMA_VERSION = 2
SCHEMA_ID = "https://smpfast.invalid/load-report.schema.json"
OUTCOMES = ("passed", "thresholds_breached", "failed", "interrupted")


def load_schema() -> dict:
    """The JSON schema of the report (package data)."""
    return json.loads(resources.files(__package__).joinpath("schema.json").read_text(encoding="utf-8"))


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def results_section(cfg: LoadConfig, result: Result, traffic_total: dict, setup: list[dict],
                    interrupted: bool = False) -> dict:
    st = result.stats
    m = st.measured
    elapsed = result.elapsed if m.sent else 0.0
    per_second = m.received / elapsed if elapsed > 0 else 0.0
    messages = result.unit == "messages"
    primary = st.latencies[result.latency]
    return {
        "unit": result.unit,
        "elapsed_seconds": round(elapsed, 6),
        "counts": m.to_json(),
        "messages_sent": result.messages_sent,
        "deliveries_per_message": result.deliveries_per_message,
        "warmup": st.warmup.to_json() | {"errors_by_type": dict(sorted(st.warmup.errors_by_type.items()))},
        "throughput": {
            "per_second": round(per_second, 3),
            "mb_per_second": round(per_second * cfg.size / 1e6, 6) if messages else None,
        },
        "latency_ms": {"name": result.latency, **primary.summary()},
        "latencies_ms": {name: h.summary() for name, h in st.latencies.items()},
        "histograms_us": {name: h.encode() for name, h in st.latencies.items()},
        "latency_spectrum": primary.spectrum() if cfg.latency_spectrum else None,
        "errors_by_type": dict(sorted(m.errors_by_type.items())),
        "other_errors": sum(st.other_errors.values()),
        "other_errors_by_type": dict(sorted(st.other_errors.items())),
        "integrity_errors": st.integrity_errors,
        "interrupted": interrupted,
        "traffic": {"run": result.traffic, "total": traffic_total},
        "setup": setup,
        "stages": result.stages,
        "generator": result.generator,
        "scenario": result.details,
    }


def verdict(allow_errors: bool, results: dict | None, checks: list[dict], interrupted: bool) -> tuple[int, str, list[dict]]:
    """(exit code, outcome, failures): interrupted > failed (unless --allow-errors) >
    thresholds breached > passed."""
    failures = failures_of(results) if results is not None else []
    if interrupted:
        return exitcodes.INTERRUPTED, "interrupted", failures
    if failures and not allow_errors:
        return exitcodes.RUN_FAILED, "failed", failures
    if not all(c["passed"] for c in checks):
        return exitcodes.THRESHOLD, "thresholds_breached", failures
    return exitcodes.OK, "passed", failures


def build(cfg: LoadConfig, environment: dict, result: Result | None, results: dict | None, checks: list[dict],
          started_at: str, finished_at: str, *, interrupted_during: str | None = None,
          server: dict | None = None, workers: list[dict] | None = None) -> dict:
    interrupted = interrupted_during is not None or bool(results and results["interrupted"])
    code, outcome, failures = verdict(cfg.allow_errors, results, checks, interrupted)
    return {
        "schema": SCHEMA_ID,
        "schema_version": SCHEMA_VERSION,
        "tool": "smpfast load",
        "started_at": started_at,
        "finished_at": finished_at,
        "configuration": cfg.to_json(),
        "environment": environment,
        "server": server if server is not None else (result.server if result is not None else None),
        "results": results,
        "thresholds": checks,
        "passed": outcome == "passed",
        "outcome": outcome,
        "failures": failures,
        "failures_allowed": cfg.allow_errors,
        "interrupted_during": interrupted_during,
        "exit_code": code,
        "series": result.series if result is not None else [],
        "workers": workers,
        "merged_from": None,
        "merge_mode": "concurrent" if workers else None,
    }


def write_json(path: str, report: dict) -> None:
    text = json.dumps(report, indent=2) + "\n"
    if path == "-":
        sys.stdout.write(text)
        return
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def write_hgrm(path: str, report: dict) -> None:
    """The primary latency's percentile spectrum as an .hgrm file."""
    r = report["results"]
    hist = Latency.decode(r["histograms_us"][r["latency_ms"]["name"]])
    with open(path, "w", encoding="utf-8") as f:
        hist.write_hgrm(f)


# ---------------------------------------------------------------- the summary


def number(x: float | int | None) -> str:
    """A number as people read it: 1,000,000 and 0.5, never 1e+06."""
    if x is None:
        return "-"
    if isinstance(x, bool):
        return str(x)
    if float(x).is_integer():
        return f"{x:,.0f}"
    if abs(x) >= 100:
        return f"{x:,.1f}"
    return f"{x:.3g}" if abs(x) < 1 else f"{x:,.2f}".rstrip("0").rstrip(".")


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f}"


def _latency_line(name: str, s: dict) -> str:
    parts = "  ".join(f"{k.replace('_', '.')} {_ms(s[k])}" for k in PERCENTILES)
    return f"  {name:<11} {parts}  max {_ms(s['max'])}  (n={s['count']})"


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1000
    return str(n)


def _describe(c: dict) -> str:
    s = c["scenario"]
    if s == "messaging":
        what = f"{c['pairs']} pairs over {c['queues']} queues, {c['size']}-byte bodies"
    elif s == "fanout":
        what = f"1 sender to a group of {c['group']}, {c['size']}-byte bodies"
    else:
        if c.get("mode") == "services":
            what = f"{c['queues']} queues of one messaging service, one SUBS, auth {c['auth']}"
        else:
            what = f"{c['queues']} queues from {c['connections']} connections, batches of {c['batch']}, auth {c['auth']}"
        return f"subscribe: {what}" + (f", {c['workers']} workers" if c["workers"] > 1 else "")
    if c["stages"]:
        kind = "open loop, rate" if c["model"] == "open" else "closed loop, concurrency"
        model = f"{kind} stages {c['stages']}"
    elif c["model"] == "open":
        model = f"open loop at {number(c['rate'])}/s"
    else:
        model = f"closed loop, concurrency {c['concurrency']}"
    if c["stages"]:
        span = ""
    elif c["duration"] is not None:
        span = f", {c['duration']:g} s"
    else:
        span = f", {c['messages']} messages"
    w = c["warmup"]
    if w["seconds"]:
        span += f" (+{w['seconds']:g} s warm-up)"
    elif w["messages"]:
        span += f" (+{w['messages']} warm-up messages)"
    conns = f"{c['connections']} connections per side" if s == "messaging" else f"{c['connections']} member connections"
    workers = f", {c['workers']} workers" if c["workers"] > 1 else ""
    return f"{s}: {what}, {model}{span}, auth {c['auth']}, {conns}{workers}"


def _threshold_line(chk: dict, per: str) -> str:
    name = chk["name"]
    op, unit = {"max_p99_ms": ("<=", " ms"), "min_throughput": (">=", f" {per}"), "max_errors": ("<=", "")}[name]
    verdict = "ok" if chk["passed"] else "BREACHED"
    return f"threshold {name}: {number(chk['value'])}{unit} (limit {op} {number(chk['limit'])}{unit}) {verdict}"


def _generator_line(g: dict) -> str:
    procs = "1 process" if g["processes"] == 1 else f"{g['processes']} processes"
    line = (f"generator: {procs}, CPU {g['cpu_seconds']:.1f} s over {g['wall_seconds']:.1f} s of traffic "
            f"= {g['cpu_percent']:.0f}% of one core per process")
    if g["saturated"]:
        line += " — SATURATED: the generator may be the bottleneck (try --workers N)"
    return line


def _stages_lines(stages: list[dict]) -> list[str]:
    out = [f"  {'stage':>5} {'seconds':>8} {'target':>17} {'planned':>8} {'sent':>8} {'received':>8} "
           f"{'errors':>6} {'in flight':>9} {'p50 ms':>8} {'p99 ms':>8}"]
    for s in stages:
        unit = "/s" if s["unit"] == "messages/s" else ""
        target = f"{number(s['from_target'])}->{number(s['to_target'])}{unit}"
        lat = s["latency_ms"]
        out.append(f"  {s['index'] + 1:>5} {s['seconds']:>8g} {target:>17} {number(s['planned']):>8} {s['sent']:>8} "
                   f"{s['received']:>8} {s['errors']:>6} {s['max_in_flight']:>9} {_ms(lat['p50']):>8} {_ms(lat['p99']):>8}")
    return out


def spectrum_lines(spectrum: list[dict]) -> list[str]:
    out = [f"  {'Value (ms)':>12} {'Percentile':>14} {'TotalCount':>10} {'1/(1-Percentile)':>16}"]
    for r in spectrum:
        p = r["percentile"]
        tail = f" {1 / (1 - p):16.2f}" if p < 1 else ""
        out.append(f"  {r['value_ms']:12.3f} {p:14.12f} {r['count']:10d}{tail}")
    return out


def summary(report: dict, out: TextIO | None = None) -> None:
    out = out or sys.stdout
    r = report["results"]
    srv = report["server"]
    env = report["environment"]
    w = lambda s="": print(s, file=out)  # noqa: E731
    w(f"smpfast load — {_describe(report['configuration'])}")
    if srv is not None:
        w(f"server: SMP v{srv['version']} (server offers {srv['server_versions'][0]}-{srv['server_versions'][1]}), "
          f"{srv.get('tls_version')}, ALPN {srv.get('alpn')}; client: Python {env['python']}, "
          f"compiled core {env['compiled_core']}, {env['cpu_count']} CPUs, load {env['loadavg_start']} -> {env['loadavg_end']}")
    if r is None:
        w(f"interrupted during {report['interrupted_during']}: no traffic was measured")
        w(f"result: INTERRUPTED (exit code {report['exit_code']})")
        return
    subscribe = r["unit"] == "subscriptions"
    c = r["counts"]
    if subscribe:
        line = f"SUBs: sent {c['sent']}  subscribed {c['received']}  errors {c['errors']}"
    elif r["deliveries_per_message"] > 1:
        line = (f"messages: sent {r['messages_sent']} to a group of {r['deliveries_per_message']}; deliveries: "
                f"expected {c['sent']}  delivered {c['received']}  errors {c['errors']}")
    else:
        line = f"messages: sent {c['sent']}  received {c['received']}  errors {c['errors']}"
    if r["warmup"]["sent"]:
        wu = r["warmup"]
        line += f"   (warm-up, excluded: sent {wu['sent']} received {wu['received']} errors {wu['errors']})"
    if r["interrupted"]:
        line += "   (interrupted: partial)"
    w(line)
    t = r["throughput"]
    per = "SUB/s" if subscribe else ("deliveries/s" if r["deliveries_per_message"] > 1 else "msgs/s")
    mb = f", {t['mb_per_second']:.3f} MB/s" if t["mb_per_second"] is not None else ""
    w(f"throughput: {t['per_second']:,.1f} {per}{mb} over {r['elapsed_seconds']:.3f} s")
    w("latency, ms (HdrHistogram):")
    for name, s in r["latencies_ms"].items():
        w(_latency_line(name + ("*" if name == r["latency_ms"]["name"] else ""), s))
    if r["latency_spectrum"] is not None:
        w(f"latency spectrum of {r['latency_ms']['name']} (HdrHistogram percentile distribution):")
        for line in spectrum_lines(r["latency_spectrum"]):
            w(line)
    if r["stages"]:
        w("stages:")
        for line in _stages_lines(r["stages"]):
            w(line)
    if r["generator"] is not None:
        w(_generator_line(r["generator"]))
    parts = report.get("workers") or report.get("merged_from") or []
    for wk in parts:
        g = wk["generator"]
        cpu = (f"CPU {g['cpu_percent']:.0f}%" + (" SATURATED" if g["saturated"] else "")) if g else "CPU -"
        name = f"worker {wk['index']}" if report.get("workers") else (wk["source"] or f"report {wk['index']}")
        w(f"  {name}: sent {wk['counts']['sent']} received {wk['counts']['received']} "
          f"errors {wk['counts']['errors']}, {wk['per_second']:,.1f} {per}, {cpu}, exit code {wk['exit_code']}")
    if r["errors_by_type"]:
        w("errors: " + "; ".join(f"{k} {v}" for k, v in r["errors_by_type"].items()))
    if r["other_errors_by_type"]:
        w("other errors: " + "; ".join(f"{k} {v}" for k, v in r["other_errors_by_type"].items()))
    tm = r["traffic"]["run"]
    w(f"traffic (warm-up, measure, drain): blocks sent {tm['blocks_sent']} received {tm['blocks_received']}; "
      f"TLS bytes sent {_size(tm['tls_bytes_sent'])} received {_size(tm['tls_bytes_received'])}; "
      f"transmissions sent {tm['transmissions_sent']} received {tm['transmissions_received']}")
    extra = {k: v for k, v in r["scenario"].items()
             if v not in (None, 0, False) and k not in ("planned_seconds", "sending_seconds")}
    if extra:
        w("details: " + ", ".join(f"{k} {v}" for k, v in extra.items()))
    for chk in report["thresholds"]:
        w(_threshold_line(chk, per))
    allowed = " (allowed by --allow-errors)" if report["failures_allowed"] else ""
    for f in report["failures"]:
        w(f"FAILURE{allowed}: {f['message']}")
    label = {"passed": "PASSED", "thresholds_breached": "THRESHOLD BREACHED", "failed": "FAILED",
             "interrupted": "INTERRUPTED (partial results)"}[report["outcome"]]
    w(f"result: {label} (exit code {report['exit_code']})")
