"""Helpers of test_abuse.py: a well-behaved witness client, a message stored before the
abuse, server memory from /proc, raw TLS ClientHellos and raw SMP sessions.

``witnessed(address)`` is the frame of every abuse test::

    async with witnessed(srv.address) as witness:
        ...abuse the server...
    # here: the witness made >= 1 round trip while the abuse ran, none failed, a fresh
    # client completes a round trip and the message stored before the abuse is delivered.
"""

from __future__ import annotations

import os
import ssl
import struct
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import AsyncIterator

import trio

import smpfast.client as sc
from smpfast.client.session import Session, open_session
from smpfast.crypto.keys import PrivateKey
from smpfast.protocol import commands as C
from smpfast.protocol.transmission import encode_client_transmission, t_for_auth
from smpfast.transport import client_context

#: A bound on one witness round trip (PING, NEW, SEND, MSG, ACK): generous, for a loaded
#: machine; it is a liveness bound, not a speed claim.
ROUND_TRIP_TIMEOUT = 30.0


# ---------------------------------------------------------------- the witness


@dataclass
class StoredProbe:
    """A message stored (and acknowledged OK) before the abuse."""

    queue: sc.RecipientQueue
    body: bytes


async def store_probe(address: str) -> StoredProbe:
    async with sc.connect(address) as rcv, sc.connect(address) as snd:
        q = await rcv.create_queue(subscribe=False)
        body = b"stored before the abuse " + os.urandom(8).hex().encode()
        await snd.send(q.snd_id, body)
        return StoredProbe(q, body)


async def check_probe(address: str, probe: StoredProbe) -> None:
    async with sc.connect(address) as rcv:
        msg = await rcv.get(probe.queue)
        assert msg is not None, "the message stored before the abuse is gone"
        assert sc.decrypt_msg(probe.queue, msg).body == probe.body
        assert await rcv.ack(probe.queue, msg.msg_id) is None


async def round_trip(rcv: sc.SMPClient, snd: sc.SMPClient, label: bytes) -> None:
    """PING, then NEW + SEND + MSG + ACK + DEL on the witness's two connections."""
    with trio.fail_after(ROUND_TRIP_TIMEOUT):
        await rcv.ping()
        await snd.ping()
        q = await rcv.create_queue()
        await snd.send(q.snd_id, label)
        entity_id, msg = await rcv.next_event()
        assert entity_id == q.rcv_id and isinstance(msg, C.Msg), (entity_id, msg)
        assert sc.decrypt_msg(q, msg).body == label
        assert await rcv.ack(q, msg.msg_id) is None
        await rcv.delete(q)


class Witness:
    """A well-behaved client (one recipient and one sender connection, opened before the
    abuse) doing round trips in a loop until stopped."""

    def __init__(self) -> None:
        self.round_trips = 0
        self._stop = trio.Event()

    async def run(self, address: str, task_status=trio.TASK_STATUS_IGNORED) -> None:
        async with sc.connect(address) as rcv, sc.connect(address) as snd:
            task_status.started()
            while not self._stop.is_set():
                await round_trip(rcv, snd, b"witness %d" % self.round_trips)
                self.round_trips += 1
                with trio.move_on_after(0.2):
                    await self._stop.wait()


@asynccontextmanager
async def witnessed(address: str) -> AsyncIterator[Witness]:
    """See the module docstring. The witness's round trip in progress when the body ends
    was started during the abuse; it is awaited, so at least one falls in the abuse."""
    probe = await store_probe(address)
    witness = Witness()
    # The nursery is exited with no exception (as in conftest) so that a failing test
    # body's exception reaches pytest as itself, not wrapped in an ExceptionGroup.
    nursery_cm = trio.open_nursery()
    nursery = await nursery_cm.__aenter__()
    try:
        await nursery.start(witness.run, address)
        try:
            yield witness
        except BaseException:
            nursery.cancel_scope.cancel()
            raise
        witness._stop.set()
    finally:
        await nursery_cm.__aexit__(None, None, None)
    assert witness.round_trips >= 1
    async with sc.connect(address) as rcv, sc.connect(address) as snd:
        await round_trip(rcv, snd, b"after the abuse")
    await check_probe(address, probe)


# ---------------------------------------------------------------- server memory


def proc_status_kib(pid: int, field: str) -> int:
    """A ``kB`` field of /proc/<pid>/status: VmRSS (now) or VmHWM (peak RSS so far)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


# ---------------------------------------------------------------- raw TLS


def client_hello() -> bytes:
    """The first flight of a TLS client with the project's client profile: the
    ClientHello record(s), as they would go on the wire."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = client_context().wrap_bio(incoming, outgoing, server_side=False, server_hostname=None)
    try:
        tls.do_handshake()
    except ssl.SSLWantReadError:
        pass
    hello = outgoing.read()
    assert hello[:1] == b"\x16"  # a handshake record
    return hello


async def read_until_closed(stream: trio.SocketStream) -> bytes:
    """Everything the peer sends until it closes the connection (FIN or reset)."""
    received = bytearray()
    while True:
        try:
            data = await stream.receive_some(65536)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return bytes(received)
        if not data:
            return bytes(received)
        received += data


async def send_ignoring_close(stream: trio.SocketStream, data: bytes) -> bool:
    """Send ``data``; False when the peer had already closed the connection."""
    try:
        await stream.send_all(data)
        return True
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        return False


# ---------------------------------------------------------------- raw SMP sessions


async def raw_session(address: str) -> Session:
    """A connection after the SMP handshake whose blocks the test reads (or does not
    read) itself: no client reader runs on it. Without block encryption (v11+ encrypts
    only when the client sends a key), so the test's blocks are the plaintext batches."""
    return await open_session(address, block_encryption=False)


def corr_id(*numbers: int) -> bytes:
    """A 24-byte corrId naming the request (e.g. block and slot)."""
    return struct.pack(">3Q", *(list(numbers) + [0, 0, 0])[:3])


def signed_transmission(
    session: Session, corr: bytes, entity_id: bytes, command: C.Command, key: PrivateKey | None
) -> bytes:
    """One client transmission, authorized by ``key``'s signature (Ed25519/Ed448)."""
    cmd = command.encode(session.version)
    auth = b"" if key is None else key.sign(t_for_auth(session.session_id, corr, entity_id, cmd))
    return encode_client_transmission(session.version, session.session_id, corr, entity_id, cmd, auth)
