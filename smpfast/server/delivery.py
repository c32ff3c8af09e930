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
(the reference's serviceSubsCount). A newer session of the same service takes the service
over and the old one is told ``ENDS <its count>``; a queue leaving the service (subscribed
by another connection, deleted) costs the service's connection one from its count, with
``END``/``DELD`` for the queue. Which queues belong to a service is in the store.
"""

from __future__ import annotations

from typing import Protocol

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
                 "_service_counts", "_service_subscribed")

    def __init__(self) -> None:
        self.subscriber: dict[bytes, ConnId] = {}  # recipient id -> subscribed connection
        self.ntf_subscriber: dict[bytes, ConnId] = {}  # notifier id -> subscribed connection
        # (party, service id) -> the connection subscribed as that service
        self.service_subscriber: dict[tuple[str, bytes], ConnId] = {}
        self._queues: dict[ConnId, dict[bytes, Subscription]] = {}
        self._notifiers: dict[ConnId, set[bytes]] = {}
        self._service_counts: dict[tuple[str, ConnId], int] = {}  # associated queues it holds
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
            self._service_counts.pop((party, conn), None)
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
            or any(self._service_counts.get((party, conn)) or (party, conn) in self._service_subscribed
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
        return self._service_counts.get((party, conn), 0)

    def service_subscribed(self, party: str, conn: ConnId) -> bool:
        """Whether ``conn`` subscribed all its service's queues (SUBS/NSUBS)."""
        return (party, conn) in self._service_subscribed

    def subscriber_of_service(self, party: str, service_id: bytes) -> ConnId | None:
        return self.service_subscriber.get((party, service_id))

    def take_service(self, party: str, conn: ConnId, service_id: bytes, add: int = 0,
                     count: int | None = None, subscribed: bool = False) -> tuple[ConnId, int] | None:
        """``conn`` becomes the service's subscriber, holding ``add`` more queues (or
        exactly ``count``; ``subscribed``: all of them, after SUBS/NSUBS). Returns the
        connection that held the service before and the count it held (it must be told
        ENDS with it), or None."""
        key = (party, conn)
        self._service_counts[key] = (self._service_counts.get(key, 0) if count is None else count) + add
        if subscribed:
            self._service_subscribed.add(key)
        previous = self.service_subscriber.get((party, service_id))
        self.service_subscriber[(party, service_id)] = conn
        if previous is None or previous == conn:
            return None
        lost = self._service_counts.pop((party, previous), 0)
        self._service_subscribed.discard((party, previous))
        return previous, lost

    def drop_service(self, party: str, service_id: bytes) -> tuple[ConnId, int] | None:
        """Another worker's session took the service: its subscriber here (if any) and
        the count it held."""
        conn = self.service_subscriber.pop((party, service_id), None)
        if conn is None:
            return None
        self._service_subscribed.discard((party, conn))
        return conn, self._service_counts.pop((party, conn), 0)

    def leave_service(self, party: str, service_id: bytes, except_conn: ConnId | None = None) -> ConnId | None:
        """One queue left the service: its subscriber (unless it is ``except_conn``) holds
        one less. Returns that subscriber (to be told END or DELD for the queue), or None."""
        conn = self.service_subscriber.get((party, service_id))
        if conn is None or conn == except_conn:
            return None
        key = (party, conn)
        self._service_counts[key] = max(0, self._service_counts.get(key, 0) - 1)
        return conn


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


class Effects:
    """What processing a block (or a server action) requires: ``replies`` for the
    connection that sent the block, ``pushes`` for other connections, in the order they
    were made. Each batch carries the commit generation it waits for. ``proxied``: the
    block's PRXY/PFWD, answered later by the shell (they need the network)."""

    __slots__ = ("replies", "pushes", "proxied")

    def __init__(self) -> None:
        self.replies: list[Batch] = []
        self.pushes: list[Push] = []
        self.proxied: list[ProxyRequest] = []

    def __bool__(self) -> bool:
        return bool(self.replies) or bool(self.pushes) or bool(self.proxied)


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
