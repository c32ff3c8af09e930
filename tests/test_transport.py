"""TLS block transport over real TLS on 127.0.0.1: TLS profile, ALPN, tls-unique, blocks.

Tests run their trio code with trio.run under a fail_after guard (no pytest-trio needed).
"""

from __future__ import annotations

import functools
import os
import random
import socket
import ssl
from contextlib import asynccontextmanager

import pytest
import trio
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from smpfast.transport import (
    BLOCK_SIZE,
    BlockConnection,
    HandshakeTimeout,
    TLSIdentityError,
    TransportClosed,
    TransportError,
    client_context,
    native_profile_available,
    open_block_connection,
    serve_blocks,
    server_context,
)
from smpfast.transport import _openssl
from smpfast.testing.throwaway_certs import key_pem, make_cert, pem, write_server_files

GUARD = 20.0  # no test may run longer than this


def run(async_fn, *args):
    async def guarded():
        with trio.fail_after(GUARD):
            return await async_fn(*args)

    return trio.run(guarded)


def blocks(n: int) -> list[bytes]:
    return [os.urandom(BLOCK_SIZE) for _ in range(n)]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return write_server_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def sctx(files):
    return server_context(files.chain_file, files.key_file)


class ServerState:
    def __init__(self) -> None:
        self.conns: list[BlockConnection] = []
        self.handshake_errors: list[TransportError] = []
        self.received: list[list[bytes]] = []  # per connection, blocks in arrival order
        self.ended: list[str] = []  # per finished connection: "eof" or the error
        self.port = 0


async def echo_handler(state: ServerState, conn: BlockConnection) -> None:
    state.conns.append(conn)
    got: list[bytes] = []
    state.received.append(got)
    try:
        while True:
            bl = await conn.receive_blocks()
            if not bl:
                # EOF is sticky: asking again gives [] again.
                again = await conn.receive_blocks()
                state.ended.append("eof" if again == [] else "data after EOF")
                return
            got.extend(bl)
            await conn.send_blocks(bl)
    except TransportError as e:
        state.ended.append(repr(e))
        raise


@asynccontextmanager
async def running_server(ctx, *, handler=echo_handler, handshake_timeout=10.0):
    state = ServerState()
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(
            lambda task_status: serve_blocks(
                lambda conn: handler(state, conn),
                0,
                ctx,
                host="127.0.0.1",
                handshake_timeout=handshake_timeout,
                on_handshake_error=state.handshake_errors.append,
                task_status=task_status,
            )
        )
        state.port = listeners[0].socket.getsockname()[1]
        yield state
        nursery.cancel_scope.cancel()


async def until(predicate) -> None:
    while not predicate():
        await trio.sleep(0.005)


async def echoed(conn: BlockConnection, n: int, sender) -> list[bytes]:
    """Run ``sender()`` while receiving n blocks in another task (large echoes would not
    fit the socket buffers if the client sent everything before reading)."""
    got: list[bytes] = []

    async def receiver():
        got.extend(await receive_n(conn, n))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(receiver)
        await sender()
    return got


async def receive_n(conn: BlockConnection, n: int) -> list[bytes]:
    got: list[bytes] = []
    while len(got) < n:
        bl = await conn.receive_blocks()
        assert bl, "unexpected EOF"
        got.extend(bl)
    return got


def plain_client_context(**kw) -> ssl.SSLContext:
    """A stock OpenSSL client (default suites/groups), not our profile."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    for k, v in kw.items():
        setattr(ctx, k, v)
    return ctx


# -- TLS profile --------------------------------------------------------------------------


def test_native_profile_is_applied(sctx):
    assert native_profile_available()
    names = {c["name"] for c in sctx.get_ciphers() if c["protocol"] == "TLSv1.3"}
    assert names == {"TLS_CHACHA20_POLY1305_SHA256"}
    tls12 = {c["name"] for c in sctx.get_ciphers() if c["protocol"] == "TLSv1.2"}
    assert tls12 == {"ECDHE-ECDSA-CHACHA20-POLY1305"}
    assert sctx.num_tickets == 0
    assert sctx.options & ssl.OP_NO_TICKET and sctx.options & ssl.OP_NO_RENEGOTIATION
    assert sctx.minimum_version == ssl.TLSVersion.TLSv1_2


def test_profile_fallback_logs_and_still_works(files, monkeypatch, caplog):
    """Where the ctypes path is unusable, contexts warn and keep OpenSSL's TLS 1.3 defaults
    (X25519 only); a client offering only ChaCha20 (as the reference's) still connects."""

    def unusable(*args, **kwargs):
        raise OSError("simulated: no SSL_CTX access")

    real = _openssl.set_tls_lists
    monkeypatch.setattr(_openssl, "set_tls_lists", unusable)
    with caplog.at_level("WARNING", logger="smpfast.transport"):
        ctx = server_context(files.chain_file, files.key_file)
    assert "cannot restrict TLS 1.3 suites" in caplog.text
    assert not native_profile_available()
    client = plain_client_context(minimum_version=ssl.TLSVersion.TLSv1_3)
    real(client, ciphersuites="TLS_CHACHA20_POLY1305_SHA256", groups="X25519", sigalgs="ed25519")

    async def main():
        async with running_server(ctx) as st:
            conn = await raw_handshake(st.port, client)
            assert conn.cipher == "TLS_CHACHA20_POLY1305_SHA256"
            await conn.aclose()

    run(main)


@pytest.mark.parametrize(
    "alpn, expected",
    [
        (["smp/1"], "smp/1"),
        (["http/1.1"], "http/1.1"),
        (["http/1.1", "smp/1"], "smp/1"),  # the server's order decides
        (["h2", "http/1.1"], "h2"),
        (["foo"], None),
        (None, None),
    ],
)
def test_alpn(files, sctx, alpn, expected):
    async def main():
        async with running_server(sctx) as st:
            conn = await open_block_connection("127.0.0.1", st.port, files.key_hash, alpn=alpn)
            assert conn.alpn == expected
            await until(lambda: st.conns)
            assert st.conns[0].alpn == expected
            await conn.aclose()

    run(main)


def test_session_parameters_match_on_both_sides(files, sctx):
    async def main():
        async with running_server(sctx) as st:
            conn = await open_block_connection("127.0.0.1", st.port, files.key_hash)
            await until(lambda: st.conns)
            server = st.conns[0]
            for c in (conn, server):
                assert c.tls_version == "TLSv1.3"
                assert c.cipher == "TLS_CHACHA20_POLY1305_SHA256"
            assert len(conn.tls_unique) == 32
            assert conn.tls_unique == server.tls_unique
            der = serialization.Encoding.DER
            assert conn.peer_chain_der == [
                files.server_cert.public_bytes(der),
                files.ca_cert.public_bytes(der),
            ]
            assert server.peer_chain_der == []  # no client certificate requested
            # No NewSessionTicket was sent (a resumption would change tls-unique).
            await conn.send_blocks(blocks(1))
            await receive_n(conn, 1)
            session = conn._ssl.session
            assert session is None or not session.has_ticket
            await conn.aclose()

    run(main)


def test_sessions_differ_per_connection(files, sctx):
    async def main():
        async with running_server(sctx) as st:
            a = await open_block_connection("127.0.0.1", st.port, files.key_hash)
            b = await open_block_connection("127.0.0.1", st.port, files.key_hash)
            assert a.tls_unique != b.tls_unique
            await a.aclose()
            await b.aclose()

    run(main)


def test_server_context_with_separate_ca_file_and_ed448(tmp_path):
    f = write_server_files(tmp_path, "ed448")
    ctx = server_context(f.cert_file, f.key_file, f.ca_file)

    async def main():
        async with running_server(ctx) as st:
            conn = await open_block_connection("127.0.0.1", st.port, f.key_hash)
            assert len(conn.peer_chain_der) == 2
            assert conn.cipher == "TLS_CHACHA20_POLY1305_SHA256"
            await conn.aclose()

    run(main)


async def raw_handshake(port: int, ctx: ssl.SSLContext) -> BlockConnection:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    conn = BlockConnection(stream, ctx, server_side=False)
    try:
        await conn.handshake(5)
    except BaseException:
        await conn.aclose()
        raise
    return conn


def test_stock_client_negotiates_chacha20(sctx):
    """OpenSSL's default client prefers AES-256-GCM; the server only has ChaCha20."""

    async def main():
        async with running_server(sctx) as st:
            conn = await raw_handshake(st.port, plain_client_context())
            assert conn.cipher == "TLS_CHACHA20_POLY1305_SHA256"
            await conn.aclose()

    run(main)


def _restricted_client(suites: str, groups: str = "X25519") -> ssl.SSLContext:
    ctx = plain_client_context(minimum_version=ssl.TLSVersion.TLSv1_3)
    _openssl.set_tls_lists(ctx, ciphersuites=suites, groups=groups, sigalgs="ed25519:ed448")
    return ctx


@pytest.mark.parametrize(
    "client_ctx",
    [
        lambda: _restricted_client("TLS_AES_128_GCM_SHA256"),
        lambda: _restricted_client("TLS_AES_256_GCM_SHA384"),
        lambda: _restricted_client("TLS_CHACHA20_POLY1305_SHA256", groups="P-256"),
        lambda: _tls12_client("ECDHE-ECDSA-AES128-GCM-SHA256"),
    ],
    ids=["aes128gcm", "aes256gcm", "p256-only", "tls12-aesgcm"],
)
def test_client_outside_profile_is_refused(sctx, client_ctx):
    async def main():
        async with running_server(sctx) as st:
            with pytest.raises(TransportError):
                await raw_handshake(st.port, client_ctx())
            await until(lambda: st.handshake_errors)
            assert isinstance(st.handshake_errors[0], TransportError)
            assert not isinstance(st.handshake_errors[0], HandshakeTimeout)
            assert st.conns == []

    run(main)


def _tls12_client(ciphers: str) -> ssl.SSLContext:
    ctx = plain_client_context(maximum_version=ssl.TLSVersion.TLSv1_2)
    ctx.set_ciphers(ciphers)
    return ctx


def test_tls12_with_chacha20(files, sctx):
    async def main():
        async with running_server(sctx) as st:
            conn = await raw_handshake(st.port, _tls12_client("ECDHE-ECDSA-CHACHA20-POLY1305"))
            await until(lambda: st.conns)
            assert conn.tls_version == "TLSv1.2"
            assert conn.cipher == "ECDHE-ECDSA-CHACHA20-POLY1305"
            assert len(conn.tls_unique) == 12  # TLS 1.2 Finished
            assert conn.tls_unique == st.conns[0].tls_unique
            data = blocks(3)
            await conn.send_blocks(data)
            assert await receive_n(conn, 3) == data
            await conn.aclose()

    run(main)


def test_x448_key_share_accepted(sctx):
    async def main():
        async with running_server(sctx) as st:
            client = _restricted_client("TLS_CHACHA20_POLY1305_SHA256", "X448")
            conn = await raw_handshake(st.port, client)
            assert conn.cipher == "TLS_CHACHA20_POLY1305_SHA256"
            await conn.aclose()

    run(main)


def test_ecdsa_server_certificate_not_usable(tmp_path):
    """Only Ed25519/Ed448 signatures are in the profile."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = make_cert(ca_key, "ca", ca=True)
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = make_cert(key, "localhost", issuer_key=ca_key, issuer_cert=ca, ca=False)
    (tmp_path / "c.pem").write_bytes(pem(leaf, ca))
    (tmp_path / "k.pem").write_bytes(key_pem(key))
    ctx = server_context(tmp_path / "c.pem", tmp_path / "k.pem")

    async def main():
        async with running_server(ctx) as st:
            with pytest.raises(TransportError):
                await raw_handshake(st.port, plain_client_context())
            await until(lambda: st.handshake_errors)

    run(main)


# -- server identity ----------------------------------------------------------------------


def test_wrong_key_hash_raises_identity_error(files, sctx):
    async def main():
        async with running_server(sctx) as st:
            with pytest.raises(TLSIdentityError):
                await open_block_connection("127.0.0.1", st.port, bytes(32))
            # The refused connection was closed: the server sees EOF.
            await until(lambda: st.ended)
            assert st.ended == ["eof"]
            ok = await open_block_connection("127.0.0.1", st.port, files.key_hash)
            await ok.aclose()

    run(main)


def test_single_certificate_chain_refused(tmp_path):
    f = write_server_files(tmp_path)
    (tmp_path / "self.pem").write_bytes(pem(f.ca_cert))  # CA cert alone, self-signed
    (tmp_path / "self.key").write_bytes(key_pem(f.ca_key))
    ctx = server_context(tmp_path / "self.pem", tmp_path / "self.key")

    async def main():
        async with running_server(ctx) as st:
            with pytest.raises(TLSIdentityError, match="1 certificate"):
                await open_block_connection("127.0.0.1", st.port, f.key_hash)

    run(main)


# -- blocks -------------------------------------------------------------------------------


def test_echo_many_blocks_in_one_write(files, sctx):
    async def main():
        async with running_server(sctx) as st:
            conn = await open_block_connection("127.0.0.1", st.port, files.key_hash)
            data = blocks(64)
            assert await echoed(conn, 64, lambda: conn.send_blocks(data)) == data
            assert st.received[0] == data
            # Counters: whole blocks both ways; raw bytes agree across the two sides.
            server = st.conns[0]
            assert conn.blocks_out == 64 and conn.blocks_in == 64
            assert server.blocks_in == 64 and server.blocks_out == 64
            assert conn.tls_bytes_out == server.tls_bytes_in > 64 * BLOCK_SIZE
            assert conn.tls_bytes_in == server.tls_bytes_out > 64 * BLOCK_SIZE
            await conn.aclose()

    run(main)


def test_concurrent_send_and_receive_tasks(files, sctx):
    """One task sends 300 blocks in varied batches while another receives the echoes
    (neither side would finish if sends and receives could not overlap)."""

    async def main():
        async with running_server(sctx) as st:
            conn = await open_block_connection("127.0.0.1", st.port, files.key_hash)
            data = blocks(300)
            got: list[bytes] = []

            async def sender():
                rng = random.Random(1)
                i = 0
                while i < len(data):
                    k = rng.randint(1, 20)
                    await conn.send_blocks(data[i : i + k])
                    i += k

            async def receiver():
                got.extend(await receive_n(conn, len(data)))

            async with trio.open_nursery() as n:
                n.start_soon(sender)
                n.start_soon(receiver)
            assert got == data
            await conn.aclose()

    run(main)


def test_several_sending_tasks_keep_their_batches_whole(files, sctx):
    async def main():
        async with running_server(sctx) as st:
            conn = await open_block_connection("127.0.0.1", st.port, files.key_hash)
            batches = {
                t: [bytes([t, i]) + os.urandom(BLOCK_SIZE - 2) for i in range(30)]
                for t in range(4)
            }

            async def senders():
                async def one(t):
                    for i in range(0, 30, 3):
                        await conn.send_blocks(batches[t][i : i + 3])

                async with trio.open_nursery() as n:
                    for t in batches:
                        n.start_soon(one, t)

            got = await echoed(conn, 120, senders)
            for t, sent in batches.items():
                assert [b for b in got if b[0] == t] == sent
            # Each send_blocks call's 3 blocks are adjacent on the wire.
            for k in range(0, 120, 3):
                assert len({b[0] for b in got[k : k + 3]}) == 1
            await conn.aclose()

    run(main)


def test_plaintext_split_at_random_boundaries(files, sctx):
    """Blocks written as many small TLS records of random sizes are reassembled."""

    async def main():
        async with running_server(sctx) as st:
            conn = await open_block_connection("127.0.0.1", st.port, files.key_hash)
            data = blocks(20)
            stream = b"".join(data)
            rng = random.Random(2)

            async def sender():
                i = 0
                while i < len(stream):
                    k = rng.choice([1, 7, 100, 5000, 16383, 16385, 40000])
                    await conn.send(stream[i : i + k])
                    i += k

            assert await echoed(conn, 20, sender) == data
            assert st.received[0] == data
            await conn.aclose()

    run(main)


def test_tls_bytes_split_at_random_boundaries(files, sctx):
    """The raw TLS byte stream arriving in odd pieces (mid-header, mid-record) and many
    records in one piece: the server returns every block in order, unchanged."""

    async def main():
        async with running_server(sctx) as st:
            conn = await open_block_connection("127.0.0.1", st.port, files.key_hash)
            data = blocks(30)
            for b in data:
                conn._ssl.write(b)
            raw = conn._outgoing.read()
            rng = random.Random(3)

            async def sender():
                i = 0
                while i < len(raw):
                    k = rng.choice([1, 2, 5, 6, 333, 16400, 70000])
                    await conn.stream.send_all(raw[i : i + k])
                    await trio.sleep(0.001)  # let the server read each piece separately
                    i += k

            assert await echoed(conn, 30, sender) == data
            assert st.received[0] == data
            await conn.aclose()

    run(main)


def test_data_arriving_with_client_finished(files, sctx):
    """Blocks sent in the same TCP write as the client Finished are not left unread."""

    async def main():
        async with running_server(sctx) as st:
            stream = await trio.open_tcp_stream("127.0.0.1", st.port)
            inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
            sslobj = client_context().wrap_bio(inc, out, server_side=False)
            data = blocks(3)
            while True:
                try:
                    sslobj.do_handshake()
                    break
                except ssl.SSLWantReadError:
                    await stream.send_all(out.read())
                    inc.write(await stream.receive_some(65536))
            for b in data:
                sslobj.write(b)
            await stream.send_all(out.read())  # Finished + 3 blocks in one write
            plain = b""
            while len(plain) < 3 * BLOCK_SIZE:
                inc.write(await stream.receive_some(65536))
                try:
                    while True:
                        plain += sslobj.read(BLOCK_SIZE)
                except ssl.SSLWantReadError:
                    pass
            assert plain == b"".join(data)
            await stream.aclose()

    run(main)


def _request_key_update(sslobj: ssl.SSLObject) -> None:
    """SSL_key_update(ssl, SSL_KEY_UPDATE_REQUESTED) on an SSLObject (no Python API):
    PySSLSocket is PyObject_HEAD, a weakref pointer, then SSL*."""
    import _ssl
    import ctypes

    lib = ctypes.CDLL(_ssl.__file__)
    lib.SSL_version.argtypes = [ctypes.c_void_p]
    lib.SSL_key_update.argtypes = [ctypes.c_void_p, ctypes.c_int]
    ptr = ctypes.c_void_p.from_address(id(sslobj._sslobj) + object.__basicsize__ + 8).value
    assert lib.SSL_version(ptr) == 0x0304  # the pointer is an SSL* in TLS 1.3
    assert lib.SSL_key_update(ptr, 1) == 1


def test_key_update_mid_stream(files, sctx):
    """A KeyUpdate requesting one back: both sides change keys and blocks still flow."""

    async def main():
        async with running_server(sctx) as st:
            conn = await open_block_connection("127.0.0.1", st.port, files.key_hash)
            first, second = blocks(4), blocks(4)
            out0, in0 = conn.tls_bytes_out, conn.tls_bytes_in
            assert await echoed(conn, 4, lambda: conn.send_blocks(first)) == first
            out1, in1 = conn.tls_bytes_out, conn.tls_bytes_in
            _request_key_update(conn._ssl)
            assert await echoed(conn, 4, lambda: conn.send_blocks(second)) == second
            assert st.received[0] == first + second
            # One KeyUpdate record each way: 5 header + 5 message + 1 type + 16 tag bytes.
            assert conn.tls_bytes_out - out1 == out1 - out0 + 27
            assert conn.tls_bytes_in - in1 == in1 - in0 + 27
            await conn.aclose()

    run(main)


def test_eof_returns_empty_list(files, sctx):
    async def main():
        async with running_server(sctx) as st:
            # close_notify, after a partial block (dropped, as a short read)
            conn = await open_block_connection("127.0.0.1", st.port, files.key_hash)
            await conn.send(b"x" * 1000)
            await conn.aclose()
            # TCP close without close_notify
            conn2 = await open_block_connection("127.0.0.1", st.port, files.key_hash)
            await conn2.stream.aclose()
            await until(lambda: len(st.ended) == 2)
            assert st.ended == ["eof", "eof"]
            assert st.received == [[], []]
            with pytest.raises(TransportClosed):  # the server closed them after the handler
                await st.conns[0].receive_blocks()

    run(main)


def test_client_sees_eof_when_server_closes(files, sctx):
    async def close_at_once(state, conn):
        state.conns.append(conn)

    async def main():
        async with running_server(sctx, handler=close_at_once) as st:
            conn = await open_block_connection("127.0.0.1", st.port, files.key_hash)
            assert await conn.receive_blocks() == []
            await conn.aclose()
            with pytest.raises(TransportClosed):
                await conn.send_blocks(blocks(1))
            with pytest.raises(TransportClosed):
                await conn.receive_blocks()

    run(main)


def test_corrupted_record_raises_transport_error(files, sctx):
    async def main():
        async with running_server(sctx) as st:
            conn = await open_block_connection("127.0.0.1", st.port, files.key_hash)
            conn._ssl.write(blocks(1)[0])
            raw = bytearray(conn._outgoing.read())
            raw[100] ^= 1  # inside the ciphertext: the AEAD tag check fails
            await conn.stream.send_all(bytes(raw))
            await until(lambda: st.ended)
            assert "TransportError" in st.ended[0]
            assert st.received == [[]]
            # The server sent its alert and closed: the client sees a TLS error.
            with pytest.raises(TransportError):
                await conn.receive_blocks()
            await conn.aclose()

    run(main)


# -- bad clients do not disturb others ----------------------------------------------------


def test_garbage_client_hello(files, sctx):
    async def main():
        async with running_server(sctx) as st:
            good = await open_block_connection("127.0.0.1", st.port, files.key_hash)
            bad = await trio.open_tcp_stream("127.0.0.1", st.port)
            await bad.send_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + os.urandom(3000))
            await until(lambda: st.handshake_errors)
            err = st.handshake_errors[0]
            assert type(err) is TransportError and "handshake failed" in str(err)
            # The garbage client is disconnected (an alert at most, then EOF).
            with trio.fail_after(5):
                while await bad.receive_some(65536):
                    pass
            await bad.aclose()
            data = blocks(5)
            await good.send_blocks(data)
            assert await receive_n(good, 5) == data
            # ...and new clients are still accepted.
            other = await open_block_connection("127.0.0.1", st.port, files.key_hash)
            await other.send_blocks(data)
            assert await receive_n(other, 5) == data
            await good.aclose()
            await other.aclose()

    run(main)


def test_server_handshake_timeout(files, sctx):
    async def main():
        async with running_server(sctx, handshake_timeout=1.0) as st:
            silent = await trio.open_tcp_stream("127.0.0.1", st.port)
            # A slow client does not block the accept loop: this one gets through meanwhile.
            good = await open_block_connection("127.0.0.1", st.port, files.key_hash)
            assert st.handshake_errors == []
            await until(lambda: st.handshake_errors)
            assert isinstance(st.handshake_errors[0], HandshakeTimeout)
            assert await silent.receive_some(100) == b""  # closed by the server
            await silent.aclose()
            await good.send_blocks(blocks(1))
            assert len(await receive_n(good, 1)) == 1
            await good.aclose()

    run(main)


def test_client_handshake_timeout(files):
    async def main():
        async with trio.open_nursery() as n:
            listeners = await n.start(
                functools.partial(
                    trio.serve_tcp, lambda s: trio.sleep_forever(), 0, host="127.0.0.1"
                )
            )
            port = listeners[0].socket.getsockname()[1]
            with pytest.raises(HandshakeTimeout):
                await open_block_connection("127.0.0.1", port, files.key_hash, timeout=0.3)
            n.cancel_scope.cancel()

    run(main)


def test_connection_refused_is_transport_closed(files):
    async def main():
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        with pytest.raises(TransportClosed):
            await open_block_connection("127.0.0.1", port, files.key_hash, timeout=5)

    run(main)


def test_operations_before_handshake_rejected(sctx):
    async def main():
        s1, s2 = trio.socket.socketpair()
        conn = BlockConnection(trio.SocketStream(s1), sctx, server_side=True)
        with pytest.raises(TransportError):
            await conn.receive_blocks()
        with pytest.raises(TransportError):
            await conn.send_blocks(blocks(1))
        await conn.aclose()
        s2.close()

    run(main)


def test_handler_transport_error_ends_only_that_connection(files, sctx):
    async def failing(state, conn):
        state.conns.append(conn)
        raise TransportClosed("handler gave up")

    async def main():
        async with running_server(sctx, handler=failing) as st:
            for _ in range(3):
                conn = await open_block_connection("127.0.0.1", st.port, files.key_hash)
                assert await conn.receive_blocks() == []
                await conn.aclose()
            assert len(st.conns) == 3

    run(main)



# -- TLS on the socket itself (the server's connections) ----------------------------------


def test_server_connections_run_tls_on_their_socket(files, sctx):
    """The server side is a SocketBlockConnection: no memory BIOs; its byte counters come
    from OpenSSL's socket BIO and agree with the client's; it can also be a client."""
    from smpfast.transport.socket_tls import SocketBlockConnection

    async def main():
        async with running_server(sctx) as st:
            conn = await open_block_connection("127.0.0.1", st.port, files.key_hash)
            await conn.send_blocks(blocks(3))
            await receive_n(conn, 3)
            server = st.conns[0]
            assert isinstance(server, SocketBlockConnection)
            assert not hasattr(server, "_incoming")
            assert server.tls_version == "TLSv1.3" and server.alpn == "smp/1"
            assert server.tls_unique == conn.tls_unique and len(server.tls_unique) == 32
            assert server.local_port == st.port
            await until(lambda: server.tls_bytes_out == conn.tls_bytes_in)
            assert conn.tls_bytes_out == server.tls_bytes_in > 3 * BLOCK_SIZE
            await conn.aclose()

            stream = await trio.open_tcp_stream("127.0.0.1", st.port)
            client = SocketBlockConnection(stream, client_context(), server_side=False)
            await client.handshake(5)
            assert client.tls_unique is not None
            data = blocks(4)
            got = []

            async def reader():
                while len(got) < 4:
                    got.extend(await client.receive_blocks())

            async with trio.open_nursery() as nursery:
                nursery.start_soon(reader)
                await client.send_blocks(data[:1])
                await client.send_blocks(data[1:])
            assert got == data
            await client.aclose()
            await client.aclose()  # idempotent
            with pytest.raises(TransportClosed):
                await client.receive_blocks()

    run(main)

