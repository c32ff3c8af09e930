"""1 vs 2 worker processes (``[TRANSPORT] workers``) under ``smpfast load`` (bench/workers.py).

Group ``server: workers`` -- a round is one whole run: a fresh ``smpfast start --workers N``
(LMDB, fsync, 2 ms group commit) and one messaging run of WORKERS_PAIRS closed-loop pairs,
WORKERS_CONCURRENCY sends in flight each, WORKERS_MESSAGES messages of 100 bytes, each
received, checked and ACKed. ``extra_info`` has the runs' msgs/s, the server's CPU per message
summed over the supervisor and every worker, the hub's share, the cores the server used and
the busiest worker's share of the server CPU.

    .venv/bin/pytest bench/test_bench_workers.py --benchmark-only --benchmark-columns=min,median,rounds
"""

from __future__ import annotations

import pytest

from workers import one_run

WORKERS_PAIRS = 8
WORKERS_CONCURRENCY = 4
WORKERS_MESSAGES = 3000


@pytest.mark.parametrize("workers", [1, 2])
def test_server_workers(benchmark, workers):
    benchmark.group = "server: workers"
    runs = []

    def run():
        runs.append(one_run(workers, pairs=WORKERS_PAIRS, concurrency=WORKERS_CONCURRENCY,
                            messages=WORKERS_MESSAGES))

    benchmark.pedantic(run, rounds=3, iterations=1, warmup_rounds=0)
    assert all(r["messages"] == WORKERS_MESSAGES for r in runs)
    if workers > 1:
        # every worker served a share: the server can use more than one core
        assert all(min(r["worker_cpu_shares"]) > 0.1 for r in runs), runs
    benchmark.extra_info.update({
        key: [r[key] for r in runs]
        for key in ("messages_per_second", "cpu_us_per_message", "hub_cpu_us_per_message", "cores_used",
                    "worker_cpu_shares")
    })
