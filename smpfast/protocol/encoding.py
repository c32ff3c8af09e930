"""SMP binary encoding primitives (big-endian), and a cursor to parse them.

Encoders are plain functions returning bytes; parsing goes through ``Reader``, whose
methods consume exactly their field and raise ``ParseError`` on short or bad input.
"""

from __future__ import annotations

import base64
import struct
from typing import Callable, Iterable, TypeVar


class ParseError(ValueError):
    """Bytes that do not follow an SMP encoding. Codecs raise only this (or a subclass)."""


class UnknownTag(ParseError):
    """A command or response tag the version does not know: the reference's CMD UNKNOWN."""


T = TypeVar("T")

_W16 = struct.Struct(">H")
_W32 = struct.Struct(">I")
_I64 = struct.Struct(">q")


def word16(n: int) -> bytes:
    return _W16.pack(n)


def word32(n: int) -> bytes:
    return _W32.pack(n)


def int64(n: int) -> bytes:
    return _I64.pack(n)


def boolean(b: bool) -> bytes:
    return b"T" if b else b"F"


def short_string(s: bytes) -> bytes:
    """1-byte length and the bytes. Longer than 255 is a programming error here (the
    reference would silently corrupt it), so it raises."""
    if len(s) > 255:
        raise ValueError("short string longer than 255 bytes")
    return bytes((len(s),)) + s


def large(s: bytes) -> bytes:
    if len(s) > 65535:
        raise ValueError("large string longer than 65535 bytes")
    return _W16.pack(len(s)) + s


def maybe(value: T | None, encode: Callable[[T], bytes]) -> bytes:
    return b"0" if value is None else b"1" + encode(value)


def short_list(items: Iterable[T], encode: Callable[[T], bytes]) -> bytes:
    """A list or NonEmpty: count byte then the concatenated elements."""
    items = list(items)
    if len(items) > 255:
        raise ValueError("list longer than 255 items")
    return bytes((len(items),)) + b"".join(encode(i) for i in items)


def b64url(data: bytes) -> str:
    """base64url with padding, as the reference's StrEncoding of ByteString."""
    return base64.urlsafe_b64encode(data).decode("ascii")


# SubjectPublicKeyInfo DER prefixes (RFC 8410, no algorithm parameters) and total lengths.
ED25519_SPKI_PREFIX = bytes.fromhex("302a300506032b6570032100")
X25519_SPKI_PREFIX = bytes.fromhex("302a300506032b656e032100")
ED448_SPKI_PREFIX = bytes.fromhex("3043300506032b6571033a00")
X448_SPKI_PREFIX = bytes.fromhex("3042300506032b656f033900")
_SPKI = {
    (44, ED25519_SPKI_PREFIX): "ed25519",
    (44, X25519_SPKI_PREFIX): "x25519",
    (69, ED448_SPKI_PREFIX): "ed448",
    (68, X448_SPKI_PREFIX): "x448",
}
# Algorithms the reference accepts as a queue authorization key (APublicAuthKey).
AUTH_KEY_ALGORITHMS = frozenset(("ed25519", "ed448", "x25519"))


def key_algorithm(der: bytes) -> str | None:
    """The algorithm of an SPKI DER public key ("ed25519", "x25519", "ed448", "x448"), or
    None when it is not one of the four fixed encodings real clients produce."""
    return _SPKI.get((len(der), der[:12]))


_B64URL_CHARS = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def b64url_decode(text: str | bytes) -> bytes:
    """Parse base64url: ``[A-Za-z0-9_-]+`` then ``=*``; missing padding is accepted."""
    raw = text.encode("ascii") if isinstance(text, str) else bytes(text)
    body = raw.rstrip(b"=")
    if not body or any(c not in _B64URL_CHARS for c in body) or len(raw) - len(body) > 2:
        raise ParseError("not base64url")
    try:
        return base64.urlsafe_b64decode(body + b"=" * (-len(body) % 4))
    except ValueError as e:
        raise ParseError("not base64url") from e


class Reader:
    """A cursor over bytes. Every ``read_*`` consumes its field or raises ParseError."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes, pos: int = 0) -> None:
        self.data = bytes(data)
        self.pos = pos

    def remaining(self) -> int:
        return len(self.data) - self.pos

    def at_end(self) -> bool:
        return self.pos >= len(self.data)

    def end(self) -> None:
        """Require that nothing is left (the reference's strict ``parseAll``)."""
        if self.pos != len(self.data):
            raise ParseError("trailing bytes")

    def take(self, n: int) -> bytes:
        end = self.pos + n
        if n < 0 or end > len(self.data):
            raise ParseError("unexpected end of input")
        out = self.data[self.pos : end]
        self.pos = end
        return out

    def peek(self) -> int | None:
        return self.data[self.pos] if self.pos < len(self.data) else None

    def rest(self) -> bytes:
        """Everything left (the reference's ``Tail``)."""
        out = self.data[self.pos :]
        self.pos = len(self.data)
        return out

    def byte(self) -> int:
        if self.pos >= len(self.data):
            raise ParseError("unexpected end of input")
        b = self.data[self.pos]
        self.pos += 1
        return b

    def char(self, expected: bytes) -> None:
        if self.take(len(expected)) != expected:
            raise ParseError(f"expected {expected!r}")

    def space(self) -> None:
        self.char(b" ")

    def word16(self) -> int:
        return _W16.unpack(self.take(2))[0]

    def word32(self) -> int:
        return _W32.unpack(self.take(4))[0]

    def int64(self) -> int:
        return _I64.unpack(self.take(8))[0]

    def boolean(self) -> bool:
        b = self.byte()
        if b == 0x54:
            return True
        if b == 0x46:
            return False
        raise ParseError("bad Bool")

    def short_string(self) -> bytes:
        return self.take(self.byte())

    def large(self) -> bytes:
        return self.take(self.word16())

    def maybe(self, parse: Callable[["Reader"], T]) -> T | None:
        tag = self.byte()
        if tag == 0x30:
            return None
        if tag == 0x31:
            return parse(self)
        raise ParseError("bad Maybe tag")

    def auth_key(self) -> bytes:
        """A shortString SPKI key usable for queue authorization (Ed25519, Ed448, X25519)."""
        der = self.short_string()
        if _SPKI.get((len(der), der[:12])) not in AUTH_KEY_ALGORITHMS:
            raise ParseError("bad authorization key")
        return der

    def x25519_key(self) -> bytes:
        """A shortString SPKI X25519 key (DH keys)."""
        der = self.short_string()
        if len(der) != 44 or der[:12] != X25519_SPKI_PREFIX:
            raise ParseError("bad X25519 key")
        return der

    def word(self) -> bytes:
        """Bytes up to (not including) the next space or the end (attoparsec ``takeTill (== ' ')``)."""
        end = self.data.find(b" ", self.pos)
        if end < 0:
            end = len(self.data)
        out = self.data[self.pos : end]
        self.pos = end
        return out

    def short_list(self, parse: Callable[["Reader"], T], non_empty: bool = False) -> list[T]:
        n = self.byte()
        if non_empty and n == 0:
            raise ParseError("empty NonEmpty list")
        return [parse(self) for _ in range(n)]
