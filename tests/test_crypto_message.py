"""MSG body and NMSG metadata encryption (known answers computed independently of smpfast)."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import smpfast._core as core
from smpfast.crypto.keys import Alg, PrivateKey, PublicKey, generate_private_key
from smpfast.crypto.message import (
    ENC_NTF_META_LEN,
    ENC_RCV_MSG_LEN,
    RCV_MSG_PADDED,
    NtfMeta,
    RcvMessage,
    decrypt_msg,
    decrypt_ntf_meta,
    decrypt_rcv_msg_body,
    encode_ntf_meta,
    encode_rcv_msg_body,
    encode_rcv_msg_quota,
    encrypt_msg,
    encrypt_ntf_meta,
    encrypt_rcv_msg,
    new_queue_dh,
    parse_ntf_meta,
    parse_rcv_msg_body,
    precompute,
)

H = bytes.fromhex
MSG_ID = H("606162636465666768696a6b6c6d6e6f7071727374757677")
SERVER_QUEUE = PrivateKey(Alg.X25519, bytes(range(0xA0, 0xC0)))
CLIENT_RCV_DH = PrivateKey(Alg.X25519, bytes(range(0xC0, 0xE0)))
SECRET = H("3b87c5035cce13678dd93d2dbc3a3d42039ebec86444a1ff82cd61b84c6fe968")
TS = 1700000000


def test_secret_and_precompute():
    assert core.x25519(SERVER_QUEUE.raw, CLIENT_RCV_DH.public.raw) == SECRET
    key = precompute(SECRET)
    assert key == core.box_beforenm(CLIENT_RCV_DH.public.raw, SERVER_QUEUE.raw)
    assert key == core.box_beforenm(SERVER_QUEUE.public.raw, CLIENT_RCV_DH.raw)


def test_msg_vector():
    body = encode_rcv_msg_body(TS, True, b"hello")
    assert body == H("000000006553f100") + b"T hello"
    assert core.pad(body, RCV_MSG_PADDED).hex().startswith("000f000000006553f100542068656c6c6f2323")
    enc = encrypt_rcv_msg(precompute(SECRET), MSG_ID, body)
    assert len(enc) == ENC_RCV_MSG_LEN == 16122
    assert enc[:32].hex() == "4f474e79c384903b87b98be0dc0575d72f529a0a9895118410f7de57de8747ac"
    assert hashlib.sha256(enc).hexdigest() == "9c3b97299090b366c18cc0a28447dafcdb610ce2db83eef9728edf8409556920"
    assert encrypt_msg(precompute(SECRET), MSG_ID, TS, True, b"hello") == enc
    client_key = core.box_beforenm(SERVER_QUEUE.public.raw, CLIENT_RCV_DH.raw)
    assert decrypt_msg(client_key, MSG_ID, enc) == RcvMessage(TS, True, b"hello", False)
    assert encode_rcv_msg_quota(TS) == H("51554f544120000000006553f100")


def test_quota_marker_and_flags():
    key = precompute(SECRET)
    m = decrypt_msg(key, MSG_ID, encrypt_rcv_msg(key, MSG_ID, encode_rcv_msg_quota(TS)))
    assert m.quota and m.ts == TS and m.body == b""
    assert parse_rcv_msg_body(encode_rcv_msg_body(5, False, b"")) == RcvMessage(5, False, b"")
    # extension flag bytes up to the space are skipped (MsgFlags parser)
    assert parse_rcv_msg_body(H("0000000000000005") + b"Txyz body") == RcvMessage(5, True, b"body")
    for bad in (b"", b"short", H("0000000000000005") + b"X body", H("0000000000000005") + b"Tnospace"):
        with pytest.raises(core.CryptoError):
            parse_rcv_msg_body(bad)


def test_ntf_vector():
    nonce = H("d0d1d2d3d4d5d6d7d8d9dadbdcdddedfe0e1e2e3e4e5e6e7")
    meta = encode_ntf_meta(MSG_ID, TS)
    assert meta.hex() == "18606162636465666768696a6b6c6d6e6f7071727374757677000000006553f100"
    n, enc = encrypt_ntf_meta(precompute(SECRET), MSG_ID, TS, nonce)
    assert n == nonce and len(enc) == ENC_NTF_META_LEN == 144
    assert enc.hex() == (
        "ec5b63958213130975b056b6a184342fbf6d59abcceb8439d89cbc1a53bf3670602279c8c01c6d3f0a1f62750e063cdc"
        "337b796af48675fd32054c7941471dc2575d7ac8311d78d37075616191725d759e2c560e71aa9ed9ddbb628f19b4dd82"
        "b4b43eac9a1a510a88cbc19f8e087202307b39a45c53dd8317b6411e1aa58e44ffb0ef5f39027e1c0dd6fe4198b99dd9"
    )
    assert decrypt_ntf_meta(precompute(SECRET), nonce, enc) == NtfMeta(MSG_ID, TS)
    n2, enc2 = encrypt_ntf_meta(precompute(SECRET), MSG_ID, TS)
    assert len(n2) == 24 and n2 != nonce and decrypt_ntf_meta(precompute(SECRET), n2, enc2).msg_id == MSG_ID
    assert parse_ntf_meta(meta + b"future fields") == NtfMeta(MSG_ID, TS)
    with pytest.raises(core.CryptoError):
        parse_ntf_meta(meta[:-1])
    with pytest.raises(core.CryptoError):
        decrypt_ntf_meta(precompute(SECRET), bytes(24), enc)


def test_new_queue_dh():
    client = generate_private_key(Alg.X25519)
    keys = new_queue_dh(client.public.der)
    from smpfast.crypto.keys import decode_dh_key

    server_pub = decode_dh_key(keys.server_public_der).raw
    assert core.x25519(client.raw, server_pub) == keys.secret
    assert keys.box_key == precompute(keys.secret) == core.box_beforenm(server_pub, client.raw)
    assert new_queue_dh(client.public).server_public_der != keys.server_public_der
    low = new_queue_dh(PublicKey(Alg.X25519, bytes(32)))
    assert low.secret == bytes(32)  # low-order key: all-zero secret, as the reference
    with pytest.raises(core.CryptoError):
        new_queue_dh(generate_private_key(Alg.ED25519).public)
    with pytest.raises(core.CryptoError):
        new_queue_dh(bytes(44))


@settings(max_examples=25, deadline=None)
@given(st.integers(-(2**63), 2**63 - 1), st.booleans(), st.binary(max_size=16088),
       st.binary(min_size=24, max_size=24), st.data())
def test_msg_round_trip_and_tamper(ts, ntf, body, msg_id, data):
    key = precompute(SECRET)
    enc = encrypt_msg(key, msg_id, ts, ntf, body)
    assert len(enc) == ENC_RCV_MSG_LEN
    assert decrypt_msg(key, msg_id, enc) == RcvMessage(ts, ntf, body)
    assert decrypt_rcv_msg_body(key, msg_id, enc) == encode_rcv_msg_body(ts, ntf, body)
    bad = bytearray(enc)
    bad[data.draw(st.integers(0, len(enc) - 1))] ^= 1
    with pytest.raises(core.CryptoError):
        decrypt_msg(key, msg_id, bytes(bad))


@settings(max_examples=50, deadline=None)
@given(st.binary(max_size=100), st.integers(-(2**63), 2**63 - 1))
def test_ntf_round_trip(msg_id, ts):
    key = precompute(SECRET)
    nonce, enc = encrypt_ntf_meta(key, msg_id, ts)
    assert len(enc) == ENC_NTF_META_LEN
    assert decrypt_ntf_meta(key, nonce, enc) == NtfMeta(msg_id, ts)
    with pytest.raises(core.CryptoError):
        decrypt_ntf_meta(key, nonce, enc[:-1] + bytes([enc[-1] ^ 1]))
