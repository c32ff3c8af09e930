"""Framing: padding, batches, transmissions and block packing, on both twins.

Every test runs on the implementation ``smpfast._core`` exports (compiled unless
SMPFAST_PURE=1) and on the pure twin. Known answers: vectors computed
independently of smpfast, and the reference's batching tests (BatchingTests.hs).
"""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import smpfast._core as core
from smpfast._core import FramingError, _framing_py

BLOCK = 16384
ENCRYPTED_PAYLOAD = BLOCK - 16  # a block-encrypted batch is padded to this

SESSION = bytes.fromhex("0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20")
CORR = bytes.fromhex("a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7")
SENDER = bytes.fromhex("303132333435363738393a3b3c3d3e3f4041424344454647")
SIG = bytes.fromhex(
    "999ae95e11b5d40620658c6478ef1b559415c7f97b3dbdf84a7dc5852bf4d3fb"
    "7721d08179bae90c0bc5a8c6537958fa83dce737a70626d6d8fa8f2a30032c0d"
)

# (implied_session, service_auth) per protocol version range
V6 = (False, False)
V7 = (True, False)
V16 = (True, True)


@pytest.fixture(params=["exported", "pure"])
def fr(request):
    """The exported core (compiled unless SMPFAST_PURE=1) or the pure twin."""
    return core if request.param == "exported" else _framing_py


def ss(b: bytes) -> bytes:
    return bytes([len(b)]) + b


# --- known answers -----------------------------------------------------------------------


@pytest.mark.parametrize("flags", [V7, V16])
def test_ping_block_vector(fr, flags):
    t = fr.encode_transmission(b"", CORR, b"", b"PING", SESSION, *flags)
    assert t.hex() == "0018a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b70050494e47"
    block = fr.encode_batch([t], BLOCK)
    assert len(block) == BLOCK
    assert block[:36] == bytes.fromhex("002201001f") + t
    assert block[36:] == b"#" * (BLOCK - 36)
    assert fr.unpad(block) == b"\x01\x00\x1f" + t
    [(status, auth, sig, corr, entity, command, t_for_auth)] = fr.split_block(block, SESSION, *flags)
    assert (status, auth, sig, corr, entity, command) == (fr.T_OK, b"", None, CORR, b"", b"PING")
    assert t_for_auth == ss(SESSION) + ss(CORR) + ss(b"") + b"PING"


@pytest.mark.parametrize("flags,length,start", [(V16, 128, "0083010080"), (V7, 127, "008201007f")])
def test_send_vector(fr, flags, length, start):
    t_for_auth = ss(SESSION) + ss(CORR) + ss(SENDER) + b"SEND T hello"
    t = fr.encode_transmission(SIG, CORR, SENDER, b"SEND T hello", SESSION, *flags)
    assert len(t) == length
    slot = b"0" if flags == V16 else b""
    assert t == b"\x40" + SIG + slot + ss(CORR) + ss(SENDER) + b"SEND T hello"
    block = fr.encode_batch([t], BLOCK)
    assert block[:6].hex() == start + "40"
    [parsed] = fr.split_block(block, SESSION, *flags)
    assert parsed == (fr.T_OK, SIG, None, CORR, SENDER, b"SEND T hello", t_for_auth)


def test_v6_session_on_the_wire(fr):
    t = fr.encode_transmission(SIG, CORR, SENDER, b"SUB", SESSION, *V6)
    assert t == b"\x40" + SIG + ss(SESSION) + ss(CORR) + ss(SENDER) + b"SUB"
    [parsed] = fr.split_block(fr.encode_batch([t], BLOCK), SESSION, *V6)
    assert parsed[0] == fr.T_OK
    assert parsed[6] == ss(SESSION) + ss(CORR) + ss(SENDER) + b"SUB"


def test_service_signature_slot(fr):
    service_sig = bytes(range(64))
    t = fr.encode_transmission(SIG, CORR, SENDER, b"SUB", SESSION, *V16, service_sig)
    assert t[65:67] == b"1\x40" and t[67:131] == service_sig
    [parsed] = fr.split_block(fr.encode_batch([t], BLOCK), SESSION, *V16)
    assert parsed[:3] == (fr.T_OK, SIG, service_sig)
    # no slot without an authorization, nor before v16
    assert fr.encode_transmission(b"", CORR, SENDER, b"SUB", SESSION, *V16, service_sig)[0:2] == b"\x00\x18"
    assert b"1\x40" not in fr.encode_transmission(SIG, b"", b"", b"", SESSION, *V7, service_sig)
    with pytest.raises(FramingError):
        fr.encode_transmission(SIG, CORR, SENDER, b"SUB", SESSION, *V16, service_sig[:63])


# --- round trips --------------------------------------------------------------------------

auth_of_key = st.one_of(st.just(b""), *(st.binary(min_size=n, max_size=n) for n in (64, 80, 114)))
short = st.binary(max_size=255)


@st.composite
def fields(draw):
    return (
        draw(auth_of_key),
        draw(st.one_of(st.binary(min_size=24, max_size=24), short)),
        draw(st.one_of(st.binary(min_size=24, max_size=24), short)),
        draw(st.binary(max_size=300)),
        draw(st.one_of(st.none(), st.binary(min_size=64, max_size=64))),
    )


@settings(max_examples=150)
@given(st.lists(fields(), min_size=1, max_size=10), st.sampled_from([V6, V7, V16]), short)
def test_transmissions_round_trip(ts, flags, session):
    for fr in (core, _framing_py):
        wire = [fr.encode_transmission(a, c, e, cmd, session, *flags, sig) for a, c, e, cmd, sig in ts]
        parsed = fr.split_block(fr.encode_batch(wire, BLOCK), session, *flags)
        assert len(parsed) == len(ts)
        for (a, c, e, cmd, sig), got in zip(ts, parsed):
            has_slot = flags[1] and a
            expected_sig = sig if has_slot else None
            t_for_auth = ss(session) + ss(c) + ss(e) + cmd
            assert got == (fr.T_OK, a, expected_sig, c, e, cmd, t_for_auth)


@given(st.binary(max_size=BLOCK - 2), st.integers(0, 200))
def test_pad_round_trip(data, extra):
    for fr in (core, _framing_py):
        size = len(data) + 2 + extra
        if len(data) > 65533:
            continue
        padded = fr.pad(data, size)
        assert len(padded) == size
        assert padded[2 + len(data) :] == b"#" * extra
        assert fr.unpad(padded) == data


def test_pad_limits(fr):
    assert fr.pad(b"", 2) == b"\x00\x00"
    with pytest.raises(FramingError):
        fr.pad(b"a", 2)
    with pytest.raises(FramingError):
        fr.pad(bytes(65534), 70000)  # the length must fit a Word16
    assert len(fr.pad(bytes(65533), 65535)) == 65535
    for bad in (b"", b"\x00", b"\x00\x02a"):
        with pytest.raises(FramingError):
            fr.unpad(bad)
    assert fr.unpad(b"\x00\x01ab") == b"a"


# --- split_block: block errors versus per-transmission statuses --------------------------


def test_block_level_errors(fr):
    t = fr.encode_transmission(b"", CORR, b"", b"PING", SESSION, *V16)
    good = fr.encode_batch([t], BLOCK)
    batch = fr.unpad(good)
    bad_blocks = {
        "short": b"\x00",
        "pad length beyond block": b"\xff\xff" + good[2:100],
        "empty batch": fr.pad(b"", BLOCK),
        "count zero": fr.pad(b"\x00" + batch[1:], BLOCK),
        "count too large": fr.pad(b"\x02" + batch[1:], BLOCK),
        "transmission length beyond batch": fr.pad(batch[:1] + b"\x00\x30" + batch[3:], BLOCK),
        "trailing bytes": fr.pad(batch + b"##", BLOCK),
        "truncated length": fr.pad(batch[:2], BLOCK),
    }
    for name, block in bad_blocks.items():
        with pytest.raises(FramingError):
            fr.split_block(block, SESSION, *V16)
            pytest.fail(name)


def test_bad_transmission_does_not_fail_the_block(fr):
    good = fr.encode_transmission(SIG, CORR, SENDER, b"SUB", SESSION, *V16)
    bad_auth = fr.encode_transmission(b"x" * 10, CORR, SENDER, b"SUB", SESSION, *V16)
    garbage = b"\x05ab"
    bad_tag = good[:65] + b"2" + good[66:]
    block = fr.encode_batch([good, bad_auth, garbage, bad_tag, b""], BLOCK)
    statuses = fr.split_block(block, SESSION, *V16)
    assert [s[0] for s in statuses] == [fr.T_OK, fr.T_BAD_AUTH, fr.T_BAD, fr.T_BAD, fr.T_BAD]
    assert statuses[1][3] == CORR  # ERR BLOCK goes back with the corrId
    assert statuses[2] == (fr.T_BAD, b"", None, b"", b"", b"", b"")


def test_v6_session_mismatch(fr):
    t = fr.encode_transmission(SIG, CORR, SENDER, b"SUB", b"other session", *V6)
    [parsed] = fr.split_block(fr.encode_batch([t], BLOCK), SESSION, *V6)
    assert parsed[0] == fr.T_BAD_SESSION
    assert parsed[3] == CORR
    # a mismatch wins over a bad authorization length
    t = fr.encode_transmission(b"x", CORR, SENDER, b"SUB", b"other", *V6)
    assert fr.split_block(fr.encode_batch([t], BLOCK), SESSION, *V6)[0][0] == fr.T_BAD_SESSION


def test_status_constants(fr):
    assert (fr.T_OK, fr.T_BAD, fr.T_BAD_AUTH, fr.T_BAD_SESSION) == (0, 1, 2, 3)


# --- golden batching counts (the reference's tests/CoreTests/BatchingTests.hs) -----------


def rnd(n: int) -> bytes:
    return os.urandom(n)


def sub(fr, flags) -> bytes:
    """A client SUB: Ed25519 signature, 24-byte corrId and recipient id."""
    return fr.encode_transmission(rnd(64), rnd(24), rnd(24), b"SUB", SESSION, *flags)


def send(fr, flags, body_len: int, auth_len: int) -> bytes:
    return fr.encode_transmission(rnd(auth_len), rnd(24), rnd(24), b"SEND F " + rnd(body_len), SESSION, *flags)


def check_blocks(fr, ts: list[bytes], counts: list[int]) -> None:
    """The counts, and that every group really fits an encrypted block while one more would not."""
    assert fr.group_transmissions([len(t) for t in ts]) == counts
    i = 0
    for n in counts:
        group = ts[i : i + n]
        batch = fr.split_block(fr.encode_batch(group, ENCRYPTED_PAYLOAD), SESSION, True, True)
        assert len(batch) == n
        if i > 0 and n < 255:  # the transmission before a block would not have fitted in it
            with pytest.raises(FramingError):
                fr.encode_batch(ts[i - 1 : i + n], ENCRYPTED_PAYLOAD)
        i += n
    assert i == len(ts)


def test_sub_v16_135_per_block(fr):
    subs = [sub(fr, V16) for _ in range(300)]
    assert {len(t) for t in subs} == {119}  # 65 auth + '0' slot + 25 + 25 + "SUB"
    check_blocks(fr, subs, [30, 135, 135])


def test_sub_v6_106_per_block(fr):
    subs = [sub(fr, V6) for _ in range(250)]
    assert {len(t) for t in subs} == {151}  # the 32-byte session id is on the wire
    assert fr.group_transmissions([len(t) for t in subs]) == [38, 106, 106]
    assert sum(2 + len(t) for t in subs[:107]) > 16365 >= sum(2 + len(t) for t in subs[:106])


def test_end_255_per_block(fr):
    ends = [fr.encode_transmission(b"", b"", rnd(24), b"END", SESSION, *V16) for _ in range(300)]
    check_blocks(fr, ends, [45, 255])


def test_nmsg_80_per_block(fr):
    # "NMSG " nonce(24) shortString(encrypted meta, 144 bytes)
    def nmsg():
        return fr.encode_transmission(b"", b"", rnd(24), b"NMSG " + rnd(24) + ss(rnd(144)), SESSION, *V16)

    ntfs = [nmsg() for _ in range(200)]
    assert {len(t) for t in ntfs} == {201}
    check_blocks(fr, ntfs, [40, 80, 80])


def test_batch_breaks_on_message_that_does_not_fit(fr):
    # current version: SEND with an X25519 authenticator (80 bytes)
    ts = [sub(fr, V16) for _ in range(60)] + [send(fr, V16, 8000, 80)] + [sub(fr, V16) for _ in range(40)]
    assert fr.group_transmissions([len(t) for t in ts]) == [33, 68]
    # v6: Ed25519
    ts = [sub(fr, V6) for _ in range(60)] + [send(fr, V6, 8000, 64)] + [sub(fr, V6) for _ in range(40)]
    assert fr.group_transmissions([len(t) for t in ts]) == [47, 54]


def test_batch_large_message(fr):
    """The reference reports TELargeMsg for it and batches the rest around it; here the
    caller splits at the oversize transmission, which group_transmissions refuses."""
    large = send(fr, V16, 17000, 80)
    before = [len(sub(fr, V16))] * 60
    after = [len(sub(fr, V16))] * 150
    with pytest.raises(FramingError):
        fr.group_transmissions(before + [len(large)] + after)
    assert fr.group_transmissions(before) == [60]
    assert fr.group_transmissions(after) == [15, 135]
    assert fr.group_transmissions(before + after) == [75, 135]
    v6_after = [len(sub(fr, V6))] * 150
    assert fr.group_transmissions(v6_after) == [44, 106]


def test_group_limits(fr):
    assert fr.group_transmissions([]) == []
    assert fr.group_transmissions([16363]) == [1]
    with pytest.raises(FramingError):
        fr.group_transmissions([16364])
    assert fr.group_transmissions([0] * 600) == [90, 255, 255]
    assert fr.group_transmissions([10, 10, 10], budget=24, max_count=255) == [1, 2]
    assert fr.group_transmissions([10, 10, 10], max_count=1) == [1, 1, 1]


def test_encode_batch_limits(fr):
    with pytest.raises(FramingError):
        fr.encode_batch([], BLOCK)
    with pytest.raises(FramingError):
        fr.encode_batch([b""] * 256, BLOCK)
    assert fr.unpad(fr.encode_batch([b""] * 255, BLOCK)) == b"\xff" + b"\x00\x00" * 255
    with pytest.raises(FramingError):
        fr.encode_batch([bytes(65536)], 70000)
    with pytest.raises(FramingError):
        fr.encode_batch([bytes(16380)], BLOCK)
    assert len(fr.encode_batch([bytes(16379)], BLOCK)) == BLOCK
