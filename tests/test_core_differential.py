"""The compiled core against its pure-Python twin on the same random inputs.

Every function of ``smpfast._core.framing`` / ``smpfast._core.sodium`` must give the same
result as ``smpfast._core.PURE[name]``, or raise an exception of the same type, for valid
and malformed inputs alike. If the extensions are not built these tests fail (importing
them raises). Under ``SMPFAST_PURE=1`` comparing the twin with itself would prove nothing,
so each test checks instead that the package really exports the pure twins.
"""

from __future__ import annotations

import hashlib
import importlib
import os

import nacl.signing
import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

import smpfast._core as core
from smpfast._core import _framing_py, _sodium_py

PURE_MODE = core._want_pure()


def _pure_mode_check() -> None:
    assert core.COMPILED is False
    assert core.pad is _framing_py.pad
    for name in core.FRAMING_API:
        assert getattr(core, name) is getattr(_framing_py, name)
    for name in core.SODIUM_API:
        assert getattr(core, name) is getattr(_sodium_py, name)


def differential(test):
    """Run ``test`` normally; under SMPFAST_PURE=1 replace it by the pure-mode check."""
    if not PURE_MODE:
        return test

    def check_pure_exports() -> None:
        _pure_mode_check()

    # not functools.wraps: pytest would read the wrapped signature and want its fixtures
    check_pure_exports.__name__ = check_pure_exports.__qualname__ = test.__name__
    check_pure_exports.__doc__ = test.__doc__
    return check_pure_exports


def _module_of(name: str) -> str:
    return "framing" if name in core.FRAMING_API or name in vars(_framing_py) else "sodium"


def compiled(name: str):
    """The compiled function ``name``; ImportError (a failure) when it is not built."""
    return getattr(importlib.import_module(f"smpfast._core.{_module_of(name)}"), name)


def pure(name: str):
    """``smpfast._core.PURE[name]``; the twin module's own function for names beyond the API."""
    if name in core.PURE:
        return core.PURE[name]
    return getattr(_framing_py if _module_of(name) == "framing" else _sodium_py, name)


def outcome(fn, *args):
    try:
        return ("ok", fn(*args))
    except Exception as exc:  # noqa: BLE001 - the type is what we compare
        return ("raises", type(exc))


def same(name: str, *args):
    """Call both twins of ``name`` on ``args``; demand identical results or error types."""
    got = outcome(compiled(name), *args)
    want = outcome(pure(name), *args)
    assert got == want, (name, got, want)
    return got


# --- the module as a whole ---------------------------------------------------------------


@differential
def test_compiled_core_is_exported():
    assert core.COMPILED is True
    framing = importlib.import_module("smpfast._core.framing")
    sodium = importlib.import_module("smpfast._core.sodium")
    for name in core.FRAMING_API + core.STATUS_API:
        assert getattr(core, name) is getattr(framing, name)
    for name in core.SODIUM_API:
        assert getattr(core, name) is getattr(sodium, name)
    assert core.pad is not _framing_py.pad


@differential
def test_same_public_names_and_constants():
    framing = importlib.import_module("smpfast._core.framing")
    sodium = importlib.import_module("smpfast._core.sodium")
    for twin, module in ((_framing_py, framing), (_sodium_py, sodium)):
        for name, value in vars(twin).items():
            if name.startswith("_") or name == "annotations" or isinstance(value, type(os)):
                continue
            if getattr(value, "__module__", twin.__name__) != twin.__name__:
                continue  # imported from elsewhere (errors, pad/unpad in the sodium twin)
            assert hasattr(module, name), name
            if not callable(value):
                assert getattr(module, name) == value, name


# --- strategies --------------------------------------------------------------------------

# (implied_session, service_auth) of v6, v7..15 and v16+
VERSION_FLAGS = [(False, False), (True, False), (True, True)]

auths = st.one_of(
    st.just(b""),
    st.binary(min_size=64, max_size=64),
    st.binary(min_size=80, max_size=80),
    st.binary(min_size=114, max_size=114),
    st.binary(max_size=255),
)
ids = st.one_of(st.binary(min_size=24, max_size=24), st.binary(max_size=40), st.binary(max_size=255))
sessions = st.one_of(st.binary(min_size=32, max_size=32), st.binary(max_size=255))
commands = st.one_of(st.sampled_from([b"SUB", b"PING", b"END", b"ACK", b""]), st.binary(max_size=200))
service_sigs = st.one_of(st.none(), st.binary(min_size=64, max_size=64))


@st.composite
def transmissions(draw, session: bytes, implied: bool, service: bool):
    """Fields and wire bytes of one valid transmission."""
    fields = (draw(auths), draw(ids), draw(ids), draw(commands), session, implied, service, draw(service_sigs))
    return fields, _framing_py.encode_transmission(*fields)


@st.composite
def blocks(draw, max_count: int = 12):
    """A valid padded block at a random version, with the parameters it was built for."""
    session = draw(sessions)
    implied, service = draw(st.sampled_from(VERSION_FLAGS))
    ts = draw(st.lists(transmissions(session, implied, service), min_size=1, max_size=max_count))
    wire = [t for _, t in ts]
    assume(1 + sum(2 + len(t) for t in wire) <= 16382)
    return _framing_py.encode_batch(wire, 16384), session, implied, service


@st.composite
def parse_params(draw, session: bytes, implied: bool, service: bool):
    """Mostly the block's own parameters; sometimes another session or version."""
    if draw(st.integers(0, 3)) == 0:
        session = draw(sessions)
    if draw(st.integers(0, 3)) == 0:
        implied, service = draw(st.sampled_from(VERSION_FLAGS))
    return session, implied, service


def _with_len(block: bytes, n: int) -> bytes:
    return n.to_bytes(2, "big") + block[2:]


@st.composite
def malformed_blocks(draw):
    block, session, implied, service = draw(blocks())
    n = int.from_bytes(block[:2], "big")
    kind = draw(st.integers(0, 7))
    if kind == 0:  # truncated anywhere
        block = block[: draw(st.integers(0, n + 3))]
    elif kind == 1:  # pad length of any value
        block = _with_len(block, draw(st.integers(0, 65535)))
    elif kind == 2:  # count zero or any other
        block = block[:2] + bytes([draw(st.integers(0, 255))]) + block[3:]
    elif kind == 3:  # first transmission length of any value
        block = block[:3] + draw(st.integers(0, 65535)).to_bytes(2, "big") + block[5:]
    elif kind == 4:  # trailing bytes inside the batch
        block = _with_len(block, n + draw(st.integers(1, 40)))
    elif kind == 5:  # batch cut short but the pad length unchanged
        block = _with_len(block, draw(st.integers(0, n)))
    elif kind == 6:  # random bytes overwritten
        b = bytearray(block)
        for _ in range(draw(st.integers(1, 8))):
            b[draw(st.integers(0, min(len(b) - 1, n + 2)))] = draw(st.integers(0, 255))
        block = bytes(b)
    else:  # the block shortened to its content
        block = block[: 2 + n]
    return block, session, implied, service


# --- split_block -------------------------------------------------------------------------


@differential
@settings(max_examples=200)
@given(st.data())
def test_split_block_valid_blocks(data):
    block, session, implied, service = data.draw(blocks())
    params = data.draw(parse_params(session, implied, service))
    status, result = same("split_block", block, *params)
    assert status == "ok"


@differential
@settings(max_examples=300)
@given(malformed_blocks(), st.data())
def test_split_block_malformed_blocks(case, data):
    block, session, implied, service = case
    params = data.draw(parse_params(session, implied, service))
    same("split_block", block, *params)


@differential
@settings(max_examples=200)
@given(
    st.lists(st.binary(max_size=300), min_size=1, max_size=20),
    sessions,
    st.sampled_from(VERSION_FLAGS),
)
def test_split_block_garbage_transmissions(ts, session, flags):
    """Well-formed batches of arbitrary transmissions: every per-transmission status path."""
    block = _framing_py.encode_batch(ts, 16384)
    same("split_block", block, session, *flags)


@st.composite
def near_valid_transmission(draw):
    """A valid transmission cut short or with one byte changed (tags, lengths...)."""
    session = draw(sessions)
    implied, service = draw(st.sampled_from(VERSION_FLAGS))
    _, t = draw(transmissions(session, implied, service))
    if draw(st.booleans()):
        t = t[: draw(st.integers(0, len(t)))]
    elif t:
        i = draw(st.integers(0, min(len(t) - 1, 100)))
        t = t[:i] + bytes([draw(st.sampled_from([0, 0x30, 0x31, 0x40, 24, 32, 255]) | st.integers(0, 255))]) + t[i + 1 :]
    return t, session, implied, service


@differential
@settings(max_examples=300)
@given(st.lists(near_valid_transmission(), min_size=1, max_size=10), st.data())
def test_split_block_near_valid_transmissions(items, data):
    block = _framing_py.encode_batch([t for t, *_ in items], 16384)
    _, session, implied, service = items[0]
    params = data.draw(parse_params(session, implied, service))
    same("split_block", block, *params)


@differential
@given(st.binary(max_size=400), sessions, st.booleans(), st.booleans())
@example(b"", b"", True, True)
@example(b"\x00", b"", True, True)
@example(b"\x00\x00", b"", True, True)
@example(b"\x00\x01\x00", b"", True, True)
@example(b"\x00\x01\x01", b"", True, True)
@example(b"\x00\x03\x01\x00\x00", b"", True, True)
@example(b"\x00\x04\x01\x00\x00\x00", b"", False, False)
def test_split_block_arbitrary_bytes(block, session, implied, service):
    same("split_block", block, session, implied, service)


@differential
@given(st.integers(1, 255), st.binary(max_size=60), st.binary(max_size=2000), sessions, st.sampled_from(VERSION_FLAGS))
def test_split_block_structured_garbage(count, head, body, session, flags):
    """A plausible header (length, count) in front of arbitrary batch bytes."""
    batch = bytes([count]) + head + body
    block = _framing_py.pad(batch, 16384)
    same("split_block", block, session, *flags)


@differential
@settings(max_examples=50)
@given(st.lists(st.sampled_from([b"\x00\x00\x00", b"\x40" + bytes(64) + b"\x30\x00\x00SUB"]), min_size=1, max_size=255))
def test_split_block_many_transmissions(ts):
    block = _framing_py.encode_batch(ts, 16384)
    same("split_block", block, b"s" * 32, True, True)


# --- encode_transmission / encode_batch ---------------------------------------------------


@differential
@settings(max_examples=300)
@given(
    st.binary(max_size=300),
    st.binary(max_size=300),
    st.binary(max_size=300),
    st.binary(max_size=300),
    st.binary(max_size=300),
    st.booleans(),
    st.booleans(),
    st.one_of(st.none(), st.binary(min_size=64, max_size=64), st.binary(max_size=70)),
)
def test_encode_transmission(auth, corr, entity, command, session, implied, service, sig):
    same("encode_transmission", auth, corr, entity, command, session, implied, service, sig)


@differential
@settings(max_examples=200)
@given(auths, ids, ids, commands, sessions, st.sampled_from(VERSION_FLAGS), service_sigs)
def test_encode_transmission_valid(auth, corr, entity, command, session, flags, sig):
    status, _ = same("encode_transmission", auth, corr, entity, command, session, *flags, sig)
    assert status == "ok"
    # the default for service_sig too
    same("encode_transmission", auth, corr, entity, command, session, *flags)


@differential
@settings(max_examples=200)
@given(
    st.lists(st.binary(max_size=200), max_size=260),
    st.one_of(st.integers(-5, 20000), st.just(16384), st.just(16368)),
)
def test_encode_batch(ts, size):
    same("encode_batch", ts, size)


@differential
@settings(max_examples=100)
@given(st.lists(st.binary(max_size=80), min_size=1, max_size=255), st.data())
def test_encode_batch_near_the_limit(ts, data):
    need = 3 + sum(2 + len(t) for t in ts)
    size = need + data.draw(st.integers(-3, 3))
    same("encode_batch", ts, size)
    same("encode_batch", tuple(ts), size)


@differential
def test_encode_batch_oversize_transmission():
    big = bytes(65536)
    same("encode_batch", [big], 70000)
    same("encode_batch", [b"x", bytes(65535)], 70000)
    same("encode_batch", [bytes(65530)], 65535)
    same("encode_batch", [bytes(65530)], 65536)


# --- pad / unpad --------------------------------------------------------------------------


@differential
@settings(max_examples=300)
@given(st.binary(max_size=600), st.integers(-10, 700))
@example(b"", 2)
@example(b"", 1)
@example(b"a", 3)
@example(b"a", 2)
def test_pad(data, size):
    same("pad", data, size)


@differential
@given(st.integers(65530, 65536), st.integers(65530, 65540))
def test_pad_word16_limit(n, size):
    same("pad", bytes(n), size)


@differential
@settings(max_examples=300)
@given(st.one_of(st.binary(max_size=300), st.builds(lambda n, rest: n.to_bytes(2, "big") + rest, st.integers(0, 300), st.binary(max_size=300))))
def test_unpad(block):
    same("unpad", block)


# --- group_transmissions ------------------------------------------------------------------


@differential
@settings(max_examples=300)
@given(
    st.lists(st.one_of(st.integers(0, 200), st.integers(0, 17000)), max_size=400),
    st.one_of(st.just(16365), st.integers(-5, 20000)),
    st.one_of(st.just(255), st.integers(-2, 300)),
)
def test_group_transmissions(sizes, budget, max_count):
    same("group_transmissions", sizes, budget, max_count)
    same("group_transmissions", tuple(sizes), budget, max_count)


@differential
@given(st.lists(st.integers(0, 16363), max_size=300))
def test_group_transmissions_defaults(sizes):
    same("group_transmissions", sizes)


# --- arguments of unusual types: same result or same error type ---------------------------

_mv_h = memoryview(bytes(64)).cast("H")
_released = memoryview(b"abc")
_released.release()


class _BytesSub(bytes):
    pass


T = _framing_py.encode_transmission(b"a" * 64, b"c" * 24, b"e" * 24, b"SUB", b"s" * 32, True, True)
BLOCK = _framing_py.encode_batch([T, T], 16384)

ODD_CALLS = [
    ("pad", (bytearray(b"abc"), 10)),
    ("pad", (memoryview(b"abc"), 10)),
    ("pad", (memoryview(b"abcdef")[::2], 10)),
    ("pad", (_mv_h, 100)),
    ("pad", (_released, 10)),
    ("pad", ("abc", 10)),
    ("pad", ("abc" * 30000, 10)),
    ("pad", ([1, 2, 3], 10)),
    ("pad", (None, 10)),
    ("pad", (b"abc", 10.0)),
    ("pad", (b"abc", True)),
    ("pad", (b"abc", 2**70)),
    ("pad", (b"abc", -(2**70))),
    ("pad", (_BytesSub(b"abc"), 10)),
    ("unpad", (bytearray(b"\x00\x01ab"),)),
    ("unpad", (memoryview(b"\x00\x01ab"),)),
    ("unpad", ([0, 1, 7],)),
    ("unpad", ("\x00\x01a",)),
    ("unpad", (None,)),
    ("unpad", (7,)),
    ("unpad", (_mv_h,)),
    ("unpad", (_released,)),
    ("encode_batch", ([bytearray(b"ab"), b"cd"], 20)),
    ("encode_batch", ([memoryview(b"ab")], 20)),
    ("encode_batch", ([b"ab", "cd"], 20)),
    ("encode_batch", (["x" * 70000], 20)),
    ("encode_batch", ((t for t in [b"ab"]), 20)),
    ("encode_batch", ([b"ab"], 20.5)),
    ("encode_batch", ([b"ab"], 2**80)),
    ("encode_batch", ([b"ab"], -(2**80))),
    ("encode_batch", ([], "x")),
    ("encode_batch", (b"abc", 20)),
    ("encode_batch", (None, 20)),
    ("encode_transmission", (bytearray(b"a" * 64), b"c", b"e", b"SUB", b"s", True, True)),
    ("encode_transmission", (b"a" * 64, memoryview(b"c"), b"e", b"SUB", b"s", False, 1, bytearray(64))),
    ("encode_transmission", (b"a" * 64, b"c", b"e", "SUB", b"s", True, True)),
    ("encode_transmission", (b"a" * 64, b"c", b"e", b"SUB", "s" * 300, True, True)),
    ("encode_transmission", (b"a" * 64, b"c", b"e", b"SUB", b"s", None, "yes")),
    ("encode_transmission", (b"a" * 64, b"c", b"e", b"SUB", b"s", True, True, "x" * 64)),
    ("encode_transmission", (b"a" * 64, b"c", b"e", b"SUB", b"s", True, True, [0] * 64)),
    ("encode_transmission", (None, b"c", b"e", b"SUB", b"s", True, True)),
    ("encode_transmission", ([1] * 64, b"c", b"e", b"SUB", b"s", True, True)),
    ("split_block", (bytearray(BLOCK), b"s" * 32, True, True)),
    ("split_block", (memoryview(BLOCK), bytearray(b"s" * 32), True, True)),
    ("split_block", (list(BLOCK[:200]) + [35] * 10, b"s" * 32, True, True)),
    ("split_block", (BLOCK, "s" * 32, True, True)),
    ("split_block", (BLOCK, b"s" * 300, True, True)),
    ("split_block", (b"\x00", b"s" * 300, True, True)),
    ("split_block", (BLOCK, b"s" * 32, 1, 0)),
    ("split_block", (BLOCK, b"s" * 32, None, "")),
    ("split_block", (BLOCK, b"s" * 32, [1], [])),
    ("split_block", ("abc", b"s", True, True)),
    ("split_block", (None, b"s", True, True)),
    ("split_block", (40, b"s", True, True)),
    ("split_block", (BLOCK, None, True, True)),
    ("group_transmissions", ([1, 2, 3.5], 16365, 255)),
    ("group_transmissions", ([-5, 10], 16365, 255)),
    ("group_transmissions", ([2**70], 16365, 255)),
    ("group_transmissions", ([True, False], 16365, 255)),
    ("group_transmissions", (range(100), 500, 10)),
    ("group_transmissions", ((s for s in [1]), 16365, 255)),
    ("group_transmissions", ([1, 2], 2**80, 255)),
    ("group_transmissions", ([1, 2], 16365, 2**80)),
    ("group_transmissions", ([1, 2], 16365.0, 255)),
    ("group_transmissions", (["a"], 16365, 255)),
    ("group_transmissions", (None, 16365, 255)),
    ("group_transmissions", ([], -(2**80), 255)),
]


@differential
@pytest.mark.parametrize("name,args", ODD_CALLS, ids=[f"{n}-{i}" for i, (n, _) in enumerate(ODD_CALLS)])
def test_odd_argument_types(name, args):
    same(name, *args)


# --- sodium -------------------------------------------------------------------------------

keys = st.one_of(st.binary(min_size=32, max_size=32), st.binary(max_size=40))
nonces = st.one_of(st.binary(min_size=24, max_size=24), st.binary(max_size=30))


@differential
@given(keys, st.one_of(st.binary(min_size=16, max_size=16), st.binary(max_size=20)))
def test_hsalsa20(key, inp):
    same("hsalsa20", key, inp)
    same("hsalsa20_key", key)


@differential
@given(keys, keys)
@example(bytes(32), bytes(32))  # low-order point: libsodium refuses
@example(b"\x01" * 32, b"\x01" + bytes(31))
def test_x25519_and_box_beforenm(a, b):
    same("x25519", a, b)
    same("box_beforenm", a, b)


@differential
@given(keys, nonces, st.binary(max_size=3000))
def test_box_seal_and_open(key, nonce, plaintext):
    status, sealed = same("box_seal", key, nonce, plaintext)
    same("box_open", key, nonce, plaintext)  # arbitrary bytes as a ciphertext
    if status == "ok":
        assert same("box_open", key, nonce, sealed) == ("ok", plaintext)
        tampered = bytearray(sealed)
        tampered[len(tampered) // 2] ^= 1
        same("box_open", key, nonce, bytes(tampered))
        same("box_open", key, nonce, sealed[:15])


@differential
@given(keys, nonces, st.binary(max_size=3000), st.integers(-5, 3100))
@example(b"k" * 32, b"n" * 24, b"", 1)
@example(b"k" * 32, b"n" * 24, b"", 2)
@example(b"k" * 32, b"n" * 24, b"a", 2)
def test_box_seal_padded_and_open_padded(key, nonce, data, size):
    status, sealed = same("box_seal_padded", key, nonce, data, size)
    same("box_open_padded", key, nonce, data)
    if status == "ok":
        assert len(sealed) == size + 16
        assert same("box_open_padded", key, nonce, sealed) == ("ok", data)
        same("box_open_padded", key, nonce, sealed[:-1])


@differential
@given(st.binary(min_size=32, max_size=32), st.binary(min_size=24, max_size=24), st.binary(max_size=40))
def test_box_open_padded_of_any_plaintext(key, nonce, plaintext):
    """Authentic boxes whose plaintext is not a valid padded buffer."""
    sealed = _sodium_py.box_seal(key, nonce, plaintext)
    same("box_open_padded", key, nonce, sealed)


@differential
def test_box_seal_padded_word16_limit():
    k, n = b"k" * 32, b"n" * 24
    for size in (65533, 65534, 65535, 65536):
        for length in (65532, 65533, 65534):
            same("box_seal_padded", k, n, bytes(length), size)
    same("box_seal_padded", k, n, b"x", 2**70)
    same("box_seal_padded", k, n, b"x", -(2**70))
    same("box_seal_padded", k, n, b"x", 10.0)


@st.composite
def auth_requests(draw):
    """(key, auth, message, nonce) requests: valid, tampered or malformed, of both kinds."""
    message = draw(st.binary(max_size=300))
    kind = draw(st.integers(0, 4))
    if kind <= 1:  # Ed25519
        sk = nacl.signing.SigningKey(draw(st.binary(min_size=32, max_size=32)))
        key = bytes(sk.verify_key)
        auth = sk.sign(message).signature
        nonce = draw(st.one_of(st.none(), nonces))
    elif kind <= 3:  # X25519 authenticator
        key = draw(st.binary(min_size=32, max_size=32))
        nonce = draw(st.binary(min_size=24, max_size=24))
        auth = _sodium_py.box_seal(key, nonce, hashlib.sha512(message).digest())
    else:  # anything
        key = draw(keys)
        auth = draw(st.one_of(st.binary(max_size=120), st.binary(min_size=114, max_size=114)))
        nonce = draw(st.one_of(st.none(), nonces))
    change = draw(st.integers(0, 9))
    if change == 0:
        message += b"!"
    elif change == 1 and auth:
        auth = bytes([auth[0] ^ 1]) + auth[1:]
    elif change == 2:
        key = key[:-1]
    elif change == 3 and nonce:
        nonce = nonce[:-1]
    elif change == 4:
        nonce = None
    elif change == 5:
        key = bytes([key[0] ^ 0x80]) + key[1:] if key else key
    return key, auth, message, nonce


@differential
@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(auth_requests())
def test_single_verifies(request):
    key, auth, message, nonce = request
    same("ed25519_verify", key, auth, message)
    if nonce is not None:
        same("authenticator_verify", key, nonce, auth, message)


@differential
@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(auth_requests(), max_size=20))
def test_verify_batch(requests):
    status, result = same("verify_batch", requests)
    assert status == "ok"
    assert result == [_sodium_py.verify_batch([r])[0] for r in requests]
    assert compiled("verify_batch")(iter(requests)) == result  # any iterable, as in the twin
    same("verify_batch", tuple(requests))


# --- the block-encryption chain (v11+) --------------------------------------------------

chain_keys = st.one_of(st.binary(min_size=32, max_size=32), st.binary(max_size=40))


@differential
@given(chain_keys)
@example(bytes(32))
def test_sbc_step(chain_key):
    status, result = same("sbc_step", chain_key)
    if status == "ok":
        next_ck, sb_key, nonce = result
        assert (len(next_ck), len(sb_key), len(nonce)) == (32, 32, 24)


@differential
@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(chain_keys, st.one_of(st.binary(max_size=300), st.binary(min_size=16368, max_size=16368)), st.data())
@example(b"c" * 32, b"", None)
def test_sbc_seal_and_open(chain_key, plaintext, data):
    """Both twins advance the chain the same way and seal/open with the step's key; a block
    that does not authenticate (tampered, truncated, another step's) opens to None with the
    chain advanced all the same."""
    status, sealed = same("sbc_seal", chain_key, plaintext)
    same("sbc_open", chain_key, plaintext)  # arbitrary bytes as a block
    if status != "ok":
        return
    next_ck, block = sealed
    assert len(block) == len(plaintext) + 16
    assert next_ck == _sodium_py.sbc_step(chain_key)[0]
    assert same("sbc_open", chain_key, block) == ("ok", (next_ck, plaintext))
    assert same("sbc_open", next_ck, block)[1][1] is None  # the next step's key
    for bad in {block[:15], block[:16], block[:-1], block + b"x"} - {block}:
        assert same("sbc_open", chain_key, bad) == ("ok", (next_ck, None))
    if data is not None:
        tampered = bytearray(block)
        tampered[data.draw(st.integers(0, len(block) - 1))] ^= 1 << data.draw(st.integers(0, 7))
        assert same("sbc_open", chain_key, bytes(tampered)) == ("ok", (next_ck, None))


@differential
def test_sbc_chain_of_steps():
    """Many steps in a row stay in step (each block's key derives from the previous step)."""
    ck_c = ck_p = b"\x07" * 32
    for i in range(50):
        plaintext = bytes([i]) * (16368 if i % 2 else i)
        ck_c, block_c = compiled("sbc_seal")(ck_c, plaintext)
        ck_p, block_p = pure("sbc_seal")(ck_p, plaintext)
        assert (ck_c, block_c) == (ck_p, block_p)


SODIUM_ODD_CALLS = [
    ("hsalsa20_key", (7,)),
    ("hsalsa20_key", (32,)),
    ("hsalsa20_key", ([1] * 32,)),
    ("hsalsa20_key", ("k" * 32,)),
    ("hsalsa20_key", (bytearray(32),)),
    ("hsalsa20", ([1] * 32, bytes(16))),
    ("hsalsa20", (memoryview(bytes(32)), bytearray(16))),
    ("x25519", (bytearray(b"\x01" * 32), memoryview(b"\x09" + bytes(31)))),
    ("x25519", ([1] * 32, [9] + [0] * 31)),
    ("x25519", ("a" * 32, "b" * 32)),
    ("x25519", (None, b"x" * 32)),
    ("box_beforenm", ([9] + [0] * 31, [1] * 32)),
    ("box_seal", (b"k" * 32, b"n" * 24, "text")),
    ("box_seal", (b"k" * 32, b"n" * 24, [1, 2, 3])),
    ("box_seal", (b"k" * 32, b"n" * 24, 5)),
    ("box_seal", (bytearray(b"k" * 32), memoryview(b"n" * 24), bytearray(b"abc"))),
    ("box_seal", ([1] * 32, b"n" * 24, b"abc")),
    ("box_seal", (memoryview(bytes(64)).cast("H"), b"n" * 24, b"abc")),
    ("box_seal", (memoryview(bytes(32)).cast("H"), b"n" * 24, b"abc")),
    ("box_seal_padded", (b"k" * 32, b"n" * 24, "text", 100)),
    ("box_seal_padded", (b"k" * 32, b"n" * 24, 5, 100)),
    ("box_seal_padded", (b"k" * 32, b"n" * 24, b"abc", "100")),
    ("box_seal_padded", (b"k" * 32, b"n" * 24, bytearray(b"abc"), True)),
    ("box_open", (b"k" * 32, b"n" * 24, "x" * 40)),
    ("box_open", (b"k" * 32, b"n" * 24, [0] * 40)),
    ("box_open", (b"k" * 32, b"n" * 24, None)),
    ("box_open_padded", (b"k" * 32, b"n" * 24, bytearray(40))),
    ("box_open_padded", (b"k" * 32, "n" * 24, bytes(40))),
    ("ed25519_verify", (b"p" * 32, b"s" * 64, "message")),
    ("ed25519_verify", (b"p" * 31, b"s" * 64, "message")),
    ("ed25519_verify", ([0] * 32, [0] * 64, [0])),
    ("ed25519_verify", (bytearray(32), memoryview(bytes(64)), bytearray(b"m"))),
    ("ed25519_verify", (None, b"s" * 64, b"m")),
    ("authenticator_verify", (b"k" * 32, b"n" * 24, b"a" * 80, "message")),
    ("authenticator_verify", (b"k" * 32, b"n" * 24, [0] * 80, b"m")),
    ("authenticator_verify", (b"k" * 32, None, b"a" * 80, b"m")),
    ("verify_batch", ([(b"p" * 32, b"s" * 64, "message", None)],)),
    ("verify_batch", ([(b"p" * 32, b"s" * 63, "message", None)],)),
    ("verify_batch", ([(b"p" * 32, b"a" * 80, b"m", "nonce" * 5)],)),
    ("verify_batch", ([(b"p" * 32, b"a" * 64, b"m", "nonce")],)),
    ("verify_batch", ([(b"p" * 32, b"a" * 80, b"m")],)),
    ("verify_batch", ([None],)),
    ("verify_batch", (None,)),
    ("verify_batch", ([],)),
    ("verify_batch", ([[b"p" * 32, bytearray(64), memoryview(b"m"), None]],)),
    ("sbc_step", (bytearray(32),)),
    ("sbc_step", (memoryview(bytes(32)),)),
    ("sbc_step", ("k" * 32,)),
    ("sbc_step", ([1] * 32,)),
    ("sbc_step", (None,)),
    ("sbc_step", (memoryview(bytes(64)).cast("H"),)),
    ("sbc_seal", (bytearray(32), bytearray(b"abc"))),
    ("sbc_seal", (b"k" * 32, "text")),
    ("sbc_seal", (b"k" * 32, None)),
    ("sbc_seal", (b"k" * 31, b"abc")),
    ("sbc_seal", ([1] * 32, b"abc")),
    ("sbc_open", (bytearray(32), bytearray(40))),
    ("sbc_open", (b"k" * 32, "x" * 40)),
    ("sbc_open", (b"k" * 32, [0] * 40)),
    ("sbc_open", (b"k" * 32, None)),
    ("sbc_open", (b"k" * 33, bytes(40))),
    ("sbc_open", (memoryview(b"k" * 32), memoryview(bytes(40)))),
]


@differential
@pytest.mark.parametrize(
    "name,args", SODIUM_ODD_CALLS, ids=[f"{n}-{i}" for i, (n, _) in enumerate(SODIUM_ODD_CALLS)]
)
def test_sodium_odd_argument_types(name, args):
    same(name, *args)
