"""Reading a whole store back (queues_after, iter_queues, queue_messages): what export uses.
Run on both implementations."""

from __future__ import annotations

import pytest

from smpfast.store import LMDBStore, MemoryStore, QueueRecord, Store, StoredMessage, WriteResult


@pytest.fixture(params=["memory", "lmdb"])
def store(request, tmp_path) -> Store:
    st: Store = MemoryStore() if request.param == "memory" else LMDBStore(tmp_path / "db", map_size=64 << 20)
    yield st
    st.close()


def qrec(n: int) -> QueueRecord:
    return QueueRecord(
        recipient_id=b"R" + n.to_bytes(3, "big"),
        recipient_keys=[b"key%d" % n],
        rcv_dh_secret=b"d" * 32,
        sender_id=b"S" + n.to_bytes(3, "big"),
    )


def test_queues_in_recipient_id_order_by_pages(store):
    for n in (5, 1, 9, 3, 7):
        assert store.add_queue(qrec(n))
    store.commit()
    assert [q.recipient_id for q in store.queues_after(None, 2)] == [qrec(1).recipient_id, qrec(3).recipient_id]
    after = store.queues_after(qrec(3).recipient_id, 10)
    assert [q.recipient_id for q in after] == [qrec(n).recipient_id for n in (5, 7, 9)]
    assert store.queues_after(qrec(9).recipient_id, 10) == []
    assert store.queues_after(None, 0) == []
    # Pages smaller than the store still yield every record once.
    assert list(store.iter_queues(page=2)) == [qrec(n) for n in (1, 3, 5, 7, 9)]


def test_records_read_back_are_copies(store):
    store.add_queue(qrec(1))
    [q] = store.queues_after(None, 1)
    q.recipient_keys.append(b"changed")
    assert store.get_queue(q.recipient_id).recipient_keys == [b"key1"]


def test_queue_messages_head_first_with_the_quota_marker(store):
    rid = qrec(1).recipient_id
    store.add_queue(qrec(1))
    assert store.queue_messages(rid) == []
    assert store.queue_messages(b"unknown") == []
    msgs = [StoredMessage(b"m%d" % i, 100 + i, i % 2 == 0, b"body%d" % i) for i in range(3)]
    for m in msgs[:2]:
        store.write_message(rid, m, quota=2)
    assert store.write_message(rid, msgs[2], quota=2) is WriteResult.QUOTA
    assert store.delete_message(rid, b"m0")
    expected = [msgs[1], StoredMessage(b"m2", 102, False, b"", True)]
    assert store.queue_messages(rid) == expected
    store.commit()
    assert store.queue_messages(rid) == expected
