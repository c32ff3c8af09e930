"""Server CPU per delivered message (issue: the performance target of the server).

The server runs as a child process; the figure is its user + system CPU time over the
message phase divided by messages delivered (see bench/server_cpu.py). pytest-benchmark's
time column is the wall time of the message phase; ``extra_info`` carries the CPU figure::

    .venv/bin/pytest bench/test_bench_server_cpu.py --benchmark-only \
        --benchmark-columns=min --benchmark-json=cpu.json
"""

from __future__ import annotations

import pytest

from server_cpu import measure

CASES = [
    (32, "x25519", 100),
    (32, "ed25519", 100),
    (32, "x25519", 15000),
    (32, "ed25519", 15000),
    (1, "x25519", 100),
]


@pytest.mark.parametrize("pairs, auth, size", CASES, ids=[f"{p}pairs-{a}-{s}B" for p, a, s in CASES])
def test_server_cpu_per_delivered_message(benchmark, pairs, auth, size):
    result = benchmark.pedantic(lambda: measure(pairs, 100, auth, size), rounds=1, iterations=1)
    assert result.delivered == pairs * 100
    benchmark.extra_info.update(result.row())
    print(f"\n{result.row()}")
