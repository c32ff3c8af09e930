"""The client's connection machinery: encoding and packing transmissions, correlating
responses by corrId, routing server events, the reader task and closing.

Typed SMP calls live in ``client.py``; this module knows nothing about queues.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
from collections.abc import Sequence

import trio

from .. import _core as core
from ..crypto.auth import cb_nonce, service_authorized, service_signature
from ..crypto.keys import Alg, PrivateKey, as_private_key, dh_box_key
from ..protocol.commands import Command, Response
from ..protocol.errors import BLOCK
from ..protocol.transmission import (
    decode_client_transmissions,
    encode_client_transmission,
    t_for_auth,
)
from ..transport import TransportError
from .errors import ClientClosed, ClientError, ResponseError, TransmissionTooLarge, UnsupportedByVersion
from .session import Session
from .types import BadResponse, Event, Reply

log = logging.getLogger("smpfast.client")

CORR_ID_LEN = 24
#: X25519 authenticator box keys kept per client (queue key → box key with the server key).
BOX_KEY_CACHE = 4096

#: One request of a batch: (entity id, command or its encoded bytes, authorizing key or None).
Request = tuple[bytes, "Command | bytes", "PrivateKey | None"]


def _uses_service_auth(cmd: bytes) -> bool:
    """protocol.commands.uses_service_auth on the encoded command: NEW, SUB, NSUB."""
    return cmd == b"SUB" or cmd == b"NSUB" or cmd.startswith(b"NEW ")


class _Waiter:
    """Results of one request/batch: slot i is filled by the response with corrId i."""

    __slots__ = ("results", "remaining", "done", "error")

    def __init__(self, n: int) -> None:
        self.results: list[Reply | None] = [None] * n
        self.remaining = n
        self.done = trio.Event()
        self.error: ClientClosed | None = None


class ClientBase:
    """One SMP session: see the package docstring for the contract."""

    def __init__(self, session: Session, *, event_buffer: float = math.inf) -> None:
        self._session = session
        self._conn = session.conn
        self.version: int = session.version
        self.session_id: bytes = session.session_id
        self.server_vrange = session.server_vrange
        self.server = session.server
        self.basic_auth: bytes | None = session.basic_auth
        self.server_session_key: bytes | None = session.server_session_key
        # A service session's service: NEW, SUB and NSUB are then authorized twice.
        self.service = session.service
        self._service_key = None if self.service is None else PrivateKey(Alg.ED25519, self.service.key)
        self.host: str = session.host
        self.via_socks: bool = session.via_socks
        self.session_box_key: bytes | None = session.session_box_key
        self.server_cert_key = session.server_cert_key
        self._blocks = session.blocks
        self._pending: dict[bytes, tuple[_Waiter, int]] = {}
        self._box_keys: dict[bytes, bytes] = {}
        self._event_send, self.events = trio.open_memory_channel[Event](event_buffer)
        self._running = False
        self._closed = False
        self.close_reason: str | None = None
        self._closed_event = trio.Event()
        self._reader_scope: trio.CancelScope | None = None
        self._nursery_cm = None
        # SMP-level counters (transmission blocks only; the hello blocks are not counted)
        self.transmissions_sent = 0
        self.transmissions_received = 0
        self.blocks_sent = 0
        self.blocks_received = 0
        self.events_received = 0
        self.events_dropped = 0  # events for which c.events was closed by the user
        self.bad_transmissions = 0  # server transmissions the client could not accept
        self.unmatched_responses = 0  # responses with a corrId that was not pending

    # ------------------------------------------------------------------ properties

    @property
    def block_encryption(self) -> bool:
        return self._blocks.encryptor is not None

    @property
    def connection(self):
        """The underlying BlockConnection (TLS details: alpn, tls_version, cipher ...)."""
        return self._conn

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def blocks_in(self) -> int:
        """Blocks received on the TLS connection, the server hello included."""
        return self._conn.blocks_in

    @property
    def blocks_out(self) -> int:
        """Blocks sent on the TLS connection, the client hello included."""
        return self._conn.blocks_out

    @property
    def tls_bytes_in(self) -> int:
        return self._conn.tls_bytes_in

    @property
    def tls_bytes_out(self) -> int:
        return self._conn.tls_bytes_out

    # ------------------------------------------------------------------ lifetime

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The reader: route server blocks until the connection closes or ``aclose()``.
        Use ``await nursery.start(client.run)``, or ``async with client`` which does it.
        Never raises (except Cancelled): the reason is kept in ``close_reason``."""
        if self._running:
            raise RuntimeError("the client's reader is already running")
        self._running = True
        reason = "connection closed by the client"
        try:
            with trio.CancelScope() as scope:
                self._reader_scope = scope
                if self._closed:
                    scope.cancel()
                task_status.started()
                leftover, self._session.leftover = self._session.leftover, []
                if leftover:
                    await self._dispatch(leftover)
                while True:
                    try:
                        blocks = await self._conn.receive_blocks()
                    except TransportError as e:
                        reason = f"connection lost: {e}"
                        break
                    if not blocks:
                        reason = "connection closed by the server"
                        break
                    await self._dispatch(blocks)
        except Exception as e:  # a client bug must not take the caller's nursery down
            log.exception("SMP client reader failed")
            reason = f"client reader failed: {e!r}"
        finally:
            self._shutdown(reason)
            with trio.CancelScope(shield=True):
                await self._conn.aclose()

    async def aclose(self) -> None:
        """Close the connection: pending requests fail with ClientClosed, ``events`` ends
        after what it buffered. Idempotent."""
        self._shutdown("connection closed by the client")
        if self._reader_scope is not None:
            self._reader_scope.cancel()
        with trio.CancelScope(shield=True):
            await self._conn.aclose()

    async def wait_closed(self) -> None:
        """Wait until the connection is closed (by either side)."""
        await self._closed_event.wait()

    async def __aenter__(self):
        if self._nursery_cm is not None:
            raise RuntimeError("the client is already entered")
        # The reader runs in a nursery owned by this context. Body exceptions are passed
        # through unchanged (not wrapped in an ExceptionGroup): the reader never raises.
        self._nursery_cm = trio.open_nursery()
        nursery = await self._nursery_cm.__aenter__()
        try:
            await nursery.start(self.run)
        except BaseException:
            await self.aclose()
            await self._nursery_cm.__aexit__(None, None, None)
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> bool:
        await self.aclose()
        cm, self._nursery_cm = self._nursery_cm, None
        if cm is not None:
            await cm.__aexit__(None, None, None)
        return False

    def _shutdown(self, reason: str) -> None:
        if self._closed:
            return
        self._closed = True
        self.close_reason = reason
        waiters = {id(w): w for w, _ in self._pending.values()}
        self._pending.clear()
        for w in waiters.values():
            w.error = ClientClosed(reason)
            w.done.set()
        self._event_send.close()
        self._closed_event.set()

    def _check_open(self) -> None:
        if self._closed:
            raise ClientClosed(self.close_reason or "closed")
        if not self._running:
            raise ClientError("the reader is not running: use `async with` or nursery.start(client.run)")

    # ------------------------------------------------------------------ requests

    async def request(self, entity_id: bytes, command: Command | bytes, key: PrivateKey | None = None,
                      *, corr_id: bytes | None = None) -> Response:
        """Send one command and return its response (``Err`` included: the typed calls
        raise SMPError for it, this does not). ``key`` authorizes the command: Ed25519 /
        Ed448 sign, X25519 makes an authenticator with the server session key (v7+).
        Raises ClientClosed, ResponseError (unusable response), TransmissionTooLarge.
        ``corr_id``: the request's corrId when a layer needs it (RFWD: the nonce), else random."""
        [reply] = await self.batch([(entity_id, command, key)], corr_ids=None if corr_id is None else [corr_id])
        if isinstance(reply, BadResponse):
            raise ResponseError(reply.error)
        return reply

    async def batch(self, requests: Sequence[Request], *, corr_ids: Sequence[bytes] | None = None) -> list[Reply]:
        """Send all requests packed into as few blocks as possible, in order, with one
        socket write, and return their replies in request order (responses may arrive in
        any order: they are matched by corrId). ``Err`` and ``BadResponse`` are returned,
        not raised. Raises ClientClosed, TransmissionTooLarge. ``corr_ids``: one per request
        (none pending already), else random 24-byte ones.

        A server runs one block's commands from the last to the first (the reference does,
        and so does smpfast): requests whose effects depend on their order, such as two
        SENDs to one queue, belong in separate calls."""
        self._check_open()
        n = len(requests)
        if n == 0:
            return []
        if corr_ids is None:
            ids = os.urandom(CORR_ID_LEN * n)
            corr_ids = [ids[i : i + CORR_ID_LEN] for i in range(0, CORR_ID_LEN * n, CORR_ID_LEN)]
        elif len(corr_ids) != n or len(set(corr_ids)) != n or any(c in self._pending or not c for c in corr_ids):
            raise ValueError("corr_ids: one distinct, non-empty corrId per request, none pending")
        encode = self._encode
        transmissions = [encode(corr, *req) for corr, req in zip(corr_ids, requests)]
        try:
            # Packed (and encrypted) now; sent below before any other task runs, so the
            # block-encryption chain's order is the wire order.
            blocks = self._blocks.pack((transmissions,))
        except core.FramingError as e:
            raise TransmissionTooLarge(str(e)) from None
        waiter = _Waiter(n)
        pending = self._pending
        for i, corr in enumerate(corr_ids):
            pending[corr] = (waiter, i)
        try:
            await self._send_blocks(blocks, n)
            await waiter.done.wait()
        finally:
            if waiter.remaining and not self._closed:  # cancelled: forget our corrIds
                for corr in corr_ids:
                    slot = pending.get(corr)
                    if slot is not None and slot[0] is waiter:
                        del pending[corr]
        if waiter.error is not None:
            raise waiter.error
        return waiter.results  # type: ignore[return-value]

    def _encode(self, corr_id: bytes, entity_id: bytes, command: Command | bytes, key: PrivateKey | None) -> bytes:
        v = self.version
        cmd = command if isinstance(command, bytes) else command.encode(v)
        auth = b""
        service_sig = None
        if key is not None:
            if not isinstance(key, PrivateKey):
                key = as_private_key(key)
            tfa = t_for_auth(self.session_id, corr_id, entity_id, cmd)
            authorized = tfa
            service = self.service
            if service is not None and _uses_service_auth(cmd):
                # The queue key also covers the certificate hash; the service key signs
                # the transmission alone (crypto.auth).
                authorized = service_authorized(service.cert_hash, tfa)
                service_sig = service_signature(self._service_key, tfa)
            if key.alg is Alg.X25519:
                auth = self._authenticator(key, corr_id, authorized)
            else:
                auth = key.sign(authorized)
        return encode_client_transmission(v, self.session_id, corr_id, entity_id, cmd, auth, service_sig)

    def _authenticator(self, key: PrivateKey, corr_id: bytes, authorized: bytes) -> bytes:
        """crypto.auth.authenticator, with the DH box key cached per queue key."""
        server_key = self.server_session_key
        if server_key is None:
            raise UnsupportedByVersion("X25519 authorization needs v7+ (a server session key)")
        box = self._box_keys.get(key.raw)
        if box is None:
            if len(self._box_keys) >= BOX_KEY_CACHE:
                self._box_keys.clear()
            box = self._box_keys[key.raw] = dh_box_key(server_key, key.raw)
        return core.box_seal(box, cb_nonce(corr_id), hashlib.sha512(authorized).digest())

    async def _send_blocks(self, blocks: list[bytes], transmissions: int) -> None:
        # send_blocks hands the blocks to TLS before its first checkpoint.
        try:
            await self._conn.send_blocks(blocks)
        except TransportError as e:
            self._shutdown(f"connection lost: {e}")
            raise ClientClosed(self.close_reason or str(e)) from e
        self.blocks_sent += len(blocks)
        self.transmissions_sent += transmissions

    # ------------------------------------------------------------------ receiving

    async def _dispatch(self, blocks: list[bytes]) -> None:
        """Route all transmissions of ``blocks``: responses to their waiters first, then
        events to ``events`` (so a full bounded event buffer never holds up responses
        that arrived with them)."""
        events: list[Event] = []
        pending = self._pending
        version, session_id = self.version, self.session_id
        unpack = self._blocks.unpack
        for block in blocks:
            self.blocks_received += 1
            block = unpack(block)
            if not block:  # did not decrypt
                self.bad_transmissions += 1
                events.append(Event(b"", BadResponse(BLOCK)))
                continue
            for r in decode_client_transmissions(block, version, session_id):
                self.transmissions_received += 1
                if r.error is None:
                    reply: Reply = r.response  # type: ignore[assignment]
                else:
                    self.bad_transmissions += 1
                    reply = BadResponse(r.error)
                corr = r.corr_id
                if corr:
                    slot = pending.pop(corr, None)
                    if slot is not None:
                        waiter, i = slot
                        waiter.results[i] = reply
                        waiter.remaining -= 1
                        if not waiter.remaining:
                            waiter.done.set()
                        continue
                    self.unmatched_responses += 1
                events.append(Event(r.entity_id, reply))
        for ev in events:
            self.events_received += 1
            try:
                self._event_send.send_nowait(ev)
            except trio.WouldBlock:
                try:
                    await self._event_send.send(ev)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    self.events_dropped += 1
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self.events_dropped += 1

    async def next_event(self, timeout: float | None = None) -> Event:
        """The next event; trio.TooSlowError after ``timeout`` seconds, ClientClosed when
        the connection is closed and no buffered event is left."""
        with trio.fail_after(math.inf if timeout is None else timeout):
            try:
                return await self.events.receive()
            except trio.EndOfChannel:
                raise ClientClosed(self.close_reason or "closed") from None
