"""The broker without network: SEND → MSG → ACK through the sans-IO broker.

One round delivers MESSAGES messages (one per queue, 100-byte bodies) at v7 with Ed25519
keys: a sender's SEND blocks go through ``Broker.process_block`` (verify, store, push MSG to
the subscribed recipient's outbox, which encrypts the 16 KB MSG body), then the recipient's
ACK blocks. After every block the store commits (and fsyncs with durability fsync), as the
group committer does before the block's replies may leave: a closed-loop client waits for
them. ``per_block`` 64 is the batched client (one SEND block, one ACK block per round);
1 is the unbatched one (64 SEND blocks and 64 ACK blocks).

Blocks are built and signed outside the timed part exactly as smpfast.client does
(t_for_auth, Ed25519 signature, encode_client_transmission, batch_blocks). The ACKs need the
message ids the broker will assign, so the benchmark gives the broker a deterministic id
source: queue i always gets message id i (the queue is empty again after each round).

    .venv/bin/pytest bench/test_bench_broker.py --benchmark-only
"""

from __future__ import annotations

import os

import pytest

from smpfast import _core as core
from smpfast.crypto.keys import Alg, PrivateKey, generate_private_key
from smpfast.protocol import commands as C
from smpfast.protocol.transmission import (
    batch_blocks,
    decode_client_transmissions,
    encode_client_transmission,
    t_for_auth,
)
from smpfast.server.broker import Broker, Peer, encode_answers
from smpfast.testing.broker import BrokerHarness
from smpfast.store import LMDBStore, MemoryStore, QueueRecord

VERSION = 7
MESSAGES = 64
BODY = b"m" * 100
DAY = 86400
ROUNDS = {"memory": 30, "lmdb-none": 30, "lmdb-fsync": 5}


def _signed(session_id: bytes, entity: bytes, cmd: C.Command, key: PrivateKey) -> bytes:
    """One transmission, authorized the way smpfast.client._encode does for Ed25519 keys."""
    corr = os.urandom(24)
    encoded = cmd.encode(VERSION)
    auth = key.sign(t_for_auth(session_id, corr, entity, encoded))
    return encode_client_transmission(VERSION, session_id, corr, entity, encoded, auth)


def _blocks(transmissions: list[bytes], per_block: int) -> list[bytes]:
    out = []
    for i in range(0, len(transmissions), per_block):
        chunk = batch_blocks(transmissions[i : i + per_block])
        assert len(chunk) == 1, "a round's chunk must fit one block"
        out.extend(chunk)
    return out


class Scenario:
    """A broker over ``store`` with MESSAGES secured queues, a subscribed recipient and a
    sender, and the prebuilt blocks of one round."""

    def __init__(self, store, durability: str, per_block: int) -> None:
        self.store = store
        self.fsync = durability == "fsync"
        self.broker = Broker(store)
        self.harness = BrokerHarness(self.broker)
        today = int(self.broker.clock()) // DAY * DAY
        self.recipient = self.harness.connect(VERSION, os.urandom(32), os.urandom(32))
        self.sender = self.harness.connect(VERSION, os.urandom(32), os.urandom(32))
        self.msg_ids = [i.to_bytes(24, "big") for i in range(MESSAGES)]
        sends, acks, subs = [], [], []
        for i in range(MESSAGES):
            rcv_key = generate_private_key(Alg.ED25519)
            snd_key = generate_private_key(Alg.ED25519)
            rid, sid = os.urandom(24), os.urandom(24)
            store.add_queue(QueueRecord(rid, [rcv_key.public.der], os.urandom(32), sid,
                                        sender_key=snd_key.public.der, updated_at=today))
            subs.append(_signed(self.recipient.session_id, rid, C.SUB, rcv_key))
            sends.append(_signed(self.sender.session_id, sid, C.Send(C.MsgFlags(False), BODY), snd_key))
            acks.append(_signed(self.recipient.session_id, rid, C.Ack(self.msg_ids[i]), rcv_key))
        store.commit()
        for block in batch_blocks(subs):
            self.harness.process(self.recipient, block)
        self._expect(self.recipient, [C.Ok] * MESSAGES)  # SOK is encoded as OK below v16
        send_blocks, ack_blocks = _blocks(sends, per_block), _blocks(acks, per_block)
        # SEND block k, then ACK block k: the closed loop of a client that waits for replies
        self.schedule = []
        for s, a in zip(send_blocks, ack_blocks):
            self.schedule += [(self.sender, s), (self.recipient, a)]
        self._next_id = 0

    def _random_bytes(self, n: int) -> bytes:
        """Message ids in queue order, so that the prebuilt ACKs match."""
        assert n == 24
        mid = self.msg_ids[self._next_id % MESSAGES]
        self._next_id += 1
        return mid

    def round(self) -> None:
        broker, store, harness = self.broker, self.store, self.harness
        broker.random_bytes = self._random_bytes
        for client, block in self.schedule:
            harness.process(client, block)
            store.commit()
            if self.fsync:
                store.sync()
        for client in (self.sender, self.recipient):
            for _, answers in harness.take(client):
                encode_answers(client, answers)  # the connection writer's share of the work

    def _expect(self, client: Peer, kinds: list[type]) -> None:
        got = []
        for _, answers in self.harness.take(client):
            for t in encode_answers(client, answers):
                [r] = decode_client_transmissions(core.encode_batch([t], 16384), VERSION, client.session_id)
                got.append(type(r.response))
        assert sorted(k.__name__ for k in got) == sorted(k.__name__ for k in kinds), got

    def check_round(self) -> None:
        """One round, checked: every SEND answered OK, every MSG delivered and ACKed OK."""
        broker, store = self.broker, self.store
        broker.random_bytes = self._random_bytes
        for client, block in self.schedule:
            self.harness.process(client, block)
            store.commit()
        self._expect(self.sender, [C.Ok] * MESSAGES)
        self._expect(self.recipient, [C.Msg] * MESSAGES + [C.Ok] * MESSAGES)
        assert store.stored_message_count() == 0


@pytest.fixture(params=["memory", "lmdb-none", "lmdb-fsync"])
def store_kind(request, tmp_path):
    kind = request.param
    if kind == "memory":
        store = MemoryStore()
    else:
        store = LMDBStore(str(tmp_path / "store"), map_size=1 << 28, durability=kind.split("-")[1])
    yield kind, store
    store.close()


@pytest.mark.parametrize("per_block", [MESSAGES, 1], ids=["batched", "unbatched"])
def test_send_msg_ack(benchmark, store_kind, per_block):
    kind, store = store_kind
    benchmark.group = f"broker: {MESSAGES} × SEND→MSG→ACK, sans-IO (per round)"
    scenario = Scenario(store, "fsync" if kind.endswith("fsync") else "none", per_block)
    scenario.check_round()
    benchmark.extra_info.update(messages_per_round=MESSAGES, store=kind, per_block=per_block)
    benchmark.pedantic(scenario.round, rounds=ROUNDS[kind], iterations=1, warmup_rounds=1)
    assert store.stored_message_count() == 0
