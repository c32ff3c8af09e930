"""Transmissions: wire layout (independent known answers), block decoding with the reference's error
mapping (tDecodeServer/tDecodeClient), batching golden counts (BatchingTests.hs)."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol_strategies import VERSIONS, commands, responses
from smpfast import _core
from smpfast.protocol import commands as C
from smpfast.protocol import errors as E
from smpfast.protocol import transmission as T
from smpfast.protocol import versions as V

SESSION = bytes(range(1, 33))
CORR = bytes.fromhex("a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7")
RID = bytes.fromhex("101112131415161718191a1b1c1d1e1f2021222324252627")
SID = bytes.fromhex("303132333435363738393a3b3c3d3e3f4041424344454647")
ED = bytes.fromhex("302a300506032b65700321007c039f972bdb26fd5fb38338910e9bba26495604a9416b2e717abb53ace33206")
SIG = bytes.fromhex(
    "999ae95e11b5d40620658c6478ef1b559415c7f97b3dbdf84a7dc5852bf4d3fb"
    "7721d08179bae90c0bc5a8c6537958fa83dce737a70626d6d8fa8f2a30032c0d"
)


# ---- known answers ----


@pytest.mark.parametrize("version", [7, 10, 16, 18])
def test_ping_vector(version: int) -> None:
    t = T.encode_client_transmission(version, SESSION, CORR, b"", C.PING)
    assert t.hex() == "0018a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b70050494e47"
    [block] = T.batch_blocks([t])
    assert len(block) == 16384
    assert block[:36].hex() == "00220100" + "1f" + t.hex()
    assert block[36:] == b"#" * (16384 - 36)


def test_send_vector() -> None:
    cmd = C.Send(C.MsgFlags(True), b"hello")
    tfa = T.t_for_auth(SESSION, CORR, SID, C.encode_command(cmd, 18))
    assert tfa.hex() == "20" + SESSION.hex() + "18" + CORR.hex() + "18" + SID.hex() + "53454e4420542068656c6c6f"
    t16 = T.encode_client_transmission(16, SESSION, CORR, SID, cmd, SIG)
    assert t16.hex() == "40" + SIG.hex() + "30" + "18" + CORR.hex() + "18" + SID.hex() + "53454e4420542068656c6c6f"
    t15 = T.encode_client_transmission(15, SESSION, CORR, SID, cmd, SIG)
    assert t15 == t16[:65] + t16[66:] and len(t15) == 127 and len(t16) == 128
    assert T.batch_blocks([t16])[0][:7].hex() == "0083010080" + "40" + "99"
    assert T.Transmission(CORR, SID, cmd).t_for_auth(18, SESSION) == tfa


def test_sub_authenticator_layout_v16() -> None:
    auth = bytes(80)
    t = T.encode_client_transmission(16, SESSION, CORR, RID, C.SUB, auth)
    assert t == b"\x50" + auth + b"0" + b"\x18" + CORR + b"\x18" + RID + b"SUB"


def test_v6_carries_session_id_both_ways() -> None:
    t = T.encode_client_transmission(6, SESSION, CORR, b"", C.PING)
    assert t == b"\x00\x20" + SESSION + b"\x18" + CORR + b"\x00PING"
    r = T.encode_server_transmission(6, SESSION, CORR, b"", C.PONG)
    assert r == b"\x00\x20" + SESSION + b"\x18" + CORR + b"\x00PONG"
    assert T.encode_server_transmission(7, SESSION, CORR, b"", C.PONG) == b"\x00\x18" + CORR + b"\x00PONG"


# ---- server-side decoding ----


def _block(*transmissions: bytes) -> bytes:
    return _core.encode_batch(list(transmissions), 16384)


def test_decode_error_mapping_v7() -> None:
    """The 5-transmission block of v7-errors.json (PING, garbage, 10-byte auth, HELLO, PING)."""
    block = bytes.fromhex(
        "003f050009000263310050494e470001ff00130a303132333435363738390263330050494e47000e0002633404"
        "3132333448454c4c4f0009000263350050494e47"
    ) + b"#" * 16318
    got = T.decode_server_transmissions(block, 7, SESSION)
    assert [(r.corr_id, r.entity_id, r.error) for r in got] == [
        (b"c1", b"", None),
        (b"", b"", E.BLOCK),
        (b"c3", b"", E.BLOCK),
        (b"c4", b"1234", E.CMD_UNKNOWN),
        (b"c5", b"", None),
    ]
    assert got[0].command == C.Ping() and got[4].command == C.Ping()
    assert got[0].t_for_auth == b"\x20" + SESSION + b"\x02c1\x00PING"


def test_decode_cmd_errors_keep_entity() -> None:
    sig = bytes(64)
    ts = [
        T.encode_client_transmission(7, SESSION, b"a", b"q", b"SUB"),  # no auth
        T.encode_client_transmission(7, SESSION, b"b", b"q", b"KEY", sig),  # no params
        T.encode_client_transmission(7, SESSION, b"c", b"q", b"NEW " + b"\x00" * 3, sig),
        T.encode_client_transmission(7, SESSION, b"d", b"", b"SEND F x"),
        T.encode_client_transmission(7, SESSION, b"e", b"q", b"SEND F x"),
    ]
    got = T.decode_server_transmissions(_block(*ts), 7, SESSION)
    assert [(r.corr_id, r.entity_id, r.error) for r in got] == [
        (b"a", b"q", E.CMD_NO_AUTH),
        (b"b", b"q", E.CMD_SYNTAX),
        (b"c", b"q", E.CMD_SYNTAX),
        (b"d", b"", E.CMD_NO_ENTITY),
        (b"e", b"q", None),
    ]
    assert got[4].command == C.Send(C.MsgFlags(False), b"x") and got[4].auth == b""


def test_decode_v6_session_mismatch() -> None:
    other = bytes(32)
    t_ok = T.encode_client_transmission(6, SESSION, b"a", b"", b"PING")
    t_bad = T.encode_client_transmission(6, other, b"b", b"q", b"PING")
    t_bad_auth = T.encode_client_transmission(6, other, b"c", b"q", b"SUB", bytes(10))
    got = T.decode_server_transmissions(_block(t_ok, t_bad, t_bad_auth), 6, SESSION)
    assert [(r.corr_id, r.entity_id, r.error) for r in got] == [
        (b"a", b"", None), (b"b", b"", E.SESSION), (b"c", b"", E.SESSION),
    ]


def test_decode_v16_service_signature() -> None:
    ssig = os.urandom(64)
    t = T.encode_client_transmission(16, SESSION, b"a", b"q", b"SUB", bytes(64), ssig)
    [r] = T.decode_server_transmissions(_block(t), 16, SESSION)
    assert r.command == C.SUB and r.service_sig == ssig and r.auth == bytes(64)
    assert r.t_for_auth == T.t_for_auth(SESSION, b"a", b"q", b"SUB")


@pytest.mark.parametrize(
    "content",
    ["000c02000900026d310050494e47", "000e01000900026d320050494e477878", "000100", "0000", "ffff00026d33"],
)
def test_decode_malformed_blocks(content: str) -> None:
    """The malformed blocks of v7-errors.json: one ERR BLOCK, empty corrId and entity."""
    block = bytes.fromhex(content) + b"#" * (16384 - len(content) // 2)
    [r] = T.decode_server_transmissions(block, 7, SESSION)
    assert (r.corr_id, r.entity_id, r.command, r.error) == (b"", b"", None, E.BLOCK)
    [c] = T.decode_client_transmissions(block, 7, SESSION)
    assert (c.corr_id, c.entity_id, c.response, c.error) == (b"", b"", None, E.BLOCK)
    assert [(x.corr_id, x.error) for x in T.block_error_command()] == [(b"", E.BLOCK)]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), st.sampled_from([6, 7, 16]))
def test_decode_arbitrary_blocks(data: bytes, version: int) -> None:
    for block in (data, data + b"#" * 64, len(data).to_bytes(2, "big") + data):
        for r in T.decode_server_transmissions(block, version, SESSION):
            assert (r.command is None) != (r.error is None)
        for c in T.decode_client_transmissions(block, version, SESSION):
            assert (c.response is None) != (c.error is None)


@pytest.mark.parametrize("version", VERSIONS)
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_server_decode_round_trip(version: int, data: st.DataObject) -> None:
    cmds = data.draw(st.lists(commands(version), min_size=1, max_size=6))
    ts, expect = [], []
    for i, cmd in enumerate(cmds):
        corr = bytes([i]) * 24
        ent = b"" if cmd.CRED in (C.CRED_NEW, C.CRED_NONE) else b"e" * 24
        auth = b"" if cmd.CRED in (C.CRED_ENTITY, C.CRED_NONE) else bytes(64)
        ts.append(T.encode_client_transmission(version, SESSION, corr, ent, cmd, auth))
        expect.append((corr, ent, cmd, auth))
    for block in T.batch_blocks(ts):
        for r in T.decode_server_transmissions(block, version, SESSION):
            corr, ent, cmd, auth = expect.pop(0)
            assert (r.corr_id, r.entity_id, r.command, r.error, r.auth) == (corr, ent, cmd, None, auth)
            assert r.t_for_auth == T.t_for_auth(SESSION, corr, ent, C.encode_command(cmd, version))
    assert not expect


# ---- client-side decoding ----


@pytest.mark.parametrize("version", VERSIONS)
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_client_decode_round_trip(version: int, data: st.DataObject) -> None:
    msgs = data.draw(st.lists(responses(version), min_size=1, max_size=6))
    ts, expect = [], []
    for i, msg in enumerate(msgs):
        ent = b"" if msg.TAG in (b"PONG", b"PKEY", b"RRES", b"ALLS", b"RNAME") else b"q" * 24
        ts.append(T.Transmission(bytes([i]), ent, msg).encode_server(version, SESSION))
        expect.append((bytes([i]), ent, msg))
    got = [(r.corr_id, r.entity_id, r.response) for b in T.batch_blocks(ts) for r in T.decode_client_transmissions(b, version, SESSION)]
    assert got == expect


def test_client_decode_errors() -> None:
    ts = [
        T.encode_server_transmission(18, SESSION, b"a", b"q", b"PONG"),
        T.encode_server_transmission(18, SESSION, b"b", b"", b"OK"),
        T.encode_server_transmission(18, SESSION, b"c", b"q", b"HELLO"),
        T.encode_server_transmission(18, SESSION, b"d", b"q", b"OK x"),
        T.encode_server_transmission(18, SESSION, b"e", b"", b"ERR AUTH"),
    ]
    got = T.decode_client_transmissions(_block(*ts), 18, SESSION)
    assert [(r.corr_id, r.entity_id, r.error) for r in got] == [
        (b"a", b"q", E.CMD_HAS_AUTH),
        (b"b", b"", E.CMD_NO_ENTITY),
        (b"c", b"q", E.CMD_UNKNOWN),
        (b"d", b"q", E.CMD_SYNTAX),
        (b"e", b"", None),
    ]
    assert got[4].response == C.Err(E.AUTH)
    v6 = T.encode_server_transmission(6, bytes(32), b"f", b"q", b"OK")
    [r] = T.decode_client_transmissions(_block(v6), 6, SESSION)
    assert (r.corr_id, r.entity_id, r.error) == (b"f", b"", E.SESSION)


# ---- batching (the reference's tests/CoreTests/BatchingTests.hs, and the transcripts) ----


def _sub(version: int) -> bytes:
    return T.encode_client_transmission(version, SESSION, os.urandom(24), os.urandom(24), C.SUB, os.urandom(64))


def _counts(ts: list[bytes], padded: int = 16384) -> list[int]:
    blocks = T.batch_blocks(ts, padded)
    assert all(len(b) == padded for b in blocks)
    return [b[2] for b in blocks]  # the count byte after the 2-byte pad length


@pytest.mark.parametrize("version,n,expected", [(6, 250, [38, 106, 106]), (18, 300, [30, 135, 135]), (16, 135, [135]), (7, 136, [136]), (7, 137, [1, 136])])
def test_sub_batches(version: int, n: int, expected: list[int]) -> None:
    assert _counts([_sub(version) for _ in range(n)]) == expected


def test_sub_batches_encrypted_padding() -> None:
    ts = [_sub(18) for _ in range(300)]
    assert _counts(ts, V.ENCRYPTED_BLOCK_PAD) == [30, 135, 135]


def test_end_and_nmsg_batches() -> None:
    ends = [T.encode_server_transmission(18, SESSION, b"", os.urandom(24), C.END) for _ in range(300)]
    assert _counts(ends) == [45, 255]
    nmsgs = [
        T.encode_server_transmission(18, SESSION, b"", os.urandom(24), C.Nmsg(os.urandom(24), os.urandom(144)))
        for _ in range(200)
    ]
    assert _counts(nmsgs) == [40, 80, 80]


def test_batches_with_message() -> None:
    def send(version: int, auth_len: int) -> bytes:
        cmd = C.Send(C.MsgFlags(False), os.urandom(8000))
        return T.encode_client_transmission(version, SESSION, os.urandom(24), os.urandom(24), cmd, os.urandom(auth_len))

    assert _counts([_sub(6) for _ in range(60)] + [send(6, 64)] + [_sub(6) for _ in range(40)]) == [47, 54]
    assert _counts([_sub(18) for _ in range(60)] + [send(18, 80)] + [_sub(18) for _ in range(40)]) == [33, 68]


def test_sub_responses_with_message() -> None:
    def sok() -> bytes:
        return T.encode_server_transmission(18, SESSION, os.urandom(24), os.urandom(24), C.Sok(None))

    msg = T.encode_server_transmission(18, SESSION, os.urandom(24), os.urandom(24), C.Msg(os.urandom(24), os.urandom(16048)))
    assert _counts([sok() for _ in range(4)] + [msg]) == [5]
    assert len(T.batch_blocks([sok() for _ in range(5)] + [msg])) == 2


def test_too_large_transmission() -> None:
    with pytest.raises(_core.FramingError):
        T.batch_blocks([b"x" * 16364])
    assert len(T.batch_blocks([b"x" * 16363])) == 1
