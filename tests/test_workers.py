"""Two workers (``smp_server(workers=2)``: two brokers in this process on one store, joined by
the in-memory hub of smpfast.server.cluster): a subscriber on one worker, its sender (or the
next subscriber) on the other, reached through each worker's own port. Each case behaves as
with one process: MSG, END on takeover, DELD, NMSG, quota, blocking."""

from __future__ import annotations

import base64

import pytest
import trio

import smpfast.client as sc
from smpfast.crypto.keys import Alg, generate_private_key
from smpfast.protocol import commands as C
from smpfast.protocol import errors as E
from smpfast.protocol.commands import ServiceRole
from smpfast.protocol.ids_hash import ids_hash
from smpfast.server.cluster import (ACTIVE, ANSWER, ASK, ASSOCIATED, RETIRED, KICK, LOST, NOTIFICATIONS, NTF_SUBSCRIBED, SUBSCRIBED, FrameReader,
                                    Hub, encode_frame)
from smpfast.server.stats import ActiveQueues, ForwardedActiveQueues, queue_hash
from smpfast.testing.throwaway_certs import make_service_chain

STORES = ["memory", "lmdb"]


async def _event(client, timeout: float = 5.0):
    with trio.fail_after(timeout):
        return await client.next_event()


async def _no_event(client, wait: float = 0.3) -> None:
    with trio.move_on_after(wait):
        event = await client.next_event()
        raise AssertionError(f"unexpected event {event}")


async def _secured_queue(rcv):
    q = await rcv.create_queue("ed25519")
    key = generate_private_key(Alg.ED25519)
    await rcv.secure(q, key.public.der)
    return q, key


def _connections(server) -> int:
    return sum(1 for c in server.connections if c.peer is not None)


@pytest.mark.parametrize("store", STORES)
def test_message_from_the_other_worker(smp_server, trio_run, store):
    async def main():
        async with smp_server(store, workers=2) as srv:
            async with sc.connect(srv.worker_address(0)) as rcv, sc.connect(srv.worker_address(1)) as snd:
                assert _connections(srv.servers[0]) == 1 and _connections(srv.servers[1]) == 1
                q, key = await _secured_queue(rcv)
                for i in range(5):  # each after the previous one's ACK: every one crosses
                    await snd.send(q.snd_id, b"hello %d" % i, key)
                    msg = await _event(rcv)
                    assert msg.entity_id == q.rcv_id
                    assert sc.decrypt_msg(q, msg.message).body == b"hello %d" % i
                    assert await rcv.ack(q, msg.message.msg_id) is None
                await _no_event(rcv)
                # Several messages at once: the first is pushed, the rest follow ACK by ACK.
                for i in range(3):
                    await snd.send(q.snd_id, b"burst %d" % i, key)
                msg = await _event(rcv)
                bodies = [sc.decrypt_msg(q, msg.message).body]
                nxt = await rcv.ack(q, msg.message.msg_id)
                while nxt is not None:
                    bodies.append(sc.decrypt_msg(q, nxt).body)
                    nxt = await rcv.ack(q, nxt.msg_id)
                assert bodies == [b"burst 0", b"burst 1", b"burst 2"]
                await _no_event(rcv)

    trio_run(main)


@pytest.mark.parametrize("store", STORES)
def test_takeover_from_the_other_worker_ends_the_first(smp_server, trio_run, store):
    async def main():
        async with smp_server(store, workers=2) as srv:
            async with sc.connect(srv.worker_address(0)) as first, sc.connect(srv.worker_address(1)) as second, \
                    sc.connect(srv.worker_address(1)) as snd:
                q, key = await _secured_queue(first)
                await snd.send(q.snd_id, b"pending", key)
                msg = await _event(first)
                await second.subscribe(q)  # the unacknowledged message is delivered again
                again = await _event(second)
                assert isinstance(again.message, C.Msg) and again.message.msg_id == msg.message.msg_id
                assert await _event(first) == (q.rcv_id, C.END)
                with pytest.raises(sc.SMPError) as e:
                    await first.ack(q, msg.message.msg_id)
                assert e.value.error == E.NO_MSG
                assert await second.ack(q, again.message.msg_id) is None
                await snd.send(q.snd_id, b"next", key)
                nxt = await _event(second)
                assert sc.decrypt_msg(q, nxt.message).body == b"next"
                await _no_event(first)
                # and back: the first worker's new subscription ends the second's
                await first.subscribe(q)
                assert await _event(second) == (q.rcv_id, C.END)
                back = await _event(first)  # "next" was not acknowledged: delivered again
                assert back.message.msg_id == nxt.message.msg_id
                with pytest.raises(sc.SMPError) as e:
                    await second.ack(q, nxt.message.msg_id)
                assert e.value.error == E.NO_MSG
                assert await first.ack(q, back.message.msg_id) is None

    trio_run(main)


@pytest.mark.parametrize("store", STORES)
def test_delete_on_one_worker_tells_the_subscriber_on_the_other(smp_server, trio_run, store):
    async def main():
        async with smp_server(store, workers=2, max_version=11) as srv:
            async with sc.connect(srv.worker_address(0)) as owner, sc.connect(srv.worker_address(1)) as other:
                q, _ = await _secured_queue(owner)
                await other.subscribe(q)
                assert await _event(owner) == (q.rcv_id, C.END)
                await owner.delete(q)
                assert await _event(other) == (q.rcv_id, C.DELD)

    trio_run(main)


@pytest.mark.parametrize("store", STORES)
def test_notifications_to_a_notifier_on_the_other_worker(smp_server, trio_run, store):
    async def main():
        async with smp_server(store, workers=2, ntf_delivery_interval=0.1) as srv:
            async with sc.connect(srv.worker_address(0)) as rcv, sc.connect(srv.worker_address(1)) as snd, \
                    sc.connect(srv.worker_address(1)) as ntf, sc.connect(srv.worker_address(0)) as ntf2:
                q = await rcv.create_queue(ntf=True)
                creds = q.notifier
                # sent before anyone subscribed the notifier: the hub keeps it
                await snd.send(q.snd_id, b"early", notification=True)
                first = await _event(rcv)
                assert await rcv.ack(q, first.message.msg_id) is None
                await ntf.notifications_subscribe(creds)
                entity_id, nmsg = await _event(ntf)
                assert entity_id == creds.notifier_id
                assert sc.decrypt_nmsg(creds, nmsg).msg_id == first.message.msg_id
                # from the recipient's worker, to the notifier subscriber on the other
                await rcv.send(q.snd_id, b"again", notification=True)
                second = await _event(rcv)
                entity_id, nmsg = await _event(ntf)
                assert sc.decrypt_nmsg(creds, nmsg).msg_id == second.message.msg_id
                # a notifier subscription moving between workers ends the old one
                await ntf2.notifications_subscribe(creds)
                assert await _event(ntf) == (creds.notifier_id, C.END)
                assert await rcv.ack(q, second.message.msg_id) is None
                await snd.send(q.snd_id, b"third", notification=True)
                third = await _event(rcv)
                entity_id, nmsg = await _event(ntf2)
                assert sc.decrypt_nmsg(creds, nmsg).msg_id == third.message.msg_id
                await _no_event(ntf)

    trio_run(main)


def test_quota_is_shared_by_the_workers(smp_server, trio_run):
    async def main():
        async with smp_server("lmdb", workers=2) as srv:
            async with sc.connect(srv.worker_address(0)) as rcv, sc.connect(srv.worker_address(1)) as snd0, \
                    sc.connect(srv.worker_address(0)) as snd1:
                q = await rcv.create_queue(subscribe=False)
                key = generate_private_key(Alg.ED25519)
                await rcv.secure(q, key.public.der)
                for i in range(128):  # alternately from both workers
                    await (snd0 if i % 2 else snd1).send(q.snd_id, b"%d" % i, key)
                for snd in (snd0, snd1):
                    with pytest.raises(sc.SMPError) as e:
                        await snd.send(q.snd_id, b"over", key)
                    assert e.value.error == E.QUOTA
                bodies = []
                for _ in range(128):
                    msg = await rcv.get(q)
                    bodies.append(sc.decrypt_msg(q, msg).body)
                    assert await rcv.ack(q, msg.msg_id) is None
                assert bodies == [b"%d" % i for i in range(128)]
                marker = await rcv.get(q)
                assert sc.decrypt_msg(q, marker).quota

    trio_run(main)


def test_concurrent_subscriptions_one_winner(smp_server, trio_run):
    """Both workers' clients subscribe the same queues at once: afterwards each queue has
    exactly one subscriber (the other got END), and a message reaches only that one."""

    async def main():
        async with smp_server("lmdb", workers=2) as srv:
            async with sc.connect(srv.worker_address(0)) as a, sc.connect(srv.worker_address(1)) as b, \
                    sc.connect(srv.worker_address(1)) as snd:
                queues = []
                for _ in range(20):
                    queues.append(await _secured_queue(a))
                async with trio.open_nursery() as n:
                    n.start_soon(a.subscribe_many, [q for q, _ in queues])
                    n.start_soon(b.subscribe_many, [q for q, _ in queues])
                await trio.sleep(0.3)
                ended = {"a": set(), "b": set()}
                for name, client in (("a", a), ("b", b)):
                    with trio.move_on_after(0.3):
                        while True:
                            entity_id, msg = await client.next_event()
                            assert msg == C.END
                            ended[name].add(entity_id)
                for q, _ in queues:
                    # a's own creation subscription ended by b, maybe b's by a's SUB after
                    assert (q.rcv_id in ended["a"]) or (q.rcv_id in ended["b"])
                for q, key in queues:
                    await snd.send(q.snd_id, b"x", key)
                got = {"a": set(), "b": set()}
                for name, client in (("a", a), ("b", b)):
                    with trio.move_on_after(0.5):
                        while True:
                            entity_id, msg = await client.next_event()
                            assert isinstance(msg, C.Msg)
                            got[name].add(entity_id)
                assert got["a"].isdisjoint(got["b"])
                assert got["a"] | got["b"] == {q.rcv_id for q, _ in queues}
                for q, _ in queues:  # the one that got the message is the one not ended last
                    holder = "a" if q.rcv_id in got["a"] else "b"
                    assert q.rcv_id not in ended[holder] or q.rcv_id in ended["a"] & ended["b"]

    trio_run(main)


@pytest.mark.parametrize("store", STORES)
def test_a_service_session_on_the_other_worker_takes_the_queue(smp_server, trio_run, store):
    """A messaging service's SUB (v19) in one worker associates a queue whose direct
    subscriber is in the other: that subscriber gets END, the service the messages; a
    plain SUB back in the first worker ends the association (the service gets END)."""
    chain = make_service_chain(1, name="directory")
    service = sc.ServiceCredentials(ServiceRole.MESSAGING, chain.chain, chain.leaf_key)

    async def main():
        async with smp_server(store, workers=2, max_version=19) as srv:
            async with sc.connect(srv.worker_address(0)) as owner, \
                    sc.connect(srv.worker_address(1), service=service) as svc, \
                    sc.connect(srv.worker_address(0)) as snd:
                q, key = await _secured_queue(owner)
                service_id = svc.service.service_id
                assert await svc.subscribe(q) == service_id
                assert await _event(owner) == (q.rcv_id, C.END)
                await snd.send(q.snd_id, b"to the service", key)
                msg = await _event(svc)
                assert msg.entity_id == q.rcv_id and sc.decrypt_msg(q, msg.message).body == b"to the service"
                assert await svc.ack(q, msg.message.msg_id) is None
                await _no_event(owner)
                assert await owner.subscribe(q) is None
                assert await _event(svc) == (q.rcv_id, C.END)
                assert srv.servers[0].store.service_queue_subs(service_id, "R") == (0, ids_hash([]))
                await snd.send(q.snd_id, b"to the owner", key)
                back = await _event(owner)
                assert sc.decrypt_msg(q, back.message).body == b"to the owner"
                await _no_event(svc)

    trio_run(main)


def test_active_queues_of_every_worker_are_counted_once(smp_server, trio_run):
    """The day/week/month sets of worker 0 (which answers for all) hold the queues active
    in either worker, each once."""

    async def main():
        async with smp_server("lmdb", workers=2) as srv:
            async with sc.connect(srv.worker_address(0)) as rcv, sc.connect(srv.worker_address(1)) as snd1, \
                    sc.connect(srv.worker_address(0)) as snd0:
                queues = [await _secured_queue(rcv) for _ in range(3)]
                # queue 0 from both workers (twice from worker 1), queue 1 from worker 1, queue 2 from worker 0
                for (q, key), senders in zip(queues, ((snd1, snd0, snd1), (snd1,), (snd0,))):
                    for snd in senders:
                        await snd.send(q.snd_id, b"m", key)
                        msg = await _event(rcv)
                        assert await rcv.ack(q, msg.message.msg_id) is None
                with trio.fail_after(5):
                    while srv.servers[0].active_queues.gauges()["dayMsgQueues"] < 3:
                        await trio.sleep(0.02)
                await trio.sleep(0.1)
                gauges = srv.servers[0].active_queues.gauges()
                assert (gauges["dayMsgQueues"], gauges["weekMsgQueues"], gauges["monthMsgQueues"]) == (3, 3, 3)
                assert srv.servers[0].active_queues.all.day == {queue_hash(q.rcv_id) for q, _ in queues}

    trio_run(main)


def test_the_control_port_shows_every_workers_clients(smp_server, trio_run):
    """Worker 0's control port lists the clients, sockets, tasks and subscribers of both
    workers, each client under a number of its own."""
    from control_support import ADMIN, control, settings

    async def main():
        async with smp_server("memory", workers=2, **settings()) as srv:
            async with sc.connect(srv.worker_address(0)) as a, sc.connect(srv.worker_address(1)) as b:
                qa = await a.create_queue()
                qb = await b.create_queue()
                admin = await control(srv, ADMIN)
                rows = [r.split(",") for r in (await admin.cmd("clients"))[1:]]
                assert sorted(r[7] for r in rows) == ["1", "1"] and len({r[0] for r in rows}) == 2
                sessions = {r[1] for r in rows}
                assert sessions == {base64.b64encode(c.session_id).decode() for c in (a, b)}
                sockets = await admin.cmd("sockets")
                own = [srv.servers[i].own_ports[0] for i in (0, 1)]
                for port in own:  # one connection on each worker's own port
                    at = sockets.index(f"Sockets for port {port}:")
                    assert sockets[at + 1:at + 4] == ["accepted: 1", "closed: 0", "active: 1"]
                threads = await admin.cmd("threads")
                ids = [int(line.split(" ", 1)[0]) for line in threads[1:]]
                assert len(ids) == len(set(ids)) == int(threads[0].removeprefix("Threads: "))
                socket_threads = await admin.cmd("socket-threads")
                assert sorted(int(line.split(",")[0]) for line in socket_threads) == sorted(own)
                info = await admin.cmd("server-info")
                assert "Clients: 2" in info and "SMP subscriptions: 2" in info and "SMP subscribed clients: 2" in info
                assert {qa.rcv_id, qb.rcv_id} == set(srv.server.control.target.subscribers()[0])

    trio_run(main)


def test_a_forwarding_worker_sends_each_active_queue_once_a_day():
    now = [86400.0 * 20000 + 10]
    sent = []
    active = ForwardedActiveQueues(lambda hashes, ntf: sent.append((hashes, ntf)), clock=lambda: now[0])
    a, b = b"a" * 24, b"b" * 24
    active.record(a)
    active.record(a)
    active.record(b, notification=True)
    active.record(a, notification=True)  # newly with notifications
    active.record(b, notification=True)
    ha, hb = queue_hash(a), queue_hash(b)
    assert sent == [([ha], []), ([hb], [hb]), ([ha], [ha])]
    now[0] += 86400  # the next UTC day: the other worker's day set started again
    active.record(a)
    assert sent[-1] == ([ha], [])
    # the receiving side: the sets of every period, notification flag kept
    total = ActiveQueues()
    for hashes, ntf in sent:
        total.merge(hashes, ntf)
    assert total.gauges() == {"dayMsgQueues": 2, "weekMsgQueues": 2, "monthMsgQueues": 2,
                              "dayCountNtf": 2, "weekCountNtf": 2, "monthCountNtf": 2}


# --- the hub, sans-IO


def test_hub_association_ends_the_direct_subscription_wherever_it_is():
    hub = Hub()
    rid = b"r" * 24
    hub.receive(0, [(SUBSCRIBED, rid)])
    # worker 1's service session took it: worker 0's subscriber loses it, the hub forgets it
    assert hub.receive(1, [(ASSOCIATED, rid)]) == {0: [(LOST, rid)]}
    assert hub.receive(1, [(KICK, rid, b"m")]) == {}
    # the subscriber was in the service's own worker: nothing to tell anyone
    hub.receive(1, [(SUBSCRIBED, rid)])
    assert hub.receive(1, [(ASSOCIATED, rid)]) == {}
    assert hub.receive(0, [(KICK, rid, b"m")]) == {}


def test_hub_gathers_answers_from_every_other_worker():
    hub = Hub()
    hub.workers.update({0, 1, 2})
    assert hub.receive(0, [(ASK, "stats", 7)]) == {1: [(ASK, "stats", 7, 0)], 2: [(ASK, "stats", 7, 0)]}
    one = ({"msgSent": 1}, 0)
    assert hub.receive(1, [(ANSWER, 7, 0, one)]) == {}
    assert hub.receive(1, [(ANSWER, 7, 0, ({"msgSent": 9}, 0))]) == {}  # answered already: ignored
    # worker 2 stops before answering: its final counters are in the answer instead
    assert hub.receive(2, [(RETIRED, {"msgSent": 3})]) == {0: [(ANSWER, 7, {1: one}, {"msgSent": 3})]}
    # a worker that dies answers no more (its last counters stay); nobody left: answered at once
    hub.receive(0, [(ASK, "control", 8)])
    assert hub.worker_gone(1) == {0: [(ANSWER, 8, {}, {"msgSent": 4})]}
    assert hub.receive(0, [(ASK, "control", 9)]) == {0: [(ANSWER, 9, {}, {"msgSent": 4})]}


def test_hub_keeps_a_dead_workers_last_counters():
    hub = Hub()
    hub.workers.update({0, 1, 2})
    hub.receive(0, [(ASK, "stats", 1)])
    hub.receive(1, [(ANSWER, 1, 0, ({"msgSent": 5}, 2))])
    hub.receive(2, [(ANSWER, 1, 0, ({"msgSent": 1}, 0))])
    # worker 1 dies while a second question waits for it: its last answer is kept once
    hub.receive(0, [(ASK, "stats", 2)])
    hub.receive(1, [(ANSWER, 2, 0, ({"msgSent": 6}, 2))])
    assert hub.worker_gone(1) == {}
    assert hub.retired == {"msgSent": 6}
    out = hub.receive(2, [(ANSWER, 2, 0, ({"msgSent": 1}, 0))])
    assert out == {0: [(ANSWER, 2, {2: ({"msgSent": 1}, 0)}, {"msgSent": 6})]}
    # a stopping worker's final counts replace its last answer
    hub.receive(2, [(RETIRED, {"msgSent": 4})])
    assert hub.retired == {"msgSent": 10}


def test_hub_sends_active_queues_to_worker_0():
    hub = Hub()
    event = (ACTIVE, [5], [])
    assert hub.receive(1, [event]) == {0: [event]}
    assert hub.receive(0, [event]) == {}


def test_hub_orders_takeovers_and_routes_by_owner():
    hub = Hub()
    rid = b"r" * 24
    assert hub.receive(0, [(SUBSCRIBED, rid)]) == {0: [(SUBSCRIBED, rid)]}
    # worker 1 takes it: its echo, and LOST for worker 0
    assert hub.receive(1, [(SUBSCRIBED, rid)]) == {1: [(SUBSCRIBED, rid)], 0: [(LOST, rid)]}
    assert hub.receive(0, [(KICK, rid, b"m")]) == {1: [(KICK, rid, b"m")]}
    hub.worker_gone(1)
    assert hub.receive(0, [(KICK, rid, b"m")]) == {}


def test_hub_holds_notifications_until_a_subscriber():
    hub = Hub()
    nid = b"n" * 24
    items = [(b"m" * 24, 100, b"nonce", b"meta")]
    assert hub.receive(0, [(NOTIFICATIONS, nid, None, items)]) == {}
    out = hub.receive(1, [(NTF_SUBSCRIBED, nid)])
    assert out == {1: [(NTF_SUBSCRIBED, nid), (NOTIFICATIONS, nid, None, items)]}
    assert hub.receive(0, [(NOTIFICATIONS, nid, None, items)]) == {1: [(NOTIFICATIONS, nid, None, items)]}
    hub.receive(0, [(NOTIFICATIONS, b"o" * 24, None, [(b"m", 5, b"", b"")])])
    assert hub.expire_held(50) == 1 and not hub.held


def test_frames_split_anywhere():
    events = [(SUBSCRIBED, bytes([i]) * 24) for i in range(50)]
    data = encode_frame(events) + encode_frame(events[:3])
    reader = FrameReader()
    frames = []
    for i in range(0, len(data), 7):
        frames.extend(reader.feed(data[i : i + 7]))
    assert frames == [events, events[:3]]
