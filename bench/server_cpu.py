"""Server CPU per delivered message, measured from outside the server process.

Workload (the one the reference server was measured with): P sender-recipient
pairs, each sending M messages one after another (each SEND waits for its OK), every MSG
acknowledged by its recipient. The server runs as a child process (`smpfast start`); its
user + system CPU time over the message phase, divided by messages delivered, is the
figure. Run directly for a table::

    .venv/bin/python bench/server_cpu.py --pairs 32 --messages 100 --auth x25519 --size 100

or through pytest-benchmark (bench/test_bench_server_cpu.py). ``--version 7 18`` caps the
clients' version (v7: no block encryption; v11+: block encryption; default: the highest both
speak). ``--baseline DIR`` measures another source tree's server (with its compiled core in
place, see bench/versions.py) in the same run, each cell back to back with this tree's and
``--repeat`` times, both servers started from a working directory outside every tree.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import trio

from smpfast.client import SMPClient
from smpfast.crypto.keys import Alg, PrivateKey
from smpfast.testing.process import ServerProcess, free_port, init_data_dir

sys.path.insert(0, str(Path(__file__).resolve().parent))
import versions  # noqa: E402

HERE = Path(__file__).resolve().parent.parent


@dataclass
class CpuResult:
    pairs: int
    messages: int
    auth: str
    size: int
    version: int
    delivered: int
    wall_seconds: float
    server_cpu_seconds: float

    @property
    def cpu_us_per_message(self) -> float:
        return self.server_cpu_seconds / self.delivered * 1e6

    @property
    def messages_per_second(self) -> float:
        return self.delivered / self.wall_seconds

    def row(self) -> dict:
        return {
            **asdict(self),
            "cpu_us_per_message": round(self.cpu_us_per_message, 1),
            "messages_per_second": round(self.messages_per_second, 1),
        }


async def _pair(address: str, messages: int, auth: str, body: bytes, set_up: list, ready: trio.Event, done: list,
                max_version: int | None, versions_seen: set) -> None:
    sender_auth = Alg.X25519 if auth == "x25519" else Alg.ED25519
    async with (await SMPClient.connect(address, max_version=max_version) as recipient,
                await SMPClient.connect(address, max_version=max_version) as sender):
        versions_seen.update((recipient.version, sender.version))
        queue = await recipient.create_queue(auth_alg=auth)
        sender_key = PrivateKey.generate(sender_auth)
        await recipient.secure(queue, sender_key.public.der)
        set_up.append(queue)
        await ready.wait()

        async def send_all() -> None:
            for _ in range(messages):
                await sender.send(queue.snd_id, body, sender_key=sender_key)

        async def receive_all() -> None:
            received = 0
            msg = None
            while received < messages:
                if msg is None:
                    _, msg = await recipient.next_event()
                received += 1
                msg = await recipient.ack(queue, msg.msg_id)
            done.append(received)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(send_all)
            nursery.start_soon(receive_all)


def _start_profiler(pid: int, output: str) -> subprocess.Popen:
    """py-spy (``pip install py-spy``) sampling the server's threads, native frames
    included, as collapsed stacks (one ``stack count`` line each)."""
    spy = subprocess.Popen(["py-spy", "record", "--pid", str(pid), "--native", "--threads", "--rate", "250",
                            "--format", "raw", "--output", output], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)  # it attaches before the measured phase starts
    return spy


async def _workload(server: ServerProcess, pairs: int, messages: int, auth: str, size: int,
                    max_version: int | None, profile: str | None = None) -> CpuResult:
    body = os.urandom(size)
    ready = trio.Event()
    done: list[int] = []
    set_up: list = []
    seen: set[int] = set()
    async with trio.open_nursery() as nursery:
        for _ in range(pairs):
            nursery.start_soon(_pair, server.address, messages, auth, body, set_up, ready, done, max_version, seen)
        # Every pair connects, creates and secures its queue before the measured phase.
        while len(set_up) < pairs:
            await trio.sleep(0.05)
        await trio.sleep(0.2)
        spy = _start_profiler(server.pid, profile) if profile else None
        cpu0, t0 = server.cpu_seconds(), time.perf_counter()
        ready.set()
    wall = time.perf_counter() - t0
    cpu = server.cpu_seconds() - cpu0
    if spy is not None:
        spy.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
        spy.wait(timeout=60)
    [version] = seen  # every connection negotiated the same version
    return CpuResult(pairs, messages, auth, size, version, sum(done), wall, cpu)


def measure(pairs: int = 32, messages: int = 100, auth: str = "x25519", size: int = 100, env: dict | None = None,
            max_version: int | None = None, tree: Path | None = None, profile: str | None = None) -> CpuResult:
    """One cell. ``tree``: run that source tree's server (``PYTHONPATH``, started outside
    every tree, its compiled core checked); None: the smpfast this script imports."""
    with tempfile.TemporaryDirectory() as tmp:
        directory = os.path.join(tmp, "data")
        if tree is None:
            init_data_dir(directory, free_port())
            server = ServerProcess(directory, env=env)
        else:
            versions.init_data_dir(tree, Path(directory), free_port())
            server = ServerProcess(directory, env={**(env or {}), **versions.tree_env(tree)}, cwd=directory,
                                   workers=versions.tree_workers(tree))
        with server:
            if tree is not None and not (env or {}).get("SMPFAST_PURE"):
                versions.check_tree(server.pid, tree)
            return trio.run(_workload, server, pairs, messages, auth, size, max_version, profile)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--messages", type=int, default=100)
    parser.add_argument("--auth", nargs="+", default=["x25519", "ed25519"])
    parser.add_argument("--size", type=int, nargs="+", default=[100, 15000])
    parser.add_argument("--version", type=int, nargs="+", default=[None],
                        help="the clients' highest version (7: no block encryption, 18: with it)")
    parser.add_argument("--pure", action="store_true", help="run the server with SMPFAST_PURE=1")
    parser.add_argument("--baseline", type=Path, help="source tree of the version to compare against")
    parser.add_argument("--repeat", type=int, default=1, help="measure every cell this many times")
    parser.add_argument("--profile", metavar="FILE",
                        help="py-spy the (single) cell's server into FILE (collapsed stacks; py-spy on PATH)")
    args = parser.parse_args()
    env = {"SMPFAST_PURE": "1"} if args.pure else None
    trees = [("baseline", args.baseline.resolve()), ("this tree", HERE)] if args.baseline else [("this tree", None)]
    for repeat in range(args.repeat):
        for version in args.version:
            for pairs in args.pairs:
                for auth in args.auth:
                    for size in args.size:
                        # The versions of a cell run back to back: the neighbours' load drifts less.
                        for label, tree in trees:
                            row = measure(pairs, args.messages, auth, size, env, version, tree, args.profile).row()
                            if args.baseline:
                                row = {"server": label, "repeat": repeat, **row}
                            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
