"""Never acknowledge what is not committed.

The group committer's generations (a failed commit fails its own waiters and nobody else's,
a failed fsync is retried), the broker's write unit (a block whose write fails is undone
alone, with its in-memory delivery state), what a failed commit's answers become, and a
real server process checked from outside: at the moment each answer arrives, an LMDB reader
in this process must already see the write it acknowledges.
"""

from __future__ import annotations

import logging
import os

import lmdb
import pytest
import trio

import smpfast.client as sc
from smpfast import _core as core
from smpfast.crypto import auth as cauth
from smpfast.crypto.keys import Alg, generate_private_key
from smpfast.protocol import commands as C
from smpfast.protocol import transmission as T
from smpfast.server.broker import STORE_FAILED, STORE_FULL, Broker, Peer, encode_answers
from smpfast.server.committer import CommitFailed, GroupCommitter
from smpfast.testing.broker import BrokerHarness
from smpfast.testing.process import ServerProcess, free_port, init_data_dir
from smpfast.store import MemoryStore
from smpfast.store.errors import StoreError, StoreFullError
from smpfast.store.records import decode_queue

SESSION = bytes(range(32))


class FlakyStore(MemoryStore):
    """A memory store whose next ``fail_commits`` commits and ``fail_syncs`` syncs fail."""

    def __init__(self) -> None:
        super().__init__()
        self.fail_commits = 0
        self.fail_syncs = 0
        self.syncs = 0

    def commit(self) -> None:
        if self.fail_commits:
            self.fail_commits -= 1
            self.abort()  # as LMDB: a failed commit leaves nothing of the batch
            raise StoreFullError("disk full (test)")
        super().commit()

    def sync(self) -> None:
        self.syncs += 1
        if self.fail_syncs:
            self.fail_syncs -= 1
            raise StoreError("fsync failed (test)")


def _queue_rec(rid: bytes):
    from smpfast.store.records import QueueRecord

    return QueueRecord(recipient_id=rid, recipient_keys=[b"\x01" * 44], rcv_dh_secret=b"\x02" * 32,
                       sender_id=b"s" + rid[1:])


# ---------------------------------------------------------------------- committer


def test_a_failed_commit_fails_its_own_generation_only():
    store = FlakyStore()

    async def main():
        committer = GroupCommitter(store, interval=0.001)
        store.add_queue(_queue_rec(b"a" * 24))
        first = committer.current()
        assert first == 1  # the open transaction holds a write
        store.fail_commits = 1
        await committer.flush()
        with pytest.raises(CommitFailed):
            await committer.wait_durable(first)
        # Nothing visible depends on the failed generation: answers computed now are settled.
        assert committer.current() == 0 and committer.settled(committer.current())
        store.add_queue(_queue_rec(b"b" * 24))
        second = committer.current()
        assert second > first
        await committer.flush()
        await committer.wait_durable(second)  # no CommitFailed: the failure is not sticky
        assert committer.failed(first) and not committer.failed(second)

    trio.run(main)


def test_a_failed_fsync_is_retried_and_its_waiters_wait():
    store = FlakyStore()

    async def main():
        committer = GroupCommitter(store, interval=0.001)
        store.fail_syncs = 2
        async with trio.open_nursery() as nursery:
            nursery.start_soon(committer.run)
            store.add_queue(_queue_rec(b"a" * 24))
            generation = committer.current()
            with trio.fail_after(10):
                await committer.wait_durable(generation)
            nursery.cancel_scope.cancel()
        assert store.syncs >= 3 and committer.durable >= generation

    trio.run(main)


def test_an_abort_outside_a_unit_fails_the_open_generation():
    store = MemoryStore()

    async def main():
        committer = GroupCommitter(store)
        store.add_queue(_queue_rec(b"a" * 24))
        generation = committer.current()
        store.abort()  # what an engine failure outside a write unit does
        with pytest.raises(CommitFailed):
            await committer.wait_durable(generation)
        assert store.get_queue(b"a" * 24) is None

    trio.run(main)


def test_store_failures_are_logged_once_per_episode(caplog):
    store = FlakyStore()

    async def main():
        committer = GroupCommitter(store)
        for i in range(50):
            store.add_queue(_queue_rec(bytes([i]) * 24))
            store.fail_commits = 1
            await committer.flush()

    with caplog.at_level(logging.WARNING, logger="smpfast.server.committer"):
        trio.run(main)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "writes are refused" in errors[0].getMessage()


# ---------------------------------------------------------------------- broker write unit


def _t(corr: bytes, entity: bytes, cmd, key=None) -> bytes:
    """A v7 transmission, signed with ``key`` (Ed25519) when given."""
    body = cmd.encode(7)
    auth = b"" if key is None else cauth.sign(key, cauth.t_for_auth(SESSION, corr, entity, body))
    return T.encode_client_transmission(7, SESSION, corr, entity, body, auth)




class FullOnSend(MemoryStore):
    """Refuses message writes while ``full`` (as an LMDB map that filled up)."""

    full = False

    def write_message(self, rid, msg, quota=128):
        if self.full:
            raise StoreFullError("map full (test)")
        return super().write_message(rid, msg, quota)


def _new_queue(h: BrokerHarness, client: Peer):
    rcv_key = generate_private_key(Alg.ED25519)
    dh = generate_private_key(Alg.X25519)
    new = C.New(rcv_key.public.der, dh.public.der)
    t = _t(b"n", b"", new, rcv_key)
    h.process(client, core.encode_batch([t], 16384))
    [(_, _, ids)] = h.answers(client)
    assert isinstance(ids, C.Ids), ids
    return ids, rcv_key, dh


def test_a_failing_block_is_undone_alone_and_the_subscriber_is_not_stuck():
    store = FullOnSend()
    h = BrokerHarness(Broker(store))
    rcv = h.connect(7, SESSION, os.urandom(32))
    snd = h.connect(7, SESSION, os.urandom(32))
    ids, rcv_key, _ = _new_queue(h, rcv)
    send = lambda corr, body: _t(corr, ids.snd_id, C.Send(C.MsgFlags(False, b""), body))  # noqa: E731
    store.full = True
    h.process(snd, core.encode_batch([send(b"1", b"lost"), _t(b"p", b"", C.PING)], 16384))
    # Every command of the failed block is answered ERR STORE, and no MSG was pushed.
    assert h.answers(snd) == [(b"1", ids.snd_id, C.Err(STORE_FULL)), (b"p", b"", C.Err(STORE_FULL))]
    assert h.answers(rcv) == []
    store.full = False
    h.process(snd, core.encode_batch([send(b"2", b"kept")], 16384))
    assert h.answers(snd) == [(b"2", ids.snd_id, C.OK)]
    [(corr, entity, msg)] = h.answers(rcv)  # delivered: the failed block left no phantom
    assert corr == b"" and entity == ids.rcv_id and isinstance(msg, C.Msg)
    assert store.message_count(ids.rcv_id) == 1


def test_answers_of_a_failed_commit_become_errors_and_the_head_is_delivered_again():
    store = MemoryStore()
    broker = Broker(store)
    h = BrokerHarness(broker)
    rcv = h.connect(7, SESSION, os.urandom(32))
    ids, rcv_key, _ = _new_queue(h, rcv)
    snd = h.connect(7, SESSION, os.urandom(32))
    for body in (b"m1", b"m2"):
        t = _t(b"s", ids.snd_id, C.Send(C.MsgFlags(False, b""), body))
        h.process(snd, core.encode_batch([t], 16384))
    [(_, _, m1)] = h.answers(rcv)
    store.commit()
    # The ACK of m1 answers MSG m2; suppose the commit holding that ACK failed:
    ack = _t(b"a", ids.rcv_id, C.Ack(m1.msg_id), rcv_key)
    h.process(rcv, core.encode_batch([ack], 16384))
    [(_, answers)] = h.take(rcv)
    assert isinstance(answers[0][2], C.Msg)
    store.abort()  # the failed commit: m1 is back at the head
    replaced, effects = broker.answers_after_failed_commit(rcv, answers + [(b"", ids.rcv_id, C.DELD)])
    h.apply(rcv, effects)
    assert replaced == [(b"a", ids.rcv_id, C.Err(STORE_FAILED)), (b"", ids.rcv_id, C.END)]
    [(corr, entity, again)] = h.answers(rcv)  # m1 again, as a new delivery
    assert (corr, entity, again.msg_id) == (b"", ids.rcv_id, m1.msg_id)
    assert encode_answers(rcv, replaced)  # the replacements encode


# ---------------------------------------------------------------------- a full store, end to end


def test_a_full_store_refuses_writes_serves_reads_and_recovers(smp_server, trio_run, tmp_path, caplog):
    from smpfast.store import LMDBStore

    path = str(tmp_path / "small-store")
    store = LMDBStore(path, map_size=1 << 20, durability="fsync")  # room for ~50 large messages

    async def main():
        async with smp_server(store) as srv:
            async with sc.connect(srv.address) as rcv, sc.connect(srv.address) as snd:
                queues = [await rcv.create_queue(subscribe=False) for _ in range(4)]
                acknowledged: dict[bytes, list[bytes]] = {q.rcv_id: [] for q in queues}
                refused = 0
                for i in range(120):
                    q = queues[i % 4]
                    body = b"%03d" % i + b"x" * 15000
                    replies = await snd.batch([(q.snd_id, C.Send(C.MsgFlags(False, b""), body), None)])
                    if replies == [C.OK]:
                        acknowledged[q.rcv_id].append(body)
                    else:
                        assert replies == [C.Err(STORE_FULL)]
                        refused += 1
                assert refused > 0 and sum(map(len, acknowledged.values())) > 10
                # Read-only commands keep working, on old and fresh connections alike.
                async with sc.connect(srv.address) as fresh:
                    await fresh.ping()
                msg = await rcv.get(queues[0])
                assert sc.decrypt_msg(queues[0], msg).body == acknowledged[queues[0].rcv_id][0]
                # Free space: receive and acknowledge everything of two queues.
                for q in queues[:2]:
                    while (m := await rcv.get(q)) is not None:
                        assert sc.decrypt_msg(q, m).body == acknowledged[q.rcv_id].pop(0)
                        await rcv.ack(q, m.msg_id)
                # Writes are accepted again, without a restart.
                await snd.send(queues[0].snd_id, b"after the space was freed")
                acknowledged[queues[0].rcv_id].append(b"after the space was freed")
                return queues, acknowledged

    with caplog.at_level(logging.WARNING):
        queues, acknowledged = trio_run(main, timeout=90)
    refused_lines = [r for r in caplog.records if "writes are refused" in r.getMessage()]
    assert len(refused_lines) == 1  # one line for the whole episode, not one per refusal
    store.close()
    reopened = LMDBStore(path, map_size=1 << 20)
    try:
        for q in queues:
            got = []
            while (m := reopened.peek_message(q.rcv_id)) is not None:
                got.append(m.body)
                reopened.delete_message(q.rcv_id, m.msg_id)
            assert got == acknowledged[q.rcv_id]  # every OK is there, nothing else
        reopened.abort()
    finally:
        reopened.close()


def test_a_full_map_grows_when_allowed(smp_server, trio_run, tmp_path):
    from smpfast.store import LMDBStore

    store = LMDBStore(str(tmp_path / "growing"), map_size=1 << 20, map_size_max=8 << 20)

    async def main():
        async with smp_server(store) as srv:
            async with sc.connect(srv.address) as rcv, sc.connect(srv.address) as snd:
                q = await rcv.create_queue(subscribe=False)
                outcomes = []
                for i in range(100):
                    replies = await snd.batch([(q.snd_id, C.Send(C.MsgFlags(False, b""), b"%03d" % i + b"x" * 15000), None)])
                    outcomes.append(replies[0])
                return outcomes

    outcomes = trio_run(main, timeout=90)
    refused = [i for i, o in enumerate(outcomes) if o != C.OK]
    # The map filled once: the writes that met it were refused (those within one commit
    # interval), then it grew and every later write was stored, with no restart.
    assert refused and refused == list(range(refused[0], refused[0] + len(refused))) and len(refused) < 20
    assert all(outcomes[i] == C.Err(STORE_FULL) for i in refused)
    assert store.map_size > 1 << 20
    [rid] = _rids(store)
    assert store.message_count(rid) == 100 - len(refused)
    store.abort()
    store.close()


def _rids(store) -> list[bytes]:
    rids, _ = store._nonempty_after(None, 10)
    return rids


# ---------------------------------------------------------------------- a real server, from outside


class StoreReader:
    """A read-only LMDB reader on the server's store, in this process: it sees exactly what
    the server has committed."""

    def __init__(self, path) -> None:
        self.env = lmdb.open(str(path), readonly=True, max_dbs=8, lock=True)

    def _get(self, db: bytes, key: bytes) -> bytes | None:
        # A fresh snapshot each time; named databases are opened in it (LMDB closes a handle
        # opened in a read transaction when that transaction ends).
        with self.env.begin() as txn:
            return txn.get(key, db=self.env.open_db(db, txn=txn, create=False))

    def queue(self, rid: bytes):
        v = self._get(b"queues", rid)
        return None if v is None else decode_queue(v)

    def messages(self, rid: bytes) -> int:
        v = self._get(b"qstate", rid)
        if v is None:
            return 0
        head, tail = int.from_bytes(v[2:10], "big"), int.from_bytes(v[10:18], "big")
        return tail - head

    def close(self) -> None:
        self.env.close()


@pytest.mark.slow
def test_every_acknowledgement_arrives_after_its_commit(tmp_path):
    data = tmp_path / "data"
    address = init_data_dir(data, free_port())
    ini = data / "smpfast.ini"
    ini.write_text(ini.read_text().replace("commit_interval_ms = 2", "commit_interval_ms = 5"))
    violations: list[str] = []

    def check(ok: bool, what: str) -> None:
        if not ok:
            violations.append(what)

    async def main(reader: StoreReader):
        async with sc.connect(address) as rcv, sc.connect(address) as snd:
            # One change at a time: NEW, KEY, SEND, ACK (with the next MSG), DEL.
            q = await rcv.create_queue(subscribe=False)
            check(reader.queue(q.rcv_id) is not None, "IDS before the queue was committed")
            key = generate_private_key(Alg.ED25519)
            await rcv.secure(q, key.public.der)
            rec = reader.queue(q.rcv_id)
            check(rec is not None and rec.sender_key is not None, "KEY's OK before its commit")
            for i in range(3):
                await snd.send(q.snd_id, b"m%d" % i, key)
                check(reader.messages(q.rcv_id) == i + 1, f"SEND {i}'s OK before its commit")
            for left in (2, 1):
                msg = await rcv.get(q)
                await rcv.ack(q, msg.msg_id)
                check(reader.messages(q.rcv_id) == left, "ACK's OK before its commit")
            # A subscriber's ACK is answered by the next MSG: that answer shows the deletion.
            async with sc.connect(address) as sub:
                await sub.subscribe(q)
                _, pushed = await sub.next_event(timeout=10)
                await snd.send(q.snd_id, b"m3", key)
                nxt = await sub.ack(q, pushed.msg_id)
                check(nxt is not None and reader.messages(q.rcv_id) == 1, "ACK's MSG before the deletion was committed")
                await sub.ack(q, nxt.msg_id)
                check(reader.messages(q.rcv_id) == 0, "ACK's OK before its commit")
            await rcv.delete(q)
            check(reader.queue(q.rcv_id) is None, "DEL's OK before its commit")

            # Many changes in flight at once, on shared connections: each OK must find its
            # own write committed, not only the ones before it.
            queues = [await rcv.create_queue(subscribe=False) for _ in range(16)]
            sent = {x.rcv_id: 0 for x in queues}

            async def sender(x, n):
                for i in range(n):
                    await snd.send(x.snd_id, b"burst %d" % i)
                    sent[x.rcv_id] += 1
                    check(reader.messages(x.rcv_id) >= sent[x.rcv_id], "a pipelined SEND's OK before its commit")

            async with trio.open_nursery() as nursery:
                for k in range(48):  # 48 SENDs in flight on one connection at any time
                    nursery.start_soon(sender, queues[k % 16], 20)

            async def acker(x):
                while (m := await rcv.get(x)) is not None:
                    before = reader.messages(x.rcv_id)
                    await rcv.ack(x, m.msg_id)
                    check(reader.messages(x.rcv_id) < before, "a pipelined ACK's OK before its commit")

            async with trio.open_nursery() as nursery:
                for x in queues[:4]:
                    nursery.start_soon(acker, x)

    with ServerProcess(data):
        reader = StoreReader(data / "store")
        try:
            trio.run(main, reader)
        finally:
            reader.close()
    assert violations == []
