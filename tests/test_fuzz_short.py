"""A short run of every atheris target in fuzz/ over its seed corpus, so CI finds crashes.

Each target runs as its own process (libFuzzer owns the process) for every seed plus a few
thousand mutations, bounded in time; it must exit 0. A crash, a divergence between the
compiled and the pure core, or an escaping exception exits non-zero and the test prints the
target's report (the failing input is written to the test's tmp dir). Long runs: fuzz/README.md.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

FUZZ = Path(__file__).resolve().parent.parent / "fuzz"
# target -> mutations after the seeds (the broker's inputs are programs, ~100x slower)
TARGETS = {"core_twins": 4000, "handshake_blocks": 4000, "command_codecs": 4000, "broker_memory": 400}
MAX_SECONDS = 12  # per target, after startup; the whole file stays under a minute


def test_every_target_is_run():
    assert sorted(TARGETS) == sorted(p.stem for p in FUZZ.glob("*.py") if (FUZZ / "corpus" / p.stem).is_dir())


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_target_survives_seeds_and_mutations(target, tmp_path):
    seeds = sorted((FUZZ / "corpus" / target).iterdir())
    assert seeds, f"no seed corpus for {target}"
    runs = len(seeds) + TARGETS[target]
    grown = tmp_path / "corpus"  # new inputs go here, never into the committed seeds
    grown.mkdir()
    cmd = [
        sys.executable, str(FUZZ / f"{target}.py"),
        f"-runs={runs}", f"-max_total_time={MAX_SECONDS}", "-seed=1", "-print_final_stats=1",
        f"-artifact_prefix={tmp_path}/", str(grown), str(FUZZ / "corpus" / target),
    ]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    report = proc.stdout + proc.stderr
    assert proc.returncode == 0, report[-6000:]
    executed = int(re.search(r"stat::number_of_executed_units:\s*(\d+)", report).group(1))
    assert executed >= len(seeds), report[-3000:]  # every seed ran, then mutations
    print(target, "executed", executed)
    assert not list(tmp_path.glob("crash-*")), report[-3000:]
