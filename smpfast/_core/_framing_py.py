"""Pure-Python twin of ``framing.pyx``: padding, batches and transmission splitting.

Layouts (all big-endian):

- padded buffer: ``Word16 len || data || '#' * (size - len - 2)``
- batch: ``count(1..255) || count * (Word16 len || transmission)``
- transmission: ``auth(shortString) [serviceSig] [sessionId] corrId entityId command``
  where ``serviceSig`` is a ``Maybe`` of a 64-byte shortString present only when the
  session uses service auth (v >= 16) and ``auth`` is non-empty, and ``sessionId`` is on
  the wire only when it is not implied (v < 7).

``split_block`` returns one tuple per transmission:
``(status, auth, service_sig, corr_id, entity_id, command, t_for_auth)``.
``t_for_auth`` is ``shortString(sessionId) || corrId || entityId || command`` — the bytes
an authorization covers, at every version.
"""

from __future__ import annotations

from ._errors import FramingError

PAD_BYTE = 0x23  # '#'

# Per-transmission status codes of split_block.
T_OK = 0
T_BAD = 1  # unparsable transmission: ERR BLOCK, empty corrId
T_BAD_AUTH = 2  # authorization of a length that is no key type: ERR BLOCK with corrId
T_BAD_SESSION = 3  # v6 session id differs from the connection's: ERR SESSION with corrId

# Authorization lengths the reference accepts: X25519 authenticator, Ed25519, Ed448.
AUTH_LENGTHS = (0, 80, 64, 114)
SERVICE_SIG_LENGTH = 64


def pad(data: bytes, size: int) -> bytes:
    n = len(data)
    if n > size - 2 or n > 65533:
        raise FramingError("message too large for padding")
    return n.to_bytes(2, "big") + data + b"#" * (size - n - 2)


def unpad(block: bytes) -> bytes:
    if len(block) < 2:
        raise FramingError("padded buffer shorter than its length prefix")
    n = (block[0] << 8) | block[1]
    if n > len(block) - 2:
        raise FramingError("pad length exceeds buffer")
    return bytes(block[2 : 2 + n])


def encode_batch(transmissions: list[bytes], size: int) -> bytes:
    """Batch ``transmissions`` and pad the batch to ``size`` bytes."""
    count = len(transmissions)
    if count == 0 or count > 255:
        raise FramingError("a batch holds 1 to 255 transmissions")
    parts = [bytes((count,))]
    for t in transmissions:
        if len(t) > 65535:
            raise FramingError("transmission too large")
        parts.append(len(t).to_bytes(2, "big"))
        parts.append(t)
    return pad(b"".join(parts), size)


def encode_transmission(
    auth: bytes,
    corr_id: bytes,
    entity_id: bytes,
    command: bytes,
    session_id: bytes,
    implied_session: bool,
    service_auth: bool,
    service_sig: bytes | None = None,
) -> bytes:
    """Encode one transmission as it goes on the wire (without its batch length)."""
    for field in (auth, corr_id, entity_id, session_id):
        if len(field) > 255:
            raise FramingError("short string longer than 255 bytes")
    parts = [bytes((len(auth),)), auth]
    if service_auth and auth:
        if service_sig is None:
            parts.append(b"0")
        else:
            if len(service_sig) != SERVICE_SIG_LENGTH:
                raise FramingError("service signature must be 64 bytes")
            parts.append(b"1\x40")
            parts.append(service_sig)
    if not implied_session:
        parts.append(bytes((len(session_id),)))
        parts.append(session_id)
    parts += [bytes((len(corr_id),)), corr_id, bytes((len(entity_id),)), entity_id, command]
    return b"".join(parts)


def _split_one(t: bytes, session_prefix: bytes, implied_session: bool, service_auth: bool) -> tuple:
    n = len(t)
    if n < 1:
        return (T_BAD, b"", None, b"", b"", b"", b"")
    alen = t[0]
    pos = 1 + alen
    if pos > n:
        return (T_BAD, b"", None, b"", b"", b"", b"")
    auth = t[1:pos]
    service_sig = None
    if service_auth and alen:
        if pos >= n:
            return (T_BAD, b"", None, b"", b"", b"", b"")
        tag = t[pos]
        pos += 1
        if tag == 0x31:  # '1'
            if pos >= n or t[pos] != SERVICE_SIG_LENGTH or pos + 1 + SERVICE_SIG_LENGTH > n:
                return (T_BAD, b"", None, b"", b"", b"", b"")
            service_sig = t[pos + 1 : pos + 1 + SERVICE_SIG_LENGTH]
            pos += 1 + SERVICE_SIG_LENGTH
        elif tag != 0x30:  # '0'
            return (T_BAD, b"", None, b"", b"", b"", b"")
    start = pos
    sess = None
    if not implied_session:
        if pos >= n or pos + 1 + t[pos] > n:
            return (T_BAD, b"", None, b"", b"", b"", b"")
        sess = t[pos + 1 : pos + 1 + t[pos]]
        pos += 1 + t[pos]
    if pos >= n or pos + 1 + t[pos] > n:
        return (T_BAD, b"", None, b"", b"", b"", b"")
    corr_id = t[pos + 1 : pos + 1 + t[pos]]
    pos += 1 + t[pos]
    if pos >= n or pos + 1 + t[pos] > n:
        return (T_BAD, b"", None, b"", b"", b"", b"")
    entity_id = t[pos + 1 : pos + 1 + t[pos]]
    pos += 1 + t[pos]
    command = t[pos:]
    t_for_auth = session_prefix + t[start:] if implied_session else t[start:]
    if sess is not None and sess != session_prefix[1:]:
        status = T_BAD_SESSION
    elif alen not in AUTH_LENGTHS:
        status = T_BAD_AUTH
    else:
        status = T_OK
    return (status, auth, service_sig, corr_id, entity_id, command, t_for_auth)


def split_block(block: bytes, session_id: bytes, implied_session: bool, service_auth: bool) -> list[tuple]:
    """Unpad ``block``, parse its batch and split every transmission.

    Raises FramingError when the block itself is malformed (the reference answers one
    ``ERR BLOCK`` for the whole block); a malformed transmission only sets its status.
    """
    block = bytes(block)
    if len(block) < 2:
        raise FramingError("block shorter than its length prefix")
    n = (block[0] << 8) | block[1]
    end = 2 + n
    if end > len(block):
        raise FramingError("pad length exceeds block")
    if n < 1:
        raise FramingError("empty batch")
    count = block[2]
    if count == 0:
        raise FramingError("batch count is zero")
    session_prefix = bytes((len(session_id),)) + session_id
    pos = 3
    result = []
    for _ in range(count):
        if pos + 2 > end:
            raise FramingError("truncated batch")
        tlen = (block[pos] << 8) | block[pos + 1]
        pos += 2
        if pos + tlen > end:
            raise FramingError("truncated transmission")
        result.append(_split_one(block[pos : pos + tlen], session_prefix, implied_session, service_auth))
        pos += tlen
    if pos != end:
        raise FramingError("trailing bytes after batch")
    return result


def group_transmissions(sizes: list[int], budget: int = 16365, max_count: int = 255) -> list[int]:
    """Split transmissions of the given encoded ``sizes`` into consecutive blocks.

    Returns the number of transmissions in each block, in order. Each transmission costs
    ``2 + size`` of ``budget`` (16384 - 19: pad length, count byte and the block-encryption
    tag, reserved even when blocks are not encrypted). Like the reference, blocks are filled
    from the **end**, so a short block, if any, comes first. A transmission that alone
    exceeds the budget raises FramingError.
    """
    counts: list[int] = []
    used = 0
    n = 0
    for size in reversed(sizes):
        cost = size + 2
        if cost > budget:
            raise FramingError("transmission larger than a block")
        if used + cost <= budget and n < max_count:
            used += cost
            n += 1
        else:
            counts.append(n)
            used, n = cost, 1
    if n:
        counts.append(n)
    counts.reverse()
    return counts
