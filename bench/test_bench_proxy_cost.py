"""Server CPU per delivered message, direct and through an SMP proxy (bench/proxy_cost.py).
pytest-benchmark's time is the message phase's wall time; ``extra_info`` carries the CPU
figures of the relay and the proxy process::

    .venv/bin/pytest bench/test_bench_proxy_cost.py --benchmark-only --benchmark-columns=min
"""

from __future__ import annotations

import pytest

from proxy_cost import measure


@pytest.mark.parametrize("mode", ["direct", "proxied"])
def test_server_cpu_per_message_direct_and_proxied(benchmark, mode):
    result = benchmark.pedantic(lambda: measure(mode, 8, 100, 1000), rounds=1, iterations=1)
    assert result.delivered == 800
    benchmark.extra_info.update(result.row())
    print(f"\n{result.row()}")
