"""Per-service (count, IdsHash) in both stores: kept incrementally with every association
change (add, update, delete, undone units and aborted batches) and always equal to what a
scan of the queue records computes from scratch; kept by LMDB across a reopen, and computed
once at open for a store written before it kept them; the paged walk over a service's ids."""

from __future__ import annotations

import lmdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smpfast.protocol.ids_hash import EMPTY_IDS_HASH, ids_hash, queue_id_hash
from smpfast.store import LMDBStore, MemoryStore, NotifierRecord, QueueRecord, Store

SERVICES = [b"A" * 24, b"B" * 24, b"C" * 24]


def qrec(n: int, rcv_srv: bytes | None, ntf_srv: bytes | None, ntf: bool = True) -> QueueRecord:
    notifier = NotifierRecord(b"n" + n.to_bytes(23, "big"), b"\x30\x2a" + b"k" * 42, b"d" * 32, ntf_srv) if ntf else None
    return QueueRecord(b"R" + n.to_bytes(23, "big"), [b"\x30\x2a" + b"r" * 42], b"x" * 32,
                       b"S" + n.to_bytes(23, "big"), notifier=notifier, rcv_service_id=rcv_srv)


def from_scratch(store: Store) -> dict[tuple[bytes, str], tuple[int, bytes]]:
    """(count, hash) per (service, party), recomputed from every queue record."""
    ids: dict[tuple[bytes, str], list[bytes]] = {}
    for q in store.iter_queues():
        if q.rcv_service_id is not None:
            ids.setdefault((q.rcv_service_id, "R"), []).append(q.recipient_id)
        if q.notifier is not None and q.notifier.ntf_service_id is not None:
            ids.setdefault((q.notifier.ntf_service_id, "N"), []).append(q.notifier.notifier_id)
    return {key: (len(v), ids_hash(v)) for key, v in ids.items()}


def check(store: Store) -> None:
    expected = from_scratch(store)
    for sid in SERVICES:
        for party in ("R", "N"):
            want = expected.get((sid, party), (0, EMPTY_IDS_HASH))
            assert store.service_queue_subs(sid, party) == want
            assert store.service_queue_count(sid, party) == want[0]
            # the paged walk sees exactly the associated ids, in order
            walked, cursor = [], None
            while page := store.service_queues_after(sid, party, cursor, 3):
                walked += page
                cursor = page[-1]
            assert walked == sorted(walked) and len(walked) == want[0] and ids_hash(walked) == want[1]


service = st.sampled_from([None, *SERVICES])
op = st.one_of(
    st.tuples(st.just("add"), st.integers(0, 11), service, service, st.booleans()),
    st.tuples(st.just("rcv"), st.integers(0, 11), service),
    st.tuples(st.just("ntf"), st.integers(0, 11), service),
    st.tuples(st.just("new_notifier"), st.integers(0, 11), st.integers(0, 1000)),
    st.tuples(st.just("delete"), st.integers(0, 11)),
    st.tuples(st.just("commit")),
    st.tuples(st.just("abort")),
    st.tuples(st.just("failed_unit"), st.integers(0, 11), service),
)


def apply(store: Store, action: tuple) -> None:
    kind = action[0]
    if kind == "add":
        _, n, rs, ns, ntf = action
        store.add_queue(qrec(n, rs, ns, ntf))
    elif kind in ("rcv", "ntf", "failed_unit"):
        _, n, sid = action
        q = store.get_queue(qrec(n, None, None).recipient_id)
        if q is None:
            return
        if kind == "ntf":
            if q.notifier is None:
                return
            q.notifier.ntf_service_id = sid
        else:
            q.rcv_service_id = sid
        if kind == "failed_unit":
            try:
                with store.unit():
                    store.update_queue(q)
                    raise RuntimeError("the block failed")
            except RuntimeError:
                pass
        else:
            store.update_queue(q)
    elif kind == "new_notifier":  # NKEY: a new notifier id, without the association
        _, n, k = action
        q = store.get_queue(qrec(n, None, None).recipient_id)
        if q is not None:
            q.notifier = NotifierRecord(b"m" + k.to_bytes(23, "big"), b"\x30\x2a" + b"k" * 42, b"d" * 32)
            if store.queue_by_notifier(q.notifier.notifier_id) is None:
                store.update_queue(q)
    elif kind == "delete":
        store.delete_queue(qrec(action[1], None, None).recipient_id)
    elif kind == "commit":
        store.commit()
    elif kind == "abort":
        store.abort()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(actions=st.lists(op, max_size=40))
@pytest.mark.parametrize("kind", ["memory", "lmdb"])
def test_incremental_counts_and_hashes_equal_a_recount(kind, actions, tmp_path_factory):
    store: Store = MemoryStore() if kind == "memory" else LMDBStore(
        tmp_path_factory.mktemp("db"), map_size=32 << 20, durability="none")
    try:
        for action in actions:
            apply(store, action)
            check(store)
    finally:
        store.close()


def _fill(store: Store) -> None:
    for n in range(20):
        store.add_queue(qrec(n, SERVICES[n % 2], SERVICES[2] if n % 3 else None))
    for n in range(0, 20, 5):
        store.delete_queue(qrec(n, None, None).recipient_id)
    store.commit()


def test_lmdb_keeps_counts_and_hashes_across_a_reopen(tmp_path):
    with LMDBStore(tmp_path / "db", map_size=32 << 20) as st:
        _fill(st)
        before = from_scratch(st)
        st.sync()
    with LMDBStore(tmp_path / "db", map_size=32 << 20) as st:
        assert from_scratch(st) == before and before
        check(st)


@pytest.mark.parametrize("dropped", [(b"service_subs",), (b"services", b"service_certs", b"service_queues")])
def test_an_older_lmdb_store_gets_its_counts_and_hashes_computed_once_at_open(tmp_path, dropped):
    path = tmp_path / "db"
    with LMDBStore(path, map_size=32 << 20) as st:
        _fill(st)
        before = from_scratch(st)
    env = lmdb.open(str(path), max_dbs=16, map_size=32 << 20)
    with env.begin(write=True) as txn:
        if dropped == (b"service_subs",):
            txn.drop(env.open_db(b"service_subs", txn=txn), delete=True)
        else:  # an even older store, with stale counts left over from a newer one
            for name in dropped:
                txn.drop(env.open_db(name, txn=txn), delete=True)
            txn.put(b"\x18" + SERVICES[0] + b"R", (99).to_bytes(8, "big") + bytes(16),
                    db=env.open_db(b"service_subs", txn=txn))
    env.close()
    with LMDBStore(path, map_size=32 << 20) as st:
        check(st)
        assert from_scratch(st) == before


def test_one_association_is_one_xor(tmp_path):
    store = MemoryStore()
    a = qrec(1, SERVICES[0], None, ntf=False)
    store.add_queue(a)
    assert store.service_queue_subs(SERVICES[0], "R") == (1, queue_id_hash(a.recipient_id))
    store.delete_queue(a.recipient_id)
    assert store.service_queue_subs(SERVICES[0], "R") == (0, EMPTY_IDS_HASH)
