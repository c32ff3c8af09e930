"""1 vs N worker processes (``[TRANSPORT] workers``) under the load generator.

For each round and each worker count, a fresh ``smpfast start --workers N`` (a child
process, the configuration ``smpfast init`` writes: LMDB, fsync, 2 ms group commit) serves one
``smpfast load`` messaging run (a subprocess: P pairs, K sends in flight each, M messages of
100 bytes, each received, checked and ACKed). Measured from outside: messages/s (the load
report), the server's CPU time over the run summed over the supervisor and every worker
(/proc), per delivered message, the supervisor's (hub's) share of it, each worker's share,
and the cores the server used (CPU time / wall time of the run). Worker counts alternate
within each round so that the machine's noise hits all of them alike; the table gives the
medians and the ratio of CPU per message to the one-worker figure (the cross-process cost).

    .venv/bin/python bench/workers.py --rounds 3 --pairs 8 --concurrency 4 --messages 3000
    .venv/bin/python bench/workers.py --workers 1,2 --json out.json

or through pytest-benchmark (bench/test_bench_workers.py).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from smpfast.testing.process import ServerProcess, _children, _cpu_seconds, free_port, init_data_dir, smpfast_command

RUN_TIMEOUT = 600


def one_run(workers: int, *, pairs: int, concurrency: int, messages: int, durability: str = "fsync",
            load_workers: int = 1) -> dict:
    with tempfile.TemporaryDirectory(prefix="smpfast-bench-workers-") as tmp:
        data = Path(tmp) / "server"
        init_data_dir(data, free_port())
        if durability != "fsync":
            ini = data / "smpfast.ini"
            ini.write_text(ini.read_text().replace("durability = fsync", f"durability = {durability}"))
        with ServerProcess(data, workers=workers) as server:
            if workers > 1:
                server.wait_workers()
            pids = [server.pid, *_children(server.pid)]
            before = {pid: _cpu_seconds(pid) for pid in pids}
            started = time.monotonic()
            p = subprocess.run(
                smpfast_command("load", server.address, "--pairs", str(pairs), "--concurrency", str(concurrency),
                                "--messages", str(messages), "--size", "100", "--workers", str(load_workers),
                                "--json", "-", "--quiet"),
                capture_output=True, text=True, timeout=RUN_TIMEOUT)
            wall = time.monotonic() - started
            used = {pid: _cpu_seconds(pid) - before[pid] for pid in pids}
            if p.returncode != 0:
                raise RuntimeError(f"smpfast load failed ({p.returncode}):\n{p.stderr[-3000:]}")
            doc = json.loads(p.stdout)
    results = doc["results"]
    delivered = results["counts"]["received"]
    cpu = sum(used.values())
    worker_cpu = [used[pid] for pid in pids[1:]] if workers > 1 else [cpu]
    return {
        "workers": workers,
        "messages": delivered,
        "messages_per_second": results["throughput"]["per_second"],
        "p50_ms": results["latency_ms"]["p50"],
        "server_cpu_seconds": round(cpu, 3),
        "cpu_us_per_message": round(cpu / delivered * 1e6, 1),
        "hub_cpu_us_per_message": round(used[server.pid] / delivered * 1e6, 1) if workers > 1 else 0.0,
        "worker_cpu_shares": [round(c / cpu, 3) for c in worker_cpu] if cpu else [],
        "cores_used": round(cpu / results["elapsed_seconds"], 2),
        "wall_seconds": round(wall, 2),
    }


def compare(worker_counts: list[int], rounds: int, **kwargs) -> dict:
    runs: dict[int, list[dict]] = {w: [] for w in worker_counts}
    for r in range(rounds):
        order = worker_counts if r % 2 == 0 else list(reversed(worker_counts))
        for w in order:
            runs[w].append(one_run(w, **kwargs))
    base = statistics.median(run["cpu_us_per_message"] for run in runs[worker_counts[0]])
    summary = []
    for w in worker_counts:
        rs = runs[w]
        cpu = statistics.median(r["cpu_us_per_message"] for r in rs)
        summary.append({
            "workers": w,
            "messages_per_second": statistics.median(r["messages_per_second"] for r in rs),
            "cpu_us_per_message": cpu,
            "cpu_ratio_to_first": round(cpu / base, 3),
            "hub_cpu_us_per_message": statistics.median(r["hub_cpu_us_per_message"] for r in rs),
            "cores_used": statistics.median(r["cores_used"] for r in rs),
            "busiest_worker_share": statistics.median(max(r["worker_cpu_shares"] or [1.0]) for r in rs),
        })
    return {"configuration": kwargs, "rounds": rounds, "summary": summary, "runs": runs}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workers", default="1,2", help="worker counts to compare (default 1,2)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--pairs", type=int, default=8)
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--messages", type=int, default=3000)
    p.add_argument("--durability", choices=("fsync", "none"), default="fsync")
    p.add_argument("--load-workers", type=int, default=1, help="generator processes (smpfast load --workers)")
    p.add_argument("--json", help="write every run and the summary here")
    args = p.parse_args(argv)
    result = compare([int(w) for w in args.workers.split(",")], args.rounds, pairs=args.pairs,
                     concurrency=args.concurrency, messages=args.messages, durability=args.durability,
                     load_workers=args.load_workers)
    print(f"{'workers':>7} {'msgs/s':>9} {'CPU us/msg':>11} {'ratio':>6} {'hub us/msg':>11} {'cores':>6} "
          f"{'busiest worker':>15}")
    for s in result["summary"]:
        print(f"{s['workers']:>7} {s['messages_per_second']:>9.1f} {s['cpu_us_per_message']:>11.1f} "
              f"{s['cpu_ratio_to_first']:>6.3f} {s['hub_cpu_us_per_message']:>11.1f} {s['cores_used']:>6.2f} "
              f"{s['busiest_worker_share']:>15.0%}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
