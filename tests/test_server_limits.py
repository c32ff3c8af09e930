"""Server limits over real TLS on 127.0.0.1: the connection cap, handshake timeouts, the
answer-queue (outbox) bound, fair reading between connections, and memory trimming.

Timeouts are configured short and waited for with generous bounds; nothing asserts a
duration."""

from __future__ import annotations

import gc
import logging
import platform
import weakref

import pytest
import trio
import trio.testing

import smpfast.client as sc
from smpfast import _core as core
from smpfast.protocol.handshake import ClientHandshake, ServerHandshake
from smpfast.protocol.session import BlockReceived
from smpfast.server import memory
from smpfast.server.broker import Broker
from smpfast.server.committer import GroupCommitter
from smpfast.server.connection import Connection, Identity
from smpfast.store import MemoryStore
from smpfast.transport import ConnectionLimit, open_block_connection

PING = core.encode_transmission(b"", b"p", b"", b"PING", b"", True, False)
PING_BLOCK = core.encode_batch([PING] * 255, 16384)


async def _closed_by_server(stream: trio.SocketStream, within: float = 20.0) -> bool:
    """Read (and drop) whatever comes until EOF; True if the server closed in time."""
    with trio.move_on_after(within):
        try:
            while await stream.receive_some(65536):
                pass
        except trio.BrokenResourceError:
            pass  # a reset is a close too
        return True
    return False


async def _smp_connected(port: int, key_hash: bytes):
    """TLS and the server hello, but no client hello yet."""
    conn = await open_block_connection("127.0.0.1", port, key_hash)
    [hello] = await conn.receive_blocks()
    ServerHandshake.parse(hello)
    return conn


# --------------------------------------------------------------------------- connection cap


def test_connection_cap_refuses_the_extra_connection_and_keeps_the_others(smp_server, trio_run, caplog):
    caplog.set_level(logging.WARNING, logger="smpfast.transport")

    async def main():
        async with smp_server(max_connections=3) as srv:
            async with sc.connect(srv.address) as a, sc.connect(srv.address) as b, \
                    sc.connect(srv.address) as c:
                for _ in range(3):
                    with pytest.raises(sc.ConnectError):
                        async with sc.connect(srv.address, timeout=20):
                            pass
                for client in (a, b, c):
                    await client.ping()
                q = await a.create_queue()
                await b.send(q.snd_id, b"still served")
                with trio.fail_after(10):
                    _, msg = await a.next_event()
                assert sc.decrypt_msg(q, msg).body == b"still served"
                assert srv.server.limit.refused == 3
                await c.aclose()
                # The slot is free once the server has closed its side: retry until then.
                with trio.fail_after(20):
                    while True:
                        try:
                            async with sc.connect(srv.address, timeout=20) as d:
                                await d.ping()
                            break
                        except sc.ConnectError:
                            await trio.sleep(0.1)
                await a.ping()

    trio_run(main, timeout=60)
    refusing = [r for r in caplog.records if "refusing new ones" in r.getMessage()]
    assert len(refusing) == 1  # once for the spell, not once per connection
    assert any("accepting connections again (3 refused" in r.getMessage() for r in caplog.records)


def test_connection_cap_counts_tls_handshakes_in_progress(smp_server, trio_run):
    async def main():
        async with smp_server(max_connections=2, tls_handshake_timeout=60.0) as srv:
            silent = [await trio.open_tcp_stream("127.0.0.1", srv.port) for _ in range(2)]
            with trio.fail_after(20):
                while srv.server.limit.active < 2:
                    await trio.sleep(0.05)
            with pytest.raises(sc.ConnectError):
                async with sc.connect(srv.address, timeout=20):
                    pass
            for s in silent:
                await s.aclose()
            with trio.fail_after(20):
                while srv.server.limit.active:
                    await trio.sleep(0.05)
            async with sc.connect(srv.address) as c:
                await c.ping()

    trio_run(main, timeout=60)


def test_connection_limit_logs_once_per_spell(caplog):
    caplog.set_level(logging.WARNING, logger="smpfast.transport")
    limit = ConnectionLimit(2)
    assert limit.acquire() and limit.acquire()
    assert not limit.acquire() and not limit.acquire()
    assert limit.active == 2 and limit.refused == 2 and limit.peak == 2
    limit.release()
    assert limit.acquire()  # back under the cap after a spell: one "again" line
    assert not limit.acquire()
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 3
    assert "refusing" in messages[0] and "2 refused" in messages[1] and "refusing" in messages[2]
    assert ConnectionLimit(None).acquire()


# --------------------------------------------------------------------------- handshake timeouts


def test_tls_handshake_timeout_closes_a_slowloris_client(smp_server, trio_run):
    async def main():
        async with smp_server(tls_handshake_timeout=1.0) as srv:
            stream = await trio.open_tcp_stream("127.0.0.1", srv.port)
            # A handshake record header announcing 512 bytes, then one byte at a time:
            # every byte arrives well within the timeout, the handshake never completes.
            await stream.send_all(b"\x16\x03\x01\x02\x00")

            async def trickle():
                try:
                    for _ in range(200):
                        await trio.sleep(0.2)
                        await stream.send_all(b"\x01")
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    pass

            async with trio.open_nursery() as nursery:
                nursery.start_soon(trickle)
                assert await _closed_by_server(stream)
                nursery.cancel_scope.cancel()
            await stream.aclose()
            async with sc.connect(srv.address) as c:  # others are served
                await c.ping()

    trio_run(main, timeout=60)


def test_smp_handshake_timeout_closes_a_silent_client_after_tls(smp_server, trio_run):
    async def main():
        async with smp_server(handshake_timeout=1.0) as srv:
            conn = await _smp_connected(srv.port, srv.key_hash)
            with trio.fail_after(20):
                assert await conn.receive_blocks() == []  # closed, no client hello was sent
            await conn.aclose()
            async with sc.connect(srv.address) as c:
                await c.ping()

    trio_run(main, timeout=60)


# --------------------------------------------------------------------------- outbox bound


def test_outbox_bound_stops_reading_a_client_that_does_not_read(smp_server, trio_run):
    """A client that sends and never reads fills its answer queue up to ``outbox_limit``;
    then the server stops reading it, so TCP stops the client's sends: the server holds at
    most ``outbox_limit`` batches and what the socket buffers hold, however long it sends."""
    limit = 4

    async def main():
        async with smp_server(outbox_limit=limit) as srv:
            conn = await _smp_connected(srv.port, srv.key_hash)
            await conn.send(ClientHandshake(7, srv.key_hash).encode())
            peak = 0
            server_side = None
            sent = blocked = 0
            while sent < 8000:  # 131 MB: far more than any socket buffers on loopback
                with trio.move_on_after(5) as scope:
                    await conn.send(PING_BLOCK)
                if scope.cancelled_caught:
                    blocked = 1
                    break
                sent += 1
                for c in (c for w in srv.workers for c in w.connections):
                    if c.peer is not None and c.conn is not None:
                        server_side = c
                        peak = max(peak, len(c.outbox))
            assert blocked, "the server kept reading a client that never reads"
            assert 0 < peak <= limit
            assert server_side is not None
            assert len(server_side.outbox) <= limit
            # What the server took in is bounded by what it answered and could not send.
            assert server_side.conn.tls_bytes_in < sent * 16384
            async with sc.connect(srv.address) as other:  # everyone else is served
                await other.ping()
            await conn.aclose()  # close_notify cannot go out (full buffers): bounded, then close

    trio_run(main, timeout=120)


# --------------------------------------------------------------------------- fair reading


class _PlainSession:
    """An established session without block encryption (what v7 has)."""

    def receive_block(self, block: bytes) -> list[BlockReceived]:
        return [BlockReceived(block)]


class _BlocksOnce:
    """A BlockConnection stand-in: one read of ``blocks``, then the peer closes."""

    def __init__(self, blocks: list[bytes]) -> None:
        self._reads = [blocks]
        self.read_waits = 0  # it never waits for a socket

    async def receive_blocks(self) -> list[bytes]:
        await trio.lowlevel.checkpoint()
        return self._reads.pop() if self._reads else []


def test_reader_yields_between_the_blocks_of_one_read():
    """16 blocks of 255 PINGs arrive in one read; with no time slice the reader lets other
    tasks run between blocks instead of answering all 4080 commands in one go."""
    store = MemoryStore()
    broker = Broker(store)
    identity = Identity(b"k" * 32, (), None)
    conn = Connection(_BlocksOnce([PING_BLOCK] * 16), broker, GroupCommitter(store), identity,
                      outbox_limit=1000, read_slice=0.0)
    conn.peer = broker.connect(7, b"s" * 32, None)
    conn.session = _PlainSession()
    seen: list[int] = []

    async def main():
        async with trio.open_nursery() as nursery:
            nursery.start_soon(conn._reader, [])

            async def observe():
                while len(conn.outbox) < 16:
                    seen.append(len(conn.outbox))
                    await trio.lowlevel.checkpoint()
                seen.append(len(conn.outbox))

            nursery.start_soon(observe)

    trio.run(main)
    assert seen[-1] == 16 and all(len(batch) == 255 for _, batch in conn.outbox)
    steps = [b - a for a, b in zip(seen, seen[1:])]
    assert max(steps) <= 2  # one block per reader step (two when trio reverses a batch)
    assert len([s for s in steps if s]) >= 8


def _signed_sends(session_id: bytes, key, queues: list[bytes], bad: set[int] = frozenset()) -> bytes:
    """One block of Ed25519-signed SENDs to the sender ids ``queues``; the signatures at
    the indexes in ``bad`` are of other bytes."""
    from smpfast.protocol import commands as C
    from smpfast.protocol.transmission import encode_client_transmission, t_for_auth

    send = C.Send(C.MsgFlags(False, b""), b"x").encode(7)
    ts = []
    for i, entity in enumerate(queues):
        corr = b"c%023d" % i
        signed = t_for_auth(session_id, corr, entity, send)
        auth = key.sign(signed + b"!" if i in bad else signed)
        ts.append(encode_client_transmission(7, session_id, corr, entity, send, auth))
    return core.encode_batch(ts, 16384)


def _queue_with_sender(store, sender_key, n: int) -> bytes:
    from smpfast.store.records import MODE_MESSAGING, QueueRecord

    sid = b"s%023d" % n
    store.add_queue(QueueRecord(b"r%023d" % n, [sender_key.public.der], bytes(32), sid,
                                sender_key=sender_key.public.der, queue_mode=MODE_MESSAGING))
    return sid


def test_signatures_of_one_tick_are_verified_together_off_the_event_loop(monkeypatch):
    """Blocks of several connections that arrive in one tick: their Ed25519 checks are
    verified in one core call on the verifier's thread, and every command still gets its
    own verdict (OK for a good signature, ERR AUTH for a bad one or a missing queue)."""
    import threading

    from smpfast.crypto.keys import Alg, generate_private_key
    from smpfast.protocol import commands as C
    from smpfast.server.signatures import TickVerifier

    calls = []
    real = core.verify_batch

    def counting(requests):
        calls.append((len(requests), threading.current_thread() is threading.main_thread()))
        return real(requests)

    monkeypatch.setattr(core, "verify_batch", counting)
    session_id = b"s" * 32
    key = generate_private_key(Alg.ED25519)

    async def main():
        store = MemoryStore()
        broker = Broker(store)
        good = [_queue_with_sender(store, key, n) for n in range(3)]
        verifier = TickVerifier(thread_min=2)
        blocks = [
            _signed_sends(session_id, key, good, bad={1}),  # OK, AUTH, OK
            _signed_sends(session_id, key, [b"x" * 24, good[0]]),  # AUTH (no queue), OK
        ]
        conns = []
        for block in blocks:
            conn = Connection(_BlocksOnce([block]), broker, GroupCommitter(store), Identity(b"k" * 32, (), None),
                              tick_verifier=verifier)
            conn.peer = broker.connect(7, session_id, None)
            conn.session = _PlainSession()
            conns.append(conn)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(verifier._run)
            for conn in conns:
                nursery.start_soon(conn._reader, [])
            while sum(len(c.outbox) for c in conns) < 3:  # 2 batches of the first, 1 of the second
                await trio.sleep(0.01)
            nursery.cancel_scope.cancel()
        answers = [[type(a[2]).__name__ if not isinstance(a[2], C.Err) else str(a[2].error)
                    for _, batch in c.outbox for a in batch] for c in conns]
        return answers, verifier

    answers, verifier = trio.run(main)
    assert calls == [(5, False)]  # one call for both blocks, on the worker thread
    assert (verifier.ticks, verifier.blocks, verifier.threaded) == (1, 2, 1)
    ok = type(C.OK).__name__
    # errors come first, in their own batch (as the reference sends them)
    assert sorted(answers[0]) == sorted(["AUTH", ok, ok]) and answers[0][0] == "AUTH"
    assert sorted(answers[1]) == sorted(["AUTH", ok])


@pytest.mark.parametrize("engaged", [False, True])
def test_few_signatures_are_verified_on_the_event_loop(monkeypatch, engaged):
    """Below ``thread_min`` signatures a thread round trip would cost more than the checks:
    at a light load the reader verifies them itself (parking would cost more than the
    checks); once the signature rate engages the verifier, the block joins its tick, which
    is verified in the verifier's task (still on the event loop: too few for the thread)."""
    import threading

    from smpfast.crypto.keys import Alg, generate_private_key
    from smpfast.server.signatures import TickVerifier

    calls = []
    real = core.verify_batch
    monkeypatch.setattr(core, "verify_batch", lambda requests: calls.append(
        threading.current_thread() is threading.main_thread()) or real(requests))
    session_id = b"s" * 32
    key = generate_private_key(Alg.ED25519)

    async def main():
        store = MemoryStore()
        broker = Broker(store)
        sid = _queue_with_sender(store, key, 0)
        verifier = TickVerifier(thread_min=3, engage_rate=0.0 if engaged else 1e9)
        verifier.engaged = engaged
        conn = Connection(_BlocksOnce([_signed_sends(session_id, key, [sid, sid])]), broker, GroupCommitter(store),
                          Identity(b"k" * 32, (), None), tick_verifier=verifier)
        conn.peer = broker.connect(7, session_id, None)
        conn.session = _PlainSession()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(verifier._run)
            nursery.start_soon(conn._reader, [])
            while not conn.outbox:
                await trio.sleep(0.01)
            nursery.cancel_scope.cancel()
        return conn.outbox, verifier

    outbox, verifier = trio.run(main)
    assert calls == [True]
    assert (verifier.ticks, verifier.threaded) == ((1, 0) if engaged else (0, 0))
    assert len(outbox[0][1]) == 2  # both SENDs answered


def test_the_signature_rate_engages_the_tick_verifier():
    from smpfast.server import signatures

    verifier = signatures.TickVerifier(thread_min=100, engage_rate=1000.0)
    assert not verifier.wants(1)
    verifier._window_start -= signatures.WINDOW  # a window of 10 ms with 50 signatures: 5000/s
    assert verifier.wants(49) and verifier.engaged
    verifier._window_start -= signatures.WINDOW  # the next window: 1 signature, 100/s
    assert not verifier.wants(1) and not verifier.engaged
    assert verifier.wants(100)  # a block with thread_min signatures always goes


# --------------------------------------------------------------------------- memory


def test_trim_is_due_only_after_a_real_drop():
    assert not memory.trim_due(peak=10, active=0)  # fewer than TRIM_MIN_DROP closed
    assert not memory.trim_due(peak=100_000, active=99_000)  # everyday churn
    assert memory.trim_due(peak=1000, active=10)
    assert memory.trim_due(peak=memory.TRIM_MIN_DROP, active=0)


class _Node:
    pass


def test_release_free_memory_collects_cycles_and_trims_where_glibc_is():
    if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
        assert memory.can_trim_heap()
    gc.disable()  # only the release may collect the cycle below
    try:
        node = _Node()
        node.self = node
        alive = weakref.ref(node)
        del node
        assert alive() is not None
        released = memory.release_free_memory()
        assert alive() is None
    finally:
        gc.enable()
    assert released is False or memory.can_trim_heap()


def test_memory_is_trimmed_after_a_flood_of_connections(smp_server, trio_run, monkeypatch):
    trims: list[int] = []
    monkeypatch.setattr("smpfast.server.main.release_free_memory", lambda: trims.append(1) or True)

    async def main():
        async with smp_server(memory_trim_interval=0.2) as srv:
            streams = [await trio.open_tcp_stream("127.0.0.1", srv.port) for _ in range(memory.TRIM_MIN_DROP)]
            with trio.fail_after(20):
                while srv.server.limit.active < len(streams):
                    await trio.sleep(0.05)
            assert trims == []  # nothing closed yet
            for s in streams:
                await s.aclose()
            with trio.fail_after(20):
                while not trims:
                    await trio.sleep(0.05)
            assert srv.server.limit.peak == srv.server.limit.active  # reset after the trim

    trio_run(main, timeout=60)


# --------------------------------------------------------------------------- idle timeout


def test_a_new_silent_client_is_not_idle_before_the_ttl(smp_server, trio_run):
    """Inactivity is counted from the handshake: a client that has sent nothing yet is not
    expired at the first check (as if it had been idle since 1970)."""

    async def main():
        async with smp_server(inactive_ttl=3600.0, inactive_check_interval=0.1) as srv:
            async with sc.connect(srv.address) as silent:
                await trio.sleep(1.0)  # ten checks
                assert not silent.closed
                await silent.ping()

    trio_run(main)


@pytest.mark.slow
def test_limits_from_the_ini_apply_to_smpfast_start(tmp_path, trio_run):
    """[LIMITS] and [INACTIVE_CLIENTS] as an operator writes them, through `smpfast start`."""
    from smpfast.testing.process import ServerProcess, free_port, init_data_dir

    data = tmp_path / "data"
    port = free_port()
    address = init_data_dir(data, port)
    ini = data / "smpfast.ini"
    text = ini.read_text()
    for old, new in [
        ("max_connections = 10000", "max_connections = 2"),
        ("tls_handshake_timeout = 60", "tls_handshake_timeout = 1"),
        ("smp_handshake_timeout = 120", "smp_handshake_timeout = 1"),
        ("ttl = 21600", "ttl = 1"),
        ("check_interval = 3600", "check_interval = 1"),
    ]:
        assert old in text
        text = text.replace(old, new)
    ini.write_text(text)

    async def main():
        silent_tcp = await trio.open_tcp_stream("127.0.0.1", port)
        assert await _closed_by_server(silent_tcp)  # TLS handshake timeout
        await silent_tcp.aclose()
        _, key_hash = address.split("//")[1].split("@")[0], None
        async with sc.connect(address) as idle:
            srv = type("S", (), {"port": port, "key_hash": idle.server.key_hash})
            conn = await _smp_connected(srv.port, srv.key_hash)
            with trio.fail_after(20):
                assert await conn.receive_blocks() == []  # SMP handshake timeout
            await conn.aclose()
            await idle.ping()
            with trio.fail_after(30):  # no subscriptions: expired by [INACTIVE_CLIENTS]
                while not idle.closed:
                    await trio.sleep(0.1)
        async with sc.connect(address) as a, sc.connect(address) as b:
            await a.create_queue()  # subscribed clients are never expired
            await b.create_queue()
            for _ in range(3):
                with pytest.raises(sc.ConnectError):
                    async with sc.connect(address, timeout=20):
                        pass
            await trio.sleep(2.5)  # a few inactivity checks
            await a.ping()
            await b.ping()

    with ServerProcess(data) as server:
        trio_run(main, timeout=120)
        log = server.log()
    assert 1 <= log.count("refusing new ones") <= server.workers, log  # one per spell of each worker
    assert "Traceback" not in log
