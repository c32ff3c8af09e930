"""The server process: store, broker, group committer, listeners and background tasks.

``run(config)`` serves in the foreground until SIGINT or SIGTERM, then stops accepting,
lets in-flight commits finish, closes the connections, saves the statistics (with the daily
stats on) and returns 0.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import signal
import ssl
import time
from dataclasses import dataclass, field, replace

import trio

from ..config import DEFAULT_CLIENT_CONCURRENCY, Config, server_address
from ..proxy.relays import RelayPool, RelayPoolConfig
from ..proxy.service import ProxyService
from ..credentials import CredentialPaths, ServerCredentials, load_server_credentials
from ..limits import raise_open_files_limit
from ..protocol.address import DEFAULT_PORT
from ..startup_errors import ListenError
from ..store import Store
from ..store.errors import StoreError
from ..transport import ConnectionLimit, serve_blocks
from .broker import Broker, BrokerConfig
from .committer import GroupCommitter
from .connection import DEFAULT_RESOLVER_CONCURRENCY, OUTBOX_LIMIT, Connection, Identity
from . import cluster
from .cluster import ClusterDelivery, ClusterNode, Link
from .delivery import LocalDelivery
from .control import ConnectionRegistry, ControlPort, ControlSettings, ServerControl
from .memory import TRIM_CHECK_INTERVAL, release_free_memory, trim_due
from .resolver import HttpResolver, ResolverSettings
from .metrics import METRICS_FILE, make_registry, metrics_text, serve_metrics, write_metrics_file
from .stats import (
    STATS_BACKUP_FILE,
    STATS_FILE,
    ActiveQueues,
    ForwardedActiveQueues,
    StatsBackup,
    StatsBackupError,
    StatsLog,
    decode_backup,
    encode_backup,
    seconds_until,
)
from .stats import summary as stats_summary
from .web import ServerFacts, WebServer, render_page, share_port

log = logging.getLogger("smpfast.server")

EXPIRE_CHECK_INTERVAL = 7200.0
NTF_DELIVERY_INTERVAL = 1.5
NTF_EXPIRE_INTERVAL = 3600.0
EXPIRE_STEP_BUDGET = 5000


@dataclass(slots=True)
class ServerSettings:
    """What the running server needs besides the store and credentials."""

    bind: str | None = "127.0.0.1"
    ports: tuple[int, ...] = (DEFAULT_PORT,)
    commit_interval: float = 0.002
    expire_messages_on_start: bool = True
    inactive_ttl: float | None = 21600.0  # seconds; None disables the check
    inactive_check_interval: float = 3600.0
    expire_check_interval: float = EXPIRE_CHECK_INTERVAL
    ntf_delivery_interval: float = NTF_DELIVERY_INTERVAL
    handshake_timeout: float = 120.0
    tls_handshake_timeout: float = 60.0
    log_tls_errors: bool = False
    max_connections: int | None = None  # None: no cap
    outbox_limit: int = OUTBOX_LIMIT
    memory_trim_interval: float = TRIM_CHECK_INTERVAL
    control: ControlSettings | None = None  # the control port on 127.0.0.1; None: none
    stats_file: str | None = None  # the daily stats CSV ([STORE_LOG] log_stats); None: off
    stats_interval: float = 86400.0  # one line a day...
    stats_start: float = 0.0  # ...at this many seconds after 00:00 UTC, as the reference
    stats_summary_interval: float | None = 3600.0  # the one-line log summary; None: off
    metrics_port: int | None = None  # Prometheus /metrics over HTTP; None: off
    metrics_bind: str = "127.0.0.1"
    relays: RelayPoolConfig = field(default_factory=RelayPoolConfig)  # the proxy role's links
    proxy_client_concurrency: int = DEFAULT_CLIENT_CONCURRENCY  # [PROXY] client_concurrency
    resolver: ResolverSettings | None = None  # [NAMES] with enable = on; None: NAME NO_RESOLVER
    resolver_concurrency: int = DEFAULT_RESOLVER_CONCURRENCY  # [NAMES] resolver_concurrency
    metrics_file: str | None = None  # the Prometheus text file; None: off
    metrics_file_interval: float = 60.0  # [STORE_LOG] prometheus_interval
    stats_backup_file: str | None = None  # counters saved on stop, restored on start
    # A worker of several ([TRANSPORT] workers > 1): listen with SO_REUSEPORT; ``own_ports``
    # are listened on by this worker alone (tests place clients on a chosen worker).
    reuse_port: bool = False
    own_ports: tuple[int, ...] = ()


@dataclass(slots=True)
class WorkerRole:
    """A server that is worker ``index`` of several (``[TRANSPORT] workers``): ``link`` to
    the hub; ``committer``: one shared by workers in one process (tests), else None."""

    index: int
    link: Link
    committer: GroupCommitter | None = None
    # The cap on connections shared with the other workers: one object (workers in one
    # process) or the shared-memory array of every worker's count (processes).
    limit: ConnectionLimit | None = None
    connection_slots: object | None = None
    count: int = 1  # how many workers there are (numbering connections uniquely)


def verification_threads() -> int:
    """Worker threads that may verify signatures at once: all CPUs but the event loop's."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    return max(1, cpus - 1)


class Server:
    """Everything that serves one store; usable in-process (tests, the traffic tool)."""

    def __init__(
        self,
        store: Store,
        identity: Identity,
        ssl_context,
        broker_config: BrokerConfig | None = None,
        settings: ServerSettings | None = None,
        web: WebServer | None = None,
        port_contexts: dict[int, ssl.SSLContext] | None = None,
        worker: "WorkerRole | None" = None,
    ) -> None:
        self.store = store
        self.identity = identity
        self.ssl_context = ssl_context
        self.settings = settings or ServerSettings()
        # One of several workers (cluster.py): its delivery reaches the others through the
        # hub; workers in one process (tests) share one committer, run by worker 0.
        self.worker = worker
        if worker is not None and worker.committer is not None:
            self.committer = worker.committer
        else:
            self.committer = GroupCommitter(store, self.settings.commit_interval)
        self.delivery = LocalDelivery() if worker is None else ClusterDelivery()
        # The broker answers RSLV itself exactly when no resolver is configured.
        broker_config = replace(broker_config or BrokerConfig(), names_enabled=self.settings.resolver is not None)
        self.broker = Broker(store, broker_config, self.committer, delivery=self.delivery)
        self.resolver: HttpResolver | None = None  # made in serve() from settings.resolver
        self.cluster: ClusterNode | None = None
        if worker is not None:
            self.delivery.committer = self.committer
            self.cluster = ClusterNode(self.broker, self.delivery)
            self.cluster.clients = lambda: len(self.connections)
        # The other workers' counters and clients, gathered before each operator answer.
        self._others: tuple[dict[str, int], int] = ({}, 0)
        self.connections: set[Connection] = set()
        if worker is not None and worker.limit is not None:
            self.limit = worker.limit
        elif worker is not None and worker.connection_slots is not None:
            self.limit = ConnectionLimit(self.settings.max_connections, worker.connection_slots, worker.index)
        else:
            self.limit = ConnectionLimit(self.settings.max_connections)
        self._verify_limiter: trio.CapacityLimiter | None = None  # made in serve()
        self.registry = (ConnectionRegistry(self.broker.clock) if worker is None
                         else ConnectionRegistry(self.broker.clock, worker.index + 1, worker.count))
        self.control = None if self.settings.control is None else ControlPort(self, self.settings.control)
        if self.cluster is not None:  # every worker shows its connections to worker 0's control port
            view = (self.control.target if self.control is not None else ServerControl(self)).view
            self.cluster.answerers[cluster.ASK_CONTROL] = view
        self.ports: list[int] = []
        self.metrics_port: int | None = None
        self.started_at = self.broker.clock()
        self.stats_from = self.started_at  # what the counters count from (a restored period's start)
        # Queues active per day/week/month; the broker records into it where it has the hook.
        # With several workers, the others forward theirs to the one that answers for all.
        if worker is not None and worker.index != cluster.STATS_WORKER:
            self.active_queues = ForwardedActiveQueues(
                lambda hashes, ntf: self.delivery.announce((cluster.ACTIVE, hashes, ntf)), self.broker.clock)
        else:
            self.active_queues = ActiveQueues()
        self.broker.active_queues = self.active_queues
        self.stats_log: StatsLog | None = None
        # Several workers: the daily line counts every worker (this view is refreshed
        # before each line); one process: the broker's live counters themselves.
        self._stats_view: dict[str, int] = self.broker.stats if worker is None else {}
        if self.settings.stats_file is not None:
            self.stats_log = StatsLog(
                self.settings.stats_file, self._stats_view, self.stats_gauges, self.started_at, self.active_queues
            )
        self.web = web
        self.port_contexts = port_contexts or {}  # a port's own context (the one shared with HTTPS)
        self._stop = trio.Event()
        self.relays = RelayPool(self.settings.relays)  # the proxy role's links to relays
        self.proxy = ProxyService(self.relays, self.broker.count, identity.max_version)

    def stop(self) -> None:
        self._stop.set()

    async def serve(self, task_status: trio.TaskStatus = trio.TASK_STATUS_IGNORED) -> None:
        """Serve until ``stop()``; ``task_status.started`` receives the bound ports."""
        s = self.settings
        self._verify_limiter = trio.CapacityLimiter(verification_threads())
        if s.stats_backup_file is not None and (self.worker is None or self.worker.index == cluster.STATS_WORKER):
            self.restore_stats(s.stats_backup_file)
        worker = self.worker
        primary = worker is None or worker.index == cluster.STATS_WORKER
        async with trio.open_nursery() as background:
            if worker is None or worker.committer is None or primary:
                background.start_soon(self.committer.run)
            if worker is not None:
                background.start_soon(self.delivery.send_to, worker.link)
                background.start_soon(self.cluster.receive_from, worker.link)
            background.start_soon(self._release_memory)
            background.start_soon(self._deliver_notifications)
            if primary:  # one expiry pass over the shared store is enough
                background.start_soon(self._expire_messages)
            if s.inactive_ttl is not None:
                background.start_soon(self._expire_inactive_clients)
            if s.stats_file is not None and primary:
                background.start_soon(self._write_daily_stats)
            if s.stats_summary_interval is not None:
                background.start_soon(self._log_stats_summary)
            if s.metrics_file is not None and primary:
                background.start_soon(self._write_metrics_file)
            if s.resolver is not None:
                self.resolver = HttpResolver(s.resolver)
                background.start_soon(self._probe_resolver, self.resolver)
            try:
                async with self.relays:  # closed once no connection is left to use it
                    await self._serve_connections(task_status)
            finally:
                if self.resolver is not None:
                    with trio.CancelScope(shield=True):
                        await self.resolver.aclose()
            with trio.CancelScope(shield=True):
                await self.committer.flush()
                if worker is not None and not primary:
                    # Its counts outlive it: the hub adds them to every later sum.
                    await self.delivery.flush_final((cluster.RETIRED, dict(self.broker.stats)))
                elif worker is not None and s.stats_backup_file is not None:
                    await self.refresh_stats()  # the others stopped first: their final counts
            background.cancel_scope.cancel()
        if s.stats_backup_file is not None and (self.worker is None or self.worker.index == cluster.STATS_WORKER):
            self.save_stats(s.stats_backup_file)

    async def _serve_connections(self, task_status: trio.TaskStatus) -> None:
        """Listen and serve connections until ``stop()``."""
        s = self.settings
        async with trio.open_nursery() as connections:
            ports = []
            for port, reuse in [(p, s.reuse_port) for p in s.ports] + [(p, False) for p in s.own_ports]:
                try:
                    listeners = await connections.start(
                        lambda task_status, port=port, reuse=reuse: serve_blocks(
                            self._handle,
                            port,
                            self.port_contexts.get(port, self.ssl_context),
                            host=s.bind,
                            handshake_timeout=s.tls_handshake_timeout,
                            on_handshake_error=self._tls_error,
                            limit=self.limit,
                            reuse_port=reuse,
                            task_status=task_status,
                        )
                    )
                except OSError as e:  # raised before listening: say which port
                    raise ListenError("SMP", s.bind, port, e) from e
                ports.append(listeners[0].socket.getsockname()[1])
            self.ports = ports[: len(s.ports)]
            self.own_ports = ports[len(s.ports) :]
            self.registry.watch_ports(self.ports)
            primary = self.worker is None or self.worker.index == cluster.STATS_WORKER
            # With several workers, worker 0 alone serves the operator's ports.
            if s.metrics_port is not None and primary:
                try:
                    self.metrics_port = await connections.start(
                        serve_metrics, make_registry(self.stats_values), s.metrics_port, s.metrics_bind,
                        self.refresh_stats if self.cluster is not None else None,
                    )
                except OSError as e:
                    raise ListenError("metrics", s.metrics_bind, s.metrics_port, e) from e
            if self.web is not None and primary:
                await connections.start(self.web.serve, s.bind)
            if self.control is not None and primary:
                try:
                    await connections.start(self.control.serve)
                except OSError as e:
                    raise ListenError("control", "127.0.0.1", self.control.settings.port, e) from e
            task_status.started(ports)
            await self._stop.wait()
            # Stop accepting and reading; what was processed is committed below.
            connections.cancel_scope.cancel()

    async def _probe_resolver(self, resolver: HttpResolver) -> None:
        """The reference's start-up probe of the resolver: only logged, the server serves
        either way (RSLV answers ERR NAME RESOLVER until the resolver is reachable)."""
        log.info("[NAMES] resolver enabled, endpoint %s", resolver.settings.endpoint)
        problem = await resolver.probe()
        if problem is None:
            log.info("[NAMES] resolver health probe ok")
        else:
            log.warning("[NAMES] resolver health probe failed (%s); the server still starts, "
                        "RSLV answers ERR NAME RESOLVER until the resolver is reachable", problem)

    def stats_gauges(self) -> dict[str, int]:
        store = self.store
        queues = store.queue_count()
        return {
            "qCount": queues,
            "queueCount": queues,
            "msgCount": store.stored_message_count(),
            "notifierCount": store.notifier_count(),
            "ntfCount": sum(len(n) for n in self.broker.notifications.values()),
        }

    async def refresh_stats(self) -> None:
        """Several workers: ask the others for their counters (``counter_totals``)."""
        if self.cluster is not None:
            self._others = await self.cluster.others_stats()

    def counter_totals(self) -> dict[str, int]:
        """The counters of this worker plus the others' as last gathered (one process:
        the broker's)."""
        totals = dict(self.broker.stats)
        for name, n in self._others[0].items():
            totals[name] = totals.get(name, 0) + n
        return totals

    def _update_stats_view(self) -> None:
        if self._stats_view is not self.broker.stats:
            self._stats_view.clear()
            self._stats_view.update(self.counter_totals())

    def client_count(self) -> int:
        return len(self.connections) + self._others[1]

    def stats_values(self) -> dict[str, int]:
        """Counters since start, gauges now, and the connected clients (for /metrics)."""
        return {
            **self.counter_totals(),
            **self.stats_gauges(),
            **self.active_queues.gauges(),
            "clients": self.client_count(),
        }

    def save_stats(self, path: str) -> None:
        """The counters of the daily line in progress, as the reference's stats backup."""
        stats_log = self.stats_log
        self._update_stats_view()
        counters = stats_log.since_last_line() if stats_log is not None else self.counter_totals()
        backup = StatsBackup(
            stats_log.from_time if stats_log is not None else self.stats_from,
            {**counters, **self.stats_gauges()},
            self.active_queues.all,
            self.active_queues.ntf,
        )
        try:
            tmp = f"{path}.tmp"
            with open(tmp, "w", encoding="ascii") as f:
                f.write(encode_backup(backup))
            os.replace(tmp, path)
            log.info("statistics saved to %s", path)
        except OSError as e:
            log.error("cannot save the statistics to %s: %s", path, e)

    def restore_stats(self, path: str) -> None:
        """Continue the counts saved by the previous run, then rename the file ``.bak``."""
        backup = read_stats_backup(path)
        if backup is None:
            return
        gauges = self.stats_gauges()
        for name, n in backup.counters.items():
            if name not in gauges:  # sizes are read from the store, never restored
                self.broker.stats[name] = self.broker.stats.get(name, 0) + n
        self.active_queues.all, self.active_queues.ntf = backup.active, backup.active_ntf
        self.stats_from = backup.from_time
        if self.stats_log is not None:
            self.stats_log.restore(backup)
        os.replace(path, f"{path}.bak")
        log.info("statistics restored from %s", path)
        for name in ("qCount", "msgCount"):
            if name in backup.counters and backup.counters[name] != gauges[name]:
                log.warning("%s differs: saved statistics %d, store %d", name, backup.counters[name], gauges[name])

    async def _write_daily_stats(self) -> None:
        s = self.settings
        assert self.stats_log is not None
        log.info("daily stats in %s", s.stats_file)
        while True:
            await trio.sleep(seconds_until(self.broker.clock(), s.stats_start, s.stats_interval))
            await self.refresh_stats()
            self._update_stats_view()
            try:
                self.stats_log.write(self.broker.clock())
            except OSError as e:
                log.error("cannot write the daily stats to %s: %s", s.stats_file, e)

    async def _write_metrics_file(self) -> None:
        s = self.settings
        log.info("Prometheus metrics written every %g s to %s", s.metrics_file_interval, s.metrics_file)
        while True:
            await trio.sleep(s.metrics_file_interval)
            await self.refresh_stats()
            try:
                write_metrics_file(s.metrics_file, metrics_text(self.stats_values(), self.broker.clock(), self.stats_from))
            except OSError as e:
                log.error("cannot write the metrics to %s: %s", s.metrics_file, e)

    async def _log_stats_summary(self) -> None:
        if self.worker is not None and self.worker.index != cluster.STATS_WORKER:
            return  # worker 0 logs the sums
        while True:
            await trio.sleep(self.settings.stats_summary_interval)
            await self.refresh_stats()
            log.info("%s", stats_summary(self.counter_totals(), self.stats_gauges(), self.client_count()))

    def _tls_error(self, error: Exception) -> None:
        # The transport's message already says "TLS handshake failed: ...".
        if self.settings.log_tls_errors:
            log.warning("%s", error)
        else:
            log.debug("%s", error)

    async def _handle(self, conn) -> None:
        s = self.settings
        if self.web is not None and self.web.is_web(conn):
            await self.web.serve_shared(conn)  # a browser on the port shared with HTTPS
            return
        connection = Connection(
            conn,
            self.broker,
            self.committer,
            self.identity,
            s.handshake_timeout,
            outbox_limit=s.outbox_limit,
            verify_limiter=self._verify_limiter,
            delivery=self.delivery,
            proxy=self.proxy,
            proxy_concurrency=s.proxy_client_concurrency,
            resolver=self.resolver,
            resolver_concurrency=s.resolver_concurrency,
        )
        self.connections.add(connection)
        self.registry.opened(connection, _local_port(conn))
        try:
            await connection.run()
        except trio.Cancelled:
            raise
        except Exception:
            # A bug must cost one connection, never the server.
            log.exception("connection failed")
        finally:
            self.registry.closed(connection)
            self.connections.discard(connection)

    async def _release_memory(self) -> None:
        """After a flood of connections ends, give the freed memory back to the OS (a
        full collection pauses the loop briefly, so only after a large drop)."""
        limit = self.limit
        while True:
            await trio.sleep(self.settings.memory_trim_interval)
            if trim_due(limit.peak, limit.active):
                released = release_free_memory()
                log.debug("connections %d (peak %d): memory released (heap trimmed: %s)",
                          limit.active, limit.peak, released)
                limit.peak = limit.active

    async def _deliver_notifications(self) -> None:
        last_expiry = time.monotonic()
        while True:
            await trio.sleep(self.settings.ntf_delivery_interval)
            self.delivery.route(self.broker.deliver_notifications().pushes)
            if time.monotonic() - last_expiry > NTF_EXPIRE_INTERVAL:
                self.broker.expire_notifications()
                last_expiry = time.monotonic()

    async def _expire_messages(self) -> None:
        ttl = self.broker.config.message_ttl
        if ttl is None:
            return
        if not self.settings.expire_messages_on_start:
            await trio.sleep(self.settings.expire_check_interval)
        while True:
            # Bounded steps, each its own commit, so expiry never stalls the server.
            while True:
                try:
                    with self.store.unit():
                        expired = self.store.expire_all(int(self.broker.clock()) - ttl, EXPIRE_STEP_BUDGET)
                    self.broker.count("msgExpired", expired)
                except StoreError as e:
                    self.committer.store_failed(e)
                    break  # try again at the next interval
                await trio.sleep(0)
                if self.store.expire_pass_complete:
                    break
            await trio.sleep(self.settings.expire_check_interval)

    async def _expire_inactive_clients(self) -> None:
        s = self.settings
        while True:
            await trio.sleep(s.inactive_check_interval)
            cutoff = self.broker.clock() - s.inactive_ttl
            for connection in list(self.connections):
                peer = connection.peer
                if peer is None or self.delivery.subscriptions.has_any(peer.id):
                    continue
                if max(connection.last_received, connection.last_sent) < cutoff:
                    await connection.conn.aclose()


def read_stats_backup(path: str) -> StatsBackup | None:
    """The saved statistics (None: no file); StatsBackupError with the path if unreadable."""
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            text = f.read()
    except FileNotFoundError:
        return None
    try:
        return decode_backup(text)
    except StatsBackupError as e:
        raise StatsBackupError(f"cannot read the saved statistics {path}: {e}") from None


def _local_port(conn) -> int:
    port = getattr(conn, "local_port", None)
    if port is not None:
        return port
    try:
        return conn.stream.socket.getsockname()[1]
    except (AttributeError, OSError, IndexError):
        return 0


def load_serving_identity(
    directory: str | os.PathLike[str], max_version: int | None = None, accept_service_credentials: bool = True
) -> tuple[ServerCredentials, Identity, ssl.SSLContext]:
    """The one path from a credentials directory to what serving needs: the checked
    credentials, the handshake identity (offering up to ``max_version``, default what
    smpfast announces) and the TLS context with the reference's profile, asking clients for
    their (service) certificates unless ``accept_service_credentials`` is off."""
    from ..transport.tls import server_context

    creds = load_server_credentials(directory)
    files = CredentialPaths.in_dir(directory)
    ctx = server_context(str(files.server_cert), str(files.server_key), cafile=str(files.ca_cert),
                         request_client_certs=accept_service_credentials)
    extra = {} if max_version is None else {"max_version": max_version}
    return creds, Identity(creds.key_hash, tuple(creds.chain_der), creds.private_key, **extra), ctx


def build_server(config: Config, max_version: int | None = None,
                 worker: WorkerRole | None = None) -> tuple[Server, str]:
    """Open the store and credentials named by ``config``; returns the server and its
    address line. ``max_version``: offer up to it instead of what smpfast announces
    (tests and benchmarks of features beyond the announced range). ``worker``: the server
    is that worker of several processes (the store is opened shared, ports with SO_REUSEPORT)."""
    from ..store.lmdb import LMDBStore

    creds, identity, ctx = load_serving_identity(
        config.config_dir, max_version, accept_service_credentials=config.transport.accept_service_credentials
    )
    address = config.address(creds.fingerprint)
    sc = config.store
    store = LMDBStore(str(sc.path), map_size=sc.map_size, map_size_max=sc.map_size_max, durability=sc.durability,
                      shared=worker is not None)
    sl = config.store_log
    broker_config = BrokerConfig(
        allow_new_queues=config.auth.new_queues,
        create_password=None if config.auth.create_password is None else config.auth.create_password.encode(),
        message_ttl=sl.message_ttl_seconds,
        expire_on_send=sl.expire_messages_on_send,
        ntf_ttl=sl.notification_ttl_seconds,
    )
    ic = config.inactive_clients
    auth = config.auth
    control = None
    if config.transport.control_port is not None:
        control = ControlSettings(
            port=config.transport.control_port,
            admin_password=None if auth.control_port_admin_password is None else auth.control_port_admin_password.encode(),
            user_password=None if auth.control_port_user_password is None else auth.control_port_user_password.encode(),
            daily_block_quota=auth.daily_block_queue_quota,
        )
    settings = ServerSettings(
        bind=config.transport.bind,
        ports=tuple(config.transport.port),
        commit_interval=sc.commit_interval_ms / 1000.0,
        expire_messages_on_start=sl.expire_messages_on_start,
        inactive_ttl=float(ic.ttl) if ic.disconnect else None,
        inactive_check_interval=float(ic.check_interval),
        log_tls_errors=config.transport.log_tls_errors,
        max_connections=config.limits.max_connections,
        tls_handshake_timeout=float(config.limits.tls_handshake_timeout),
        handshake_timeout=float(config.limits.smp_handshake_timeout),
        outbox_limit=config.limits.outbox_limit,
        control=control,
        stats_file=str(config.config_dir / STATS_FILE) if sl.log_stats else None,
        stats_summary_interval=float(config.log.stats_interval) or None,
        metrics_port=config.prometheus.port,
        metrics_bind=config.prometheus.bind,
        relays=RelayPoolConfig(
            socks=config.proxy.socks_proxy,
            socks_mode=config.proxy.socks_mode,
            host_mode=config.proxy.host_mode,
            required_host_mode=config.proxy.required_host_mode,
            own_server_domains=config.proxy.own_server_domains,
            connect_timeout=float(config.limits.proxy_connect_timeout),
            request_timeout=float(config.limits.proxy_request_timeout),
            max_relays=config.limits.proxy_relay_connections,
        ),
        proxy_client_concurrency=config.proxy.client_concurrency,
        resolver=config.names.resolver_settings(),
        resolver_concurrency=config.names.resolver_concurrency,
        metrics_file=str(config.config_dir / METRICS_FILE) if sl.prometheus_interval else None,
        metrics_file_interval=float(sl.prometheus_interval or 60),
        # As the reference: the counters are saved across restarts with the daily stats on.
        stats_backup_file=str(config.config_dir / STATS_BACKUP_FILE) if sl.log_stats else None,
        reuse_port=worker is not None,
    )
    web, port_contexts = _web_server(config, creds.fingerprint)
    server = Server(store, identity, ctx, broker_config, settings, web=web, port_contexts=port_contexts,
                    worker=worker)
    return server, address


def _web_server(config: Config, fingerprint: str) -> tuple[WebServer | None, dict[int, ssl.SSLContext]]:
    """[WEB]: the page written, and the SMP port shared with HTTPS given its own context."""
    if config.web is None:
        return None, {}
    from .. import __version__
    from ..transport.tls import server_context

    facts = ServerFacts(
        # Never the queue-creation password: the page is public.
        address=server_address(fingerprint, config.transport.host, config.transport.port),
        message_expiration_days=config.store_log.expire_messages_days,
        stats_enabled=config.store_log.log_stats,
        new_queues_allowed=config.auth.new_queues,
        password_required=config.auth.create_password is not None,
        version=__version__,
    )
    web = WebServer(config.web, render_page(config.information, facts), config.transport.port)
    contexts: dict[int, ssl.SSLContext] = {}
    if web.shared_port is not None and web.tls is not None:
        files = config.files
        shared = server_context(str(files.server_cert), str(files.server_key), cafile=str(files.ca_cert))
        share_port(shared, web.tls)
        contexts[web.shared_port] = shared
    return web, contexts


class JsonLogFormatter(logging.Formatter):
    """[LOG] format = json: one object per line."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


LOG_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING, "error": logging.ERROR}
TEXT_LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(level: str, fmt: str, *, debug: bool = False) -> None:
    """The root logger as [LOG] says (``--debug`` forces debug), on standard error."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonLogFormatter() if fmt == "json" else logging.Formatter(TEXT_LOG_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if debug else LOG_LEVELS[level])


def run(config: Config, *, debug: bool = False, max_version: int | None = None) -> int:
    """Serve ``config`` in the foreground until SIGINT/SIGTERM; returns the exit code.
    Start-up failures propagate (the command turns them into one line)."""
    workers = config.transport.worker_count
    if workers > 1:
        from .supervisor import run_workers

        return run_workers(config, workers, debug=debug, max_version=max_version)
    configure_logging(config.log.level, config.log.format, debug=debug)
    open_files = raise_open_files_limit()
    server, address = build_server(config, max_version)

    async def main() -> None:
        # Signals are caught before the address is out: whoever waits for it may stop us.
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with trio.open_nursery() as nursery:
                ports = await nursery.start(server.serve)
                bind = server.settings.bind or "*"
                log.info("smpfast serving on %s port(s) %s", bind, ",".join(map(str, ports)))
                log.info("up to %d open files (one per connection)", open_files)
                if config.limits.max_connections > open_files:
                    log.warning(
                        "[LIMITS] max_connections = %d is above the open files limit (%d): "
                        "connections beyond that fail to be accepted",
                        config.limits.max_connections, open_files,
                    )
                # Everything loaded so far lives as long as the process: keep it out of the
                # collector's full passes, which otherwise stall the event loop for tens of ms.
                gc.collect()
                gc.freeze()
                print(f"Server address: {address}", flush=True)
                async for signum in signals:
                    log.info("received %s, stopping", signal.Signals(signum).name)
                    server.stop()
                    break

    try:
        trio.run(main)
    finally:
        server.store.close()
    log.info("stopped")
    return 0

