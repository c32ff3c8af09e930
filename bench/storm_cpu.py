"""The reconnect storm of ``smpfast load -s subscribe`` with the server's CPU around it.

``smpfast load``'s subscribe scenario creates Q queues (NEW in batches), then re-subscribes
them from C new connections in batches of B: the storm, whose SUB/s the load tool reports.
This script runs it against a fresh server child and adds the server's user + system CPU
time over the whole run per queue (creation and storm: one NEW and one SUB per queue).
``--baseline DIR`` runs another source tree's server in the same run first (see
bench/versions.py), ``--repeat`` times::

    .venv/bin/python bench/storm_cpu.py --queues 20000 --connections 10 --batch 135 --max-version 7
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from smpfast.testing.process import ServerProcess, free_port, init_data_dir

sys.path.insert(0, str(Path(__file__).resolve().parent))
import versions  # noqa: E402

HERE = Path(__file__).resolve().parent.parent


def measure(tree: Path | None, queues: int, connections: int, batch: int, max_version: int | None) -> dict:
    with tempfile.TemporaryDirectory(prefix="smpfast-storm-") as tmp:
        directory = Path(tmp) / "data"
        if tree is None:
            init_data_dir(directory, free_port())
            server = ServerProcess(directory)
        else:
            versions.init_data_dir(tree, directory, free_port())
            server = ServerProcess(directory, env=versions.tree_env(tree), cwd=directory,
                                   workers=versions.tree_workers(tree))
        report = Path(tmp) / "report.json"
        command = [sys.executable, "-m", "smpfast", "load", "--scenario", "subscribe", "--queues", str(queues),
                   "--connections", str(connections), "--batch", str(batch), "--json", str(report), "--quiet"]
        if max_version is not None:
            command += ["--max-version", str(max_version)]
        with server:
            if tree is not None:
                versions.check_tree(server.pid, tree)
            cpu0 = server.cpu_seconds()
            subprocess.run([*command, server.address], check=True, capture_output=True, cwd=tmp)
            cpu = server.cpu_seconds() - cpu0
        results = json.loads(report.read_text())["results"]
    return {"queues": queues, "connections": connections, "batch": batch, "version": max_version,
            "subs_per_second": results["throughput"]["per_second"],
            "server_cpu_seconds": round(cpu, 2), "cpu_us_per_queue": round(cpu / queues * 1e6, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--queues", type=int, default=20000)
    parser.add_argument("--connections", type=int, default=10)
    parser.add_argument("--batch", type=int, default=135)
    parser.add_argument("--max-version", type=int, default=7)
    parser.add_argument("--baseline", type=Path, help="source tree of the version to compare against")
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    trees = [("baseline", args.baseline.resolve()), ("this tree", HERE)] if args.baseline else [("this tree", None)]
    for repeat in range(args.repeat):
        for label, tree in trees:
            row = measure(tree, args.queues, args.connections, args.batch, args.max_version)
            print(json.dumps({"server": label, "repeat": repeat, **row}), flush=True)


if __name__ == "__main__":
    main()
