"""Opening many client connections at once (bounded parallel handshakes), running their
readers in one nursery, and summing their traffic counters (closed connections too)."""

from __future__ import annotations

import time
from collections.abc import Callable

import trio

from ..client import SMPClient
from ..protocol.session import ServiceCredentials
from ..limits import raise_open_files_limit
from .histogram import Latency

FDS_PER_PROCESS = 64  # stdio, the event loop, files we write: headroom besides sockets

TRAFFIC_FIELDS = (
    "blocks_sent",
    "blocks_received",
    "transmissions_sent",
    "transmissions_received",
    "tls_bytes_sent",
    "tls_bytes_received",
)


def raise_fd_limit(connections: int) -> int:
    """Raise RLIMIT_NOFILE's soft limit to the hard limit; returns the new soft limit.
    Raises OSError when even the hard limit cannot hold ``connections`` sockets."""
    soft = raise_open_files_limit()
    if connections + FDS_PER_PROCESS > soft:
        raise OSError(f"{connections} connections need more file descriptors than the limit {soft} "
                      "(raise it with ulimit -n)")
    return soft


def client_traffic(c: SMPClient) -> dict[str, int]:
    return {
        "blocks_sent": c.blocks_out,
        "blocks_received": c.blocks_in,
        "transmissions_sent": c.transmissions_sent,
        "transmissions_received": c.transmissions_received,
        "tls_bytes_sent": c.tls_bytes_out,
        "tls_bytes_received": c.tls_bytes_in,
    }


class Pool:
    """Every connection of a run. ``open`` connects ``n`` clients (at most
    ``parallel`` handshakes at a time) and starts their readers in ``nursery``."""

    def __init__(self, address: str, *, max_version: int | None, timeout: float,
                 parallel: int = 64, socks: str | None = None) -> None:
        self.address = address
        self.socks = socks  # --socks5: every connection through this SOCKS5 proxy
        self.max_version = max_version
        self.timeout = timeout
        self.limiter = trio.CapacityLimiter(parallel)
        self.clients: list[SMPClient] = []
        self.connect_latency = Latency()
        self.opened = 0

    async def connect_one(self, nursery: trio.Nursery, latency: Latency | None = None,
                          address: str | None = None, service: ServiceCredentials | None = None) -> SMPClient:
        """One client (to ``address``, default the run's), its reader running in
        ``nursery``; raises ConnectError. The handshake time (not the wait for a free
        handshake slot) goes to ``latency``. ``service``: a service session's certificate."""
        async with self.limiter:
            t = time.perf_counter()
            client = await SMPClient.connect(address or self.address, max_version=self.max_version, timeout=self.timeout,
                                             socks=self.socks, service=service)
            took = time.perf_counter() - t
        self.connect_latency.record(took)
        if latency is not None:
            latency.record(took)
        await nursery.start(client.run)
        self.clients.append(client)
        self.opened += 1
        return client

    async def open(self, n: int, nursery: trio.Nursery,
                   on_progress: Callable[[int], None] | None = None, address: str | None = None) -> list[SMPClient]:
        """``n`` clients in order; the first connect error cancels the others and is raised."""
        out: list[SMPClient | None] = [None] * n

        async def one(i: int) -> None:
            out[i] = await self.connect_one(nursery, address=address)
            if on_progress is not None:
                on_progress(1)

        # Connect errors propagate as themselves (strict_exception_groups would wrap them).
        errors: list[BaseException] = []

        async def guarded(i: int, cancel: trio.CancelScope) -> None:
            try:
                await one(i)
            except Exception as e:
                errors.append(e)
                cancel.cancel()

        async with trio.open_nursery() as inner:
            for i in range(n):
                inner.start_soon(guarded, i, inner.cancel_scope)
        if errors:
            raise errors[0]
        return out  # type: ignore[return-value]

    def traffic(self) -> dict[str, int]:
        total = dict.fromkeys(TRAFFIC_FIELDS, 0)
        for c in self.clients:
            for k, v in client_traffic(c).items():
                total[k] += v
        total["connections_opened"] = self.opened
        return total

    async def close_all(self) -> None:
        for c in self.clients:
            await c.aclose()


def traffic_delta(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {k: after[k] - before.get(k, 0) for k in after}

