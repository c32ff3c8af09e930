"""Fairness: a probe client's round-trip latency alone and next to one abusive connection.

    .venv/bin/python bench/fairness.py [--baseline DIR] [--duration 8] [--loads ping,send,...]

For each server (the source tree in ``--baseline``, if given, then this tree) and each load,
a fresh server child runs on 127.0.0.1 (what ``smpfast start`` runs, from that tree's
``build_server``; LMDB store, ``durability = none`` so the figures measure scheduling, not the
disk) with a trio instrument that times every task step of the measured window in thread
CPU time (``max step``: the longest any one task kept the event loop, in ms; ``steps>1ms``:
how many steps took 1 ms or more; both are immune to the neighbours' load, unlike the round
trips), the abuser runs in its own process, and the probe in this one measures, in a
closed loop:

* ``ping``: PING -> PONG on one connection;
* ``msg``: SEND on one connection -> MSG on another (subscribed) connection.

Loads (``--abusers`` connections, 1 by default, each sending pre-built blocks as fast as
TCP lets it and reading and discarding every answer (as raw TCP bytes, not decrypted, so
that it costs the abuser little CPU), so backpressure never stops it):

* ``none``: the probe alone;
* ``ping``: blocks of 255 PINGs;
* ``send``: blocks of Ed25519-signed SENDs to absent queues (as many as fit, 146);
* ``sub``: blocks of signed SUBs to the abuser's own 146 queues;
* ``garbage``: random 16 KB blocks (each answered ERR BLOCK).

``--baseline DIR`` is a source tree of another version (e.g. ``git archive`` of main, built
with ``python setup.py build_ext --inplace``); its server runs with ``PYTHONPATH=DIR``, the
probe and the abusers always come from this tree. Prints one table; ``--json FILE`` also
saves the figures. ``--repeat N`` measures every cell N times and prints medians.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import trio

HERE = Path(__file__).resolve().parent.parent
if "--serve" not in sys.argv:  # the server child imports smpfast from PYTHONPATH's tree
    sys.path.insert(0, str(HERE))

from smpfast.client import SMPClient, connect  # noqa: E402
from smpfast.crypto.keys import Alg, generate_private_key  # noqa: E402
from smpfast.protocol import commands as C  # noqa: E402
from smpfast.protocol.transmission import batch_blocks, encode_client_transmission, t_for_auth  # noqa: E402
from smpfast.testing.process import ServerProcess, free_port  # noqa: E402
from versions import check_tree, init_data_dir, tree_env  # noqa: E402
from smpfast.transport import TransportError  # noqa: E402

LOADS = ("none", "ping", "send", "sub", "garbage")
READY = "flooding"


# --------------------------------------------------------------------------- abusers


def _signed(client: SMPClient, entity: bytes, command: bytes, key) -> bytes:
    corr = os.urandom(24)
    auth = key.sign(t_for_auth(client.session_id, corr, entity, command))
    return encode_client_transmission(client.version, client.session_id, corr, entity, command, auth)


async def _abusive_block(kind: str, client: SMPClient, address: str) -> bytes:
    v, sid = client.version, client.session_id
    if kind == "ping":
        ts = [encode_client_transmission(v, sid, os.urandom(24), b"", C.PING.encode(v)) for _ in range(255)]
    elif kind == "send":
        key = generate_private_key(Alg.ED25519)
        send = C.Send(C.MsgFlags(False, b""), b"x").encode(v)
        ts = [_signed(client, os.urandom(24), send, key) for _ in range(255)]
    elif kind == "sub":
        async with connect(address) as owner:
            queues = await owner.create_queues(146, subscribe=False)
        ts = [_signed(client, q.rcv_id, C.SUB.encode(v), q.rcv_auth_key) for q in queues]
    elif kind == "garbage":
        return random.randbytes(16384)
    else:
        raise ValueError(kind)
    return batch_blocks(ts)[0]


async def abuse(kind: str, address: str, connections: int) -> None:
    clients = [await SMPClient.connect(address) for _ in range(connections)]
    blocks = [await _abusive_block(kind, client, address) for client in clients]

    async def drain(conn) -> None:
        # Raw TCP bytes, never decrypted: the abuser spends next to no CPU on the answers.
        try:
            while await conn.stream.receive_some(1 << 20):
                pass
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass

    async def flood(conn, block: bytes) -> None:
        burst = block * 16
        try:
            while True:
                await conn.send(burst)
        except TransportError:
            pass

    async with trio.open_nursery() as nursery:
        for client, block in zip(clients, blocks):
            nursery.start_soon(drain, client.connection)
            nursery.start_soon(flood, client.connection, block)
        print(READY, flush=True)


# --------------------------------------------------------------------------- probe


async def probe(address: str, warmup: float, duration: float, window_starts) -> dict[str, list[float]]:
    samples: dict[str, list[float]] = {"ping": [], "msg": []}
    started = False
    async with connect(address) as pinger, connect(address) as rcv, connect(address) as snd:
        q = await rcv.create_queue()
        start = time.perf_counter()
        while (now := time.perf_counter()) < start + warmup + duration:
            measuring = now >= start + warmup
            if measuring and not started:
                window_starts()
                started = True
            t0 = time.perf_counter()
            await pinger.ping()
            t1 = time.perf_counter()
            await snd.send(q.snd_id, b"probe")
            event = await rcv.next_event(timeout=60)
            t2 = time.perf_counter()
            assert isinstance(event.message, C.Msg), event
            await rcv.ack(q, event.message.msg_id)
            if measuring:
                samples["ping"].append(t1 - t0)
                samples["msg"].append(t2 - t1)
            await trio.sleep(0.005)
    return samples


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


# --------------------------------------------------------------------------- the server


class StepTimer(trio.abc.Instrument):
    """CPU time of every task step of the event loop: how long one task (a connection's
    reader, say) kept every other connection waiting. Thread CPU time, so the neighbours'
    preemption of this process does not count."""

    def __init__(self) -> None:
        self.start = 0.0
        self.reset()

    def reset(self) -> None:
        self.steps = 0
        self.longest = 0.0
        self.longest_task = ""
        self.over_1ms = 0

    def before_task_step(self, task) -> None:
        self.start = time.thread_time()

    def after_task_step(self, task) -> None:
        spent = time.thread_time() - self.start
        self.steps += 1
        if spent > self.longest:
            self.longest = spent
            self.longest_task = task.name.rsplit(".", 1)[-1]
        if spent >= 0.001:
            self.over_1ms += 1


def serve(directory: Path, stats: Path) -> None:
    """``smpfast start`` with a StepTimer; SIGUSR1 restarts the timer (the measured window
    begins: every connection is set up by then), SIGTERM stops and writes its figures."""
    from smpfast.config import load_config
    from smpfast.server.main import build_server

    logging.basicConfig(level=logging.WARNING)
    server, address = build_server(load_config(directory))
    timer = StepTimer()

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(server.serve)
            print(f"Server address: {address}", flush=True)
            with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGUSR1) as signals:
                async for signum in signals:
                    if signum == signal.SIGUSR1:
                        timer.reset()
                        continue
                    server.stop()
                    break

    import smpfast.server.connection

    print(f"serving {smpfast.server.connection.__file__}", flush=True)
    trio.run(main, instruments=[timer])
    server.store.close()
    stats.write_text(json.dumps({"steps": timer.steps, "longest_step_ms": round(timer.longest * 1e3, 2),
                                 "longest_task": timer.longest_task, "steps_over_1ms": timer.over_1ms}))


class TimedServer(ServerProcess):
    """ServerProcess running ``serve`` above (from the tree on PYTHONPATH)."""

    def start(self, timeout: float = 60.0) -> str:
        self.log_path = self.directory / "server.log"
        self.stats_path = self.directory / "steps.json"
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--serve", str(self.directory),
             "--stats", str(self.stats_path)],
            stdout=self._log, stderr=subprocess.STDOUT, text=True, env=self.env, cwd=self.directory,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.log_path.read_text().splitlines():
                if line.startswith("Server address: "):
                    self.address = line.split(": ", 1)[1].strip()
                    return self.address
            if self.proc.poll() is not None:
                raise RuntimeError("server exited early:\n" + self.log_path.read_text())
            time.sleep(0.05)
        self.kill()
        raise TimeoutError("server did not print its address")


# --------------------------------------------------------------------------- one cell


def write_ini(directory: Path) -> None:
    ini = directory / "smpfast.ini"
    text = ini.read_text().replace("durability = fsync", "durability = none")
    ini.write_text(text)


def measure(tree: Path, load: str, warmup: float, duration: float, abusers: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="smpfast-fair-") as d:
        directory = Path(d)
        init_data_dir(tree, directory, free_port())
        write_ini(directory)
        env = tree_env(tree)
        abuser = None
        server = TimedServer(directory, env=env)
        with server:
            try:
                if load != "none":
                    abuser = subprocess.Popen(
                        [sys.executable, str(Path(__file__).resolve()), "--abuser", load, "--address", server.address,
                         "--abusers", str(abusers)],
                        stdout=subprocess.PIPE, text=True,
                    )
                    line = abuser.stdout.readline().strip()
                    if line != READY:
                        raise RuntimeError(f"abuser {load} did not start: {line!r}")
                check_tree(server.pid, tree)
                cpu0 = server.cpu_seconds()
                samples = trio.run(probe, server.address, warmup, duration,
                                   lambda: os.kill(server.pid, signal.SIGUSR1))
                cpu = server.cpu_seconds() - cpu0
            finally:
                if abuser is not None:
                    abuser.kill()
                    abuser.wait()
        steps = json.loads(server.stats_path.read_text())
        served = next(line for line in server.log().splitlines() if line.startswith("serving "))
        if not served.startswith(f"serving {tree}/"):  # the version measured is the one named
            raise RuntimeError(f"{served!r} is not from {tree}")
    row = {"load": load, "abusers": abusers, "server_cpu_s": round(cpu, 2), **steps}
    for name, values in samples.items():
        row[name] = {
            "n": len(values),
            "p50_ms": round(percentile(values, 50) * 1e3, 2),
            "p99_ms": round(percentile(values, 99) * 1e3, 2),
            "max_ms": round(max(values) * 1e3, 2),
        }
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--baseline", type=Path, help="source tree of the version to compare against")
    ap.add_argument("--loads", default=",".join(LOADS))
    ap.add_argument("--warmup", type=float, default=2.0)
    ap.add_argument("--duration", type=float, default=8.0)
    ap.add_argument("--abusers", type=int, default=1, help="abusive connections per load")
    ap.add_argument("--repeat", type=int, default=1, help="measure every cell this many times")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--abuser", choices=LOADS[1:], help=argparse.SUPPRESS)
    ap.add_argument("--address", help=argparse.SUPPRESS)
    ap.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--stats", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        serve(args.serve, args.stats)
        return
    if args.abuser:
        try:
            trio.run(abuse, args.abuser, args.address, args.abusers)
        except KeyboardInterrupt:
            pass
        return
    trees = ([("baseline", args.baseline.resolve())] if args.baseline else []) + [("this tree", HERE)]
    results = []
    # Loads outside, servers inside: the two versions of a cell are measured back to back,
    # so the neighbours' load drifts less between them.
    for repeat in range(args.repeat):
        for load in args.loads.split(","):
            for label, tree in trees:
                row = measure(tree, load, args.warmup, args.duration, args.abusers)
                row["server"] = label
                row["repeat"] = repeat
                results.append(row)
                print(json.dumps(row), file=sys.stderr, flush=True)
    print(f"{'load':<8} {'server':<10} {'ping p50':>9} {'ping p99':>9} {'msg p50':>9} {'msg p99':>9} "
          f"{'rounds':>6} {'srv cpu s':>9} {'max step':>9} {'steps>1ms':>9}")
    for load in args.loads.split(","):
        for label, _ in trees:
            rows = [r for r in results if r["load"] == load and r["server"] == label]
            med = lambda probe, key: statistics.median(r[probe][key] for r in rows)  # noqa: E731
            print(f"{load:<8} {label:<10} {med('ping', 'p50_ms'):>9.1f} {med('ping', 'p99_ms'):>9.1f} "
                  f"{med('msg', 'p50_ms'):>9.1f} {med('msg', 'p99_ms'):>9.1f} "
                  f"{statistics.median(r['ping']['n'] for r in rows):>6.0f} "
                  f"{statistics.median(r['server_cpu_s'] for r in rows):>9.2f} "
                  f"{statistics.median(r['longest_step_ms'] for r in rows):>9.1f} "
                  f"{statistics.median(r['steps_over_1ms'] for r in rows):>9.0f}")
    if args.repeat > 1:
        print(f"(medians over {args.repeat} repeats)")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
