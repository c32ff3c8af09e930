"""One worker process of ``[TRANSPORT] workers = N`` (see supervisor.py), after the fork:
its own store handle (LMDB shared mode), broker, listeners (SO_REUSEPORT) and trio loop,
and its link to the supervisor's hub."""

from __future__ import annotations

import gc
import logging
import os
import signal
import socket

import trio

from ..config import Config
from .cluster import READY, SocketLink
from .main import WorkerRole, build_server

log = logging.getLogger("smpfast.server")


def worker_main(config: Config, index: int, hub: socket.socket, *, debug: bool = False,
                max_version: int | None = None, connection_slots=None, count: int = 1) -> int:
    """Serve as worker ``index`` until SIGTERM/SIGINT; the exit code."""
    link = SocketLink(hub)
    try:
        server, _ = build_server(config, max_version, worker=WorkerRole(index, link, connection_slots=connection_slots, count=count))
    except Exception as e:
        log.error("worker %d cannot start: %s", index, e)
        return 1

    async def main() -> None:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with trio.open_nursery() as nursery:
                ports = await nursery.start(server.serve)
                log.info("worker %d (pid %d) serving on port(s) %s", index, os.getpid(), ",".join(map(str, ports)))
                gc.collect()
                gc.freeze()
                await link.send([(READY, index, ports)])
                async for signum in signals:
                    log.debug("worker %d: %s, stopping", index, signal.Signals(signum).name)
                    server.stop()
                    break

    try:
        trio.run(main)
    except Exception as e:
        log.error("worker %d failed: %s", index, e)
        return 1
    finally:
        server.store.close()
    return 0
