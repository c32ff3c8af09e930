"""Message bodies the load generator sends and checks.

A body is a 37-byte header followed by a known pattern up to the requested size:

    magic "SMPL" | format 1 | stream u32 | seq u64 | intended_ns i64 | sent_ns i64 | crc32 u32

``stream`` is the sender (messaging) or 0 (fanout), ``seq`` the sender's message number,
``intended_ns``/``sent_ns`` the intended and actual send times (``time.perf_counter_ns``
of this process: sender and recipient share the clock), ``crc32`` covers the header
before it. The pattern after the header is a fixed pseudo-random byte string read at an
offset that depends on ``seq``, so a body swapped with another message's fails the check.
"""

from __future__ import annotations

import hashlib
import struct
import zlib
from typing import NamedTuple

MAGIC = b"SMPL"
FORMAT = 1
_HEAD = struct.Struct(">4sBIQqq")
_CRC = struct.Struct(">I")
HEADER_SIZE = _HEAD.size + _CRC.size  # 37
_PATTERN_PERIOD = 251  # offsets 0..250: a prime, so consecutive seqs differ
_MAX_BODY = 16384
_PATTERN = hashlib.shake_128(b"smpfast load pattern").digest(_MAX_BODY + _PATTERN_PERIOD)


class PayloadError(ValueError):
    """A received body that is not what a sender of this run wrote; ``kind`` says how."""

    def __init__(self, kind: str, stamp: "Stamp | None" = None) -> None:
        super().__init__(kind)
        self.kind = kind
        self.stamp = stamp  # set when the header is intact (the message is known)


class Stamp(NamedTuple):
    stream: int
    seq: int
    intended_ns: int
    sent_ns: int


def _pattern(seq: int, n: int) -> bytes:
    off = seq % _PATTERN_PERIOD
    return _PATTERN[off : off + n]


def encode(stream: int, seq: int, intended_ns: int, sent_ns: int, size: int) -> bytes:
    """A body of exactly ``size`` bytes (at least HEADER_SIZE)."""
    if size < HEADER_SIZE or size > _MAX_BODY:
        raise ValueError(f"body size must be {HEADER_SIZE}..{_MAX_BODY}")
    head = _HEAD.pack(MAGIC, FORMAT, stream, seq, intended_ns, sent_ns)
    return head + _CRC.pack(zlib.crc32(head)) + _pattern(seq, size - HEADER_SIZE)


def decode(body: bytes, size: int | None = None) -> Stamp:
    """Check a body and return its stamp. Raises PayloadError: ``size`` (not the expected
    length), ``header`` (bad magic/format/checksum), ``pattern`` (payload differs)."""
    if len(body) < HEADER_SIZE:
        raise PayloadError("size")
    magic, fmt, stream, seq, intended_ns, sent_ns = _HEAD.unpack_from(body)
    if magic != MAGIC or fmt != FORMAT:
        raise PayloadError("header")
    if _CRC.unpack_from(body, _HEAD.size)[0] != zlib.crc32(body[: _HEAD.size]):
        raise PayloadError("header")
    stamp = Stamp(stream, seq, intended_ns, sent_ns)
    if size is not None and len(body) != size:
        raise PayloadError("size", stamp)
    if body[HEADER_SIZE:] != _pattern(seq, len(body) - HEADER_SIZE):
        raise PayloadError("pattern", stamp)
    return stamp
