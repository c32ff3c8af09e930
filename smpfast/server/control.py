"""The control port's trio shell: a TCP listener on 127.0.0.1 moving lines between operators
and :class:`~smpfast.server.admin.ControlSession`, and the server facts the commands read.

Like every answer of the server, a control-port answer is written only once the state it
shows is durable: after each command the shell waits for the store generation that holds
everything visible at that moment (a ``block`` is on disk before ``ok, queue blocked``).
"""

from __future__ import annotations

import gc
import itertools
import logging
import platform
import resource
import threading
import time
import weakref
from dataclasses import astuple, dataclass
from typing import TYPE_CHECKING

import trio

from ..protocol import errors as E
from ..store.records import QueueRecord
from .admin import (
    DEFAULT_DAILY_BLOCK_QUOTA,
    FLUSH,
    BlockQuota,
    ClientInfo,
    ControlPasswords,
    ControlReply,
    ControlSession,
    Counters,
    SocketCounts,
    SocketTask,
    TaskInfo,
    show_store_error,
)
from .cluster import ASK_CONTROL
from .committer import CommitFailed

if TYPE_CHECKING:
    from .connection import Connection
    from .main import Server

log = logging.getLogger("smpfast.control")

CONTROL_HOST = "127.0.0.1"  # never anything else: the port has no TLS
MAX_LINE = 65536  # a longer line closes the connection (the reference reads without a bound)
RECEIVE_SIZE = 4096


@dataclass(frozen=True, slots=True)
class ControlSettings:
    port: int  # 0: any free port (tests)
    admin_password: bytes | None = None
    user_password: bytes | None = None
    daily_block_quota: int = DEFAULT_DAILY_BLOCK_QUOTA


# ---------------------------------------------------------------------------- connections


@dataclass(slots=True)
class _Socket:
    number: int
    port: int
    accepted_at: float
    task: "weakref.ref[trio.lowlevel.Task]"


class ConnectionRegistry:
    """Numbers the server's connections and counts them per port (for ``sockets``,
    ``clients`` and ``socket-threads``). Counted from the completed TLS handshake."""

    def __init__(self, clock=time.time, first: int = 1, step: int = 1) -> None:
        self.clock = clock
        # Several workers: worker k numbers k+1, k+1+N, ... so that numbers are unique.
        self._numbers = itertools.count(first, step)
        self._active: dict["Connection", _Socket] = {}
        self._accepted: dict[int, int] = {}
        self._closed: dict[int, int] = {}

    def watch_ports(self, ports: list[int]) -> None:
        for port in ports:
            self._accepted.setdefault(port, 0)
            self._closed.setdefault(port, 0)

    def opened(self, connection: "Connection", port: int) -> None:
        task = trio.lowlevel.current_task()
        self._active[connection] = _Socket(next(self._numbers), port, self.clock(), weakref.ref(task))
        self._accepted[port] = self._accepted.get(port, 0) + 1
        self._closed.setdefault(port, 0)

    def closed(self, connection: "Connection") -> None:
        s = self._active.pop(connection, None)
        if s is not None:
            self._closed[s.port] = self._closed.get(s.port, 0) + 1

    def counts(self) -> list[SocketCounts]:
        active: dict[int, int] = {}
        for s in self._active.values():
            active[s.port] = active.get(s.port, 0) + 1
        return [SocketCounts(p, n, self._closed.get(p, 0), active.get(p, 0)) for p, n in sorted(self._accepted.items())]

    def active(self) -> list[tuple["Connection", int, int, float, "trio.lowlevel.Task | None"]]:
        """(connection, number, port, accepted at, task) of every open connection."""
        return [(c, s.number, s.port, s.accepted_at, s.task()) for c, s in self._active.items()]


# ---------------------------------------------------------------------------- what commands read


# The control commands whose answers show every worker's connections or tasks: before one
# of them, worker 0 asks the others for their views.
VIEW_COMMANDS = frozenset({b"clients", b"sockets", b"threads", b"socket-threads", b"server-info"})


class ServerControl:
    """The :class:`~smpfast.server.admin.ControlTarget` of a running server. With several
    workers, worker 0's answers what every worker holds: its own connections and tasks plus
    the other workers' views, gathered through the hub before each command that shows them."""

    def __init__(self, server: "Server") -> None:
        self.server = server
        self.started_at = server.broker.clock()
        self._task_ids: "weakref.WeakKeyDictionary[trio.lowlevel.Task, int]" = weakref.WeakKeyDictionary()
        worker = server.worker
        self._next_task_id = itertools.count(1) if worker is None else itertools.count(worker.index + 1, worker.count)
        self._others: list[dict] = []  # the other workers' ``view()``, as last gathered

    async def refresh(self) -> None:
        cluster = self.server.cluster
        if cluster is not None:
            answers, _ = await cluster.ask(ASK_CONTROL)
            self._others = [answers[w] for w in sorted(answers) if answers[w] is not None]  # type: ignore[misc]

    def view(self) -> dict:
        """This worker's connections and tasks, as plain values (for the hub)."""
        return {
            "clients": [astuple(c) for c in self._clients()],
            "sockets": [astuple(c) for c in self.server.registry.counts()],
            "tasks": [astuple(t) for t in self._tasks()],
            "socket_tasks": [(t.port, t.socket_id, None if t.task is None else astuple(t.task))
                             for t in self._socket_tasks()],
            "subscribers": self._subscribers(),
        }

    def now(self) -> float:
        return self.server.broker.clock()

    def counters(self) -> Counters:
        broker, store = self.server.broker, self.server.store
        stats = self.server.counter_totals()
        return Counters(
            from_time=self.started_at,
            queues_created=stats.get("qCreated", 0),
            queues_deleted=stats.get("qDeletedAll", 0),
            messages_sent=stats.get("msgSent", 0),
            messages_received=stats.get("msgRecv", 0),
            queue_count=store.queue_count(),
            notifier_count=store.notifier_count(),
            message_count=store.stored_message_count(),
            notification_count=sum(len(n) for n in broker.notifications.values()),
        )

    def clients(self) -> list[ClientInfo]:
        out = self._clients() + [ClientInfo(*c) for other in self._others for c in other["clients"]]
        return sorted(out, key=lambda c: c.client_id)

    def _clients(self) -> list[ClientInfo]:
        out = []
        subscriptions = self.server.delivery.subscriptions
        for connection, number, _port, accepted_at, _task in self.server.registry.active():
            peer = connection.peer
            if peer is None:
                continue  # still in the SMP handshake: not a client yet
            queues = subscriptions.queues_of(peer.id)
            out.append(ClientInfo(
                client_id=number,
                session_id=peer.session_id,
                connected=peer.connected,
                created_at=accepted_at,
                rcv_active_at=connection.last_received,
                snd_active_at=connection.last_sent,
                subscriptions=len(queues),
                prohibited=sum(1 for s in queues.values() if s.prohibited),
                ntf_subscriptions=len(subscriptions.notifiers_of(peer.id)),
                outbox=len(connection.outbox),
            ))
        return out

    def sockets(self) -> list[SocketCounts]:
        totals: dict[int, list[int]] = {}
        counts = [astuple(c) for c in self.server.registry.counts()]
        for port, accepted, closed, active in counts + [c for other in self._others for c in other["sockets"]]:
            total = totals.setdefault(port, [0, 0, 0])
            total[0] += accepted
            total[1] += closed
            total[2] += active
        return [SocketCounts(port, *totals[port]) for port in sorted(totals)]

    def _task_info(self, task: trio.lowlevel.Task) -> TaskInfo:
        tid = self._task_ids.get(task)
        if tid is None:
            tid = self._task_ids[task] = next(self._next_task_id)
        state = "running" if task is trio.lowlevel.current_task() else "suspended"
        return TaskInfo(tid, state, task.name)

    def tasks(self) -> list[TaskInfo]:
        return self._tasks() + [TaskInfo(*t) for other in self._others for t in other["tasks"]]

    def _tasks(self) -> list[TaskInfo]:
        out = []
        todo = [trio.lowlevel.current_root_task()]
        while todo:
            task = todo.pop()
            if task is None:
                continue
            out.append(self._task_info(task))
            for nursery in task.child_nurseries:
                todo.extend(nursery.child_tasks)
        return out

    def socket_tasks(self) -> list[SocketTask]:
        others = [SocketTask(port, number, None if task is None else TaskInfo(*task))
                  for other in self._others for port, number, task in other["socket_tasks"]]
        return sorted(self._socket_tasks() + others, key=lambda t: (t.port, t.socket_id))

    def _socket_tasks(self) -> list[SocketTask]:
        return [
            SocketTask(port, number, None if task is None else self._task_info(task))
            for _c, number, port, _at, task in self.server.registry.active()
        ]

    def subscribers(self) -> tuple[dict[bytes, int], dict[bytes, int]]:
        smp, ntf = self._subscribers()
        for other in self._others:
            other_smp, other_ntf = other["subscribers"]
            smp.update(other_smp)
            ntf.update(other_ntf)
        return smp, ntf

    def _subscribers(self) -> tuple[dict[bytes, int], dict[bytes, int]]:
        numbers = {c.peer.id: n for c, n, _p, _a, _t in self.server.registry.active() if c.peer is not None}
        subscriptions = self.server.delivery.subscriptions
        smp = {rid: numbers[c] for rid, c in subscriptions.subscriber.items() if c in numbers}
        ntf = {nid: numbers[c] for nid, c in subscriptions.ntf_subscriber.items() if c in numbers}
        return smp, ntf

    def runtime_stats(self) -> list[str]:
        # The reference prints GHC's RTSStats; these are the Python runtime's facts (of
        # worker 0's process only, with several workers).
        usage = resource.getrusage(resource.RUSAGE_SELF)
        gen = [s["collections"] for s in gc.get_stats()]
        return [
            f"runtime: {platform.python_implementation()} {platform.python_version()}",
            f"gc collections (per generation): {gen}",
            f"gc tracked objects: {len(gc.get_objects())}",
            f"max RSS (KiB): {usage.ru_maxrss}",
            f"CPU time (user, system): ({usage.ru_utime:.3f}, {usage.ru_stime:.3f})",
            f"OS threads: {threading.active_count()}",
        ]

    def sender_queue(self, entity_id: bytes) -> QueueRecord | None:
        store = self.server.store
        return store.queue_by_sender(entity_id) or store.queue_by_link(entity_id)

    def block_queue(self, q: QueueRecord, info: E.BlockingInfo) -> None:
        self.server.delivery.route(self.server.broker.block_queue(q, info).pushes)

    def unblock_queue(self, q: QueueRecord) -> None:
        self.server.broker.unblock_queue(q)

    def delete_queue(self, q: QueueRecord) -> int:
        return self.server.broker.delete_queue(q)


# ---------------------------------------------------------------------------- the listener


class ControlPort:
    """Serves the control port of ``server`` (``serve`` under the server's nursery)."""

    def __init__(self, server: "Server", settings: ControlSettings) -> None:
        self.server = server
        self.settings = settings
        self.target = ServerControl(server)
        self.passwords = ControlPasswords(settings.admin_password, settings.user_password)
        self.quota = BlockQuota(settings.daily_block_quota)  # shared by all sessions
        self.port: int | None = None

    async def serve(self, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(self.settings.port, host=CONTROL_HOST)
        self.port = listeners[0].socket.getsockname()[1]
        log.info("control port on %s:%d", CONTROL_HOST, self.port)
        task_status.started(self.port)
        await trio.serve_listeners(self._handle, listeners)

    async def _handle(self, stream: trio.SocketStream) -> None:
        try:
            await self._session(stream)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the operator went away
        except Exception:
            log.exception("control port connection failed")
        finally:
            with trio.CancelScope(shield=True):
                await stream.aclose()

    async def _session(self, stream: trio.SocketStream) -> None:
        session = ControlSession(self.target, self.passwords, self.quota)
        await self._write(stream, session.greeting())
        buffer = b""
        while True:
            data = await stream.receive_some(RECEIVE_SIZE)
            if not data:
                if buffer:  # a last line without its newline
                    await self._write(stream, session.handle_line(buffer))
                return
            buffer += data
            while True:
                end = buffer.find(b"\n")
                if end < 0:
                    break
                line, buffer = buffer[:end], buffer[end + 1 :]
                await self.server.refresh_stats()  # several workers: their counters too
                if line.strip().split(b" ", 1)[0] in VIEW_COMMANDS:
                    await self.target.refresh()  # and their connections and tasks
                reply = session.handle_line(line)
                await self._write(stream, reply)
                if reply.close:
                    return
            if len(buffer) > MAX_LINE:
                return

    async def _write(self, stream: trio.SocketStream, reply: ControlReply) -> None:
        """Write the reply's lines, each group only once what it shows is durable (a
        failed commit replaces the rest of the reply by the error)."""
        pending: list[str] = []
        for step in (*reply.steps, FLUSH):
            if step is not FLUSH:
                pending.append(step)  # type: ignore[arg-type]
                continue
            committer = self.server.committer
            try:
                await committer.wait_durable(committer.current())
            except CommitFailed as e:
                error = show_store_error(RuntimeError("store error"))
                await stream.send_all(f"error: {error}\n".encode())
                log.error("control port answer not sent, its commit failed: %s", e)
                return
            if pending:
                await stream.send_all(("\n".join(pending) + "\n").encode("utf-8"))
                pending = []
