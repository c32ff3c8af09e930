"""The measured phases: subscribe, send, receive, each batched and unbatched.

Every phase runs on fresh connections and is measured as counter deltas around it, so
connection setup (TLS, hello blocks) and queue creation are never counted.
"""

from __future__ import annotations

import contextvars
import os
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field

import trio

from ..client import BadResponse, ClientError, SMPClient, connect
from ..client.types import RecipientQueue
from ..crypto.keys import Alg, PrivateKey, generate_private_key
from ..protocol import commands as C
from . import BLOCK_SIZE

CONNECT_TIMEOUT = 30.0


class TrafficError(Exception):
    """The server did not behave as the measurement needs (e.g. ERR to a SEND)."""


@dataclass(frozen=True, slots=True)
class Direction:
    """Traffic in one direction of one connection during one phase."""

    blocks: int
    transmissions: int
    tls_bytes: int

    @property
    def smp_bytes(self) -> int:
        return self.blocks * BLOCK_SIZE

    def as_dict(self) -> dict:
        return {
            "blocks": self.blocks,
            "transmissions": self.transmissions,
            "smp_bytes": self.smp_bytes,
            "tls_bytes": self.tls_bytes,
        }


@dataclass(frozen=True, slots=True)
class Measurement:
    version: int
    n: int
    phase: str  # subscribe | send | receive
    mode: str  # batched | unbatched
    up: Direction  # client -> server
    down: Direction  # server -> client
    seconds: float

    @property
    def alpn(self) -> str | None:
        return None if self.version == 6 else "smp/1"

    def as_dict(self) -> dict:
        return {
            "version": self.version,
            "alpn": self.alpn,
            "n": self.n,
            "phase": self.phase,
            "mode": self.mode,
            "seconds": round(self.seconds, 6),
            "client_to_server": self.up.as_dict(),
            "server_to_client": self.down.as_dict(),
        }


@dataclass(frozen=True, slots=True)
class _Snapshot:
    blocks_sent: int
    transmissions_sent: int
    tls_out: int
    blocks_received: int
    transmissions_received: int
    tls_in: int
    t: float

    @classmethod
    def of(cls, c: SMPClient) -> _Snapshot:
        return cls(c.blocks_sent, c.transmissions_sent, c.tls_bytes_out,
                   c.blocks_received, c.transmissions_received, c.tls_bytes_in, time.perf_counter())

    def until(self, later: _Snapshot, version: int, n: int, phase: str, mode: str) -> Measurement:
        up = Direction(later.blocks_sent - self.blocks_sent,
                       later.transmissions_sent - self.transmissions_sent, later.tls_out - self.tls_out)
        down = Direction(later.blocks_received - self.blocks_received,
                         later.transmissions_received - self.transmissions_received, later.tls_in - self.tls_in)
        return Measurement(version, n, phase, mode, up, down, later.t - self.t)


#: ``--socks5``: the SOCKS5 proxy every connection of the measurement goes through (None:
#: direct). A context variable, so that the tasks of one run see it and nothing else does.
SOCKS5: contextvars.ContextVar[str | None] = contextvars.ContextVar("smpfast_traffic_socks5", default=None)


@asynccontextmanager
async def open_client(address: str, version: int, timeout: float = CONNECT_TIMEOUT) -> AsyncIterator[SMPClient]:
    """A client at exactly ``version``: v6 without ALPN (as pre-v7 clients), else ALPN."""
    if version == 6:
        kwargs: dict = {"alpn": None}
    else:
        kwargs = {}
    async with connect(address, min_version=version, max_version=version, timeout=timeout,
                       socks=SOCKS5.get(), **kwargs) as c:
        yield c


async def server_versions(address: str, timeout: float = CONNECT_TIMEOUT) -> tuple[int, int]:
    """The server's version range as announced to an ALPN client."""
    async with connect(address, timeout=timeout, socks=SOCKS5.get()) as c:
        return c.server_vrange.min, c.server_vrange.max


def _expect(replies: Sequence, kinds: tuple[type, ...], what: str) -> None:
    for reply in replies:
        if not isinstance(reply, kinds):
            detail = reply.error if isinstance(reply, (C.Err, BadResponse)) else reply
            raise TrafficError(f"{what}: unexpected reply {detail}")


_SUB_OK = (C.Ok, C.Sok)


@dataclass
class QueueSet:
    """N queues created for one (version, N) row, each secured with its own sender key."""

    queues: list[RecipientQueue]
    sender_keys: list[PrivateKey] = field(repr=False)


async def create_queue_set(setup: SMPClient, n: int) -> QueueSet:
    queues = await setup.create_queues(n, subscribe=False)
    keys = [generate_private_key(Alg.ED25519) for _ in queues]
    replies = await setup.batch([(q.rcv_id, C.Key(k.public.der), q.rcv_auth_key) for q, k in zip(queues, keys)])
    _expect(replies, (C.Ok,), "KEY")
    return QueueSet(queues, keys)


async def delete_queue_set(setup: SMPClient, qs: QueueSet) -> None:
    await setup.batch([(q.rcv_id, C.Del(), q.rcv_auth_key) for q in qs.queues])


async def subscribe_phase(address: str, version: int, qs: QueueSet, batched: bool) -> Measurement:
    queues = qs.queues
    mode = "batched" if batched else "unbatched"
    async with open_client(address, version) as c:
        before = _Snapshot.of(c)
        if batched:
            _expect(await c.subscribe_many(queues, check=False), _SUB_OK, "SUB")
        else:
            for q in queues:
                await c.subscribe(q)
        return before.until(_Snapshot.of(c), version, len(queues), "subscribe", mode)


async def message_phases(address: str, version: int, qs: QueueSet, body: bytes, batched: bool,
                         timeout: float) -> tuple[Measurement, Measurement]:
    """(send, receive): one message into each queue, delivered to a subscribed recipient
    and acknowledged."""
    queues, keys = qs.queues, qs.sender_keys
    n = len(queues)
    mode = "batched" if batched else "unbatched"
    by_rid = {q.rcv_id: q for q in queues}
    async with AsyncExitStack() as stack:
        recipient = await stack.enter_async_context(open_client(address, version))
        sender = await stack.enter_async_context(open_client(address, version))
        _expect(await recipient.subscribe_many(queues, check=False), _SUB_OK, "SUB (setup)")
        r0, s0 = _Snapshot.of(recipient), _Snapshot.of(sender)
        flags = C.MsgFlags(False)
        if batched:
            replies = await sender.batch([(q.snd_id, C.Send(flags, body), k) for q, k in zip(queues, keys)])
            _expect(replies, (C.Ok,), "SEND")
        else:
            for q, k in zip(queues, keys):
                await sender.send(q.snd_id, body, sender_key=k)
        send = s0.until(_Snapshot.of(sender), version, n, "send", mode)
        delivered: list[tuple[RecipientQueue, bytes]] = []
        with trio.fail_after(timeout):
            while len(delivered) < n:
                rid, msg = await recipient.next_event()
                if not isinstance(msg, C.Msg) or rid not in by_rid:
                    raise TrafficError(f"recipient: unexpected event {msg!r}")
                delivered.append((by_rid[rid], msg.msg_id))
        if batched:
            replies = await recipient.batch([(q.rcv_id, C.Ack(mid), q.rcv_auth_key) for q, mid in delivered])
            _expect(replies, (C.Ok,), "ACK")
        else:
            for q, mid in delivered:
                if await recipient.ack(q, mid) is not None:
                    raise TrafficError("ACK: a second message was delivered")
        receive = r0.until(_Snapshot.of(recipient), version, n, "receive", mode)
        return send, receive


async def measure_row(address: str, version: int, n: int, message_size: int, timeout: float) -> list[Measurement]:
    """All phases of one (version, N) row, unbatched first."""
    body = os.urandom(message_size)
    out: list[Measurement] = []
    async with open_client(address, version) as setup:
        qs = await create_queue_set(setup, n)
        try:
            for batched in (False, True):
                out.append(await subscribe_phase(address, version, qs, batched))
            for batched in (False, True):
                out.extend(await message_phases(address, version, qs, body, batched, timeout))
        finally:
            try:
                await delete_queue_set(setup, qs)
            except ClientError:
                pass  # best effort: a failing run must report its own error
    return out


async def measure_sweep(address: str, versions: Sequence[int], sweep: Sequence[int], message_size: int,
                        timeout: float, progress=None) -> list[Measurement]:
    results: list[Measurement] = []
    for version in versions:
        for n in sweep:
            row = await measure_row(address, version, n, message_size, timeout)
            results.extend(row)
            if progress is not None:
                progress(version, n)
    return results
