"""Crash rounds: 100 × (load, kill -9, restart) of a real ``smpfast start``, then the drain
and the ledger's checks (``smpfast.testing.crash``). It fails when any violation is found.

pytest-benchmark's time is the wall time of the whole run (about 2 s a round here: server
start, reconnects, load, kill); ``extra_info`` carries the summary's counts::

    .venv/bin/pytest bench/test_bench_crash.py --benchmark-only --benchmark-json=crash.json

The same run as a command, with its summary and JSON file::

    .venv/bin/python -m smpfast.testing.crash --rounds 100 --json crash.json
"""

from __future__ import annotations

from smpfast.testing.crash import format_summary, run_crash

CRASH_ROUNDS = 100


def test_crash_rounds(benchmark, tmp_path):
    benchmark.group = "crash: kill -9 rounds"
    result = benchmark.pedantic(lambda: run_crash(CRASH_ROUNDS, seed=1, directory=tmp_path),
                                rounds=1, iterations=1)
    s = result.summary
    benchmark.extra_info.update(
        rounds=s["rounds"],
        kills=s["kills"],
        seconds_per_round=round(s["seconds"] / s["rounds"], 2),
        **s["messages"],
        violations={k: n for k, n in s["violations"].items() if n},
    )
    print("\n" + format_summary(result))
    assert s["kills"] == CRASH_ROUNDS
    assert result.ok, format_summary(result)
