"""SMP command semantics over a store, with no I/O.

The network layer hands each decrypted block of a connection to ``Broker.process_block``.
The broker splits and parses it, verifies every authorization of the block in one call,
executes the block's commands in one store write unit and then appends the answers to the
connection's outbox — and events (MSG, END, DELD, NMSG) to other connections' outboxes.
Each outbox entry is ``(generation, answers)``: the commit generation that must be durable
before the answers may be sent (see ``committer.py``), so a state change is acknowledged only
once it is on disk and nobody sees data that could still be rolled back. A block whose writes
fail is undone as a whole (store unit plus the broker's in-memory delivery state) and every
command of it is answered ``ERR STORE``; answers whose commit fails later are turned into
``ERR STORE`` by ``answers_after_failed_commit``.

Behaviour follows the reference server (Server.hs ``processCommand``,
``verifyQueueTransmission``); deliberate differences are noted where they occur.
"""

from __future__ import annotations

import base64
import datetime
import json
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Callable, Protocol

from ..crypto import auth as cauth
from ..crypto import message as cmsg
from ..crypto.keys import CryptoError
from ..protocol import commands as C
from ..protocol import errors as E
from ..protocol import versions as V
from ..protocol.errors import ParseError
from ..protocol.transmission import decode_server_transmissions, encode_server_transmission
from ..store import Store
from ..store.errors import StoreError, StoreFullError, StoreUsageError
from ..store.records import (
    MODE_CONTACT,
    MODE_MESSAGING,
    STATUS_ACTIVE,
    STATUS_BLOCKED,
    STATUS_OFF,
    NotifierRecord,
    QueueRecord,
    StoredMessage,
)

log = logging.getLogger(__name__)

ID_SIZE = 24
# Marks the shared in-block record of a queue an earlier command of the block deleted; never
# stored (the store has no such status).
_DELETED = "deleted"
DAY = 86400
EXPIRE_ON_SEND = True


# The reference answers a failing message or queue store with ERR STORE and a text.
STORE_FULL = E.ErrorType("STORE", "store full")
STORE_FAILED = E.ErrorType("STORE", "store error")

Answer = tuple[bytes, bytes, C.Response]  # (corrId, entityId, response or event)


class Durability(Protocol):
    """What the broker needs of the group committer."""

    def current(self) -> int:
        """The generation whose commit makes everything the store shows now durable."""
        ...

    def store_failed(self, error: Exception) -> None:
        """A write failed (logged once per episode by the committer)."""
        ...


class NoDurability:
    """For sans-IO tests and the memory store: everything is 'durable' at once."""

    def current(self) -> int:
        return 0

    def store_failed(self, error: Exception) -> None:
        log.error("store write failed: %s", error)


def store_error(error: Exception) -> E.ErrorType:
    return STORE_FULL if isinstance(error, StoreFullError) else STORE_FAILED


def encode_answers(client: "Client", answers: list[Answer]) -> list[bytes]:
    """The transmissions of one answer batch, as the connection writes them."""
    version, session_id = client.version, client.session_id
    return [
        encode_server_transmission(version, session_id, corr_id, entity_id, C.encode_response(msg, version))
        for corr_id, entity_id, msg in answers
    ]


@dataclass(slots=True)
class BrokerConfig:
    allow_new_queues: bool = True
    create_password: bytes | None = None
    quota: int = 128
    message_ttl: int | None = 21 * DAY  # seconds; None: messages never expire
    expire_on_send: bool = EXPIRE_ON_SEND  # the reference's default when the INI is silent
    ntf_ttl: int = 24 * 3600


class Subscription:
    """A connection's relation to one queue: subscribed (``prohibited`` False) or used with
    GET (``prohibited`` True), and the one message delivered and not yet acknowledged."""

    __slots__ = ("prohibited", "delivered")

    def __init__(self, prohibited: bool = False) -> None:
        self.prohibited = prohibited
        self.delivered: bytes | None = None


@dataclass(eq=False)
class Client:
    """Per-connection state the broker keeps. ``notify`` wakes the connection's writer."""

    version: int
    session_id: bytes
    session_private: bytes | None  # server X25519 session key (v >= 7)
    notify: Callable[[], None] = lambda: None
    subscriptions: dict[bytes, Subscription] = field(default_factory=dict)
    ntf_subscriptions: set[bytes] = field(default_factory=set)
    outbox: list[tuple[int, list[Answer]]] = field(default_factory=list)  # (generation, answers)
    connected: bool = True
    last_received: float = 0.0
    last_sent: float = 0.0
    verifier: cauth.AuthVerifier = field(init=False)
    implied_session: bool = field(init=False)
    service_auth: bool = field(init=False)

    def __post_init__(self) -> None:
        self.verifier = cauth.AuthVerifier(self.session_private)
        self.implied_session = V.implied_session(self.version)
        self.service_auth = V.service_auth(self.version)

    @property
    def has_subscriptions(self) -> bool:
        return bool(self.subscriptions) or bool(self.ntf_subscriptions)


@dataclass(slots=True)
class PreparedBlock:
    """A block between parsing and execution: its early errors, its parsed commands, and
    the authorizations to verify (``owners[i]`` is the index in ``pending`` of request i)."""

    errors: list = field(default_factory=list)
    pending: list = field(default_factory=list)
    requests: list = field(default_factory=list)
    owners: list = field(default_factory=list)


@dataclass(slots=True)
class _Pending:
    """A parsed transmission on its way through verification to execution."""

    corr_id: bytes
    entity_id: bytes
    cmd: C.Command
    queue: QueueRecord | None = None


class Broker:
    def __init__(
        self,
        store: Store,
        config: BrokerConfig | None = None,
        durability: Durability | None = None,
        clock: Callable[[], float] = time.time,
        random_bytes: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self.store = store
        self.config = config or BrokerConfig()
        self.durability = durability or NoDurability()
        self.clock = clock
        self.random_bytes = random_bytes
        self.subscribers: dict[bytes, Client] = {}  # recipient id -> subscribed connection
        self.ntf_subscribers: dict[bytes, Client] = {}  # notifier id -> subscribed connection
        self.notifications: dict[bytes, list[tuple[bytes, int, bytes, bytes]]] = {}
        self.stats: dict[str, int] = {}
        # While a block executes: the answers for other connections (sent only once the
        # block's writes joined the transaction) and how to undo its in-memory changes.
        self._deferred: list[tuple[Client, list[Answer]]] | None = None
        self._undo: list[tuple[Subscription, bytes | None]] | None = None  # delivery state
        self._undo_notes: list[list] | None = None  # notification lists appended to

    # ------------------------------------------------------------------ connections

    def disconnect(self, client: Client) -> None:
        """Drop the connection's subscriptions (no END: nobody took them over)."""
        client.connected = False
        for rid in client.subscriptions:
            if self.subscribers.get(rid) is client:
                del self.subscribers[rid]
        for nid in client.ntf_subscriptions:
            if self.ntf_subscribers.get(nid) is client:
                del self.ntf_subscribers[nid]
        client.subscriptions.clear()
        client.ntf_subscriptions.clear()

    # ------------------------------------------------------------------ control port

    def _count_deleted(self, q: QueueRecord) -> None:
        self._count("qDeletedAll")
        self._count("qDeletedNew" if q.sender_key is None else "qDeletedSecured")

    def block_queue(self, q: QueueRecord, info: E.BlockingInfo) -> None:
        """Block ``q`` (the control port's ``block``): from now on its commands answer ERR
        BLOCKED, and its subscriber gets ERR BLOCKED as an event at once (the reference's
        processCP). Raises StoreError when the write fails (nothing changed then)."""
        q.status = STATUS_BLOCKED
        q.blocked_info = info.encode()
        self._write_outside_block(lambda: self.store.update_queue(q))
        self._count("qBlocked")
        subscriber = self.subscribers.get(q.recipient_id)
        if subscriber is not None and subscriber.connected:
            self._event(subscriber, q.recipient_id, C.Err(E.ErrorType("BLOCKED", info)))

    def unblock_queue(self, q: QueueRecord) -> None:
        """The control port's ``unblock``: the queue is active again (no event)."""
        q.status = STATUS_ACTIVE
        q.blocked_info = None
        self._write_outside_block(lambda: self.store.update_queue(q))

    def delete_queue(self, q: QueueRecord) -> int:
        """The control port's ``delete``: the queue, its messages and its notifier go; like
        the reference, nobody is told (no DELD). Returns how many messages it held."""
        rid = q.recipient_id
        count = self.store.message_count(rid)
        self._write_outside_block(lambda: self.store.delete_queue(rid))
        self._count_deleted(q)
        subscriber = self.subscribers.pop(rid, None)
        if subscriber is not None:
            subscriber.subscriptions.pop(rid, None)
        if q.notifier is not None:
            nid = q.notifier.notifier_id
            self.notifications.pop(nid, None)
            ntf_subscriber = self.ntf_subscribers.pop(nid, None)
            if ntf_subscriber is not None:
                ntf_subscriber.ntf_subscriptions.discard(nid)
        return count

    def _write_outside_block(self, write: Callable[[], object]) -> None:
        try:
            with self.store.unit():
                write()
        except StoreError as e:
            self.durability.store_failed(e)
            raise

    # ------------------------------------------------------------------ output

    def _send(self, client: Client, items: list[Answer]) -> None:
        """Queue ``items`` as one batch: the writer packs a batch into as few blocks as fit
        and, like the reference, never mixes two batches in one block. While a block
        executes, batches for other connections wait until its writes are in."""
        if not items or not client.connected:
            return
        if self._deferred is not None:
            self._deferred.append((client, items))
            return
        client.outbox.append((self.durability.current(), items))
        client.notify()

    def _set_delivered(self, sub: "Subscription", msg_id: bytes | None) -> None:
        if self._undo is not None:
            self._undo.append((sub, sub.delivered))
        sub.delivered = msg_id

    def _send_responses(self, client: Client, responses: list, events: list) -> None:
        """The reference's grouping: a block's responses form one batch; messages that SUBs
        deliver follow, the first in the same batch when there are at most 4 responses (so
        a client's re-subscription and its pending message arrive together), each other one
        in its own batch."""
        if events and len(responses) <= 4:
            self._send(client, responses + events[:1])
            events = events[1:]
        else:
            self._send(client, responses)
        for event in events:
            self._send(client, [event])

    def _event(self, client: Client, entity_id: bytes, msg: C.Response) -> None:
        self._send(client, [(b"", entity_id, msg)])

    def count(self, name: str, n: int = 1) -> None:
        """Add to a statistics counter; names are the reference's (smpfast.server.stats)."""
        self.stats[name] = self.stats.get(name, 0) + n

    _count = count

    # ------------------------------------------------------------------ blocks

    def process_block(self, client: Client, block: bytes) -> None:
        """Handle one decrypted, padded 16 KB block of ``client`` at once."""
        prepared = self.prepare_block(client, block)
        if prepared is not None:
            self.finish_block(client, prepared, client.verifier.verify_batch(prepared.requests))

    def prepare_block(self, client: Client, block: bytes) -> "PreparedBlock | None":
        """Split and parse a block and collect the authorizations to verify. The caller
        verifies ``requests`` (``client.verifier.verify_batch``, on any thread) and passes
        the results to ``finish_block``. None: the block is already answered."""
        client.last_received = self.clock()
        prepared = PreparedBlock()
        errors = prepared.errors
        pending = prepared.pending
        for t in decode_server_transmissions(block, client.version, client.session_id):
            if t.error is not None:
                errors.append((t.corr_id, t.entity_id, C.Err(t.error)))
                continue
            item = _Pending(t.corr_id, t.entity_id, t.command)
            verdict = self._prepare_verification(client, item, t.auth, t.service_sig, t.t_for_auth)
            if isinstance(verdict, cauth.AuthRequest):
                prepared.owners.append(len(pending))
                pending.append(item)
                prepared.requests.append(verdict)
            elif verdict is True:
                pending.append(item)
            else:
                if verdict == E.AUTH:
                    self._count_auth_error(t.command)
                errors.append((t.corr_id, t.entity_id, C.Err(verdict)))
        return prepared

    def _count_auth_error(self, cmd: object) -> None:
        """The reference counts AUTH failures of these commands (msgSentAuth, ...)."""
        name = _AUTH_COUNTERS.get(type(cmd))
        if name is not None:
            self._count(name)

    def finish_block(self, client: Client, prepared: "PreparedBlock", results: list[bool], reload: bool = False) -> None:
        """Answer a prepared block given its verification results. ``reload``: other
        connections may have run since ``prepare_block`` (verification ran on a worker
        thread), so queue records are read again."""
        errors = prepared.errors
        failed = {prepared.owners[i] for i, ok in enumerate(results) if not ok}
        verified: list[_Pending] = []
        # Commands of one block on one queue share one record, so each sees what the ones
        # before it changed (the reference runs them one by one on the queue's current state).
        records: dict[bytes, QueueRecord] = {}
        for i, item in enumerate(prepared.pending):
            if i in failed:
                self._count_auth_error(item.cmd)
                errors.append((item.corr_id, item.entity_id, C.Err(E.AUTH)))
                continue
            q = item.queue
            if q is not None:
                rid = q.recipient_id
                shared = records.get(rid)
                if shared is not None:
                    item.queue = shared
                else:
                    if reload:
                        q = item.queue = self.store.get_queue(rid)
                        if q is None:  # deleted meanwhile
                            errors.append((item.corr_id, item.entity_id, C.Err(E.AUTH)))
                            continue
                    records[rid] = q
            verified.append(item)
        # The reference sends the block's verification errors first, as one batch.
        self._send(client, errors)
        if not client.connected or not verified:
            return
        responses: list[Answer] = []
        events: list[Answer] = []
        deferred: list[tuple[Client, list[Answer]]] = []
        undo: list[tuple[Subscription, bytes | None]] = []
        undo_notes: list[list] = []
        self._deferred, self._undo, self._undo_notes = deferred, undo, undo_notes
        try:
            with self.store.unit():
                for item in verified:
                    try:
                        self._execute(client, item, responses, events)
                    except StoreUsageError:
                        log.exception("store precondition failed")
                        responses.append((item.corr_id, item.entity_id, C.Err(E.INTERNAL)))
        except StoreError as e:
            # The unit is undone: none of the block's answers may stand, and its
            # in-memory changes (delivery state, pushes to others) go with it.
            for sub, delivered in reversed(undo):
                sub.delivered = delivered
            for notes in reversed(undo_notes):
                notes.pop()
            self.durability.store_failed(e)
            failure = C.Err(store_error(e))
            responses = [(item.corr_id, item.entity_id, failure) for item in verified]
            events = []
            deferred.clear()
        finally:
            self._deferred = self._undo = self._undo_notes = None
        for target, items in deferred:
            self._send(target, items)
        self._send_responses(client, responses, events)

    def answers_after_failed_commit(self, client: Client, answers: list[Answer]) -> list[Answer]:
        """What to send instead of ``answers`` whose commit generation failed: responses
        become ERR STORE (their state change was rolled back), a MSG is withdrawn and the
        queue's current head delivered again, END stays, DELD becomes END (the queue is
        back but this connection's subscription is gone), NMSG is dropped."""
        out: list[Answer] = []
        for corr_id, entity_id, msg in answers:
            if isinstance(msg, C.Msg):
                self._redeliver(client, entity_id, msg.msg_id)
            if corr_id:
                out.append((corr_id, entity_id, msg if isinstance(msg, C.Err) else C.Err(STORE_FAILED)))
            elif msg is C.END or msg is C.DELD:
                out.append((corr_id, entity_id, C.END))
        return out

    def _redeliver(self, client: Client, rid: bytes, msg_id: bytes) -> None:
        sub = client.subscriptions.get(rid)
        if sub is None or sub.delivered != msg_id:
            return
        sub.delivered = None
        if sub.prohibited:
            return  # GET: the client asks again
        try:
            q = self.store.get_queue(rid)
            head = None if q is None else self.store.peek_message(rid)
        except StoreError:
            return
        if q is not None and head is not None:
            sub.delivered = head.msg_id
            self._send(client, [(b"", rid, self._msg(q, head))])

    # ------------------------------------------------------------------ verification

    def _prepare_verification(
        self, client: Client, item: _Pending, auth: bytes, service_sig: bytes | None, t_for_auth: bytes
    ) -> cauth.AuthRequest | bool | E.ErrorType:
        """Decide what verifies ``item``: the authorization to check (with the reference's
        dummy keys when the queue or key is missing), True (no authorization needed) or the
        error to answer. A lookup that finds nothing costs what one that finds a queue
        costs (``Store.cover_miss``): the time of ERR AUTH must not tell which ids exist."""
        cmd = item.cmd
        # No service sessions yet: a service signature is never valid here (SERVICE).
        if service_sig is not None:
            return E.SERVICE
        if isinstance(cmd, (C.Subs, C.Nsubs)):
            return E.SERVICE
        store = self.store
        entity = item.entity_id
        corr_id = item.corr_id
        party = cmd.PARTY
        key: object
        if isinstance(cmd, C.New):
            key = cmd.rcv_auth_key
        elif party is C.Party.RECIPIENT:
            q = store.get_queue(entity)
            if q is None:
                store.cover_miss(entity, False)
            item.queue = q
            key = None if q is None else list(q.recipient_keys)
        elif isinstance(cmd, C.Send):
            q = store.queue_by_sender(entity)
            if q is None:
                store.cover_miss(entity, True)
            item.queue = q
            if q is not None and q.sender_key is None:
                if not auth:
                    return True
                key = None  # unsecured queue: verify against a dummy key like a missing one
            else:
                key = None if q is None else q.sender_key
        elif isinstance(cmd, (C.Skey, C.Lkey)):
            q = store.queue_by_sender(entity) if isinstance(cmd, C.Skey) else store.queue_by_link(entity)
            if q is None:
                store.cover_miss(entity, True)
            item.queue = q
            allowed = q is not None and q.queue_mode == MODE_MESSAGING and q.sender_key in (None, cmd.key)
            key = cmd.key if allowed else None
        elif isinstance(cmd, C.Lget):
            q = store.queue_by_link(entity)
            if q is None:
                store.cover_miss(entity, True)
                self._dummy(client, auth, t_for_auth, corr_id, entity)
                return E.AUTH
            item.queue = q
            return True if _is_contact(q) else E.AUTH
        elif isinstance(cmd, C.Nsub):
            q = store.queue_by_notifier(entity)
            if q is None:
                store.cover_miss(entity, True)
            item.queue = q
            key = None if q is None or q.notifier is None else q.notifier.notifier_key
        elif isinstance(cmd, C.Ping):
            return True
        else:
            # Proxy commands (v8+) are never parsed at the versions this server announces.
            return E.CMD_PROHIBITED
        return cauth.AuthRequest(key, auth, t_for_auth, corr_id, entity)

    def _dummy(self, client: Client, auth: bytes, t_for_auth: bytes, corr_id: bytes, entity: bytes) -> None:
        if auth:
            client.verifier.verify_batch((cauth.AuthRequest(None, auth, t_for_auth, corr_id, entity),))

    # ------------------------------------------------------------------ execution

    def _execute(self, client: Client, item: _Pending, out: list, events: list) -> None:
        cmd = item.cmd
        corr_id, entity = item.corr_id, item.entity_id
        if isinstance(cmd, C.Ping):
            out.append((corr_id, b"", C.PONG))
            return
        if isinstance(cmd, C.New):
            out.append((corr_id, entity, self._create_queue(client, cmd, corr_id)))
            return
        q = item.queue
        if q is None:  # verified commands always carry their queue; guard anyway
            out.append((corr_id, entity, C.Err(E.INTERNAL)))
            return
        if q.status == _DELETED:  # by an earlier command of this block
            out.append((corr_id, entity, C.Err(E.AUTH)))
            return
        if isinstance(cmd, C.Send):
            out.append((corr_id, entity, self._send_message(client, q, cmd)))
            return
        if isinstance(cmd, C.Nsub):
            out.append((corr_id, entity, self._subscribe_notifications(client, q, entity)))
            return
        # Everything below goes through the reference's withQueue: blocked queues answer
        # BLOCKED, except OFF and DEL.
        if q.status == STATUS_BLOCKED and not isinstance(cmd, (C.Off, C.Del)):
            out.append((corr_id, entity, C.Err(_blocked_error(q))))
            return
        if not isinstance(cmd, (C.Off, C.Del)):  # the reference's OFF/DEL skip withQueue's time update
            self._touch(q)
        handler = self._RECIPIENT_HANDLERS.get(type(cmd))
        if handler is not None:
            handler(self, client, q, item, out, events)
            return
        if isinstance(cmd, C.Skey):
            out.append((corr_id, entity, self._secure(q, cmd.key, require_mode=MODE_MESSAGING)))
        elif isinstance(cmd, C.Lkey):
            result = self._secure(q, cmd.key, require_mode=MODE_MESSAGING)
            if isinstance(result, C.Ok):
                result = self._link_response(q, entity)
            out.append((corr_id, entity, result))
        elif isinstance(cmd, C.Lget):
            out.append((corr_id, entity, self._link_response(q, entity)))
        else:
            out.append((corr_id, entity, C.Err(E.CMD_PROHIBITED)))

    def _touch(self, q: QueueRecord) -> None:
        """Keep ``updated_at`` (a day number in seconds) current, at most one write a day."""
        today = int(self.clock()) // DAY * DAY
        if q.updated_at != today:
            q.updated_at = today
            self.store.update_queue(q)

    # --- NEW

    def _create_queue(self, client: Client, cmd: C.New, corr_id: bytes) -> C.Response:
        cfg = self.config
        if not cfg.allow_new_queues or (
            cfg.create_password is not None and cmd.basic_auth != cfg.create_password
        ):
            return C.Err(E.AUTH)
        try:
            dh = cmsg.new_queue_dh(cmd.rcv_dh_key)
            ntf_dh = None if cmd.ntf_creds is None else cmsg.new_queue_dh(cmd.ntf_creds.dh_key)
        except CryptoError:
            return C.Err(E.AUTH)
        qr = cmd.queue_req
        mode = None if qr is None else qr.mode.value
        client_sender_id: bytes | None = None
        link: tuple[bytes, bytes, bytes] | None = None
        if qr is not None and qr.sender_id is not None:
            client_sender_id = qr.sender_id
            if client_sender_id != cauth.sender_id_for(corr_id):
                return C.Err(E.CMD_PROHIBITED)
        today = int(self.clock()) // DAY * DAY
        for _ in range(3):
            rid = self.random_bytes(ID_SIZE)
            sid = client_sender_id if client_sender_id is not None else self.random_bytes(ID_SIZE)
            if qr is not None and qr.link_data is not None:
                link_id = qr.link_id if qr.link_id is not None else self.random_bytes(ID_SIZE)
                link = (link_id, qr.link_data.fixed_data, qr.link_data.user_data)
            notifier = None
            if ntf_dh is not None:
                notifier = NotifierRecord(self.random_bytes(ID_SIZE), cmd.ntf_creds.notifier_key, ntf_dh.secret)
            rec = QueueRecord(
                recipient_id=rid,
                recipient_keys=[cmd.rcv_auth_key],
                rcv_dh_secret=dh.secret,
                sender_id=sid,
                queue_mode=mode,
                link_id=None if link is None else link[0],
                link_fixed=None if link is None else link[1],
                link_user=None if link is None else link[2],
                notifier=notifier,
                updated_at=today,
            )
            if self.store.add_queue(rec):
                self._count("qCreated")
                if notifier is not None:
                    self._count("ntfNewCreated")
                if cmd.subscribe:
                    client.subscriptions[rid] = Subscription()
                    self._take_subscription(client, rid)
                return C.Ids(
                    rid,
                    sid,
                    dh.server_public_der,
                    queue_mode=None if qr is None else qr.mode,
                    link_id=None if link is None else link[0],
                    service_id=None,
                    ntf_creds=None if notifier is None else C.ServerNtfCreds(notifier.notifier_id, ntf_dh.server_public_der),
                )
            if client_sender_id is not None or (qr is not None and qr.link_id is not None):
                return C.Err(E.AUTH)  # client-chosen ids collide: no retry, as the reference
        return C.Err(E.INTERNAL)

    # --- subscriptions

    def _take_subscription(self, client: Client, rid: bytes) -> None:
        """Make ``client`` the queue's subscriber; the previous one receives END."""
        previous = self.subscribers.get(rid)
        self.subscribers[rid] = client
        if previous is not None and previous is not client and previous.connected:
            previous.subscriptions.pop(rid, None)
            self._count("qSubEnd")
            self._event(previous, rid, C.END)

    def _sub(self, client: Client, q: QueueRecord, item: _Pending, out: list, events: list) -> None:
        rid = q.recipient_id
        sub = client.subscriptions.get(rid)
        had_sub = sub is not None
        if sub is None:
            sub = client.subscriptions[rid] = Subscription()
            self._take_subscription(client, rid)
        elif sub.prohibited:
            self._count("qSubProhibited")
            out.append((item.corr_id, item.entity_id, C.Err(E.CMD_PROHIBITED)))
            return
        else:
            self._count("qSubDuplicate")
            self._set_delivered(sub, None)
        out.append((item.corr_id, item.entity_id, C.Sok(None)))
        msg = self.store.peek_message(rid)
        if msg is not None:
            if not had_sub:
                self._count("qSub")  # as the reference: only subscriptions with a message waiting
            self._set_delivered(sub, msg.msg_id)
            events.append((b"", rid, self._msg(q, msg)))

    def _get(self, client: Client, q: QueueRecord, item: _Pending, out: list, events: list) -> None:
        rid = q.recipient_id
        sub = client.subscriptions.get(rid)
        if sub is None:
            sub = client.subscriptions[rid] = Subscription(prohibited=True)
        elif not sub.prohibited:
            self._count("msgGetProhibited")
            out.append((item.corr_id, item.entity_id, C.Err(E.CMD_PROHIBITED)))
            return
        msg = self.store.peek_message(rid)
        if msg is None:
            self._count("msgGetNoMsg")
            self._set_delivered(sub, None)
            out.append((item.corr_id, item.entity_id, C.OK))
        else:
            self._count("msgGet" if sub.delivered is None else "msgGetDuplicate")
            self._set_delivered(sub, msg.msg_id)
            out.append((item.corr_id, item.entity_id, self._msg(q, msg)))

    def _ack(self, client: Client, q: QueueRecord, item: _Pending, out: list, events: list) -> None:
        rid = q.recipient_id
        msg_id = item.cmd.msg_id
        sub = client.subscriptions.get(rid)
        if sub is None or sub.delivered is None or (msg_id and msg_id != sub.delivered):
            out.append((item.corr_id, item.entity_id, C.Err(E.NO_MSG)))
            return
        target = sub.delivered if not msg_id else msg_id
        self._set_delivered(sub, None)
        if self.store.delete_message(rid, target):
            self._count("msgRecv")
            if sub.prohibited:
                self._count("msgRecvGet")
        if sub.prohibited:
            out.append((item.corr_id, item.entity_id, C.OK))
            return
        nxt = self.store.peek_message(rid)
        if nxt is None:
            out.append((item.corr_id, item.entity_id, C.OK))
        else:
            self._set_delivered(sub, nxt.msg_id)
            out.append((item.corr_id, item.entity_id, self._msg(q, nxt)))

    def _msg(self, q: QueueRecord, msg: StoredMessage) -> C.Msg:
        if msg.is_quota:
            body = cmsg.encode_rcv_msg_quota(msg.ts)
        else:
            body = cmsg.encode_rcv_msg_body(msg.ts, msg.notification, msg.body)
        return C.Msg(msg.msg_id, cmsg.encrypt_rcv_msg(cmsg.precompute(q.rcv_dh_secret), msg.msg_id, body))

    # --- queue management

    def _secure(self, q: QueueRecord, key: bytes, require_mode: str | None = None) -> C.Response:
        if require_mode is not None and q.queue_mode != require_mode:
            return C.Err(E.AUTH)
        if q.sender_key is not None:
            return C.OK if q.sender_key == key else C.Err(E.AUTH)
        q.sender_key = key
        self.store.update_queue(q)
        self._count("qSecured")
        return C.OK

    def _key(self, client: Client, q: QueueRecord, item: _Pending, out: list, events: list) -> None:
        out.append((item.corr_id, item.entity_id, self._secure(q, item.cmd.key)))

    def _rkey(self, client: Client, q: QueueRecord, item: _Pending, out: list, events: list) -> None:
        if q.queue_mode != MODE_CONTACT:
            out.append((item.corr_id, item.entity_id, C.Err(E.AUTH)))
            return
        q.recipient_keys = list(item.cmd.keys)
        self.store.update_queue(q)
        out.append((item.corr_id, item.entity_id, C.OK))

    def _lset(self, client: Client, q: QueueRecord, item: _Pending, out: list, events: list) -> None:
        cmd = item.cmd
        if _is_secured_messaging(q) or (q.link_id is not None and q.link_id != cmd.link_id):
            result: C.Response = C.Err(E.AUTH)
        elif q.link_id is not None and q.link_fixed != cmd.data.fixed_data:
            result = C.Err(E.AUTH)
        elif q.link_id is None and self.store.queue_by_link(cmd.link_id) is not None:
            result = C.Err(E.AUTH)  # another queue's link id (the reference: a duplicate id)
        else:
            q.link_id, q.link_fixed, q.link_user = cmd.link_id, cmd.data.fixed_data, cmd.data.user_data
            self.store.update_queue(q)
            result = C.OK
        out.append((item.corr_id, item.entity_id, result))

    def _ldel(self, client: Client, q: QueueRecord, item: _Pending, out: list, events: list) -> None:
        if q.link_id is not None:
            q.link_id = q.link_fixed = q.link_user = None
            self.store.update_queue(q)
        out.append((item.corr_id, item.entity_id, C.OK))

    def _link_response(self, q: QueueRecord, link_id: bytes) -> C.Response:
        if q.link_id is None or q.link_id != link_id:
            return C.Err(E.AUTH)
        return C.Lnk(q.sender_id, C.QueueLinkData(q.link_fixed, q.link_user))

    def _nkey(self, client: Client, q: QueueRecord, item: _Pending, out: list, events: list) -> None:
        cmd = item.cmd
        try:
            dh = cmsg.new_queue_dh(cmd.dh_key)
        except CryptoError:
            out.append((item.corr_id, item.entity_id, C.Err(E.AUTH)))
            return
        old = q.notifier
        for _ in range(3):
            nid = self.random_bytes(ID_SIZE)
            if self.store.queue_by_notifier(nid) is not None:
                continue
            q.notifier = NotifierRecord(nid, cmd.notifier_key, dh.secret)
            self.store.update_queue(q)
            self._count("ntfCreated")
            if old is not None:
                self._notifier_gone(client, old.notifier_id)
            out.append((item.corr_id, item.entity_id, C.Nid(nid, dh.server_public_der)))
            return
        out.append((item.corr_id, item.entity_id, C.Err(E.INTERNAL)))

    def _ndel(self, client: Client, q: QueueRecord, item: _Pending, out: list, events: list) -> None:
        old = q.notifier
        if old is not None:
            q.notifier = None
            self.store.update_queue(q)
            self._count("ntfDeleted")
            self._notifier_gone(client, old.notifier_id)
        out.append((item.corr_id, item.entity_id, C.OK))

    def _notifier_gone(self, client: Client, nid: bytes) -> None:
        self.notifications.pop(nid, None)
        subscriber = self.ntf_subscribers.pop(nid, None)
        if subscriber is not None:
            subscriber.ntf_subscriptions.discard(nid)
            if subscriber is not client and subscriber.connected:
                self._event(subscriber, nid, C.DELD)

    def _off(self, client: Client, q: QueueRecord, item: _Pending, out: list, events: list) -> None:
        if q.status != STATUS_OFF:
            q.status = STATUS_OFF
            q.blocked_info = None
            self.store.update_queue(q)
        out.append((item.corr_id, item.entity_id, C.OK))

    def _del(self, client: Client, q: QueueRecord, item: _Pending, out: list, events: list) -> None:
        rid = q.recipient_id
        self.store.delete_queue(rid)
        self._count_deleted(q)
        q.status = _DELETED  # the block's later commands on this queue answer AUTH
        client.subscriptions.pop(rid, None)
        subscriber = self.subscribers.pop(rid, None)
        if subscriber is not None and subscriber is not client:
            subscriber.subscriptions.pop(rid, None)
            if subscriber.connected:
                self._event(subscriber, rid, C.DELD)
        if q.notifier is not None:
            self._notifier_gone(client, q.notifier.notifier_id)
        out.append((item.corr_id, item.entity_id, C.OK))

    def _que(self, client: Client, q: QueueRecord, item: _Pending, out: list, events: list) -> None:
        rid = q.recipient_id
        info: dict = {"qiSnd": q.sender_key is not None, "qiNtf": q.notifier is not None}
        sub = client.subscriptions.get(rid)
        if sub is not None:
            qsub: dict = {"qSubThread": "prohibitSub" if sub.prohibited else "noSub"}
            if sub.delivered is not None:
                qsub["qDelivered"] = base64.b64encode(sub.delivered).decode()
            info["qiSub"] = qsub
        info["qiSize"] = self.store.message_count(rid)
        head = self.store.peek_message(rid)
        if head is not None:
            ts = datetime.datetime.fromtimestamp(head.ts, datetime.timezone.utc)
            info["qiMsg"] = {
                "msgId": base64.b64encode(head.msg_id).decode(),
                "msgTs": ts.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "msgType": "quota" if head.is_quota else "message",
            }
        out.append((item.corr_id, item.entity_id, C.Info(json.dumps(info, separators=(",", ":")).encode())))

    _RECIPIENT_HANDLERS: dict[type, Callable] = {}

    # --- SEND

    def _send_message(self, client: Client, q: QueueRecord, cmd: C.Send) -> C.Response:
        self._touch(q)  # before the checks, as the reference's withQueue_ False
        if len(cmd.body) > V.max_message_length(client.version):
            self._count("msgSentLarge")
            return C.Err(E.LARGE_MSG)
        if q.status == STATUS_OFF:
            self._count("msgSentAuth")
            return C.Err(E.AUTH)
        if q.status == STATUS_BLOCKED:
            self._count("msgSentBlock")
            return C.Err(_blocked_error(q))
        rid = q.recipient_id
        if q.link_id is not None and _is_secured_messaging(q):
            q.link_id = q.link_fixed = q.link_user = None
            self.store.update_queue(q)
        now = self.clock()
        if self.config.expire_on_send and self.config.message_ttl is not None:
            self._count("msgExpired", self.store.expire_messages(rid, int(now) - self.config.message_ttl))
        msg = StoredMessage(self.random_bytes(ID_SIZE), int(now), cmd.flags.notification, cmd.body)
        result = self.store.write_message(rid, msg, self.config.quota)
        if not result.stored:
            self._count("msgSentQuota")
            return C.Err(E.QUOTA)
        self._count("msgSent")
        if cmd.flags.notification:
            self._count("msgSentNtf")
        if result.was_empty:
            self._deliver(rid, q, msg)
        if cmd.flags.notification and q.notifier is not None:
            self._notify(q.notifier, msg)
        return C.OK

    def _deliver(self, rid: bytes, q: QueueRecord, msg: StoredMessage) -> None:
        """Push a message that arrived in an empty queue to its subscriber, if idle."""
        subscriber = self.subscribers.get(rid)
        if subscriber is None or not subscriber.connected:
            return
        sub = subscriber.subscriptions.get(rid)
        if sub is None or sub.prohibited or sub.delivered is not None:
            return
        self._set_delivered(sub, msg.msg_id)
        self._event(subscriber, rid, self._msg(q, msg))

    # --- notifications

    def _notify(self, notifier: NotifierRecord, msg: StoredMessage) -> None:
        nonce, enc = cmsg.encrypt_ntf_meta(cmsg.precompute(notifier.ntf_dh_secret), msg.msg_id, msg.ts)
        pending = self.notifications.setdefault(notifier.notifier_id, [])
        pending.append((msg.msg_id, msg.ts, nonce, enc))
        if self._undo_notes is not None:
            self._undo_notes.append(pending)

    def _subscribe_notifications(self, client: Client, q: QueueRecord, nid: bytes) -> C.Response:
        if q.notifier is None or q.notifier.notifier_id != nid:
            return C.Err(E.INTERNAL)
        self._count("ntfSubDuplicate" if nid in client.ntf_subscriptions else "ntfSub")
        if nid not in client.ntf_subscriptions:
            client.ntf_subscriptions.add(nid)
            previous = self.ntf_subscribers.get(nid)
            self.ntf_subscribers[nid] = client
            if previous is not None and previous is not client and previous.connected:
                previous.ntf_subscriptions.discard(nid)
                self._event(previous, nid, C.END)
        return C.Sok(None)

    def deliver_notifications(self) -> int:
        """Send stored notifications to their subscribers (the reference does this every
        1.5 s). Returns how many were sent."""
        sent = 0
        for nid, client in list(self.ntf_subscribers.items()):
            pending = self.notifications.pop(nid, None)
            if not pending:
                continue
            self._send(client, [(b"", nid, C.Nmsg(nonce, enc)) for _, _, nonce, enc in pending])
            sent += len(pending)
        self._count("msgNtfs", sent)
        return sent

    def expire_notifications(self, now: float | None = None) -> int:
        cutoff = (self.clock() if now is None else now) - self.config.ntf_ttl
        removed = 0
        for nid in list(self.notifications):
            kept = [n for n in self.notifications[nid] if n[1] >= cutoff]
            removed += len(self.notifications[nid]) - len(kept)
            if kept:
                self.notifications[nid] = kept
            else:
                del self.notifications[nid]
        self._count("msgNtfExpired", removed)
        return removed


Broker._RECIPIENT_HANDLERS = {
    C.Sub: Broker._sub,
    C.Get: Broker._get,
    C.Ack: Broker._ack,
    C.Key: Broker._key,
    C.Rkey: Broker._rkey,
    C.Lset: Broker._lset,
    C.Ldel: Broker._ldel,
    C.Nkey: Broker._nkey,
    C.Ndel: Broker._ndel,
    C.Off: Broker._off,
    C.Del: Broker._del,
    C.Que: Broker._que,
}


_AUTH_COUNTERS: dict[type, str] = {
    C.Send: "msgSentAuth", C.Sub: "qSubAuth", C.Nsub: "ntfSubAuth", C.Get: "msgGetAuth",
}


def _is_contact(q: QueueRecord) -> bool:
    if q.queue_mode == MODE_MESSAGING:
        return False
    if q.queue_mode == MODE_CONTACT:
        return True
    return q.sender_key is None  # pre-SKEY contact addresses


def _is_secured_messaging(q: QueueRecord) -> bool:
    return q.queue_mode != MODE_CONTACT and q.sender_key is not None


def _blocked_error(q: QueueRecord) -> E.ErrorType:
    try:
        return E.parse_error_type(b"BLOCKED " + (q.blocked_info or b"reason=spam"))
    except ParseError:
        return E.BLOCKED_SPAM
