"""Errors raised by the protocol codecs, and the SMP ``ERR`` error types with their codec.

``ErrorType`` is what ``ERR`` carries. Its wire form is ASCII words separated by single
spaces, except three binary spots the reference has: the shortString inside
``BROKER RESPONSE``/``BROKER UNEXPECTED`` and inside ``NETWORK CONNECT/TLS/SUBSCRIBE``.
``STORE``, ``NAME RESOLVER`` (v20) and the ``BLOCKED`` notice take the rest of the input.

Every value class is a frozen dataclass (hashable), so the ready constants below can be
shared freely.
"""

from __future__ import annotations

import codecs
import json
import math
from dataclasses import dataclass
from .encoding import ParseError, Reader, UnknownTag

__all__ = ["ParseError", "UnknownTag"]  # defined with the primitive codecs; re-exported here


CMD_CODES = ("UNKNOWN", "SYNTAX", "PROHIBITED", "NO_AUTH", "HAS_AUTH", "NO_ENTITY")
HANDSHAKE_CODES = ("PARSE", "IDENTITY", "BAD_AUTH", "BAD_SERVICE")
_TRANSPORT_SIMPLE = ("BLOCK", "VERSION", "LARGE_MSG", "SESSION", "NO_AUTH")
_NETWORK_TEXT = ("CONNECT", "TLS", "SUBSCRIBE")
_NETWORK_SIMPLE = ("UNKNOWNCA", "FAILED", "TIMEOUT")
_BROKER_TEXT = ("RESPONSE", "UNEXPECTED")
_BROKER_SIMPLE = ("TIMEOUT", "HOST", "NO_SERVICE")
_ERROR_SIMPLE = (
    "BLOCK", "SESSION", "AUTH", "SERVICE", "CRYPTO", "QUOTA", "EXPIRED", "NO_MSG", "LARGE_MSG",
    "INTERNAL", "DUPLICATE_",
)
BLOCKING_REASONS = ("spam", "content")
NAME_CODES = ("NO_RESOLVER", "NOT_FOUND", "RESOLVER")
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def _qmark_each_byte(err: UnicodeDecodeError) -> tuple[str, int]:
    return "?" * (err.end - err.start), err.end


codecs.register_error("smpfast-qmark", _qmark_each_byte)


def safe_utf8(raw: bytes) -> str:
    """UTF-8 text as the reference's safeDecodeUtf8 reads it: each invalid byte becomes '?'."""
    return raw.decode("utf-8", "smpfast-qmark")


def _short_text(text: str) -> bytes:
    # The reference packs a Haskell String as Char8 (each char truncated to 8 bits) into a
    # shortString; longer than 255 bytes would corrupt the length byte, so we truncate.
    raw = bytes(ord(c) & 0xFF for c in text)[:255]
    return bytes((len(raw),)) + raw


@dataclass(frozen=True, slots=True)
class TransportError:
    """Transport/handshake error (Transport.hs ``TransportError``).

    ``code``: BLOCK, VERSION, LARGE_MSG, SESSION, NO_AUTH or HANDSHAKE; ``handshake`` is
    PARSE, IDENTITY, BAD_AUTH or BAD_SERVICE when code is HANDSHAKE.
    """

    code: str
    handshake: str | None = None

    def __post_init__(self) -> None:
        if self.code == "HANDSHAKE":
            if self.handshake not in HANDSHAKE_CODES:
                raise ValueError(f"bad handshake error {self.handshake!r}")
        elif self.code not in _TRANSPORT_SIMPLE or self.handshake is not None:
            raise ValueError(f"bad transport error {self.code!r}")

    def encode(self) -> bytes:
        if self.code == "HANDSHAKE":
            return b"HANDSHAKE " + self.handshake.encode()  # type: ignore[union-attr]
        return self.code.encode()

    def __str__(self) -> str:
        return self.encode().decode()


@dataclass(frozen=True, slots=True)
class NetworkError:
    """``code``: CONNECT/TLS/SUBSCRIBE (with ``text``), UNKNOWNCA, FAILED or TIMEOUT."""

    code: str
    text: str | None = None

    def __post_init__(self) -> None:
        if self.code in _NETWORK_TEXT:
            if not isinstance(self.text, str):
                raise ValueError(f"{self.code} needs text")
        elif self.code not in _NETWORK_SIMPLE or self.text is not None:
            raise ValueError(f"bad network error {self.code!r}")

    def encode(self) -> bytes:
        if self.text is not None:
            return self.code.encode() + b" " + _short_text(self.text)
        return self.code.encode()

    def __str__(self) -> str:
        return self.code if self.text is None else f"{self.code} {self.text}"


@dataclass(frozen=True, slots=True)
class BrokerError:
    """``code``: RESPONSE/UNEXPECTED (``detail`` str), TRANSPORT (``detail`` TransportError),
    NETWORK (``detail`` NetworkError), TIMEOUT, HOST, NO_SERVICE.

    NETWORK always goes on the wire as the bare word ``NETWORK`` (the reference does not
    send its detail yet); a bare ``NETWORK`` parses as ``NETWORK`` with FAILED.
    """

    code: str
    detail: str | TransportError | NetworkError | None = None

    def __post_init__(self) -> None:
        c, d = self.code, self.detail
        ok = (
            (c in _BROKER_TEXT and isinstance(d, str))
            or (c == "TRANSPORT" and isinstance(d, TransportError))
            or (c == "NETWORK" and isinstance(d, NetworkError))
            or (c in _BROKER_SIMPLE and d is None)
        )
        if not ok:
            raise ValueError(f"bad broker error {c!r} {d!r}")

    def encode(self) -> bytes:
        c = self.code
        if c in _BROKER_TEXT:
            return c.encode() + b" " + _short_text(self.detail)  # type: ignore[arg-type]
        if c == "TRANSPORT":
            return b"TRANSPORT " + self.detail.encode()  # type: ignore[union-attr]
        return c.encode()  # NETWORK is sent bare

    def __str__(self) -> str:
        if self.code in _BROKER_TEXT or self.code == "TRANSPORT":
            return f"{self.code} {self.detail}"
        return self.code


@dataclass(frozen=True, slots=True)
class ProxyError:
    """``code``: PROTOCOL (``detail`` ErrorType), BROKER (``detail`` BrokerError),
    BASIC_AUTH, NO_SESSION."""

    code: str
    detail: "ErrorType | BrokerError | None" = None

    def __post_init__(self) -> None:
        c, d = self.code, self.detail
        ok = (
            (c == "PROTOCOL" and isinstance(d, ErrorType))
            or (c == "BROKER" and isinstance(d, BrokerError))
            or (c in ("BASIC_AUTH", "NO_SESSION") and d is None)
        )
        if not ok:
            raise ValueError(f"bad proxy error {c!r} {d!r}")

    def encode(self) -> bytes:
        if self.detail is None:
            return self.code.encode()
        return self.code.encode() + b" " + self.detail.encode()

    def __str__(self) -> str:
        return self.code if self.detail is None else f"{self.code} {self.detail}"


@dataclass(frozen=True, slots=True)
class NameResolutionError:
    """The v20 ``NAME`` error (the reference's NameErrorType): ``code`` NO_RESOLVER (no
    resolver configured), NOT_FOUND (the name is not registered), or RESOLVER with ``text``,
    the resolver failure (UTF-8, taking the rest of the input)."""

    code: str
    text: str | None = None

    def __post_init__(self) -> None:
        if self.code == "RESOLVER":
            if not isinstance(self.text, str):
                raise ValueError("RESOLVER needs text")
        elif self.code not in NAME_CODES or self.text is not None:
            raise ValueError(f"bad name error {self.code!r}")

    def encode(self) -> bytes:
        if self.text is not None:
            return b"RESOLVER " + self.text.encode("utf-8")
        return self.code.encode()

    def __str__(self) -> str:
        return self.code if self.text is None else f"{self.code} {self.text}"


@dataclass(frozen=True, slots=True)
class ClientNotice:
    """The JSON notice of ``ERR BLOCKED`` (v18): ``{"ttl":<seconds>}`` or ``{}``."""

    ttl: int | None = None

    def encode(self) -> bytes:
        return b"{}" if self.ttl is None else b'{"ttl":%d}' % self.ttl


@dataclass(frozen=True, slots=True)
class BlockingInfo:
    """``reason`` is "spam" or "content"; ``notice`` only goes on the wire from v18."""

    reason: str
    notice: ClientNotice | None = None

    def __post_init__(self) -> None:
        if self.reason not in BLOCKING_REASONS:
            raise ValueError(f"bad blocking reason {self.reason!r}")

    def encode(self) -> bytes:
        out = b"reason=" + self.reason.encode()
        if self.notice is not None:
            out += b",notice=" + self.notice.encode()
        return out

    def __str__(self) -> str:
        return self.encode().decode()


@dataclass(frozen=True, slots=True)
class ErrorType:
    """An SMP error (the payload of ``ERR``).

    ``code`` is one of BLOCK, SESSION, CMD, PROXY, AUTH, BLOCKED, SERVICE, CRYPTO, QUOTA,
    STORE, EXPIRED, NO_MSG, LARGE_MSG, INTERNAL, NAME (v20), DUPLICATE_. ``detail`` is: for
    CMD the sub-code (UNKNOWN, SYNTAX, PROHIBITED, NO_AUTH, HAS_AUTH, NO_ENTITY), for PROXY a
    ProxyError, for BLOCKED a BlockingInfo, for STORE the text, for NAME a
    NameResolutionError; otherwise None.
    """

    code: str
    detail: "str | ProxyError | BlockingInfo | NameResolutionError | None" = None

    def __post_init__(self) -> None:
        c, d = self.code, self.detail
        ok = (
            (c in _ERROR_SIMPLE and d is None)
            or (c == "CMD" and d in CMD_CODES)
            or (c == "PROXY" and isinstance(d, ProxyError))
            or (c == "BLOCKED" and isinstance(d, BlockingInfo))
            or (c == "STORE" and isinstance(d, str))
            or (c == "NAME" and isinstance(d, NameResolutionError))
        )
        if not ok:
            raise ValueError(f"bad error type {c!r} {d!r}")

    def encode(self) -> bytes:
        """The wire form, without any version adaptation (see commands.Err)."""
        c, d = self.code, self.detail
        if d is None:
            return c.encode()
        if c == "CMD":
            return b"CMD " + d.encode()  # type: ignore[union-attr]
        if c == "STORE":
            return b"STORE " + d.encode("utf-8")  # type: ignore[union-attr]
        return c.encode() + b" " + d.encode()  # type: ignore[union-attr]

    def __str__(self) -> str:
        return self.code if self.detail is None else f"{self.code} {self.detail}"


# ---- parsing (attoparsec semantics: word = takeTill ' ', nested values consume exactly) ----


def _fail(msg: str) -> ParseError:
    return ParseError(msg)


def _space(r: Reader) -> None:
    if r.byte() != 0x20:
        raise _fail("expected space")


def _latin1_short(r: Reader) -> str:
    return r.short_string().decode("latin-1")


def _transport_p(r: Reader) -> TransportError:
    w = r.word()
    if w == b"HANDSHAKE":
        _space(r)
        # parseRead1: the word up to ' ' or '\n', read as a constructor name
        start = r.pos
        data = r.data
        end = start
        while end < len(data) and data[end] not in (0x20, 0x0A):
            end += 1
        r.pos = end
        name = data[start:end].decode("latin-1")
        if name not in HANDSHAKE_CODES:
            raise _fail("bad HandshakeError")
        return TransportError("HANDSHAKE", name)
    name = w.decode("latin-1")
    if name not in _TRANSPORT_SIMPLE:
        raise _fail("bad TransportError")
    return TransportError(name)


def _network_p(r: Reader) -> NetworkError:
    name = r.word().decode("latin-1")
    if name in _NETWORK_TEXT:
        _space(r)
        return NetworkError(name, _latin1_short(r))
    if name in _NETWORK_SIMPLE:
        return NetworkError(name)
    raise _fail("bad NetworkError")


_NETWORK_FAILED = NetworkError("FAILED")


def _broker_p(r: Reader) -> BrokerError:
    name = r.word().decode("latin-1")
    if name in _BROKER_TEXT:
        _space(r)
        return BrokerError(name, _latin1_short(r))
    if name == "TRANSPORT":
        _space(r)
        return BrokerError(name, _transport_p(r))
    if name == "NETWORK":
        # `_smpP <|> pure NEFailedError`: try " " + NetworkError, else rewind
        save = r.pos
        try:
            _space(r)
            return BrokerError(name, _network_p(r))
        except ParseError:
            r.pos = save
            return BrokerError(name, _NETWORK_FAILED)
    if name in _BROKER_SIMPLE:
        return BrokerError(name)
    raise _fail("bad BrokerErrorType")


def _proxy_p(r: Reader) -> ProxyError:
    name = r.word()
    if name == b"PROTOCOL":
        _space(r)
        return ProxyError("PROTOCOL", _error_p(r))
    if name == b"BROKER":
        _space(r)
        return ProxyError("BROKER", _broker_p(r))
    if name == b"BASIC_AUTH":
        return PROXY_BASIC_AUTH.detail  # type: ignore[return-value]
    if name == b"NO_SESSION":
        return PROXY_NO_SESSION.detail  # type: ignore[return-value]
    raise _fail("bad ProxyError")


def _notice_p(raw: bytes) -> ClientNotice:
    # aeson: strict UTF-8 JSON, an object whose optional "ttl" is an Int64 (or null)
    def no_constant(name: str) -> None:
        raise ValueError(name)

    try:
        obj = json.loads(raw.decode("utf-8"), parse_constant=no_constant)
    except (ValueError, RecursionError) as e:
        raise _fail("bad notice JSON") from e
    if not isinstance(obj, dict):
        raise _fail("notice is not an object")
    ttl = obj.get("ttl")
    if ttl is None:
        return ClientNotice(None)
    if isinstance(ttl, bool) or not isinstance(ttl, (int, float)):
        raise _fail("bad notice ttl")
    if isinstance(ttl, float):
        if not math.isfinite(ttl) or not ttl.is_integer():
            raise _fail("bad notice ttl")
        ttl = int(ttl)
    if not _INT64_MIN <= ttl <= _INT64_MAX:
        raise _fail("notice ttl out of range")
    return ClientNotice(ttl)


def _blocking_p(r: Reader) -> BlockingInfo:
    r.char(b"reason=")
    rest = r.data[r.pos :]
    if rest.startswith(b"spam"):
        reason = "spam"
        r.pos += 4
    elif rest.startswith(b"content"):
        reason = "content"
        r.pos += 7
    else:
        raise _fail("bad blocking reason")
    if r.data.startswith(b",notice=", r.pos):
        # the notice JSON takes the rest; if it does not parse the whole value fails
        r.pos += 8
        return BlockingInfo(reason, _notice_p(r.rest()))
    return BlockingInfo(reason)


_SIMPLE_ERRORS: dict[bytes, "ErrorType"] = {}


def _error_p(r: Reader) -> ErrorType:
    name = r.word()
    simple = _SIMPLE_ERRORS.get(name)
    if simple is not None:
        return simple
    if name == b"CMD":
        _space(r)
        sub = r.word()
        if sub == b"NO_QUEUE":  # legacy alias accepted by the reference parser
            sub = b"NO_ENTITY"
        err = _CMD_ERRORS.get(sub)
        if err is None:
            raise _fail("bad CommandError")
        return err
    if name == b"PROXY":
        _space(r)
        return ErrorType("PROXY", _proxy_p(r))
    if name == b"BLOCKED":
        _space(r)
        return ErrorType("BLOCKED", _blocking_p(r))
    if name == b"STORE":
        _space(r)
        return ErrorType("STORE", safe_utf8(r.rest()))
    if name == b"NAME":
        _space(r)
        return ErrorType("NAME", _name_p(r))
    raise _fail("bad ErrorType")


def _name_p(r: Reader) -> NameResolutionError:
    code = r.word()
    if code == b"RESOLVER":
        _space(r)
        return NameResolutionError("RESOLVER", safe_utf8(r.rest()))
    err = _NAME_ERRORS.get(code)
    if err is None:
        raise _fail("bad NameErrorType")
    return err


def parse_error_type(data: bytes) -> ErrorType:
    """Parse a whole ErrorType (strict: no trailing bytes). Raises ParseError."""
    r = Reader(data)
    err = _error_p(r)
    r.end()
    return err


def read_error_type(r: Reader) -> ErrorType:
    """Parse an ErrorType at the reader's position (for use inside other parsers)."""
    return _error_p(r)


def parse_transport_error(data: bytes) -> TransportError:
    r = Reader(data)
    err = _transport_p(r)
    r.end()
    return err


def read_transport_error(r: Reader) -> TransportError:
    return _transport_p(r)


# ---- ready constants ----

BLOCK = ErrorType("BLOCK")
SESSION = ErrorType("SESSION")
AUTH = ErrorType("AUTH")
SERVICE = ErrorType("SERVICE")
CRYPTO = ErrorType("CRYPTO")
QUOTA = ErrorType("QUOTA")
EXPIRED = ErrorType("EXPIRED")
NO_MSG = ErrorType("NO_MSG")
LARGE_MSG = ErrorType("LARGE_MSG")
INTERNAL = ErrorType("INTERNAL")
DUPLICATE_ = ErrorType("DUPLICATE_")
CMD_UNKNOWN = ErrorType("CMD", "UNKNOWN")
CMD_SYNTAX = ErrorType("CMD", "SYNTAX")
CMD_PROHIBITED = ErrorType("CMD", "PROHIBITED")
CMD_NO_AUTH = ErrorType("CMD", "NO_AUTH")
CMD_HAS_AUTH = ErrorType("CMD", "HAS_AUTH")
CMD_NO_ENTITY = ErrorType("CMD", "NO_ENTITY")
PROXY_BASIC_AUTH = ErrorType("PROXY", ProxyError("BASIC_AUTH"))
PROXY_NO_SESSION = ErrorType("PROXY", ProxyError("NO_SESSION"))
BLOCKED_SPAM = ErrorType("BLOCKED", BlockingInfo("spam"))
BLOCKED_CONTENT = ErrorType("BLOCKED", BlockingInfo("content"))
NAME_NO_RESOLVER = ErrorType("NAME", NameResolutionError("NO_RESOLVER"))
NAME_NOT_FOUND = ErrorType("NAME", NameResolutionError("NOT_FOUND"))


def name_resolver(text: str) -> ErrorType:
    """``NAME RESOLVER <text>``: the resolver behind a names server failed."""
    return ErrorType("NAME", NameResolutionError("RESOLVER", text))


def proxy_protocol(err: ErrorType) -> ErrorType:
    """``PROXY PROTOCOL <err>``: a relay's error for the forwarded command."""
    return ErrorType("PROXY", ProxyError("PROTOCOL", err))


def proxy_broker(err: BrokerError) -> ErrorType:
    """``PROXY BROKER <err>``: the proxy could not talk to the relay."""
    return ErrorType("PROXY", ProxyError("BROKER", err))


_SIMPLE_ERRORS.update({e.code.encode(): e for e in (
    BLOCK, SESSION, AUTH, SERVICE, CRYPTO, QUOTA, EXPIRED, NO_MSG, LARGE_MSG, INTERNAL, DUPLICATE_,
)})
_CMD_ERRORS = {e.detail.encode(): e for e in (  # type: ignore[union-attr]
    CMD_UNKNOWN, CMD_SYNTAX, CMD_PROHIBITED, CMD_NO_AUTH, CMD_HAS_AUTH, CMD_NO_ENTITY,
)}
_NAME_ERRORS = {e.detail.code.encode(): e.detail for e in (NAME_NO_RESOLVER, NAME_NOT_FOUND)}  # type: ignore[union-attr]
