"""Server memory per idle connection, at 1,000, 10,000 and as many connections as allowed.

    .venv/bin/python bench/idle_connections.py [--baseline DIR] [--connections 1000 10000 19000]
        [--sources 4] [--version 18]

For each server (the source tree in ``--baseline``, if given, then this tree) a fresh
``smpfast start`` child runs on 127.0.0.1 with ``[LIMITS] max_connections`` raised. This
process opens connections from ``--sources`` loopback source addresses (127.0.0.2, .3, ...:
one source has ~28 k ephemeral ports) up to each count in ``--connections`` in turn; each
one completes TLS and the SMP handshake at ``--version`` (from v11 with a client key, i.e.
with block encryption, as an app's) and then stays idle. After each step and a short
settle the child's VmRSS is read: the table gives RSS per connection over the idle server,
and the marginal cost since the previous step.

The counts stop at what one process may open (``ulimit -n``: its hard limit is 20,000 on the
machine this was written on, so the server holds at most ~19,900); clients are spread over
``--client-processes`` processes for the same reason. The clients themselves run TLS on
their sockets (``SocketBlockConnection``), to fit many into this machine's memory.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import re
import resource
import sys
import tempfile
import time
from pathlib import Path

import trio

HERE = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(HERE))

from smpfast.client.session import parse_address  # noqa: E402
from smpfast.crypto.keys import Alg, PrivateKey  # noqa: E402
from smpfast.limits import raise_open_files_limit  # noqa: E402
from smpfast.protocol.handshake import ClientHandshake  # noqa: E402
from smpfast.testing.process import ServerProcess, free_port  # noqa: E402
from smpfast.transport.socket_tls import SocketBlockConnection  # noqa: E402
from smpfast.transport.tls import CLIENT_ALPN, _new_client_context  # noqa: E402
from versions import check_tree, init_data_dir, tree_env, tree_workers  # noqa: E402


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


async def _open(port: int, key_hash: bytes, version: int, sources: list[str], count: int, ready, go) -> None:
    ctx = _new_client_context(CLIENT_ALPN)
    client_key = PrivateKey(Alg.X25519, os.urandom(32)).public.der if version >= 11 else None
    hello = ClientHandshake(version, key_hash, client_key).encode()
    conns = []
    limiter = trio.CapacityLimiter(64)
    failed = 0

    async def one(i: int) -> None:
        nonlocal failed
        async with limiter:
            try:
                stream = await trio.open_tcp_stream("127.0.0.1", port, local_address=sources[i % len(sources)])
                conn = SocketBlockConnection(stream, ctx, server_side=False)
                await conn.handshake(120)
                await conn.receive_blocks()  # the server's hello
                await conn.send(hello)
                conns.append(conn)
            except (OSError, trio.BrokenResourceError, Exception):  # noqa: BLE001 - counted
                failed += 1

    async with trio.open_nursery() as nursery:
        for i in range(count):
            nursery.start_soon(one, i)
    ready.put((len(conns), failed))
    await trio.to_thread.run_sync(go.wait)  # hold them open until the parent is done
    for conn in conns:
        await conn.aclose()


def _client(port: int, key_hash: bytes, version: int, sources: list[str], count: int, ready, go) -> None:
    raise_open_files_limit()
    trio.run(_open, port, key_hash, version, sources, count, ready, go)


def open_sockets(pid: int) -> int:
    """Sockets the process has open (its connections, listeners and a few more)."""
    count = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            count += os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:")
        except OSError:
            pass
    return count


def measure(tree: Path, steps: list[int], sources: list[str], version: int, processes: int,
            settle: float) -> list[dict]:
    rows = []
    mp = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="smpfast-idle-") as d:
        directory = Path(d)
        port = free_port()
        init_data_dir(tree, directory, port)
        ini = directory / "smpfast.ini"
        ini.write_text(re.sub(r"(?m)^max_connections = .*$", "max_connections = 1000000", ini.read_text()))
        with ServerProcess(directory, env=tree_env(tree), cwd=directory, workers=tree_workers(tree)) as server:
            time.sleep(1)
            check_tree(server.pid, tree)
            key_hash = parse_address(server.address)[0].key_hash
            idle = rss_kib(server.pid)
            base_sockets = open_sockets(server.pid)
            opened = 0
            go = mp.Event()
            ready = mp.Queue()
            children = []
            previous = (0, idle)
            try:
                for target in steps:
                    want = target - opened
                    per = [want // processes + (1 if i < want % processes else 0) for i in range(processes)]
                    for n in per:
                        if n:
                            p = mp.Process(target=_client, args=(port, key_hash, version, sources, n, ready, go))
                            p.start()
                            children.append(p)
                    failed = 0
                    for n in per:
                        if n:
                            ok, bad = ready.get(timeout=1800)
                            opened += ok
                            failed += bad
                    time.sleep(settle)
                    rss = rss_kib(server.pid)
                    rows.append({
                        "connections": opened, "failed": failed, "server_sockets": open_sockets(server.pid), "idle_kib": idle, "rss_kib": rss,
                        "kib_per_connection": round((rss - idle) / max(1, opened), 1),
                        "marginal_kib": round((rss - previous[1]) / max(1, opened - previous[0]), 1),
                    })
                    rows[-1]["held"] = rows[-1]["server_sockets"] - base_sockets
                    previous = (opened, rss)
            finally:
                go.set()
                for p in children:
                    p.join(timeout=120)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--baseline", type=Path, help="a source tree to measure first, for a before/after")
    ap.add_argument("--connections", type=int, nargs="+", default=[1000, 10000, 19000])
    ap.add_argument("--sources", type=int, default=4, help="loopback source addresses 127.0.0.2 ...")
    ap.add_argument("--version", type=int, default=18, help="the SMP version clients ask for")
    ap.add_argument("--client-processes", type=int, default=0, help="default: one per 15,000 connections")
    ap.add_argument("--settle", type=float, default=3.0)
    args = ap.parse_args()
    limit = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    steps = sorted(set(args.connections))
    if steps[-1] > limit - 100:
        print(f"note: one process may open {limit} files here; the server cannot hold {steps[-1]}",
              file=sys.stderr)
    processes = args.client_processes or max(1, -(-steps[-1] // 15000))
    sources = [f"127.0.0.{2 + i}" for i in range(args.sources)]
    trees = ([("baseline", args.baseline.resolve())] if args.baseline else []) + [("this tree", HERE)]
    print(f"{'server':<10} {'conns':>7} {'held':>7} {'failed':>6} {'idle MiB':>9} {'RSS MiB':>8} {'KiB/conn':>9} {'marginal':>9}")
    for label, tree in trees:
        for r in measure(tree, steps, sources, args.version, processes, args.settle):
            print(f"{label:<10} {r['connections']:>7} {r['held']:>7} {r['failed']:>6} {r['idle_kib'] / 1024:>9.1f} "
                  f"{r['rss_kib'] / 1024:>8.1f} {r['kib_per_connection']:>9.1f} {r['marginal_kib']:>9.1f}", flush=True)
            print(json.dumps({"server": label, "version": args.version, **r}), file=sys.stderr)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
