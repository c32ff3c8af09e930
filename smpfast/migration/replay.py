"""Apply the reference server's records to a Store, with the reference's semantics.

:class:`StoreLogReplay` replays store log records as the reference's STM queue store does on
start; :class:`MessageRestore` restores message file entries as its ``importMessages`` does.
No file I/O here: records in, store writes out. A record the reference would refuse at
replay (a queue that does not exist, a second sender key, a notifier id in use...) is skipped
and described by the returned warning, as the reference logs it and goes on.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from ..store import DEFAULT_QUOTA, DuplicateIdError, QueueRecord, Store, StoredMessage, WriteResult
from ..store.reference_log import (
    AddNotifier,
    BlockQueue,
    CreateLink,
    CreateQueue,
    DeleteLink,
    DeleteNotifier,
    DeleteQueue,
    NewService,
    QueueService,
    SecureQueue,
    ServiceRecord,
    StoreLogRecord,
    SuspendQueue,
    UnblockQueue,
    UpdateKeys,
    UpdateTime,
    b64,
)


def _id(value: bytes) -> str:
    return b64(value).decode("ascii")


@dataclass
class StoreLogReplay:
    """Replays store log records into ``store`` (each in its own write unit; the caller
    commits). ``services`` counts the NEW_SERVICE records stored."""

    store: Store
    services: int = 0

    def apply(self, rec: StoreLogRecord) -> str | None:
        """Apply one record; a warning when the reference would refuse it (nothing written)."""
        with self.store.unit():
            if isinstance(rec, CreateQueue):
                if not self.store.add_queue(rec.queue):
                    return f"queue {_id(rec.queue.recipient_id)}: an id of the new queue is already in use"
                return None
            if isinstance(rec, NewService):
                return self._new_service(rec.service)
            q = self.store.get_queue(rec.recipient_id)
            if q is None:
                return f"queue {_id(rec.recipient_id)} does not exist (or was deleted)"
            if isinstance(rec, DeleteQueue):
                self.store.delete_queue(q.recipient_id)
                return None
            try:
                changed = self._change(q, rec)
            except _Refused as e:
                return f"queue {_id(q.recipient_id)}: {e}"
            if changed is not None:
                try:
                    self.store.update_queue(changed)
                except DuplicateIdError:
                    return f"queue {_id(q.recipient_id)}: {_tag(rec)} gives an id another queue uses"
            return None

    def _change(self, q: QueueRecord, rec: StoreLogRecord) -> QueueRecord | None:
        """The updated record (None: nothing to write), or _Refused."""
        if isinstance(rec, CreateLink):
            # A link is set once; setting it again may only change the user data.
            if q.link_id is not None and (q.link_id != rec.link_id or q.link_fixed != rec.fixed_data):
                raise _Refused("LINK: the queue has a different link")
            return replace(q, link_id=rec.link_id, link_fixed=rec.fixed_data, link_user=rec.user_data)
        if isinstance(rec, DeleteLink):
            if q.link_id is None:
                return None
            return replace(q, link_id=None, link_fixed=None, link_user=None)
        if isinstance(rec, SecureQueue):
            if q.sender_key is not None:
                if q.sender_key == rec.sender_key:
                    return None
                raise _Refused("SECURE: the queue is already secured with another key")
            return replace(q, sender_key=rec.sender_key)
        if isinstance(rec, UpdateKeys):
            return replace(q, recipient_keys=list(rec.recipient_keys))
        if isinstance(rec, AddNotifier):
            if self.store.queue_by_notifier(rec.notifier.notifier_id) is not None:
                raise _Refused("NOTIFIER: the notifier id is already in use")
            return replace(q, notifier=replace(rec.notifier))
        if isinstance(rec, DeleteNotifier):
            return None if q.notifier is None else replace(q, notifier=None)
        if isinstance(rec, SuspendQueue):
            return replace(q, status="off", blocked_info=None)
        if isinstance(rec, BlockQueue):
            return replace(q, status="blocked", blocked_info=rec.blocking_info)
        if isinstance(rec, UnblockQueue):
            return replace(q, status="active", blocked_info=None)
        if isinstance(rec, UpdateTime):
            return None if q.updated_at == rec.date else replace(q, updated_at=rec.date)
        if isinstance(rec, QueueService):
            if rec.party == "R":
                return replace(q, rcv_service_id=rec.service_id)
            if q.notifier is None:
                raise _Refused("QUEUE_SERVICE N: the queue has no notifier")
            return replace(q, notifier=replace(q.notifier, ntf_service_id=rec.service_id))
        raise TypeError(f"not a store log record: {rec!r}")

    def _new_service(self, s: ServiceRecord) -> str | None:
        # The reference identifies a service by its certificate hash.
        known = self.store.service_by_cert(s.cert_hash)
        if known is not None:
            if known.service_id == s.service_id and known.role == s.role:
                return None
            return f"service {_id(s.service_id)}: its certificate belongs to service {_id(known.service_id)}"
        if self.store.get_service(s.service_id) is not None:
            return f"service {_id(s.service_id)} already exists with another certificate"
        self.store.add_service(s)
        self.services += 1
        return None


class _Refused(Exception):
    pass


def _tag(rec: StoreLogRecord) -> str:
    return {CreateLink: "LINK", AddNotifier: "NOTIFIER"}.get(type(rec), type(rec).__name__)


@dataclass
class MessageRestore:
    """Restores message file entries into ``store`` as the reference's import does: entries
    are appended in file order under the queue quota (a message over it is replaced by the
    quota marker, later ones are not restored); a quota marker first removes a marker at
    the queue's head; a queue that had a marker ends over quota.

    The store keeps a queue over quota only when its last entry is the marker, so a marker
    is held back until the next entry of its queue arrives or :meth:`finish` is called.
    Message expiry is left to the server (it expires on start and periodically)."""

    store: Store
    quota: int = DEFAULT_QUOTA
    stored: int = 0  # entries stored, markers included
    not_restored: int = 0  # messages refused by a full queue
    _pending: dict[bytes, StoredMessage] = field(default_factory=dict)  # held-back markers
    _over: set[bytes] = field(default_factory=set)  # queues the store holds over quota
    _had_marker: set[bytes] = field(default_factory=set)
    _known: bytes | None = None  # the last queue found to exist

    def add(self, rid: bytes, msg: StoredMessage) -> str | None:
        """Restore one entry (within a write unit; the caller commits); a warning if the
        queue does not exist or is full."""
        with self.store.unit():
            if rid != self._known:
                if self.store.get_queue(rid) is None:
                    return f"queue {_id(rid)} does not exist"
                self._known = rid
            if msg.is_quota:
                self._had_marker.add(rid)
                self._drop_head_marker(rid)
                if rid not in self._over:
                    self._flush(rid)
                    if rid not in self._over:
                        self._pending[rid] = msg
                return None
            self._flush(rid)
            return self._write(rid, msg)

    def finish(self) -> list[str]:
        """Write the held-back markers, leaving their queues over quota; warnings for queues
        whose marker is not their last entry (the store cannot keep those over quota)."""
        with self.store.unit():
            for rid, marker in sorted(self._pending.items()):
                # A quota of 0 makes the store append the marker and set the queue over quota.
                if self.store.write_message(rid, marker, quota=0) is WriteResult.QUOTA:
                    self.stored += 1
                    self._over.add(rid)
        self._pending.clear()
        return [
            f"queue {_id(rid)}: messages follow its quota marker, so it is not kept over quota"
            for rid in sorted(self._had_marker - self._over)
            if self.store.message_count(rid)
        ]

    def _drop_head_marker(self, rid: bytes) -> None:
        if self.store.message_count(rid) == 0:
            self._pending.pop(rid, None)  # a held-back marker alone is the head
            return
        head = self.store.peek_message(rid)
        if head is not None and head.is_quota:
            self.store.delete_message(rid, head.msg_id)
            self.stored -= 1
            if self.store.message_count(rid) == 0:
                self._over.discard(rid)  # an empty queue accepts writes again

    def _flush(self, rid: bytes) -> None:
        marker = self._pending.pop(rid, None)
        if marker is not None:
            self._write(rid, marker)

    def _write(self, rid: bytes, msg: StoredMessage) -> str | None:
        result = self.store.write_message(rid, msg, self.quota)
        if result is WriteResult.QUOTA:
            self._over.add(rid)
            self.stored += 1  # the marker that took the message's place
        elif result.stored:
            self.stored += 1
            return None
        if msg.is_quota:
            return None
        self.not_restored += 1
        return f"queue {_id(rid)} is full, message {_id(msg.msg_id)} not restored"
