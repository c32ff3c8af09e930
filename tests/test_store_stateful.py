"""LMDBStore against MemoryStore on random operation sequences (hypothesis stateful)."""

from __future__ import annotations

import shutil
import tempfile

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from smpfast.store import (
    LMDBStore,
    MemoryStore,
    NotifierRecord,
    QueueRecord,
    StoredMessage,
    StoreUsageError,
)
from smpfast.store.records import ServiceRecord

# Small id pools so that collisions, reuse after delete and index moves happen often.
RIDS = [bytes([0x10 + i]) * 24 for i in range(4)]
SIDS = [bytes([0x20 + i]) * 24 for i in range(5)]
NIDS = [bytes([0x30 + i]) * 24 for i in range(4)]
LINKS = [bytes([0x40 + i]) * 24 for i in range(3)]
SERVICES = [bytes([0x50 + i]) * 24 for i in range(2)]
service_ids = st.one_of(st.none(), st.sampled_from(SERVICES))

notifiers = st.one_of(
    st.none(),
    st.builds(NotifierRecord, st.sampled_from(NIDS), st.binary(max_size=50), st.binary(min_size=32, max_size=32),
              service_ids),
)


@st.composite
def records(draw) -> QueueRecord:
    status = draw(st.sampled_from(["active", "off", "blocked"]))
    link = draw(st.one_of(st.none(), st.sampled_from(LINKS)))
    return QueueRecord(
        recipient_id=draw(st.sampled_from(RIDS)),
        recipient_keys=draw(st.lists(st.binary(min_size=1, max_size=50), min_size=1, max_size=3)),
        rcv_dh_secret=b"d" * 32,
        sender_id=draw(st.sampled_from(SIDS)),
        sender_key=draw(st.one_of(st.none(), st.binary(max_size=50))),
        queue_mode=draw(st.sampled_from([None, "M", "C"])),
        link_id=link,
        link_fixed=None if link is None else draw(st.binary(max_size=100)),
        link_user=None if link is None else draw(st.binary(max_size=100)),
        notifier=draw(notifiers),
        status=status,
        blocked_info=b"reason=spam" if status == "blocked" else None,
        updated_at=draw(st.sampled_from([0, 86400 * 20000])),
        rcv_service_id=draw(service_ids),
    )


class StoreComparison(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = tempfile.mkdtemp(prefix="smpfast-store-")
        self.lmdb = LMDBStore(self.dir, map_size=32 << 20)
        self.mem = MemoryStore()
        self.next_msg = 0
        self.last_ids: list[bytes] = []

    def teardown(self) -> None:
        self.lmdb.close()
        self.mem.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def both(self, name: str, *args):
        """Call the same method on both stores; same result, or the same usage error."""
        results = []
        for s in (self.mem, self.lmdb):
            try:
                results.append(("ok", getattr(s, name)(*args)))
            except StoreUsageError as e:
                results.append(("err", type(e)))
        assert results[0] == results[1], (name, args, results)
        return results[0][1]

    @rule(rec=records())
    def add_queue(self, rec):
        self.both("add_queue", rec)

    @rule(rec=records())
    def update_queue(self, rec):
        self.both("update_queue", rec)

    @rule(rid=st.sampled_from(RIDS))
    def delete_queue(self, rid):
        self.both("delete_queue", rid)

    @rule(
        rid=st.sampled_from(RIDS + [b"\x99" * 24]),
        ts=st.integers(0, 20),
        ntf=st.booleans(),
        body=st.binary(max_size=64) | st.sampled_from([b"x" * 16088]),
        quota=st.sampled_from([1, 2, 3, 128]),
    )
    def write_message(self, rid, ts, ntf, body, quota):
        self.next_msg += 1
        mid = self.next_msg.to_bytes(24, "big")
        self.last_ids.append(mid)
        self.both("write_message", rid, StoredMessage(mid, ts, ntf, body), quota)

    @rule(rid=st.sampled_from(RIDS), data=st.data())
    def delete_message(self, rid, data):
        head = self.mem.peek_message(rid)
        choices = [b"nope"] + self.last_ids[-3:] + ([head.msg_id] * 3 if head else [])
        self.both("delete_message", rid, data.draw(st.sampled_from(choices)))

    @rule(rid=st.sampled_from(RIDS), older=st.integers(0, 22))
    def expire_messages(self, rid, older):
        self.both("expire_messages", rid, older)

    @rule(older=st.integers(0, 22), budget=st.integers(0, 6))
    def expire_all(self, older, budget):
        self.both("expire_all", older, budget)
        assert self.mem.expire_pass_complete == self.lmdb.expire_pass_complete

    @rule(key=st.sampled_from(SIDS + NIDS + LINKS + RIDS))
    def lookups(self, key):
        for name in ("get_queue", "queue_by_sender", "queue_by_notifier", "queue_by_link"):
            self.both(name, key)

    @rule(sid=st.sampled_from(SERVICES), cert=st.sampled_from([b"h1" * 16, b"h2" * 16, b"h3" * 16]),
          role=st.sampled_from(["M", "N", "P"]))
    def add_service(self, sid, cert, role):
        self.both("add_service", ServiceRecord(sid, role, (b"cert",), cert, 1))

    @rule()
    def commit(self):
        self.both("commit")

    @rule()
    def abort(self):
        self.both("abort")

    @rule()
    def reopen(self):
        """Commit, close and reopen the LMDB store: state must come back identical."""
        self.both("commit")
        self.lmdb.sync()
        self.lmdb.close()
        self.lmdb = LMDBStore(self.dir, map_size=32 << 20)
        # the expiry scan position is in memory only: restart the model's too
        self.mem._expire_cursor = None
        self.mem.expire_pass_complete = False

    @invariant()
    def same_state(self):
        assert self.mem.queue_count() == self.lmdb.queue_count()
        assert self.mem.notifier_count() == self.lmdb.notifier_count()
        assert self.mem.stored_message_count() == self.lmdb.stored_message_count()
        for rid in RIDS:
            assert self.mem.get_queue(rid) == self.lmdb.get_queue(rid)
            assert self.mem.message_count(rid) == self.lmdb.message_count(rid)
            assert self.mem.peek_message(rid) == self.lmdb.peek_message(rid)
        for sid in SIDS:
            assert self.mem.queue_by_sender(sid) == self.lmdb.queue_by_sender(sid)
        for nid in NIDS:
            assert self.mem.queue_by_notifier(nid) == self.lmdb.queue_by_notifier(nid)
        for link in LINKS:
            assert self.mem.queue_by_link(link) == self.lmdb.queue_by_link(link)
        queues = [q for q in (self.mem.get_queue(r) for r in RIDS) if q is not None]
        for sid in SERVICES:
            assert self.mem.get_service(sid) == self.lmdb.get_service(sid)
            rcv = sum(q.rcv_service_id == sid for q in queues)
            ntf = sum(q.notifier is not None and q.notifier.ntf_service_id == sid for q in queues)
            assert self.mem.service_queue_count(sid, "R") == self.lmdb.service_queue_count(sid, "R") == rcv
            assert self.mem.service_queue_count(sid, "N") == self.lmdb.service_queue_count(sid, "N") == ntf
        assert list(self.mem.iter_services()) == list(self.lmdb.iter_services())


StoreComparison.TestCase.settings = settings(max_examples=60, stateful_step_count=30, deadline=None)
TestStoreComparison = StoreComparison.TestCase
