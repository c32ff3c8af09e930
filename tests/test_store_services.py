"""Service records and queue-service associations in both stores: records found by id and
by certificate hash, the association index kept by add/update/delete_queue, undone with an
aborted batch or a failed unit, kept across an LMDB reopen, and built once for a store made
before the index existed."""

from __future__ import annotations

import dataclasses

import lmdb
import pytest

from smpfast.store import LMDBStore, MemoryStore, NotifierRecord, QueueRecord, RecordError, Store, StoreUsageError
from smpfast.store.records import ServiceRecord, decode_service, encode_service

NTF_SRV = b"N" * 24
RCV_SRV = b"M" * 24


@pytest.fixture(params=["memory", "lmdb"])
def store(request, tmp_path) -> Store:
    st: Store = MemoryStore() if request.param == "memory" else LMDBStore(tmp_path / "db", map_size=64 << 20)
    yield st
    st.close()


def srec(n: int, role: str = "N") -> ServiceRecord:
    return ServiceRecord(b"V" + n.to_bytes(23, "big"), role, (b"cert-%d" % n, b"ca"), bytes([n]) * 32, 1_700_000_000 + n)


def qrec(n: int, rcv_srv: bytes | None = None, ntf_srv: bytes | None = None, ntf: bool = True) -> QueueRecord:
    notifier = NotifierRecord(b"n" + n.to_bytes(23, "big"), b"\x30\x2a" + b"k" * 42, b"d" * 32, ntf_srv) if ntf else None
    return QueueRecord(b"R" + n.to_bytes(23, "big"), [b"\x30\x2a" + b"r" * 42], b"x" * 32,
                       b"S" + n.to_bytes(23, "big"), notifier=notifier, rcv_service_id=rcv_srv)


def counts(store: Store, sid: bytes) -> tuple[int, int]:
    return store.service_queue_count(sid, "R"), store.service_queue_count(sid, "N")


def test_service_record_layout_round_trips():
    r = srec(7, "P")
    assert decode_service(encode_service(r)) == r
    for bad in (dataclasses.replace(r, role="X"), dataclasses.replace(r, certificates=()),
                dataclasses.replace(r, service_id=b""), dataclasses.replace(r, certificates=[b"c"])):
        with pytest.raises(RecordError):
            encode_service(bad)
    with pytest.raises(RecordError):
        decode_service(encode_service(r) + b"!")
    with pytest.raises(RecordError):
        decode_service(b"\x02" + encode_service(r)[1:])


def test_services_by_id_and_certificate(store):
    a, b = srec(1), srec(2, "M")
    assert store.get_service(a.service_id) is None and store.service_by_cert(a.cert_hash) is None
    assert store.add_service(a) and store.add_service(b)
    assert store.get_service(a.service_id) == a and store.service_by_cert(b.cert_hash) == b
    # the id or the certificate taken: nothing is written
    assert not store.add_service(dataclasses.replace(srec(3), service_id=a.service_id))
    assert not store.add_service(dataclasses.replace(srec(3), cert_hash=a.cert_hash))
    assert store.service_by_cert(srec(3).cert_hash) is None
    assert list(store.iter_services(page=1)) == [a, b]
    assert store.services_after(a.service_id, 10) == [b]
    with pytest.raises(RecordError):
        store.add_service(dataclasses.replace(srec(4), role="Q"))


def test_associations_follow_the_queue_records(store):
    store.add_service(srec(1))
    assert store.add_queue(qrec(1, RCV_SRV, NTF_SRV))
    assert store.add_queue(qrec(2, None, NTF_SRV))
    assert store.add_queue(qrec(3))
    assert counts(store, RCV_SRV) == (1, 0) and counts(store, NTF_SRV) == (0, 2)
    # moving a notifier to another service, and back to none
    q2 = store.get_queue(qrec(2).recipient_id)
    q2.notifier.ntf_service_id = b"O" * 24
    store.update_queue(q2)
    assert counts(store, NTF_SRV) == (0, 1) and counts(store, b"O" * 24) == (0, 1)
    q2.notifier.ntf_service_id = None
    store.update_queue(q2)
    assert counts(store, b"O" * 24) == (0, 0)
    # a replaced notifier (NKEY) comes without the association
    q1 = store.get_queue(qrec(1).recipient_id)
    q1.notifier = NotifierRecord(b"z" * 24, b"\x30\x2a" + b"k" * 42, b"d" * 32)
    store.update_queue(q1)
    assert counts(store, NTF_SRV) == (0, 0) and counts(store, RCV_SRV) == (1, 0)
    # associating a new notifier, then deleting the queue drops both associations
    q1.notifier.ntf_service_id = NTF_SRV
    store.update_queue(q1)
    assert counts(store, NTF_SRV) == (0, 1)
    store.delete_queue(q1.recipient_id)
    assert counts(store, NTF_SRV) == (0, 0) and counts(store, RCV_SRV) == (0, 0)
    with pytest.raises(StoreUsageError):
        store.service_queue_count(NTF_SRV, "X")


def test_abort_and_failed_units_undo_services_and_associations(store):
    store.add_queue(qrec(1, None, NTF_SRV))
    store.commit()
    store.add_service(srec(1))
    q = store.get_queue(qrec(1).recipient_id)
    q.notifier.ntf_service_id = None
    store.update_queue(q)
    store.add_queue(qrec(2, RCV_SRV, NTF_SRV))
    assert counts(store, NTF_SRV) == (0, 1) and counts(store, RCV_SRV) == (1, 0)
    store.abort()
    assert store.get_service(srec(1).service_id) is None and store.service_by_cert(srec(1).cert_hash) is None
    assert counts(store, NTF_SRV) == (0, 1) and counts(store, RCV_SRV) == (0, 0)
    with pytest.raises(RuntimeError):
        with store.unit():
            store.add_service(srec(2))
            store.delete_queue(qrec(1).recipient_id)
            raise RuntimeError("the block failed")
    assert store.get_service(srec(2).service_id) is None and counts(store, NTF_SRV) == (0, 1)


def test_lmdb_keeps_services_and_associations(tmp_path):
    path = tmp_path / "db"
    with LMDBStore(path, map_size=64 << 20) as st:
        st.add_service(srec(1))
        st.add_queue(qrec(1, RCV_SRV, NTF_SRV))
        st.commit()
        st.sync()
    with LMDBStore(path, map_size=64 << 20) as st:
        assert st.service_by_cert(srec(1).cert_hash) == srec(1)
        assert counts(st, NTF_SRV) == (0, 1) and counts(st, RCV_SRV) == (1, 0)


def test_store_from_before_the_service_index_gets_it_built(tmp_path):
    path = tmp_path / "db"
    with LMDBStore(path, map_size=64 << 20) as st:
        for n in range(5):
            st.add_queue(qrec(n, RCV_SRV if n % 2 else None, NTF_SRV))
        st.commit()
    # Make it look like a store written before the service databases existed.
    env = lmdb.open(str(path), max_dbs=16, map_size=64 << 20)
    with env.begin(write=True) as txn:
        for name in (b"services", b"service_certs", b"service_queues"):
            txn.drop(env.open_db(name, txn=txn), delete=True)
    env.close()
    with LMDBStore(path, map_size=64 << 20) as st:
        assert counts(st, RCV_SRV) == (2, 0) and counts(st, NTF_SRV) == (0, 5)
        assert list(st.iter_services()) == []
