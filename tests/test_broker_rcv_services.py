"""Messaging-service subscriptions (v19) in the sans-IO broker, as the reference's Server.hs
(subscribeServiceMessages, sharedSubscribeQueue, tryDeliverMessage) does them: SUBS answers
SOKS with the store's count and IdsHash of the recipient ids, delivers the head of every
associated queue (MSG, empty corrId) and then ALLS; a repeat answers only SOKS; an older
session gets ENDS with its own count and hash; SUB associates in a service session and
unassociates elsewhere; SEND to an associated queue reaches the service's session; END/DELD
take the queue out of the session's count and hash. Below v19 only the encodings change."""

from __future__ import annotations

import os

import pytest

from smpfast import _core as core
from smpfast.crypto import auth as cauth
from smpfast.crypto.keys import Alg, PrivateKey
from smpfast.protocol import commands as C
from smpfast.protocol import errors as E
from smpfast.protocol.commands import ServiceRole
from smpfast.protocol.ids_hash import EMPTY_IDS_HASH, ids_hash, queue_id_hash
from smpfast.store import LMDBStore, MemoryStore, StoreFullError

from service_support import Conn, World, new_queue, send

V19 = 19


@pytest.fixture(params=["memory", "lmdb"])
def w(request, tmp_path) -> World:
    store = MemoryStore() if request.param == "memory" else LMDBStore(tmp_path / "db", map_size=64 << 20,
                                                                        durability="none")
    world = World(store)
    yield world
    store.close()


def service_conn(w: World, version: int = V19, cert_hash: bytes | None = None) -> Conn:
    return w.conn(version=version, role=ServiceRole.MESSAGING, cert_hash=cert_hash)


def service_key(c: Conn) -> PrivateKey:
    return PrivateKey(Alg.ED25519, c.service_private)


def subs(c: Conn, count: int = -1, digest: bytes = EMPTY_IDS_HASH) -> list[tuple]:
    """SUBS in ``c``'s session: every answer it brings (the walk runs to its end)."""
    return c.block(c.transmission(b"s" + os.urandom(4), c.service.service_id, C.Subs(count, digest), service_key(c)))


def associated(w: World, svc: Conn, n: int) -> list:
    """``n`` queues the service creates (NEW subscribes and associates them)."""
    return [new_queue(svc, ntf=False)[:2] for _ in range(n)]


def msgs(answers: list[tuple]) -> list[bytes]:
    """The recipient ids of the MSG events among ``answers``."""
    return [ent for corr, ent, m in answers if not corr and isinstance(m, C.Msg)]


# ---------------------------------------------------------------- SUBS


def test_subs_answers_the_stores_count_and_hash_then_delivers_every_waiting_message_then_alls(w):
    svc = service_conn(w)
    queues = associated(w, svc, 5)
    rids = [ids.rcv_id for ids, _ in queues]
    sender = w.conn()
    for ids, _ in queues[:3]:
        assert send(sender, ids.snd_id, b"one") == C.OK
        assert send(sender, ids.snd_id, b"two") == C.OK
    svc.close()
    back = service_conn(w, cert_hash=svc.service.cert_hash)
    answers = subs(back, 5, ids_hash(rids))
    corr, ent, soks = answers[0]
    assert corr and ent == back.service.service_id
    assert soks == C.Soks(5, ids_hash(rids)) == C.Soks(*w.store.service_queue_subs(ent, "R"))
    # one MSG per queue with messages (its head only), then ALLS with no entity, last
    assert sorted(msgs(answers)) == sorted(rids[:3])
    for corr, ent, m in answers[1:-1]:
        assert corr == b"" and isinstance(m, C.Msg) and m.msg_id == w.store.peek_message(ent).msg_id
    assert answers[-1] == (b"", b"", C.ALLS)
    assert back.events() == []
    # ACK brings the next message of that queue only
    _, rk = queues[0]
    ack = back.send(rids[0], C.Ack(w.store.peek_message(rids[0]).msg_id), rk)
    assert isinstance(ack, C.Msg) and ack.msg_id == w.store.peek_message(rids[0]).msg_id
    assert back.send(rids[0], C.Ack(ack.msg_id), rk) == C.OK
    assert w.broker.stats["rcvServicesSubMsg"] == 3


def test_each_walked_message_is_its_own_batch_after_soks(w):
    svc = service_conn(w)
    queues = associated(w, svc, 3)
    sender = w.conn()
    for ids, _ in queues:
        send(sender, ids.snd_id)
    back = service_conn(w, cert_hash=svc.service.cert_hash)
    w.harness.process(back.peer, _block(back, C.Subs()))
    batches = [b for _, b in w.harness.take(back.peer)]
    assert [len(b) for b in batches] == [1, 1, 1, 1, 1]
    assert isinstance(batches[0][0][2], C.Soks) and batches[-1] == [(b"", b"", C.ALLS)]


def _block(c: Conn, cmd: C.Command) -> bytes:
    return core.encode_batch([c.transmission(b"s" + os.urandom(4), c.service.service_id, cmd, service_key(c))], 16384)


def test_subs_in_the_session_that_made_the_queues_skips_what_it_was_sent(w):
    svc = service_conn(w)
    queues = associated(w, svc, 2)
    rids = [ids.rcv_id for ids, _ in queues]
    send(w.conn(), queues[0][0].snd_id)
    assert msgs(svc.answers()) == [rids[0]]  # delivered when it arrived
    first = subs(svc)
    assert first[0][2] == C.Soks(2, ids_hash(rids)) and first[-1] == (b"", b"", C.ALLS)
    assert msgs(first) == []  # not a second, unacknowledged MSG for queue 0


def test_repeat_subs_sends_no_msg_and_no_alls(w):
    svc = service_conn(w)
    queues = associated(w, svc, 2)
    back = service_conn(w, cert_hash=svc.service.cert_hash)
    send(w.conn(), queues[1][0].snd_id)
    assert msgs(subs(back)) == [queues[1][0].rcv_id]
    again = subs(back)
    assert [m for _, _, m in again] == [C.Soks(2, ids_hash(ids.rcv_id for ids, _ in queues))]


def test_an_older_session_gets_ends_with_its_count_and_hash_and_no_more_messages(w):
    svc = service_conn(w)
    queues = associated(w, svc, 3)
    rids = [ids.rcv_id for ids, _ in queues]
    sender = w.conn()
    send(sender, queues[0][0].snd_id)
    assert msgs(svc.answers()) == [rids[0]]  # delivered to the session holding the service
    newer = service_conn(w, cert_hash=svc.service.cert_hash)
    answers = subs(newer)
    assert answers[0][2] == C.Soks(3, ids_hash(rids))
    # the old session's delivery of queue 0 was unacknowledged: the newer one gets it again
    assert msgs(answers) == [rids[0]]
    assert svc.events() == [(svc.service.service_id, C.Ends(3, ids_hash(rids)))]
    assert w.broker.subscriptions.service_subs("R", svc.peer.id) == (0, EMPTY_IDS_HASH)
    # a later message goes to the newer session only
    send(sender, queues[1][0].snd_id)
    assert msgs(newer.answers()) == [rids[1]] and svc.answers() == []


def test_send_to_an_associated_queue_reaches_the_service_session_once_until_ack(w):
    svc = service_conn(w)
    [(ids, rk)] = associated(w, svc, 1)
    back = service_conn(w, cert_hash=svc.service.cert_hash)
    assert subs(back)[-1][2] == C.ALLS
    sender = w.conn()
    assert send(sender, ids.snd_id, b"first") == C.OK
    assert send(sender, ids.snd_id, b"second") == C.OK
    [(corr, ent, m)] = back.answers()
    assert corr == b"" and ent == ids.rcv_id and isinstance(m, C.Msg)
    nxt = back.send(ids.rcv_id, C.Ack(m.msg_id), rk)
    assert isinstance(nxt, C.Msg) and nxt.msg_id != m.msg_id


# ---------------------------------------------------------------- SUB, END, DELD


def test_sub_in_a_service_session_associates_and_ends_the_direct_subscriber(w):
    owner = w.conn()
    ids, rk, _, _ = new_queue(owner, ntf=False)
    send(w.conn(), ids.snd_id)
    assert msgs(owner.answers()) == [ids.rcv_id]
    svc = service_conn(w)
    sid = svc.service.service_id
    answers = svc.block(svc.transmission(b"c1", ids.rcv_id, C.SUB, rk))
    assert answers[0] == (b"c1", ids.rcv_id, C.Sok(sid))
    assert msgs(answers) == [ids.rcv_id]  # the waiting message, to the service now
    assert owner.events() == [(ids.rcv_id, C.END)]
    assert w.store.get_queue(ids.rcv_id).rcv_service_id == sid
    assert w.store.service_queue_subs(sid, "R") == (1, queue_id_hash(ids.rcv_id))
    assert w.broker.subscriptions.service_subs("R", svc.peer.id) == (1, queue_id_hash(ids.rcv_id))
    # a repeat SUB changes neither the store nor the session; it sends the head again
    again = svc.block(svc.transmission(b"c2", ids.rcv_id, C.SUB, rk))
    assert again[0] == (b"c2", ids.rcv_id, C.Sok(sid)) and msgs(again) == [ids.rcv_id]
    assert w.store.service_queue_subs(sid, "R") == (1, queue_id_hash(ids.rcv_id))
    assert w.broker.subscriptions.service_subs("R", svc.peer.id) == (1, queue_id_hash(ids.rcv_id))
    assert w.broker.stats["rcvServices.assocNew"] == 1 and w.broker.stats["rcvServices.assocDuplicate"] == 1


def test_sub_moves_a_queue_between_services(w):
    a = service_conn(w)
    [(ids, rk)] = associated(w, a, 1)
    b = service_conn(w)
    assert b.send(ids.rcv_id, C.SUB, rk) == C.Sok(b.service.service_id)
    assert a.events() == [(ids.rcv_id, C.END)]
    assert w.broker.subscriptions.service_subs("R", a.peer.id) == (0, EMPTY_IDS_HASH)
    assert w.store.service_queue_subs(a.service.service_id, "R") == (0, EMPTY_IDS_HASH)
    assert w.store.service_queue_subs(b.service.service_id, "R") == (1, queue_id_hash(ids.rcv_id))
    assert w.broker.stats["rcvServices.assocUpdated"] == 1


def test_sub_in_a_plain_session_removes_the_association(w):
    svc = service_conn(w)
    queues = associated(w, svc, 2)
    (ids, rk), (ids2, _) = queues
    plain = w.conn()
    assert plain.send(ids.rcv_id, C.SUB, rk) == C.Sok(None)
    assert svc.events() == [(ids.rcv_id, C.END)]
    assert w.store.get_queue(ids.rcv_id).rcv_service_id is None
    assert w.store.service_queue_subs(svc.service.service_id, "R") == (1, queue_id_hash(ids2.rcv_id))
    assert w.broker.subscriptions.service_subs("R", svc.peer.id) == (1, queue_id_hash(ids2.rcv_id))
    # its messages now go to the plain subscriber, not the service
    send(w.conn(), ids.snd_id)
    assert msgs(plain.answers()) == [ids.rcv_id] and svc.answers() == []
    # a later SUBS counts what is left
    back = service_conn(w, cert_hash=svc.service.cert_hash)
    assert subs(back)[0][2] == C.Soks(1, queue_id_hash(ids2.rcv_id))


def test_a_sub_after_the_service_delivered_ends_that_delivery(w):
    svc = service_conn(w)
    [(ids, rk)] = associated(w, svc, 1)
    sender = w.conn()
    send(sender, ids.snd_id)
    [(_, _, m)] = svc.answers()
    plain = w.conn()
    answers = plain.block(plain.transmission(b"c1", ids.rcv_id, C.SUB, rk))
    assert msgs(answers) == [ids.rcv_id]
    assert svc.events() == [(ids.rcv_id, C.END)]
    # the service's delivery state went with the queue: its ACK finds nothing
    assert svc.send(ids.rcv_id, C.Ack(m.msg_id), rk) == C.Err(E.NO_MSG)


def test_del_of_an_associated_queue(w):
    svc = service_conn(w)
    (ids, rk), (ids2, rk2), (ids3, _) = associated(w, svc, 3)
    other = service_conn(w, cert_hash=svc.service.cert_hash)
    subs(other)
    assert svc.events() == [(svc.service.service_id, C.Ends(3, ids_hash([ids.rcv_id, ids2.rcv_id, ids3.rcv_id])))]
    # deleted from another connection: the service's session gets DELD and loses the queue
    owner = w.conn()
    assert owner.send(ids.rcv_id, C.Del(), rk) == C.OK
    assert other.events() == [(ids.rcv_id, C.DELD)]
    assert w.broker.subscriptions.service_subs("R", other.peer.id) == (2, ids_hash([ids2.rcv_id, ids3.rcv_id]))
    # deleted by the service's own session: no DELD, but its pair loses the queue too
    assert other.send(ids2.rcv_id, C.Del(), rk2) == C.OK
    assert other.events() == []
    assert w.broker.subscriptions.service_subs("R", other.peer.id) == (1, queue_id_hash(ids3.rcv_id))
    assert w.store.service_queue_subs(svc.service.service_id, "R") == (1, queue_id_hash(ids3.rcv_id))


def test_nsubs_carries_the_hash_of_notifier_ids(w):
    ntf = w.conn(version=V19, role=ServiceRole.NOTIFIER)
    owner = w.conn()
    nids = []
    for _ in range(3):
        ids, rk, nid, nk = new_queue(owner)
        assert ntf.send(nid, C.Nsub(), nk) == C.Sok(ntf.service.service_id)
        nids.append(nid)
    assert w.broker.subscriptions.service_subs("N", ntf.peer.id) == (3, ids_hash(nids))
    again = w.conn(version=V19, role=ServiceRole.NOTIFIER, cert_hash=ntf.service.cert_hash)
    assert again.send(again.service.service_id, C.Nsubs(3, ids_hash(nids)), service_key(again)) == C.Soks(3, ids_hash(nids))
    assert ntf.events() == [(ntf.service.service_id, C.Ends(3, ids_hash(nids)))]


# ---------------------------------------------------------------- the walk


def test_the_walk_goes_page_by_page_and_never_delivers_a_queue_twice(w):
    svc = service_conn(w)
    queues = associated(w, svc, 10)
    by_rid = {ids.rcv_id: ids for ids, _ in queues}
    rids = sorted(by_rid)
    sender = w.conn()
    for rid in rids[:-1]:
        send(sender, by_rid[rid].snd_id)
    back = service_conn(w, cert_hash=svc.service.cert_hash)
    w.harness.auto_walk = False
    first = subs(back)
    assert [m for _, _, m in first] == [C.Soks(10, ids_hash(rids))]
    assert len(w.harness.walks) == 1
    w.harness.step_walks(page=3)
    assert msgs(back.answers()) == rids[:3]  # id order, one page
    # a message arriving meanwhile for a queue not walked yet is delivered at once...
    send(sender, by_rid[rids[-1]].snd_id)
    assert msgs(back.answers()) == [rids[-1]]
    # ... and a queue already delivering is skipped by the walk (one MSG per queue)
    w.harness.step_walks(page=2, budget=1)  # stops after one MSG
    assert msgs(back.answers()) == rids[3:4]
    while w.harness.walks:
        w.harness.step_walks(page=3)
    rest = back.answers()
    assert msgs(rest) == rids[4:9] and rest[-1] == (b"", b"", C.ALLS)
    assert back.events() == []


def test_the_walk_ends_silently_when_the_session_loses_the_service(w):
    svc = service_conn(w)
    queues = associated(w, svc, 4)
    sender = w.conn()
    for ids, _ in queues:
        send(sender, ids.snd_id)
    first = service_conn(w, cert_hash=svc.service.cert_hash)
    w.harness.auto_walk = False
    subs(first)
    w.harness.step_walks(page=1)
    assert len(msgs(first.answers())) == 1
    newer = service_conn(w, cert_hash=svc.service.cert_hash)
    subs(newer)
    while w.harness.walks:
        w.harness.step_walks(page=1)
    # the first session got ENDS and nothing more (no ALLS); the newer one all four and ALLS
    assert first.events() == [(svc.service.service_id, C.Ends(4, ids_hash(ids.rcv_id for ids, _ in queues)))]
    answers = newer.answers()
    assert len(msgs(answers)) == 4 and answers[-1] == (b"", b"", C.ALLS)


def test_a_disconnected_walk_ends(w):
    svc = service_conn(w)
    [(ids, _)] = associated(w, svc, 1)
    send(w.conn(), ids.snd_id)
    back = service_conn(w, cert_hash=svc.service.cert_hash)
    w.harness.auto_walk = False
    subs(back)
    [(peer, walk)] = w.harness.walks
    back.close()
    assert not w.broker.walk_service(peer, walk) and walk.done


# ---------------------------------------------------------------- below v19


@pytest.mark.parametrize("version", [16, 18])
def test_below_v19_soks_and_ends_carry_the_count_only(w, version):
    svc = service_conn(w, version=version)
    queues = associated(w, svc, 2)
    send(w.conn(), queues[0][0].snd_id)
    svc.answers()
    newer = service_conn(w, version=version, cert_hash=svc.service.cert_hash)
    w.harness.process(newer.peer, _block(newer, C.Subs()))
    batches = w.harness.take(newer.peer)
    assert _wire(newer, batches[0][1]) == [b"SOKS " + (2).to_bytes(8, "big")]
    assert batches[-1][1] == [(b"", b"", C.ALLS)]
    [(_, ends)] = w.harness.take(svc.peer)
    assert _wire(svc, ends) == [b"ENDS " + (2).to_bytes(8, "big")]
    # at 19 the hash follows
    assert C.encode_response(ends[0][2], 19) == b"ENDS " + (2).to_bytes(8, "big") + bytes([16]) + ends[0][2].ids_hash


def _wire(c: Conn, items: list[tuple]) -> list[bytes]:
    """The command bodies of ``items`` as the server encodes them for ``c``'s version."""
    return [C.encode_response(m, c.version) for _, _, m in items]


def test_subs_with_parameters_below_v19_is_a_syntax_error(w):
    svc = service_conn(w, version=18)
    body = b"SUBS " + (1).to_bytes(8, "big") + bytes([16]) + bytes(16)
    tfa = cauth.t_for_auth(svc.session_id, b"c1", svc.service.service_id, body)
    t = core.encode_transmission(service_key(svc).sign(tfa), b"c1", svc.service.service_id, body,
                                 svc.session_id, True, True, None)
    w.harness.process(svc.peer, core.encode_batch([t], 16384))
    assert svc.answers() == [(b"c1", svc.service.service_id, C.Err(E.CMD_SYNTAX))]



# ---------------------------------------------------------------- commits and undo


class _Generations:
    """Durability whose current generation is 'open' while the store holds uncommitted
    writes: an answer's generation says whether it shows something not yet committed."""

    def __init__(self, store) -> None:
        self.store = store
        self.committed = 0

    def current(self) -> int:
        return self.committed + (1 if self.store.uncommitted_writes else 0)

    def commit(self) -> None:
        self.store.commit()
        self.committed += 1

    def store_failed(self, error: Exception) -> None:
        pass


def test_sok_of_an_association_waits_for_its_commit():
    store = MemoryStore()
    w = World(store)
    gens = w.broker.durability = _Generations(store)
    owner = w.conn()
    ids, rk, _, _ = new_queue(owner, ntf=False)
    gens.commit()
    svc = service_conn(w)
    w.harness.process(svc.peer, core.encode_batch([svc.transmission(b"c1", ids.rcv_id, C.SUB, rk)], 16384))
    [(generation, [(corr, _, sok)])] = w.harness.take(svc.peer)
    assert sok == C.Sok(svc.service.service_id) and generation == gens.committed + 1  # the open one
    gens.commit()
    w.harness.process(svc.peer, _block(svc, C.Subs()))
    [(g1, [(_, _, soks)]), (g2, [(_, _, alls)])] = w.harness.take(svc.peer)
    assert soks == C.Soks(1, queue_id_hash(ids.rcv_id)) and alls == C.ALLS and g1 == g2 == gens.committed


class _FailSecondSend(MemoryStore):
    """Fails the second message write of each block it is armed for."""

    armed = False
    writes = 0

    def write_message(self, rid, msg, quota=128):
        if self.armed:
            self.writes += 1
            if self.writes == 2:
                raise StoreFullError("map full (test)")
        return super().write_message(rid, msg, quota)


def test_an_undone_block_takes_back_the_delivery_it_made_for_the_service():
    store = _FailSecondSend()
    w = World(store)
    svc = service_conn(w)
    (a, _), (b, _) = associated(w, svc, 2)
    sender = w.conn()
    store.armed = True
    answers = sender.block(*(sender.transmission(b"s%d" % i, x.snd_id, C.Send(C.MsgFlags(False), b"m"), None)
                             for i, x in enumerate((a, b))))
    assert [m for _, _, m in answers] == [C.Err(E.ErrorType("STORE", "store full"))] * 2
    assert svc.answers() == []  # no MSG went out
    assert a.rcv_id not in w.broker.subscriptions.queues_of(svc.peer.id)  # nor a delivery state
    store.armed = False
    assert send(sender, a.snd_id) == C.OK
    assert msgs(svc.answers()) == [a.rcv_id]
