"""The store interfaces: QueueStore (queue records and their id indexes), MessageStore
(per-queue message lists with the reference's quota rule) and Store (both, plus transaction
control). LMDBStore and MemoryStore implement Store with the same observable behaviour."""

from __future__ import annotations

import enum
import functools
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager

from ..protocol.ids_hash import ServiceSubs
from .records import QueueRecord, ServiceRecord, StoredMessage

DEFAULT_QUOTA = 128  # the reference's msgQueueQuota


class WriteResult(enum.Enum):
    """The outcome of write_message (the reference's writeMsg)."""

    STORED = "stored"  # appended to a queue that already had messages
    STORED_EMPTY = "stored_empty"  # appended to an empty queue: the broker may push it now
    QUOTA = "quota"  # the quota marker was appended instead; answer ERR QUOTA
    FULL = "full"  # over quota and not yet emptied: nothing stored; answer ERR QUOTA

    @property
    def stored(self) -> bool:
        return self is WriteResult.STORED or self is WriteResult.STORED_EMPTY

    @property
    def was_empty(self) -> bool:
        return self is WriteResult.STORED_EMPTY


class QueueStore(ABC):
    """Queue records keyed by recipient id, with sender, notifier and link id indexes."""

    @abstractmethod
    def get_queue(self, rid: bytes) -> QueueRecord | None:
        """The record of queue ``rid`` (a fresh copy), or None."""

    @abstractmethod
    def queue_by_sender(self, sid: bytes) -> QueueRecord | None: ...

    @abstractmethod
    def queue_by_notifier(self, nid: bytes) -> QueueRecord | None: ...

    @abstractmethod
    def queue_by_link(self, link_id: bytes) -> QueueRecord | None: ...

    @abstractmethod
    def cover_miss(self, key: bytes, by_index: bool) -> None:
        """After a lookup of ``key`` found no queue, do the rest of the work a lookup that
        finds one does (for ``by_index``, the sender/notifier/link lookups, the second read;
        then reading a typical record), so that an ERR AUTH takes as long for a queue id
        that does not exist as for one that does. Changes nothing."""

    @abstractmethod
    def add_queue(self, rec: QueueRecord) -> bool:
        """Store a new queue. False (nothing written) if its recipient id, sender id, notifier id
        or link id is already in use. RecordError (nothing written) for an invalid record."""

    @abstractmethod
    def update_queue(self, rec: QueueRecord) -> None:
        """Rewrite the record of ``rec.recipient_id``, moving the sender/notifier/link indexes
        when those ids change. QueueNotFound if there is no such queue; DuplicateIdError if a new
        id belongs to another queue; RecordError for an invalid record (nothing written)."""

    @abstractmethod
    def delete_queue(self, rid: bytes) -> QueueRecord | None:
        """Remove the queue, its indexes and all its messages; its old record, or None."""

    @abstractmethod
    def queue_count(self) -> int: ...

    @abstractmethod
    def notifier_count(self) -> int:
        """Queues with a notifier (the reference's notifierCount statistic)."""

    @abstractmethod
    def queues_after(self, cursor: bytes | None, limit: int) -> list[QueueRecord]:
        """Up to ``limit`` queue records (fresh copies) in recipient-id order, all with ids
        greater than ``cursor`` (from the first if None). One page per call, so that no
        engine cursor outlives a call: for export and maintenance tools, not the broker."""

    # --- services (v16 service clients) ------------------------------------------------
    #
    # A queue is associated with a service through its record (rcv_service_id: party 'R';
    # notifier.ntf_service_id: party 'N'); add_queue, update_queue and delete_queue keep an
    # index of these associations and, per service and party, their count and IdsHash.

    @abstractmethod
    def get_service(self, service_id: bytes) -> ServiceRecord | None: ...

    @abstractmethod
    def service_by_cert(self, cert_hash: bytes) -> ServiceRecord | None:
        """The service whose identity certificate has this SHA-256, or None."""

    @abstractmethod
    def add_service(self, rec: ServiceRecord) -> bool:
        """Store a new service. False (nothing written) if its id or its certificate hash
        is already in use. RecordError for an invalid record."""

    @abstractmethod
    def service_queue_subs(self, service_id: bytes, party: str) -> ServiceSubs:
        """(count, IdsHash) of the queues associated with the service as party 'R'
        (recipient ids) or 'N' (notifier ids): kept with every association change, so
        this is a lookup, not a scan (SOKS answers with it)."""

    def service_queue_count(self, service_id: bytes, party: str) -> int:
        """Queues associated with the service as party 'R' (recipient) or 'N' (notifier)."""
        return self.service_queue_subs(service_id, party)[0]

    @abstractmethod
    def service_queues_after(self, service_id: bytes, party: str, cursor: bytes | None,
                             limit: int) -> list[bytes]:
        """Up to ``limit`` ids (recipient ids for 'R', notifier ids for 'N') associated
        with the service, ascending, all greater than ``cursor``: one page per call, so
        that a walk over 100k queues can yield between pages."""

    @abstractmethod
    def services_after(self, cursor: bytes | None, limit: int) -> list[ServiceRecord]:
        """Up to ``limit`` service records in service-id order, ids greater than ``cursor``."""

    def iter_services(self, page: int = 1000) -> Iterator[ServiceRecord]:
        """Every service record in service-id order (export). Do not mutate meanwhile."""
        cursor: bytes | None = None
        while True:
            records = self.services_after(cursor, page)
            yield from records
            if len(records) < page:
                return
            cursor = records[-1].service_id

    def iter_queues(self, page: int = 1000) -> Iterator[QueueRecord]:
        """Every queue record in recipient-id order, read ``page`` records at a time.
        Do not mutate the store while iterating."""
        cursor: bytes | None = None
        while True:
            records = self.queues_after(cursor, page)
            yield from records
            if len(records) < page:
                return
            cursor = records[-1].recipient_id


class MessageStore(ABC):
    """Per-queue FIFO of messages, ending at most in one quota marker."""

    @abstractmethod
    def write_message(self, rid: bytes, msg: StoredMessage, quota: int = DEFAULT_QUOTA) -> WriteResult:
        """Append ``msg`` following the reference's writeMsg rule (Server/MsgStore/STM.hs):

        - over quota (a marker was written) and the queue not empty yet -> FULL, nothing stored;
        - otherwise, if the queue holds fewer than ``quota`` entries (marker included) -> the
          message is appended: STORED_EMPTY if the queue was empty, else STORED;
        - otherwise a quota marker with msg's id and ts is appended, the queue is over quota
          until it is empty again -> QUOTA.
        QueueNotFound if ``rid`` names no queue; RecordError for an invalid message."""

    @abstractmethod
    def peek_message(self, rid: bytes) -> StoredMessage | None:
        """The head of the queue (message or quota marker), or None if empty/unknown."""

    @abstractmethod
    def delete_message(self, rid: bytes, msg_id: bytes) -> bool:
        """Delete the head if its id is ``msg_id`` (reference tryDelMsg); True if deleted."""

    @abstractmethod
    def message_count(self, rid: bytes) -> int:
        """Entries in the queue, the quota marker included (the reference's queue size)."""

    @abstractmethod
    def queue_messages(self, rid: bytes) -> list[StoredMessage]:
        """Every entry of queue ``rid``, head first, the quota marker included; [] if the
        queue is empty or unknown. (A queue holds at most quota + 1 entries.)"""

    @abstractmethod
    def stored_message_count(self) -> int:
        """Entries (messages and quota markers) in all queues together."""

    @abstractmethod
    def expire_messages(self, rid: bytes, older_than: int) -> int:
        """Delete messages with ts < older_than from the head, stopping at the first newer
        message or at a quota marker (never deleted by expiry). Returns how many."""


class Store(QueueStore, MessageStore):
    """Queue and message store with one lazily opened write transaction.

    Every read and mutation runs in the current write transaction (reads see its uncommitted
    writes). commit() ends it without fsync; sync() makes everything committed so far durable
    and may run in a worker thread while this thread goes on mutating in a new transaction.
    If a mutation fails inside the engine, the current write unit (or, outside a unit, the whole
    uncommitted batch) is aborted and StoreError (StoreFullError when the map is full) is
    raised; usage errors (StoreUsageError) are raised before anything is written and leave the
    batch alone.
    """

    # Set by expire_all: True when the last call reached the end of the queue space (the
    # next call starts a new pass from the first queue).
    expire_pass_complete: bool = False
    _expire_cursor: bytes | None = None

    # Write tracking. Every mutation counts itself, so whether the open transaction holds
    # writes is a fact of the store, not a convention its callers must keep: the group
    # committer reads ``uncommitted_writes`` to know what an answer computed now depends on,
    # and ``on_write(count)`` (set by the committer) is called after each counted write.
    on_write: Callable[[int], None] | None = None
    # Called when abort() discards uncommitted writes (an engine failure outside a unit).
    on_abort: Callable[[], None] | None = None
    _writes: int = 0
    # Other processes write the same store (worker processes on one LMDB environment):
    # records read before a write unit may be stale inside it.
    shared_writers: bool = False

    @property
    def uncommitted_writes(self) -> int:
        """Mutations made since the last commit() or abort() (0: nothing to commit)."""
        return self._writes

    def _discarded(self) -> None:
        """abort() threw away ``_writes`` uncommitted writes."""
        if self._writes:
            self._writes = 0
            if self.on_abort is not None:
                self.on_abort()

    def _note_write(self) -> None:
        self._writes += 1
        if self.on_write is not None:
            self.on_write(self._writes)

    def unit(self) -> AbstractContextManager[None]:
        """A write unit inside the open transaction: everything mutated in the ``with`` block
        joins the transaction if the block ends normally, and is undone alone (the rest of
        the transaction stays) if it raises. The broker runs each block's commands in one
        unit, so a failing write (a full map) costs that block, never other connections'
        writes in the same group commit. Units do not nest."""
        return self._unit_scope

    @functools.cached_property
    def _unit_scope(self) -> "_UnitScope":
        return _UnitScope(self)  # one per store: no object per block on the hot path

    @abstractmethod
    def _begin_unit(self) -> None: ...

    @abstractmethod
    def _end_unit(self) -> None:
        """Join the unit's writes to the transaction (may raise StoreError: then undone)."""

    @abstractmethod
    def _rollback_unit(self) -> None: ...

    @abstractmethod
    def commit(self) -> None:
        """Commit the current transaction, without fsync. No-op if none is open."""

    @abstractmethod
    def abort(self) -> None:
        """Discard every uncommitted change. No-op if no transaction is open."""

    @abstractmethod
    def sync(self) -> None:
        """Make every committed transaction durable (fsync, unless durability='none').
        Safe to call from another thread while this store keeps being used."""

    @property
    def needs_maintenance(self) -> bool:
        """True when maintain() has work to do (the open transaction must be ended first)."""
        return False

    def maintain(self) -> None:
        """Housekeeping between transactions (LMDBStore grows a full map here)."""

    @abstractmethod
    def close(self) -> None:
        """Abort the uncommitted batch and release the store."""

    @abstractmethod
    def _nonempty_after(self, cursor: bytes | None, limit: int) -> tuple[list[bytes], bool]:
        """Up to ``limit`` recipient ids of non-empty queues, ascending, all > cursor
        (from the start if cursor is None), and whether the list reaches the last one."""

    def expire_all(self, older_than: int, budget: int) -> int:
        """One bounded step of the background expiry scan over all non-empty queues.

        Continues after the queue where the previous call stopped, in recipient-id order. Each
        queue examined costs one unit of ``budget`` and each deleted message one more; a queue
        is always finished once started, so a call may go over budget by at most one queue's
        messages. Returns the number of messages deleted. Sets ``expire_pass_complete``."""
        if budget <= 0:
            return 0
        rids, at_end = self._nonempty_after(self._expire_cursor, budget)
        work = 0
        deleted = 0
        for rid in rids:
            if work >= budget:
                at_end = False
                break
            n = self.expire_messages(rid, older_than)
            work += 1 + n
            deleted += n
            self._expire_cursor = rid
        if at_end:
            self._expire_cursor = None
        self.expire_pass_complete = at_end
        return deleted

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _UnitScope:
    """``with store.unit():`` without a generator per block (this is on the hot path)."""

    __slots__ = ("_store",)

    def __init__(self, store: Store) -> None:
        self._store = store

    def __enter__(self) -> None:
        self._store._begin_unit()

    def __exit__(self, exc_type: object, exc: object, tb: object) -> bool:
        if exc_type is None:
            self._store._end_unit()
        else:
            self._store._rollback_unit()
        return False
