"""SMP command semantics over a store, with no I/O.

The network layer hands each decrypted block of a connection (a ``Peer``) to
``Broker.process_block``. The broker splits and parses it, verifies every authorization of
the block in one call, executes the block's commands in one store write unit and returns
``Effects``: the answer batches for that connection and the events (MSG, END, DELD, NMSG)
for other connections, which the caller hands to the ``Delivery`` (``delivery.py``). The
broker never touches a connection's outbox. Each batch carries the commit generation that
must be durable before it may be sent (see ``committer.py``), so a state change is
acknowledged only once it is on disk and nobody sees data that could still be rolled back.
A block whose writes fail is undone as a whole (store unit plus the in-memory delivery
state) and every command of it is answered ``ERR STORE``; answers whose commit fails later
are turned into ``ERR STORE`` by ``answers_after_failed_commit``.

Behaviour follows the reference server (Server.hs ``processCommand``,
``verifyQueueTransmission``); deliberate differences are noted where they occur.
"""

from __future__ import annotations

import base64
import datetime
import itertools
import json
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Callable, Protocol

from ..crypto import auth as cauth
from ..crypto import message as cmsg
from ..crypto.keys import Alg, CryptoError, PublicKey
from ..protocol import commands as C
from ..protocol import errors as E
from ..protocol import versions as V
from ..protocol.errors import ParseError
from ..protocol.session import ServiceIdentity
from ..protocol.transmission import decode_server_transmissions, encode_server_transmission
from ..store import Store
from ..store.errors import StoreError, StoreFullError, StoreUsageError
from ..protocol.proxy import ProxyLayerError, open_forwarded, seal_forwarded
from ..protocol.ids_hash import ServiceSubs, queue_id_hash
from . import cluster as X
from .delivery import (NTF, RCV, Answer, ConnId, Delivery, Effects, LocalDelivery, ProxyRequest, ServiceWalk,
                       Subscription)
from .names import STAT_DISABLED, STAT_REQUESTS, ForwardedName, NameRequest
from .stats import ActiveQueues
from ..store.records import (
    MODE_CONTACT,
    MODE_MESSAGING,
    STATUS_ACTIVE,
    STATUS_BLOCKED,
    STATUS_OFF,
    NotifierRecord,
    QueueRecord,
    ServiceRecord,
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


def encode_answers(peer: "Peer", answers: list[Answer]) -> list[bytes]:
    """The transmissions of one answer batch, as the connection writes them."""
    version, session_id = peer.version, peer.session_id
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
    # [NAMES] enable: RSLV goes to the shell's resolver; off: ERR NAME NO_RESOLVER at once.
    names_enabled: bool = False


class Peer:
    """What the broker knows of one connected client, from its handshake: the negotiated
    version, the session id (TLS unique), the server's session key (v7+) and the verifier
    built from it, and the service of a service session. Made by ``Broker.connect``; its
    subscriptions live in the delivery's ``Subscriptions`` under ``id``."""

    __slots__ = ("id", "version", "session_id", "session_private", "session_key", "verifier", "connected",
                 "service", "service_key")

    def __init__(self, conn_id: ConnId, version: int, session_id: bytes, session_private: bytes | None,
                 service: ServiceIdentity | None = None, session_key: bytes | None = None) -> None:
        self.id = conn_id
        self.version = version
        self.session_id = session_id
        self.session_private = session_private  # server X25519 session key (v >= 7)
        # Box key of the client's handshake key with it: the RFWD/RRES layer (None: no key).
        self.session_key = session_key
        self.verifier = cauth.AuthVerifier(session_private)
        self.connected = True
        self.service = service  # a service session's service (v16+), else None
        self.service_key = None if service is None else PublicKey(Alg.ED25519, service.key)

    def forwarded(self, version: int) -> "Peer":
        """This connection as a proxied client's command sees it: the version the RFWD
        carries, the same session (id, keys, verifier), and no service (the reference
        verifies forwarded commands without the link's service)."""
        other = Peer.__new__(Peer)
        for name in Peer.__slots__:
            setattr(other, name, getattr(self, name))
        other.version = version
        other.service = other.service_key = None
        return other

    @property
    def implied_session(self) -> bool:
        """v7+: the session id is implied, not sent in transmissions."""
        return V.implied_session(self.version)

    @property
    def service_auth(self) -> bool:
        """v16+: transmissions may carry a service signature."""
        return V.service_auth(self.version)

    def __repr__(self) -> str:
        return f"Peer({self.id}, v{self.version})"


@dataclass(slots=True)
class PreparedBlock:
    """A block between parsing and execution: its early errors, its parsed commands, and
    the authorizations to verify (``owners[i]`` is the index in ``pending`` of request i,
    ``failures[i]`` the error its command gets if it does not verify: AUTH, or SERVICE for
    service signatures; SERVICE wins)."""

    errors: list = field(default_factory=list)
    pending: list = field(default_factory=list)
    requests: list = field(default_factory=list)
    owners: list = field(default_factory=list)
    failures: list = field(default_factory=list)


@dataclass(slots=True)
class _Pending:
    """A parsed transmission on its way through verification to execution."""

    corr_id: bytes
    entity_id: bytes
    cmd: C.Command
    queue: QueueRecord | None = None


class ServiceRefused(Exception):
    """A service handshake the broker cannot answer with a service id (BAD_SERVICE)."""


class Broker:
    def __init__(
        self,
        store: Store,
        config: BrokerConfig | None = None,
        durability: Durability | None = None,
        clock: Callable[[], float] = time.time,
        random_bytes: Callable[[int], bytes] = os.urandom,
        delivery: Delivery | None = None,
    ) -> None:
        self.store = store
        self.config = config or BrokerConfig()
        self.durability = durability or NoDurability()
        self.clock = clock
        self.random_bytes = random_bytes
        self.delivery: Delivery = delivery if delivery is not None else LocalDelivery()
        self.subscriptions = self.delivery.subscriptions
        # Other worker processes hold subscriptions too: what concerns theirs goes to the
        # hub as pushes to ``cluster.REMOTE`` (cluster.py).
        self._remote = getattr(self.delivery, "remote", False)
        self.notifications: dict[bytes, list[tuple[bytes, int, bytes, bytes]]] = {}
        # The service of notifiers with notifications waiting (their NMSGs go to the
        # service's subscriber), as the queue record says now.
        self.notification_service: dict[bytes, bytes] = {}
        self.stats: dict[str, int] = {}
        self.active_queues = ActiveQueues()  # the server shares its own (daily stats)
        self._ids = itertools.count(1)
        # While a block executes: the effects being made, the pushes for other connections
        # (made part of the effects only once the block's writes joined the transaction)
        # and how to undo its in-memory changes.
        self._effects: Effects | None = None
        self._deferred: list[tuple[ConnId, list[Answer]]] | None = None
        self._undo: list[tuple[Subscription, bytes | None]] | None = None  # delivery state
        self._undo_notes: list[list] | None = None  # notification lists appended to
        self._proxied: list[ProxyRequest | NameRequest] | None = None  # the block's PRXY/PFWD/RSLV
        self._walks: list[ServiceWalk] | None = None  # the block's service deliveries (SUBS)
        # Delivery states a block made for service sessions, removed if the block is undone.
        self._undo_deliveries: list[tuple[ConnId, bytes]] | None = None

    # ------------------------------------------------------------------ connections

    def connect(self, version: int, session_id: bytes, session_private: bytes | None,
                service: ServiceIdentity | None = None, session_key: bytes | None = None) -> Peer:
        """A client finished its handshake: the broker's record of it."""
        peer = Peer(next(self._ids), version, session_id, session_private, service, session_key)
        self.subscriptions.open(peer.id)
        return peer

    def get_create_service(self, role: str, chain: tuple[bytes, ...], cert_hash: bytes) -> tuple[bytes, int]:
        """A service handshake (the reference's getCreateService): the id of the service
        record with this certificate hash, or of a new one; and the commit generation that
        must be durable before the id is sent. ServiceRefused when the record has another
        role or the store fails (the handshake then answers HANDSHAKE BAD_SERVICE)."""
        try:
            known = self.store.service_by_cert(cert_hash)
            if known is not None:
                if known.role != role:
                    raise ServiceRefused(f"the certificate belongs to a service of role {known.role}")
                return known.service_id, self.durability.current()
            for _ in range(3):
                rec = ServiceRecord(self.random_bytes(ID_SIZE), role, tuple(chain), cert_hash, int(self.clock()))
                added: list[bool] = []
                self._write_outside_block(lambda: added.append(self.store.add_service(rec)))
                if added[0]:
                    return rec.service_id, self.durability.current()
                known = self.store.service_by_cert(cert_hash)
                if known is not None:  # another worker process created it meanwhile
                    if known.role != role:
                        raise ServiceRefused(f"the certificate belongs to a service of role {known.role}")
                    return known.service_id, self.durability.current()
        except StoreError as e:
            raise ServiceRefused(f"store: {e}") from None
        raise ServiceRefused("no free service id")

    def disconnect(self, peer: Peer) -> None:
        """Drop the connection's subscriptions (no END: nobody took them over)."""
        peer.connected = False
        self.subscriptions.close(peer.id)

    # ------------------------------------------------------------------ control port

    def _count_deleted(self, q: QueueRecord) -> None:
        self._count("qDeletedAll")
        self._count("qDeletedNew" if q.sender_key is None else "qDeletedSecured")

    def block_queue(self, q: QueueRecord, info: E.BlockingInfo) -> Effects:
        """Block ``q`` (the control port's ``block``): from now on its commands answer ERR
        BLOCKED, and its subscriber gets ERR BLOCKED as an event at once (the reference's
        processCP). Raises StoreError when the write fails (nothing changed then)."""
        q.status = STATUS_BLOCKED
        q.blocked_info = info.encode()
        self._write_outside_block(lambda: self.store.update_queue(q))
        self._count("qBlocked")
        effects = Effects()
        subscriber = self.subscriptions.subscriber.get(q.recipient_id)
        if subscriber is not None:
            event = (b"", q.recipient_id, C.Err(E.ErrorType("BLOCKED", info)))
            effects.pushes.append((subscriber, self.durability.current(), [event]))
        elif self._remote:
            effects.pushes.append(self._remote_push((X.BLOCKED, q.recipient_id, info.encode())))
        return effects

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
        self.subscriptions.drop_queue(rid)
        remote = [(X.DELETED, rid, False)]
        if q.notifier is not None:
            nid = q.notifier.notifier_id
            self.notifications.pop(nid, None)
            self.notification_service.pop(nid, None)
            self.subscriptions.drop_notifier(nid)
            remote.append((X.NTF_DELETED, nid, False))
        if self._remote:
            self.delivery.route([self._remote_push(*remote)])
        return count

    def _write_outside_block(self, write: Callable[[], object]) -> None:
        try:
            with self.store.unit():
                write()
        except StoreError as e:
            self.durability.store_failed(e)
            raise

    # ------------------------------------------------------------------ output

    def _reply(self, items: list[Answer]) -> None:
        """Queue ``items`` as one batch for the connection whose block runs: the writer
        packs a batch into as few blocks as fit and, like the reference, never mixes two
        batches in one block."""
        if items:
            self._effects.replies.append((self.durability.current(), items))

    def _push(self, conn: ConnId, items: list[Answer]) -> None:
        """An event batch for another connection; while a block executes it waits until
        the block's writes are in (it shows their state)."""
        if self._deferred is not None:
            self._deferred.append((conn, items))
        else:
            self._effects.pushes.append((conn, self.durability.current(), items))

    def _event(self, conn: ConnId, entity_id: bytes, msg: C.Response) -> None:
        self._push(conn, [(b"", entity_id, msg)])

    def _remote_event(self, *events: tuple) -> None:
        """Events for the hub, sent once this block's writes are durable."""
        self._push(X.REMOTE, [(b"", b"", event) for event in events])

    def _remote_push(self, *events: tuple):
        return (X.REMOTE, self.durability.current(), [(b"", b"", event) for event in events])

    def _set_delivered(self, sub: Subscription, msg_id: bytes | None) -> None:
        if self._undo is not None:
            self._undo.append((sub, sub.delivered))
        sub.delivered = msg_id

    def _reply_responses(self, responses: list, events: list) -> None:
        """The reference's grouping: a block's responses form one batch; messages that SUBs
        deliver follow, the first in the same batch when there are at most 4 responses (so
        a client's re-subscription and its pending message arrive together), each other one
        in its own batch."""
        if events and len(responses) <= 4:
            self._reply(responses + events[:1])
            events = events[1:]
        else:
            self._reply(responses)
        for event in events:
            self._reply([event])

    def count(self, name: str, n: int = 1) -> None:
        """Add to a statistics counter; names are the reference's (smpfast.server.stats)."""
        self.stats[name] = self.stats.get(name, 0) + n

    _count = count

    # ------------------------------------------------------------------ blocks

    def process_block(self, peer: Peer, block: bytes) -> Effects:
        """Handle one decrypted, padded 16 KB block of ``peer`` at once."""
        prepared = self.prepare_block(peer, block)
        return self.finish_block(peer, prepared, peer.verifier.verify_batch(prepared.requests))

    def prepare_block(self, peer: Peer, block: bytes) -> "PreparedBlock":
        """Split and parse a block and collect the authorizations to verify. The caller
        verifies ``requests`` (``peer.verifier.verify_batch``, on any thread) and passes
        the results to ``finish_block``."""
        prepared = PreparedBlock()
        errors = prepared.errors
        pending = prepared.pending
        for t in decode_server_transmissions(block, peer.version, peer.session_id):
            if t.error is not None:
                errors.append((t.corr_id, t.entity_id, C.Err(t.error)))
                continue
            item = _Pending(t.corr_id, t.entity_id, t.command)
            verdict = self._prepare_verification(peer, item, t.auth, t.service_sig, t.t_for_auth)
            if isinstance(verdict, cauth.AuthRequest):
                prepared.owners.append(len(pending))
                prepared.failures.append(E.AUTH)
                pending.append(item)
                prepared.requests.append(verdict)
            elif isinstance(verdict, list):  # several checks, each with its error
                owner = len(pending)
                pending.append(item)
                for request, failure in verdict:
                    prepared.owners.append(owner)
                    prepared.failures.append(failure)
                    prepared.requests.append(request)
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

    def finish_block(self, peer: Peer, prepared: "PreparedBlock", results: list[bool], reload: bool = False) -> Effects:
        """Answer a prepared block given its verification results. ``reload``: other
        connections may have run since ``prepare_block`` (verification ran on a worker
        thread), so queue records are read again."""
        effects = self._effects = Effects()
        try:
            self._finish_block(peer, prepared, results, reload)
        finally:
            self._effects = None
        return effects

    def _finish_block(self, peer: Peer, prepared: "PreparedBlock", results: list[bool], reload: bool) -> None:
        errors = prepared.errors
        failed: dict[int, E.ErrorType] = {}
        for i, ok in enumerate(results):
            if not ok:
                owner = prepared.owners[i]
                if failed.get(owner) is not E.SERVICE:
                    failed[owner] = prepared.failures[i] if prepared.failures else E.AUTH
        verified: list[_Pending] = []
        # Commands of one block on one queue share one record, so each sees what the ones
        # run before it changed (the reference runs them one by one on the queue's current
        # state, from the block's last command to its first).
        records: dict[bytes, QueueRecord] = {}
        for i, item in enumerate(prepared.pending):
            failure = failed.get(i)
            if failure is not None:
                if failure is E.AUTH:
                    self._count_auth_error(item.cmd)
                errors.append((item.corr_id, item.entity_id, C.Err(failure)))
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
        self._reply(errors)
        if not peer.connected or not verified:
            return
        responses: list[Answer] = []
        events: list[Answer] = []
        deferred: list[tuple[ConnId, list[Answer]]] = []
        undo: list[tuple[Subscription, bytes | None]] = []
        undo_notes: list[list] = []
        proxied: list[ProxyRequest | NameRequest] = []
        walks: list[ServiceWalk] = []
        undo_deliveries: list[tuple[ConnId, bytes]] = []
        self._deferred, self._undo, self._undo_notes, self._proxied = deferred, undo, undo_notes, proxied
        self._walks, self._undo_deliveries = walks, undo_deliveries
        try:
            with self.store.unit():
                fresh: dict[bytes, QueueRecord | None] | None = {} if self.store.shared_writers else None
                # The reference folds a block's commands from the right: the last runs
                # first. Answers, and the messages SUBs deliver, still go in block order,
                # so where each command's output starts is kept to put them back in it
                # (not for the common one-command block).
                starts: list[tuple[int, int]] | None = [] if len(verified) > 1 else None
                for item in reversed(verified):
                    if starts is not None:
                        starts.append((len(responses), len(events)))
                    if fresh is not None and item.queue is not None:
                        # Other processes write the store too: the record is read again
                        # under the writer lock, shared by the block's commands on it.
                        rid = item.queue.recipient_id
                        if rid not in fresh:
                            fresh[rid] = self.store.get_queue(rid)
                        if fresh[rid] is None:  # deleted meanwhile
                            responses.append((item.corr_id, item.entity_id, C.Err(E.AUTH)))
                            continue
                        item.queue = fresh[rid]
                    try:
                        self._execute(peer, item, responses, events)
                    except StoreUsageError:
                        log.exception("store precondition failed")
                        responses.append((item.corr_id, item.entity_id, C.Err(E.INTERNAL)))
                if starts is not None:
                    responses = _in_block_order(responses, [r for r, _ in starts])
                    events = _in_block_order(events, [e for _, e in starts])
        except StoreError as e:
            # The unit is undone: none of the block's answers may stand, and its
            # in-memory changes (delivery state, pushes to others) go with it.
            for sub, delivered in reversed(undo):
                sub.delivered = delivered
            for notes in reversed(undo_notes):
                notes.pop()
            for conn, rid in undo_deliveries:
                self.subscriptions.queues_of(conn).pop(rid, None)
            self.durability.store_failed(e)
            failure = C.Err(store_error(e))
            responses = [(item.corr_id, item.entity_id, failure) for item in verified]
            events = []
            deferred.clear()
            proxied.clear()
            walks.clear()
        finally:
            self._deferred = self._undo = self._undo_notes = self._proxied = None
            self._walks = self._undo_deliveries = None
        for target, items in deferred:
            self._push(target, items)
        self._effects.proxied.extend(proxied)
        self._effects.walks.extend(walks)
        self._reply_responses(responses, events)

    def answers_after_failed_commit(self, peer: Peer, answers: list[Answer]) -> tuple[list[Answer], Effects]:
        """What to send instead of ``answers`` whose commit generation failed: responses
        become ERR STORE (their state change was rolled back), a MSG is withdrawn and the
        queue's current head delivered again (in the returned effects' replies), END stays,
        DELD becomes END (the queue is back but this connection's subscription is gone),
        NMSG is dropped."""
        out: list[Answer] = []
        effects = self._effects = Effects()
        try:
            for corr_id, entity_id, msg in answers:
                if isinstance(msg, C.Msg):
                    self._redeliver(peer, entity_id, msg.msg_id)
                if corr_id:
                    out.append((corr_id, entity_id, msg if isinstance(msg, C.Err) else C.Err(STORE_FAILED)))
                elif msg is C.END or msg is C.DELD:
                    out.append((corr_id, entity_id, C.END))
                elif isinstance(msg, C.Alls):
                    out.append((corr_id, entity_id, msg))  # shows no state: the walk did end
        finally:
            self._effects = None
        return out, effects

    def _redeliver(self, peer: Peer, rid: bytes, msg_id: bytes) -> None:
        if not peer.connected:
            return
        sub = self.subscriptions.get(peer.id, rid)
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
            self._reply([(b"", rid, self._msg(q, head))])

    # ------------------------------------------------------------------ verification

    def _prepare_verification(
        self, peer: Peer, item: _Pending, auth: bytes, service_sig: bytes | None, t_for_auth: bytes
    ) -> cauth.AuthRequest | list | bool | E.ErrorType:
        """Decide what verifies ``item``: the authorization to check (with the reference's
        dummy keys when the queue or key is missing), a list of (check, error) pairs in a
        service session, True (no authorization needed) or the error to answer. A lookup
        that finds nothing costs what one that finds a queue costs (``Store.cover_miss``):
        the time of ERR AUTH must not tell which ids exist.

        As the reference's verifyQueueTransmission, once the queue is found (or for a
        command without one): a service session's role must be the command's (else CMD
        PROHIBITED); NEW, SUB and NSUB carry a service signature exactly in a service
        session, other commands never (else SERVICE); in a service session the queue key
        then covers ``cert_hash || t_for_auth``. A missing queue answers AUTH before any of
        these checks."""
        cmd = item.cmd
        store = self.store
        entity = item.entity_id
        corr_id = item.corr_id
        party = cmd.PARTY
        key: object
        if isinstance(cmd, C.New):
            check = self._service_checks(peer, cmd, service_sig)
            if check is not None:
                return check
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
                    check = self._service_checks(peer, cmd, service_sig)
                    return True if check is None else check
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
                self._dummy(peer, auth, t_for_auth, corr_id, entity)
                return E.AUTH
            item.queue = q
            check = self._service_checks(peer, cmd, service_sig)
            if check is not None:
                return check
            return True if _is_contact(q) else E.AUTH
        elif isinstance(cmd, C.Nsub):
            q = store.queue_by_notifier(entity)
            if q is None:
                store.cover_miss(entity, True)
            item.queue = q
            key = None if q is None or q.notifier is None else q.notifier.notifier_key
        elif isinstance(cmd, (C.Ping, C.Rslv)):
            check = self._service_checks(peer, cmd, service_sig)
            return True if check is None else check
        elif isinstance(cmd, (C.Subs, C.Nsubs)):
            check = self._service_checks(peer, cmd, service_sig)
            if check is not None:
                return check
            # Signed by the service session key alone, with the service id as the entity.
            service = peer.service
            if service is None or len(auth) != cauth.ED25519_SIG_LEN or entity != service.service_id:
                return E.SERVICE
            return [(cauth.AuthRequest(peer.service_key, auth, t_for_auth, corr_id, entity), E.SERVICE)]
        elif isinstance(cmd, (C.Prxy, C.Pfwd, C.Rfwd)):
            # PRXY/PFWD: authorized by the proxied client inside; RFWD: the proxy's (p2r layer)
            check = self._service_checks(peer, cmd, service_sig)
            return True if check is None else check
        else:
            check = self._service_checks(peer, cmd, service_sig)
            return E.CMD_PROHIBITED if check is None else check
        # Run for a missing queue too (unheeded), so that a miss costs what a found queue does.
        check = self._service_checks(peer, cmd, service_sig)
        if item.queue is None and not isinstance(cmd, C.New):
            # No queue: a dummy verification and AUTH, which wins over a service check's error.
            return cauth.AuthRequest(None, auth, t_for_auth, corr_id, entity)
        if check is not None:
            return check
        if service_sig is None:
            return cauth.AuthRequest(key, auth, t_for_auth, corr_id, entity)
        # A service session's NEW/SUB/NSUB: the queue key covers the certificate hash too,
        # the service key signs the transmission.
        assert peer.service is not None
        authorized = cauth.service_authorized(peer.service.cert_hash, t_for_auth)
        return [
            (cauth.AuthRequest(peer.service_key, service_sig, t_for_auth, corr_id, entity), E.SERVICE),
            (cauth.AuthRequest(key, auth, authorized, corr_id, entity), E.AUTH),
        ]

    @staticmethod
    def _service_checks(peer: Peer, cmd: C.Command, service_sig: bytes | None) -> E.ErrorType | None:
        """The reference's checkRole and the presence rule of verifyServiceSig (the
        signature itself is verified with the block's other checks)."""
        service = peer.service
        if service is not None:
            role = C.PARTY_SERVICE_ROLE[cmd.PARTY]
            if role is not None and role is not service.role:
                return E.CMD_PROHIBITED
        if C.uses_service_auth(cmd):
            if (service is None) != (service_sig is None):
                return E.SERVICE
        elif service_sig is not None:
            return E.SERVICE
        return None

    def _dummy(self, peer: Peer, auth: bytes, t_for_auth: bytes, corr_id: bytes, entity: bytes) -> None:
        if auth:
            peer.verifier.verify_batch((cauth.AuthRequest(None, auth, t_for_auth, corr_id, entity),))

    # ------------------------------------------------------------------ execution

    def _execute(self, peer: Peer, item: _Pending, out: list, events: list) -> None:
        cmd = item.cmd
        corr_id, entity = item.corr_id, item.entity_id
        if isinstance(cmd, C.Ping):
            out.append((corr_id, b"", C.PONG))
            return
        if isinstance(cmd, (C.Prxy, C.Pfwd)):
            if isinstance(cmd, C.Prxy) and not self._proxy_allowed(cmd):
                out.append((corr_id, entity, C.Err(E.PROXY_BASIC_AUTH)))
            elif self._proxied is not None:
                self._proxied.append(ProxyRequest(peer.id, corr_id, entity, cmd))
            else:  # outside a block (never: commands come in blocks); answer, do not hang
                out.append((corr_id, entity, C.Err(E.INTERNAL)))
            return
        if isinstance(cmd, C.Rfwd):
            answer = self._forwarded(peer, corr_id, cmd)
            if answer is not None:  # None: a forwarded RSLV, sealed into RRES once resolved
                out.append((corr_id, b"", answer))
            return
        if isinstance(cmd, C.Rslv):
            answer = self._resolve(peer, NameRequest(peer.id, corr_id, cmd.domain))
            if answer is not None:
                out.append((corr_id, b"", answer))
            return
        if isinstance(cmd, C.New):
            out.append((corr_id, entity, self._create_queue(peer, cmd, corr_id)))
            return
        if isinstance(cmd, C.Nsubs):
            out.append((corr_id, entity, self._subscribe_service(peer, NTF)))
            return
        if isinstance(cmd, C.Subs):
            out.append((corr_id, entity, self._subscribe_service(peer, RCV)))
            return
        q = item.queue
        if q is None:  # verified commands always carry their queue; guard anyway
            out.append((corr_id, entity, C.Err(E.INTERNAL)))
            return
        if q.status == _DELETED:  # by an earlier command of this block
            out.append((corr_id, entity, C.Err(E.AUTH)))
            return
        if isinstance(cmd, C.Send):
            out.append((corr_id, entity, self._send_message(peer, q, cmd)))
            return
        if isinstance(cmd, C.Nsub):
            out.append((corr_id, entity, self._subscribe_notifications(peer, q, entity)))
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
            handler(self, peer, q, item, out, events)
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

    # --- proxying (v8+)

    def _proxy_allowed(self, cmd: C.Prxy) -> bool:
        """The reference's allowProxy: with a create_password, PRXY must carry it."""
        password = self.config.create_password
        return password is None or cmd.basic_auth == password

    def _resolve(self, peer: Peer, request: NameRequest) -> C.Response | None:
        """RSLV (v20): with no resolver configured the answer, NAME NO_RESOLVER; else None
        and the request goes to the shell, which answers once the resolver has."""
        self._count(STAT_REQUESTS)
        if not self.config.names_enabled:
            self._count(STAT_DISABLED)
            return C.Err(E.NAME_NO_RESOLVER)
        if self._proxied is None:  # outside a block (never: commands come in blocks)
            return C.Err(E.INTERNAL)
        self._proxied.append(request)
        return None

    def _forwarded(self, peer: Peer, rfwd_corr_id: bytes, cmd: C.Rfwd) -> C.Response | None:
        """The relay role (processForwardedCommand): open the RFWD, run the client's
        command as the proxy's session at the version it carries (only SEND, SKEY, LKEY,
        LGET and RSLV), and seal its answer into the RRES. None: a forwarded RSLV that the
        shell resolves and answers later (NameRequest)."""
        try:
            fwd = open_forwarded(peer.session_key, peer.session_private, peer.session_id, rfwd_corr_id, cmd)
        except ProxyLayerError as e:
            return C.Err(e.error)
        t = fwd.command
        corr_id, entity = t.corr_id, t.entity_id
        client = peer.forwarded(fwd.version)
        answer: C.Response
        if t.error is not None:
            answer = C.Err(t.error)
        elif not isinstance(t.command, _FORWARDED_COMMANDS):
            answer = C.Err(E.CMD_PROHIBITED)
        else:
            item = _Pending(corr_id, entity, t.command)
            verdict = self._prepare_verification(client, item, t.auth, t.service_sig, t.t_for_auth)
            if isinstance(verdict, cauth.AuthRequest):
                verdict = peer.verifier.verify_batch((verdict,))[0] or E.AUTH
            if verdict is True and isinstance(t.command, C.Rslv):
                sealing = ForwardedName(peer.session_key, peer.session_id, fwd, corr_id, entity)  # type: ignore[arg-type]
                resolved = self._resolve(peer, NameRequest(peer.id, rfwd_corr_id, t.command.domain, sealing))
                if resolved is None:
                    self._count("pMsgFwdsRecv")
                    return None
                answer = resolved
            elif verdict is True:
                inner: list[Answer] = []
                self._execute(client, item, inner, [])
                [(corr_id, entity, answer)] = inner
            else:
                if verdict == E.AUTH:
                    self._count_auth_error(t.command)
                answer = C.Err(verdict)
        try:
            rres = seal_forwarded(peer.session_key, peer.session_id, fwd, corr_id, entity, answer)
        except ProxyLayerError as e:
            return C.Err(e.error)
        self._count("pMsgFwdsRecv")
        return rres

    def _touch(self, q: QueueRecord) -> None:
        """Keep ``updated_at`` (a day number in seconds) current, at most one write a day."""
        today = int(self.clock()) // DAY * DAY
        if q.updated_at != today:
            q.updated_at = today
            self.store.update_queue(q)

    # --- NEW

    def _create_queue(self, peer: Peer, cmd: C.New, corr_id: bytes) -> C.Response:
        cfg = self.config
        if not cfg.allow_new_queues or (
            cfg.create_password is not None and cmd.basic_auth != cfg.create_password
        ):
            return C.Err(E.AUTH)
        service = peer.service
        if service is not None and not cmd.subscribe:
            return C.Err(E.CMD_PROHIBITED)  # a service may not only create (the reference)
        service_id = None if service is None else service.service_id
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
                rcv_service_id=service_id,
            )
            if self.store.add_queue(rec):
                self._count("qCreated")
                if notifier is not None:
                    self._count("ntfNewCreated")
                if service_id is not None:
                    # Subscribed as the service, not queue by queue (the reference's
                    # subscribeNewQueue): its messages reach the service's session.
                    self._take_service(peer, RCV, service_id, add=(1, queue_id_hash(rid)))
                elif cmd.subscribe:
                    self._take_subscription(peer, rid)
                return C.Ids(
                    rid,
                    sid,
                    dh.server_public_der,
                    queue_mode=None if qr is None else qr.mode,
                    link_id=None if link is None else link[0],
                    service_id=service_id,
                    ntf_creds=None if notifier is None else C.ServerNtfCreds(notifier.notifier_id, ntf_dh.server_public_der),
                )
            if client_sender_id is not None or (qr is not None and qr.link_id is not None):
                return C.Err(E.AUTH)  # client-chosen ids collide: no retry, as the reference
        return C.Err(E.INTERNAL)

    # --- subscriptions

    def _take_subscription(self, peer: Peer, rid: bytes) -> Subscription:
        """Make ``peer`` the queue's subscriber; the previous one receives END."""
        sub, previous = self.subscriptions.subscribe(peer.id, rid)
        if previous is not None:
            self._count("qSubEnd")
            self._event(previous, rid, C.END)
        return sub

    def _take_service(self, peer: Peer, party: str, service_id: bytes, add: ServiceSubs | None = None,
                      subs: ServiceSubs | None = None, subscribed: bool = False) -> None:
        """``peer`` becomes the service's subscriber; an older session of it gets ENDS
        with the count and hash it held."""
        previous = self.subscriptions.take_service(party, peer.id, service_id, add, subs, subscribed)
        if previous is not None:
            conn, (count, digest) = previous
            self._event(conn, service_id, C.Ends(count, digest))

    def _leave_service(self, peer: Peer, party: str, service_id: bytes | None, entity: bytes,
                       event: C.Response) -> None:
        """Queue ``entity`` (recipient or notifier id) leaves the service: the service's
        subscriber holds it no more and, if another connection, is told ``event`` (END or
        DELD) for it."""
        if service_id is not None:
            if self._remote and self.subscriptions.subscriber_of_service(party, service_id) is None:
                self._remote_event((X.LEFT_SERVICE, party, service_id, entity, "DELD" if event is C.DELD else "END"))
                return
            conn = self.subscriptions.leave_service(party, service_id, entity, except_conn=peer.id)
            if conn is not None:
                self._event(conn, entity, event)

    def _sub(self, peer: Peer, q: QueueRecord, item: _Pending, out: list, events: list) -> None:
        if peer.service is not None:  # verification let only a messaging service's SUB here
            self._sub_as_service(peer, q, item, out, events)
            return
        rid = q.recipient_id
        current = q.rcv_service_id
        if current is not None:
            # A direct subscription ends the queue's association with its service (the
            # reference's prepareBatchSubs); the service's session gets END for it.
            q.rcv_service_id = None
            self.store.update_queue(q)
            self._count("rcvServices.assocRemoved")
            self._leave_service(peer, RCV, current, rid, C.END)
        sub = self.subscriptions.get(peer.id, rid)
        had_sub = sub is not None
        if sub is None:
            sub = self._take_subscription(peer, rid)
        elif sub.prohibited:
            self._count("qSubProhibited")
            out.append((item.corr_id, item.entity_id, C.Err(E.CMD_PROHIBITED)))
            return
        else:
            self._count("qSubDuplicate")
            self._set_delivered(sub, None)
        out.append((item.corr_id, item.entity_id, C.Sok(None if peer.service is None else peer.service.service_id)))
        msg = self.store.peek_message(rid)
        if msg is not None:
            if not had_sub:
                self._count("qSub")  # as the reference: only subscriptions with a message waiting
            self._set_delivered(sub, msg.msg_id)
            events.append((b"", rid, self._msg(q, msg)))

    def _sub_as_service(self, peer: Peer, q: QueueRecord, item: _Pending, out: list, events: list) -> None:
        """SUB in a messaging service's session (the reference's sharedSubscribeQueue): the
        queue is associated with the service (stored) and the session holds it as the
        service's subscriber (count and hash); its direct subscriber and the service it
        belonged to before get END. SOK carries the service id; a waiting message follows."""
        assert peer.service is not None
        rid = q.recipient_id
        sid = peer.service.service_id
        subs = self.subscriptions
        sub = subs.get(peer.id, rid)
        if sub is not None and sub.prohibited:
            self._count("qSubProhibited")
            out.append((item.corr_id, item.entity_id, C.Err(E.CMD_PROHIBITED)))
            return
        current = q.rcv_service_id
        # The session holds the service's queues after SUBS, or the ones it took one by one
        # (the reference's test: a non-zero count).
        held = subs.service_subscribed(RCV, peer.id) or subs.service_count(RCV, peer.id) > 0
        if current != sid:
            q.rcv_service_id = sid  # a new or moved association
            self.store.update_queue(q)
            self._count("rcvServices.assocNew" if current is None else "rcvServices.assocUpdated")
        else:
            self._count("rcvServices.assocDuplicate")
        if current != sid or not held:
            if not held:
                self._count("rcvServices.subCount")
            self._count("rcvServices.subQueues")
            direct = subs.drop_queue(rid)
            if direct is not None and direct != peer.id:
                self._count("qSubEnd")
                self._event(direct, rid, C.END)
            if self._remote:  # a direct subscriber in another worker gets END there
                self._remote_event((X.ASSOCIATED, rid))
            if current != sid:
                self._leave_service(peer, RCV, current, rid, C.END)
            self._take_service(peer, RCV, sid, add=(1, queue_id_hash(rid)))
        elif sub is not None:
            self._count("qSubDuplicate")
        out.append((item.corr_id, item.entity_id, C.Sok(sid)))
        msg = self.store.peek_message(rid)
        if sub is not None:
            self._set_delivered(sub, None)
        if msg is not None:
            sub = self._service_delivery(peer.id, rid)
            self._set_delivered(sub, msg.msg_id)
            events.append((b"", rid, self._msg(q, msg)))

    def _service_delivery(self, conn: ConnId, rid: bytes) -> Subscription:
        """The delivery state of ``rid`` in messaging service session ``conn``; one made
        while a block runs goes again if the block is undone."""
        subs = self.subscriptions
        sub = subs.get(conn, rid)
        if sub is None:
            sub = subs.service_delivery(conn, rid)
            if self._undo_deliveries is not None:
                self._undo_deliveries.append((conn, rid))
        return sub

    def walk_service(self, peer: Peer, walk: ServiceWalk, page: int = 128, budget: int = 128) -> Effects:
        """One step of a messaging service's delivery after its first SUBS (the reference's
        deliverServiceMessages): up to ``page`` of the service's queues, in recipient-id
        order from where the last step ended, stopping early after ``budget`` MSGs. Each
        queue with a waiting message and no delivery state in the session yet gets one and
        its head is sent (MSG, empty corrId, the recipient id), one batch each; a queue
        already delivering (a SEND or SUB since the SUBS) is skipped, so there is never more
        than one unacknowledged MSG per queue. After the last queue: the per-queue errors
        and ALLS in one batch. The walk ends silently if the session lost the service."""
        effects = self._effects = Effects()
        try:
            self._walk_service(peer, walk, page, max(1, budget))
        finally:
            self._effects = None
        return effects

    def _walk_service(self, peer: Peer, walk: ServiceWalk, page: int, budget: int) -> None:
        subs = self.subscriptions
        if walk.done:
            return
        if not peer.connected or subs.subscriber_of_service(RCV, walk.service_id) != peer.id:
            walk.done = True
            return
        store = self.store
        try:
            rids = store.service_queues_after(walk.service_id, RCV, walk.cursor, page)
        except StoreError as e:
            walk.done = True
            self._reply([(b"", b"", C.Err(store_error(e)))])  # instead of ALLS, as the reference
            return
        mine = subs.queues_of(peer.id)
        sent = 0
        for rid in rids:
            if sent >= budget:
                return  # the rest of the page in the next step
            walk.cursor = rid
            walk.queues += 1
            if rid in mine:
                continue  # delivering already
            try:
                msg = store.peek_message(rid)
                q = None if msg is None else store.get_queue(rid)
            except StoreError as e:
                walk.errors.append((b"", rid, C.Err(store_error(e))))
                continue
            if q is None:
                continue
            sub = subs.service_delivery(peer.id, rid)
            sub.delivered = msg.msg_id
            sent += 1
            self._reply([(b"", rid, self._msg(q, msg))])
        walk.delivered += sent
        if len(rids) < page:
            walk.done = True
            self._count("rcvServicesSubMsg", walk.delivered)
            self._reply(walk.errors + [(b"", b"", C.ALLS)])
            walk.errors = []

    def _get(self, peer: Peer, q: QueueRecord, item: _Pending, out: list, events: list) -> None:
        rid = q.recipient_id
        sub = self.subscriptions.get(peer.id, rid)
        if sub is None:
            sub = self.subscriptions.add_get(peer.id, rid)
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

    def _ack(self, peer: Peer, q: QueueRecord, item: _Pending, out: list, events: list) -> None:
        rid = q.recipient_id
        msg_id = item.cmd.msg_id
        sub = self.subscriptions.get(peer.id, rid)
        if sub is None or sub.delivered is None or (msg_id and msg_id != sub.delivered):
            out.append((item.corr_id, item.entity_id, C.Err(E.NO_MSG)))
            return
        target = sub.delivered if not msg_id else msg_id
        self._set_delivered(sub, None)
        if self.store.delete_message(rid, target):
            self._count("msgRecv")
            self.active_queues.record(rid)
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

    def _key(self, peer: Peer, q: QueueRecord, item: _Pending, out: list, events: list) -> None:
        out.append((item.corr_id, item.entity_id, self._secure(q, item.cmd.key)))

    def _rkey(self, peer: Peer, q: QueueRecord, item: _Pending, out: list, events: list) -> None:
        if q.queue_mode != MODE_CONTACT:
            out.append((item.corr_id, item.entity_id, C.Err(E.AUTH)))
            return
        q.recipient_keys = list(item.cmd.keys)
        self.store.update_queue(q)
        out.append((item.corr_id, item.entity_id, C.OK))

    def _lset(self, peer: Peer, q: QueueRecord, item: _Pending, out: list, events: list) -> None:
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

    def _ldel(self, peer: Peer, q: QueueRecord, item: _Pending, out: list, events: list) -> None:
        if q.link_id is not None:
            q.link_id = q.link_fixed = q.link_user = None
            self.store.update_queue(q)
        out.append((item.corr_id, item.entity_id, C.OK))

    def _link_response(self, q: QueueRecord, link_id: bytes) -> C.Response:
        if q.link_id is None or q.link_id != link_id:
            return C.Err(E.AUTH)
        return C.Lnk(q.sender_id, C.QueueLinkData(q.link_fixed, q.link_user))

    def _nkey(self, peer: Peer, q: QueueRecord, item: _Pending, out: list, events: list) -> None:
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
                self._notifier_gone(peer, old)
            out.append((item.corr_id, item.entity_id, C.Nid(nid, dh.server_public_der)))
            return
        out.append((item.corr_id, item.entity_id, C.Err(E.INTERNAL)))

    def _ndel(self, peer: Peer, q: QueueRecord, item: _Pending, out: list, events: list) -> None:
        old = q.notifier
        if old is not None:
            q.notifier = None
            self.store.update_queue(q)
            self._count("ntfDeleted")
            self._notifier_gone(peer, old)
        out.append((item.corr_id, item.entity_id, C.OK))

    def _notifier_gone(self, peer: Peer, notifier: NotifierRecord) -> None:
        nid = notifier.notifier_id
        self.notifications.pop(nid, None)
        self.notification_service.pop(nid, None)
        subscriber = self.subscriptions.drop_notifier(nid)
        if subscriber is not None and subscriber != peer.id:
            self._event(subscriber, nid, C.DELD)
        elif self._remote:
            self._remote_event((X.NTF_DELETED, nid, True))
        self._leave_service(peer, NTF, notifier.ntf_service_id, nid, C.DELD)

    def _off(self, peer: Peer, q: QueueRecord, item: _Pending, out: list, events: list) -> None:
        if q.status != STATUS_OFF:
            q.status = STATUS_OFF
            q.blocked_info = None
            self.store.update_queue(q)
        out.append((item.corr_id, item.entity_id, C.OK))

    def _del(self, peer: Peer, q: QueueRecord, item: _Pending, out: list, events: list) -> None:
        rid = q.recipient_id
        self.store.delete_queue(rid)
        self._count_deleted(q)
        q.status = _DELETED  # the block's later commands on this queue answer AUTH
        self.subscriptions.drop(peer.id, rid)
        subscriber = self.subscriptions.drop_queue(rid)
        if subscriber is not None:
            self._event(subscriber, rid, C.DELD)
        elif self._remote:
            self._remote_event((X.DELETED, rid, True))
        self._leave_service(peer, RCV, q.rcv_service_id, rid, C.DELD)
        if q.notifier is not None:
            self._notifier_gone(peer, q.notifier)
        out.append((item.corr_id, item.entity_id, C.OK))

    def _que(self, peer: Peer, q: QueueRecord, item: _Pending, out: list, events: list) -> None:
        rid = q.recipient_id
        info: dict = {"qiSnd": q.sender_key is not None, "qiNtf": q.notifier is not None}
        sub = self.subscriptions.get(peer.id, rid)
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

    def _send_message(self, peer: Peer, q: QueueRecord, cmd: C.Send) -> C.Response:
        self._touch(q)  # before the checks, as the reference's withQueue_ False
        if len(cmd.body) > V.max_message_length(peer.version):
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
        self.active_queues.record(rid, cmd.flags.notification)
        if cmd.flags.notification:
            self._count("msgSentNtf")
        if result.was_empty:
            self._deliver(rid, q, msg)
        if cmd.flags.notification and q.notifier is not None:
            self._notify(q.notifier, msg)
        return C.OK

    def _deliver(self, rid: bytes, q: QueueRecord, msg: StoredMessage) -> None:
        """Push a message that arrived in an empty queue to its subscriber, if idle: the
        session subscribed as the queue's messaging service when it has one (v19),
        else its own subscriber."""
        if q.rcv_service_id is not None:
            subscriber = self.subscriptions.subscriber_of_service(RCV, q.rcv_service_id)
            if subscriber is None:
                if self._remote:  # the service's session may be in another worker
                    self._remote_event((X.KICK, rid, msg.msg_id, q.rcv_service_id))
                return
            sub = self._service_delivery(subscriber, rid)
        else:
            found = self.subscriptions.subscriber_of(rid)
            if found is None:
                if self._remote:  # its subscriber may be in another worker
                    self._remote_event((X.KICK, rid, msg.msg_id))
                return
            subscriber, sub = found
        if sub.prohibited or sub.delivered is not None:
            return
        self._set_delivered(sub, msg.msg_id)
        self._event(subscriber, rid, self._msg(q, msg))

    # --- notifications

    def _notify(self, notifier: NotifierRecord, msg: StoredMessage) -> None:
        nonce, enc = cmsg.encrypt_ntf_meta(cmsg.precompute(notifier.ntf_dh_secret), msg.msg_id, msg.ts)
        nid = notifier.notifier_id
        if self._remote and self._notification_target(nid, notifier.ntf_service_id) is None:
            # Nobody here holds the notifier: the hub gives it to whoever does (or keeps it).
            self._remote_event((X.NOTIFICATIONS, nid, notifier.ntf_service_id, [(msg.msg_id, msg.ts, nonce, enc)]))
            return
        pending = self.notifications.setdefault(nid, [])
        pending.append((msg.msg_id, msg.ts, nonce, enc))
        self._note_service(nid, notifier.ntf_service_id)
        if self._undo_notes is not None:
            self._undo_notes.append(pending)

    def _note_service(self, nid: bytes, service_id: bytes | None) -> None:
        if service_id is None:
            self.notification_service.pop(nid, None)
        elif nid in self.notifications:
            self.notification_service[nid] = service_id

    def _subscribe_notifications(self, peer: Peer, q: QueueRecord, nid: bytes) -> C.Response:
        """NSUB (the reference's subscribeNotifications). In a notifier service session it
        associates the notifier with the service (stored) and the session subscribes as the
        service; from another session it ends a service association."""
        notifier = q.notifier
        if notifier is None or notifier.notifier_id != nid:
            return C.Err(E.INTERNAL)
        service = peer.service
        current = notifier.ntf_service_id
        if service is not None:
            sid = service.service_id
            held = self.subscriptions.service_count(NTF, peer.id) > 0
            if current != sid:
                notifier.ntf_service_id = sid  # a new or moved association
                self.store.update_queue(q)
                self._note_service(nid, sid)
                self._count("ntfServices.assocNew" if current is None else "ntfServices.assocUpdated")
            else:
                self._count("ntfServices.assocDuplicate")
                if held:
                    return C.Sok(sid)  # the session holds the service already: nothing changes
            if not held:
                self._count("ntfServices.subCount")
            self._count("ntfServices.subQueues")
            # The notifier joins the service subscription: its direct subscriber, and the
            # service it belonged to before, lose it (END).
            direct = self.subscriptions.drop_notifier(nid)
            if direct is not None and direct != peer.id:
                self._event(direct, nid, C.END)
            if current != sid:
                self._leave_service(peer, NTF, current, nid, C.END)
            self._take_service(peer, NTF, sid, add=(1, queue_id_hash(nid)))
            return C.Sok(sid)
        if current is not None:
            notifier.ntf_service_id = None  # a direct subscription ends the association
            self.store.update_queue(q)
            self._note_service(nid, None)
            self._count("ntfServices.assocRemoved")
            self._leave_service(peer, NTF, current, nid, C.END)
        new, previous = self.subscriptions.subscribe_notifier(peer.id, nid)
        self._count("ntfSub" if new else "ntfSubDuplicate")
        if previous is not None:
            self._event(previous, nid, C.END)
        return C.Sok(None)

    def _subscribe_service(self, peer: Peer, party: str) -> C.Response:
        """SUBS/NSUBS (the reference's sharedSubscribeService): the session subscribes every
        queue (notifier) associated with its service; SOKS with the store's count and
        IdsHash of them (one read: the store keeps them), an older session of the service
        gets ENDS. A repeat in the session answers what the session holds now. For a
        messaging service the first SUBS also starts the delivery of every waiting
        message (a ``ServiceWalk`` the shell drives; it ends with ALLS)."""
        service = peer.service
        if service is None:  # verification guarantees a service; guard anyway
            return C.Err(E.INTERNAL)
        subs = self.subscriptions
        if subs.service_subscribed(party, peer.id):
            return C.Soks(*subs.service_subs(party, peer.id))
        sid = service.service_id
        count, digest = self.store.service_queue_subs(sid, party)
        self._take_service(peer, party, sid, subs=(count, digest), subscribed=True)
        if party == RCV:
            self._count("rcvServices.subCount")
            self._count("rcvServices.subQueues", count)
            if self._walks is not None:
                self._walks.append(ServiceWalk(peer.id, sid))
        return C.Soks(count, digest)

    def _notification_target(self, nid: bytes, service_id: bytes | None) -> ConnId | None:
        subs = self.subscriptions
        return subs.ntf_subscriber.get(nid) if service_id is None else subs.subscriber_of_service(NTF, service_id)

    # ------------------------------------------------------------------ other workers

    # What the hub tells this worker (cluster.ClusterNode): each returns the effects for
    # this worker's connections (and events for the hub, as pushes to cluster.REMOTE).

    def remote_takeover(self, rid: bytes) -> tuple[Effects, bool]:
        """A connection of another worker subscribed ``rid``: ours gets END. The flag says
        whether it had a message unacknowledged (the new subscriber is owed it)."""
        effects = Effects()
        found = self.subscriptions.subscriber_of(rid)
        if found is None:
            return effects, False
        conn, sub = found
        self.subscriptions.drop_queue(rid)
        self._count("qSubEnd")
        effects.pushes.append((conn, self.durability.current(), [(b"", rid, C.END)]))
        return effects, sub.delivered is not None

    def deliver_heads(self, heads: list[tuple[bytes, bytes | None, bytes | None]]) -> Effects:
        """These queues may hold a message for their subscriber (``(rid, msg id)``: a
        message another worker committed and made durable; ``(rid, None)``: a subscription
        just ordered by the hub; a third member names the messaging service whose session
        receives the queue's messages): deliver each queue's head to its subscriber here if it
        waits for none, as SEND into an empty queue does. The head read is shown at once
        when it is the announced durable message; any other head may be another process's
        commit not yet on disk, so it is read again in a unit and waits for the next sync."""
        effects = Effects()
        subs = self.subscriptions
        todo = []
        for rid, msg_id, service_id in dict.fromkeys(heads):
            if service_id is not None:  # a messaging service's queue: its session's delivery
                conn = subs.subscriber_of_service(RCV, service_id)
                found = None if conn is None else (conn, self._service_delivery(conn, rid))
            else:
                found = subs.subscriber_of(rid)
            if found is not None and not found[1].prohibited and found[1].delivered is None:
                todo.append((rid, msg_id, found))
        if not todo:
            return effects
        durable, uncertain = [], []
        try:
            for rid, msg_id, found in todo:
                q = self.store.get_queue(rid)  # outside a unit: no sync to wait for
                if q is None or q.status == STATUS_BLOCKED:
                    continue
                head = self.store.peek_message(rid)
                if head is None:
                    continue
                if head.msg_id == msg_id:
                    durable.append((found, rid, q, head))
                else:
                    uncertain.append((rid, found))
            with self.store.unit():
                for rid, found in uncertain:
                    q = self.store.get_queue(rid)
                    head = None if q is None or q.status == STATUS_BLOCKED else self.store.peek_message(rid)
                    if head is not None:
                        durable.append((found, rid, q, head))
        except StoreError as e:
            self.durability.store_failed(e)
            return effects
        generation = self.durability.current()  # after the unit: it may show others' commits
        for (conn, sub), rid, q, head in durable:
            if sub.delivered is None:
                sub.delivered = head.msg_id
                effects.pushes.append((conn, generation, [(b"", rid, self._msg(q, head))]))
        return effects

    def remote_deleted(self, rid: bytes, tell: bool) -> Effects:
        effects = Effects()
        conn = self.subscriptions.drop_queue(rid)
        if conn is not None and tell:
            effects.pushes.append((conn, self.durability.current(), [(b"", rid, C.DELD)]))
        return effects

    def remote_notifier_deleted(self, nid: bytes, tell: bool) -> Effects:
        effects = Effects()
        self.notifications.pop(nid, None)
        self.notification_service.pop(nid, None)
        conn = self.subscriptions.drop_notifier(nid)
        if conn is not None and tell:
            effects.pushes.append((conn, self.durability.current(), [(b"", nid, C.DELD)]))
        return effects

    def _ship_notifications(self, effects: Effects, nids: list[bytes]) -> None:
        events = []
        for nid in nids:
            pending = self.notifications.pop(nid, None)
            sid = self.notification_service.pop(nid, None)
            if pending:
                events.append((X.NOTIFICATIONS, nid, sid, pending))
        if events:
            effects.pushes.append(self._remote_push(*events))

    def remote_ntf_takeover(self, nid: bytes) -> Effects:
        """Another worker's connection subscribed the notifier: ours gets END, and the
        notifications waiting here go to the hub (for the new subscriber)."""
        effects = Effects()
        conn = self.subscriptions.drop_notifier(nid)
        if conn is not None:
            effects.pushes.append((conn, self.durability.current(), [(b"", nid, C.END)]))
        if nid not in self.notification_service:
            self._ship_notifications(effects, [nid])
        return effects

    def remote_service_takeover(self, party: str, service_id: bytes) -> Effects:
        """A session of the service in another worker took it over: ours gets ENDS."""
        effects = Effects()
        dropped = self.subscriptions.drop_service(party, service_id)
        if dropped is not None:
            conn, lost = dropped
            effects.pushes.append((conn, self.durability.current(), [(b"", service_id, C.Ends(*lost))]))
        if party == NTF:
            self._ship_notifications(effects, [n for n, s in self.notification_service.items() if s == service_id])
        return effects

    def remote_left_service(self, party: str, service_id: bytes, entity: bytes, event: str) -> Effects:
        effects = Effects()
        conn = self.subscriptions.leave_service(party, service_id, entity)
        if conn is not None:
            msg = C.DELD if event == "DELD" else C.END
            effects.pushes.append((conn, self.durability.current(), [(b"", entity, msg)]))
        return effects

    def remote_blocked(self, rid: bytes, info: bytes) -> Effects:
        effects = Effects()
        conn = self.subscriptions.subscriber.get(rid)
        if conn is not None:
            try:
                error = E.parse_error_type(b"BLOCKED " + info)
            except ParseError:
                error = E.BLOCKED_SPAM
            effects.pushes.append((conn, self.durability.current(), [(b"", rid, C.Err(error))]))
        return effects

    def add_notifications(self, nid: bytes, service_id: bytes | None, items: list) -> Effects:
        """Notifications from another worker for a notifier held here (sent with the next
        ``deliver_notifications``); back to the hub if nobody here holds it any more."""
        effects = Effects()
        items = [tuple(n) for n in items]
        if self._notification_target(nid, service_id) is None:
            effects.pushes.append(self._remote_push((X.NOTIFICATIONS, nid, service_id, items)))
            return effects
        self.notifications.setdefault(nid, []).extend(items)
        self._note_service(nid, service_id)
        return effects

    def deliver_notifications(self) -> Effects:
        """Send stored notifications to their subscribers (the reference does this every
        1.5 s): one batch of NMSGs per notifier, to its service's subscriber when the
        notifier belongs to a service, else to its own subscriber. Notifications nobody
        is subscribed to wait (until they expire)."""
        effects = Effects()
        generation = self.durability.current()
        subs = self.subscriptions
        services = self.notification_service
        sent = 0
        for nid in list(self.notifications):
            sid = services.get(nid)
            conn = subs.ntf_subscriber.get(nid) if sid is None else subs.subscriber_of_service(NTF, sid)
            if conn is None:
                continue
            pending = self.notifications.pop(nid)
            services.pop(nid, None)
            effects.pushes.append((conn, generation, [(b"", nid, C.Nmsg(nonce, enc)) for _, _, nonce, enc in pending]))
            sent += len(pending)
        self._count("msgNtfs", sent)
        return effects

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


# What a relay executes of a forwarded transmission (the reference's rejectOrVerify).
_FORWARDED_COMMANDS = tuple(C.FORWARDED_COMMANDS)

_AUTH_COUNTERS: dict[type, str] = {
    C.Send: "msgSentAuth", C.Sub: "qSubAuth", C.Nsub: "ntfSubAuth", C.Get: "msgGetAuth",
}


def _in_block_order(outputs: list[Answer], starts: list[int]) -> list[Answer]:
    """The outputs of a block's commands run from the last to the first (the k-th run's
    begin at ``starts[k]``), rearranged into the block's order."""
    ends = starts[1:] + [len(outputs)]
    ordered: list[Answer] = []
    for start, end in zip(reversed(starts), reversed(ends)):
        ordered.extend(outputs[start:end])
    return ordered


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
