"""Store micro-benchmarks (pytest-benchmark): start-up time against store size, and per-operation
costs with group commits of 100 operations.

    .venv/bin/pytest bench/test_bench_store.py

Start-up must not grow with the number of queues: compare test_open[1000] with
test_open[100000] (the reference server takes ~22.5 us per stored queue to restart)."""

from __future__ import annotations

import itertools

import pytest

from smpfast.store import LMDBStore, QueueRecord, StoredMessage

BATCH = 100
_ids = itertools.count()


def qrec(n: int) -> QueueRecord:
    return QueueRecord(
        b"R" + n.to_bytes(23, "big"),
        [b"\x30\x2a\x30\x05\x06\x03\x2b\x65\x70\x03\x21\x00" + n.to_bytes(32, "big")],
        n.to_bytes(32, "big"),
        b"S" + n.to_bytes(23, "big"),
        queue_mode="M",
        updated_at=86400 * 20000,
    )


@pytest.fixture(scope="session")
def sized_stores(tmp_path_factory):
    """Stores with 1k and 100k queues (a tenth of them holding one message), built once."""
    paths = {}
    for n in (1_000, 100_000):
        path = tmp_path_factory.mktemp(f"store{n}")
        st = LMDBStore(path, durability="none")
        for i in range(n):
            st.add_queue(qrec(i))
            if i % 10 == 0:
                st.write_message(qrec(i).recipient_id, StoredMessage(i.to_bytes(24, "big"), i, True, b"m" * 200))
            if i % 5000 == 4999:
                st.commit()
        st.commit()
        st.close()
        paths[n] = path
    return paths


@pytest.mark.parametrize("n", [1_000, 100_000])
def test_open(benchmark, sized_stores, n):
    """Open the store and serve one known queue's lookup, as a restart before the first SUB."""
    path = sized_stores[n]
    probe = qrec(n // 2).recipient_id

    def restart():
        st = LMDBStore(path)
        assert st.get_queue(probe) is not None
        assert st.queue_count() == n
        st.close()

    benchmark.pedantic(restart, rounds=30, iterations=1, warmup_rounds=2)


@pytest.fixture(params=[False, True], ids=["nowritemap", "writemap"])
def store(request, tmp_path):
    st = LMDBStore(tmp_path, durability="none", writemap=request.param)
    yield st
    st.close()


def test_add_queue_batch100(benchmark, store):
    """100 add_queue calls and one commit (divide by 100 for the per-queue cost)."""

    def batch():
        for _ in range(BATCH):
            store.add_queue(qrec(next(_ids)))
        store.commit()

    benchmark(batch)


@pytest.mark.parametrize("size", [100, 16_000])
def test_write_delete_batch100(benchmark, store, size):
    """100 × (write_message + peek + delete_message) on 100 queues, one commit."""
    rids = [qrec(i).recipient_id for i in range(BATCH)]
    for i in range(BATCH):
        store.add_queue(qrec(i))
    store.commit()
    body = b"b" * size

    def batch():
        for rid in rids:
            mid = next(_ids).to_bytes(24, "big")
            store.write_message(rid, StoredMessage(mid, 1_700_000_000, True, body))
            store.peek_message(rid)
            store.delete_message(rid, mid)
        store.commit()

    benchmark(batch)


def test_group_commit_with_fsync(benchmark, tmp_path):
    """One group commit of 100 writes of 1 KB plus the fsync that releases their OKs."""
    st = LMDBStore(tmp_path)
    st.add_queue(qrec(0))
    st.commit()
    rid = qrec(0).recipient_id
    body = b"b" * 1000

    def batch():
        for _ in range(BATCH):
            mid = next(_ids).to_bytes(24, "big")
            st.write_message(rid, StoredMessage(mid, 1, False, body), quota=10**9)
        st.commit()
        st.sync()

    benchmark.pedantic(batch, rounds=30, iterations=1)
    st.close()
