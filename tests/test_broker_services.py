"""Service sessions in the broker (sans-IO): double authorization and its failures, the
service-role restrictions, NEW/SUB/NSUB/NSUBS/SUBS of services, ENDS when a newer session of
the service takes over, END/DELD to a service's session, NMSG routed to the service and
associations kept in the store across sessions, all as the reference's Server.hs does."""

from __future__ import annotations

import os

import pytest

from smpfast.crypto import auth as cauth
from smpfast.crypto.keys import Alg, PrivateKey
from smpfast.protocol import commands as C
from smpfast.protocol import errors as E
from smpfast.protocol import versions as V
from smpfast.protocol.commands import ServiceRole
from smpfast.protocol.ids_hash import EMPTY_IDS_HASH, ids_hash
from smpfast.server.broker import ServiceRefused

from service_support import V18, Conn, World, new_queue, send


@pytest.fixture
def w() -> World:
    return World()


# ---------------------------------------------------------------- the service record


def test_service_record_is_found_again_by_certificate_and_role(w):
    sid, _ = w.broker.get_create_service("N", (b"leaf", b"ca"), b"h" * 32)
    again, _ = w.broker.get_create_service("N", (b"other chain",), b"h" * 32)
    assert again == sid and w.store.service_by_cert(b"h" * 32).certificates == (b"leaf", b"ca")
    with pytest.raises(ServiceRefused):
        w.broker.get_create_service("M", (b"leaf",), b"h" * 32)  # its role is N


# ---------------------------------------------------------------- double authorization


def test_new_in_a_messaging_service_is_associated_and_answers_its_id(w):
    svc = w.conn(role=ServiceRole.MESSAGING)
    ids, rk, _, _ = new_queue(svc, ntf=False)
    assert ids.service_id == svc.service.service_id
    assert w.store.get_queue(ids.rcv_id).rcv_service_id == svc.service.service_id
    assert w.store.service_queue_count(svc.service.service_id, "R") == 1
    # SUB answers SOK with the service id, in a service session
    assert svc.send(ids.rcv_id, C.SUB, rk) == C.Sok(svc.service.service_id)
    plain = w.conn()
    ids2, rk2, _, _ = new_queue(plain, ntf=False)
    assert ids2.service_id is None and plain.send(ids2.rcv_id, C.SUB, rk2) == C.Sok(None)


@pytest.mark.parametrize(
    "case, error",
    [
        ("no service signature", E.SERVICE),
        ("bad service signature", E.SERVICE),
        ("service signature over the prefixed bytes", E.SERVICE),
        ("queue key without the certificate hash", E.AUTH),
        ("queue key over another certificate hash", E.AUTH),
    ],
)
def test_service_double_authorization_failures(w, case, error):
    svc = w.conn(role=ServiceRole.MESSAGING)
    rk, dk = PrivateKey.generate(Alg.ED25519), PrivateKey.generate(Alg.X25519)
    new = C.New(rk.public.der, dk.public.der)
    kw: dict = {}
    if case == "no service signature":
        kw = {"sig": None}
    elif case == "bad service signature":
        kw = {"sig": bytes(64)}
    elif case == "service signature over the prefixed bytes":
        body = new.encode(V18)
        tfa = cauth.t_for_auth(svc.session_id, b"c1", b"", body)
        kw = {"sig": cauth.service_signature(svc.service_private, svc.service.cert_hash + tfa)}
    elif case == "queue key without the certificate hash":
        kw = {"prefix": b""}
    else:
        kw = {"prefix": os.urandom(32)}
    [(corr, _, answer)] = svc.block(svc.transmission(b"c1", b"", new, rk, **kw))
    assert corr == b"c1" and answer == C.Err(error)
    assert w.store.queue_count() == 0


def test_a_service_signature_outside_its_place_is_service(w):
    plain = w.conn()
    ids, rk, _, _ = new_queue(plain, ntf=False)
    # a non-service session may not carry one, not even on NEW/SUB
    assert plain.send(ids.rcv_id, C.SUB, rk, sig=bytes(64)) == C.Err(E.SERVICE)
    svc = w.conn(role=ServiceRole.MESSAGING)
    ids2, rk2, _, _ = new_queue(svc, ntf=False)
    # a command that is not NEW/SUB/NSUB never carries one, even in a service session
    assert svc.send(ids2.rcv_id, C.Key(PrivateKey.generate(Alg.ED25519).public.der), rk2,
                    sig=cauth.service_signature(svc.service_private, b"x")) == C.Err(E.SERVICE)
    # ...and is authorized by the queue key alone
    assert svc.send(ids2.rcv_id, C.Key(PrivateKey.generate(Alg.ED25519).public.der), rk2) == C.OK


def test_x25519_queue_key_in_a_service_session(w):
    svc = w.conn(role=ServiceRole.MESSAGING)
    rk, dk = PrivateKey.generate(Alg.X25519), PrivateKey.generate(Alg.X25519)
    body = C.New(rk.public.der, dk.public.der).encode(V18)
    tfa = cauth.t_for_auth(svc.session_id, b"x1", b"", body)
    server_key = PrivateKey(Alg.X25519, svc.peer.session_private).public.raw
    auth = cauth.authenticator(rk, server_key, b"x1", svc.service.cert_hash + tfa)
    [(_, _, ids)] = svc.block(svc.transmission(b"x1", b"", C.New(rk.public.der, dk.public.der), None, auth=auth,
                                               sig=cauth.service_signature(svc.service_private, tfa)))
    assert isinstance(ids, C.Ids) and ids.service_id == svc.service.service_id


# ---------------------------------------------------------------- roles


def test_service_roles_are_enforced(w):
    plain = w.conn()
    ids, rk, nid, nk = new_queue(plain)
    ntf = w.conn(role=ServiceRole.NOTIFIER)
    msg = w.conn(role=ServiceRole.MESSAGING)
    proxy = w.conn(role=ServiceRole.PROXY)
    rk2, dk2 = PrivateKey.generate(Alg.ED25519), PrivateKey.generate(Alg.X25519)
    # a notifier service may not create, receive or send
    assert ntf.send(b"", C.New(rk2.public.der, dk2.public.der), rk2) == C.Err(E.CMD_PROHIBITED)
    assert ntf.send(ids.rcv_id, C.SUB, rk) == C.Err(E.CMD_PROHIBITED)
    assert send(ntf, ids.snd_id) == C.Err(E.CMD_PROHIBITED)
    # a messaging or proxy service may not subscribe notifications
    assert msg.send(nid, C.Nsub(), nk) == C.Err(E.CMD_PROHIBITED)
    assert proxy.send(nid, C.Nsub(), nk) == C.Err(E.CMD_PROHIBITED)
    assert proxy.send(b"", C.New(rk2.public.der, dk2.public.der), rk2) == C.Err(E.CMD_PROHIBITED)
    # PING is for everyone
    for c in (ntf, msg, proxy):
        [(_, ent, pong)] = c.block(c.transmission(b"p", b"", C.PING, None))
        assert (ent, pong) == (b"", C.PONG)
    # a missing queue is AUTH before any role check (the reference verifies the queue first)
    assert ntf.send(os.urandom(24), C.SUB, rk) == C.Err(E.AUTH)
    # a messaging service may not only create
    assert msg.send(b"", C.New(rk2.public.der, dk2.public.der, subscribe=False), rk2) == C.Err(E.CMD_PROHIBITED)
    assert w.store.queue_count() == 1


def test_nsubs_and_subs_are_service_commands(w):
    plain = w.conn()
    key = PrivateKey.generate(Alg.ED25519)
    # outside a service session: SERVICE
    assert plain.send(os.urandom(24), C.Nsubs(), key) == C.Err(E.SERVICE)
    assert plain.send(os.urandom(24), C.Subs(), key) == C.Err(E.SERVICE)
    ntf = w.conn(role=ServiceRole.NOTIFIER)
    service_key = PrivateKey(Alg.ED25519, ntf.service_private)
    sid = ntf.service.service_id
    assert ntf.send(sid, C.Nsubs(), service_key) == C.Soks(0)
    # another entity, another key, an authenticator: SERVICE
    assert ntf.send(os.urandom(24), C.Nsubs(), service_key) == C.Err(E.SERVICE)
    assert ntf.send(sid, C.Nsubs(), key) == C.Err(E.SERVICE)
    assert ntf.send(sid, C.Nsubs(), None, auth=os.urandom(80)) == C.Err(E.SERVICE)
    # the wrong role: PROHIBITED before the signature is looked at
    assert ntf.send(sid, C.Subs(), service_key) == C.Err(E.CMD_PROHIBITED)
    msg = w.conn(role=ServiceRole.MESSAGING)
    msg_key = PrivateKey(Alg.ED25519, msg.service_private)
    assert msg.send(msg.service.service_id, C.Nsubs(), msg_key) == C.Err(E.CMD_PROHIBITED)
    # a verified SUBS of a service with no queues: SOKS 0 and, nothing being waiting, ALLS
    answers = msg.block(msg.transmission(b"c1", msg.service.service_id, C.Subs(), msg_key))
    assert [m for _, _, m in answers] == [C.Soks(0, EMPTY_IDS_HASH), C.ALLS]
    assert msg.send(msg.service.service_id, C.Subs(), key) == C.Err(E.SERVICE)


# ---------------------------------------------------------------- notifier services


def _associate(w, ntf: Conn, n: int = 1):
    owner = w.conn()
    out = []
    for _ in range(n):
        ids, rk, nid, nk = new_queue(owner)
        assert ntf.send(nid, C.Nsub(), nk) == C.Sok(ntf.service.service_id)
        out.append((ids, rk, nid, nk))
    return owner, out


def test_nsub_associates_and_nmsg_goes_to_the_service(w):
    ntf = w.conn(role=ServiceRole.NOTIFIER)
    owner, [(ids, rk, nid, nk)] = _associate(w, ntf)
    service_id = ntf.service.service_id
    assert w.store.queue_by_notifier(nid).notifier.ntf_service_id == service_id
    assert w.store.service_queue_count(service_id, "N") == 1
    sender = w.conn()
    assert send(sender, ids.snd_id) == C.OK
    w.harness.apply(None, w.broker.deliver_notifications())
    [(ent, nmsg)] = [e for e in ntf.events() if isinstance(e[1], C.Nmsg)]
    assert ent == nid
    # a repeated NSUB in the same session changes nothing
    assert ntf.send(nid, C.Nsub(), nk) == C.Sok(service_id)
    assert w.broker.stats["ntfServices.assocNew"] == 1 and w.broker.stats["ntfServices.assocDuplicate"] == 1


def test_nsubs_counts_and_a_newer_session_takes_the_service_over(w):
    ntf = w.conn(role=ServiceRole.NOTIFIER)
    owner, queues = _associate(w, ntf, 3)
    service_id, cert_hash = ntf.service.service_id, ntf.service.cert_hash
    key = PrivateKey(Alg.ED25519, ntf.service_private)
    digest = ids_hash(q[2] for q in queues)  # of the notifier ids
    assert ntf.send(service_id, C.Nsubs(), key) == C.Soks(3, digest)
    assert ntf.send(service_id, C.Nsubs(), key) == C.Soks(3, digest)  # already subscribed
    # a second session of the same service (same certificate): the first gets ENDS 3
    again = w.conn(role=ServiceRole.NOTIFIER, cert_hash=cert_hash)
    assert again.service.service_id == service_id
    again_key = PrivateKey(Alg.ED25519, again.service_private)
    assert again.send(service_id, C.Nsubs(), again_key) == C.Soks(3, digest)
    assert ntf.events() == [(service_id, C.Ends(3, digest))]
    # notifications now go to the newer session
    sender = w.conn()
    for ids, _, _, _ in queues:
        assert send(sender, ids.snd_id) == C.OK
    w.harness.apply(None, w.broker.deliver_notifications())
    assert sorted(e for e, m in again.events() if isinstance(m, C.Nmsg)) == sorted(q[2] for q in queues)
    assert ntf.events() == []


def test_associations_survive_the_session(w):
    ntf = w.conn(role=ServiceRole.NOTIFIER)
    owner, [(ids, rk, nid, nk)] = _associate(w, ntf)
    service_id, cert_hash = ntf.service.service_id, ntf.service.cert_hash
    ntf.close()
    sender = w.conn()
    assert send(sender, ids.snd_id) == C.OK
    # nobody holds the service: the notification waits
    assert not w.broker.deliver_notifications().pushes
    back = w.conn(role=ServiceRole.NOTIFIER, cert_hash=cert_hash)
    assert back.service.service_id == service_id
    assert back.send(service_id, C.Nsubs(), PrivateKey(Alg.ED25519, back.service_private)) == C.Soks(1, ids_hash([nid]))
    w.harness.apply(None, w.broker.deliver_notifications())
    [(ent, nmsg)] = back.events()
    assert ent == nid and isinstance(nmsg, C.Nmsg)


def test_direct_nsub_ends_the_association(w):
    ntf = w.conn(role=ServiceRole.NOTIFIER)
    owner, [(ids, rk, nid, nk)] = _associate(w, ntf)
    service_id = ntf.service.service_id
    other = w.conn()
    assert other.send(nid, C.Nsub(), nk) == C.Sok(None)
    assert ntf.events() == [(nid, C.END)]
    assert w.store.queue_by_notifier(nid).notifier.ntf_service_id is None
    assert w.store.service_queue_count(service_id, "N") == 0
    assert w.broker.subscriptions.service_count("N", ntf.peer.id) == 0
    sender = w.conn()
    send(sender, ids.snd_id)
    w.harness.apply(None, w.broker.deliver_notifications())
    assert [e for e, m in other.events() if isinstance(m, C.Nmsg)] == [nid]
    assert ntf.events() == []
    # and the service may take it back: the direct subscriber gets END
    assert ntf.send(nid, C.Nsub(), nk) == C.Sok(service_id)
    assert other.events() == [(nid, C.END)]
    assert w.broker.stats["ntfServices.assocRemoved"] == 1


def test_notifier_gone_is_deld_to_the_service(w):
    ntf = w.conn(role=ServiceRole.NOTIFIER)
    owner, [(ids, rk, nid, nk), (ids2, rk2, nid2, nk2)] = _associate(w, ntf, 2)
    assert owner.send(ids.rcv_id, C.Ndel(), rk) == C.OK
    assert owner.send(ids2.rcv_id, C.Del(), rk2) == C.OK
    assert sorted(ntf.events()) == sorted([(nid, C.DELD), (nid2, C.DELD)])
    assert w.broker.subscriptions.service_count("N", ntf.peer.id) == 0
    assert w.store.service_queue_count(ntf.service.service_id, "N") == 0


# ---------------------------------------------------------------- messaging services


def test_messaging_service_subscriptions(w):
    svc = w.conn(role=ServiceRole.MESSAGING)
    ids, rk, _, _ = new_queue(svc, ntf=False)
    service_id, cert_hash = svc.service.service_id, svc.service.cert_hash
    assert w.broker.subscriptions.service_subs("R", svc.peer.id) == (1, ids_hash([ids.rcv_id]))
    # a newer session of the service creating a queue takes the service over: ENDS 1 <hash>
    again = w.conn(role=ServiceRole.MESSAGING, cert_hash=cert_hash)
    ids2, rk2, _, _ = new_queue(again, ntf=False)
    assert svc.events() == [(service_id, C.Ends(1, ids_hash([ids.rcv_id])))]
    # a direct SUB of a service's queue by another connection: the service's session gets END
    other = w.conn()
    assert other.send(ids2.rcv_id, C.SUB, rk2) == C.Sok(None)
    assert again.events() == [(ids2.rcv_id, C.END)]
    assert w.broker.subscriptions.service_subs("R", again.peer.id) == (0, EMPTY_IDS_HASH)
    # and the association ends with it (7.x; 6.5.5 kept it)
    assert w.store.get_queue(ids2.rcv_id).rcv_service_id is None
    assert w.store.service_queue_subs(service_id, "R") == (1, ids_hash([ids.rcv_id]))
    # deleting a service's queue tells the service's session DELD
    ids3, rk3, _, _ = new_queue(again, ntf=False)
    assert other.send(ids3.rcv_id, C.Del(), rk3) == C.OK
    assert again.events() == [(ids3.rcv_id, C.DELD)]


def test_below_v16_there_is_no_sok(w):
    old = w.conn(version=V.SHORT_LINKS)
    ids, rk, _, _ = new_queue(old, ntf=False)
    answer = old.send(ids.rcv_id, C.SUB, rk)
    assert answer == C.Sok(None) and answer.encode(old.version) == b"OK"


def test_a_subscribed_service_session_counts_as_subscribed(w):
    # The reference keeps a client with service subscriptions (even of no queue yet) from
    # being disconnected as inactive.
    ntf = w.conn(role=ServiceRole.NOTIFIER)
    subs = w.broker.subscriptions
    assert not subs.has_any(ntf.peer.id)
    assert ntf.send(ntf.service.service_id, C.Nsubs(), PrivateKey(Alg.ED25519, ntf.service_private)) == C.Soks(0)
    assert subs.has_any(ntf.peer.id)
    ntf.close()
    assert subs.subscriber_of_service("N", ntf.service.service_id) is None
