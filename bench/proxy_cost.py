"""What private message routing costs the servers: CPU per delivered message, direct and
through an SMP proxy, measured from outside the server processes.

Two smpfast servers run as child processes on loopback (offering v18): the relay, where
the queues are, and the proxy. P sender-recipient pairs each send M messages one after
another (each SEND, or PFWD, waits for its answer), every MSG acknowledged. Direct: the
senders are connected to the relay. Proxied: to the proxy, which forwards each message to
the relay over its one link (PFWD → RFWD → RRES → PRES). The figure is each process's user
+ system CPU over the message phase divided by messages delivered. Run directly::

    .venv/bin/python bench/proxy_cost.py --pairs 8 --messages 200 --size 1000

or through pytest-benchmark (bench/test_bench_proxy_cost.py).
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

MAX_VERSION = 18


@dataclass
class RoutingCpu:
    mode: str  # direct | proxied
    pairs: int
    messages: int
    size: int
    delivered: int
    wall_seconds: float
    relay_cpu_seconds: float
    proxy_cpu_seconds: float

    def row(self) -> dict:
        n = self.delivered
        return {
            **asdict(self),
            "relay_cpu_us_per_message": round(self.relay_cpu_seconds / n * 1e6, 1),
            "proxy_cpu_us_per_message": round(self.proxy_cpu_seconds / n * 1e6, 1),
            "servers_cpu_us_per_message": round((self.relay_cpu_seconds + self.proxy_cpu_seconds) / n * 1e6, 1),
            "messages_per_second": round(n / self.wall_seconds, 1),
        }


async def _pair(relay: str, proxy: str | None, messages: int, body: bytes, set_up: list, ready: trio.Event,
                done: list) -> None:
    async with await SMPClient.connect(relay) as recipient, await SMPClient.connect(proxy or relay) as sender:
        queue = await recipient.create_queue()
        key = PrivateKey.generate(Alg.ED25519)
        await recipient.secure(queue, key.public.der)
        route = None if proxy is None else await sender.proxy_relay(relay)
        set_up.append(queue)
        await ready.wait()

        async def send_all() -> None:
            for _ in range(messages):
                if route is None:
                    await sender.send(queue.snd_id, body, sender_key=key)
                else:
                    await sender.proxied_send(route, queue.snd_id, body, sender_key=key)

        async def receive_all() -> None:
            received, msg = 0, None
            while received < messages:
                if msg is None:
                    _, msg = await recipient.next_event()
                received += 1
                msg = await recipient.ack(queue, msg.msg_id)
            done.append(received)

        async with trio.open_nursery() as n:
            n.start_soon(send_all)
            n.start_soon(receive_all)


def measure(mode: str, pairs: int, messages: int, size: int) -> RoutingCpu:
    body = os.urandom(size)
    with tempfile.TemporaryDirectory(prefix="smpfast-proxy-cost-") as d:
        init_data_dir(os.path.join(d, "relay"), free_port())
        init_data_dir(os.path.join(d, "proxy"), free_port())
        with ServerProcess(os.path.join(d, "relay"), max_version=MAX_VERSION) as relay, \
                ServerProcess(os.path.join(d, "proxy"), max_version=MAX_VERSION) as proxy:
            result: dict = {}

            async def main() -> None:
                set_up: list = []
                done: list = []
                ready = trio.Event()
                via = proxy.address if mode == "proxied" else None
                async with trio.open_nursery() as n:
                    for _ in range(pairs):
                        n.start_soon(_pair, relay.address, via, messages, body, set_up, ready, done)
                    while len(set_up) < pairs:
                        await trio.sleep(0.01)
                    r0, p0, t0 = relay.cpu_seconds(), proxy.cpu_seconds(), time.perf_counter()
                    ready.set()
                    while len(done) < pairs:
                        await trio.sleep(0.005)
                    result.update(wall=time.perf_counter() - t0, relay=relay.cpu_seconds() - r0,
                                  proxy=proxy.cpu_seconds() - p0, delivered=sum(done))

            trio.run(main)
    return RoutingCpu(mode, pairs, messages, size, result["delivered"], result["wall"], result["relay"], result["proxy"])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pairs", type=int, default=8)
    p.add_argument("--messages", type=int, default=200)
    p.add_argument("--size", type=int, default=1000)
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    rows = [measure(mode, args.pairs, args.messages, args.size).row() for mode in ("direct", "proxied")]
    if args.json:
        print(json.dumps(rows, indent=1))
        return
    print(f"{args.pairs} pairs x {args.messages} messages of {args.size} B; CPU us per delivered message")
    print(f"{'mode':8} {'relay':>8} {'proxy':>8} {'servers':>8} {'msg/s':>8}")
    for r in rows:
        print(f"{r['mode']:8} {r['relay_cpu_us_per_message']:8.1f} {r['proxy_cpu_us_per_message']:8.1f} "
              f"{r['servers_cpu_us_per_message']:8.1f} {r['messages_per_second']:8.1f}")
    d, x = rows
    print(f"proxied / direct, both servers: {x['servers_cpu_us_per_message'] / d['servers_cpu_us_per_message']:.2f}x; "
          f"relay alone: {x['relay_cpu_us_per_message'] / d['relay_cpu_us_per_message']:.2f}x")


if __name__ == "__main__":
    main()
