"""Messaging-service subscriptions (v19) end to end: the in-process server over real TLS,
offering up to 19 (its announced range is still 6..18), and a messaging service of the
project's client presenting a TLS client certificate.

The service creates queues (associated by NEW), goes away, and a new session of it
subscribes them all with one SUBS: SOKS carries the count and the IdsHash of the recipient
ids the client computes itself, the waiting messages arrive (MSG, one per queue) and then
ALLS; later messages reach the service's session; an older session gets ENDS with its hash.
At 18 the same client is no messaging service (it presents its certificate only from 19),
and a notifier service's SOKS/ENDS carry the count only. A service with 100 000 associated
queues gets them back after a server restart with one SUBS whose hash matches.
"""

from __future__ import annotations

import os
import time

import pytest
import trio

import smpfast.client as sc
from smpfast.client.errors import UnsupportedByVersion
from smpfast.protocol import commands as C
from smpfast.protocol.commands import ServiceRole
from smpfast.protocol.ids_hash import EMPTY_IDS_HASH, ids_hash
from smpfast.store import LMDBStore
from smpfast.store.records import QueueRecord, StoredMessage
from smpfast.testing.throwaway_certs import make_service_chain

V19 = 19
V18 = 18


def creds(chain, role=ServiceRole.MESSAGING) -> sc.ServiceCredentials:
    return sc.ServiceCredentials(role, chain.chain, chain.leaf_key)


async def until_alls(client: sc.SMPClient, timeout: float = 30.0) -> list[sc.Event]:
    """The events before ALLS (ALLS itself is checked and dropped)."""
    out = []
    with trio.fail_after(timeout):
        while True:
            ev = await client.next_event()
            if isinstance(ev.message, C.Alls):
                assert ev.entity_id == b""
                return out
            out.append(ev)


@pytest.mark.slow
def test_a_messaging_service_subscribes_all_its_queues_with_one_subs(smp_server, trio_run):
    chain = make_service_chain(1, name="chat relay")

    async def main():
        async with smp_server(max_version=V19) as srv:
            async with sc.connect(srv.address, service=creds(chain)) as relay:
                assert relay.version == V19 and relay.service is not None
                service_id = relay.service.service_id
                queues = await relay.create_queues(5)  # NEW in a service session: associated
                assert all(q.service_id == service_id for q in queues)
            by_rid = {q.rcv_id: q for q in queues}
            digest = ids_hash(by_rid)
            async with sc.connect(srv.address) as sender:
                for q in queues[:3]:
                    await sender.send(q.snd_id, b"while away " + q.rcv_id[:4])
                    await sender.send(q.snd_id, b"second")
                async with sc.connect(srv.address, service=creds(chain)) as relay:
                    assert relay.service.service_id == service_id
                    assert await relay.service_subscribe_all(5, digest) == (5, digest)
                    events = await until_alls(relay)
                    # one MSG per queue with messages, its first one, decrypted with its keys
                    assert sorted(ev.entity_id for ev in events) == sorted(q.rcv_id for q in queues[:3])
                    for ev in events:
                        q = by_rid[ev.entity_id]
                        assert relay.decrypt_msg(q, ev.message).body == b"while away " + q.rcv_id[:4]
                        nxt = await relay.ack(q, ev.message.msg_id)
                        assert nxt is not None and relay.decrypt_msg(q, nxt).body == b"second"
                        assert await relay.ack(q, nxt.msg_id) is None
                    # a repeat answers the same, without deliveries
                    assert await relay.service_subscribe_all() == (5, digest)
                    # a message sent now reaches the service's session
                    await sender.send(queues[4].snd_id, b"live")
                    ev = await relay.next_event(timeout=10)
                    assert ev.entity_id == queues[4].rcv_id
                    assert relay.decrypt_msg(queues[4], ev.message).body == b"live"
                    # a newer session takes over: the older one is told ENDS with its hash
                    async with sc.connect(srv.address, service=creds(chain)) as newer:
                        assert await newer.service_subscribe_all() == (5, digest)
                        # the unacknowledged "live" MSG is delivered again, to the newer session
                        [again] = await until_alls(newer)
                        assert again.entity_id == queues[4].rcv_id
                        assert newer.decrypt_msg(queues[4], again.message).body == b"live"
                        ev = await relay.next_event(timeout=10)
                        assert ev == sc.Event(service_id, C.Ends(5, digest))

    trio_run(main)


@pytest.mark.slow
def test_sub_associates_and_a_plain_sub_takes_the_queue_back(smp_server, trio_run):
    chain = make_service_chain(1, name="directory")

    async def main():
        async with smp_server(max_version=V19) as srv:
            async with sc.connect(srv.address) as owner, sc.connect(srv.address, service=creds(chain)) as svc:
                service_id = svc.service.service_id
                q = await owner.create_queue()
                # the recipient's keys, used by the service session: SUB associates the queue
                assert await svc.subscribe(q) == service_id
                ev = await owner.next_event(timeout=10)
                assert ev == sc.Event(q.rcv_id, C.END)
                assert srv.store.get_queue(q.rcv_id).rcv_service_id == service_id
                assert await svc.service_subscribe_all() == (1, ids_hash([q.rcv_id]))
                await until_alls(svc)
                # an ordinary session's SUB ends the association: the service gets END
                assert await owner.subscribe(q) is None
                ev = await svc.next_event(timeout=10)
                assert ev == sc.Event(q.rcv_id, C.END)
                assert srv.store.service_queue_subs(service_id, "R") == (0, EMPTY_IDS_HASH)

    trio_run(main)


@pytest.mark.slow
def test_at_18_soks_and_ends_carry_the_count_only_and_a_messaging_service_is_a_plain_client(smp_server, trio_run):
    ntf_chain = make_service_chain(1)
    msg_chain = make_service_chain(1, name="relay")

    async def main():
        async with smp_server(max_version=V18, ntf_delivery_interval=0.05) as srv:
            async with sc.connect(srv.address) as owner, \
                    sc.connect(srv.address, service=creds(ntf_chain, ServiceRole.NOTIFIER)) as ntf:
                assert ntf.version == V18 and ntf.service is not None
                queues = [await owner.create_queue(ntf=True) for _ in range(2)]
                for q in queues:
                    await ntf.notifications_subscribe(q.notifier)
                async with sc.connect(srv.address, service=creds(ntf_chain, ServiceRole.NOTIFIER)) as again:
                    # the server keeps the hash, but below 19 it is not on the wire
                    nids = [q.notifier.notifier_id for q in queues]
                    assert srv.store.service_queue_subs(again.service.service_id, "N") == (2, ids_hash(nids))
                    assert await again.service_subscribe_notifications_all() == (2, EMPTY_IDS_HASH)
                    ev = await ntf.next_event(timeout=10)
                    assert ev == sc.Event(ntf.service.service_id, C.Ends(2, EMPTY_IDS_HASH))
            # a messaging service presents its certificate only from 19 (#1790)
            async with sc.connect(srv.address, service=creds(msg_chain)) as relay:
                assert relay.version == V18 and relay.service is None
                with pytest.raises(UnsupportedByVersion):
                    await relay.service_subscribe()

    trio_run(main)


# ------------------------------------------------------------------ 100 000 queues


N_LARGE = 100_000
WITH_MESSAGES = 1000  # of them


def _associate_directly(store: LMDBStore, service_id: bytes, n: int, with_messages: int) -> list[bytes]:
    """``n`` queue records associated with the service, written straight into the store
    (through the protocol each costs a NEW: ~0.5 ms of key generation, signing and DH on
    both sides). The first ``with_messages`` hold one message each."""
    rids = []
    t = int(time.time())
    for i in range(0, n, 5000):
        with store.unit():
            for k in range(i, min(n, i + 5000)):
                rid = os.urandom(24)
                store.add_queue(QueueRecord(rid, [b"\x30\x2a" + bytes(42)], os.urandom(32), os.urandom(24),
                                            rcv_service_id=service_id))
                if k < with_messages:
                    store.write_message(rid, StoredMessage(os.urandom(24), t, False, b"pending %d" % k))
                rids.append(rid)
        store.commit()
    store.sync()
    return rids


@pytest.mark.slow
def test_a_service_with_100k_queues_gets_them_back_with_one_subs_after_a_restart(smp_server, trio_run, tmp_path):
    chain = make_service_chain(1, name="notification relay")
    store = LMDBStore(tmp_path / "store", map_size=1 << 30, durability="none")

    async def main():
        async with smp_server(store, max_version=V19) as srv:
            async with sc.connect(srv.address, service=creds(chain)) as relay:
                service_id = relay.service.service_id
                q = await relay.create_queue()  # one made through the protocol too
        rids = [q.rcv_id] + _associate_directly(store, service_id, N_LARGE - 1, WITH_MESSAGES)
        digest = ids_hash(rids)  # what the service computes from the ids it keeps
        async with smp_server(store, max_version=V19) as srv:
            async with sc.connect(srv.address, service=creds(chain)) as relay:
                assert relay.service.service_id == service_id
                t0 = time.perf_counter()
                assert await relay.service_subscribe_all(N_LARGE, digest) == (N_LARGE, digest)
                events = await until_alls(relay, timeout=120)
                took = time.perf_counter() - t0
                assert len(events) == WITH_MESSAGES
                assert all(isinstance(ev.message, C.Msg) for ev in events)
                assert len({ev.entity_id for ev in events}) == WITH_MESSAGES
                assert set(ev.entity_id for ev in events) <= set(rids)
                print(f"\n100k queues: SOKS + {WITH_MESSAGES} MSG + ALLS in {took:.2f} s, "
                      f"{relay.blocks_received} blocks received")

    try:
        trio_run(main)
    finally:
        store.close()
