"""A tiny strict DER reader and writer: just what SPKI, PKCS#8 and SignedExact need.

Only low tag numbers (one identifier byte) and definite, minimally encoded lengths are
accepted: that is DER as every real SMP peer produces it. Errors raise ``DerError``.
"""

from __future__ import annotations

from smpfast._core import CryptoError

SEQUENCE = 0x30
INTEGER = 0x02
BIT_STRING = 0x03
OCTET_STRING = 0x04
OID = 0x06


class DerError(CryptoError):
    """Bytes that are not the expected DER structure."""


def encode_length(n: int) -> bytes:
    if n < 0x80:
        return bytes((n,))
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes((0x80 | len(body),)) + body


def tlv(tag: int, value: bytes) -> bytes:
    """One DER element: identifier byte, length, value."""
    return bytes((tag,)) + encode_length(len(value)) + value


def read_tlv(data: bytes, pos: int = 0, limit: int | None = None) -> tuple[int, int, int]:
    """Read the element at ``pos`` (not past ``limit``): ``(tag, value_start, value_end)``."""
    n = len(data) if limit is None else limit
    if pos + 2 > n:
        raise DerError("truncated DER element")
    tag = data[pos]
    if tag & 0x1F == 0x1F:
        raise DerError("high tag numbers are not used here")
    first = data[pos + 1]
    pos += 2
    if first < 0x80:
        length = first
    else:
        count = first & 0x7F
        if count == 0:
            raise DerError("indefinite length is not DER")
        if count > 4 or pos + count > n:
            raise DerError("bad DER length")
        length = int.from_bytes(data[pos : pos + count], "big")
        if length < 0x80 or data[pos] == 0:
            raise DerError("non-minimal DER length")
        pos += count
    end = pos + length
    if end > n:
        raise DerError("DER element longer than its input")
    return tag, pos, end


def children(data: bytes, start: int = 0, end: int | None = None) -> list[tuple[int, int, int, int]]:
    """Split ``data[start:end]`` into consecutive elements that cover it exactly.

    Each entry is ``(tag, element_start, value_start, value_end)``."""
    end = len(data) if end is None else end
    out = []
    pos = start
    while pos < end:
        tag, vs, ve = read_tlv(data, pos, end)
        out.append((tag, pos, vs, ve))
        pos = ve
    return out


def expect_one(data: bytes, tag: int) -> tuple[int, int]:
    """``data`` must be exactly one element with ``tag``: returns its value bounds."""
    t, vs, ve = read_tlv(data, 0)
    if t != tag:
        raise DerError(f"expected DER tag {tag:#04x}, got {t:#04x}")
    if ve != len(data):
        raise DerError("trailing bytes after DER element")
    return vs, ve


def bit_string_bytes(data: bytes, vs: int, ve: int) -> bytes:
    """Value of a BIT STRING with no unused bits (all keys and signatures are whole bytes)."""
    if ve - vs < 1 or data[vs] != 0:
        raise DerError("BIT STRING with unused bits")
    return bytes(data[vs + 1 : ve])
