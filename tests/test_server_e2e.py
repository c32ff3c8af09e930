"""End-to-end behaviour of the server over real TLS on 127.0.0.1 (in-process servers from
conftest's ``smp_server``), with the project's own client."""

from __future__ import annotations

import pytest
import trio

import smpfast.client as sc
from smpfast import _core as core
from smpfast.crypto.keys import Alg, generate_private_key
from smpfast.protocol import commands as C
from smpfast.protocol import errors as E
from smpfast.server.broker import BrokerConfig


async def _event(client, timeout: float = 5.0):
    with trio.fail_after(timeout):
        return await client.next_event()


async def _no_event(client, wait: float = 0.3) -> None:
    with trio.move_on_after(wait):
        event = await client.next_event()
        raise AssertionError(f"unexpected event {event}")


async def _secured_queue(rcv, alg: str = "ed25519"):
    q = await rcv.create_queue(alg)
    sender_key = generate_private_key(Alg.ED25519)
    await rcv.secure(q, sender_key.public.der)
    return q, sender_key


def test_second_subscriber_takes_over_and_first_gets_end(smp_server, trio_run):
    async def main():
        async with smp_server() as srv:
            async with sc.connect(srv.address) as first, sc.connect(srv.address) as second, \
                    sc.connect(srv.address) as snd:
                q, key = await _secured_queue(first)
                await snd.send(q.snd_id, b"pending", key)
                msg = await _event(first)
                assert msg.entity_id == q.rcv_id and isinstance(msg.message, C.Msg)

                await second.subscribe(q)  # the unacknowledged message is delivered again
                again = await _event(second)
                assert isinstance(again.message, C.Msg) and again.message.msg_id == msg.message.msg_id
                end = await _event(first)
                assert end == (q.rcv_id, C.END)

                # the old subscriber no longer receives or acknowledges
                with pytest.raises(sc.SMPError) as e:
                    await first.ack(q, msg.message.msg_id)
                assert e.value.error == E.NO_MSG
                assert await second.ack(q, again.message.msg_id) is None
                await snd.send(q.snd_id, b"next", key)
                nxt = await _event(second)
                assert sc.decrypt_msg(q, nxt.message).body == b"next"
                await _no_event(first)

    trio_run(main)


def test_delete_tells_the_other_subscriber(smp_server, trio_run):
    async def main():
        async with smp_server() as srv:
            async with sc.connect(srv.address) as owner, sc.connect(srv.address) as other:
                q, _ = await _secured_queue(owner)
                await other.subscribe(q)
                assert await _event(owner) == (q.rcv_id, C.END)
                await owner.delete(q)
                # DELD is sent as END below v10
                assert await _event(other) == (q.rcv_id, C.END)

    trio_run(main)


@pytest.mark.parametrize("store", ["memory", "lmdb"])
def test_quota_marker_and_recovery(smp_server, trio_run, store):
    async def main():
        async with smp_server(store) as srv:
            async with sc.connect(srv.address) as rcv, sc.connect(srv.address) as snd:
                q = await rcv.create_queue(subscribe=False)  # GET mode: nothing is pushed
                key = generate_private_key(Alg.ED25519)
                await rcv.secure(q, key.public.der)
                replies = await snd.batch([(q.snd_id, C.Send(C.MsgFlags(False, b""), b"%d" % i), key)
                                           for i in range(128)])
                assert replies == [C.OK] * 128
                with pytest.raises(sc.SMPError) as e:
                    await snd.send(q.snd_id, b"129", key)
                assert e.value.error == E.QUOTA
                with pytest.raises(sc.SMPError) as e:  # full: nothing more until empty
                    await snd.send(q.snd_id, b"130", key)
                assert e.value.error == E.QUOTA

                bodies = []
                for _ in range(128):
                    msg = await rcv.get(q)
                    bodies.append(sc.decrypt_msg(q, msg).body)
                    assert await rcv.ack(q, msg.msg_id) is None
                    if len(bodies) == 64:  # still refused while anything is queued
                        with pytest.raises(sc.SMPError) as e:
                            await snd.send(q.snd_id, b"too early", key)
                        assert e.value.error == E.QUOTA
                # One block's SENDs run last to first, as the reference runs them, so
                # only the set of stored messages is the batch's.
                assert sorted(bodies, key=int) == [b"%d" % i for i in range(128)]
                marker = await rcv.get(q)
                assert sc.decrypt_msg(q, marker).quota
                with pytest.raises(sc.SMPError) as e:  # the marker is still queued
                    await snd.send(q.snd_id, b"after marker", key)
                assert e.value.error == E.QUOTA
                assert await rcv.ack(q, marker.msg_id) is None
                await snd.send(q.snd_id, b"accepted again", key)
                msg = await rcv.get(q)
                assert sc.decrypt_msg(q, msg).body == b"accepted again"

    trio_run(main)


def test_malformed_block_gets_err_block_and_the_connection_keeps_working(smp_server, trio_run):
    async def main():
        async with smp_server() as srv:
            async with sc.connect(srv.address) as c:
                bad_blocks = [
                    b"\x00\x00" + b"#" * 16382,  # empty batch
                    core.pad(b"\x00", 16384),  # count byte 0
                    core.pad(b"\x02\x00\x01\x00", 16384),  # count too large for the content
                    b"\xff\xff" + b"#" * 16382,  # pad length beyond the block
                    core.pad(b"\x01\x00\x01\x00" + b"trailing", 16384),
                ]
                for block in bad_blocks:
                    await c.connection.send(block)
                    event = await _event(c)
                    assert event == (b"", C.Err(E.BLOCK))
                await c.ping()
                # one bad transmission among good ones: only it gets ERR BLOCK
                good = core.encode_transmission(b"", b"c1", b"", b"PING", c.session_id, True, False)
                block = core.encode_batch([good, b"\x05garbage", good], 16384)
                await c.connection.send(block)
                got = [await _event(c) for _ in range(3)]
                assert sorted(repr(tuple(e)) for e in got) == sorted(map(repr, [
                    (b"", C.Err(E.BLOCK)), (b"", C.PONG), (b"", C.PONG)]))
                await c.ping()

    trio_run(main)


def test_wrong_and_missing_keys(smp_server, trio_run):
    async def main():
        async with smp_server() as srv:
            async with sc.connect(srv.address) as c:
                q, key = await _secured_queue(c)
                stranger = generate_private_key(Alg.ED25519)
                replies = await c.batch([
                    (q.rcv_id, C.SUB, None),  # no authorization
                    (q.rcv_id, C.SUB, stranger),  # wrong key
                    (b"", C.SUB, q.rcv_auth_key),  # no entity
                    (q.snd_id, C.SUB, q.rcv_auth_key),  # sender id for a recipient command
                    (q.snd_id, C.Send(C.MsgFlags(False, b""), b"x"), None),  # secured: unsigned
                    (q.snd_id, C.Send(C.MsgFlags(False, b""), b"x"), stranger),
                    (b"", C.New(key.public.der, generate_private_key(Alg.X25519).public.der), None),
                    (b"\x01" * 24, C.Ack(b""), stranger),  # unknown queue
                ])
                assert replies == [
                    C.Err(E.CMD_NO_AUTH), C.Err(E.AUTH), C.Err(E.CMD_NO_AUTH), C.Err(E.AUTH),
                    C.Err(E.AUTH), C.Err(E.AUTH), C.Err(E.CMD_NO_AUTH), C.Err(E.AUTH),
                ]
                await c.subscribe(q)  # the right key still works

    trio_run(main)


def test_garbage_connection_does_not_disturb_others(smp_server, trio_run):
    async def main():
        async with smp_server() as srv:
            async with sc.connect(srv.address) as rcv, sc.connect(srv.address) as snd, \
                    sc.connect(srv.address) as noisy:
                q, key = await _secured_queue(rcv)

                async def spam():
                    for i in range(200):
                        await noisy.connection.send(bytes([i % 256]) * 16384)

                async with trio.open_nursery() as nursery:
                    nursery.start_soon(spam)
                    for i in range(20):
                        await snd.send(q.snd_id, b"m%d" % i, key)
                        msg = await _event(rcv)
                        assert sc.decrypt_msg(q, msg.message).body == b"m%d" % i
                        assert await rcv.ack(q, msg.message.msg_id) is None
                # a raw TCP client that speaks no TLS at all is dropped without effect
                stream = await trio.open_tcp_stream("127.0.0.1", srv.port)
                await stream.send_all(b"GET / HTTP/1.1\r\n\r\n" * 100)
                await stream.aclose()
                await snd.ping()

    trio_run(main, timeout=60)


def test_new_queue_policy(smp_server, trio_run):
    async def main():
        async with smp_server(broker_config=BrokerConfig(create_password=b"secret")) as srv:
            async with sc.connect(srv.address) as c:
                with pytest.raises(sc.SMPError) as e:
                    await c.create_queue()
                assert e.value.error == E.AUTH
                with pytest.raises(sc.SMPError) as e:
                    await c.create_queue(basic_auth=b"wrong")
                assert e.value.error == E.AUTH
                await c.create_queue(basic_auth=b"secret")
        async with smp_server(broker_config=BrokerConfig(allow_new_queues=False)) as srv:
            async with sc.connect(srv.address) as c:
                with pytest.raises(sc.SMPError) as e:
                    await c.create_queue()
                assert e.value.error == E.AUTH

    trio_run(main)


def test_inactive_clients_without_subscriptions_are_disconnected(smp_server, trio_run):
    async def main():
        async with smp_server(inactive_ttl=0.5, inactive_check_interval=0.2) as srv:
            async with sc.connect(srv.address) as idle, sc.connect(srv.address) as subscribed:
                await subscribed.create_queue()  # NEW subscribes: this one is never expired
                await idle.ping()
                with trio.fail_after(10):
                    while not idle.closed:
                        await trio.sleep(0.1)
                await trio.sleep(1.0)
                assert not subscribed.closed
                await subscribed.ping()

    trio_run(main)


def test_messages_expire_in_the_background(smp_server, trio_run):
    async def main():
        config = BrokerConfig(message_ttl=1)
        async with smp_server(broker_config=config, expire_check_interval=0.2) as srv:
            async with sc.connect(srv.address) as rcv, sc.connect(srv.address) as snd:
                old = await rcv.create_queue(subscribe=False)
                await snd.send(old.snd_id, b"will expire")
                await trio.sleep(2.5)
                await snd.send(old.snd_id, b"fresh")
                msg = await rcv.get(old)
                assert sc.decrypt_msg(old, msg).body == b"fresh"

    trio_run(main)


@pytest.mark.parametrize("problem", ["key_hash", "version", "garbage"])
def test_bad_client_hello_closes_without_an_answer(smp_server, trio_run, problem):
    from smpfast.protocol.handshake import ClientHandshake, ServerHandshake
    from smpfast.transport import open_block_connection

    async def main():
        async with smp_server() as srv:
            conn = await open_block_connection("127.0.0.1", srv.port, srv.key_hash)
            [hello] = await conn.receive_blocks()
            assert ServerHandshake.parse(hello).vrange.max == 7
            if problem == "key_hash":
                block = ClientHandshake(7, b"\x00" * 32).encode()
            elif problem == "version":
                block = ClientHandshake(8, srv.key_hash).encode()
            else:
                block = b"\xff" * 16384
            await conn.send(block)
            with trio.fail_after(5):
                assert await conn.receive_blocks() == []  # closed, nothing sent
            await conn.aclose()
            async with sc.connect(srv.address) as c:  # the server is fine
                await c.ping()

    trio_run(main)


def test_a_client_that_does_not_read_is_not_read_either(smp_server, trio_run):
    """Backpressure: answers to a client that sends without reading do not pile up without
    bound in the server; the server stops reading it, and serves everyone else."""
    from smpfast.protocol.handshake import ClientHandshake
    from smpfast.server.connection import OUTBOX_LIMIT
    from smpfast.transport import open_block_connection

    async def main():
        async with smp_server() as srv:
            conn = await open_block_connection("127.0.0.1", srv.port, srv.key_hash)
            [hello] = await conn.receive_blocks()
            await conn.send(ClientHandshake(7, srv.key_hash).encode())
            ping = core.encode_transmission(b"", b"p", b"", b"PING", b"", True, False)
            block = core.encode_batch([ping] * 255, 16384)
            peak = 0
            with trio.move_on_after(3):
                for _ in range(2000):  # ~33 MB of requests, never reading an answer
                    await conn.send(block)
                    for c in (c for w in srv.workers for c in w.connections):
                        if c.peer is not None:
                            peak = max(peak, len(c.outbox))
            assert 0 < peak <= OUTBOX_LIMIT
            async with sc.connect(srv.address) as other:
                await other.ping()
            await conn.aclose()

    trio_run(main)
