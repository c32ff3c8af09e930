"""What name resolution (SMP v20 RSLV) costs the server: CPU per request and round trips
per second, against PING as the baseline, measured from outside the server process.

One smpfast server runs as a child process on loopback offering v20, with ``[NAMES]``
pointing at a local HTTP resolver (smpfast.testing.resolver, a thread of this process) for
the ``resolver`` mode and off for the others. C clients each send R requests one after
another (each waits for its answer):

- ``ping``: PING → PONG (the cheapest command: the baseline round trip);
- ``no_resolver``: RSLV → ERR NAME NO_RESOLVER (answered in the broker);
- ``resolver``: RSLV → RNAME, each one an HTTP request from the server to the resolver.

The figure is the server's user + system CPU over the request phase divided by requests.
Run directly::

    .venv/bin/python bench/names_cost.py --clients 8 --requests 200
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import trio

from smpfast.client import SMPClient, SMPError
from smpfast.protocol.names import NameRecord
from smpfast.testing.process import ServerProcess, free_port, init_data_dir
from smpfast.testing.resolver import LocalResolver

MAX_VERSION = 20
MODES = ("ping", "no_resolver", "resolver")
RECORD = NameRecord("Alice", simplex_contact=("https://simplex.chat/contact#/?v=2&smp=x",),
                    owner="0x" + "ab" * 20, resolver="0x" + "cd" * 20)


@dataclass
class NamesCpu:
    mode: str
    clients: int
    requests: int
    answered: int
    wall_seconds: float
    server_cpu_seconds: float

    def row(self) -> dict:
        n = self.answered
        return {**asdict(self), "server_cpu_us_per_request": round(self.server_cpu_seconds / n * 1e6, 1),
                "requests_per_second": round(n / self.wall_seconds, 1)}


async def _client(address: str, mode: str, requests: int, ready: list, go: trio.Event, answered: list) -> None:
    async with await SMPClient.connect(address, max_version=MAX_VERSION) as client:
        ready.append(1)
        await go.wait()
        for _ in range(requests):
            if mode == "ping":
                await client.ping()
            elif mode == "resolver":
                assert await client.resolve("alice.simplex") == RECORD
            else:
                try:
                    await client.resolve("alice.simplex")
                except SMPError as e:
                    assert str(e.error) == "NAME NO_RESOLVER"
            answered.append(1)


def measure(mode: str, clients: int, requests: int) -> NamesCpu:
    with tempfile.TemporaryDirectory() as tmp, LocalResolver({"alice.simplex": RECORD}, lifetime=3600) as lr:
        data = Path(tmp) / "srv"
        init_data_dir(data, free_port())
        if mode == "resolver":
            ini = data / "smpfast.ini"
            ini.write_text(ini.read_text().replace("\nenable = off\n", f"\nenable = on\nresolver_endpoint = {lr.endpoint}\n", 1))
        with ServerProcess(data, max_version=MAX_VERSION) as server:
            ready: list = []
            answered: list = []

            async def main() -> tuple[float, float]:
                go = trio.Event()
                async with trio.open_nursery() as nursery:
                    for _ in range(clients):
                        nursery.start_soon(_client, server.address, mode, requests, ready, go, answered)
                    while len(ready) < clients:
                        await trio.sleep(0.01)
                    cpu0, t0 = server.cpu_seconds(), time.perf_counter()
                    go.set()
                    while len(answered) < clients * requests:
                        await trio.sleep(0.002)
                    return time.perf_counter() - t0, server.cpu_seconds() - cpu0

            wall, cpu = trio.run(main)
    return NamesCpu(mode, clients, requests, len(answered), wall, cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rows = [measure(mode, args.clients, args.requests).row() for mode in MODES]
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    for r in rows:
        print(f"{r['mode']:12} {r['server_cpu_us_per_request']:8.1f} µs server CPU/request "
              f"{r['requests_per_second']:9.1f} requests/s")
    base = rows[0]["server_cpu_us_per_request"]
    print("server CPU vs PING: " + ", ".join(f"{r['mode']} {r['server_cpu_us_per_request'] / base:.2f}x"
                                            for r in rows[1:]))


if __name__ == "__main__":
    main()
