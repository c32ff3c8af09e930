"""Server CPU per delivered message, measured from outside the server process.

Workload (the one the reference server was measured with): P sender-recipient
pairs, each sending M messages one after another (each SEND waits for its OK), every MSG
acknowledged by its recipient. The server runs as a child process (`smpfast start`); its
user + system CPU time over the message phase, divided by messages delivered, is the
figure. Run directly for a table::

    .venv/bin/python bench/server_cpu.py --pairs 32 --messages 100 --auth x25519 --size 100

or through pytest-benchmark (bench/test_bench_server_cpu.py).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from dataclasses import asdict, dataclass

import trio

from smpfast.client import SMPClient
from smpfast.crypto.keys import Alg, PrivateKey
from smpfast.testing.process import ServerProcess, free_port, init_data_dir


@dataclass
class CpuResult:
    pairs: int
    messages: int
    auth: str
    size: int
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


async def _pair(address: str, messages: int, auth: str, body: bytes, set_up: list, ready: trio.Event, done: list) -> None:
    sender_auth = Alg.X25519 if auth == "x25519" else Alg.ED25519
    async with await SMPClient.connect(address) as recipient, await SMPClient.connect(address) as sender:
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


async def _workload(server: ServerProcess, pairs: int, messages: int, auth: str, size: int) -> CpuResult:
    body = os.urandom(size)
    ready = trio.Event()
    done: list[int] = []
    set_up: list = []
    async with trio.open_nursery() as nursery:
        for _ in range(pairs):
            nursery.start_soon(_pair, server.address, messages, auth, body, set_up, ready, done)
        # Every pair connects, creates and secures its queue before the measured phase.
        while len(set_up) < pairs:
            await trio.sleep(0.05)
        await trio.sleep(0.2)
        cpu0, t0 = server.cpu_seconds(), time.perf_counter()
        ready.set()
    wall = time.perf_counter() - t0
    cpu = server.cpu_seconds() - cpu0
    return CpuResult(pairs, messages, auth, size, sum(done), wall, cpu)


def measure(pairs: int = 32, messages: int = 100, auth: str = "x25519", size: int = 100, env: dict | None = None) -> CpuResult:
    with tempfile.TemporaryDirectory() as tmp:
        directory = os.path.join(tmp, "data")
        init_data_dir(directory, free_port())
        with ServerProcess(directory, env=env) as server:
            return trio.run(_workload, server, pairs, messages, auth, size)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--messages", type=int, default=100)
    parser.add_argument("--auth", nargs="+", default=["x25519", "ed25519"])
    parser.add_argument("--size", type=int, nargs="+", default=[100, 15000])
    parser.add_argument("--pure", action="store_true", help="run the server with SMPFAST_PURE=1")
    args = parser.parse_args()
    env = {"SMPFAST_PURE": "1"} if args.pure else None
    for pairs in args.pairs:
        for auth in args.auth:
            for size in args.size:
                print(json.dumps(measure(pairs, args.messages, auth, size, env).row()), flush=True)


if __name__ == "__main__":
    main()
