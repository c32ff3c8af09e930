"""The reference's replay semantics applied to a Store (smpfast/migration/replay.py)."""

from __future__ import annotations

import pytest

from smpfast.migration.replay import MessageRestore, StoreLogReplay
from smpfast.protocol.encoding import ED25519_SPKI_PREFIX
from smpfast.store import MemoryStore, NotifierRecord, QueueRecord, StoredMessage, WriteResult
from smpfast.store import reference_log as R


def key(n: int) -> bytes:
    return ED25519_SPKI_PREFIX + bytes([n]) * 32


def queue(n: int, **kw) -> QueueRecord:
    fields = dict(recipient_id=bytes([n]) * 24, recipient_keys=[key(n)], rcv_dh_secret=b"d" * 32,
                  sender_id=bytes([100 + n]) * 24)
    return QueueRecord(**{**fields, **kw})


@pytest.fixture
def store():
    s = MemoryStore()
    yield s
    s.close()


def test_every_record_kind_changes_the_queue_as_the_reference_does(store):
    replay = StoreLogReplay(store)
    q = queue(1)
    rid = q.recipient_id
    ntf = NotifierRecord(b"n" * 24, key(50), b"e" * 32)
    steps = [
        (R.CreateQueue(q), lambda r: r == q),
        (R.SecureQueue(rid, key(2)), lambda r: r.sender_key == key(2)),
        (R.SecureQueue(rid, key(2)), lambda r: r.sender_key == key(2)),  # the same key again: fine
        (R.UpdateKeys(rid, (key(3), key(4))), lambda r: r.recipient_keys == [key(3), key(4)]),
        (R.CreateLink(rid, b"L" * 24, b"fixed", b"user"), lambda r: (r.link_id, r.link_user) == (b"L" * 24, b"user")),
        (R.CreateLink(rid, b"L" * 24, b"fixed", b"user 2"), lambda r: r.link_user == b"user 2"),
        (R.AddNotifier(rid, ntf), lambda r: r.notifier == ntf),
        (R.QueueService(rid, "N", b"S" * 24), lambda r: r.notifier.ntf_service_id == b"S" * 24),
        (R.QueueService(rid, "R", b"T" * 24), lambda r: r.rcv_service_id == b"T" * 24),
        (R.UpdateTime(rid, 1700006400), lambda r: r.updated_at == 1700006400),
        (R.BlockQueue(rid, b"reason=spam"), lambda r: (r.status, r.blocked_info) == ("blocked", b"reason=spam")),
        (R.UnblockQueue(rid), lambda r: (r.status, r.blocked_info) == ("active", None)),
        (R.SuspendQueue(rid), lambda r: r.status == "off"),
        (R.DeleteLink(rid), lambda r: r.link_id is None and store.queue_by_link(b"L" * 24) is None),
        (R.DeleteNotifier(rid), lambda r: r.notifier is None and store.queue_by_notifier(ntf.notifier_id) is None),
    ]
    for rec, check in steps:
        assert replay.apply(rec) is None, rec
        assert check(store.get_queue(rid)), rec
    assert replay.apply(R.DeleteQueue(rid)) is None
    assert store.get_queue(rid) is None and store.queue_count() == 0


@pytest.mark.parametrize(
    "rec, problem",
    [
        (R.CreateQueue(queue(1)), "already in use"),
        (R.CreateQueue(queue(3, sender_id=bytes([101]) * 24)), "already in use"),  # queue 1's sender id
        (R.SecureQueue(bytes([1]) * 24, key(9)), "another key"),
        (R.CreateLink(bytes([1]) * 24, b"M" * 24, b"fixed", b"user"), "different link"),
        (R.AddNotifier(bytes([2]) * 24, NotifierRecord(b"n" * 24, key(9), b"e" * 32)), "notifier id is already in use"),
        (R.QueueService(bytes([2]) * 24, "N", None), "no notifier"),
        (R.SuspendQueue(b"x" * 24), "does not exist"),
        (R.CreateLink(bytes([2]) * 24, b"L" * 24, b"f", b"u"), "another queue uses"),
    ],
)
def test_records_the_reference_refuses_are_skipped_with_a_warning(store, rec, problem):
    replay = StoreLogReplay(store)
    ntf = NotifierRecord(b"n" * 24, key(50), b"e" * 32)
    first = queue(1, sender_key=key(2), link_id=b"L" * 24, link_fixed=b"fixed", link_user=b"u", notifier=ntf)
    assert replay.apply(R.CreateQueue(first)) is None
    assert replay.apply(R.CreateQueue(queue(2))) is None
    before = [store.get_queue(bytes([n]) * 24) for n in (1, 2)]
    warning = replay.apply(rec)
    assert warning is not None and problem in warning
    assert [store.get_queue(bytes([n]) * 24) for n in (1, 2)] == before


def test_services_are_kept_and_deduplicated_by_certificate(store):
    replay = StoreLogReplay(store)
    s1 = R.ServiceRecord(b"s1", "M", (b"cert",), b"hash1", 5)
    assert replay.apply(R.NewService(s1)) is None
    assert replay.apply(R.NewService(s1)) is None  # the same service again
    assert "belongs to service" in replay.apply(R.NewService(R.ServiceRecord(b"s2", "M", (b"c",), b"hash1", 5)))
    assert "another certificate" in replay.apply(R.NewService(R.ServiceRecord(b"s1", "M", (b"c",), b"hash2", 5)))
    assert "belongs to service" in replay.apply(R.NewService(R.ServiceRecord(b"s1", "N", (b"cert",), b"hash1", 5)))
    assert replay.services == 1 and list(store.iter_services()) == [s1]
    assert store.service_by_cert(b"hash1") == s1


def msg(n: int, ts: int = 1000) -> StoredMessage:
    return StoredMessage(b"m%d" % n, ts + n, False, b"body %d" % n)


def marker(n: int) -> StoredMessage:
    return StoredMessage(b"q%d" % n, 2000 + n, False, b"", True)


def restore(store, entries, quota=3):
    store.add_queue(queue(1))
    rid = queue(1).recipient_id
    r = MessageRestore(store, quota=quota)
    warnings = [w for e in entries if (w := r.add(rid, e))]
    warnings += r.finish()
    return r, rid, warnings


def test_messages_then_marker_end_over_quota(store):
    r, rid, warnings = restore(store, [msg(1), msg(2), marker(3)])
    assert warnings == []
    assert store.queue_messages(rid) == [msg(1), msg(2), marker(3)]
    assert r.stored == 3
    # Over quota until emptied, as after the reference's import.
    assert store.write_message(rid, msg(9)) is WriteResult.FULL


def test_quota_applies_while_restoring(store):
    r, rid, warnings = restore(store, [msg(1), msg(2), msg(3), msg(4), msg(5)])
    # The fourth entry takes the marker's place; the fifth finds the queue full.
    assert store.queue_messages(rid) == [msg(1), msg(2), msg(3), StoredMessage(b"m4", 1004, False, b"", True)]
    assert r.not_restored == 2 and len(warnings) == 2 and all("is full" in w for w in warnings)


def test_a_marker_at_the_head_is_merged(store):
    # [marker, message, marker]: the second marker removes the first (the queue's head).
    r, rid, warnings = restore(store, [marker(1), msg(2), marker(3)])
    assert store.queue_messages(rid) == [msg(2), marker(3)]
    assert warnings == []
    # Two markers in a row leave one.
    store2 = MemoryStore()
    r, rid, _ = restore(store2, [marker(1), marker(2)])
    assert store2.queue_messages(rid) == [marker(2)]
    assert store2.write_message(rid, msg(9)) is WriteResult.FULL


def test_a_marker_followed_by_messages_is_kept_with_a_warning(store):
    r, rid, warnings = restore(store, [msg(1), marker(2), msg(3)])
    assert store.queue_messages(rid) == [msg(1), marker(2), msg(3)]
    assert len(warnings) == 1 and "not kept over quota" in warnings[0]


def test_messages_for_a_missing_queue(store):
    r = MessageRestore(store)
    assert "does not exist" in r.add(b"nope", msg(1))
    assert store.stored_message_count() == 0
