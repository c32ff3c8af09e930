"""A TLS connection that carries 16384-byte blocks, over a trio socket, with ssl.MemoryBIO.

Why not trio.SSLStream: it costs ~100 us of CPU per echoed 16 KB block against ~38 us for this
loop (as measured). The loop reads whatever the socket has, decrypts every complete record and
returns every complete block at once; sending encrypts all blocks and makes one send_all.

Concurrency: one task may receive while others send. All TLS output (from writes, and from
reads: alerts, KeyUpdate answers) goes through one outgoing BIO; one task at a time drains it
into send_all, others wait for it, so bytes leave in the order OpenSSL produced them and each
send_blocks call's blocks stay contiguous on the wire.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import ssl
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING

import trio

from ..protocol.versions import BLOCK_SIZE
from . import identity
from .errors import HandshakeTimeout, TransportClosed, TransportError
from .limit import ConnectionLimit
from .listen import open_listeners
from .socket_tls import SocketBlockConnection
from .tls import CLIENT_ALPN, client_context

if TYPE_CHECKING:
    from .socks import SocksProxy

log = logging.getLogger("smpfast.transport")

#: Bytes asked of the socket per read: several blocks' worth of records.
RECEIVE_SIZE = 256 * 1024
#: The reference's TLS setup timeout.
HANDSHAKE_TIMEOUT = 60.0
#: How long aclose() may spend sending close_notify.
CLOSE_TIMEOUT = 1.0

_SOCKET_ERRORS = (trio.BrokenResourceError, trio.ClosedResourceError, OSError)
_wait_readable = trio.lowlevel.wait_readable
_wait_writable = trio.lowlevel.wait_writable


class BlockConnection:
    """One TLS connection carrying 16384-byte blocks (either side; see module docstring).

    Create it on a connected trio SocketStream, then ``await handshake()``. Counters:
    ``blocks_in``/``blocks_out`` (whole blocks through receive_blocks/send_blocks/send) and
    ``tls_bytes_in``/``tls_bytes_out`` (raw bytes on the socket, handshake included).
    """

    def __init__(
        self,
        stream: trio.SocketStream,
        ssl_context: ssl.SSLContext,
        *,
        server_side: bool,
        receive_size: int = RECEIVE_SIZE,
    ) -> None:
        self.stream = stream
        self.server_side = server_side
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        # server_hostname=None: SMP clients send no SNI (the reference's defaultSMPClientConfig).
        self._ssl = ssl_context.wrap_bio(
            self._incoming, self._outgoing, server_side=server_side, server_hostname=None
        )
        self._receive_size = receive_size
        self._buf = bytearray()  # plaintext not yet forming a whole block
        self._handshake_done = False
        self._eof = False
        self._read_error: TransportError | None = None  # a bad record after good blocks
        self._closed = False
        self._sending = False  # a task is in send_all
        self._send_done: trio.Event | None = None  # set when it leaves, if anyone waits
        self.blocks_in = 0
        self.read_waits = 0  # times a read waited for the socket (it yielded to others then)
        self.app_bytes_out = 0
        self.tls_bytes_in = 0
        self.tls_bytes_out = 0

    # -- handshake -------------------------------------------------------------------------

    async def handshake(self, timeout: float | None = HANDSHAKE_TIMEOUT) -> None:
        """Run the TLS handshake. Raises HandshakeTimeout, TransportClosed or TransportError;
        the caller closes the connection on failure."""
        try:
            with trio.fail_after(math.inf if timeout is None else timeout):
                await self._handshake()
        except trio.TooSlowError:
            raise HandshakeTimeout(f"TLS handshake not done in {timeout} s") from None

    async def _handshake(self) -> None:
        if self._handshake_done:
            return
        while True:
            try:
                self._ssl.do_handshake()
                break
            except ssl.SSLWantReadError:
                pass
            except ssl.SSLError as e:
                await self._send_alert()
                raise TransportError(f"TLS handshake failed: {e}") from None
            await self._flush()
            data = await self._receive_raw()
            if not data:
                raise TransportClosed("connection closed during the TLS handshake")
            self._incoming.write(data)
        self._handshake_done = True
        await self._flush()  # the client's Finished
        # Records that came with the handshake stay in the incoming BIO: receive_blocks
        # decrypts them before it waits on the socket.

    async def _send_alert(self) -> None:
        """Best effort: send the alert OpenSSL queued for a failed handshake."""
        if self._sending or not self._outgoing.pending:
            return
        with trio.move_on_after(CLOSE_TIMEOUT):
            try:
                await self._flush()
            except TransportError:
                pass

    # -- session properties ----------------------------------------------------------------

    @property
    def alpn(self) -> str | None:
        """The negotiated ALPN protocol, or None if none was negotiated."""
        return self._ssl.selected_alpn_protocol()

    @property
    def tls_unique(self) -> bytes | None:
        """tls-unique channel binding: the client's Finished verify_data on both sides
        (32 bytes with TLS 1.3 and SHA-256) -- the SMP session id. None if unavailable,
        in which case the reference closes the connection."""
        return self._ssl.get_channel_binding("tls-unique")

    @property
    def tls_version(self) -> str | None:
        """The TLS version: "TLSv1.3" or "TLSv1.2"."""
        return self._ssl.version()

    @property
    def cipher(self) -> str | None:
        """OpenSSL name of the negotiated suite, e.g. "TLS_CHACHA20_POLY1305_SHA256"."""
        c = self._ssl.cipher()
        return c[0] if c else None

    @property
    def peer_chain_der(self) -> list[bytes]:
        """Certificates the peer sent, leaf first, DER ([] on the server side)."""
        return identity.peer_chain_der(self._ssl)

    @property
    def blocks_out(self) -> int:
        return self.app_bytes_out // BLOCK_SIZE

    @property
    def ssl_context(self) -> ssl.SSLContext:
        """The context the session runs on: a server's SNI callback may have replaced the
        one it was created with (smpfast.server.web shares the port with HTTPS that way)."""
        return self._ssl.context

    async def receive_some(self) -> bytes:
        """Plaintext received so far, any length, not cut into blocks (for a protocol other
        than SMP on this connection); b"" once the peer closed. Not to be mixed with
        receive_blocks on one connection."""
        if self._closed:
            raise TransportClosed("connection closed")
        if not self._handshake_done:
            raise TransportError("receive_some before the TLS handshake")
        while True:
            chunks = []
            while not self._eof and (self._incoming.pending or self._ssl.pending()):
                try:
                    chunk = self._ssl.read(RECEIVE_SIZE)
                except ssl.SSLWantReadError:
                    break
                except ssl.SSLZeroReturnError:
                    self._eof = True
                    break
                except ssl.SSLError as e:
                    raise TransportError(f"TLS error: {e}") from None
                if not chunk:
                    self._eof = True
                    break
                chunks.append(chunk)
            if self._outgoing.pending and not self._sending:
                await self._flush()
            if chunks:
                return b"".join(chunks)
            if self._eof:
                return b""
            data = await self._receive_raw()
            if not data:
                self._eof = True
                return b""
            self._incoming.write(data)

    # -- receiving -------------------------------------------------------------------------

    async def receive_blocks(self) -> list[bytes]:
        """Wait for and return all complete 16384-byte blocks received so far (at least one),
        in order; [] once the peer has closed (close_notify or TCP EOF: a partial block left
        then is dropped, as the reference's short read). TLS errors raise TransportError."""
        if self._closed:
            raise TransportClosed("connection closed")
        if not self._handshake_done:
            raise TransportError("receive_blocks before the TLS handshake")
        outgoing = self._outgoing
        while True:
            before = outgoing.pending
            blocks = self._decrypt_available()
            # Reading can produce output (e.g. a KeyUpdate answer). If a sender is busy, its
            # drain loop takes it; never wait for senders here: they may be waiting for the
            # peer, which may be waiting for us to read.
            if outgoing.pending > before and not self._sending:
                await self._flush()
            if blocks:
                self.blocks_in += len(blocks)
                return blocks
            if self._eof:
                return []
            data = await self._receive_raw()
            if not data:
                self._eof = True
                return []
            self._incoming.write(data)

    def _decrypt_available(self) -> list[bytes]:
        """Decrypt every complete record in the incoming BIO; cut whole blocks."""
        if self._eof:
            return []
        if self._read_error is not None:
            raise self._read_error
        blocks: list[bytes] = []
        buf = self._buf
        read = self._ssl.read
        incoming = self._incoming
        ssl_pending = self._ssl.pending
        # Checking the BIO first avoids a WantRead exception per call in the common case.
        while incoming.pending or ssl_pending():
            try:
                chunk = read(BLOCK_SIZE)
            except ssl.SSLWantReadError:
                break  # only part of a record has arrived
            except ssl.SSLZeroReturnError:
                self._eof = True
                break
            except ssl.SSLError as e:
                error = TransportError(f"TLS error: {e}")
                if not blocks:
                    raise error from None
                # Hand over the blocks that arrived intact before the bad record (a reader
                # going record by record would have acted on them); fail on the next read.
                self._read_error = error
                break
            if not chunk:  # close_notify
                self._eof = True
                break
            if not buf and len(chunk) == BLOCK_SIZE:
                blocks.append(chunk)  # one record = one block: no copy
                continue
            buf += chunk
            if len(buf) >= BLOCK_SIZE:
                whole = len(buf) - len(buf) % BLOCK_SIZE
                with memoryview(buf) as view:
                    blocks.extend(
                        bytes(view[i : i + BLOCK_SIZE]) for i in range(0, whole, BLOCK_SIZE)
                    )
                del buf[:whole]
        if self._eof:
            buf.clear()
        return blocks

    async def _receive_raw(self) -> bytes:
        """Bytes from the socket, waiting only when it has none. The socket is read with
        ``os.read`` on its descriptor rather than through trio's wrappers, whose two
        scheduling checkpoints per call cost more than the read; callers yield where
        fairness needs it (the server's reader, by its time slice). The descriptor is
        asked of the socket every time: -1 once closed, never a reused number."""
        sock = self.stream.socket
        size = self._receive_size
        try:
            while True:
                fd = sock.fileno()
                if fd < 0:
                    raise trio.ClosedResourceError("socket closed")
                try:
                    data = os.read(fd, size)
                    break
                except BlockingIOError:
                    self.read_waits += 1
                    await _wait_readable(fd)
        except _SOCKET_ERRORS as e:
            raise TransportClosed(f"connection lost: {e!r}") from None
        self.tls_bytes_in += len(data)
        return data

    async def _send_raw(self, data: bytes) -> None:
        """Write all of ``data`` to the socket, waiting only while it is full (see
        ``_receive_raw``)."""
        sock = self.stream.socket
        view = memoryview(data)
        while view:
            fd = sock.fileno()
            if fd < 0:
                raise trio.ClosedResourceError("socket closed")
            try:
                sent = os.write(fd, view)
            except BlockingIOError:
                await _wait_writable(fd)
                continue
            view = view[sent:]

    # -- sending ---------------------------------------------------------------------------

    async def send_blocks(self, blocks: Sequence[bytes]) -> None:
        """Encrypt all blocks and send them with one send_all (each is 16384 bytes)."""
        if self._closed:
            raise TransportClosed("connection closed")
        if not self._handshake_done:
            raise TransportError("send_blocks before the TLS handshake")
        write = self._ssl.write
        try:
            for block in blocks:
                write(block)
        except ssl.SSLError as e:
            raise TransportError(f"TLS error: {e}") from None
        self.app_bytes_out += sum(map(len, blocks))
        await self._flush()

    async def send(self, data: bytes) -> None:
        """Encrypt and send arbitrary bytes (blocks, or parts of blocks in tests)."""
        await self.send_blocks((data,) if data else ())

    async def _flush(self) -> None:
        """Send everything in the outgoing BIO. If another task is sending, wait for it to
        finish first (it may have sent our records too): output leaves in the order OpenSSL
        produced it, and a sender never runs ahead of the socket."""
        while self._sending:
            if self._send_done is None:
                self._send_done = trio.Event()
            await self._send_done.wait()
        outgoing = self._outgoing
        if not outgoing.pending:
            return
        self._sending = True
        try:
            while outgoing.pending:
                data = outgoing.read()
                self.tls_bytes_out += len(data)
                await self._send_raw(data)
        except _SOCKET_ERRORS as e:
            raise TransportClosed(f"connection lost: {e!r}") from None
        finally:
            self._sending = False
            if self._send_done is not None:
                self._send_done.set()
                self._send_done = None

    # -- closing ---------------------------------------------------------------------------

    async def aclose(self) -> None:
        """Send close_notify (best effort, briefly) and close the socket. Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._handshake_done and not self._sending:
                try:
                    self._ssl.unwrap()
                except (ssl.SSLError, ValueError):
                    pass  # WantRead: the peer's close_notify is not awaited
                with trio.move_on_after(CLOSE_TIMEOUT):
                    try:
                        await self._flush()
                    except TransportError:
                        pass
        finally:
            await self.stream.aclose()

    async def __aenter__(self) -> BlockConnection:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def _set_client_keepalive(stream: trio.SocketStream) -> None:
    """The reference client's TCP keep-alive: idle 30 s, interval 15 s, 4 probes."""
    sock = stream.socket
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        for name, value in (("TCP_KEEPIDLE", 30), ("TCP_KEEPINTVL", 15), ("TCP_KEEPCNT", 4)):
            if hasattr(socket, name):
                sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, name), value)
    except OSError:
        pass


async def open_block_connection(
    host: str,
    port: int,
    key_hash: bytes,
    *,
    alpn: Sequence[str] | None = CLIENT_ALPN,
    ssl_context: ssl.SSLContext | None = None,
    timeout: float | None = HANDSHAKE_TIMEOUT,
    socks: "SocksProxy | None" = None,
    socks_isolation: str | None = None,
) -> BlockConnection:
    """Client: TCP connect (through the SOCKS5 proxy ``socks`` when given, the host name
    then resolved by the proxy), TLS handshake, then check the server chain against
    ``key_hash`` (identity.verify_server_chain). ``alpn`` is used when ``ssl_context`` is
    None; a given context is used as is. ``timeout`` covers connect + handshake. Raises
    TransportError (TLSIdentityError, HandshakeTimeout, TransportClosed, SocksError) and
    closes the socket on failure."""
    ctx = ssl_context if ssl_context is not None else client_context(alpn)
    try:
        with trio.fail_after(math.inf if timeout is None else timeout):
            if socks is not None:
                from .socks import PROCESS_ISOLATION, open_socks5_stream

                stream = await open_socks5_stream(socks, host, port, isolation=socks_isolation or PROCESS_ISOLATION)
            else:
                stream = await trio.open_tcp_stream(host, port)
    except trio.TooSlowError:
        raise HandshakeTimeout(f"TCP connect to {host}:{port} not done in {timeout} s") from None
    except OSError as e:
        raise TransportClosed(f"cannot connect to {host}:{port}: {e}") from None
    _set_client_keepalive(stream)
    conn = BlockConnection(stream, ctx, server_side=False)
    try:
        await conn.handshake(timeout)
        identity.verify_server_chain(conn.peer_chain_der, key_hash)
    except BaseException:
        with trio.CancelScope(shield=True):
            await conn.aclose()
        raise
    return conn


BlockHandler = Callable[[BlockConnection], Awaitable[None]]


async def serve_blocks(
    handler: BlockHandler,
    port: int,
    ssl_context: ssl.SSLContext,
    *,
    host: str | None = None,
    handshake_timeout: float | None = HANDSHAKE_TIMEOUT,
    backlog: int = 1024,
    on_handshake_error: Callable[[TransportError], None] | None = None,
    limit: ConnectionLimit | None = None,
    reuse_port: bool = False,
    task_status: trio.TaskStatus[list[trio.SocketListener]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Server: accept TCP on ``host``:``port`` (host None = all interfaces, port 0 =
    ephemeral) and, in each connection's own task, run the TLS handshake and then
    ``await handler(conn)``; the connection is closed when the handler returns. Handshake
    failures go to ``on_handshake_error`` (default: a debug log) and affect no one else;
    TransportError from the handler ends that connection only; other exceptions propagate.
    ``limit`` (shared between listeners) caps the connections open at once, handshakes
    included: over it a new connection's socket is closed before any TLS.
    ``task_status.started`` gets the listeners (read the port from
    ``listeners[0].socket.getsockname()[1]``). ``reuse_port``: listen with SO_REUSEPORT
    (worker processes sharing the port). Runs until cancelled."""
    listeners = await open_listeners(port, host, backlog, reuse_port)

    async def connection_task(stream: trio.SocketStream) -> None:
        if limit is None:
            await serve_connection(stream)
            return
        if not limit.acquire():
            await stream.aclose()
            return
        try:
            await serve_connection(stream)
        finally:
            limit.release()

    async def serve_connection(stream: trio.SocketStream) -> None:
        conn = SocketBlockConnection(stream, ssl_context)
        try:
            try:
                await conn.handshake(handshake_timeout)
            except TransportError as e:
                if on_handshake_error is not None:
                    on_handshake_error(e)
                else:
                    log.debug("%s", e)  # e says "TLS handshake ..." already
                return
            try:
                await handler(conn)
            except TransportError as e:
                log.debug("connection ended: %s", e)
        finally:
            with trio.CancelScope(shield=True):
                await conn.aclose()

    await trio.serve_listeners(connection_task, listeners, task_status=task_status)
