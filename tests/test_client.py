"""smpfast.client end to end over real TLS on 127.0.0.1 against the in-process server
(which announces 6..7 unless a test raises its max version).

Every test runs under trio_run's fail_after; servers stop when their block exits.
"""

from __future__ import annotations

import os

import pytest
import trio

import smpfast.client as sc
from smpfast.crypto.keys import Alg, generate_private_key
from smpfast.protocol import commands as C
from smpfast.protocol.address import format_server, parse_server_address
from smpfast.protocol.errors import AUTH, CMD_PROHIBITED, LARGE_MSG, ErrorType
from smpfast.protocol.versions import VersionRange


def _address_with_fingerprint(address: str, key_hash: bytes) -> str:
    srv, _ = parse_server_address(address)
    return format_server(type(srv)(srv.hosts, srv.port, key_hash))


async def _no_event(c: sc.SMPClient, wait: float = 0.1) -> None:
    """Assert that no event arrives within ``wait`` seconds."""
    with trio.move_on_after(wait):
        ev = await c.events.receive()
        raise AssertionError(f"unexpected event {ev}")


async def _msg_event(c: sc.SMPClient, q: sc.RecipientQueue, timeout: float = 5.0) -> C.Msg:
    entity_id, msg = await c.next_event(timeout)
    assert entity_id == q.rcv_id
    assert isinstance(msg, C.Msg), msg
    return msg


# ------------------------------------------------------------------ connecting


def test_connect_alpn_v7_and_without_alpn_v6(smp_server, trio_run):
    async def main():
        async with smp_server() as srv:
            async with sc.connect(srv.address) as c:
                assert c.version == 7
                assert c.server_vrange == VersionRange(6, 7)
                assert c.connection.alpn == "smp/1"
                assert c.session_id == c.connection.tls_unique and len(c.session_id) == 32
                assert c.server_session_key is not None and len(c.server_session_key) == 32
                assert not c.block_encryption
                assert c.blocks_in == 1 and c.blocks_out == 1  # the hello blocks
                await c.ping()
                assert (c.blocks_sent, c.blocks_received) == (1, 1)
                assert (c.transmissions_sent, c.transmissions_received) == (1, 1)
                assert c.blocks_out == 2 and c.tls_bytes_out > 2 * 16384
            async with sc.connect(srv.address, alpn=None) as c:
                assert c.version == 6
                assert c.server_vrange == VersionRange(6, 6)
                assert c.connection.alpn is None
                await c.ping()
            async with sc.connect(srv.address, max_version=6) as c:
                assert c.version == 6 and c.server_vrange == VersionRange(6, 7)
                await c.ping()

    trio_run(main)


def test_connect_failures(smp_server, trio_run):
    async def main():
        async with smp_server() as srv:
            with pytest.raises(sc.HandshakeError) as e:
                await sc.SMPClient.connect(srv.address, alpn=None, min_version=7)
            assert e.value.code == "VERSION"
            with pytest.raises(sc.HandshakeError) as e:
                await sc.SMPClient.connect(srv.address, min_version=8)
            assert e.value.code == "VERSION"
            wrong = _address_with_fingerprint(srv.address, bytes(32))
            with pytest.raises(sc.ConnectError):
                await sc.SMPClient.connect(wrong)
            with pytest.raises(ValueError):
                await sc.SMPClient.connect("smp://not-an-address")
            # the server still serves after refused clients
            async with sc.connect(srv.address) as c:
                await c.ping()

    trio_run(main)


def test_ping_pong(smp_server, trio_run):
    async def main():
        async with smp_server() as srv:
            async with sc.connect(srv.address) as c:
                await c.ping()
                assert await c.request(b"", C.PING) == C.PONG
                replies = await c.batch([(b"", C.PING, None)] * 3)
                assert replies == [C.PONG] * 3

    trio_run(main)


def test_requests_need_the_reader_and_fail_after_close(smp_server, trio_run):
    async def main():
        async with smp_server() as srv:
            c = await sc.SMPClient.connect(srv.address)
            with pytest.raises(sc.ClientError):
                await c.ping()  # reader not running
            async with trio.open_nursery() as nursery:
                await nursery.start(c.run)
                await c.ping()
                await c.aclose()
            assert c.closed and "client" in c.close_reason
            with pytest.raises(sc.ClientClosed):
                await c.ping()

    trio_run(main)


def test_server_stop_closes_the_client(smp_server, trio_run):
    async def main():
        async with smp_server() as srv:
            async with sc.connect(srv.address) as c:
                await c.ping()
                srv.server.stop()
                await c.wait_closed()
                assert "server" in c.close_reason or "lost" in c.close_reason
                with pytest.raises(sc.ClientClosed):
                    await c.next_event(1)
                with pytest.raises(sc.ClientClosed):
                    await c.ping()

    trio_run(main)


# ------------------------------------------------------------------ queue lifecycle


LIFECYCLE = [(6, "ed25519"), (7, "ed25519"), (7, "x25519"), (7, "ed448")]


@pytest.mark.parametrize("version, alg", LIFECYCLE, ids=[f"v{v}-{a}" for v, a in LIFECYCLE])
def test_queue_lifecycle(smp_server, trio_run, version, alg):
    async def main():
        async with smp_server() as srv:
            async with sc.connect(srv.address, max_version=version) as rcv, \
                    sc.connect(srv.address, max_version=version) as snd:
                assert rcv.version == snd.version == version
                q = await rcv.create_queue(alg)
                assert q.rcv_auth_key.alg is Alg(alg)
                assert q.rcv_id != q.snd_id and len(q.rcv_id) == 24
                sender_key = generate_private_key(Alg(alg))

                # before KEY: unauthorized SEND is accepted, a signed one is refused
                await snd.send(q.snd_id, b"before key")
                msg = await _msg_event(rcv, q)
                m = sc.decrypt_msg(q, msg)
                assert (m.body, m.notification, m.quota) == (b"before key", False, False)
                assert await rcv.ack(q, msg.msg_id) is None
                with pytest.raises(sc.SMPError) as e:
                    await snd.send(q.snd_id, b"signed too early", sender_key)
                assert e.value.error == AUTH

                # KEY: now SEND must be signed by the sender key
                await rcv.secure(q, sender_key.public.der)
                with pytest.raises(sc.SMPError) as e:
                    await snd.send(q.snd_id, b"unsigned after key")
                assert e.value.error == AUTH
                await snd.send(q.snd_id, b"signed", sender_key, notification=True)
                msg = await _msg_event(rcv, q)
                m = rcv.decrypt_msg(q, msg)
                assert (m.body, m.notification) == (b"signed", True)
                assert await rcv.ack(q, msg.msg_id) is None

                # two messages: the second is the response to the ACK of the first
                await snd.send(q.snd_id, b"one", sender_key)
                await snd.send(q.snd_id, b"two", sender_key)
                first = await _msg_event(rcv, q)
                assert sc.decrypt_msg(q, first).body == b"one"
                await _no_event(rcv)  # the second is not pushed
                second = await rcv.ack(q, first.msg_id)  # matched by the ACK's corrId
                assert isinstance(second, C.Msg) and second.msg_id != first.msg_id
                assert sc.decrypt_msg(q, second).body == b"two"
                assert await rcv.ack(q, second.msg_id) is None
                with pytest.raises(sc.SMPError) as e:
                    await rcv.ack(q, second.msg_id)
                assert e.value.error.code == "NO_MSG"

                info = await rcv.queue_info(q)
                assert info["qiSnd"] is True and info["qiSize"] == 0

                # OFF: senders are refused, the recipient still works
                await rcv.suspend(q)
                with pytest.raises(sc.SMPError) as e:
                    await snd.send(q.snd_id, b"after off", sender_key)
                assert e.value.error == AUTH
                await rcv.queue_info(q)

                # DEL: every command on the queue gets ERR AUTH
                await rcv.delete(q)
                k = q.rcv_auth_key
                replies = await rcv.batch([
                    (q.rcv_id, C.SUB, k),
                    (q.rcv_id, C.Key(sender_key.public.der), k),
                    (q.rcv_id, C.Get(), k),
                    (q.rcv_id, C.Ack(b""), k),
                    (q.rcv_id, C.Off(), k),
                    (q.rcv_id, C.Que(), k),
                    (q.rcv_id, C.Del(), k),
                ])
                assert replies == [C.Err(AUTH)] * len(replies)
                with pytest.raises(sc.SMPError) as e:
                    await snd.send(q.snd_id, b"after del", sender_key)
                assert e.value.error == AUTH
                await _no_event(rcv)
                assert rcv.bad_transmissions == snd.bad_transmissions == 0

    trio_run(main)


def test_x25519_needs_v7(smp_server, trio_run):
    async def main():
        async with smp_server() as srv:
            async with sc.connect(srv.address, alpn=None) as c:
                with pytest.raises(sc.UnsupportedByVersion):
                    await c.create_queue("x25519")
                with pytest.raises(sc.UnsupportedByVersion):
                    await c.sender_secure(b"x" * 24, generate_private_key(Alg.ED25519))

    trio_run(main)


def test_wrong_key_and_unknown_queue_get_auth(smp_server, trio_run):
    async def main():
        async with smp_server() as srv:
            async with sc.connect(srv.address) as c:
                q = await c.create_queue()
                other = generate_private_key(Alg.ED25519)
                replies = await c.batch([
                    (q.rcv_id, C.Que(), other),  # wrong key
                    (q.snd_id, C.Que(), q.rcv_auth_key),  # sender id for a recipient command
                    (os.urandom(24), C.SUB, q.rcv_auth_key),  # no such queue
                    (q.rcv_id, C.Que(), q.rcv_auth_key),
                ])
                assert replies[:3] == [C.Err(AUTH)] * 3
                assert isinstance(replies[3], C.Info)

    trio_run(main)


def test_subscription_takeover_and_deletion_events(smp_server, trio_run):
    async def main():
        async with smp_server() as srv:
            async with sc.connect(srv.address) as c1, sc.connect(srv.address) as c2, \
                    sc.connect(srv.address) as snd:
                q = await c1.create_queue()
                await snd.send(q.snd_id, b"hello")
                first = await _msg_event(c1, q)
                await c2.subscribe(q)  # takes the subscription; the head is delivered again
                again = await _msg_event(c2, q)
                assert again.msg_id == first.msg_id
                assert await c1.next_event(5) == (q.rcv_id, C.END)
                with pytest.raises(sc.SMPError) as e:
                    await c1.ack(q, first.msg_id)  # c1 lost its subscription
                assert e.value.error.code == "NO_MSG"
                await c1.subscribe(q)  # and back
                await _msg_event(c1, q)
                assert await c2.next_event(5) == (q.rcv_id, C.END)
                await c2.delete(q)
                # DELD is v10+: a v7 subscriber gets END
                assert await c1.next_event(5) == (q.rcv_id, C.END)
                await _no_event(c2)

    trio_run(main)


# ------------------------------------------------------------------ batching


@pytest.mark.parametrize("version, count", [(7, 135), (6, 106)])
def test_batch_subscriptions_in_one_block(smp_server, trio_run, version, count):
    async def main():
        async with smp_server() as srv:
            async with sc.connect(srv.address, max_version=version) as c:
                queues = await c.create_queues(count, subscribe=False)
                assert len({q.rcv_id for q in queues}) == count
                sent, received = c.blocks_sent, c.blocks_received
                replies = await c.subscribe_many(queues)
                assert replies == [C.OK] * count
                assert c.blocks_sent - sent == 1
                assert 1 <= c.blocks_received - received <= 2
                # the batch is correlated: every queue's own response
                tx = c.transmissions_received
                replies = await c.batch([(q.rcv_id, C.Que(), q.rcv_auth_key) for q in queues])
                assert all(isinstance(r, C.Info) for r in replies)
                assert c.transmissions_received - tx == count

    trio_run(main)


def test_batch_mixed_results_in_order(smp_server, trio_run):
    async def main():
        async with smp_server() as srv:
            async with sc.connect(srv.address) as c:
                q = await c.create_queue(subscribe=False)
                replies = await c.batch([
                    (b"", C.PING, None),
                    (q.rcv_id, C.Get(), q.rcv_auth_key),
                    (q.rcv_id, C.Get(), None),  # no authorization: CMD NO_AUTH
                    (q.rcv_id, b"NOSUCH", q.rcv_auth_key),  # raw bytes: CMD UNKNOWN
                    (b"", C.PING, None),
                ])
                assert replies[0] == C.PONG and replies[4] == C.PONG
                assert replies[1] == C.OK  # empty queue
                assert replies[2] == C.Err(ErrorType("CMD", "NO_AUTH"))
                assert replies[3] == C.Err(ErrorType("CMD", "UNKNOWN"))

    trio_run(main)


# ------------------------------------------------------------------ GET mode, limits


def test_get_mode(smp_server, trio_run):
    async def main():
        async with smp_server("lmdb") as srv:
            async with sc.connect(srv.address) as rcv, sc.connect(srv.address) as snd:
                q = await rcv.create_queue(subscribe=False)
                assert await rcv.get(q) is None
                await snd.send(q.snd_id, b"fetch me")
                await _no_event(rcv)  # not subscribed: nothing pushed
                msg = await rcv.get(q)
                assert msg is not None and sc.decrypt_msg(q, msg).body == b"fetch me"
                again = await rcv.get(q)  # the head until ACKed
                assert again is not None and again.msg_id == msg.msg_id
                with pytest.raises(sc.SMPError) as e:
                    await rcv.subscribe(q)
                assert e.value.error == CMD_PROHIBITED
                assert await rcv.ack(q, msg.msg_id) is None
                assert await rcv.get(q) is None

    trio_run(main)


@pytest.mark.parametrize("version", [6, 7])
def test_max_message_size(smp_server, trio_run, version):
    async def main():
        async with smp_server() as srv:
            async with sc.connect(srv.address, max_version=version) as rcv, \
                    sc.connect(srv.address, max_version=version) as snd:
                q = await rcv.create_queue()
                sender_key = generate_private_key(Alg.ED25519)
                await rcv.secure(q, sender_key)
                body = os.urandom(16088)
                await snd.send(q.snd_id, body, sender_key)
                msg = await _msg_event(rcv, q)
                assert sc.decrypt_msg(q, msg).body == body
                with pytest.raises(sc.SMPError) as e:
                    await snd.send(q.snd_id, body + b"x", sender_key)
                assert e.value.error == LARGE_MSG
                with pytest.raises(sc.TransmissionTooLarge):
                    await snd.send(q.snd_id, body + bytes(400), sender_key)
                await snd.ping()  # nothing was sent for the too-large one

    trio_run(main)


# ------------------------------------------------------------------ notifications, v11


def test_notifications(smp_server, trio_run):
    async def main():
        async with smp_server() as srv:
            async with sc.connect(srv.address) as rcv, sc.connect(srv.address) as snd, \
                    sc.connect(srv.address) as ntf:
                q = await rcv.create_queue(ntf=True)
                creds = q.notifier
                assert creds is not None
                await ntf.notifications_subscribe(creds)
                await snd.send(q.snd_id, b"ping me", notification=True)
                msg = await _msg_event(rcv, q)
                entity_id, nmsg = await ntf.next_event(5)  # delivered every 1.5 s
                assert entity_id == creds.notifier_id and isinstance(nmsg, C.Nmsg)
                meta = sc.decrypt_nmsg(creds, nmsg)
                assert meta.msg_id == msg.msg_id
                await rcv.disable_notifications(q)
                assert q.notifier is None
                with pytest.raises(sc.SMPError) as e:
                    await ntf.notifications_subscribe(creds)
                assert e.value.error == AUTH

    trio_run(main)


def test_block_encryption_v11(smp_server, trio_run):
    """The server's default max is 7; raised to 11 here to exercise block encryption."""

    async def main():
        async with smp_server(max_version=11) as srv:
            async with sc.connect(srv.address) as rcv, sc.connect(srv.address) as snd:
                assert rcv.version == 11 and rcv.block_encryption
                q = await rcv.create_queue("x25519", sender_can_secure=True)
                sender_key = generate_private_key(Alg.X25519)
                await snd.sender_secure(q.snd_id, sender_key)
                body = os.urandom(16048)
                await snd.send(q.snd_id, body, sender_key)
                msg = await _msg_event(rcv, q)
                assert sc.decrypt_msg(q, msg).body == body
                with pytest.raises(sc.SMPError) as e:
                    await snd.send(q.snd_id, body + b"x", sender_key)
                assert e.value.error == LARGE_MSG
                queues = await rcv.create_queues(135, subscribe=False)
                sent = rcv.blocks_sent
                await rcv.subscribe_many(queues)
                assert rcv.blocks_sent - sent == 1
                # a v11 subscriber gets DELD when another connection deletes the queue
                async with sc.connect(srv.address) as other:
                    await other.delete(q)
                assert await rcv.next_event(5) == (q.rcv_id, C.DELD)
            async with sc.connect(srv.address, block_encryption=False) as c:
                assert c.version == 11 and not c.block_encryption
                await c.ping()
                await c.create_queue()

    trio_run(main)
