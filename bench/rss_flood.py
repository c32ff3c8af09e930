"""Server memory (RSS) before, during and after a flood of idle connections.

    .venv/bin/python bench/rss_flood.py [--baseline DIR] [--connections 2000] [--settle 8]

For each server (the source tree in ``--baseline``, if given, then this tree) a fresh
``smpfast start`` child runs on 127.0.0.1; this process opens ``--connections`` TLS
connections that complete the SMP handshake and then stay idle, closes them all, and reads
the child's VmRSS (``/proc/PID/status``) when idle before the flood, with every connection
open, and ``--settle`` seconds after the last one closed (the server checks whether to
return freed memory every 5 s), ``--rounds`` times in a row against the same server
(whether freed memory happens to sit at the top of the heap varies from flood to flood).
``kept``: the share of the flood's growth still resident after the close. ``--baseline``
as in ``bench/fairness.py``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import trio

HERE = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(HERE))

from smpfast.client.session import parse_address  # noqa: E402
from smpfast.limits import raise_open_files_limit  # noqa: E402
from smpfast.protocol.handshake import ClientHandshake  # noqa: E402
from smpfast.testing.process import ServerProcess, free_port  # noqa: E402
from versions import check_tree, init_data_dir, tree_env, tree_workers  # noqa: E402
from smpfast.transport import open_block_connection  # noqa: E402


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


async def flood(address: str, port: int, count: int, pid: int) -> float:
    server, _ = parse_address(address)
    key_hash = server.key_hash
    conns = []
    limiter = trio.CapacityLimiter(32)

    async def one() -> None:
        async with limiter:
            conn = await open_block_connection("127.0.0.1", port, key_hash, timeout=120)
            await conn.receive_blocks()  # server hello
            await conn.send(ClientHandshake(7, key_hash).encode())
            conns.append(conn)

    async with trio.open_nursery() as nursery:
        for _ in range(count):
            nursery.start_soon(one)
    await trio.sleep(2)
    peak = rss_mib(pid)
    for conn in conns:
        await conn.aclose()
    return peak


def measure(tree: Path, count: int, settle: float, rounds: int) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="smpfast-rss-") as d:
        directory = Path(d)
        port = free_port()
        init_data_dir(tree, directory, port)
        with ServerProcess(directory, env=tree_env(tree), cwd=directory, workers=tree_workers(tree)) as server:
            time.sleep(1)
            check_tree(server.pid, tree)
            idle = rss_mib(server.pid)
            for n in range(1, rounds + 1):
                peak = trio.run(flood, server.address, port, count, server.pid)
                time.sleep(settle)
                after = rss_mib(server.pid)
                rows.append({"round": n, "connections": count, "idle_mib": round(idle, 1),
                             "open_mib": round(peak, 1), "after_close_mib": round(after, 1)})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--baseline", type=Path)
    ap.add_argument("--connections", type=int, default=2000)
    ap.add_argument("--settle", type=float, default=8.0)
    ap.add_argument("--rounds", type=int, default=3, help="floods, one after another, per server")
    args = ap.parse_args()
    raise_open_files_limit()
    trees = ([("baseline", args.baseline.resolve())] if args.baseline else []) + [("this tree", HERE)]
    print(f"{'server':<10} {'round':>5} {'conns':>6} {'idle MiB':>9} {'open MiB':>9} {'closed MiB':>10} {'kept':>6}")
    for label, tree in trees:
        for r in measure(tree, args.connections, args.settle, args.rounds):
            kept = (r["after_close_mib"] - r["idle_mib"]) / max(0.1, r["open_mib"] - r["idle_mib"])
            print(f"{label:<10} {r['round']:>5} {r['connections']:>6} {r['idle_mib']:>9.1f} {r['open_mib']:>9.1f} "
                  f"{r['after_close_mib']:>10.1f} {kept:>6.0%}", flush=True)
            print(json.dumps({"server": label, **r}), file=sys.stderr)


if __name__ == "__main__":
    main()
