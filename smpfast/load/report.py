"""The report: the versioned JSON document (schema: smpfast/load/schema.json) and the
human summary printed at the end of a run."""

from __future__ import annotations

import json
from importlib import resources
import sys
from datetime import datetime, timezone
from typing import TextIO

from .config import LoadConfig
from .histogram import PERCENTILES
from .scenarios.base import Result

SCHEMA_VERSION = 1
SCHEMA_ID = "https://smpfast.invalid/load-report.schema.json"


def load_schema() -> dict:
    """The JSON schema of the report (package data)."""
    return json.loads(resources.files(__package__).joinpath("schema.json").read_text(encoding="utf-8"))


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def results_section(cfg: LoadConfig, result: Result, traffic_total: dict, setup: list[dict]) -> dict:
    st = result.stats
    m = st.measured
    elapsed = result.elapsed if m.sent else 0.0
    per_second = m.received / elapsed if elapsed > 0 else 0.0
    messages = result.unit == "messages"
    return {
        "unit": result.unit,
        "elapsed_seconds": round(elapsed, 6),
        "counts": m.to_json(),
        "warmup": st.warmup.to_json() | {"errors_by_type": dict(sorted(st.warmup.errors_by_type.items()))},
        "throughput": {
            "per_second": round(per_second, 3),
            "mb_per_second": round(per_second * cfg.size / 1e6, 6) if messages else None,
        },
        "latency_ms": {"name": result.latency, **st.latencies[result.latency].summary()},
        "latencies_ms": {name: h.summary() for name, h in st.latencies.items()},
        "errors_by_type": dict(sorted(m.errors_by_type.items())),
        "other_errors": sum(st.other_errors.values()),
        "other_errors_by_type": dict(sorted(st.other_errors.items())),
        "traffic": {"run": result.traffic, "total": traffic_total},
        "setup": setup,
        "scenario": result.details,
    }


def build(cfg: LoadConfig, environment: dict, result: Result, results: dict, checks: list[dict],
          exit_code: int, started_at: str, finished_at: str) -> dict:
    return {
        "schema": SCHEMA_ID,
        "schema_version": SCHEMA_VERSION,
        "tool": "smpfast load",
        "started_at": started_at,
        "finished_at": finished_at,
        "configuration": cfg.to_json(),
        "environment": environment,
        "server": result.server,
        "results": results,
        "thresholds": checks,
        "passed": all(c["passed"] for c in checks),
        "exit_code": exit_code,
        "series": result.series,
    }


def write_json(path: str, report: dict) -> None:
    text = json.dumps(report, indent=2) + "\n"
    if path == "-":
        sys.stdout.write(text)
        return
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


# ---------------------------------------------------------------- the summary


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
        return f"subscribe: {c['queues']} queues from {c['connections']} connections, batches of {c['batch']}, auth {c['auth']}"
    model = f"open loop at {c['rate']:g}/s" if c["model"] == "open" else f"closed loop, concurrency {c['concurrency']}"
    if c["duration"] is not None:
        span = f"{c['duration']:g} s"
    else:
        span = f"{c['messages']} messages"
    w = c["warmup"]
    if w["seconds"]:
        span += f" (+{w['seconds']:g} s warm-up)"
    elif w["messages"]:
        span += f" (+{w['messages']} warm-up messages)"
    conns = f"{c['connections']} connections per side" if s == "messaging" else f"{c['connections']} member connections"
    return f"{s}: {what}, {model}, {span}, auth {c['auth']}, {conns}"


def summary(report: dict, out: TextIO | None = None) -> None:
    out = out or sys.stdout
    r = report["results"]
    srv = report["server"]
    env = report["environment"]
    w = lambda s="": print(s, file=out)  # noqa: E731
    w(f"smpfast load — {_describe(report['configuration'])}")
    w(f"server: SMP v{srv['version']} (server offers {srv['server_versions'][0]}-{srv['server_versions'][1]}), "
      f"{srv.get('tls_version')}, ALPN {srv.get('alpn')}; client: Python {env['python']}, "
      f"compiled core {env['compiled_core']}, {env['cpu_count']} CPUs, load {env['loadavg_start']} -> {env['loadavg_end']}")
    unit = "SUBs" if r["unit"] == "subscriptions" else "messages"
    c = r["counts"]
    line = f"{unit}: sent {c['sent']}  received {c['received']}  errors {c['errors']}"
    if r["warmup"]["sent"]:
        wu = r["warmup"]
        line += f"   (warm-up, excluded: sent {wu['sent']} received {wu['received']} errors {wu['errors']})"
    w(line)
    t = r["throughput"]
    per = "SUB/s" if r["unit"] == "subscriptions" else "msgs/s"
    mb = f", {t['mb_per_second']:.3f} MB/s" if t["mb_per_second"] is not None else ""
    w(f"throughput: {t['per_second']:.1f} {per}{mb} over {r['elapsed_seconds']:.3f} s")
    w("latency, ms (HdrHistogram):")
    for name, s in r["latencies_ms"].items():
        w(_latency_line(name + ("*" if name == r["latency_ms"]["name"] else ""), s))
    if r["errors_by_type"]:
        w("errors: " + "; ".join(f"{k} {v}" for k, v in r["errors_by_type"].items()))
    if r["other_errors_by_type"]:
        w("other errors: " + "; ".join(f"{k} {v}" for k, v in r["other_errors_by_type"].items()))
    tm = r["traffic"]["run"]
    w(f"traffic (warm-up, measure, drain): blocks sent {tm['blocks_sent']} received {tm['blocks_received']}; "
      f"TLS bytes sent {_size(tm['tls_bytes_sent'])} received {_size(tm['tls_bytes_received'])}; "
      f"transmissions sent {tm['transmissions_sent']} received {tm['transmissions_received']}")
    extra = {k: v for k, v in r["scenario"].items() if v not in (None, 0, False)}
    if extra:
        w("details: " + ", ".join(f"{k} {v}" for k, v in extra.items()))
    for chk in report["thresholds"]:
        verdict = "ok" if chk["passed"] else "BREACHED"
        w(f"threshold {chk['name']} {chk['limit']:g}: {chk['value']} {verdict}")
    w(f"result: {'PASSED' if report['passed'] else 'THRESHOLD BREACHED'} (exit code {report['exit_code']})")
