"""Who is subscribed to what, and how answers reach the connections they are for.

The broker decides *what* must be sent and returns it as ``Effects``: replies for the
connection whose block it processed, and pushes (MSG, END, DELD, NMSG, ERR BLOCKED) for
other connections, each batch with the commit generation that must be durable before it
leaves. A ``Delivery`` routes the pushes: ``LocalDelivery`` hands them to connections of this
process; a delivery across worker processes or nodes implements the same two members.

Subscription state lives here, not in the connections: ``Subscriptions`` records each
connection's relation to a queue (subscribed, or used with GET) and the one message
delivered to it and not yet acknowledged, and which connection is a queue's (or a
notifier's) subscriber.

Services (v16): a service session subscribes as its service, not queue by queue. For each
party (``RCV``: a messaging service's queues; ``NTF``: a notifier service's notifiers) a
service has at most one subscribed connection, which counts the associated queues it holds
and hashes (v19 IdsHash) the associated queues it holds (the reference's serviceSubsCount).
A newer session of the same service takes the service over and the old one is told
``ENDS <its count> <its hash>``; a queue leaving the service (subscribed by another
connection, deleted) costs the service's connection that queue, with ``END``/``DELD`` for
it. Which queues belong to a service is in the store. A messaging service's connection
receives the messages of its queues through per-queue delivery states in its relations,
made on first delivery (``service_delivery``), without being each queue's subscriber.
"""

from __future__ import annotations

from typing import Protocol

from ..protocol.ids_hash import NO_SERVICE_SUBS, ServiceSubs, add_service_subs, queue_id_hash, subtract_service_subs

ConnId = int
Answer = tuple[bytes, bytes, object]  # (corrId, entityId, response or event)
Batch = tuple[int, list[Answer]]  # (commit generation, answers sent together)
Push = tuple[ConnId, int, list[Answer]]  # (connection, commit generation, answers)


class Subscription:
    """A connection's relation to one queue: subscribed (``prohibited`` False) or used with
    GET (``prohibited`` True), and the one message delivered and not yet acknowledged."""

    __slots__ = ("prohibited", "delivered")

    def __init__(self, prohibited: bool = False) -> None:
        self.prohibited = prohibited
        self.delivered: bytes | None = None


class Subscriptions:
    """Recipient and notifier subscriptions of every open connection.

    A queue has at most one subscriber; a connection that used GET on a queue holds a
    (prohibited) relation to it without being its subscriber.
    """

    __slots__ = ("subscriber", "ntf_subscriber", "service_subscriber", "_queues", "_notifiers",
                 "_service_subs", "_service_subscribed")

    def __init__(self) -> None:
        self.subscriber: dict[bytes, ConnId] = {}  # recipient id -> subscribed connection
        self.ntf_subscriber: dict[bytes, ConnId] = {}  # notifier id -> subscribed connection
        # (party, service id) -> the connection subscribed as that service
        self.service_subscriber: dict[tuple[str, bytes], ConnId] = {}
        self._queues: dict[ConnId, dict[bytes, Subscription]] = {}
        self._notifiers: dict[ConnId, set[bytes]] = {}
        # (party, conn) -> (count, IdsHash) of the associated queues it holds as its service
        self._service_subs: dict[tuple[str, ConnId], ServiceSubs] = {}
        self._service_subscribed: set[tuple[str, ConnId]] = set()  # SUBS/NSUBS done

    # --- connections

    def open(self, conn: ConnId) -> None:
        self._queues[conn] = {}
        self._notifiers[conn] = set()

    def close(self, conn: ConnId) -> None:
        """The connection went away: its subscriptions go (nobody took them over: no END)."""
        for rid in self._queues.pop(conn, ()):
            if self.subscriber.get(rid) == conn:
                del self.subscriber[rid]
        for nid in self._notifiers.pop(conn, ()):
            if self.ntf_subscriber.get(nid) == conn:
                del self.ntf_subscriber[nid]
        for key in [k for k, c in self.service_subscriber.items() if c == conn]:
            del self.service_subscriber[key]
        for party in (RCV, NTF):
            self._service_subs.pop((party, conn), None)
            self._service_subscribed.discard((party, conn))

    def is_open(self, conn: ConnId) -> bool:
        return conn in self._queues

    def queues_of(self, conn: ConnId) -> dict[bytes, Subscription]:
        """The connection's relations to queues (SUB and GET), by recipient id."""
        return self._queues.get(conn, {})

    def notifiers_of(self, conn: ConnId) -> set[bytes]:
        return self._notifiers.get(conn, set())

    def has_any(self, conn: ConnId) -> bool:
        return (
            bool(self._queues.get(conn))
            or bool(self._notifiers.get(conn))
            or any(self.service_count(party, conn) or (party, conn) in self._service_subscribed
                   for party in (RCV, NTF))
        )

    # --- recipients

    def get(self, conn: ConnId, rid: bytes) -> Subscription | None:
        return self._queues[conn].get(rid)

    def subscribe(self, conn: ConnId, rid: bytes) -> tuple[Subscription, ConnId | None]:
        """Make ``conn`` the queue's subscriber with a new relation; returns it and the
        connection that lost the subscription (which must be told END), if any."""
        sub = self._queues[conn][rid] = Subscription()
        previous = self.subscriber.get(rid)
        self.subscriber[rid] = conn
        if previous is None or previous == conn:
            return sub, None
        self._queues[previous].pop(rid, None)
        return sub, previous

    def add_get(self, conn: ConnId, rid: bytes) -> Subscription:
        """The relation GET creates: no subscriber changes."""
        sub = self._queues[conn][rid] = Subscription(prohibited=True)
        return sub

    def subscriber_of(self, rid: bytes) -> tuple[ConnId, Subscription] | None:
        conn = self.subscriber.get(rid)
        if conn is None:
            return None
        sub = self._queues[conn].get(rid)
        return None if sub is None else (conn, sub)

    def drop(self, conn: ConnId, rid: bytes) -> None:
        """``conn``'s relation to ``rid`` ends (the queue is gone for it)."""
        self._queues[conn].pop(rid, None)
        if self.subscriber.get(rid) == conn:
            del self.subscriber[rid]

    def drop_queue(self, rid: bytes) -> ConnId | None:
        """The queue is gone: its subscriber's relation ends. Returns that subscriber."""
        conn = self.subscriber.pop(rid, None)
        if conn is not None:
            self._queues[conn].pop(rid, None)
        return conn

    # --- notifiers

    def subscribe_notifier(self, conn: ConnId, nid: bytes) -> tuple[bool, ConnId | None]:
        """NSUB: (whether ``conn`` was not yet subscribed, the connection that lost the
        subscription and must be told END)."""
        mine = self._notifiers[conn]
        if nid in mine:
            return False, None
        mine.add(nid)
        previous = self.ntf_subscriber.get(nid)
        self.ntf_subscriber[nid] = conn
        if previous is None or previous == conn:
            return True, None
        self._notifiers[previous].discard(nid)
        return True, previous

    def drop_notifier(self, nid: bytes) -> ConnId | None:
        """The notifier is gone: its subscriber's subscription ends. Returns that subscriber."""
        conn = self.ntf_subscriber.pop(nid, None)
        if conn is not None:
            self._notifiers[conn].discard(nid)
        return conn


    # --- services

    def service_count(self, party: str, conn: ConnId) -> int:
        """The associated queues ``conn`` holds as its service's subscriber."""
        return self._service_subs.get((party, conn), NO_SERVICE_SUBS)[0]

    def service_subs(self, party: str, conn: ConnId) -> ServiceSubs:
        """(count, IdsHash) of the associated queues ``conn`` holds as its service's
        subscriber (what a repeated SUBS/NSUBS answers and ENDS carries)."""
        return self._service_subs.get((party, conn), NO_SERVICE_SUBS)

    def service_subscribed(self, party: str, conn: ConnId) -> bool:
        """Whether ``conn`` subscribed all its service's queues (SUBS/NSUBS)."""
        return (party, conn) in self._service_subscribed

    def subscriber_of_service(self, party: str, service_id: bytes) -> ConnId | None:
        return self.service_subscriber.get((party, service_id))

    def take_service(self, party: str, conn: ConnId, service_id: bytes, add: ServiceSubs | None = None,
                     subs: ServiceSubs | None = None,
                     subscribed: bool = False) -> tuple[ConnId, ServiceSubs] | None:
        """``conn`` becomes the service's subscriber, holding ``add`` more queues (or
        exactly ``subs``; ``subscribed``: all of them, after SUBS/NSUBS). Returns the
        connection that held the service before and the (count, hash) it held (it must be
        told ENDS with it), or None. The old holder's deliveries for the service's queues end
        with it."""
        key = (party, conn)
        held = self._service_subs.get(key, NO_SERVICE_SUBS) if subs is None else subs
        self._service_subs[key] = held if add is None else add_service_subs(held, add)
        if subscribed:
            self._service_subscribed.add(key)
        previous = self.service_subscriber.get((party, service_id))
        self.service_subscriber[(party, service_id)] = conn
        if previous is None or previous == conn:
            return None
        lost = self._service_subs.pop((party, previous), NO_SERVICE_SUBS)
        self._service_subscribed.discard((party, previous))
        if party == RCV:
            self._drop_service_deliveries(previous)
        return previous, lost

    def drop_service(self, party: str, service_id: bytes) -> tuple[ConnId, ServiceSubs] | None:
        """Another worker's session took the service: its subscriber here (if any) and
        the (count, hash) it held; its deliveries for the service's queues end."""
        conn = self.service_subscriber.pop((party, service_id), None)
        if conn is None:
            return None
        self._service_subscribed.discard((party, conn))
        lost = self._service_subs.pop((party, conn), NO_SERVICE_SUBS)
        if party == RCV:
            self._drop_service_deliveries(conn)
        return conn, lost

    def leave_service(self, party: str, service_id: bytes, queue_id: bytes,
                      except_conn: ConnId | None = None) -> ConnId | None:
        """Queue ``queue_id`` (a recipient id for RCV, a notifier id for NTF) left the
        service: the service's subscriber holds it no more (count and hash). Returns that
        subscriber unless it is ``except_conn`` (to be told END or DELD for the queue)."""
        conn = self.service_subscriber.get((party, service_id))
        if conn is None:
            return None
        key = (party, conn)
        self._service_subs[key] = subtract_service_subs(self._service_subs.get(key, NO_SERVICE_SUBS),
                                                        (1, queue_id_hash(queue_id)))
        if party == RCV and self.subscriber.get(queue_id) != conn:
            self._queues[conn].pop(queue_id, None)  # its delivery for the service
        return None if conn == except_conn else conn

    def service_delivery(self, conn: ConnId, rid: bytes) -> Subscription:
        """The delivery state of a queue ``conn`` receives as its messaging service's
        subscriber (made on first use; no queue subscriber changes)."""
        mine = self._queues[conn]
        sub = mine.get(rid)
        if sub is None:
            sub = mine[rid] = Subscription()
        return sub

    def _drop_service_deliveries(self, conn: ConnId) -> None:
        """``conn`` lost its service: the deliveries it had for the service's queues end
        (its own direct subscriptions and GET relations stay)."""
        mine = self._queues.get(conn)
        if not mine:
            return
        subscriber = self.subscriber
        for rid in [r for r, s in mine.items() if not s.prohibited and subscriber.get(r) != conn]:
            del mine[rid]


RCV = "R"  # the parties of service subscriptions: a messaging service's queues
NTF = "N"  # a notifier service's notifiers
class ProxyRequest:
    """A PRXY or PFWD the connection shell carries out with the proxy's relay links, and
    answers later (with ``corr_id`` and ``entity_id``) on connection ``conn``."""

    __slots__ = ("conn", "corr_id", "entity_id", "command")

    def __init__(self, conn: ConnId, corr_id: bytes, entity_id: bytes, command: object) -> None:
        self.conn = conn
        self.corr_id = corr_id
        self.entity_id = entity_id
        self.command = command

    def __repr__(self) -> str:
        return f"ProxyRequest({self.conn}, {self.corr_id.hex()[:12]}, {type(self.command).__name__})"


class ServiceWalk:
    """The delivery of the messages pending when a messaging service subscribed (its first
    SUBS of the session): the broker walks the service's queues a page at a time
    (``Broker.walk_service``) and the connection shell drives it between other work, only
    while the connection's outbox has room. ``cursor``: the last recipient id walked;
    ``errors``: per-queue ERRs sent with ALLS at the end."""

    __slots__ = ("conn", "service_id", "cursor", "done", "errors", "queues", "delivered")

    def __init__(self, conn: ConnId, service_id: bytes) -> None:
        self.conn = conn
        self.service_id = service_id
        self.cursor: bytes | None = None
        self.done = False
        self.errors: list[Answer] = []
        self.queues = 0  # walked so far
        self.delivered = 0  # MSGs sent by the walk

    def __repr__(self) -> str:
        return f"ServiceWalk({self.conn}, {self.queues} queues, done={self.done})"


class Effects:
    """What processing a block (or a server action) requires: ``replies`` for the
    connection that sent the block, ``pushes`` for other connections, in the order they
    were made. Each batch carries the commit generation it waits for. ``proxied``: the
    block's forked commands, answered later by the shell (they need the network): PRXY/PFWD
    as ``ProxyRequest``, RSLV with a resolver configured as ``names.NameRequest``. ``walks``:
    the service deliveries a SUBS started, driven by the shell after the replies."""

    __slots__ = ("replies", "pushes", "proxied", "walks")

    def __init__(self) -> None:
        self.replies: list[Batch] = []
        self.pushes: list[Push] = []
        self.proxied: list[ProxyRequest] = []
        self.walks: list[ServiceWalk] = []

    def __bool__(self) -> bool:
        return bool(self.replies) or bool(self.pushes) or bool(self.proxied) or bool(self.walks)


class Outbox(Protocol):
    """A connection's queue of answer batches, as a delivery fills it."""

    def put(self, generation: int, answers: list[Answer]) -> None:
        ...


class Delivery(Protocol):
    """Routes pushes to the connections they are for, and keeps the subscriptions."""

    subscriptions: Subscriptions

    def route(self, pushes: list[Push]) -> None:
        ...


class LocalDelivery:
    """Delivery to the connections of this process."""

    __slots__ = ("subscriptions", "_outboxes")
    remote = False  # no other worker processes (cluster.ClusterDelivery has them)

    def __init__(self, subscriptions: Subscriptions | None = None) -> None:
        self.subscriptions = subscriptions if subscriptions is not None else Subscriptions()
        self._outboxes: dict[ConnId, Outbox] = {}

    def attach(self, conn: ConnId, outbox: Outbox) -> None:
        self._outboxes[conn] = outbox

    def detach(self, conn: ConnId) -> None:
        self._outboxes.pop(conn, None)

    def route(self, pushes: list[Push]) -> None:
        outboxes = self._outboxes
        for conn, generation, answers in pushes:
            outbox = outboxes.get(conn)
            if outbox is not None:  # gone meanwhile: its subscriptions went with it
                outbox.put(generation, answers)
