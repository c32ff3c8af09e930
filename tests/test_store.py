"""Behaviour of the Store interface, run on both implementations (memory and LMDB)."""

from __future__ import annotations

import pytest

from smpfast.store import (
    DuplicateIdError,
    LMDBStore,
    MemoryStore,
    NotifierRecord,
    QueueNotFound,
    QueueRecord,
    RecordError,
    Store,
    StoredMessage,
    WriteResult,
)
from smpfast.store.records import MAX_MESSAGE_BODY


@pytest.fixture(params=["memory", "lmdb"])
def store(request, tmp_path) -> Store:
    if request.param == "memory":
        st: Store = MemoryStore()
    else:
        st = LMDBStore(tmp_path / "db", map_size=64 << 20)
    yield st
    st.close()


def qrec(n: int, **kw) -> QueueRecord:
    """Queue n with distinct 24-byte ids derived from n."""
    base = dict(
        recipient_id=b"R" + n.to_bytes(23, "big"),
        recipient_keys=[b"\x30\x2a" + bytes([n % 256]) * 42],
        rcv_dh_secret=bytes([n % 256]) * 32,
        sender_id=b"S" + n.to_bytes(23, "big"),
    )
    base.update(kw)
    return QueueRecord(**base)


def msg(i: int, ts: int = 1000, body: bytes = b"body", ntf: bool = False) -> StoredMessage:
    return StoredMessage(b"M" + i.to_bytes(23, "big"), ts, ntf, body)


NTF = NotifierRecord(b"N" * 24, b"\x30\x2a" + b"n" * 42, b"x" * 32)


# --- queue records and indexes ---------------------------------------------------------------


def test_add_get_and_indexes(store):
    rec = qrec(1, notifier=NTF, link_id=b"L" * 24, link_fixed=b"fixed", link_user=b"user", queue_mode="C")
    assert store.get_queue(rec.recipient_id) is None
    assert store.add_queue(rec) is True
    assert store.queue_count() == 1
    assert store.notifier_count() == 1
    assert store.get_queue(rec.recipient_id) == rec
    assert store.queue_by_sender(rec.sender_id) == rec
    assert store.queue_by_notifier(NTF.notifier_id) == rec
    assert store.queue_by_link(b"L" * 24) == rec
    # indexes are per party: a sender id is not a recipient id
    assert store.get_queue(rec.sender_id) is None
    assert store.queue_by_sender(rec.recipient_id) is None
    assert store.queue_by_notifier(rec.sender_id) is None
    assert store.queue_by_link(rec.sender_id) is None


def test_records_are_copies(store):
    rec = qrec(1)
    store.add_queue(rec)
    rec.recipient_keys.append(b"other")
    rec.status = "off"
    got = store.get_queue(rec.recipient_id)
    assert got.recipient_keys == [qrec(1).recipient_keys[0]] and got.status == "active"
    got.sender_key = b"k"
    assert store.get_queue(rec.recipient_id).sender_key is None


@pytest.mark.parametrize(
    "clash",
    ["rid", "sid", "nid", "link"],
)
def test_add_queue_collision_writes_nothing(store, clash):
    first = qrec(1, notifier=NTF, link_id=b"L" * 24, link_fixed=b"f", link_user=b"u")
    assert store.add_queue(first)
    other = qrec(2, notifier=NotifierRecord(b"N2" * 12, b"k", b"s" * 32), link_id=b"L2" * 12, link_fixed=b"f", link_user=b"u")
    if clash == "rid":
        other.recipient_id = first.recipient_id
    elif clash == "sid":
        other.sender_id = first.sender_id
    elif clash == "nid":
        other.notifier = NTF
    else:
        other.link_id = first.link_id
    assert store.add_queue(other) is False
    assert store.queue_count() == 1
    assert store.get_queue(first.recipient_id) == first
    # none of the new queue's other ids were registered
    assert store.queue_by_sender(first.sender_id) == first
    assert store.queue_by_notifier(NTF.notifier_id) == first
    if clash != "sid":
        assert store.queue_by_sender(other.sender_id) is None
    if clash != "nid":
        assert store.queue_by_notifier(b"N2" * 12) is None
    if clash != "link":
        assert store.queue_by_link(b"L2" * 12) is None
    if clash != "rid":
        assert store.get_queue(other.recipient_id) is None


def test_update_queue_moves_indexes(store):
    rec = qrec(1)
    store.add_queue(rec)
    rid = rec.recipient_id
    # secure
    rec.sender_key = b"\x30\x2a" + b"s" * 42
    store.update_queue(rec)
    assert store.get_queue(rid).sender_key == rec.sender_key
    # notifier added, then replaced: the old notifier id stops resolving
    rec.notifier = NTF
    store.update_queue(rec)
    assert store.queue_by_notifier(NTF.notifier_id) == rec
    rec.notifier = NotifierRecord(b"M" * 24, b"k2", b"y" * 32, ntf_service_id=b"svc")
    store.update_queue(rec)
    assert store.queue_by_notifier(NTF.notifier_id) is None
    assert store.queue_by_notifier(b"M" * 24) == rec
    rec.notifier = None
    store.update_queue(rec)
    assert store.queue_by_notifier(b"M" * 24) is None
    # link data set, then deleted
    rec.link_id, rec.link_fixed, rec.link_user = b"L" * 24, b"f" * 100, b"u" * 3000
    store.update_queue(rec)
    assert store.queue_by_link(b"L" * 24) == rec
    rec.link_id = rec.link_fixed = rec.link_user = None
    store.update_queue(rec)
    assert store.queue_by_link(b"L" * 24) is None
    # sender id change
    old_sid = rec.sender_id
    rec.sender_id = b"T" * 24
    store.update_queue(rec)
    assert store.queue_by_sender(old_sid) is None
    assert store.queue_by_sender(b"T" * 24) == rec
    # status changes
    rec.status, rec.blocked_info = "blocked", b"reason=spam"
    rec.updated_at = 86400 * 20000
    store.update_queue(rec)
    assert store.get_queue(rid) == rec
    rec.status, rec.blocked_info = "off", None
    store.update_queue(rec)
    assert store.get_queue(rid).status == "off"
    assert store.queue_count() == 1


def test_update_queue_errors_write_nothing(store):
    a = qrec(1, notifier=NTF)
    b = qrec(2)
    store.add_queue(a)
    store.add_queue(b)
    with pytest.raises(QueueNotFound):
        store.update_queue(qrec(3))
    # b takes a's notifier id -> duplicate, b unchanged
    b2 = qrec(2, notifier=NTF, sender_key=b"k")
    with pytest.raises(DuplicateIdError):
        store.update_queue(b2)
    assert store.get_queue(b.recipient_id) == b
    assert store.queue_by_notifier(NTF.notifier_id) == a
    b3 = qrec(2, sender_id=a.sender_id)
    with pytest.raises(DuplicateIdError):
        store.update_queue(b3)
    assert store.queue_by_sender(b.sender_id) == b
    with pytest.raises(RecordError):
        store.update_queue(qrec(2, status="weird"))
    assert store.get_queue(b.recipient_id) == b


def test_delete_queue_removes_everything(store):
    rec = qrec(1, notifier=NTF, link_id=b"L" * 24, link_fixed=b"f", link_user=b"u")
    other = qrec(2)
    store.add_queue(rec)
    store.add_queue(other)
    rid = rec.recipient_id
    for i in range(5):
        store.write_message(rid, msg(i))
    store.write_message(other.recipient_id, msg(100))
    store.commit()
    assert store.stored_message_count() == 6
    assert store.delete_queue(rid) == rec
    assert store.stored_message_count() == 1
    assert store.notifier_count() == 0
    assert store.delete_queue(rid) is None
    assert store.get_queue(rid) is None
    assert store.queue_by_sender(rec.sender_id) is None
    assert store.queue_by_notifier(NTF.notifier_id) is None
    assert store.queue_by_link(b"L" * 24) is None
    assert store.message_count(rid) == 0
    assert store.peek_message(rid) is None
    assert store.queue_count() == 1
    # the other queue is untouched
    assert store.peek_message(other.recipient_id) == msg(100)
    store.commit()
    # the ids are free again, and no old message comes back
    assert store.add_queue(rec)
    assert store.message_count(rid) == 0
    assert store.write_message(rid, msg(9)) is WriteResult.STORED_EMPTY
    assert store.peek_message(rid) == msg(9)


# --- messages and the quota rule -------------------------------------------------------------


def test_quota_rule_step_by_step(store):
    """testExceedQueueQuota with quota 2: SEND, SEND -> OK; 3rd -> QUOTA; FULL until empty."""
    rec = qrec(1)
    store.add_queue(rec)
    rid = rec.recipient_id
    assert store.write_message(rid, msg(1, ts=10), quota=2) is WriteResult.STORED_EMPTY
    assert store.write_message(rid, msg(2, ts=11), quota=2) is WriteResult.STORED
    assert store.write_message(rid, msg(3, ts=12), quota=2) is WriteResult.QUOTA
    assert store.message_count(rid) == 3
    assert store.write_message(rid, msg(4, ts=13), quota=2) is WriteResult.FULL
    assert store.message_count(rid) == 3
    # deliver and ACK: FULL until the marker is gone too
    assert store.peek_message(rid) == msg(1, ts=10)
    assert store.delete_message(rid, msg(1).msg_id)
    assert store.write_message(rid, msg(5), quota=2) is WriteResult.FULL
    assert store.delete_message(rid, msg(2).msg_id)
    marker = store.peek_message(rid)
    assert marker == StoredMessage(msg(3).msg_id, 12, False, b"", True)
    assert store.write_message(rid, msg(6), quota=2) is WriteResult.FULL
    assert store.delete_message(rid, msg(3).msg_id)
    assert store.message_count(rid) == 0
    assert store.write_message(rid, msg(7), quota=2) is WriteResult.STORED_EMPTY
    assert store.peek_message(rid) == msg(7)


def test_default_quota_128(store):
    rec = qrec(1)
    store.add_queue(rec)
    rid = rec.recipient_id
    results = [store.write_message(rid, msg(i)) for i in range(131)]
    assert results[0] is WriteResult.STORED_EMPTY
    assert all(r is WriteResult.STORED for r in results[1:128])
    assert results[128] is WriteResult.QUOTA
    assert results[129:] == [WriteResult.FULL, WriteResult.FULL]
    assert store.message_count(rid) == 129
    assert store.stored_message_count() == 129
    store.commit()
    for i in range(128):
        assert store.peek_message(rid) == msg(i)
        assert store.delete_message(rid, msg(i).msg_id)
    assert store.peek_message(rid).is_quota
    assert store.write_message(rid, msg(500)) is WriteResult.FULL


def test_quota_one_and_zero(store):
    rec = qrec(1)
    store.add_queue(rec)
    rid = rec.recipient_id
    assert store.write_message(rid, msg(1), quota=1) is WriteResult.STORED_EMPTY
    assert store.write_message(rid, msg(2), quota=1) is WriteResult.QUOTA
    assert store.delete_message(rid, msg(1).msg_id)
    assert store.delete_message(rid, msg(2).msg_id)
    # quota 0: every write to an empty queue becomes the marker
    assert store.write_message(rid, msg(3), quota=0) is WriteResult.QUOTA
    assert store.peek_message(rid).is_quota


def test_write_result_flags():
    assert WriteResult.STORED.stored and not WriteResult.STORED.was_empty
    assert WriteResult.STORED_EMPTY.stored and WriteResult.STORED_EMPTY.was_empty
    assert not WriteResult.QUOTA.stored and not WriteResult.FULL.stored


def test_message_fields_round_trip(store):
    rec = qrec(1)
    store.add_queue(rec)
    rid = rec.recipient_id
    big = StoredMessage(b"i" * 24, 2**40, True, bytes(range(256)) * 62 + b"x" * 216)
    assert len(big.body) == MAX_MESSAGE_BODY
    store.write_message(rid, big)
    store.commit()
    assert store.peek_message(rid) == big
    with pytest.raises(RecordError):
        store.write_message(rid, StoredMessage(b"j" * 24, 1, False, b"x" * (MAX_MESSAGE_BODY + 1)))
    assert store.message_count(rid) == 1


def test_delete_message_only_matching_head(store):
    rec = qrec(1)
    store.add_queue(rec)
    rid = rec.recipient_id
    assert store.delete_message(rid, b"nothing") is False  # empty queue
    store.write_message(rid, msg(1))
    store.write_message(rid, msg(2))
    assert store.delete_message(rid, msg(2).msg_id) is False  # not the head
    assert store.message_count(rid) == 2
    assert store.delete_message(rid, msg(1).msg_id) is True
    assert store.delete_message(rid, msg(1).msg_id) is False  # already gone
    assert store.peek_message(rid) == msg(2)
    assert store.delete_message(b"unknown", msg(2).msg_id) is False
    assert store.peek_message(b"unknown") is None
    assert store.message_count(b"unknown") == 0


def test_write_to_unknown_queue_keeps_batch(store):
    rec = qrec(1)
    store.add_queue(rec)
    store.write_message(rec.recipient_id, msg(1))
    with pytest.raises(QueueNotFound):
        store.write_message(b"R" * 24, msg(2))
    store.commit()
    assert store.get_queue(rec.recipient_id) == rec
    assert store.message_count(rec.recipient_id) == 1


# --- expiry ----------------------------------------------------------------------------------


def test_expire_messages_stops_at_newer_and_marker(store):
    rec = qrec(1)
    store.add_queue(rec)
    rid = rec.recipient_id
    for i, ts in enumerate([10, 20, 30, 25]):
        store.write_message(rid, msg(i, ts=ts), quota=4)
    assert store.expire_messages(rid, 10) == 0
    assert store.expire_messages(rid, 21) == 2
    # head is ts 30: stops there although ts 25 after it is older
    assert store.expire_messages(rid, 29) == 0
    assert store.peek_message(rid) == msg(2, ts=30)
    assert store.expire_messages(rid, 10**9) == 2
    assert store.message_count(rid) == 0
    assert store.expire_messages(b"unknown", 10**9) == 0


def test_expiry_never_removes_the_marker(store):
    rec = qrec(1)
    store.add_queue(rec)
    rid = rec.recipient_id
    for i in range(3):
        store.write_message(rid, msg(i, ts=5), quota=2)
    assert store.expire_messages(rid, 10**9) == 2
    assert store.message_count(rid) == 1 and store.peek_message(rid).is_quota
    # still over quota: only the marker's ACK re-opens the queue
    assert store.write_message(rid, msg(9), quota=2) is WriteResult.FULL
    assert store.delete_message(rid, msg(2).msg_id)
    assert store.write_message(rid, msg(9), quota=2) is WriteResult.STORED_EMPTY


def test_expire_all_incremental(store):
    rids = []
    for n in range(10):
        rec = qrec(n)
        store.add_queue(rec)
        rids.append(rec.recipient_id)
        if n % 2 == 0:  # five non-empty queues, two old messages and one new each
            store.write_message(rec.recipient_id, msg(n * 10, ts=1))
            store.write_message(rec.recipient_id, msg(n * 10 + 1, ts=2))
            store.write_message(rec.recipient_id, msg(n * 10 + 2, ts=100))
    store.commit()
    # budget 3: one queue (1 + 2 deletions) per call
    done = []
    for _ in range(5):
        assert store.expire_all(50, 3) == 2
        done.append(store.expire_pass_complete)
        store.commit()
    assert done == [False, False, False, False, True]
    assert all(store.message_count(r) == (1 if i % 2 == 0 else 0) for i, r in enumerate(rids))
    # a new pass finds nothing more to delete, visiting all five queues in one call
    assert store.expire_all(50, 100) == 0 and store.expire_pass_complete
    # large budget: one call does everything
    assert store.expire_all(1000, 100) == 5 and store.expire_pass_complete
    assert store.expire_all(1000, 100) == 0 and store.expire_pass_complete
    assert store.expire_all(1000, 0) == 0


# --- transactions ----------------------------------------------------------------------------


def test_abort_discards_uncommitted_batch(store):
    a = qrec(1)
    store.add_queue(a)
    store.write_message(a.recipient_id, msg(1))
    store.commit()
    b = qrec(2, notifier=NTF)
    store.add_queue(b)
    store.write_message(a.recipient_id, msg(2))
    store.delete_message(a.recipient_id, msg(1).msg_id)
    a.sender_key = b"key"
    store.update_queue(a)
    assert store.queue_count() == 2  # reads see the uncommitted writes
    store.abort()
    assert store.queue_count() == 1
    assert store.get_queue(b.recipient_id) is None
    assert store.queue_by_notifier(NTF.notifier_id) is None
    assert store.get_queue(a.recipient_id).sender_key is None
    assert store.message_count(a.recipient_id) == 1
    assert store.peek_message(a.recipient_id) == msg(1)
    store.abort()  # nothing open: no-op
    store.commit()
    store.sync()
