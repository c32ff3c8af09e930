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

    __slots__ = ("subscriber", "ntf_subscriber", "_queues", "_notifiers")

    def __init__(self) -> None:
        self.subscriber: dict[bytes, ConnId] = {}  # recipient id -> subscribed connection
        self.ntf_subscriber: dict[bytes, ConnId] = {}  # notifier id -> subscribed connection
        self._queues: dict[ConnId, dict[bytes, Subscription]] = {}
        self._notifiers: dict[ConnId, set[bytes]] = {}

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

    def is_open(self, conn: ConnId) -> bool:
        return conn in self._queues

    def queues_of(self, conn: ConnId) -> dict[bytes, Subscription]:
        """The connection's relations to queues (SUB and GET), by recipient id."""
        return self._queues.get(conn, {})

    def notifiers_of(self, conn: ConnId) -> set[bytes]:
        return self._notifiers.get(conn, set())

    def has_any(self, conn: ConnId) -> bool:
        return bool(self._queues.get(conn)) or bool(self._notifiers.get(conn))

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
