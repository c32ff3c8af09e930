"""MemoryStore: the Store interface on dicts and deques, for tests and as the model the LMDB
store is checked against. Nothing survives close(). abort() undoes every change since the last
commit() through an undo log, and a write unit that raises undoes its own entries only, so batch
and unit semantics match LMDBStore."""

from __future__ import annotations

import bisect
from collections import deque
from collections.abc import Callable
from dataclasses import replace

from ..protocol.ids_hash import NO_SERVICE_SUBS, ServiceSubs, queue_id_hash, xor_hashes
from .base import DEFAULT_QUOTA, Store, WriteResult
from .errors import DuplicateIdError, QueueNotFound, StoreError, StoreUsageError
from .records import (
    SERVICE_NOTIFIER,
    SERVICE_RECIPIENT,
    TYPICAL_QUEUE,
    QueueRecord,
    ServiceRecord,
    StoredMessage,
    copy_queue,
    encode_message,
    encode_queue,
    encode_service,
    queue_services,
    quota_marker,
)

_MISSING = object()


class MemoryStore(Store):
    def __init__(self, durability: str = "none") -> None:
        if durability not in ("fsync", "none"):
            raise ValueError("durability must be 'fsync' or 'none'")
        self._queues: dict[bytes, QueueRecord] = {}
        self._senders: dict[bytes, bytes] = {}
        self._notifiers: dict[bytes, bytes] = {}
        self._links: dict[bytes, bytes] = {}
        self._msgs: dict[bytes, deque[StoredMessage]] = {}  # non-empty queues only
        self._over_quota: dict[bytes, bool] = {}  # non-empty queues that hit the quota
        self._services: dict[bytes, ServiceRecord] = {}
        self._service_certs: dict[bytes, bytes] = {}  # cert hash -> service id
        # (service id, party) -> ids of the queues (recipient or notifier ids) associated
        self._service_queues: dict[tuple[bytes, str], set[bytes]] = {}
        # (service id, party) -> (count, IdsHash) of those ids, kept with each change
        self._service_subs: dict[tuple[bytes, str], ServiceSubs] = {}
        # (service id, party) -> its ids sorted, for service_queues_after (dropped on change)
        self._service_sorted: dict[tuple[bytes, str], list[bytes]] = {}
        self._undo: list[Callable[[], None]] = []
        self._unit_mark: int | None = None  # undo-log length when the open unit began
        self._closed = False

    # --- undo log -------------------------------------------------------------------------

    def _set(self, d: dict, k: bytes, v: object) -> None:
        prev = d.get(k, _MISSING)
        d[k] = v
        self._logged(lambda: d.__setitem__(k, prev) if prev is not _MISSING else d.pop(k, None))

    def _del(self, d: dict, k: bytes) -> None:
        prev = d.pop(k, _MISSING)
        if prev is not _MISSING:
            self._logged(lambda: d.__setitem__(k, prev))

    def _logged(self, undo: Callable[[], None]) -> None:
        self._undo.append(undo)
        self._note_write()

    def _undo_to(self, mark: int) -> None:
        undo = self._undo
        if len(undo) > mark:
            self._service_sorted.clear()  # undone associations are not tracked there
        while len(undo) > mark:
            undo.pop()()

    def _begin_unit(self) -> None:
        self._check_open()
        if self._unit_mark is not None:
            raise RuntimeError("write units do not nest")
        self._unit_mark = len(self._undo)

    def _end_unit(self) -> None:
        self._unit_mark = None

    def _rollback_unit(self) -> None:
        mark, self._unit_mark = self._unit_mark, None
        if mark is not None:
            self._undo_to(mark)

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError("store is closed")

    # --- queues ---------------------------------------------------------------------------

    def get_queue(self, rid: bytes) -> QueueRecord | None:
        self._check_open()
        rec = self._queues.get(rid)
        return None if rec is None else copy_queue(rec)

    def _by_index(self, index: dict[bytes, bytes], key: bytes) -> QueueRecord | None:
        self._check_open()
        rid = index.get(key)
        return None if rid is None else self.get_queue(rid)

    def queue_by_sender(self, sid: bytes) -> QueueRecord | None:
        return self._by_index(self._senders, sid)

    def queue_by_notifier(self, nid: bytes) -> QueueRecord | None:
        return self._by_index(self._notifiers, nid)

    def queue_by_link(self, link_id: bytes) -> QueueRecord | None:
        return self._by_index(self._links, link_id)

    def cover_miss(self, key: bytes, by_index: bool) -> None:
        if by_index:  # a hit goes on with get_queue: its check and its read
            self._check_open()
            self._queues.get(key)
        copy_queue(TYPICAL_QUEUE)

    def add_queue(self, rec: QueueRecord) -> bool:
        self._check_open()
        encode_queue(rec)  # validates: RecordError before anything changes
        rid = rec.recipient_id
        if (
            rid in self._queues
            or rec.sender_id in self._senders
            or (rec.notifier is not None and rec.notifier.notifier_id in self._notifiers)
            or (rec.link_id is not None and rec.link_id in self._links)
        ):
            return False
        self._set(self._queues, rid, copy_queue(rec))
        self._set(self._senders, rec.sender_id, rid)
        if rec.notifier is not None:
            self._set(self._notifiers, rec.notifier.notifier_id, rid)
        if rec.link_id is not None:
            self._set(self._links, rec.link_id, rid)
        self._reindex_services(None, rec)
        return True

    def update_queue(self, rec: QueueRecord) -> None:
        self._check_open()
        encode_queue(rec)
        rid = rec.recipient_id
        old = self._queues.get(rid)
        if old is None:
            raise QueueNotFound(rid.hex())
        moves = []
        old_nid = old.notifier.notifier_id if old.notifier is not None else None
        new_nid = rec.notifier.notifier_id if rec.notifier is not None else None
        for index, old_id, new_id in (
            (self._senders, old.sender_id, rec.sender_id),
            (self._notifiers, old_nid, new_nid),
            (self._links, old.link_id, rec.link_id),
        ):
            if old_id != new_id:
                if new_id is not None and index.get(new_id, rid) != rid:
                    raise DuplicateIdError(f"id {new_id.hex()} belongs to another queue")
                moves.append((index, old_id, new_id))
        for index, old_id, new_id in moves:
            if old_id is not None:
                self._del(index, old_id)
            if new_id is not None:
                self._set(index, new_id, rid)
        self._reindex_services(old, rec)
        self._set(self._queues, rid, copy_queue(rec))

    def delete_queue(self, rid: bytes) -> QueueRecord | None:
        self._check_open()
        old = self._queues.get(rid)
        if old is None:
            return None
        self._del(self._queues, rid)
        self._del(self._senders, old.sender_id)
        if old.notifier is not None:
            self._del(self._notifiers, old.notifier.notifier_id)
        if old.link_id is not None:
            self._del(self._links, old.link_id)
        self._del(self._msgs, rid)
        self._del(self._over_quota, rid)
        self._reindex_services(old, None)
        return copy_queue(old)

    def queue_count(self) -> int:
        self._check_open()
        return len(self._queues)

    def notifier_count(self) -> int:
        self._check_open()
        return len(self._notifiers)

    def queues_after(self, cursor: bytes | None, limit: int) -> list[QueueRecord]:
        self._check_open()
        rids = sorted(r for r in self._queues if cursor is None or r > cursor)[: max(limit, 0)]
        return [copy_queue(self._queues[r]) for r in rids]

    # --- services -------------------------------------------------------------------------

    def _reindex_services(self, old: QueueRecord | None, new: QueueRecord | None) -> None:
        before, after = queue_services(old), queue_services(new)
        for sid, party, qid in before - after:
            members = self._service_queues.get((sid, party))
            if members is not None and qid in members:
                members.discard(qid)
                self._logged(lambda m=members, q=qid: m.add(q))
                self._change_subs((sid, party), -1, qid)
        for sid, party, qid in after - before:
            members = self._service_queues.setdefault((sid, party), set())
            if qid not in members:
                members.add(qid)
                self._logged(lambda m=members, q=qid: m.discard(q))
                self._change_subs((sid, party), 1, qid)

    def _change_subs(self, key: tuple[bytes, str], delta: int, qid: bytes) -> None:
        """One id joined (+1) or left (-1) the service: its count and hash follow."""
        count, digest = self._service_subs.get(key, NO_SERVICE_SUBS)
        count += delta
        if count:
            self._set(self._service_subs, key, (count, xor_hashes(digest, queue_id_hash(qid))))
        else:
            self._del(self._service_subs, key)
        self._service_sorted.pop(key, None)

    def get_service(self, service_id: bytes) -> ServiceRecord | None:
        self._check_open()
        return self._services.get(service_id)

    def service_by_cert(self, cert_hash: bytes) -> ServiceRecord | None:
        self._check_open()
        sid = self._service_certs.get(cert_hash)
        return None if sid is None else self._services.get(sid)

    def add_service(self, rec: ServiceRecord) -> bool:
        self._check_open()
        encode_service(rec)  # validates
        if rec.service_id in self._services or rec.cert_hash in self._service_certs:
            return False
        self._set(self._services, rec.service_id, rec)
        self._set(self._service_certs, rec.cert_hash, rec.service_id)
        return True

    def service_queue_subs(self, service_id: bytes, party: str) -> ServiceSubs:
        self._check_open()
        if party not in (SERVICE_RECIPIENT, SERVICE_NOTIFIER):
            raise StoreUsageError(f"unknown service party {party!r}")
        return self._service_subs.get((service_id, party), NO_SERVICE_SUBS)

    def service_queues_after(self, service_id: bytes, party: str, cursor: bytes | None,
                             limit: int) -> list[bytes]:
        self._check_open()
        if party not in (SERVICE_RECIPIENT, SERVICE_NOTIFIER):
            raise StoreUsageError(f"unknown service party {party!r}")
        key = (service_id, party)
        ids = self._service_sorted.get(key)
        if ids is None:
            ids = self._service_sorted[key] = sorted(self._service_queues.get(key, ()))
        start = 0 if cursor is None else bisect.bisect_right(ids, cursor)
        return ids[start:start + max(limit, 0)]

    def services_after(self, cursor: bytes | None, limit: int) -> list[ServiceRecord]:
        self._check_open()
        ids = sorted(s for s in self._services if cursor is None or s > cursor)[: max(limit, 0)]
        return [self._services[s] for s in ids]

    # --- messages -------------------------------------------------------------------------

    def write_message(self, rid: bytes, msg: StoredMessage, quota: int = DEFAULT_QUOTA) -> WriteResult:
        self._check_open()
        encode_message(msg)
        q = self._msgs.get(rid)
        if q is None:
            if rid not in self._queues:
                raise QueueNotFound(rid.hex())
            q = deque()
            self._set(self._msgs, rid, q)
            self._del(self._over_quota, rid)  # an empty queue accepts writes again
            size = 0
        else:
            if rid in self._over_quota:
                return WriteResult.FULL
            size = len(q)
        if size < quota:
            item = replace(msg)
            result = WriteResult.STORED_EMPTY if size == 0 else WriteResult.STORED
        else:
            item = quota_marker(msg.msg_id, msg.ts)
            self._set(self._over_quota, rid, True)
            result = WriteResult.QUOTA
        q.append(item)
        self._logged(q.pop)
        return result

    def peek_message(self, rid: bytes) -> StoredMessage | None:
        self._check_open()
        q = self._msgs.get(rid)
        return None if q is None else replace(q[0])

    def _pop_head(self, rid: bytes, q: deque[StoredMessage]) -> None:
        head = q.popleft()
        self._logged(lambda: q.appendleft(head))
        if not q:
            self._del(self._msgs, rid)
            self._del(self._over_quota, rid)

    def delete_message(self, rid: bytes, msg_id: bytes) -> bool:
        self._check_open()
        q = self._msgs.get(rid)
        if q is None or q[0].msg_id != msg_id:
            return False
        self._pop_head(rid, q)
        return True

    def message_count(self, rid: bytes) -> int:
        self._check_open()
        q = self._msgs.get(rid)
        return 0 if q is None else len(q)

    def queue_messages(self, rid: bytes) -> list[StoredMessage]:
        self._check_open()
        return [replace(m) for m in self._msgs.get(rid, ())]

    def stored_message_count(self) -> int:
        self._check_open()
        return sum(len(q) for q in self._msgs.values())

    def expire_messages(self, rid: bytes, older_than: int) -> int:
        self._check_open()
        q = self._msgs.get(rid)
        n = 0
        while q:
            head = q[0]
            if head.is_quota or head.ts >= older_than:
                break
            self._pop_head(rid, q)
            n += 1
        return n

    def _nonempty_after(self, cursor: bytes | None, limit: int) -> tuple[list[bytes], bool]:
        rids = sorted(r for r in self._msgs if cursor is None or r > cursor)
        return rids[:limit], len(rids) <= limit

    # --- transactions ---------------------------------------------------------------------

    def commit(self) -> None:
        self._check_open()
        self._undo.clear()
        self._writes = 0

    def abort(self) -> None:
        self._undo_to(0)
        self._discarded()

    def sync(self) -> None:
        return None

    def close(self) -> None:
        if not self._closed:
            self.abort()
            self._closed = True
