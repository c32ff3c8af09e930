"""Shared fixtures: server credentials, an in-process smpfast server, a bounded trio runner.

No pytest-trio: tests call ``trio_run(async_fn)``, which runs it under ``trio.fail_after``.

    def test_ping(smp_server, trio_run):
        async def main():
            async with smp_server() as srv:              # MemoryStore, 127.0.0.1, port 0
                async with smpfast.client.connect(srv.address) as c:
                    await c.ping()
        trio_run(main)

``smp_server(store="memory" | "lmdb" | <a Store>, *, max_version=7, broker_config=None,
workers=None, **settings)`` is an async context manager yielding a ``RunningServer``
(``address`` "smp://<fingerprint>@127.0.0.1:<port>", ``port``, ``server``, ``store``,
``key_hash``); the server stops (and a store it created is closed) when the block exits.
``settings`` go to ServerSettings (bind and ports are fixed). "lmdb" makes an LMDBStore in
``tmp_path``.

``workers=N`` (default: the environment's ``SMPFAST_TEST_WORKERS``, else 1) serves with N
workers in this process, as ``[TRANSPORT] workers = N`` does with processes: each worker has
its own broker and subscriptions, they share the store (and one group committer) and reach
each other through an in-memory hub (smpfast.server.cluster), and they all listen on
``port`` with SO_REUSEPORT, so the kernel spreads connections between them.
``worker_address(i)`` reaches worker i alone (its own port); ``server`` is worker 0.
"""

from __future__ import annotations

import itertools
import os
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import AsyncIterator

import pytest
import trio

from smpfast.credentials import ServerCredentials, create_credentials, load_server_credentials
from smpfast.server.broker import BrokerConfig
from smpfast.server.cluster import MemoryHub
from smpfast.server.committer import GroupCommitter
from smpfast.server.main import Server, ServerSettings, WorkerRole, load_serving_identity
from smpfast.store import LMDBStore, MemoryStore, Store
from smpfast.transport import ConnectionLimit

TRIO_TIMEOUT = 30.0  # default bound of trio_run


@dataclass(frozen=True)
class SMPCredentials:
    directory: Path
    creds: ServerCredentials

    @property
    def key_hash(self) -> bytes:
        return self.creds.key_hash

    @property
    def fingerprint(self) -> str:
        return self.creds.fingerprint


TEST_WORKERS = int(os.environ.get("SMPFAST_TEST_WORKERS", "1") or 1)


@dataclass(frozen=True)
class RunningServer:
    address: str
    port: int
    server: Server
    store: Store
    key_hash: bytes
    servers: tuple[Server, ...] = ()  # every worker (workers > 1), worker 0 first
    fingerprint: str = ""

    @property
    def workers(self) -> tuple[Server, ...]:
        """Every worker's Server (just ``server`` with one worker)."""
        return self.servers or (self.server,)

    def stats(self) -> dict[str, int]:
        """The broker counters summed over the workers."""
        total: dict[str, int] = {}
        for server in self.workers:
            for name, n in server.broker.stats.items():
                total[name] = total.get(name, 0) + n
        return total

    def relay_links(self) -> list:
        """The proxy role's relay links of every worker."""
        return [link for server in self.workers for link in server.relays.links]

    def relay_lookup(self, session_id: bytes):
        """The relay link with this session in any worker, or None."""
        for server in self.workers:
            link = server.relays.lookup(session_id)
            if link is not None:
                return link
        return None

    def worker_address(self, index: int) -> str:
        """The address of worker ``index`` alone (workers > 1)."""
        return f"smp://{self.fingerprint}@127.0.0.1:{self.servers[index].own_ports[0]}"


@pytest.fixture(scope="session")
def smp_credentials(tmp_path_factory) -> SMPCredentials:
    """A CA + server certificate for 127.0.0.1 (Ed25519), shared by the whole session."""
    directory = tmp_path_factory.mktemp("smp-credentials")
    create_credentials(directory, "127.0.0.1")
    return SMPCredentials(directory, load_server_credentials(directory))


@pytest.fixture
def smp_server(smp_credentials, tmp_path):
    """Factory of in-process servers (see the module docstring)."""
    counter = itertools.count()

    @asynccontextmanager
    async def serve(
        store: str | Store = "memory",
        *,
        max_version: int = 7,
        broker_config: BrokerConfig | None = None,
        workers: int | None = None,
        **settings,
    ) -> AsyncIterator[RunningServer]:
        workers = TEST_WORKERS if workers is None else workers
        own_store = isinstance(store, str)
        if store == "memory":
            store = MemoryStore()
        elif store == "lmdb":
            store = LMDBStore(str(tmp_path / f"store-{next(counter)}"), map_size=1 << 28, durability="none")
        elif isinstance(store, str):
            raise ValueError(f"unknown store kind {store!r}")
        creds, identity, ctx = load_serving_identity(smp_credentials.directory, max_version)
        if workers > 1:
            async with _cluster(store, identity, ctx, broker_config, workers, settings) as servers:
                try:
                    server = servers[0]
                    yield RunningServer(
                        f"smp://{creds.fingerprint}@127.0.0.1:{server.ports[0]}", server.ports[0], server, store,
                        creds.key_hash, tuple(servers), creds.fingerprint,
                    )
                finally:
                    if own_store:
                        store.close()
            return
        server = Server(store, identity, ctx, broker_config,
                        ServerSettings(bind="127.0.0.1", ports=(0,), **settings))
        # The nursery is exited with no exception so that a failing test body's exception
        # reaches pytest as itself, not wrapped in an ExceptionGroup.
        nursery_cm = trio.open_nursery()
        nursery = await nursery_cm.__aenter__()
        try:
            try:
                [port] = await nursery.start(server.serve)
                yield RunningServer(
                    f"smp://{creds.fingerprint}@127.0.0.1:{port}", port, server, store, creds.key_hash
                )
            finally:
                server.stop()
                await nursery_cm.__aexit__(None, None, None)
        finally:
            if own_store:
                store.close()

    return serve


@asynccontextmanager
async def _cluster(store, identity, ctx, broker_config, workers: int, settings: dict) -> AsyncIterator[list[Server]]:
    """``workers`` Servers in this process on one store, port and in-memory hub."""
    hub = MemoryHub()
    committer = GroupCommitter(store, ServerSettings(**settings).commit_interval)
    limit = ConnectionLimit(ServerSettings(**settings).max_connections)  # one cap for all workers
    servers: list[Server] = []
    outer_cm = trio.open_nursery()
    outer = await outer_cm.__aenter__()
    outer.start_soon(hub.run)
    inner_cm = trio.open_nursery()
    inner = await inner_cm.__aenter__()
    try:
        port = 0
        for index in range(workers):
            server = Server(store, identity, ctx, broker_config,
                            ServerSettings(bind="127.0.0.1", ports=(port,), reuse_port=True, own_ports=(0,),
                                           **settings),
                            worker=WorkerRole(index, hub.link(index), committer, limit, count=workers))
            await inner.start(server.serve)
            port = server.ports[0]
            servers.append(server)
        # Stopping "the server" (worker 0, as tests see it) stops every worker.
        stops = [server.stop for server in servers]
        servers[0].stop = lambda: [stop() for stop in stops]
        yield servers
    finally:
        for server in servers:
            server.stop()
        await inner_cm.__aexit__(None, None, None)
        outer.cancel_scope.cancel()
        await outer_cm.__aexit__(None, None, None)


@pytest.fixture
def trio_run():
    """``trio_run(async_fn, *args, timeout=30.0)``: trio.run under trio.fail_after."""

    def run(async_fn, *args, timeout: float = TRIO_TIMEOUT):
        async def guarded():
            with trio.fail_after(timeout):
                return await async_fn(*args)

        return trio.run(guarded)

    return run
