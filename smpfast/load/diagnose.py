"""One clear line for a run that cannot start: what went wrong and what to do about it.

``check_address`` rejects a malformed address before anything connects, quoting the
user's own text (not a re-encoding of it). ``explain`` turns a connect or set-up error
into its cause (refused, timeout, unresolvable host, TLS, wrong server, version, password)
by walking the exception's causes, so nothing in the client library has to change."""

from __future__ import annotations

import re
import socket
import ssl

import trio

from ..client import ClientClosed, ConnectError, HandshakeError, SMPError, parse_address
from ..transport.errors import HandshakeTimeout, TLSIdentityError
from ..transport.socks import SocksError
from .config import UsageError

FINGERPRINT_BYTES = 32  # SHA-256 of the CA certificate
ADDRESS_FORM = "smp://FINGERPRINT[:PASSWORD]@HOST[:PORT]"
_FINGERPRINT_TEXT = re.compile(r"^smp://([^:@]*)")
_BASE64URL = re.compile(r"[A-Za-z0-9_-]+=*")
_PASSWORD = re.compile(r"^smp://[^:@]*:[^@]*@")


def fingerprint_text(address: str) -> str:
    """The fingerprint as the user wrote it."""
    m = _FINGERPRINT_TEXT.match(address)
    return m.group(1) if m else ""


def has_password(address: str) -> bool:
    return bool(_PASSWORD.match(address))


def check_address(address: str) -> None:
    """Raise UsageError for an address that cannot name an SMP server."""
    if not address.startswith("smp://"):
        raise UsageError(f"the address must look like {ADDRESS_FORM} (as `smpfast address` prints it)")
    fp = fingerprint_text(address)
    bad_fingerprint = UsageError(
        f"the fingerprint {fp!r} in the address is not a server fingerprint: it must be the 43 "
        f"base64url characters of {FINGERPRINT_BYTES} bytes (44 with a trailing '='), as "
        "`smpfast address --dir DIR` or the server's operator gives it")
    if not _BASE64URL.fullmatch(fp):
        raise bad_fingerprint
    try:
        server, _ = parse_address(address)
    except ValueError as e:
        if "BasicAuth" in str(e):
            raise UsageError("the password in the address is empty or has characters an SMP address cannot "
                             "carry (no '@', ':' or '/')") from None
        raise UsageError(f"the address is not valid ({e}); expected {ADDRESS_FORM}") from None
    if len(server.key_hash) != FINGERPRINT_BYTES:
        raise bad_fingerprint


def _causes(e: BaseException) -> list[BaseException]:
    """``e`` and everything it was raised from, exception groups opened."""
    out: list[BaseException] = []
    todo = [e]
    while todo:
        x = todo.pop()
        if x is None or any(x is y for y in out):
            continue
        out.append(x)
        if isinstance(x, BaseExceptionGroup):
            todo.extend(x.exceptions)
        todo.extend([x.__cause__, x.__context__])  # type: ignore[list-item]
    return out


def _where(address: str) -> str:
    try:
        server, _ = parse_address(address)
    except ValueError:
        return "the server"
    port = server.port or "5223"
    return ", ".join(f"{h}:{port}" for h in server.hosts)


def explain(e: BaseException, address: str, *, phase: str = "connect", connect_timeout: float = 30.0,
            max_version: int | None = None) -> str:
    """The cause of ``e`` (raised while ``phase`` of the set-up ran) and the fix."""
    where = _where(address)
    causes = _causes(e)

    def find(*types: type) -> BaseException | None:
        return next((c for c in causes if isinstance(c, types)), None)

    if isinstance(e, SMPError):
        if e.code == "AUTH" and phase == "create":
            if has_password(address):
                return ("the server refused to create a queue (ERR AUTH): the password in the address is wrong "
                        f"({ADDRESS_FORM}), or the server creates no new queues at all")
            return ("the server refused to create a queue (ERR AUTH): it needs a password; put it in the "
                    f"address: {ADDRESS_FORM} (or the server creates no new queues at all)")
        return f"the server answered ERR {e.error} during {phase}"
    socks = find(SocksError)
    if socks is not None:
        return f"through the SOCKS5 proxy (--socks5): {socks}"
    if isinstance(e, ConnectError) and e.code == "HOST":
        return (f"{where} has only .onion hosts, which only Tor reaches: give --socks5 with the address of "
                "its SOCKS5 port (usually 127.0.0.1:9050)")
    if find(ConnectionRefusedError) is not None:
        return f"connection refused by {where}: no server is listening there (is it running? is the port right?)"
    if find(socket.gaierror) is not None:
        return f"cannot resolve the host in the address ({where}): check the host name"
    if find(TLSIdentityError) is not None:
        return (f"the server at {where} is not the one the address names: its certificate does not match "
                f"the fingerprint {fingerprint_text(address)!r} (copy the address again from `smpfast address` "
                "or the server's operator)")
    if find(trio.TooSlowError, HandshakeTimeout) is not None:
        return (f"no answer from {where} within {connect_timeout:g} s (--connect-timeout): check the host, "
                "the port and any firewall, or raise --connect-timeout")
    tls = find(ssl.SSLError)
    if tls is not None:
        reason = getattr(tls, "reason", None) or str(tls)
        return (f"the TLS handshake with {where} failed ({reason}): is this the port of an SMP server? "
                "(SMP servers speak TLS with ALPN smp/1)")
    hs = find(HandshakeError)
    if hs is not None:
        if hs.code == "VERSION":  # type: ignore[attr-defined]
            cap = f" (--max-version {max_version})" if max_version is not None else ""
            return f"no SMP version in common with the server at {where}{cap}: {hs}"
        return f"the SMP handshake with {where} failed: {hs}"
    if isinstance(e, ClientClosed):
        return f"the server at {where} closed the connection during {phase}"
    if find(ConnectionResetError, BrokenPipeError) is not None:
        return f"{where} closed the connection during {phase} (is this the port of an SMP server?)"
    text = str(e)
    return f"{type(e).__name__} during {phase}" + (f": {text}" if text else "")


def short_cause(e: BaseException) -> str:
    """A few words for an error type in the report (e.g. a storm connection's failure)."""
    causes = _causes(e)
    for types, words in ((ConnectionRefusedError, "connection refused"), (socket.gaierror, "unresolvable host"),
                         (TLSIdentityError, "wrong server identity"), ((trio.TooSlowError, HandshakeTimeout), "timeout"),
                         (ssl.SSLError, "TLS handshake failed"), (HandshakeError, "SMP handshake failed")):
        if any(isinstance(c, types) for c in causes):
            return words
    return type(e).__name__
