"""``[TRANSPORT] workers = N`` (N > 1): a supervisor process and N worker processes.

The supervisor checks the configuration, credentials and store once (so start-up errors are
the one-process ones), closes the store and forks the workers. Each worker opens the LMDB
environment itself (shared mode: a transaction per write unit, its own group commit as fsync),
listens on every port with SO_REUSEPORT and serves its connections on its own trio loop.
The supervisor does no client I/O: it is the hub of cluster.py, reading the workers' events
from one Unix socket each and sending each event to the workers it concerns, in the order
it read them.

A worker that dies (crash, SIGKILL, OOM) loses its connections, like a crashed server; the
hub forgets its subscriptions and the supervisor starts a new worker in its place (at most
one restart a second per worker); the others go on. SIGTERM or SIGINT stops every worker
gracefully (each flushes its commits and closes its connections) and then the supervisor.

The operator's ports (control port, Prometheus, the web page) and the statistics files are
served by worker 0 alone: its counters are its own, its gauges (queues, messages) read from
the shared store.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import selectors
import signal
import socket
import sys
import time
from dataclasses import dataclass, field

import trio

from ..config import Config
from ..limits import raise_open_files_limit
from .cluster import READY, FrameReader, Hub, encode_frame

log = logging.getLogger("smpfast.server")

RESTART_INTERVAL = 1.0  # at most one restart a second per worker
STOP_TIMEOUT = 30.0  # then SIGKILL
HELD_EXPIRE_INTERVAL = 3600.0


@dataclass
class _Worker:
    index: int
    pid: int
    sock: socket.socket
    started: float
    reader: FrameReader = field(default_factory=FrameReader)
    ready: bool = False


class Supervisor:
    def __init__(self, config: Config, count: int, debug: bool = False, max_version: int | None = None) -> None:
        self.config = config
        self.count = count
        self.debug = debug
        self.max_version = max_version
        self.hub = Hub()
        self.workers: dict[int, _Worker] = {}  # index -> live worker
        self.selector = selectors.DefaultSelector()
        self.stopping = False
        self.restarts = 0
        self.ports: list[int] = []
        self._restart_due: dict[int, float] = {}
        # Every worker's open connections, in shared memory: [LIMITS] max_connections
        # caps their sum (transport/limit.py).
        self.connection_slots = multiprocessing.Array("q", count, lock=False)
        self._wakeup_r, self._wakeup_w = socket.socketpair()
        self._wakeup_r.setblocking(False)
        self._wakeup_w.setblocking(False)

    # --- processes

    def spawn(self, index: int) -> None:
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        supervisor = os.getpid()
        pid = os.fork()
        if pid == 0:  # the worker
            code = 1
            try:
                _die_with(supervisor)
                parent.close()
                self._wakeup_r.close()
                self._wakeup_w.close()
                for other in self.workers.values():
                    other.sock.close()
                for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD):
                    signal.signal(signum, signal.SIG_DFL)
                signal.set_wakeup_fd(-1)
                from .worker import worker_main

                code = worker_main(self.config, index, child, debug=self.debug, max_version=self.max_version,
                                   connection_slots=self.connection_slots, count=self.count)
            except BaseException:
                log.exception("worker %d failed", index)
            finally:
                logging.shutdown()
                os._exit(code)
        child.close()
        worker = _Worker(index, pid, parent, time.monotonic())
        self.workers[index] = worker
        self.hub.workers.add(index)
        self.selector.register(parent, selectors.EVENT_READ, worker)
        log.info("worker %d started (pid %d)", index, pid)

    def _reap(self) -> list[tuple[_Worker, int]]:
        dead = []
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            for worker in list(self.workers.values()):
                if worker.pid == pid:
                    dead.append((worker, status))
                    self._forget(worker)
        return dead

    def _forget(self, worker: _Worker) -> None:
        if self.workers.get(worker.index) is worker:
            del self.workers[worker.index]
        try:
            self.selector.unregister(worker.sock)
        except (KeyError, ValueError):
            pass
        worker.sock.close()
        self.connection_slots[worker.index] = 0  # its connections died with it
        self._route(self.hub.worker_gone(worker.index))

    # --- the hub

    def _read(self, worker: _Worker) -> bool:
        """Read and route what ``worker`` sent; False at its end of file."""
        try:
            data = worker.sock.recv(1 << 20)
        except (BlockingIOError, InterruptedError):
            return True
        except OSError:
            data = b""
        if not data:
            return False
        for events in worker.reader.feed(data):
            if events and events[0][0] == READY:
                worker.ready = True
                self.ports = events[0][2]
                continue
            self._route(self.hub.receive(worker.index, events))
        return True

    def _route(self, out: dict[int, list]) -> None:
        for target, events in out.items():
            receiver = self.workers.get(target)
            if receiver is None:
                continue  # died meanwhile: its subscriptions are gone
            try:
                receiver.sock.sendall(encode_frame(events))
            except OSError:
                pass  # it is dying; reaped below

    # --- main loop

    def _on_signal(self, signum: int, frame: object) -> None:
        if signum in (signal.SIGTERM, signal.SIGINT) and not self.stopping:
            self._stop_requested = signum
        try:
            self._wakeup_w.send(b"\0")
        except OSError:
            pass

    def run(self, address: str) -> int:
        self._stop_requested: int | None = None
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD):
            signal.signal(signum, self._on_signal)
        self.selector.register(self._wakeup_r, selectors.EVENT_READ, None)
        for index in range(self.count):
            self.spawn(index)
        announced = False
        stop_deadline: float | None = None
        next_expiry = time.monotonic() + HELD_EXPIRE_INTERVAL
        while True:
            for key, _ in self.selector.select(timeout=0.5):
                worker = key.data
                if worker is None:
                    try:
                        while self._wakeup_r.recv(4096):
                            pass
                    except (BlockingIOError, InterruptedError):
                        pass
                    continue
                if not self._read(worker):
                    try:
                        self.selector.unregister(worker.sock)
                    except (KeyError, ValueError):
                        pass
            now = time.monotonic()
            for worker, status in self._reap():
                how = _exit_description(status)
                if self.stopping:
                    log.info("worker %d stopped (%s)", worker.index, how)
                    continue
                if not worker.ready and not announced:
                    log.error("worker %d failed to start (%s): stopping", worker.index, how)
                    self._stop_all(signal.SIGTERM)
                    self.stopping = True
                    stop_deadline = now + STOP_TIMEOUT
                    self._failed = True
                    continue
                log.error("worker %d (pid %d) %s: starting a new one; its connections are lost",
                          worker.index, worker.pid, how)
                self._restart_due[worker.index] = max(now, worker.started + RESTART_INTERVAL)
            for index, due in list(self._restart_due.items()):
                if not self.stopping and now >= due:
                    del self._restart_due[index]
                    self.restarts += 1
                    self.spawn(index)
            if not announced and not self.stopping and len(self.workers) == self.count and all(
                w.ready for w in self.workers.values()
            ):
                announced = True
                ports = ",".join(str(p) for p in self.ports or self.config.transport.port)
                log.info("smpfast serving on %s port(s) %s with %d workers", self.config.transport.bind or "*",
                         ports, self.count)
                print(f"Server address: {address}", flush=True)
            if self._stop_requested is not None and not self.stopping:
                log.info("received %s, stopping %d workers", signal.Signals(self._stop_requested).name,
                         len(self.workers))
                self.stopping = True
                self._restart_due.clear()
                stop_deadline = now + STOP_TIMEOUT
                # Worker 0 last: it saves the statistics, the others' final counts included.
                self._stop_all(signal.SIGTERM, but=0)
                self._last_stop = True
            if self.stopping and getattr(self, "_last_stop", False) and set(self.workers) <= {0}:
                self._last_stop = False
                self._stop_all(signal.SIGTERM)
            if self.stopping:
                if not self.workers:
                    break
                if stop_deadline is not None and now > stop_deadline:
                    log.error("workers still running after %g s: killing them", STOP_TIMEOUT)
                    self._stop_all(signal.SIGKILL)
                    stop_deadline = None
            if now > next_expiry:
                self.hub.expire_held(time.time() - self.config.store_log.notification_ttl_seconds)
                next_expiry = now + HELD_EXPIRE_INTERVAL
        log.info("stopped")
        return 1 if getattr(self, "_failed", False) else 0

    def _stop_all(self, signum: int, but: int | None = None) -> None:
        for worker in self.workers.values():
            if worker.index == but:
                continue
            try:
                os.kill(worker.pid, signum)
            except ProcessLookupError:
                pass


def _die_with(parent: int) -> None:
    """Linux: this process gets SIGKILL when the supervisor dies (kill -9 of the server
    takes its workers, as of a single process; nobody is left holding the port)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # it died before prctl
        os._exit(1)


def _exit_description(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"was killed by {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exited with code {os.WEXITSTATUS(status)}"


async def _check_listening(server) -> None:
    """Open and close every socket the workers will listen on, so that a port in use or an
    address not on this machine stops the start with one process's error line rather than
    with every worker failing. Ephemeral ports (0) cannot collide and are left out."""
    from ..startup_errors import ListenError
    from ..transport.listen import open_listeners

    s = server.settings
    wanted = [("SMP", s.bind, p, s.reuse_port) for p in s.ports] + [("SMP", s.bind, p, False) for p in s.own_ports]
    if s.metrics_port:
        wanted.append(("metrics", s.metrics_bind, s.metrics_port, False))
    if server.control is not None and server.control.settings.port:
        wanted.append(("control", "127.0.0.1", server.control.settings.port, False))
    if server.web is not None:
        web = server.web
        for port in (web.config.http, None if web.shared_port else web.config.https):
            if port:
                wanted.append(("web", s.bind, port, False))
    for what, host, port, reuse in wanted:
        try:
            listeners = await open_listeners(port, host, reuse_port=reuse)
        except OSError as e:
            raise ListenError(what, host, port, e) from e
        for listener in listeners:
            await listener.aclose()


def run_workers(config: Config, count: int, *, debug: bool = False, max_version: int | None = None) -> int:
    """Serve ``config`` with ``count`` worker processes until SIGINT/SIGTERM."""
    from .main import build_server, configure_logging, read_stats_backup

    configure_logging(config.log.level, config.log.format, debug=debug)
    raise_open_files_limit()
    # Whatever can fail at start-up fails here first, with one process's error line.
    server, address = build_server(config, max_version)
    server.store.close()
    trio.run(_check_listening, server)
    backup = server.settings.stats_backup_file
    del server
    if backup is not None:
        read_stats_backup(backup)  # worker 0 restores it
    sys.stdout.flush()
    return Supervisor(config, count, debug, max_version).run(address)
