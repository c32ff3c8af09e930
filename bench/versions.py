"""Running another source tree's server next to this one (``--baseline DIR`` of the
scripts here): its ``smpfast init`` and ``smpfast start`` run with ``PYTHONPATH=DIR`` and a
working directory outside every tree (``python -m`` puts the working directory first on the
import path), and the child's mapped compiled core proves which tree it runs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def tree_env(tree: Path) -> dict[str, str]:
    return {"PYTHONPATH": str(tree)}


def tree_workers(tree: Path) -> int:
    """``ServerProcess(workers=)`` for ``tree``'s server: one process, with or without the
    ``--workers`` option (trees from before worker processes do not know it)."""
    from smpfast.testing.process import NO_WORKERS_FLAG

    return 1 if (tree / "smpfast" / "server" / "supervisor.py").exists() else NO_WORKERS_FLAG


def init_data_dir(tree: Path, directory: Path, port: int) -> str:
    """``smpfast init`` of ``tree`` on loopback, no password; returns the address."""
    directory.mkdir(parents=True, exist_ok=True)
    import os

    out = subprocess.run(
        [sys.executable, "-m", "smpfast", "init", "--dir", str(directory), "--port", str(port),
         "--password", "none", "--yes"],
        check=True, capture_output=True, text=True, timeout=60, cwd=directory,
        env={**os.environ, **tree_env(tree)},
    ).stdout
    return out.strip().splitlines()[-1]


def check_tree(pid: int, tree: Path) -> None:
    """The process ``pid`` mapped the compiled core of ``tree``."""
    with open(f"/proc/{pid}/maps") as f:
        cores = {line.split()[-1] for line in f if "_core/framing" in line}
    if not cores or not all(c.startswith(f"{tree}/") for c in cores):
        raise RuntimeError(f"the server runs {cores or 'no compiled core'}, not {tree}")
