"""The load generator itself: ``smpfast load`` as CI runs it (a subprocess, its JSON on
stdout) against one ``smpfast start`` child process, with one generator process and with
two (``--workers 2``).

Group ``load generator: workers`` -- a round is one whole run: LOAD_PAIRS closed-loop
pairs with LOAD_CONCURRENCY sends in flight each, LOAD_MESSAGES messages of 100 bytes,
each decrypted, checked and ACKed (set-up and process start included in the wall time).
The run's own figures are in ``extra_info``: its measured msgs/s, the generator's CPU use
(% of one core per process, and whether it saturated a core) and the server's CPU time
per message. With one process the generator's event loop is usually the limit (its CPU
near 100 %); with two, the server or the machine's cores are.

    .venv/bin/pytest bench/test_bench_load.py --benchmark-only --benchmark-columns=min,median,rounds
"""

from __future__ import annotations

import json
import subprocess

import pytest

from smpfast.testing.process import ServerProcess, free_port, init_data_dir, smpfast_command

LOAD_PAIRS = 8
LOAD_CONCURRENCY = 4
LOAD_MESSAGES = 6000
RUN_TIMEOUT = 300


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    directory = tmp_path_factory.mktemp("bench-load")
    init_data_dir(directory, free_port())
    ini = directory / "smpfast.ini"
    ini.write_text(ini.read_text().replace("durability = fsync", "durability = none"))
    with ServerProcess(directory) as srv:
        yield srv


def _run(server: ServerProcess, workers: int) -> dict:
    p = subprocess.run(
        smpfast_command("load", server.address, "--pairs", str(LOAD_PAIRS), "--concurrency", str(LOAD_CONCURRENCY),
                        "--messages", str(LOAD_MESSAGES), "--size", "100", "--workers", str(workers),
                        "--json", "-", "--quiet"),
        capture_output=True, text=True, timeout=RUN_TIMEOUT)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


@pytest.mark.parametrize("workers", [1, 2])
def test_generator_workers(benchmark, server, workers):
    benchmark.group = "load generator: workers"
    runs = []

    def one_run():
        cpu0 = server.cpu_seconds()
        doc = _run(server, workers)
        runs.append((doc, server.cpu_seconds() - cpu0))

    benchmark.pedantic(one_run, rounds=3, iterations=1, warmup_rounds=0)
    best = max(runs, key=lambda r: r[0]["results"]["throughput"]["per_second"])
    doc, server_cpu = best
    r = doc["results"]
    assert r["counts"] == {"sent": LOAD_MESSAGES, "received": LOAD_MESSAGES, "errors": 0}
    benchmark.extra_info.update({
        "msgs_per_second": [round(d["results"]["throughput"]["per_second"], 1) for d, _ in runs],
        "generator_cpu_percent_per_process": [d["results"]["generator"]["cpu_percent"] for d, _ in runs],
        "generator_saturated": [d["results"]["generator"]["saturated"] for d, _ in runs],
        "p99_ms": [d["results"]["latency_ms"]["p99"] for d, _ in runs],
        "server_cpu_us_per_msg": round(server_cpu / LOAD_MESSAGES * 1e6, 1),
    })
