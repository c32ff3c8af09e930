"""Abusive clients the server must survive, end to end over real TLS on 127.0.0.1.

Every test asserts that (a) the abusive client gets the reference's error answer or a clean
disconnect, (b) a well-behaved client on other connections keeps working during and after
the abuse and (c) a message stored before the abuse is still delivered (``witnessed``, see
abuse_support.py); where memory matters the server runs as a child process and (d) its peak
RSS (/proc/<pid>/status VmHWM) stays under a generous bound.

The abusive clients speak through the project's transport and client library where those
can say what they must, and through raw sockets and hand-built blocks where they cannot.
"""

from __future__ import annotations

import copy
import logging
import random
from collections import Counter

import pytest
import trio

import smpfast.client as sc
from smpfast import _core as core
from smpfast.crypto.keys import Alg, generate_private_key
from smpfast.limits import raise_open_files_limit
from smpfast.protocol import commands as C
from smpfast.protocol import errors as E
from smpfast.protocol import versions as V
from smpfast.protocol.address import parse_server_address
from smpfast.protocol.handshake import ClientHandshake
from smpfast.protocol.transmission import decode_client_transmissions, t_for_auth
from smpfast.testing.process import ServerProcess, free_port, init_data_dir
from smpfast.transport import TransportError, open_block_connection

from abuse_support import (
    client_hello,
    corr_id,
    proc_status_kib,
    raw_session,
    read_until_closed,
    send_ignoring_close,
    signed_transmission,
    witnessed,
)

#: Short timeouts for the tests that wait for the server to give up on a client.
TLS_TIMEOUT = 2.0
SMP_HANDSHAKE_TIMEOUT = 2.0
#: How long the tests wait for the server to close a connection: far above the timeouts.
CLOSE_WAIT = 30.0


async def _eventually(condition, timeout: float = CLOSE_WAIT) -> None:
    """Wait until ``condition()`` holds (the server reacts to a close asynchronously)."""
    with trio.fail_after(timeout):
        while not condition():
            await trio.sleep(0.05)


def _random(seed: int) -> random.Random:
    return random.Random(seed)  # reproducible garbage


@pytest.fixture
def abuse_run(trio_run, caplog):
    """``trio_run``, then: nothing of smpfast (the in-process server, the clients) logged
    an error. Abusive input is the client's doing, not a server bug: it earns no ERROR
    line and no traceback."""
    caplog.set_level(logging.INFO, logger="smpfast")

    def run(async_fn, *args, timeout: float):
        result = trio_run(async_fn, *args, timeout=timeout)
        errors = [f"{r.name}: {r.getMessage()} {r.exc_info[1]!r}" if r.exc_info else f"{r.name}: {r.getMessage()}"
                  for r in caplog.records if r.levelno >= logging.ERROR and r.name.startswith("smpfast")]
        assert not errors, f"{len(errors)} error(s) logged, the first: {errors[0]}"
        return result

    return run


@pytest.fixture
def server_process(tmp_path):
    """``smpfast start`` in a child process (its RSS is its own), on a fresh data dir;
    stopped with SIGTERM, which it must survive to exit 0 with no traceback logged."""
    data = tmp_path / "server"
    init_data_dir(data, free_port())
    proc = ServerProcess(data)
    proc.start()
    try:
        yield proc
    finally:
        code = proc.stop()
    log = proc.log()
    assert code == 0, log
    assert "Traceback" not in log, log


# ---------------------------------------------------------------- 1. garbage at each layer


def test_random_bytes_without_tls_are_dropped(smp_server, abuse_run):
    """TCP clients that send random bytes instead of a ClientHello are disconnected (with at
    most a TLS alert), whatever the amount; nobody else notices."""

    async def garbage(port: int, size: int, seed: int) -> bytes:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            await send_ignoring_close(stream, _random(seed).randbytes(size))
            with trio.fail_after(CLOSE_WAIT):
                return await read_until_closed(stream)

    async def main():
        async with smp_server(tls_handshake_timeout=TLS_TIMEOUT) as srv:
            async with witnessed(srv.address):
                answers: dict[int, bytes] = {}

                async def one(size, seed):
                    answers[size] = await garbage(srv.port, size, seed)

                async with trio.open_nursery() as nursery:
                    for seed, size in enumerate([1, 5, 100, 517, 16384, 100_000, 1_000_000]):
                        nursery.start_soon(one, size, seed)
                for size, answer in answers.items():
                    # nothing, or TLS alert records (content type 21)
                    assert answer == b"" or answer[0] == 0x15, (size, answer[:16])
                    assert len(answer) < 64, (size, len(answer))

    abuse_run(main, timeout=90)


def test_truncated_client_hello_is_closed(smp_server, abuse_run):
    """A ClientHello cut short is closed by the server: at once when the client then closes
    its side, at the TLS handshake timeout when it keeps the connection open."""
    hello = client_hello()
    cuts = [1, 5, 50, len(hello) // 2, len(hello) - 1]

    async def truncated(port: int, cut: int, half_close: bool) -> bytes:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            await stream.send_all(hello[:cut])
            if half_close:
                await stream.send_eof()
            with trio.fail_after(CLOSE_WAIT):
                return await read_until_closed(stream)

    async def main():
        async with smp_server(tls_handshake_timeout=TLS_TIMEOUT) as srv:
            async with witnessed(srv.address):
                answers = {}

                async def one(cut, half_close):
                    answers[cut, half_close] = await truncated(srv.port, cut, half_close)

                async with trio.open_nursery() as nursery:
                    for cut in cuts:
                        for half_close in (True, False):
                            nursery.start_soon(one, cut, half_close)
                assert len(answers) == 2 * len(cuts)
                for key, answer in answers.items():
                    # the server never got a whole ClientHello: it cannot have answered it
                    assert answer == b"" or answer[0] == 0x15, (key, answer[:16])
                    assert len(answer) < 64, (key, len(answer))
            # a whole ClientHello still gets a ServerHello
            stream = await trio.open_tcp_stream("127.0.0.1", srv.port)
            async with stream:
                await stream.send_all(hello)
                with trio.fail_after(CLOSE_WAIT):
                    assert (await stream.receive_some(65536))[:1] == b"\x16"

    abuse_run(main, timeout=90)


async def _expect_closed(conn, what: str) -> None:
    """The server closes ``conn`` without sending a block (a TLS alert is fine)."""
    with trio.fail_after(CLOSE_WAIT):
        try:
            blocks = await conn.receive_blocks()
        except TransportError:
            blocks = []
    assert blocks == [], f"{what}: the server answered {len(blocks)} block(s)"
    await conn.aclose()


def test_random_bytes_after_the_tls_handshake(smp_server, abuse_run):
    """After a completed TLS handshake: random bytes on the socket (not TLS records) before
    or after the SMP handshake, and random plaintext instead of the client hello (a whole
    block of it, or less than a block and then silence), each cost only that connection."""

    async def connected(port, key_hash):
        conn = await open_block_connection("127.0.0.1", port, key_hash)
        [hello] = await conn.receive_blocks()  # the server hello
        assert len(hello) == V.BLOCK_SIZE
        return conn

    async def main():
        async with smp_server(tls_handshake_timeout=TLS_TIMEOUT, handshake_timeout=SMP_HANDSHAKE_TIMEOUT) as srv:
            async with witnessed(srv.address):
                rnd = _random(1)
                # raw bytes under TLS, before the SMP handshake
                for size in (1, 1000, 40_000):
                    conn = await connected(srv.port, srv.key_hash)
                    await send_ignoring_close(conn.stream, rnd.randbytes(size))
                    await _expect_closed(conn, f"{size} raw bytes before the SMP handshake")
                # raw bytes under TLS, after the SMP handshake (at least a record header:
                # less is a client that has not finished its record yet, which only the
                # inactive-client check ends)
                for size in (5, 1000, 40_000):
                    session = await raw_session(srv.address)
                    await send_ignoring_close(session.conn.stream, rnd.randbytes(size))
                    await _expect_closed(session.conn, f"{size} raw bytes after the SMP handshake")
                # random plaintext instead of the client hello: a block or more is refused
                # at once, less than a block waits for the SMP handshake timeout
                for size in (V.BLOCK_SIZE, 3 * V.BLOCK_SIZE + 5, 100, V.BLOCK_SIZE - 1):
                    conn = await connected(srv.port, srv.key_hash)
                    await conn.send(rnd.randbytes(size))
                    await _expect_closed(conn, f"{size} random bytes as the client hello")
            # every connection is gone from the server, the abusive ones included
            await _eventually(lambda: not srv.server.connections)

    abuse_run(main, timeout=120)


# ---------------------------------------------------------------- 2. garbage blocks


async def _events_until_pong(client) -> list:
    """PING on ``client``; the events that arrived before its PONG."""
    await client.ping()
    events = []
    while True:
        try:
            events.append(client.events.receive_nowait())
        except trio.WouldBlock:
            return events


def test_random_blocks_after_the_smp_handshake_get_err_answers(smp_server, abuse_run):
    """Random 16 KB blocks (and random bytes that are not a whole number of blocks) after
    the SMP handshake: every block is answered with ERR (almost always ERR BLOCK: a block
    that cannot be unpadded or split, as the reference's tGetBlock/tParse), and the
    connection keeps working."""

    async def main():
        async with smp_server() as srv:
            async with witnessed(srv.address):
                async with sc.connect(srv.address) as noisy:
                    rnd = _random(2)
                    errors: list = []
                    unpaddable = 0
                    for i in range(60):
                        block = rnd.randbytes(V.BLOCK_SIZE)
                        await noisy.connection.send(block)
                        events = await _events_until_pong(noisy)
                        if int.from_bytes(block[:2], "big") > V.BLOCK_SIZE - 2:
                            # cannot be unpadded: the reference's one ERR BLOCK for the block
                            assert events == [(b"", C.Err(E.BLOCK))], (i, events)
                            unpaddable += 1
                        assert events, f"random block {i} got no answer"
                        for event in events:
                            assert isinstance(event.message, C.Err), event
                            errors.append(event.message.error)
                    assert unpaddable > 0 and errors.count(E.BLOCK) >= unpaddable
                    # 3.3 random blocks, then the rest of the 4th: four blocks of answers
                    head = rnd.randbytes(3 * V.BLOCK_SIZE + 5000)
                    await noisy.connection.send(head)
                    await noisy.connection.send(rnd.randbytes(V.BLOCK_SIZE - 5000))
                    events = await _events_until_pong(noisy)
                    assert len(events) >= 4 and all(isinstance(e.message, C.Err) for e in events)
                    assert not noisy.closed

    abuse_run(main, timeout=90)


def test_blocks_of_255_garbage_transmissions(smp_server, abuse_run):
    """Full batches of 255 bad transmissions (random bytes; unknown commands; SENDs to a
    secured queue with bad signatures): each transmission gets its own ERR, the connection
    keeps working and the attacked queue receives nothing."""

    async def main():
        async with smp_server() as srv:
            async with witnessed(srv.address):
                async with sc.connect(srv.address) as owner, sc.connect(srv.address) as noisy:
                    q = await owner.create_queue(subscribe=False)
                    sender_key = generate_private_key(Alg.ED25519)
                    await owner.secure(q, sender_key.public.der)
                    stranger = generate_private_key(Alg.ED25519)
                    rnd = _random(3)
                    sid, v = noisy.session_id, noisy.version

                    def random_t(i):
                        return rnd.randbytes(rnd.randrange(1, 60))

                    def unknown_t(i):
                        return core.encode_transmission(b"", corr_id(1, i), b"", b"XYZZY %d" % i, sid, True, False)

                    def forged_send_t(i):
                        cmd = C.Send(C.MsgFlags(False, b""), b"forged %d" % i).encode(v)
                        corr = corr_id(2, i)
                        sig = stranger.sign(t_for_auth(sid, corr, q.snd_id, cmd))
                        return core.encode_transmission(sig, corr, q.snd_id, cmd, sid, True, False)

                    for kind, make, expected in [
                        ("random", random_t, None),
                        ("unknown", unknown_t, E.CMD_UNKNOWN),
                        ("forged", forged_send_t, E.AUTH),
                    ]:
                        for block_no in range(8):
                            # 255 of them, or as many as fit (signed SENDs: ~120)
                            ts = [make(i) for i in range(V.MAX_BATCH)]
                            [count, *_] = core.group_transmissions([len(t) for t in ts], V.BATCH_BUDGET, V.MAX_BATCH)
                            assert count == V.MAX_BATCH or kind == "forged"
                            await noisy.connection.send(core.encode_batch(ts[:count], V.BLOCK_SIZE))
                            events = await _events_until_pong(noisy)
                            assert len(events) == count, (kind, block_no, len(events))
                            for event in events:
                                assert isinstance(event.message, C.Err), (kind, event)
                                if expected is not None:
                                    assert event.message.error == expected, (kind, event)
                    assert not noisy.closed
                    assert srv.store.message_count(q.rcv_id) == 0
                    assert await owner.get(q) is None

    abuse_run(main, timeout=120)


# ---------------------------------------------------------------- 6. authorization


RECIPIENT_COMMANDS = ("SUB", "GET", "ACK", "KEY", "OFF", "DEL", "NKEY", "NDEL", "QUE")
SENDER_COMMANDS = ("SEND", "SKEY")
NOTIFIER_COMMANDS = ("NSUB",)

#: How each request of the table is wrong, and the reference's answer (verifyTransmission,
#: checkCredentials); None: the same answer for every command (given by the function).
AUTH_VARIANTS = {
    "unsigned": lambda name: E.AUTH if name == "SEND" else E.CMD_NO_AUTH,  # A is secured
    "stranger's key": lambda name: E.AUTH,
    "stranger's Ed448 key": lambda name: E.AUTH,
    "stranger's X25519 authenticator": lambda name: E.AUTH,
    "the other queue's key": lambda name: E.AUTH,
    "the other queue's id": lambda name: E.AUTH,
    "an id of the wrong party": lambda name: E.AUTH,
    "an absent queue": lambda name: E.AUTH,
    "no entity id": lambda name: E.CMD_NO_ENTITY if name == "SEND" else E.CMD_NO_AUTH,
}


class _Queue:
    """A secured queue with notifications, one stored message, and all its keys."""

    async def make(self, owner, sender):
        self.q = await owner.create_queue(subscribe=False)
        self.sender_key = generate_private_key(Alg.ED25519)
        await owner.secure(self.q, self.sender_key.public.der)
        self.ntf = await owner.enable_notifications(self.q)
        self.body = b"stored in " + self.q.rcv_id.hex().encode()
        await sender.send(self.q.snd_id, self.body, self.sender_key)
        return self

    def entity(self, party: str) -> bytes:
        return {"recipient": self.q.rcv_id, "sender": self.q.snd_id, "notifier": self.ntf.notifier_id}[party]

    def key(self, party: str):
        return {"recipient": self.q.rcv_auth_key, "sender": self.sender_key, "notifier": self.ntf.notifier_key}[party]


def _party(name: str) -> str:
    if name in RECIPIENT_COMMANDS:
        return "recipient"
    return "sender" if name in SENDER_COMMANDS else "notifier"


def _command(name: str) -> C.Command:
    fresh = generate_private_key(Alg.ED25519).public.der
    return {
        "SUB": C.Sub(),
        "GET": C.Get(),
        "ACK": C.Ack(b""),  # empty: whatever message was delivered
        "KEY": C.Key(fresh),
        "OFF": C.Off(),
        "DEL": C.Del(),
        "NKEY": C.Nkey(fresh, generate_private_key(Alg.X25519).public.der),
        "NDEL": C.Ndel(),
        "QUE": C.Que(),
        "SEND": C.Send(C.MsgFlags(False, b""), b"forged"),
        "SKEY": C.Skey(fresh),
        "NSUB": C.Nsub(),
    }[name]


def _request(variant: str, name: str, a: _Queue, b: _Queue):
    """The request of table cell (variant, command): aimed at queue ``a``."""
    party = _party(name)
    entity, key = a.entity(party), a.key(party)
    if variant == "unsigned":
        key = None
    elif variant == "stranger's key":
        key = generate_private_key(Alg.ED25519)
    elif variant == "stranger's Ed448 key":
        key = generate_private_key(Alg.ED448)
    elif variant == "stranger's X25519 authenticator":
        key = generate_private_key(Alg.X25519)
    elif variant == "the other queue's key":
        key = b.key(party)
    elif variant == "the other queue's id":
        entity = b.entity(party)
    elif variant == "an id of the wrong party":
        entity = a.entity("sender" if party != "sender" else "recipient")
    elif variant == "an absent queue":
        entity = bytes(reversed(entity))
    elif variant == "no entity id":
        entity = b""
    else:
        raise AssertionError(variant)
    return entity, _command(name), key


def _state(srv, queues):
    """Everything a wrongly authorized command could change."""
    store, broker = srv.store, srv.server.broker
    out = {"queues": store.queue_count(), "notifiers": store.notifier_count()}
    for x in queues:
        rid = x.q.rcv_id
        head = store.peek_message(rid)
        out[rid] = (
            copy.deepcopy(store.get_queue(rid)),
            store.message_count(rid),
            None if head is None else (head.msg_id, head.body),
            rid in broker.subscriptions.subscriber,
            x.ntf.notifier_id in broker.subscriptions.ntf_subscriber,
            len(broker.notifications.get(x.ntf.notifier_id, [])),
        )
    return out


def test_every_authorization_check_refuses_and_changes_nothing(smp_server, abuse_run):
    """Table: every recipient, sender and notifier command, each wrongly authorized in each
    way of AUTH_VARIANTS, gets the reference's error and changes no state; the same
    requests rightly authorized then work (so the table tests what it says)."""
    names = RECIPIENT_COMMANDS + SENDER_COMMANDS + NOTIFIER_COMMANDS

    async def main():
        async with smp_server() as srv:
            async with witnessed(srv.address):
                async with sc.connect(srv.address) as owner, sc.connect(srv.address) as attacker:
                    a = await _Queue().make(owner, attacker)
                    b = await _Queue().make(owner, attacker)
                    before = _state(srv, [a, b])
                    cells = [(variant, name) for variant in AUTH_VARIANTS for name in names]
                    replies = await attacker.batch([_request(v, n, a, b) for v, n in cells])
                    got = {cell: reply for cell, reply in zip(cells, replies)}
                    wanted = {(v, n): C.Err(AUTH_VARIANTS[v](n)) for v, n in cells}
                    wrong = {cell: (got[cell], wanted[cell]) for cell in cells if got[cell] != wanted[cell]}
                    assert not wrong, wrong
                    assert _state(srv, [a, b]) == before
                    [(worker, attacker_conn)] = [(w, c) for w in srv.workers for c in w.connections
                                                 if c.peer is not None and c.peer.session_id == attacker.session_id]
                    assert not worker.delivery.subscriptions.has_any(attacker_conn.peer.id)

                    # the harness's right credentials work: QUE, SUB (+ MSG), NSUB, SEND
                    right = [(a.entity(_party(n)), _command(n), a.key(_party(n))) for n in ("QUE", "SUB", "NSUB")]
                    info, sub_ok, nsub_ok = await attacker.batch(right)
                    assert isinstance(info, C.Info) and sub_ok == C.OK and nsub_ok == C.OK
                    entity_id, msg = await attacker.next_event(timeout=10)
                    assert entity_id == a.q.rcv_id and sc.decrypt_msg(a.q, msg).body == a.body
                    await attacker.send(a.q.snd_id, b"rightly signed", a.sender_key)
                    assert srv.store.message_count(a.q.rcv_id) == 2
                    # queue b, untouched by the right requests, still holds its message
                    msg = await owner.get(b.q)
                    assert sc.decrypt_msg(b.q, msg).body == b.body

    abuse_run(main, timeout=90)


# ---------------------------------------------------------------- 3. NEW flood


#: NEWs on one connection, as many as the tester sent (~8 s here).
NEW_FLOOD = 20_000
NEW_BATCH = 500


@pytest.mark.slow
def test_new_flood_on_one_connection(smp_server, abuse_run):
    """Thousands of NEW, in full blocks, on one connection (the default subscribe, so the
    connection ends up subscribed to all of them): every one gets IDS, the store holds
    exactly these queues and they work; when the connection goes, so do its thousands of
    subscriptions; the witness is served throughout."""

    async def main():
        async with smp_server("lmdb") as srv:
            async with witnessed(srv.address):
                queues_before = srv.store.queue_count()
                async with sc.connect(srv.address) as flooder:
                    created = []
                    for _ in range(NEW_FLOOD // NEW_BATCH):
                        created += await flooder.create_queues(NEW_BATCH)
                    assert len({q.rcv_id for q in created}) == NEW_FLOOD
                    assert len({q.snd_id for q in created}) == NEW_FLOOD
                    assert all(srv.store.get_queue(q.rcv_id) is not None for q in created)
                    # (+ the witness's queue of the moment, if any)
                    assert srv.store.queue_count() - queues_before in (NEW_FLOOD, NEW_FLOOD + 1)
                    # a sample of the queues works: their subscriber (the flooder) gets MSG
                    sample = created[:: NEW_FLOOD // 20] + [created[-1]]
                    async with sc.connect(srv.address) as snd:
                        for q in sample:
                            await snd.send(q.snd_id, b"to " + q.rcv_id.hex().encode())
                    for _ in sample:
                        entity_id, msg = await flooder.next_event(timeout=30)
                        [q] = [q for q in sample if q.rcv_id == entity_id]
                        assert sc.decrypt_msg(q, msg).body == b"to " + q.rcv_id.hex().encode()
                    assert sum(len(w.broker.subscriptions.subscriber) for w in srv.workers) >= NEW_FLOOD
                # the flooder's subscriptions are dropped with its connection
                await _eventually(lambda: sum(len(w.broker.subscriptions.subscriber) for w in srv.workers) < NEW_FLOOD)
                assert srv.store.queue_count() - queues_before in (NEW_FLOOD, NEW_FLOOD + 1)

    abuse_run(main, timeout=180)


# ---------------------------------------------------------------- 4. slow reader


#: The slow reader's queues, each holding one ~15 KB message, and its blocks: each block
#: SUBs every queue SUBS_PER_QUEUE times (each SUB answers OK, then MSG again) and SENDs
#: once to a sink queue. Unbounded, the answers would take SLOW_BLOCKS * 100 * 15 KB.
SLOW_QUEUES = 20
SUBS_PER_QUEUE = 5
SLOW_BLOCKS = 100
SLOW_MESSAGE = 15_000
#: How long the slow reader does not read (the tester: 60 s).
SLOW_PAUSE = 12.0
#: Growth of the server's peak RSS allowed over its RSS before the slow reader: generous,
#: and still well under the ~150 MB the unread answers would take if they were all made.
SLOW_RSS_BOUND_KIB = 64 * 1024


@pytest.mark.slow
def test_a_slow_reader_keeps_server_memory_bounded(server_process, abuse_run):
    """A client sends blocks of SUBs (each provoking a 15 KB MSG) and SENDs, and reads
    nothing for SLOW_PAUSE seconds: the server's memory stays bounded and others are
    served; then it reads, and every request has exactly its one answer (or the server
    has disconnected it cleanly: then what it got is a consistent prefix)."""
    address = server_process.address
    pid = server_process.pid

    async def main():
        async with witnessed(address):
            async with sc.connect(address) as owner:
                queues = await owner.create_queues(SLOW_QUEUES, subscribe=False)
                sink = await owner.create_queue(subscribe=False)
                bodies = {q.rcv_id: q.rcv_id + b"." * (SLOW_MESSAGE - 24) for q in queues}
                for q in queues:
                    await owner.send(q.snd_id, bodies[q.rcv_id])
            session = await raw_session(address)
            conn = session.conn
            by_rid = {q.rcv_id: q for q in queues}
            expected = {}  # corrId -> what answers it
            blocks = []
            for b in range(SLOW_BLOCKS):
                ts = []
                for i in range(SLOW_QUEUES * SUBS_PER_QUEUE):
                    q = queues[i % SLOW_QUEUES]
                    corr = corr_id(1, b, i)
                    expected[corr] = "SUB"
                    ts.append(signed_transmission(session, corr, q.rcv_id, C.Sub(), q.rcv_auth_key))
                corr = corr_id(2, b)
                expected[corr] = "SEND"
                send = C.Send(C.MsgFlags(False, b""), b"%d" % b)
                ts.append(signed_transmission(session, corr, sink.snd_id, send, None))
                blocks.append(core.encode_batch(ts, V.BLOCK_SIZE))
            # the last block: a PING, whose PONG comes after every answer above
            expected[corr_id(3)] = "PING"
            ping = signed_transmission(session, corr_id(3), b"", C.Ping(), None)
            blocks.append(core.encode_batch([ping], V.BLOCK_SIZE))

            rss_before = proc_status_kib(pid, "VmRSS")

            async def send_all():
                for block in blocks:
                    try:
                        await conn.send(block)  # blocks while the server does not read us
                    except TransportError:
                        return  # disconnected: the reader below sees it too

            async with trio.open_nursery() as nursery:
                nursery.start_soon(send_all)
                await trio.sleep(SLOW_PAUSE)  # not reading; the witness works meanwhile
                growth_paused = proc_status_kib(pid, "VmHWM") - rss_before

                answers: dict[bytes, list] = {}
                msgs: Counter = Counter()
                msg_ids: dict[bytes, bytes] = {}
                closed = False
                while corr_id(3) not in answers:
                    try:
                        with trio.fail_after(60):
                            got = await conn.receive_blocks()
                    except TransportError:
                        got = []
                    if not got:
                        closed = True
                        break
                    for block in got:
                        for r in decode_client_transmissions(block, session.version, session.session_id):
                            assert r.error is None, r
                            if r.corr_id:
                                assert r.corr_id in expected, r
                                answers.setdefault(r.corr_id, []).append(r.response)
                                continue
                            assert isinstance(r.response, C.Msg) and r.entity_id in by_rid, r
                            msgs[r.entity_id] += 1
                            first = msg_ids.setdefault(r.entity_id, r.response.msg_id)
                            assert r.response.msg_id == first  # always the same head message
                            if msgs[r.entity_id] == 1:
                                q = by_rid[r.entity_id]
                                assert sc.decrypt_msg(q, r.response).body == bodies[q.rcv_id]
                if closed:
                    nursery.cancel_scope.cancel()
            growth = proc_status_kib(pid, "VmHWM") - rss_before
            await conn.aclose()

        assert growth_paused < SLOW_RSS_BOUND_KIB, (growth_paused, rss_before)
        assert growth < SLOW_RSS_BOUND_KIB, (growth, rss_before)
        assert all(len(replies) == 1 for replies in answers.values()), "a request answered twice"
        kinds = Counter(expected[corr] for corr in answers)
        for corr, [reply] in answers.items():
            want = {"PING": C.PONG, "SUB": C.Sok(None)}.get(expected[corr], C.OK)  # SOK: v16+
            assert reply == want, (expected[corr], reply)
        if closed:  # a clean disconnect: what arrived is a consistent prefix
            assert sum(msgs.values()) <= kinds["SUB"], (msgs, kinds)
        else:  # every request answered once; every SUB re-delivered its queue's message
            assert kinds == {"SUB": SLOW_BLOCKS * SLOW_QUEUES * SUBS_PER_QUEUE, "SEND": SLOW_BLOCKS, "PING": 1}
            assert msgs == {rid: SLOW_BLOCKS * SUBS_PER_QUEUE for rid in by_rid}
        # the acknowledged SENDs are stored, in order (SLOW_BLOCKS is under the quota)
        async with sc.connect(address) as owner:
            for b in range(kinds["SEND"]):
                msg = await owner.get(sink)
                assert sc.decrypt_msg(sink, msg).body == b"%d" % b
                await owner.ack(sink, msg.msg_id)
            if not closed:
                assert await owner.get(sink) is None

    abuse_run(main, timeout=240)


# ---------------------------------------------------------------- 5. connection floods


#: Idle connections held open at once (the tester: 5,000): half stop after TLS, half
#: after the SMP handshake.
IDLE_FLOOD = 1000
#: Peak RSS growth allowed per idle connection: generous (measured: ~56 KiB).
IDLE_RSS_PER_CONNECTION_KIB = 256


@pytest.mark.slow
def test_a_flood_of_idle_connections(server_process, abuse_run):
    """IDLE_FLOOD idle connections (TLS only, or TLS + SMP handshake) while the witness
    works: the server's memory grows by a bounded amount per connection, and afterwards
    every idle SMP session still answers PING."""
    assert raise_open_files_limit() > 2 * IDLE_FLOOD + 100
    address = server_process.address
    pid = server_process.pid
    port = int(address.rsplit(":", 1)[1])

    async def main():
        async with witnessed(address) as witness:
            rss_before = proc_status_kib(pid, "VmRSS")
            tls_only, sessions = [], []
            limiter = trio.CapacityLimiter(32)
            key_hash = parse_server_address(address)[0].key_hash

            async def open_one(i):
                async with limiter:
                    if i % 2:
                        session = await raw_session(address)
                        sessions.append(session)
                    else:
                        conn = await open_block_connection("127.0.0.1", port, key_hash)
                        tls_only.append(conn)

            try:
                async with trio.open_nursery() as nursery:
                    for i in range(IDLE_FLOOD):
                        nursery.start_soon(open_one, i)
                assert len(tls_only) + len(sessions) == IDLE_FLOOD
                # all held open while the witness makes a few more round trips
                trips = witness.round_trips
                with trio.fail_after(120):
                    while witness.round_trips < trips + 3:
                        await trio.sleep(0.1)
                growth = proc_status_kib(pid, "VmHWM") - rss_before

                # every idle SMP session is still served
                pongs = []

                async def ping(session, n):
                    corr = corr_id(4, n)
                    await session.conn.send(core.encode_batch(
                        [signed_transmission(session, corr, b"", C.Ping(), None)], V.BLOCK_SIZE))
                    with trio.fail_after(60):
                        [block] = await session.conn.receive_blocks()
                    [r] = decode_client_transmissions(block, session.version, session.session_id)
                    pongs.append((r.corr_id == corr, r.response))

                async with trio.open_nursery() as nursery:
                    for n, session in enumerate(sessions):
                        nursery.start_soon(ping, session, n)
                assert pongs == [(True, C.PONG)] * len(sessions)
            finally:
                with trio.CancelScope(shield=True):
                    for conn in tls_only + [s.conn for s in sessions]:
                        await conn.aclose()
        assert growth < IDLE_FLOOD * IDLE_RSS_PER_CONNECTION_KIB, (growth, rss_before)
        print(f"idle flood: peak RSS +{growth} KiB for {IDLE_FLOOD} connections")

    abuse_run(main, timeout=240)


#: Slowloris connections: ClientHellos sent a byte at a time (the TLS handshake
#: timeout must end them), and SMP client hellos sent a byte at a time after TLS (the SMP
#: handshake timeout must end them).
SLOWLORIS_TLS = 100
SLOWLORIS_SMP = 20
SLOWLORIS_BYTE_INTERVAL = 0.5


@pytest.mark.slow
def test_slowloris_handshakes_are_closed_at_the_handshake_timeouts(smp_server, abuse_run):
    """Handshakes sent a byte every SLOWLORIS_BYTE_INTERVAL seconds (a ClientHello would
    take minutes, an SMP client hello hours) are closed by the server at its handshake
    timeouts, before they are complete; the witness is served meanwhile."""
    hello = client_hello()

    async def tls_slowloris(port: int, results: list) -> None:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        sent = 0
        async with stream:
            async with trio.open_nursery() as nursery:

                async def dribble():
                    nonlocal sent
                    for i in range(len(hello)):
                        if not await send_ignoring_close(stream, hello[i : i + 1]):
                            return
                        sent += 1
                        await trio.sleep(SLOWLORIS_BYTE_INTERVAL)

                nursery.start_soon(dribble)
                with trio.fail_after(CLOSE_WAIT):
                    answer = await read_until_closed(stream)
                nursery.cancel_scope.cancel()
        results.append((sent, answer))

    async def smp_slowloris(port: int, key_hash: bytes, results: list) -> None:
        conn = await open_block_connection("127.0.0.1", port, key_hash)
        [server_hello] = await conn.receive_blocks()
        block = ClientHandshake(V.AUTH_CMDS, key_hash).encode()
        sent = 0
        async with trio.open_nursery() as nursery:

            async def dribble():
                nonlocal sent
                for i in range(len(block)):
                    try:
                        await conn.send(block[i : i + 1])
                    except TransportError:
                        return
                    sent += 1
                    await trio.sleep(SLOWLORIS_BYTE_INTERVAL)

            nursery.start_soon(dribble)
            with trio.fail_after(CLOSE_WAIT):
                try:
                    blocks = await conn.receive_blocks()
                except TransportError:
                    blocks = []
            nursery.cancel_scope.cancel()
        await conn.aclose()
        results.append((sent, blocks))

    async def main():
        async with smp_server(tls_handshake_timeout=TLS_TIMEOUT, handshake_timeout=SMP_HANDSHAKE_TIMEOUT) as srv:
            async with witnessed(srv.address):
                tls_results: list = []
                smp_results: list = []
                async with trio.open_nursery() as nursery:
                    for _ in range(SLOWLORIS_TLS):
                        nursery.start_soon(tls_slowloris, srv.port, tls_results)
                    for _ in range(SLOWLORIS_SMP):
                        nursery.start_soon(smp_slowloris, srv.port, srv.key_hash, smp_results)
                assert len(tls_results) == SLOWLORIS_TLS and len(smp_results) == SLOWLORIS_SMP
                for sent, answer in tls_results:
                    assert sent < len(hello)  # closed before the ClientHello was complete
                    assert answer == b"" or answer[0] == 0x15, answer[:16]
                for sent, blocks in smp_results:
                    assert sent < V.BLOCK_SIZE and blocks == []
            await _eventually(lambda: not srv.server.connections)

    abuse_run(main, timeout=120)


def test_blocks_before_a_corrupt_tls_record_are_still_served(smp_server, trio_run):
    """A valid block and a corrupt TLS record in one read: the block is executed (as by a
    server reading record by record), then the connection closes."""
    from smpfast.client.session import open_session
    from smpfast.protocol.transmission import encode_client_transmission

    async def main():
        async with smp_server() as srv:
            async with sc.connect(srv.address) as owner:
                q = await owner.create_queue(subscribe=False)
                s = await open_session(srv.address, block_encryption=False)
                t = encode_client_transmission(s.version, s.session_id, b"c" * 24, q.snd_id,
                                               C.Send(C.MsgFlags(False, b""), b"hello"))
                s.conn._ssl.write(core.encode_batch([t], V.BLOCK_SIZE))
                bad_record = b"\x17\x03\x03\x00\x20" + b"\x00" * 32
                await s.conn.stream.send_all(s.conn._outgoing.read() + bad_record)
                await _eventually(lambda: srv.store.message_count(q.rcv_id) == 1)
                msg = await owner.get(q)
                assert sc.decrypt_msg(q, msg).body == b"hello"
                await s.conn.aclose()

    trio_run(main)
