"""Differential target: the compiled core (framing.pyx, sodium.pyx) against its pure twins.

Every call is made on both implementations with the same arguments; their results must be
equal and of the same types, or both must raise the same exception type with the same
message. Where an output can be fed back (a split transmission re-encoded, a sealed box
opened) the round trip is checked too.

Input layout: ``op`` byte (selects the function family, modulo 8), ``flags`` byte, then
op-specific fields (see each ``_op_*``). Seeds of op 0 are recorded blocks.

    python fuzz/core_twins.py [libFuzzer flags] [corpus dirs]
"""

from __future__ import annotations

import hashlib

import atheris

from _harness import Cursor, check, main, outcome, same

with atheris.instrument_imports(include=["smpfast"]):
    from smpfast._core import _framing_py, _sodium_py
    # The built extensions themselves (an ImportError here means they are not built).
    from smpfast._core import framing, sodium

    import nacl.bindings as nb

PAIRS = {name: (getattr(framing, name), getattr(_framing_py, name))
         for name in ("pad", "unpad", "encode_batch", "encode_transmission", "split_block",
                      "group_transmissions")}
PAIRS.update({name: (getattr(sodium, name), getattr(_sodium_py, name))
              for name in ("hsalsa20", "hsalsa20_key", "x25519", "box_beforenm", "box_seal",
                           "box_seal_padded", "box_open", "box_open_padded", "ed25519_verify",
                           "authenticator_verify", "verify_batch")})

T_OK, T_BAD_AUTH = _framing_py.T_OK, _framing_py.T_BAD_AUTH
BLOCK = 16384
LONG_SESSION = bytes(range(256)) + bytes(44)  # 300 bytes: no valid shortString
FIXED_SESSION = bytes(range(32))
_ED_PK, _ED_SK = nb.crypto_sign_seed_keypair(hashlib.sha256(b"fuzz ed25519").digest())


def both(name: str, *args: object) -> tuple:
    """Call both twins of ``name``; they must agree. Returns the common outcome."""
    compiled, pure = PAIRS[name]
    got = outcome(compiled, *args)
    want = outcome(pure, *args)
    check(same(got, want), name, args, got, want)
    return got


def _as(kind: int, data: bytes) -> object:
    """The same bytes as bytes, bytearray or memoryview (each takes the compiled path)."""
    if kind == 1:
        return bytearray(data)
    if kind == 2:
        return memoryview(data)
    return data


def _odd(kind: int, data: bytes) -> object:
    """Arguments the compiled code hands to the twin: str, a non-byte memoryview, a list."""
    if kind == 0:
        return data.decode("latin-1")
    if kind == 1 and len(data) % 2 == 0:
        return memoryview(data).cast("H")
    return list(data)


def _int(c: Cursor, mode: int) -> object:
    """A size-like argument: mostly a 16-bit value, sometimes negative, huge or odd."""
    w = c.word16()
    return (w, w, w, -w, w + (1 << 62), w + (1 << 64), bool(w & 1), float(w))[mode & 7]


# ---- op 0: split_block, unpad, and re-encoding what was split ----

def _op_split(c: Cursor, flags: int) -> None:
    choice = flags & 3
    session = (b"", c.short(), FIXED_SESSION, LONG_SESSION)[choice]
    content = c.rest()
    block = content + b"#" * (BLOCK - len(content)) if flags & 0x10 else content
    arg = _as((flags >> 2) & 3, block)
    both("unpad", arg)
    for implied in (False, True):
        for service in (False, True):
            res = both("split_block", arg, session, implied, service)
            if res[0] == "ok" and len(session) <= 255:
                _resplit(block, res[1], session, implied, service)
    if flags & 0x20:  # the flags as ints: the compiled code takes those on its fast path too
        both("split_block", arg, session, flags & 0x40, flags & 0x80)


def _resplit(block: bytes, parts: list, session: bytes, implied: bool, service: bool) -> None:
    """Well-formed transmissions re-encode to the same bytes and split to the same tuple."""
    encoded = []
    for status, auth, sig, corr, entity, command, _ in parts:
        if status not in (T_OK, T_BAD_AUTH):
            return
        got = both("encode_transmission", auth, corr, entity, command, session, implied, service, sig)
        check(got[0] == "ok", "re-encoding failed", got)
        encoded.append(got[1])
    n = (block[0] << 8) | block[1]
    batch = both("encode_batch", encoded, n + 2)
    check(batch[0] == "ok" and batch[1] == block[: n + 2], "batch re-encodes differently", batch)
    again = both("split_block", batch[1], session, implied, service)
    check(same(again, ("ok", parts)), "re-split differs", again, parts)


# ---- op 1: pad / unpad ----

def _op_pad(c: Cursor, flags: int) -> None:
    size = _int(c, flags)
    data = c.rest()
    arg = _odd(flags >> 4 & 3, data) if flags & 0x40 else _as(flags >> 4 & 3, data)
    got = both("pad", arg, size)
    if got[0] == "ok":
        both("unpad", got[1])
        if not flags & 0x40:  # (odd arguments have no round trip to promise)
            check(_framing_py.unpad(got[1]) == data, "pad/unpad round trip")


# ---- op 2: encode_batch ----

def _op_batch(c: Cursor, flags: int) -> None:
    size = _int(c, flags)
    count = c.byte() + (256 if flags & 0x08 else 0)
    items: list = []
    for i in range(count):
        if not c.remaining() and i:
            break
        n = c.byte()
        item = c.take(n) if not flags & 0x10 else bytes([n]) * (n * 260)  # long ones reach 65535+
        items.append(bytearray(item) if flags & 0x20 and i == 0 else item)
    seq = tuple(items) if flags & 0x40 else items
    got = both("encode_batch", iter(seq) if flags & 0x80 else seq, size)
    if got[0] == "ok" and not flags & 0x20:
        total = 1 + sum(2 + len(t) for t in items)
        split = both("split_block", got[1][: 2 + total], b"", True, False)
        check(split[0] == "ok" and len(split[1]) == len(items), "batch does not split", split)


# ---- op 3: encode_transmission ----

def _field(c: Cursor, long: bool) -> bytes:
    n = c.byte()
    return bytes([n]) * (256 + n % 45) if long and n > 250 else c.take(n)


def _op_transmission(c: Cursor, flags: int) -> None:
    long = bool(flags & 0x80)
    auth, corr, entity, session = (_field(c, long) for _ in range(4))
    sig_len = c.byte()
    sig = None if sig_len == 0 else (c.take(64) if sig_len == 64 else bytes(sig_len % 70))
    command = c.rest()
    implied, service = bool(flags & 1), bool(flags & 2)
    kind = (flags >> 2) & 3
    args = [_as(kind, auth), corr, entity, command, session, implied, service, sig]
    if flags & 0x40:
        args[5], args[6] = flags & 0x10, flags & 0x20  # ints as flags
    got = both("encode_transmission", *args)
    if got[0] != "ok" or len(got[1]) > 65000:
        return
    t = got[1]
    implied, service = bool(args[5]), bool(args[6])
    split = both("split_block", _framing_py.encode_batch([t], len(t) + 5), session, implied, service)
    auth = bytes(auth)
    status = T_OK if len(auth) in _framing_py.AUTH_LENGTHS else T_BAD_AUTH
    want_sig = sig if service and auth else None
    authorized = b"".join((bytes((len(f),)) + f for f in (session, corr, entity))) + command
    expect = (status, auth, want_sig, corr, entity, command, authorized)
    check(same(split, ("ok", [expect])), "transmission round trip", split, expect)


# ---- op 4: group_transmissions ----

def _op_group(c: Cursor, flags: int) -> None:
    budget = _int(c, c.byte()) if flags & 0x01 else 16365
    max_count = _int(c, c.byte()) if flags & 0x02 else 255
    count = c.byte()
    sizes: list = []
    for _ in range(count):
        if not c.remaining():
            break
        sizes.append(_int(c, c.byte() & 0x0B) if flags & 0x04 else c.byte() * 64)
    got = both("group_transmissions", tuple(sizes) if flags & 0x08 else sizes, budget, max_count)
    if got[0] == "ok" and all(type(s) is int and s >= 0 for s in sizes) and type(max_count) is int:
        check(sum(got[1]) == len(sizes), "groups lose transmissions", got, sizes)


# ---- op 5: boxes ----

def _key(c: Cursor, wrong: bool, n: int) -> bytes:
    return c.take(c.byte() % 40) if wrong else c.take(n).ljust(n, b"\0")


def _op_box(c: Cursor, flags: int) -> None:
    key = _key(c, flags & 1 and flags & 0x80, 32)
    nonce = _key(c, flags & 2 and flags & 0x80, 24)
    where = c.word16()
    kind = (flags >> 2) & 3
    msg = c.rest()
    k, n = _as(kind, key), _as(kind, nonce)
    both("box_open", k, n, _as(kind, msg))  # the input itself as a ciphertext
    both("box_open_padded", k, n, msg)
    sealed = both("box_seal", k, n, _as(kind, msg))
    if sealed[0] != "ok":
        return
    ct = sealed[1]
    opened = both("box_open", k, n, ct)
    check(opened == ("ok", msg), "seal/open round trip", opened)
    both("box_open_padded", k, n, ct)  # msg read as a padded buffer: unpad errors
    if ct:
        bad = bytearray(ct)
        bad[where % len(ct)] ^= 1 << (flags >> 4 & 7)
        both("box_open", k, n, bytes(bad))
        both("box_open_padded", k, n, bytes(bad))
    size = len(msg) + 2 + (where & 0x3F) if flags & 0x40 else where
    padded = both("box_seal_padded", k, n, msg, size)
    if padded[0] == "ok":
        check(both("box_open_padded", k, n, padded[1]) == ("ok", msg), "padded box round trip")


# ---- op 6: key derivation ----

def _op_dh(c: Cursor, flags: int) -> None:
    wrong = bool(flags & 0x80)
    a = _key(c, wrong and flags & 1, 32)
    b = _key(c, wrong and flags & 2, 32)
    inp = _key(c, wrong and flags & 4, 16)
    kind = (flags >> 3) & 3
    a, b = _as(kind, a), _as(kind, b)
    both("hsalsa20", a, _as(kind, inp))
    both("hsalsa20_key", a)
    both("x25519", a, b)
    both("box_beforenm", b, a)
    if flags & 0x20:
        both("x25519", _odd(flags & 1, bytes(a)), b)


# ---- op 7: signatures and authenticators ----

def _op_verify(c: Cursor, flags: int) -> None:
    nonce = c.take(24)
    box_key = c.take(32).ljust(32, b"\1")
    where = c.word16()
    msg = c.rest()
    sig = nb.crypto_sign(msg, _ED_SK)[:64]
    pk = _ED_PK
    if flags & 1:
        pk = msg[:32].ljust(32, b"\0")  # arbitrary (often non-canonical) points
    if flags & 2 and msg:
        msg = msg[:-1] + bytes([msg[-1] ^ 1])
    if flags & 4:
        b = bytearray(sig)
        b[where % 64] ^= 1 << (where >> 8 & 7)
        sig = bytes(b)
    if flags & 8:
        sig = sig[: where % 70]  # wrong lengths
    both("ed25519_verify", pk, sig, msg)
    auth = _sodium_py.box_seal(box_key, cb_nonce(nonce), hashlib.sha512(msg).digest())
    if flags & 0x10:
        b = bytearray(auth)
        b[where % 80] ^= 1 << (where >> 8 & 7)
        auth = bytes(b)
    n = cb_nonce(nonce) if not flags & 0x20 else nonce
    both("authenticator_verify", box_key, n, auth, msg)
    requests = [(pk, sig, msg, None), (box_key, auth, msg, n), (box_key, auth, msg, None),
                (pk, auth[:64], msg, n), (pk, b"\0" * 114, msg, None)]
    if flags & 0x40:
        requests.append((bytearray(pk), memoryview(sig), msg, None))
    if flags & 0x80:
        requests = requests[where % len(requests):] + requests[: where % len(requests)]
    both("verify_batch", requests)


def cb_nonce(data: bytes) -> bytes:
    return data[:24].ljust(24, b"\0")


OPS = (_op_split, _op_pad, _op_batch, _op_transmission, _op_group, _op_box, _op_dh, _op_verify)


def test_one_input(data: bytes) -> None:
    c = Cursor(data)
    op = c.byte()
    flags = c.byte()
    OPS[op % len(OPS)](c, flags)


if __name__ == "__main__":
    main(test_one_input)
