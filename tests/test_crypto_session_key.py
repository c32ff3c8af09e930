"""Signed X25519 session key, with a known-answer vector computed independently of smpfast."""

from __future__ import annotations

import nacl.signing
import pytest
from cryptography.hazmat.primitives.asymmetric import ed448, ed25519
from hypothesis import given, settings
from hypothesis import strategies as st

from smpfast.crypto import der
from smpfast.crypto.keys import Alg, PrivateKey, PublicKey, generate_private_key
from smpfast.crypto.session_key import (
    SignedKeyError,
    parse_signed_public_key,
    sign_public_key,
    sign_session_key,
    verify_session_key,
    verify_signed_public_key,
)

H = bytes.fromhex
TLS_KEY = PrivateKey(Alg.ED25519, bytes(range(0x20, 0x40)))
SESSION = PrivateKey(Alg.X25519, bytes(range(0x40, 0x60)))
OBJ = H("302c302a300506032b656e03210079a631eede1bf9c98f12032cdeadd0e7a079398fc786b88cc846ec89af85a51a")
SIG = H(
    "5ade7e9c6b48ab4e58dcd087a26954c682caa24c5ed46ce770620c126333ffee"
    "415fb74fcef2cda2a60735c93213d595650c485b3182f404e17d8b879621b406"
)
SIGNED = H(
    "3078302c302a300506032b656e03210079a631eede1bf9c98f12032cdeadd0e7a079398fc786b88cc846ec89af85a51a"
    "300506032b65700341005ade7e9c6b48ab4e58dcd087a26954c682caa24c5ed46ce770620c126333ffee415fb74fcef2"
    "cda2a60735c93213d595650c485b3182f404e17d8b879621b406"
)


def test_vector_byte_for_byte():
    assert TLS_KEY.sign(OBJ) == SIG
    for signer in (TLS_KEY, nacl.signing.SigningKey(TLS_KEY.raw), ed25519.Ed25519PrivateKey.from_private_bytes(TLS_KEY.raw)):
        assert sign_session_key(SESSION.public.raw, signer) == SIGNED
    assert len(SIGNED) == 122
    pub, alg, signed, sig = parse_signed_public_key(SIGNED)
    assert (pub, alg, signed, sig) == (SESSION.public, Alg.ED25519, OBJ, SIG)
    for vk in (TLS_KEY.public, TLS_KEY.public.der, ed25519.Ed25519PrivateKey.from_private_bytes(TLS_KEY.raw).public_key(),
               nacl.signing.SigningKey(TLS_KEY.raw).verify_key):
        assert verify_session_key(SIGNED, vk) == SESSION.public.raw


def test_ed448_signer():
    k = ed448.Ed448PrivateKey.generate()
    d = sign_session_key(SESSION.public, k)
    assert len(d) == 173 and d[:3] == H("3081aa")
    assert d[3:49] == OBJ
    assert d[49:59] == H("300506032b6571037300")
    assert verify_session_key(d, k.public_key()) == SESSION.public.raw
    # an Ed25519 leaf key cannot verify an Ed448 signature (algorithms differ)
    with pytest.raises(SignedKeyError):
        verify_session_key(d, TLS_KEY.public)


def test_verification_failures():
    other = generate_private_key(Alg.ED25519)
    with pytest.raises(SignedKeyError):
        verify_session_key(SIGNED, other.public)
    bad = bytearray(SIGNED)
    bad[20] ^= 1  # a different session key
    with pytest.raises(SignedKeyError):
        verify_session_key(bytes(bad), TLS_KEY.public)
    # an X25519 "leaf key" is not a verify key
    with pytest.raises(SignedKeyError):
        verify_session_key(SIGNED, SESSION.public)
    # a signed Ed25519 key is fine as a service key but not as a session key
    svc = sign_public_key(other.public, TLS_KEY)
    assert verify_signed_public_key(svc, TLS_KEY.public) == other.public
    with pytest.raises(SignedKeyError):
        verify_session_key(svc, TLS_KEY.public)
    with pytest.raises(Exception):
        sign_session_key(SESSION.public.raw, SESSION)  # X25519 keys do not sign


def _rebuild(obj: bytes, alg_id: bytes, bitstring_value: bytes, extra: bytes = b"") -> bytes:
    return der.tlv(der.SEQUENCE, obj + alg_id + der.tlv(der.BIT_STRING, bitstring_value) + extra)


@pytest.mark.parametrize(
    "data",
    [
        SIGNED + b"\x00",  # trailing bytes
        SIGNED[:-1],
        _rebuild(OBJ, H("300506032b6570"), b"\x00" + SIG, H("0500")),  # a 4th element
        _rebuild(OBJ, H("300706032b65700500"), b"\x00" + SIG),  # NULL parameters
        _rebuild(OBJ, H("300506032b6571"), b"\x00" + SIG),  # Ed448 OID, 64-byte signature
        _rebuild(OBJ, H("300506032b656e"), b"\x00" + SIG),  # X25519 is no signature algorithm
        _rebuild(OBJ, H("300506032b6570"), b"\x01" + SIG),  # unused bits
        _rebuild(OBJ[2:], H("300506032b6570"), b"\x00" + SIG),  # SPKI not wrapped
        _rebuild(OBJ + b"", H("300506032b6570"), b"\x00" + SIG[:-1]),  # short signature
        _rebuild(der.tlv(der.SEQUENCE, OBJ[2:] + b"\x05\x00"), H("300506032b6570"), b"\x00" + SIG),
    ],
)
def test_strict_parse(data):
    with pytest.raises(SignedKeyError):
        verify_session_key(data, TLS_KEY.public)


@settings(max_examples=300)
@given(st.data())
def test_mutations_raise_only_signed_key_error(data):
    d = bytearray(SIGNED)
    i = data.draw(st.integers(0, len(d) - 1))
    op = data.draw(st.sampled_from(["flip", "cut", "insert"]))
    if op == "flip":
        d[i] ^= data.draw(st.integers(1, 255))
    elif op == "cut":
        del d[i:]
    else:
        d[i:i] = data.draw(st.binary(min_size=1, max_size=3))
    with pytest.raises(SignedKeyError):
        verify_session_key(bytes(d), TLS_KEY.public)


@given(st.binary(max_size=200))
def test_random_bytes(data):
    with pytest.raises(SignedKeyError):
        verify_session_key(data, TLS_KEY.public)


@settings(max_examples=20, deadline=None)
@given(st.sampled_from([Alg.ED25519, Alg.ED448]), st.binary(min_size=32, max_size=32))
def test_round_trip(alg, raw):
    signer = generate_private_key(alg)
    d = sign_session_key(raw, signer)
    assert len(d) == {Alg.ED25519: 122, Alg.ED448: 173}[alg]
    assert verify_session_key(d, signer.public) == raw
    assert parse_signed_public_key(d)[0] == PublicKey(Alg.X25519, raw)
