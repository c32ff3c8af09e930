"""smpfast.client logic against a scripted fake connection (no TLS, no server):
corrId matching, event routing, unusable transmissions, connection loss, cancellation,
authorization bytes."""

from __future__ import annotations

import math
import os

import nacl.bindings as nb
import pytest
import trio

import smpfast.client as sc
from smpfast import _core as core
from smpfast.crypto.auth import AuthVerifier
from smpfast.crypto.keys import Alg, PublicKey, generate_private_key
from smpfast.protocol import commands as C
from smpfast.protocol import versions as V
from smpfast.protocol.address import SMPServer
from smpfast.protocol.errors import AUTH, BLOCK, CMD_SYNTAX, CMD_UNKNOWN
from smpfast.protocol.transmission import (
    batch_blocks,
    decode_server_transmissions,
    encode_server_transmission,
)
from smpfast.transport import TransportClosed

SESSION_ID = bytes(range(32))
ENTITY = b"q" * 24


class FakeConnection:
    """The BlockConnection surface the client uses; the test plays the server."""

    def __init__(self) -> None:
        self._to_client_send, self._to_client = trio.open_memory_channel[list[bytes]](math.inf)
        self._from_client_send, self.from_client = trio.open_memory_channel[bytes](math.inf)
        self.blocks_in = self.blocks_out = self.tls_bytes_in = self.tls_bytes_out = 0
        self.closed = False
        self.send_calls = 0

    async def receive_blocks(self) -> list[bytes]:
        try:
            blocks = await self._to_client.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            return []
        self.blocks_in += len(blocks)
        return blocks

    async def send_blocks(self, blocks) -> None:
        if self.closed:
            raise TransportClosed("closed")
        self.send_calls += 1
        for b in blocks:
            assert len(b) == V.BLOCK_SIZE
            self.blocks_out += 1
            self._from_client_send.send_nowait(b)
        await trio.lowlevel.checkpoint()

    async def aclose(self) -> None:
        self.closed = True
        self._to_client_send.close()

    # -- the server side --

    def push(self, *blocks: bytes) -> None:
        self._to_client_send.send_nowait(list(blocks))

    def server_close(self) -> None:
        self._to_client_send.close()


class FakeServer:
    def __init__(self, conn: FakeConnection, version: int) -> None:
        self.conn = conn
        self.version = version

    async def commands(self, n: int):
        """The next ``n`` client transmissions (ReceivedCommand)."""
        out = []
        while len(out) < n:
            block = await self.conn.from_client.receive()
            out.extend(decode_server_transmissions(block, self.version, SESSION_ID))
        return out

    def transmission(self, corr_id: bytes, entity_id: bytes, msg: C.Response | bytes) -> bytes:
        return encode_server_transmission(self.version, SESSION_ID, corr_id, entity_id, msg)

    def reply(self, items: list[tuple[bytes, bytes, C.Response | bytes]]) -> None:
        """Answer with ``(corr_id, entity_id, response)``, packed like a server packs."""
        ts = [self.transmission(*item) for item in items]
        self.conn.push(*batch_blocks(ts))


def make_client(version: int = 7, server_key: bytes | None = None, **kwargs):
    conn = FakeConnection()
    session = sc.Session(
        conn, SMPServer(("127.0.0.1",), "", bytes(32)), None, version, SESSION_ID,
        V.VersionRange(6, version), server_key,
    )
    return sc.SMPClient(session, **kwargs), FakeServer(conn, version)


def run(async_fn):
    async def guarded():
        with trio.fail_after(10):
            await async_fn()

    trio.run(guarded)


def _info(size: int) -> bytes:
    return b'{"qiSnd":false,"qiNtf":false,"qiSize":%d}' % size


def test_batch_replies_match_by_corr_id_in_any_order():
    async def main():
        client, server = make_client()
        async with client:
            async with trio.open_nursery() as nursery:
                result = []

                async def call():
                    reqs = [(bytes([i]) * 24, C.Que(), None) for i in range(10)]
                    result.extend(await client.batch(reqs))

                nursery.start_soon(call)
                cmds = await server.commands(10)
                assert server.conn.send_calls == 1  # one write for the whole batch
                assert [c.entity_id for c in cmds] == [bytes([i]) * 24 for i in range(10)]
                assert len({c.corr_id for c in cmds}) == 10 and all(len(c.corr_id) == 24 for c in cmds)
                # answers in reverse order, over two blocks
                answers = [(c.corr_id, c.entity_id, C.Info(_info(i))) for i, c in enumerate(cmds)]
                server.reply(answers[5:][::-1])
                server.reply(answers[:5][::-1])
            assert [r.info for r in result] == [_info(i) for i in range(10)]
            assert client.events_received == 0 and client.unmatched_responses == 0

    run(main)


def test_events_are_routed_to_the_event_channel():
    async def main():
        client, server = make_client()
        async with client:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(client.ping)
                [cmd] = await server.commands(1)
                server.reply([
                    (b"", ENTITY, C.Msg(b"m" * 24, b"body")),  # delivery: empty corrId
                    (b"x" * 24, ENTITY, C.OK),  # unknown corrId
                    (cmd.corr_id, b"", C.PONG),
                    (b"", ENTITY, C.END),
                ])
            assert await client.next_event(1) == (ENTITY, C.Msg(b"m" * 24, b"body"))
            assert await client.next_event(1) == (ENTITY, C.OK)
            entity_id, msg = await client.next_event(1)
            assert (entity_id, msg) == (ENTITY, C.END)
            with pytest.raises(trio.TooSlowError):
                await client.next_event(0.05)
            assert client.unmatched_responses == 1 and client.events_received == 3

    run(main)


def test_unusable_transmissions_are_surfaced_and_the_reader_continues():
    async def main():
        client, server = make_client()
        async with client:
            got = {}

            async def call(name, coro_fn):
                try:
                    got[name] = await coro_fn()
                except sc.ClientError as e:
                    got[name] = e

            async with trio.open_nursery() as nursery:
                nursery.start_soon(call, "ping", client.ping)
                nursery.start_soon(call, "batch", lambda: client.batch([(ENTITY, C.Que(), None)] * 2))
                cmds = await server.commands(3)
                by_entity = [c for c in cmds if c.entity_id == ENTITY]
                [ping] = [c for c in cmds if not c.entity_id]
                server.reply([
                    (ping.corr_id, b"", b"PONG extra"),  # bad parameters
                    (by_entity[0].corr_id, ENTITY, b"WHAT"),  # unknown tag
                    (by_entity[1].corr_id, ENTITY, C.Err(AUTH)),
                    (b"", ENTITY, b"MSG"),  # unusable event
                ])
                server.conn.push(os.urandom(V.BLOCK_SIZE))  # not a batch at all
            assert isinstance(got["ping"], sc.ResponseError) and got["ping"].error == CMD_SYNTAX
            assert got["batch"] == [sc.BadResponse(CMD_UNKNOWN), C.Err(AUTH)]
            assert await client.next_event(1) == (ENTITY, sc.BadResponse(CMD_SYNTAX))
            assert await client.next_event(1) == (b"", sc.BadResponse(BLOCK))
            assert client.bad_transmissions == 4
            # still working
            async with trio.open_nursery() as nursery:
                nursery.start_soon(client.ping)
                [cmd] = await server.commands(1)
                server.reply([(cmd.corr_id, b"", C.PONG)])

    run(main)


def test_typed_calls_raise_smp_error_and_unexpected_response():
    async def main():
        client, server = make_client()
        q = sc.RecipientQueue(ENTITY, b"s" * 24, generate_private_key(Alg.ED25519),
                              generate_private_key(Alg.X25519), b"", b"k" * 32)
        async with client:
            results = []

            async def call(fn):
                try:
                    results.append(await fn())
                except sc.ClientError as e:
                    results.append(e)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(call, lambda: client.suspend(q))
                [cmd] = await server.commands(1)
                server.reply([(cmd.corr_id, ENTITY, C.Err(AUTH))])
            async with trio.open_nursery() as nursery:
                nursery.start_soon(call, lambda: client.queue_info(q))
                [cmd] = await server.commands(1)
                server.reply([(cmd.corr_id, ENTITY, C.OK)])
            async with trio.open_nursery() as nursery:
                nursery.start_soon(call, lambda: client.queue_info(q))
                [cmd] = await server.commands(1)
                server.reply([(cmd.corr_id, ENTITY, C.PONG)])  # PONG must have no entity
            assert isinstance(results[0], sc.SMPError) and results[0].error == AUTH
            assert results[0].code == "AUTH"
            assert isinstance(results[1], sc.UnexpectedResponse) and results[1].response == C.OK
            assert isinstance(results[2], sc.ResponseError)

    run(main)


def test_connection_loss_fails_pending_requests():
    async def main():
        client, server = make_client()
        async with client:
            failures = []

            async def call():
                try:
                    await client.ping()
                except sc.ClientClosed as e:
                    failures.append(e)

            async with trio.open_nursery() as nursery:
                for _ in range(3):
                    nursery.start_soon(call)
                await server.commands(3)
                server.conn.push(batch_blocks([server.transmission(b"", ENTITY, C.END)])[0])
                server.conn.server_close()
            assert len(failures) == 3 and "server" in str(failures[0])
            await client.wait_closed()
            # buffered events stay readable, then the channel ends
            assert await client.next_event(1) == (ENTITY, C.END)
            with pytest.raises(sc.ClientClosed):
                await client.next_event(1)
            with pytest.raises(sc.ClientClosed):
                await client.ping()

    run(main)


def test_aclose_fails_pending_requests():
    async def main():
        client, server = make_client()
        async with client:
            async with trio.open_nursery() as nursery:
                async def call():
                    with pytest.raises(sc.ClientClosed):
                        await client.ping()

                nursery.start_soon(call)
                await server.commands(1)
                await client.aclose()
            assert server.conn.closed and client.closed

    run(main)


def test_cancelled_request_late_response_becomes_event():
    async def main():
        client, server = make_client()
        async with client:
            with trio.move_on_after(0.05):
                await client.ping()
            [cmd] = await server.commands(1)
            assert client._pending == {}
            server.reply([(cmd.corr_id, b"", C.PONG)])
            assert await client.next_event(1) == (b"", C.PONG)
            assert client.unmatched_responses == 1

    run(main)


def test_body_exceptions_pass_through_async_with():
    async def main():
        client, _ = make_client()
        with pytest.raises(KeyError):
            async with client:
                raise KeyError("body")
        assert client.closed

    run(main)


def test_bounded_event_buffer_routes_responses_first():
    async def main():
        client, server = make_client(event_buffer=1)
        async with client:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(client.ping)
                [cmd] = await server.commands(1)
                # three events (one more than fits) before the response, in one block
                server.reply([(b"", ENTITY, C.END)] * 3 + [(cmd.corr_id, b"", C.PONG)])
            # the ping completed although nobody read the events yet
            assert [await client.next_event(1) for _ in range(3)] == [(ENTITY, C.END)] * 3

    run(main)


def test_closed_event_channel_drops_events():
    async def main():
        client, server = make_client()
        async with client:
            client.events.close()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(client.ping)
                [cmd] = await server.commands(1)
                server.reply([(b"", ENTITY, C.END), (cmd.corr_id, b"", C.PONG)])
            assert client.events_dropped == 1

    run(main)


@pytest.mark.parametrize("version", [6, 7])
@pytest.mark.parametrize("alg", [Alg.ED25519, Alg.ED448, Alg.X25519])
def test_authorization_covers_t_for_auth(version, alg):
    if alg is Alg.X25519 and version < 7:
        client, _ = make_client(version)
        with pytest.raises(sc.UnsupportedByVersion):
            client._encode(b"c" * 24, ENTITY, C.SUB, generate_private_key(alg))
        return
    server_private = os.urandom(32)
    server_public = nb.crypto_scalarmult_base(server_private)
    client, server = make_client(version, server_public if version >= 7 else None)
    key = generate_private_key(alg)

    async def main():
        async with client:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(client.batch, [(ENTITY, C.SUB, key), (ENTITY, C.SUB, key), (b"", C.PING, None)])
                cmds = await server.commands(3)
                server.reply([(c.corr_id, c.entity_id, C.OK) for c in cmds])
        verifier = AuthVerifier(server_private if version >= 7 else None)
        assert cmds[2].auth == b""
        for c in cmds[:2]:
            assert c.error is None and c.command == C.SUB
            assert verifier.verify(PublicKey(alg, key.public.raw), c.auth, c.t_for_auth, c.corr_id)
            assert not verifier.verify(generate_private_key(alg).public, c.auth, c.t_for_auth, c.corr_id)

    run(main)


def test_block_encryption_pads_to_16368_and_chains():
    from smpfast.crypto.blockcrypt import server_block_ciphers
    from smpfast.client.base import ClientBase

    secret = os.urandom(32)
    conn = FakeConnection()
    session = sc.Session(conn, SMPServer(("h",), "", bytes(32)), None, 11, SESSION_ID,
                         V.VersionRange(6, 11), os.urandom(32))
    from smpfast.crypto.blockcrypt import client_block_ciphers

    from smpfast.protocol.session import BlockLayer

    session.blocks = BlockLayer(*client_block_ciphers(SESSION_ID, secret), drop_oversize=False)
    client = sc.SMPClient(session)
    s_enc, s_dec = server_block_ciphers(SESSION_ID, secret)
    assert isinstance(client, ClientBase) and client.block_encryption

    async def main():
        async with client:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(client.batch, [(b"", C.PING, None)] * 300)
                blocks = [await conn.from_client.receive() for _ in range(2)]
                cmds = []
                for b in blocks:
                    cmds.extend(decode_server_transmissions(s_dec.decrypt(b), 11, SESSION_ID))
                assert len(cmds) == 300
                ts = [encode_server_transmission(11, SESSION_ID, c.corr_id, b"", C.PONG) for c in cmds]
                conn.push(*[s_enc.encrypt(b) for b in batch_blocks(ts, V.ENCRYPTED_BLOCK_PAD)])
            # a block that does not decrypt is an event, and the chain moves on
            conn.push(os.urandom(V.BLOCK_SIZE))
            assert await client.next_event(1) == (b"", sc.BadResponse(BLOCK))
            async with trio.open_nursery() as nursery:
                nursery.start_soon(client.ping)
                [b] = [await conn.from_client.receive()]
                [c] = decode_server_transmissions(s_dec.decrypt(b), 11, SESSION_ID)
                s_enc.next_key()  # the server's chain advanced for the block we garbled
                conn.push(s_enc.encrypt(core.encode_batch(
                    [encode_server_transmission(11, SESSION_ID, c.corr_id, b"", C.PONG)], V.ENCRYPTED_BLOCK_PAD)))

    run(main)
