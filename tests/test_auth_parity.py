"""ERR AUTH does the same work whether the queue exists or not.

A probe signed with a key the queue does not know is answered ERR AUTH both for an existing
id and for a random one; if the two paths did different work, their times would tell which
queue ids exist. These tests count the work (store reads, record decodes, key parses,
signature verifications, X25519 box keys) on both paths, at the broker, on both stores.
Times themselves are measured by bench/auth_timing.py.
"""

from __future__ import annotations

import collections
import os

import pytest

from smpfast import _core as core
from smpfast.crypto import auth as cauth
from smpfast.crypto.keys import Alg, PrivateKey, generate_private_key
from smpfast.protocol import commands as C
from smpfast.protocol import errors as E
from smpfast.protocol.transmission import decode_client_transmissions, encode_client_transmission, t_for_auth
from smpfast.server.broker import Broker, encode_answers
from smpfast.store import LMDBStore, MemoryStore, NotifierRecord, QueueRecord
from smpfast.store import lmdb as store_lmdb
from smpfast.store import memory as store_memory

VERSION = 7
BLOCK = 16384
ALGS = [Alg.ED25519, Alg.ED448, Alg.X25519]


class CountingTxn:
    """An LMDB transaction that counts its reads."""

    def __init__(self, txn, counts: collections.Counter) -> None:
        self._txn, self._counts = txn, counts

    def get(self, *args, **kwargs):
        self._counts["lmdb get"] += 1
        return self._txn.get(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._txn, name)


@pytest.fixture(params=["memory", "lmdb"])
def store(request, tmp_path):
    s = MemoryStore() if request.param == "memory" else LMDBStore(tmp_path / "store", map_size=1 << 26)
    yield s
    s.close()


@pytest.fixture
def counts(monkeypatch) -> collections.Counter:
    counter: collections.Counter = collections.Counter()

    def counting(name, fn):
        def wrapper(*args, **kwargs):
            counter[name] += 1
            return fn(*args, **kwargs)
        return wrapper

    real_verify_batch = core.verify_batch

    def verify_batch(requests):
        requests = list(requests)
        counter["core verifications"] += len(requests)
        return real_verify_batch(requests)

    monkeypatch.setattr(cauth.core, "verify_batch", verify_batch)
    monkeypatch.setattr(cauth, "ed448_verify", counting("ed448 verifications", cauth.ed448_verify))
    monkeypatch.setattr(cauth, "decode_public_key", counting("key parses", cauth.decode_public_key))
    monkeypatch.setattr(cauth, "dh_box_key", counting("box keys", cauth.dh_box_key))
    monkeypatch.setattr(store_lmdb, "decode_queue", counting("record decodes", store_lmdb.decode_queue))
    monkeypatch.setattr(store_memory, "copy_queue", counting("record copies", store_memory.copy_queue))
    return counter


def _queue(alg: Alg, secured: bool = True) -> tuple[QueueRecord, PrivateKey]:
    """A messaging-mode queue with a notifier, all keys of ``alg``."""
    keys = [generate_private_key(alg).public.der for _ in range(3)]
    rec = QueueRecord(os.urandom(24), [keys[0]], os.urandom(32), os.urandom(24),
                      sender_key=keys[1] if secured else None, queue_mode="M",
                      notifier=NotifierRecord(os.urandom(24), keys[2], os.urandom(32)))
    return rec, generate_private_key(alg)  # the attacker's key: none of the queue's


def _probe(broker: Broker, store, counts: collections.Counter, entity: bytes, cmd: C.Command,
           attacker: PrivateKey) -> tuple[dict, C.Response]:
    """Counts of the work of one probe on a fresh connection, and its answer."""
    session_private = os.urandom(32)
    client = broker.connect(VERSION, os.urandom(32), session_private)
    corr = os.urandom(24)
    encoded = cmd.encode(VERSION)
    tfa = t_for_auth(client.session_id, corr, entity, encoded)
    if attacker.alg is Alg.X25519:
        auth = cauth.authenticator(attacker, PrivateKey(Alg.X25519, session_private).public.raw, corr, tfa)
    else:
        auth = attacker.sign(tfa)
    block = core.encode_batch([encode_client_transmission(VERSION, client.session_id, corr, entity, encoded, auth)],
                              BLOCK)
    if isinstance(store, LMDBStore):
        store.commit()
        store._txn = CountingTxn(store._begin(), counts)  # the broker reads in this transaction
    counts.clear()
    effects = broker.process_block(client, block)
    work = dict(counts)
    [(_, answers)] = effects.replies
    [r] = decode_client_transmissions(core.encode_batch(encode_answers(client, answers), BLOCK), VERSION,
                                      client.session_id)
    return work, r.response


CASES = {
    "GET": (C.Get(), lambda q: q.recipient_id),
    "SUB": (C.SUB, lambda q: q.recipient_id),
    "KEY": (C.Key(generate_private_key(Alg.ED25519).public.der), lambda q: q.recipient_id),
    "SEND": (C.Send(C.MsgFlags(False), b"hello"), lambda q: q.sender_id),
    "NSUB": (C.Nsub(), lambda q: q.notifier.notifier_id),
}


@pytest.mark.parametrize("alg", ALGS, ids=lambda a: a.value)
@pytest.mark.parametrize("command", list(CASES))
def test_err_auth_costs_the_same_work_for_existing_and_absent_queues(store, counts, command, alg):
    broker = Broker(store)
    rec, attacker = _queue(alg)
    assert store.add_queue(rec)
    cmd, entity_of = CASES[command]
    existing, r1 = _probe(broker, store, counts, entity_of(rec), cmd, attacker)
    absent, r2 = _probe(broker, store, counts, os.urandom(24), cmd, attacker)
    assert r1 == r2 == C.Err(E.AUTH)
    assert existing == absent
    # and the work is really there: one verification of the attacker's kind, one key parse
    verifications = "ed448 verifications" if alg is Alg.ED448 else "core verifications"
    assert existing[verifications] == 1 and existing["key parses"] == 1
    assert existing.get("record decodes", 0) + existing.get("record copies", 0) == 1
    if alg is Alg.X25519:
        assert existing["box keys"] == 1


@pytest.mark.parametrize("alg", ALGS, ids=lambda a: a.value)
def test_signed_send_to_an_unsecured_queue_costs_what_an_absent_queue_costs(store, counts, alg):
    """The reference answers AUTH at once when the queue has no sender key; verifying
    against the dummy key instead keeps the existence of unsecured queues hidden too."""
    broker = Broker(store)
    rec, attacker = _queue(alg, secured=False)
    assert store.add_queue(rec)
    cmd = C.Send(C.MsgFlags(False), b"hello")
    existing, r1 = _probe(broker, store, counts, rec.sender_id, cmd, attacker)
    absent, r2 = _probe(broker, store, counts, os.urandom(24), cmd, attacker)
    assert r1 == r2 == C.Err(E.AUTH)
    assert existing == absent
    assert existing["ed448 verifications" if alg is Alg.ED448 else "core verifications"] == 1


def test_valid_commands_still_verify(store):
    """Parity work does not change answers: the right key is accepted, an unsigned SEND to
    an unsecured queue is stored. The block runs last to first, as the reference runs it,
    so the GET finds the message the SEND after it stored."""
    broker = Broker(store)
    rcv = generate_private_key(Alg.ED25519)
    rec = QueueRecord(os.urandom(24), [rcv.public.der], os.urandom(32), os.urandom(24), queue_mode="M")
    assert store.add_queue(rec)
    client = broker.connect(VERSION, os.urandom(32), os.urandom(32))
    corr = os.urandom(24)
    tfa = t_for_auth(client.session_id, corr, rec.recipient_id, C.Get().encode(VERSION))
    get = encode_client_transmission(VERSION, client.session_id, corr, rec.recipient_id, C.Get(), rcv.sign(tfa))
    send = encode_client_transmission(VERSION, client.session_id, b"s", rec.sender_id,
                                      C.Send(C.MsgFlags(False), b"hi"))
    effects = broker.process_block(client, core.encode_batch([get, send], BLOCK))
    answers = [r.response for _, batch in effects.replies
               for r in decode_client_transmissions(core.encode_batch(encode_answers(client, batch), BLOCK), VERSION,
                                                    client.session_id)]
    assert isinstance(answers[0], C.Msg) and answers[1:] == [C.OK]
    assert store.peek_message(rec.recipient_id).body == b"hi"
    assert answers[0].msg_id == store.peek_message(rec.recipient_id).msg_id


def test_cover_miss_changes_nothing(store):
    rec, _ = _queue(Alg.ED25519)
    assert store.add_queue(rec)
    store.commit()
    absent = os.urandom(24)
    for by_index in (False, True):
        assert store.cover_miss(absent, by_index) is None
    store.commit()
    assert store.queue_count() == 1 and store.get_queue(absent) is None
    assert store.get_queue(rec.recipient_id) == rec
