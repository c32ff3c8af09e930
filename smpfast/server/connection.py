"""One client connection: the SMP handshake, then a reader and a writer task.

The reader hands every block to the broker (synchronously, so a block's commands are
atomic with respect to other connections). The writer owns the outbox of answer batches: it waits
until the outbox is non-empty, waits until every batch's commit generation is durable, packs
each batch into as few blocks as fit (never two batches in one block, as the reference) and
writes all the blocks with one send.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass

import nacl.bindings as nb
import trio

from .. import _core as core
from ..crypto import session_key
from ..crypto.blockcrypt import server_block_ciphers
from ..crypto.keys import Alg, PublicKey, x25519_dh
from ..protocol import versions as V
from ..protocol.commands import CertChainPubKey
from ..protocol.errors import ParseError
from ..protocol.handshake import ClientHandshake, ServerHandshake
from ..transport import BlockConnection, TransportError
from .broker import Broker, Client
from .committer import CommitFailed, GroupCommitter

log = logging.getLogger(__name__)

SMP_HANDSHAKE_TIMEOUT = 120.0
# The highest SMP version all of whose features this server implements (v8 adds proxying).
SERVER_MAX_VERSION = 7
# Blocks with at least this many signatures to check verify them on a worker thread: a
# thread hand-off costs ~50-100 µs, one Ed25519 verification ~50 µs.
THREAD_VERIFY_MIN = 8
# A connection whose client does not read its answers stops being read once this many
# answer batches wait in its outbox (the reference bounds its send queue at 128 too).
OUTBOX_LIMIT = 128
# Fairness: a reader yields to the other connections once it has spent this long on
# blocks since it last yielded. A block is never split (its commands stay atomic), so a
# 255-command block (~1 ms) is one slice by itself.
READ_SLICE = 0.0005


@dataclass(frozen=True, slots=True)
class Identity:
    """What every connection's handshake needs from the server's credentials."""

    key_hash: bytes  # SHA-256 of the CA certificate: the address fingerprint
    chain_der: tuple[bytes, ...]  # [server certificate, CA certificate]
    private_key: object  # the TLS (online) private key, signs session keys
    min_version: int = V.MIN_VERSION
    max_version: int = SERVER_MAX_VERSION


class Connection:
    def __init__(
        self,
        conn: BlockConnection,
        broker: Broker,
        committer: GroupCommitter,
        identity: Identity,
        handshake_timeout: float = SMP_HANDSHAKE_TIMEOUT,
        outbox_limit: int = OUTBOX_LIMIT,
        verify_limiter: trio.CapacityLimiter | None = None,
        read_slice: float = READ_SLICE,
    ) -> None:
        self.conn = conn
        self.broker = broker
        self.committer = committer
        self.identity = identity
        self.handshake_timeout = handshake_timeout
        self.outbox_limit = outbox_limit
        # Shared by all connections: worker threads verifying large batches never take
        # every core from the event loop.
        self.verify_limiter = verify_limiter
        self.read_slice = read_slice
        self.client: Client | None = None
        self._wakeup = trio.Event()
        self._drained = trio.Event()
        self._encrypt = None
        self._decrypt = None

    async def run(self) -> None:
        pending = await self._handshake()
        if pending is None:
            return
        client = self.client
        assert client is not None
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._writer, nursery.cancel_scope)
                await self._reader(pending)
                nursery.cancel_scope.cancel()
        finally:
            self.broker.disconnect(client)

    # ------------------------------------------------------------------ handshake

    async def _handshake(self) -> list[bytes] | None:
        """Exchange hello blocks; returns blocks that arrived after the client hello, or
        None when the connection must close (the reference sends nothing then)."""
        session_id = self.conn.tls_unique
        if session_id is None:
            return None
        ident = self.identity
        max_version = ident.max_version if self.conn.alpn is not None else V.MIN_VERSION
        vrange = V.VersionRange(ident.min_version, max_version)
        session_private = os.urandom(32)
        cert_key = None
        if max_version >= V.AUTH_CMDS:
            public = nb.crypto_scalarmult_base(session_private)
            signed = session_key.sign_session_key(PublicKey(Alg.X25519, public), ident.private_key)
            cert_key = CertChainPubKey(list(ident.chain_der), signed)
        await self.conn.send(ServerHandshake(vrange, session_id, cert_key).encode())
        with trio.move_on_after(self.handshake_timeout):
            blocks = await self.conn.receive_blocks()
            if not blocks:
                return None
            try:
                hello = ClientHandshake.parse(blocks[0])
            except ParseError:
                return None
            if hello.key_hash != ident.key_hash or hello.version not in vrange:
                return None
            version = hello.version
            if hello.block_encryption:
                secret = x25519_dh(session_private, hello.client_key[-32:])
                self._encrypt, self._decrypt = server_block_ciphers(session_id, secret)
            self.client = Client(
                version=version,
                session_id=session_id,
                session_private=session_private if version >= V.AUTH_CMDS else None,
                notify=self._notify,
            )
            return blocks[1:]
        return None

    # ------------------------------------------------------------------ reading

    async def _reader(self, pending: list[bytes]) -> None:
        client = self.client
        assert client is not None
        # Inactivity counts from the handshake (the reference starts both clocks when the
        # client is created), not from the epoch: a silent new client is not idle for ages.
        client.last_received = client.last_sent = self.broker.clock()
        outbox_limit = self.outbox_limit
        blocks = pending
        while True:
            slice_end = time.perf_counter() + self.read_slice
            for block in blocks:
                if len(client.outbox) >= outbox_limit:
                    while len(client.outbox) >= outbox_limit:
                        await self._drained.wait()  # backpressure: the client is not reading
                    slice_end = time.perf_counter() + self.read_slice
                elif time.perf_counter() >= slice_end:
                    # Fairness: one read can hold 16 blocks of 255 commands each; let the
                    # other connections run between blocks, not only between reads.
                    await trio.lowlevel.checkpoint()
                    slice_end = time.perf_counter() + self.read_slice
                await self._process_block(client, block)
            await trio.lowlevel.checkpoint()
            try:
                blocks = await self.conn.receive_blocks()
            except TransportError:
                return
            if not blocks:
                return

    async def _process_block(self, client: Client, block: bytes) -> None:
        broker = self.broker
        if self._decrypt is not None:
            try:
                block = self._decrypt.decrypt(block)
            except Exception:
                block = b""  # the chain advanced; answer ERR BLOCK and go on
        prepared = broker.prepare_block(client, block)
        if prepared is None:
            return
        if len(prepared.requests) >= THREAD_VERIFY_MIN:
            # A large batch verifies on a worker thread (the core releases the GIL), so the
            # event loop serves other connections meanwhile; the shared limiter keeps such
            # threads from crowding the loop off the CPU.
            results = await trio.to_thread.run_sync(
                client.verifier.verify_batch, prepared.requests, limiter=self.verify_limiter
            )
            broker.finish_block(client, prepared, results, reload=True)
        else:
            broker.finish_block(client, prepared, client.verifier.verify_batch(prepared.requests))

    # ------------------------------------------------------------------ writing

    def _notify(self) -> None:
        self._wakeup.set()

    async def _writer(self, cancel_scope: trio.CancelScope) -> None:
        client = self.client
        assert client is not None
        committer = self.committer
        budget_size = V.ENCRYPTED_BLOCK_PAD if self._encrypt is not None else V.BLOCK_SIZE
        while True:
            await self._wakeup.wait()
            self._wakeup = trio.Event()
            if not client.outbox:
                continue
            needed = max(gen for gen, _ in client.outbox)
            if needed > committer.durable:
                try:
                    await committer.wait_durable(needed)
                except CommitFailed:
                    # Nothing that failed may be acknowledged: close, the client retries.
                    log.warning("closing a connection whose writes were not committed")
                    cancel_scope.cancel()
                    return
            batches, client.outbox = client.outbox, []
            drained, self._drained = self._drained, trio.Event()
            drained.set()
            out = []
            for _, transmissions in batches:
                start = 0
                for count in core.group_transmissions([len(t) for t in transmissions]):
                    block = core.encode_batch(transmissions[start : start + count], budget_size)
                    start += count
                    out.append(self._encrypt.encrypt(block) if self._encrypt is not None else block)
            try:
                await self.conn.send(b"".join(out))
            except TransportError:
                cancel_scope.cancel()
                return
            client.last_sent = self.broker.clock()
