"""Outbound TCP through a SOCKS5 proxy (such as Tor), with the sans-IO ``socksio`` library.

``SocksProxy`` is the reference's ``SocksProxyWithAuth`` text: ``[user:pass@|@]host[:port]``
(host an IPv4 or IPv6 address, default 127.0.0.1; port default 9050). Without a ``...@``
prefix connections are isolated by credentials, as the reference does by default: a
username derived from an isolation key and an empty password, which makes Tor use separate
circuits per key; ``@host`` sends no credentials; ``user:pass@host`` sends those.

Destination names go to the proxy unresolved (a ``.onion`` name can only be resolved by
Tor), IP literals as addresses.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import math
import os
from dataclasses import dataclass

import trio
from socksio import ProtocolError
from socksio.socks5 import (
    SOCKS5AuthMethod,
    SOCKS5AuthMethodsRequest,
    SOCKS5AuthReply,
    SOCKS5Command,
    SOCKS5CommandRequest,
    SOCKS5Connection,
    SOCKS5Reply,
    SOCKS5ReplyCode,
    SOCKS5UsernamePasswordReply,
    SOCKS5UsernamePasswordRequest,
)

from .errors import HandshakeTimeout, TransportError

DEFAULT_SOCKS_HOST = "127.0.0.1"
DEFAULT_SOCKS_PORT = 9050
#: One isolation key per process unless the caller gives one (the reference's session mode).
PROCESS_ISOLATION = os.urandom(16).hex()


class SocksError(TransportError):
    """The SOCKS proxy refused, failed or spoke no SOCKS5."""


@dataclass(frozen=True, slots=True)
class SocksProxy:
    host: str = DEFAULT_SOCKS_HOST
    port: int = DEFAULT_SOCKS_PORT
    username: bytes | None = None  # explicit credentials (``user:pass@``)
    password: bytes | None = None
    isolate: bool = True  # no ``@`` prefix: credentials derived per isolation key

    def credentials(self, isolation: str = PROCESS_ISOLATION) -> tuple[bytes, bytes] | None:
        """The username/password to send, or None for none."""
        if self.username is not None:
            return self.username, self.password or b""
        if not self.isolate:
            return None
        return base64.b64encode(hashlib.sha256(isolation.encode()).digest()), b""

    def __str__(self) -> str:
        if self.username is not None:
            auth = f"{self.username.decode('latin-1')}:{(self.password or b'').decode('latin-1')}@"
        else:
            auth = "" if self.isolate else "@"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{auth}{host}:{self.port}"


def parse_socks_proxy(text: str) -> SocksProxy:
    """``[user:pass@|@][host][:port]``; ValueError with a one-line reason."""
    s = text.strip()
    username = password = None
    isolate = True
    if "@" in s:
        auth, s = s.rsplit("@", 1)
        if auth:
            if ":" not in auth:
                raise ValueError(f"SOCKS credentials must be user:password@, not {auth!r}@")
            user, pw = auth.split(":", 1)
            username, password = user.encode("latin-1"), pw.encode("latin-1")
        isolate = False
    host, port = DEFAULT_SOCKS_HOST, DEFAULT_SOCKS_PORT
    if s.startswith("["):
        end = s.find("]")
        if end < 0:
            raise ValueError(f"unclosed [ in SOCKS proxy {text!r}")
        host, rest = s[1:end], s[end + 1 :]
        if rest:
            if not rest.startswith(":"):
                raise ValueError(f"bad SOCKS proxy {text!r}")
            port = _port(rest[1:], text)
    elif s.count(":") > 1:  # a bare IPv6 address, no port
        host = s
    elif s:
        h, _, p = s.partition(":")
        if h:
            host = h
        if _:
            port = _port(p, text)
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"the SOCKS proxy host must be an IPv4 or IPv6 address, not {host!r}") from None
    return SocksProxy(host, port, username, password, isolate)


def _port(text: str, whole: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise ValueError(f"bad port in SOCKS proxy {whole!r}")
    return int(text)


async def _receive_exactly(stream: trio.SocketStream, n: int) -> bytes:
    out = bytearray()
    while len(out) < n:
        chunk = await stream.receive_some(n - len(out))
        if not chunk:
            raise SocksError("the SOCKS proxy closed the connection")
        out += chunk
    return bytes(out)


async def _receive_reply(stream: trio.SocketStream) -> bytes:
    head = await _receive_exactly(stream, 4)  # VER REP RSV ATYP
    atyp = head[3]
    if atyp == 1:
        rest = await _receive_exactly(stream, 4 + 2)
    elif atyp == 4:
        rest = await _receive_exactly(stream, 16 + 2)
    elif atyp == 3:
        n = (await _receive_exactly(stream, 1))[0]
        rest = bytes((n,)) + await _receive_exactly(stream, n + 2)
    else:
        raise SocksError(f"the SOCKS proxy replied with address type {atyp}")
    return head + rest


async def socks5_handshake(
    stream: trio.SocketStream, host: str, port: int, credentials: tuple[bytes, bytes] | None
) -> None:
    """Negotiate a CONNECT to ``host``:``port`` on a stream connected to the proxy."""
    socks = SOCKS5Connection()
    methods = [SOCKS5AuthMethod.NO_AUTH_REQUIRED]
    if credentials is not None:
        # Offered first: Tor (IsolateSOCKSAuth) picks it; a proxy without auth picks none.
        methods.insert(0, SOCKS5AuthMethod.USERNAME_PASSWORD)
    try:
        socks.send(SOCKS5AuthMethodsRequest(methods))
        await stream.send_all(socks.data_to_send())
        reply = socks.receive_data(await _receive_exactly(stream, 2))
        assert isinstance(reply, SOCKS5AuthReply)
        if reply.method not in methods:
            raise SocksError("the SOCKS proxy accepts none of the offered authentication methods")
        if reply.method == SOCKS5AuthMethod.USERNAME_PASSWORD:
            assert credentials is not None
            socks.send(SOCKS5UsernamePasswordRequest(*credentials))
            await stream.send_all(socks.data_to_send())
            auth = socks.receive_data(await _receive_exactly(stream, 2))
            assert isinstance(auth, SOCKS5UsernamePasswordReply)
            if not auth.success:
                raise SocksError("the SOCKS proxy refused the credentials")
        socks.send(SOCKS5CommandRequest.from_address(SOCKS5Command.CONNECT, (host, port)))
        await stream.send_all(socks.data_to_send())
        answer = socks.receive_data(await _receive_reply(stream))
    except ProtocolError as e:
        raise SocksError(f"the SOCKS proxy spoke no SOCKS5 ({e})") from None
    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as e:
        raise SocksError(f"SOCKS proxy connection failed: {e}") from None
    assert isinstance(answer, SOCKS5Reply)
    if answer.reply_code != SOCKS5ReplyCode.SUCCEEDED:
        raise SocksError(f"the SOCKS proxy cannot reach {host}:{port}: {answer.reply_code.name.lower()}")


async def open_socks5_stream(
    proxy: SocksProxy,
    host: str,
    port: int,
    *,
    isolation: str = PROCESS_ISOLATION,
    timeout: float | None = None,
) -> trio.SocketStream:
    """A TCP stream to ``host``:``port`` through ``proxy``; TransportError on failure."""
    try:
        with trio.fail_after(math.inf if timeout is None else timeout):
            try:
                stream = await trio.open_tcp_stream(proxy.host, proxy.port)
            except OSError as e:
                raise SocksError(f"cannot connect to the SOCKS proxy {proxy.host}:{proxy.port}: {e}") from None
            try:
                await socks5_handshake(stream, host, port, proxy.credentials(isolation))
            except BaseException:
                with trio.CancelScope(shield=True):
                    await stream.aclose()
                raise
            return stream
    except trio.TooSlowError:
        raise HandshakeTimeout(f"SOCKS connect to {host}:{port} not done in {timeout} s") from None
