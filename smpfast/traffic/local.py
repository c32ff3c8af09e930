"""An in-process smpfast server on loopback for ``smpfast traffic`` without an address:
temporary credentials, a MemoryStore, a free port; stopped when the block exits."""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import trio

from ..credentials import create_credentials
from ..server.main import Server, ServerSettings, load_serving_identity
from ..store import MemoryStore


@asynccontextmanager
async def local_server(max_version: int | None = None,
                       on_server: Callable[[Server], None] | None = None) -> AsyncIterator[str]:
    """Yields the server's address ``smp://<fingerprint>@127.0.0.1:<port>``; the server
    offers versions up to ``max_version`` (default: what smpfast announces).
    ``on_server`` is given the running Server (to read its proxy links' counters)."""
    with tempfile.TemporaryDirectory(prefix="smpfast-traffic-") as d:
        create_credentials(d, "127.0.0.1")
        creds, identity, ctx = load_serving_identity(d, max_version)
        store = MemoryStore()
        server = Server(store, identity, ctx, None, ServerSettings(bind="127.0.0.1", ports=(0,)))
        try:
            # The nursery is exited without the body's exception, so that it reaches the
            # caller as itself rather than inside an ExceptionGroup.
            nursery_cm = trio.open_nursery()
            nursery = await nursery_cm.__aenter__()
            try:
                [port] = await nursery.start(server.serve)
                if on_server is not None:
                    on_server(server)
                yield f"smp://{creds.fingerprint}@127.0.0.1:{port}"
            finally:
                server.stop()
                await nursery_cm.__aexit__(None, None, None)
        finally:
            store.close()
