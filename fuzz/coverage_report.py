"""Line coverage (coverage.py) of the code a fuzz target exercises, over a corpus.

Replays every file of the given corpus directories through the target's
``test_one_input`` once and reports the line coverage of the modules that target is about.

    python fuzz/coverage_report.py TARGET CORPUS_DIR [CORPUS_DIR ...]
"""

from __future__ import annotations

import importlib
import io
import sys
from pathlib import Path

import coverage

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
MODULES = {
    "core_twins": ["smpfast/_core/_framing_py.py", "smpfast/_core/_sodium_py.py"],
    "handshake_blocks": ["smpfast/protocol/handshake.py", "smpfast/protocol/errors.py"],
    "command_codecs": ["smpfast/protocol/commands.py", "smpfast/protocol/errors.py",
                       "smpfast/protocol/address.py", "smpfast/protocol/encoding.py"],
    "broker_memory": ["smpfast/server/broker.py", "smpfast/store/memory.py", "smpfast/crypto/auth.py"],
}


def main() -> None:
    target, dirs = sys.argv[1], [Path(d) for d in sys.argv[2:]]
    files = sorted(f for d in dirs for f in d.iterdir() if f.is_file())
    paths = [str(ROOT / m) for m in MODULES[target]]
    cov = coverage.Coverage(data_file=None, include=paths)  # in memory: no .coverage file
    cov.start()
    sys.path.insert(0, str(HERE))
    module = importlib.import_module(target)
    for f in files:
        module.test_one_input(f.read_bytes())
    cov.stop()
    out = io.StringIO()
    total = cov.report(file=out, show_missing=True)
    print(f"{target}: {len(files)} inputs")
    print(out.getvalue().rstrip())
    print(f"{target} line coverage: {total:.1f}%")


if __name__ == "__main__":
    main()
