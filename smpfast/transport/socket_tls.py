"""A TLS connection run by OpenSSL on the non-blocking socket itself (ssl.SSLSocket): the
server's, and a client's where nothing but the socket is wanted (benchmarks of many
connections).

Why not the MemoryBIO loop of ``stream.BlockConnection`` on the server: memory. Each memory
BIO keeps the capacity of the largest burst that ever passed through it, so a connection
that once received five blocks at once holds 80 KB in its incoming BIO for as long as it
lives, idle or not; with two BIOs plus OpenSSL's record buffers an idle connection that had
exchanged one block each way held ~56 KB of TLS state. Here OpenSSL reads from and writes
to the socket directly, and frees its record buffers whenever a connection has nothing
pending (CPython sets ``SSL_MODE_RELEASE_BUFFERS`` on every context), so an idle connection
holds only its TLS state (~14 KB with OpenSSL 3.0).

The interface is ``BlockConnection``'s (handshake, receive_blocks, receive_some,
send_blocks, send, aclose and the session properties), so the server's connection shell
and the HTTPS page on the SMP port run on either.

Concurrency: one task may receive while others send. Sends are serialized (OpenSSL wants a
write that could not finish retried with the same bytes before any other write), so each
send_blocks call's blocks stay contiguous on the wire; a read may run between the retries of
a write, which OpenSSL allows.
"""

from __future__ import annotations

import errno
import math
import socket
import ssl
from collections.abc import Sequence

import trio

from ..protocol.versions import BLOCK_SIZE
from . import _openssl, identity
from .errors import HandshakeTimeout, TransportClosed, TransportError

#: How long aclose() may spend sending close_notify.
CLOSE_TIMEOUT = 1.0

#: Unread bytes dropped before closing, at most: a socket closed with unread input sends the
#: peer a reset instead of FIN, so its next read fails (ECONNRESET) rather than ending
#: cleanly, and some systems drop our last bytes still unread on its side.
DISCARD_LIMIT = 1024 * 1024
_discard_buffer = bytearray(64 * 1024)  # shared: used synchronously, never across an await

_CLOSED_ERRNOS = frozenset((errno.ECONNRESET, errno.EPIPE, errno.ENOTCONN, errno.ESHUTDOWN, errno.ETIMEDOUT))


class SocketBlockConnection:
    """One TLS connection carrying 16384-byte blocks (module docstring), the server side
    unless ``server_side=False``.

    Create it on a connected trio SocketStream (it takes the socket over), then
    ``await handshake()``. Counters: ``blocks_in``, ``blocks_out``, ``app_bytes_out``, and
    ``tls_bytes_in``/``tls_bytes_out`` (read from OpenSSL's socket BIO on demand; 0 where
    libssl's counters cannot be reached, and after close).
    """

    __slots__ = (
        "_ssl", "_buf", "_handshake_done", "_eof", "_read_error", "_closed", "_sending",
        "_send_done", "blocks_in", "app_bytes_out", "local_port", "server_side",
    )

    def __init__(self, stream: trio.SocketStream, ssl_context: ssl.SSLContext, *, server_side: bool = True) -> None:
        self.server_side = server_side
        raw = stream.socket
        try:
            self.local_port: int = raw.getsockname()[1]
        except (OSError, IndexError):
            self.local_port = 0
        sock = socket.socket(raw.family, raw.type, raw.proto, fileno=raw.detach())
        sock.setblocking(False)
        # server_hostname=None: SMP clients send no SNI (as BlockConnection's clients).
        self._ssl = ssl_context.wrap_socket(
            sock, server_side=server_side, server_hostname=None, do_handshake_on_connect=False,
            suppress_ragged_eofs=True,
        )
        self._buf = b""  # plaintext not yet forming a whole block (usually none)
        self._handshake_done = False
        self._eof = False
        self._read_error: TransportError | None = None  # a bad record after good blocks
        self._closed = False
        self._sending = False
        self._send_done: trio.Event | None = None
        self.blocks_in = 0
        self.app_bytes_out = 0

    # -- waiting on the socket ---------------------------------------------------------------

    async def _wait_readable(self) -> None:
        try:
            await trio.lowlevel.wait_readable(self._ssl)
        except (trio.ClosedResourceError, OSError, ValueError) as e:
            raise TransportClosed(f"connection closed: {e!r}") from None

    async def _wait_writable(self) -> None:
        try:
            await trio.lowlevel.wait_writable(self._ssl)
        except (trio.ClosedResourceError, OSError, ValueError) as e:
            raise TransportClosed(f"connection closed: {e!r}") from None

    # -- handshake ---------------------------------------------------------------------------

    async def handshake(self, timeout: float | None = 60.0) -> None:
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
                await self._wait_readable()
            except ssl.SSLWantWriteError:
                await self._wait_writable()
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                raise TransportClosed("connection closed during the TLS handshake") from None
            except ssl.SSLError as e:  # OpenSSL has written the alert to the socket already
                raise TransportError(f"TLS handshake failed: {e}") from None
            except OSError as e:
                raise TransportClosed(f"connection lost during the TLS handshake: {e!r}") from None
        self._handshake_done = True

    # -- session properties ------------------------------------------------------------------

    @property
    def alpn(self) -> str | None:
        return self._ssl.selected_alpn_protocol()

    @property
    def tls_unique(self) -> bytes | None:
        """tls-unique channel binding (the SMP session id); see BlockConnection.tls_unique."""
        return self._ssl.get_channel_binding("tls-unique")

    @property
    def tls_version(self) -> str | None:
        return self._ssl.version()

    @property
    def cipher(self) -> str | None:
        c = self._ssl.cipher()
        return c[0] if c else None

    @property
    def peer_chain_der(self) -> list[bytes]:
        return identity.peer_chain_der(self._ssl)

    def _socket_bytes(self) -> tuple[int, int]:
        sslobj = getattr(self._ssl, "_sslobj", None)
        if sslobj is None or self._closed:
            return (0, 0)
        try:
            return _openssl.socket_bytes(sslobj)
        except OSError:
            return (0, 0)

    @property
    def tls_bytes_in(self) -> int:
        return self._socket_bytes()[0]

    @property
    def tls_bytes_out(self) -> int:
        return self._socket_bytes()[1]

    @property
    def blocks_out(self) -> int:
        return self.app_bytes_out // BLOCK_SIZE

    @property
    def ssl_context(self) -> ssl.SSLContext:
        """The context the session runs on (an SNI callback may have replaced it)."""
        return self._ssl.context

    # -- receiving ---------------------------------------------------------------------------

    def _check_open(self, what: str) -> None:
        if self._closed:
            raise TransportClosed("connection closed")
        if not self._handshake_done:
            raise TransportError(f"{what} before the TLS handshake")

    def _read_chunks(self, size: int) -> list[bytes]:
        """Every plaintext chunk readable now without waiting (sets _eof at the end)."""
        chunks: list[bytes] = []
        recv = self._ssl.recv
        while True:
            try:
                chunk = recv(size)
            except ssl.SSLWantReadError:
                break
            except ssl.SSLWantWriteError:
                break  # the read needs the socket writable first: the next wait covers it
            except ssl.SSLZeroReturnError:
                self._eof = True
                break
            except ssl.SSLError as e:
                error = TransportError(f"TLS error: {e}")
                if not chunks:
                    raise error from None
                self._read_error = error  # hand over what arrived intact first
                break
            except OSError as e:
                if e.errno not in _CLOSED_ERRNOS and not chunks:
                    raise TransportClosed(f"connection lost: {e!r}") from None
                self._eof = True
                break
            if not chunk:  # close_notify or TCP EOF (ragged EOFs suppressed)
                self._eof = True
                break
            chunks.append(chunk)
        return chunks

    async def receive_blocks(self) -> list[bytes]:
        """Wait for and return all complete 16384-byte blocks received so far (at least one),
        in order; [] once the peer has closed (a partial block left then is dropped).
        TLS errors raise TransportError."""
        self._check_open("receive_blocks")
        while True:
            if self._read_error is not None:
                raise self._read_error
            if self._eof:
                return []
            blocks = self._cut(self._read_chunks(BLOCK_SIZE))
            if blocks:
                self.blocks_in += len(blocks)
                return blocks
            if self._eof:
                self._buf = b""
                return []
            await self._wait_readable()

    def _cut(self, chunks: list[bytes]) -> list[bytes]:
        """Whole blocks out of the kept partial block and ``chunks``; keeps the rest."""
        if not self._buf and all(len(c) == BLOCK_SIZE for c in chunks):
            return chunks  # one record = one block: no copy
        data = self._buf + b"".join(chunks)
        whole = len(data) - len(data) % BLOCK_SIZE
        self._buf = data[whole:]
        return [data[i : i + BLOCK_SIZE] for i in range(0, whole, BLOCK_SIZE)]

    async def receive_some(self) -> bytes:
        """Plaintext received so far, any length (for a protocol other than SMP on this
        connection); b"" once the peer closed. Not to be mixed with receive_blocks."""
        self._check_open("receive_some")
        while True:
            if self._read_error is not None:
                raise self._read_error
            if self._eof:
                return b""
            chunks = self._read_chunks(64 * 1024)
            if chunks:
                return b"".join(chunks)
            if self._eof:
                return b""
            await self._wait_readable()

    # -- sending -----------------------------------------------------------------------------

    async def send_blocks(self, blocks: Sequence[bytes]) -> None:
        """Encrypt and send all blocks, contiguous on the wire (each is 16384 bytes)."""
        self._check_open("send_blocks")
        if not blocks:
            return
        while self._sending:
            if self._send_done is None:
                self._send_done = trio.Event()
            await self._send_done.wait()
        self._sending = True
        try:
            data = blocks[0] if len(blocks) == 1 else b"".join(blocks)
            await self._send_all(data)
            self.app_bytes_out += len(data)
        finally:
            self._sending = False
            if self._send_done is not None:
                self._send_done.set()
                self._send_done = None

    async def _send_all(self, data: bytes) -> None:
        send = self._ssl.send
        while True:
            try:
                send(data)  # all of it, or an exception: partial writes are not enabled
                return
            except ssl.SSLWantWriteError:
                await self._wait_writable()
            except ssl.SSLWantReadError:
                await self._wait_readable()
            except ssl.SSLError as e:
                raise TransportError(f"TLS error: {e}") from None
            except OSError as e:
                raise TransportClosed(f"connection lost: {e!r}") from None

    async def send(self, data: bytes) -> None:
        """Encrypt and send arbitrary bytes (blocks, or parts of blocks in tests)."""
        await self.send_blocks((data,) if data else ())

    # -- closing -----------------------------------------------------------------------------

    async def aclose(self) -> None:
        """Send close_notify (best effort, without waiting for the peer's) and close the
        socket, waking any task waiting on it. Idempotent."""
        if self._closed:
            return
        self._closed = True
        sock = self._ssl
        try:
            if self._handshake_done and not self._sending:
                try:
                    sock.unwrap()  # writes close_notify; the peer's is not awaited
                except (ssl.SSLError, OSError, ValueError):
                    pass
        finally:
            _discard_unread(sock)
            trio.lowlevel.notify_closing(sock)
            sock.close()
        await trio.lowlevel.checkpoint()

    async def __aenter__(self) -> SocketBlockConnection:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def _discard_unread(sock: ssl.SSLSocket) -> None:
    """Drop what the peer sent that was never read (raw, past TLS), so that closing sends
    FIN rather than a reset."""
    recv_into = socket.socket.recv_into  # the plain socket's, not SSLSocket's
    dropped = 0
    try:
        while dropped < DISCARD_LIMIT:
            n = recv_into(sock, _discard_buffer)
            if not n:
                return
            dropped += n
    except OSError:  # EAGAIN (nothing more now), or the connection is gone already
        return
