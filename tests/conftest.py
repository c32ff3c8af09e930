"""Shared fixtures: server credentials, an in-process smpfast server, a bounded trio runner.

No pytest-trio: tests call ``trio_run(async_fn)``, which runs it under ``trio.fail_after``.

    def test_ping(smp_server, trio_run):
        async def main():
            async with smp_server() as srv:              # MemoryStore, 127.0.0.1, port 0
                async with smpfast.client.connect(srv.address) as c:
                    await c.ping()
        trio_run(main)

``smp_server(store="memory" | "lmdb" | <a Store>, *, max_version=7, broker_config=None,
**settings)`` is an async context manager yielding a ``RunningServer`` (``address``
"smp://<fingerprint>@127.0.0.1:<port>", ``port``, ``server``, ``store``, ``key_hash``); the
server stops (and a store it created is closed) when the block exits. ``settings`` go to
ServerSettings (bind and ports are fixed). "lmdb" makes an LMDBStore in ``tmp_path``.
"""

from __future__ import annotations

import itertools
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import AsyncIterator

import pytest
import trio

from smpfast.credentials import ServerCredentials, create_credentials, load_server_credentials
from smpfast.server.broker import BrokerConfig
from smpfast.server.main import Server, ServerSettings, load_serving_identity
from smpfast.store import LMDBStore, MemoryStore, Store

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


@dataclass(frozen=True)
class RunningServer:
    address: str
    port: int
    server: Server
    store: Store
    key_hash: bytes


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
        **settings,
    ) -> AsyncIterator[RunningServer]:
        own_store = isinstance(store, str)
        if store == "memory":
            store = MemoryStore()
        elif store == "lmdb":
            store = LMDBStore(str(tmp_path / f"store-{next(counter)}"), map_size=1 << 28, durability="none")
        elif isinstance(store, str):
            raise ValueError(f"unknown store kind {store!r}")
        creds, identity, ctx = load_serving_identity(smp_credentials.directory, max_version)
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


@pytest.fixture
def trio_run():
    """``trio_run(async_fn, *args, timeout=30.0)``: trio.run under trio.fail_after."""

    def run(async_fn, *args, timeout: float = TRIO_TIMEOUT):
        async def guarded():
            with trio.fail_after(timeout):
                return await async_fn(*args)

        return trio.run(guarded)

    return run
