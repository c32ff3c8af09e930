"""LMDB-specific behaviour: durability across reopen and kill -9, format version, map full,
sync from a worker thread."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import lmdb
import pytest

from smpfast.store import (
    LMDBStore,
    QueueRecord,
    StoredMessage,
    StoreError,
    StoreFormatError,
    StoreFullError,
    WriteResult,
)

RID = b"R" * 24


def qrec(rid: bytes = RID) -> QueueRecord:
    return QueueRecord(rid, [b"\x30\x2a" + b"k" * 42], b"d" * 32, b"S" + rid[1:])


def msg(i: int, size: int = 100) -> StoredMessage:
    return StoredMessage(i.to_bytes(24, "big"), 1_700_000_000 + i, i % 2 == 0, bytes([i % 256]) * size)


def open_store(path, **kw) -> LMDBStore:
    return LMDBStore(path, map_size=kw.pop("map_size", 64 << 20), **kw)


def test_committed_survives_reopen_uncommitted_does_not(tmp_path):
    st = open_store(tmp_path)
    st.add_queue(qrec())
    for i in range(3):
        st.write_message(RID, msg(i), quota=2)  # the third becomes the quota marker
    st.commit()
    st.sync()
    # an uncommitted batch, then close: it must be gone
    st.add_queue(qrec(b"X" * 24))
    st.delete_message(RID, msg(0).msg_id)
    st.close()

    st = open_store(tmp_path)
    assert st.get_queue(RID) == qrec()
    assert st.get_queue(b"X" * 24) is None
    assert st.queue_count() == 1
    assert st.message_count(RID) == 3
    assert st.peek_message(RID) == msg(0)
    # the over-quota state is persistent too
    assert st.write_message(RID, msg(10)) is WriteResult.FULL
    st.close()


def test_commit_without_sync_survives_clean_close(tmp_path):
    st = open_store(tmp_path, durability="none")
    st.add_queue(qrec())
    st.commit()
    st.close()
    st = open_store(tmp_path)
    assert st.queue_count() == 1
    st.close()


class _CountingEnv:
    """Delegates to the real environment and counts sync calls."""

    def __init__(self, env):
        self.env = env
        self.syncs = 0

    def sync(self, force=False):
        self.syncs += 1
        self.env.sync(force)

    def __getattr__(self, name):
        return getattr(self.env, name)


def test_sync_only_when_something_was_committed(tmp_path):
    st = open_store(tmp_path)
    env = st._env = _CountingEnv(st._env)
    st.sync()
    assert env.syncs == 0
    st.add_queue(qrec())
    st.sync()  # not committed yet: nothing to make durable
    assert env.syncs == 0
    st.commit()
    st.sync()
    st.sync()
    assert env.syncs == 1
    st.close()

    st = open_store(tmp_path, durability="none")
    env = st._env = _CountingEnv(st._env)
    st.write_message(RID, msg(1))
    st.commit()
    st.sync()
    assert env.syncs == 0
    st.close()


def test_sync_in_worker_thread_while_mutating(tmp_path):
    st = open_store(tmp_path)
    st.add_queue(qrec())
    st.commit()
    stop = threading.Event()
    errors: list[BaseException] = []
    syncs = 0

    def syncer():
        nonlocal syncs
        while not stop.is_set():
            try:
                st.sync()
                syncs += 1
            except BaseException as e:  # pragma: no cover - reported below
                errors.append(e)
                return

    t = threading.Thread(target=syncer)
    t.start()
    try:
        for i in range(400):
            assert st.write_message(RID, msg(i, 2000), quota=1000).stored
            if i % 4 == 3:
                st.commit()
    finally:
        stop.set()
        t.join()
    assert not errors
    assert syncs > 0
    st.commit()
    st.sync()
    st.close()
    st = open_store(tmp_path)
    assert st.message_count(RID) == 400
    for i in range(400):
        assert st.peek_message(RID) == msg(i, 2000)
        assert st.delete_message(RID, msg(i).msg_id)
    st.close()


def test_unknown_format_version_refused(tmp_path):
    open_store(tmp_path).close()
    env = lmdb.open(str(tmp_path), max_dbs=8)
    meta = env.open_db(b"meta")
    with env.begin(write=True) as txn:
        txn.put(b"format", (99).to_bytes(4, "big"), db=meta)
    env.close()
    with pytest.raises(StoreFormatError, match="format 99 is not supported"):
        open_store(tmp_path)


def test_foreign_lmdb_environment_refused(tmp_path):
    env = lmdb.open(str(tmp_path), max_dbs=2)
    env.open_db(b"something_else")
    env.close()
    with pytest.raises(StoreFormatError, match="not an smpfast store"):
        open_store(tmp_path)


def test_garbage_file_refused(tmp_path):
    (tmp_path / "data.mdb").write_bytes(b"this is not an lmdb file" * 1000)
    with pytest.raises(StoreError):
        open_store(tmp_path)


def test_map_full_aborts_batch_cleanly(tmp_path):
    st = open_store(tmp_path, map_size=1 << 20)
    st.add_queue(qrec())
    st.commit()
    committed = 0
    with pytest.raises(StoreFullError):
        for i in range(1000):
            st.write_message(RID, msg(i, 16000), quota=10_000)
            if i % 5 == 4:
                st.commit()
                committed = i + 1
    # the failed batch is gone entirely, the committed state is intact
    assert st.message_count(RID) == committed
    assert committed > 0
    assert st.get_queue(RID) == qrec()
    # and the store keeps working once space is freed
    for i in range(committed):
        assert st.delete_message(RID, msg(i).msg_id)
    st.commit()
    assert st.write_message(RID, msg(5000, 16000)) is WriteResult.STORED_EMPTY
    st.commit()
    st.sync()
    st.close()
    st = open_store(tmp_path, map_size=1 << 20)
    assert st.peek_message(RID) == msg(5000, 16000)
    st.close()


def test_closed_store_raises_store_error(tmp_path):
    st = open_store(tmp_path)
    st.close()
    with pytest.raises(StoreError):
        st.get_queue(RID)


# --- kill -9 -----------------------------------------------------------------------------------

_WRITER = textwrap.dedent(
    """
    import os, sys
    from smpfast.store import LMDBStore, QueueRecord, StoredMessage
    path, batches, per_batch, self_kill = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "1"
    rid = b"R" * 24
    st = LMDBStore(path, map_size=256 << 20)
    st.add_queue(QueueRecord(rid, [b"k"], b"d" * 32, b"S" * 24))
    st.commit(); st.sync()
    def msg(i):
        return StoredMessage(i.to_bytes(24, "big"), i, i % 3 == 0, bytes([i % 251]) * (i * 389 % 16000))
    n = 0
    print("ok 0", flush=True)
    for b in range(batches):
        for _ in range(per_batch):
            n += 1
            st.write_message(rid, msg(n), quota=10**9)
        st.commit(); st.sync()
        print(f"ok {n}", flush=True)
    # the next batch is written but never committed
    for _ in range(per_batch):
        n += 1
        st.write_message(rid, msg(n), quota=10**9)
    if self_kill:
        os.kill(os.getpid(), 9)
    """
)


def _expected(i: int) -> StoredMessage:
    return StoredMessage(i.to_bytes(24, "big"), i, i % 3 == 0, bytes([i % 251]) * (i * 389 % 16000))


def _check_after_crash(path, acked: int, at_most: int) -> None:
    st = open_store(path, map_size=256 << 20)
    count = st.message_count(RID)
    assert acked <= count <= at_most
    for i in range(1, count + 1):  # every message there, in order, with its content
        assert st.peek_message(RID) == _expected(i)
        assert st.delete_message(RID, i.to_bytes(24, "big"))
    assert st.peek_message(RID) is None
    st.close()


def test_kill_9_loses_nothing_acknowledged(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-c", _WRITER, str(tmp_path), "12", "7", "1"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    acked = int(proc.stdout.split()[-1])
    assert acked == 12 * 7
    # the uncommitted batch is gone: exactly the acknowledged messages, nothing invented
    _check_after_crash(tmp_path, acked, acked)


def test_kill_9_from_outside_at_a_random_moment(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(tmp_path), "100000", "5", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    acked = 0
    try:
        deadline = time.monotonic() + 30
        while acked < 60 and time.monotonic() < deadline:  # let it get going, then kill it
            line = proc.stdout.readline()
            assert line.startswith("ok "), line
            acked = int(line.split()[1])
        os.kill(proc.pid, signal.SIGKILL)
        rest = proc.stdout.read().split()
        if rest:
            acked = int(rest[-1])
    finally:
        proc.wait(timeout=10)
        proc.stdout.close()
    assert acked >= 60
    # a batch may have been committed but not yet acknowledged when the kill landed
    _check_after_crash(tmp_path, acked, acked + 5)


# --------------------------------------------------------------------------- shared mode


_OTHER_WORKER = """
import sys
from smpfast.store import LMDBStore
from smpfast.store.records import StoredMessage
store = LMDBStore(sys.argv[1], map_size=1 << 26, durability="none", shared=True)
rid = bytes.fromhex(sys.argv[2])
q = store.get_queue(rid)  # committed by the other process: visible without its commit()
assert q is not None, "the other process's unit is not visible"
with store.unit():
    assert store.write_message(rid, StoredMessage(b"m" * 24, 1, False, b"from the other process")).stored
store.close()
"""


def test_shared_mode_units_are_transactions_other_processes_see(tmp_path):
    """Worker processes on one environment (shared=True): a unit is committed at its end
    (no write transaction stays open to block the other processes), reads outside units see
    the latest commit of any process, and a unit counts as a write for the group commit."""
    store = LMDBStore(str(tmp_path / "db"), map_size=1 << 26, durability="none", shared=True)
    try:
        rid = b"R" * 24
        with store.unit():
            assert store.add_queue(qrec(rid))
        assert store.uncommitted_writes >= 1  # answers wait for the next sync
        # no store.commit(): the other process must see the queue anyway
        subprocess.run([sys.executable, "-c", _OTHER_WORKER, str(tmp_path / "db"), rid.hex()], check=True,
                       timeout=60)
        assert store.message_count(rid) == 1
        assert store.peek_message(rid).body == b"from the other process"
        with store.unit():  # a unit that only reads counts too: it may show others' commits
            store.peek_message(rid)
        assert store.uncommitted_writes >= 2
        store.commit()
        assert store.uncommitted_writes == 0
        store.sync()
        # a failing unit is undone alone; what earlier units wrote stays
        with pytest.raises(RuntimeError):
            with store.unit():
                store.delete_message(rid, b"m" * 24)
                raise RuntimeError("the block failed")
        assert store.message_count(rid) == 1
    finally:
        store.close()
