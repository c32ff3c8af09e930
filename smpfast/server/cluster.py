"""Delivery across worker processes: a hub gives the workers' subscription events one order.

With ``[TRANSPORT] workers = N`` each worker process has its own connections, broker and
``Subscriptions``; they share the store. A queue's subscriber may live in another worker than
its sender, so what crosses workers is addressed by entity, never by connection id: "rid was
subscribed", "rid may hold a message for its subscriber", "rid was deleted"...

Every worker sends its events to the ``Hub`` (in the supervisor), which handles them in the
order it receives them, keeps which worker holds each subscription, and sends each event to
the worker it concerns, the sender's own subscription events back to it as an echo. That one
order settles races as one process would: when two workers take the same queue at once, the
one the hub saw last keeps it and the other's subscriber gets END. A worker that subscribed
locally ignores a takeover that the hub ordered before its own subscription (its echo has not
come back yet: ``pending``).

A message crosses without its body: the sender's worker commits it, and once it is durable
tells the hub "kick rid"; the subscriber's worker reads the queue head from the shared store
and delivers it if its subscriber is idle (``Broker.deliver_head``), as ``SUB`` would. A
subscription's echo also re-reads the head, which covers a message committed after the
``SUB`` read the queue but announced to the hub before it. Notifications (NMSG) carry their
encrypted metadata and wait in the hub while nobody holds their notifier.

Events are tuples of bytes, ints and strings; a link carries lists of them (marshal frames
on a Unix socket between processes, memory channels inside one process for tests).
"""

from __future__ import annotations

import itertools
import logging
import marshal
import struct
from collections.abc import Callable
from typing import TYPE_CHECKING

import trio

from .delivery import NTF, RCV, ConnId, LocalDelivery, Push, Subscriptions

if TYPE_CHECKING:
    from .broker import Broker
    from .committer import GroupCommitter

log = logging.getLogger(__name__)

REMOTE: ConnId = 0  # the pseudo connection of pushes for other workers (peer ids start at 1)
Event = tuple

# worker -> hub (the echo of S/N/V comes back with the same tag)
SUBSCRIBED = "S"  # (rid): a connection of this worker became the queue's subscriber
NTF_SUBSCRIBED = "N"  # (nid)
SERVICE_TAKEN = "V"  # (party, service id)
CLOSED = "C"  # (rids, nids, services): subscriptions that ended with their connection
KICK = "K"  # (rid, msg id or None[, service id]): a durable message (that one) may wait for the
# queue's subscriber (or its messaging service's session)
DELETED = "D"  # (rid, tell): the queue is gone; tell: its subscriber gets DELD
NTF_DELETED = "X"  # (nid, tell)
NOTIFICATIONS = "T"  # (nid, service id or None, [(msg id, ts, nonce, encrypted meta)])
LEFT_SERVICE = "L"  # (party, service id, entity, "END" | "DELD")
BLOCKED = "B"  # (rid, encoded blocking info)
ASSOCIATED = "A"  # (rid): a messaging service's session took the queue; its direct subscriber,
# wherever it is, gets END
ACTIVE = "a"  # ([queue hashes], [of them with notifications]): queues active today in this
# worker, for worker 0's day/week/month sets (each hash once a day per worker)
# worker -> supervisor (not the hub): (index, ports) once the worker listens
READY = "R"
# Questions to every other worker (worker 0 answers the control port and /metrics for all):
ASK = "q"  # worker -> hub: (kind, tag); hub -> each other worker: (kind, tag, requester)
ANSWER = "Q"  # worker -> hub: (tag, requester, answer); hub -> requester: (tag, {worker: answer},
# retired counters)
RETIRED = "F"  # worker -> hub: (counters) of a worker that stops: in every later answer
ASK_STATS = "stats"  # answer: (counters, clients)
ASK_CONTROL = "control"  # answer: the control port's view of the worker (control.py)
STATS_WORKER = 0  # the worker that answers for all: control port, /metrics, daily line, backup
# hub -> worker: another worker took the subscription
LOST = "s"
NTF_LOST = "n"
SERVICE_LOST = "v"

_LOST_OF = {SUBSCRIBED: LOST, NTF_SUBSCRIBED: NTF_LOST, SERVICE_TAKEN: SERVICE_LOST}


class Hub:
    """The sans-IO hub: ``receive(worker, events)`` returns what to send to which worker."""

    def __init__(self) -> None:
        self.owners: dict[tuple, int] = {}  # (tag, entity...) -> worker holding the subscription
        # Notifications nobody holds: nid -> [service id, items]; service id -> nids.
        self.held: dict[bytes, list] = {}
        self._held_by_service: dict[bytes, set[bytes]] = {}
        self.events = 0
        self.workers: set[int] = set()  # live workers (the supervisor keeps this)
        # Open questions: (requester, tag) -> (workers yet to answer, {worker: answer}, kind)
        self._asked: dict[tuple[int, int], tuple[set[int], dict[int, object], str]] = {}
        # Each worker's counters as it last answered: a worker that dies keeps those in
        # ``retired`` (what it counted since is lost with it).
        self.last_counters: dict[int, dict[str, int]] = {}
        self.retired: dict[str, int] = {}  # counters of workers that stopped

    def receive(self, worker: int, events: list[Event]) -> dict[int, list[Event]]:
        out: dict[int, list[Event]] = {}

        def send(target: int, event: Event) -> None:
            out.setdefault(target, []).append(event)

        owners = self.owners
        self.events += len(events)
        for event in events:
            tag = event[0]
            if tag in _LOST_OF:
                key = event
                previous = owners.get(key)
                owners[key] = worker
                send(worker, event)  # the echo
                if previous is not None and previous != worker:
                    send(previous, (_LOST_OF[tag], *event[1:]))
                if tag == NTF_SUBSCRIBED:
                    self._release_held(worker, event[1], None, send)
                elif tag == SERVICE_TAKEN and event[1] == NTF:
                    for nid in list(self._held_by_service.get(event[2], ())):
                        self._release_held(worker, nid, event[2], send)
            elif tag == KICK and len(event) > 3:
                owner = owners.get((SERVICE_TAKEN, RCV, event[3]))
                if owner is not None:
                    send(owner, event)
            elif tag == KICK or tag == BLOCKED:
                owner = owners.get((SUBSCRIBED, event[1]))
                if owner is not None:
                    send(owner, event)
            elif tag == ASSOCIATED:
                owner = owners.pop((SUBSCRIBED, event[1]), None)
                if owner is not None and owner != worker:
                    send(owner, (LOST, event[1]))
            elif tag == ACTIVE:
                if worker != STATS_WORKER:
                    send(STATS_WORKER, event)
            elif tag == DELETED:
                owner = owners.pop((SUBSCRIBED, event[1]), None)
                if owner is not None and owner != worker:
                    send(owner, event)
            elif tag == NTF_DELETED:
                nid = event[1]
                self._drop_held(nid)
                owner = owners.pop((NTF_SUBSCRIBED, nid), None)
                if owner is not None and owner != worker:
                    send(owner, event)
            elif tag == NOTIFICATIONS:
                _, nid, sid, items = event
                key = (NTF_SUBSCRIBED, nid) if sid is None else (SERVICE_TAKEN, NTF, sid)
                owner = owners.get(key)
                if owner is not None:
                    send(owner, event)
                else:
                    self._hold(nid, sid, items)
            elif tag == LEFT_SERVICE:
                owner = owners.get((SERVICE_TAKEN, event[1], event[2]))
                if owner is not None and owner != worker:
                    send(owner, event)
            elif tag == RETIRED:
                self.last_counters.pop(worker, None)  # its final counts instead
                self._retire(worker, event[1], send)
            elif tag == ASK:
                _, kind, ask_tag = event
                others = self.workers - {worker}
                self._asked[(worker, ask_tag)] = (others, {}, kind)
                for other in others:
                    send(other, (ASK, kind, ask_tag, worker))
                self._answer_asked(send)
            elif tag == ANSWER:
                _, ask_tag, requester, answer = event
                asked = self._asked.get((requester, ask_tag))
                if asked is not None and worker in asked[0]:
                    asked[0].discard(worker)
                    asked[1][worker] = answer
                    if asked[2] == ASK_STATS:
                        self.last_counters[worker] = answer[0]  # type: ignore[index]
                    self._answer_asked(send)
            elif tag == CLOSED:
                _, rids, nids, services = event
                for key in [(SUBSCRIBED, r) for r in rids] + [(NTF_SUBSCRIBED, n) for n in nids] + [
                    (SERVICE_TAKEN, p, s) for p, s in services
                ]:
                    if owners.get(key) == worker:
                        del owners[key]
            else:
                log.error("unknown cluster event %r from worker %d", tag, worker)
        return out

    def worker_gone(self, worker: int) -> dict[int, list[Event]]:
        """A worker died: its connections, and so its subscriptions, are gone. Returns the
        answers it no longer holds up."""
        for key in [k for k, w in self.owners.items() if w == worker]:
            del self.owners[key]
        for key in [k for k in self._asked if k[0] == worker]:
            del self._asked[key]
        out: dict[int, list[Event]] = {}
        self._retire(worker, self.last_counters.pop(worker, {}),
                     lambda target, event: out.setdefault(target, []).append(event))
        return out

    def _retire(self, worker: int, counters: dict[str, int], send: Callable) -> None:
        """``worker`` answers no more; ``counters`` go into every later answer."""
        for name, n in counters.items():
            self.retired[name] = self.retired.get(name, 0) + n
        self.workers.discard(worker)
        for waiting, answers, _ in self._asked.values():
            waiting.discard(worker)
            answers.pop(worker, None)  # counted in ``retired`` from now on
        self._answer_asked(send)

    def _answer_asked(self, send: Callable) -> None:
        for key, (waiting, answers, _) in list(self._asked.items()):
            if not waiting:
                del self._asked[key]
                send(key[0], (ANSWER, key[1], answers, dict(self.retired)))

    def expire_held(self, cutoff: float) -> int:
        """Drop held notifications older than ``cutoff`` (the notification TTL)."""
        removed = 0
        for nid in list(self.held):
            sid, items = self.held[nid]
            kept = [n for n in items if n[1] >= cutoff]
            removed += len(items) - len(kept)
            if kept:
                self.held[nid][1] = kept
            else:
                self._drop_held(nid)
        return removed

    def _hold(self, nid: bytes, sid: bytes | None, items: list) -> None:
        entry = self.held.get(nid)
        if entry is None:
            entry = self.held[nid] = [sid, []]
        elif entry[0] != sid and entry[0] is not None:
            self._held_by_service.get(entry[0], set()).discard(nid)
        entry[0] = sid
        entry[1].extend(items)
        if sid is not None:
            self._held_by_service.setdefault(sid, set()).add(nid)

    def _drop_held(self, nid: bytes) -> list | None:
        entry = self.held.pop(nid, None)
        if entry is not None and entry[0] is not None:
            nids = self._held_by_service.get(entry[0])
            if nids is not None:
                nids.discard(nid)
                if not nids:
                    del self._held_by_service[entry[0]]
        return entry

    def _release_held(self, worker: int, nid: bytes, sid: bytes | None, send: Callable) -> None:
        entry = self.held.get(nid)
        if entry is not None and entry[0] == sid:
            self._drop_held(nid)
            send(worker, (NOTIFICATIONS, nid, sid, entry[1]))


class ClusterSubscriptions(Subscriptions):
    """Subscriptions that tell the hub when a connection of this worker takes one, and
    remember which of those the hub has not echoed yet."""

    __slots__ = ("announce", "pending")

    def __init__(self, announce: Callable[[Event], None]) -> None:
        super().__init__()
        self.announce = announce
        self.pending: dict[Event, int] = {}

    def _taken(self, event: Event) -> None:
        self.pending[event] = self.pending.get(event, 0) + 1
        self.announce(event)

    def echoed(self, event: Event) -> bool:
        """The hub ordered our own event: True once none of ours for it is in flight."""
        n = self.pending.get(event, 0) - 1
        if n > 0:
            self.pending[event] = n
            return False
        self.pending.pop(event, None)
        return True

    def in_flight(self, event: Event) -> bool:
        return event in self.pending

    def subscribe(self, conn: ConnId, rid: bytes):
        result = super().subscribe(conn, rid)
        self._taken((SUBSCRIBED, rid))
        return result

    def subscribe_notifier(self, conn: ConnId, nid: bytes):
        new, previous = super().subscribe_notifier(conn, nid)
        if new:
            self._taken((NTF_SUBSCRIBED, nid))
        return new, previous

    def take_service(self, party: str, conn: ConnId, service_id: bytes, add=None, subs=None,
                     subscribed: bool = False):
        held = self.service_subscriber.get((party, service_id)) == conn
        result = super().take_service(party, conn, service_id, add, subs, subscribed)
        if not held:
            self._taken((SERVICE_TAKEN, party, service_id))
        return result

    def close(self, conn: ConnId) -> None:
        rids = [r for r in self.queues_of(conn) if self.subscriber.get(r) == conn]
        nids = [n for n in self.notifiers_of(conn) if self.ntf_subscriber.get(n) == conn]
        services = [key for key, c in self.service_subscriber.items() if c == conn]
        super().close(conn)
        if rids or nids or services:
            self.announce((CLOSED, rids, nids, services))


class ClusterDelivery(LocalDelivery):
    """Local delivery, plus the pushes addressed to ``REMOTE``: events for the hub, sent in
    order once the commit generation they wait for is durable (dropped if it failed)."""

    __slots__ = ("outgoing", "_wakeup", "committer")
    remote = True

    def __init__(self) -> None:
        super().__init__(ClusterSubscriptions(self.announce))
        self.outgoing: list[tuple[int, list[Event]]] = []
        self._wakeup = trio.Event()
        self.committer: GroupCommitter | None = None

    def announce(self, event: Event) -> None:
        """An event that waits for no commit (subscriptions are not stored)."""
        self.outgoing.append((0, [event]))
        self._wakeup.set()

    def route(self, pushes: list[Push]) -> None:
        local = []
        for push in pushes:
            if push[0] == REMOTE:
                self.outgoing.append((push[1], [answer[2] for answer in push[2]]))
                self._wakeup.set()
            else:
                local.append(push)
        if local:
            super().route(local)

    async def flush_final(self, event: Event, timeout: float = 2.0) -> None:
        """A stopping worker: send what is still queued and then ``event``, directly."""
        self.outgoing.append((0, [event]))
        self._wakeup.set()
        with trio.move_on_after(timeout):
            while self.outgoing:
                await trio.sleep(0.005)

    async def send_to(self, link: "Link") -> None:
        """Forever: send the events whose generations are settled, in order."""
        from .committer import CommitFailed

        committer = self.committer
        assert committer is not None
        outgoing = self.outgoing
        while True:
            await self._wakeup.wait()
            self._wakeup = trio.Event()
            while outgoing:
                head = outgoing[0][0]
                if not committer.settled(head):
                    try:
                        await committer.wait_durable(head)
                    except CommitFailed:
                        pass
                ready: list[Event] = []
                n = 0
                for generation, events in outgoing:
                    if not committer.settled(generation):
                        break
                    n += 1
                    if not committer.failed(generation):
                        ready.extend(events)
                del outgoing[:n]
                if ready:
                    await link.send(ready)


class ClusterNode:
    """A worker's side of the hub: applies what the hub sends to this worker's broker."""

    def __init__(self, broker: "Broker", delivery: ClusterDelivery) -> None:
        self.broker = broker
        self.delivery = delivery
        self.subscriptions: ClusterSubscriptions = delivery.subscriptions  # type: ignore[assignment]
        self.received = 0
        # What this worker answers the others' questions with (kind -> answer now).
        self.answerers: dict[str, Callable[[], object]] = {
            ASK_STATS: lambda: (dict(broker.stats), self.clients()),
        }
        self.clients: Callable[[], int] = lambda: 0
        self._tags = itertools.count()
        self._asked: dict[int, tuple[trio.Event, list]] = {}

    async def ask(self, kind: str, timeout: float = 1.0) -> tuple[dict[int, object], dict[str, int]]:
        """Every other live worker's answer to ``kind`` (those that answered in time), and
        the counters of the workers that stopped."""
        tag = next(self._tags)
        done, result = self._asked[tag] = (trio.Event(), [{}, {}])
        self.delivery.announce((ASK, kind, tag))
        try:
            with trio.move_on_after(timeout):
                await done.wait()
        finally:
            del self._asked[tag]
        return result[0], result[1]

    async def others_stats(self, timeout: float = 1.0) -> tuple[dict[str, int], int]:
        """The other workers' counters (with the stopped ones') and clients, summed."""
        answers, retired = await self.ask(ASK_STATS, timeout)
        counters = dict(retired)
        clients = 0
        for worker_counters, worker_clients in answers.values():  # type: ignore[misc]
            for name, n in worker_counters.items():
                counters[name] = counters.get(name, 0) + n
            clients += worker_clients
        return counters, clients

    async def receive_from(self, link: "Link") -> None:
        while True:
            events = await link.receive()
            if events is None:
                log.error("the supervisor's hub went away")
                return
            self.handle(events)

    def handle(self, events: list[Event]) -> None:
        broker = self.broker
        subs = self.subscriptions
        route = self.delivery.route
        self.received += len(events)
        heads: list[tuple] = []  # (queue, the durable message announced, its service)
        for event in events:
            tag = event[0]
            if tag == SUBSCRIBED:
                if subs.echoed(event):
                    heads.append((event[1], None, None))
            elif tag in (NTF_SUBSCRIBED, SERVICE_TAKEN):
                subs.echoed(event)
            elif tag == LOST:
                if not subs.in_flight((SUBSCRIBED, event[1])):
                    effects, owed = broker.remote_takeover(event[1])
                    route(effects.pushes)
                    if owed:  # it had a message unacknowledged: the new subscriber gets it
                        self.delivery.announce((KICK, event[1], None))
            elif tag == NTF_LOST:
                if not subs.in_flight((NTF_SUBSCRIBED, event[1])):
                    route(broker.remote_ntf_takeover(event[1]).pushes)
            elif tag == SERVICE_LOST:
                if not subs.in_flight((SERVICE_TAKEN, event[1], event[2])):
                    route(broker.remote_service_takeover(event[1], event[2]).pushes)
            elif tag == KICK:
                heads.append((event[1], event[2], event[3] if len(event) > 3 else None))
            elif tag == DELETED:
                route(broker.remote_deleted(event[1], event[2]).pushes)
            elif tag == NTF_DELETED:
                route(broker.remote_notifier_deleted(event[1], event[2]).pushes)
            elif tag == NOTIFICATIONS:
                route(broker.add_notifications(event[1], event[2], event[3]).pushes)
            elif tag == LEFT_SERVICE:
                route(broker.remote_left_service(event[1], event[2], event[3], event[4]).pushes)
            elif tag == BLOCKED:
                route(broker.remote_blocked(event[1], event[2]).pushes)
            elif tag == ACTIVE:
                broker.active_queues.merge(event[1], event[2])
            elif tag == ASK:
                _, kind, ask_tag, requester = event
                answerer = self.answerers.get(kind)
                self.delivery.announce((ANSWER, ask_tag, requester, None if answerer is None else answerer()))
            elif tag == ANSWER:
                asked = self._asked.get(event[1])
                if asked is not None:
                    asked[1][:] = [event[2], event[3]]
                    asked[0].set()
            else:
                log.error("unknown cluster event %r", tag)
        if heads:
            route(broker.deliver_heads(heads).pushes)


# --- links

_LENGTH = struct.Struct(">I")


class Link:
    """A framed duplex channel of event lists."""

    async def send(self, events: list[Event]) -> None:
        raise NotImplementedError

    async def receive(self) -> list[Event] | None:
        raise NotImplementedError


def encode_frame(events: list[Event]) -> bytes:
    body = marshal.dumps(events)
    return _LENGTH.pack(len(body)) + body


class FrameReader:
    """Splits a byte stream into frames."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[list[Event]]:
        buf = self._buffer
        buf += data
        frames = []
        while len(buf) >= 4:
            (n,) = _LENGTH.unpack_from(buf)
            if len(buf) < 4 + n:
                break
            frames.append(marshal.loads(bytes(buf[4 : 4 + n])))
            del buf[: 4 + n]
        return frames


class SocketLink(Link):
    """A link over a connected Unix socket (a standard socket, used through trio)."""

    def __init__(self, sock) -> None:
        self._stdlib = sock
        self._sock: trio.socket.SocketType | None = None
        self._reader = FrameReader()
        self._frames: list[list[Event]] = []
        self.bytes_sent = 0
        self.bytes_received = 0
        self._send_lock = trio.Lock()

    @property
    def sock(self) -> trio.socket.SocketType:
        if self._sock is None:
            self._sock = trio.socket.from_stdlib_socket(self._stdlib)
        return self._sock

    async def send(self, events: list[Event]) -> None:
        data = memoryview(encode_frame(events))
        async with self._send_lock:
            while data:
                n = await self.sock.send(data)
                data = data[n:]
                self.bytes_sent += n

    async def receive(self) -> list[Event] | None:
        while not self._frames:
            data = await self.sock.recv(1 << 20)
            if not data:
                return None
            self.bytes_received += len(data)
            self._frames.extend(self._reader.feed(data))
        merged: list[Event] = []
        for frame in self._frames:
            merged.extend(frame)
        self._frames.clear()
        return merged


class MemoryLink(Link):
    """One worker's end of an in-process link (tests: several workers in one process)."""

    def __init__(self, worker: int, to_hub: trio.MemorySendChannel, from_hub: trio.MemoryReceiveChannel) -> None:
        self.worker = worker
        self._to_hub = to_hub
        self._from_hub = from_hub

    async def send(self, events: list[Event]) -> None:
        # Through marshal, as between processes: no object is shared by accident.
        await self._to_hub.send((self.worker, marshal.loads(marshal.dumps(events))))

    async def receive(self) -> list[Event] | None:
        try:
            return await self._from_hub.receive()
        except trio.EndOfChannel:
            return None


class MemoryHub:
    """The hub for workers in one process (tests): ``link(worker)`` gives a worker's end."""

    def __init__(self) -> None:
        self.hub = Hub()
        self._to_workers: dict[int, trio.MemorySendChannel] = {}
        self._inbox_send, self._inbox = trio.open_memory_channel(float("inf"))

    def link(self, worker: int) -> MemoryLink:
        to_worker, from_hub = trio.open_memory_channel(float("inf"))
        self._to_workers[worker] = to_worker
        self.hub.workers.add(worker)
        return MemoryLink(worker, self._inbox_send, from_hub)

    async def run(self) -> None:
        async for worker, events in self._inbox:
            for target, out in self.hub.receive(worker, events).items():
                await self._to_workers[target].send(out)
