"""Command authorization, with known-answer vectors computed independently of smpfast."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import smpfast._core as core
from smpfast.crypto.auth import (
    DUMMY_KEY_ED448,
    DUMMY_KEY_ED25519,
    DUMMY_KEY_X25519,
    AuthRequest,
    AuthVerifier,
    authenticator,
    authorize,
    cb_nonce,
    sender_id_for,
    sign,
    t_for_auth,
)
from smpfast.crypto.keys import Alg, PrivateKey, PublicKey, dh_box_key, generate_private_key, x25519_dh

H = bytes.fromhex
SESSION_ID = H("0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20")
CORR_ID = H("a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7")
RECIPIENT_ID = H("101112131415161718191a1b1c1d1e1f2021222324252627")
SENDER_ID = H("303132333435363738393a3b3c3d3e3f4041424344454647")


def seed(start: int) -> bytes:
    return bytes(range(start, start + 32))


SENDER = PrivateKey(Alg.ED25519, seed(0x80))
SERVER_SESSION = PrivateKey(Alg.X25519, seed(0x40))
CLIENT_QUEUE = PrivateKey(Alg.X25519, seed(0x60))


def test_cb_nonce():
    assert cb_nonce(CORR_ID) == CORR_ID
    assert cb_nonce(b"abcd") == b"abcd" + bytes(20)
    assert cb_nonce(b"") == bytes(24)
    assert cb_nonce(bytes(range(30))) == bytes(range(24))


def test_send_signature_vector():
    tfa = t_for_auth(SESSION_ID, CORR_ID, SENDER_ID, b"SEND T hello")
    assert tfa == b"\x20" + SESSION_ID + b"\x18" + CORR_ID + b"\x18" + SENDER_ID + H("53454e4420542068656c6c6f")
    sig = sign(SENDER, tfa)
    assert sig.hex() == (
        "999ae95e11b5d40620658c6478ef1b559415c7f97b3dbdf84a7dc5852bf4d3fb"
        "7721d08179bae90c0bc5a8c6537958fa83dce737a70626d6d8fa8f2a30032c0d"
    )
    assert authorize(SENDER, tfa, CORR_ID, None) == sig
    v = AuthVerifier(SERVER_SESSION.raw)
    assert v.verify(SENDER.public, sig, tfa, CORR_ID)
    assert v.verify(SENDER.public.der, sig, tfa, CORR_ID)
    assert not v.verify(SENDER.public, sig, tfa + b"x", CORR_ID)


def test_sub_authenticator_vector():
    tfa = t_for_auth(SESSION_ID, CORR_ID, RECIPIENT_ID, b"SUB")
    assert tfa.hex().endswith("535542")
    assert core.x25519(CLIENT_QUEUE.raw, SERVER_SESSION.public.raw).hex() == (
        "d6fb939511b2381bc8599b4b8edc5968829450dfd7a87aebe78a703cd04cd54e"
    )
    assert hashlib.sha512(tfa).hexdigest() == (
        "b86b3b4694b28c9f66d2fbb768884e39ee149ff33fbf6129176f330f945afea7"
        "a3c0a99ff777ba0cb5d59b293e47c267f49a719f72a5cfaf6a41cd713030face"
    )
    a = authenticator(CLIENT_QUEUE, SERVER_SESSION.public.raw, CORR_ID, tfa)
    assert a.hex() == (
        "7604ba24b048ff30423fb4dc9c3d15ca643fb4b2a6cad76ce15a9c262bea72e6"
        "7aa93f384b26f19e02f13c11d94818cefa297a205970c7e3744b7d55e28c29e5"
        "b3b2ad405e88ab893ae875a3ee61ca61"
    )
    assert authorize(CLIENT_QUEUE, tfa, CORR_ID, SERVER_SESSION.public.raw) == a
    with pytest.raises(core.CryptoError):
        authorize(CLIENT_QUEUE, tfa, CORR_ID, None)
    # server side: open with the session private key and the stored queue key
    v = AuthVerifier(SERVER_SESSION.raw)
    assert v.verify(CLIENT_QUEUE.public, a, tfa, CORR_ID)
    assert v.verify(CLIENT_QUEUE.public.der, a, tfa, CORR_ID)
    assert not v.verify(CLIENT_QUEUE.public, a, tfa, bytes(24))  # nonce is the corrId
    assert not v.verify(CLIENT_QUEUE.public, a, tfa + b"!", CORR_ID)
    # below v7 there is no session key: never verifies
    assert not AuthVerifier(None).verify(CLIENT_QUEUE.public, a, tfa, CORR_ID)


def test_sender_id_vector():
    assert sender_id_for(CORR_ID).hex() == "7de47b90163d262178956b4b72817512d5cbe12a79349ded"


def test_dummy_keys():
    assert DUMMY_KEY_ED25519.alg is Alg.ED25519
    assert DUMMY_KEY_ED448.alg is Alg.ED448
    assert DUMMY_KEY_X25519.alg is Alg.X25519


class CountingCore:
    """Wraps the core verify_batch / box_beforenm to see which work was done."""

    def __init__(self, monkeypatch):
        import smpfast.crypto.auth as auth_mod

        self.requests: list = []
        self.beforenm = 0
        real_vb, real_bn = core.verify_batch, core.box_beforenm

        def vb(reqs):
            self.requests.extend(reqs)
            return real_vb(reqs)

        def bn(pub, priv):
            self.beforenm += 1
            return real_bn(pub, priv)

        monkeypatch.setattr(auth_mod.core, "verify_batch", vb)
        monkeypatch.setattr(auth_mod.core, "box_beforenm", bn)


def test_timing_safety_uses_dummy_keys(monkeypatch):
    ed = generate_private_key(Alg.ED25519)
    e448 = generate_private_key(Alg.ED448)
    x = generate_private_key(Alg.X25519)
    tfa = t_for_auth(SESSION_ID, CORR_ID, RECIPIENT_ID, b"SUB")
    sig = ed.sign(tfa)
    sig448 = e448.sign(tfa)
    a = authenticator(x, SERVER_SESSION.public.raw, CORR_ID, tfa)
    v = AuthVerifier(SERVER_SESSION.raw)
    counting = CountingCore(monkeypatch)
    # queue missing, signature → one Ed25519 verification with the dummy key
    assert v.verify(None, sig, tfa, CORR_ID) is False
    assert counting.requests[-1][0] == DUMMY_KEY_ED25519.raw
    # Ed25519 signature against an X25519 or Ed448 key → dummy Ed25519
    for k in (x.public, e448.public):
        n = len(counting.requests)
        assert v.verify(k, sig, tfa, CORR_ID) is False
        assert len(counting.requests) == n + 1 and counting.requests[-1][0] == DUMMY_KEY_ED25519.raw
    # authenticator against an Ed25519 key or no key → dummy X25519 box
    dummy_box = core.box_beforenm(DUMMY_KEY_X25519.raw, SERVER_SESSION.raw)
    for k in (ed.public, None):
        n = len(counting.requests)
        assert v.verify(k, a, tfa, CORR_ID, RECIPIENT_ID) is False
        assert len(counting.requests) == n + 1 and counting.requests[-1][0] == dummy_box
    # the genuine ones verify
    assert v.verify(ed.public, sig, tfa, CORR_ID)
    assert v.verify(x.public, a, tfa, CORR_ID)
    assert v.verify(e448.public, sig448, tfa, CORR_ID)
    assert not v.verify(e448.public, sig448, tfa + b"x", CORR_ID)
    # Ed448 signature against an Ed25519 key: checked with the dummy Ed448 key, False
    assert v.verify(ed.public, sig448, tfa, CORR_ID) is False
    assert v.verify(None, sig448, tfa, CORR_ID) is False
    # even a *valid* dummy-key signature never passes on the dummy path
    assert v.verify(None, b"", tfa, CORR_ID) is False
    assert v.verify(ed.public, b"\x00" * 10, tfa, CORR_ID) is False


def test_ed448_dummy_path_verifies_once(monkeypatch):
    import smpfast.crypto.auth as auth_mod

    calls = []
    real = auth_mod.ed448_verify
    monkeypatch.setattr(auth_mod, "ed448_verify", lambda *a: calls.append(a[0]) or real(*a))
    e448 = generate_private_key(Alg.ED448)
    sig = e448.sign(b"t")
    v = AuthVerifier(SERVER_SESSION.raw)
    assert not v.verify(None, sig, b"t", CORR_ID)
    assert not v.verify(generate_private_key(Alg.ED25519).public, sig, b"t", CORR_ID)
    assert calls == [DUMMY_KEY_ED448.raw, DUMMY_KEY_ED448.raw]


def test_box_key_cache(monkeypatch):
    x = generate_private_key(Alg.X25519)
    tfa = b"tfa"
    a = authenticator(x, SERVER_SESSION.public.raw, CORR_ID, tfa)
    v = AuthVerifier(SERVER_SESSION.raw, cache_size=2)
    counting = CountingCore(monkeypatch)
    for _ in range(3):
        assert v.verify(x.public, a, tfa, CORR_ID)
    assert counting.beforenm == 1
    # dummy path: first use per entity costs a beforenm, like a real key
    for _ in range(2):
        assert not v.verify(None, a, tfa, CORR_ID, b"entity-1")
    assert counting.beforenm == 2
    assert not v.verify(None, a, tfa, CORR_ID, b"entity-2")  # evicts x (LRU of 2)
    assert counting.beforenm == 3
    assert v.verify(x.public, a, tfa, CORR_ID)
    assert counting.beforenm == 4


def test_batch_and_key_lists():
    ed1, ed2 = generate_private_key(Alg.ED25519), generate_private_key(Alg.ED25519)
    x = generate_private_key(Alg.X25519)
    e448 = generate_private_key(Alg.ED448)
    v = AuthVerifier(SERVER_SESSION.raw)
    reqs = []
    expect = []
    for i in range(12):
        tfa = t_for_auth(SESSION_ID, bytes([i]) * 24, RECIPIENT_ID, b"ACK")
        corr = bytes([i]) * 24
        kind = i % 4
        if kind == 0:
            reqs.append(AuthRequest([ed1.public, ed2.public.der], ed2.sign(tfa), tfa, corr))
            expect.append(True)
        elif kind == 1:
            reqs.append((x.public.der, authenticator(x, SERVER_SESSION.public.raw, corr, tfa), tfa, corr))
            expect.append(True)
        elif kind == 2:
            reqs.append((e448.public, e448.sign(tfa), tfa, corr))
            expect.append(True)
        else:
            reqs.append(([ed1.public], ed2.sign(tfa), tfa, corr))  # wrong key
            expect.append(False)
    assert v.verify_batch(reqs) == expect
    assert v.verify_batch([]) == []
    assert v.verify_batch([([], ed1.sign(b"m"), b"m", CORR_ID)]) == [False]
    assert v.verify_batch([(b"garbage", ed1.sign(b"m"), b"m", CORR_ID)]) == [False]


KEY_ALGS = st.sampled_from([Alg.ED25519, Alg.X25519])


@settings(max_examples=40, deadline=None)
@given(KEY_ALGS, st.binary(max_size=300), st.binary(max_size=40), st.data())
def test_authorize_round_trip_and_tamper(alg, tfa, corr, data):
    k = generate_private_key(alg)
    auth = authorize(k, tfa, corr, SERVER_SESSION.public.raw)
    assert len(auth) == (64 if alg is Alg.ED25519 else 80)
    v = AuthVerifier(SERVER_SESSION.raw)
    assert v.verify(k.public, auth, tfa, corr)
    i = data.draw(st.integers(0, len(auth) - 1))
    bad = bytearray(auth)
    bad[i] ^= data.draw(st.integers(1, 255))
    assert not v.verify(k.public, bytes(bad), tfa, corr)
    assert not v.verify(k.public, auth, tfa + b"\x00", corr)


def test_low_order_stored_key_behaves_like_the_reference():
    """crypton's X25519 does not reject low-order points: the DH secret is all zeros, so an
    authenticator made with the zero secret verifies (libsodium alone would refuse)."""
    low = PublicKey(Alg.X25519, bytes(32))
    tfa = b"tfa"
    zero_key = core.hsalsa20_key(bytes(32))
    a = core.box_seal(zero_key, cb_nonce(CORR_ID), hashlib.sha512(tfa).digest())
    v = AuthVerifier(SERVER_SESSION.raw)
    assert v.verify(low, a, tfa, CORR_ID)
    assert authenticator(CLIENT_QUEUE, bytes(32), CORR_ID, tfa) == a
    assert x25519_dh(SERVER_SESSION.raw, bytes(32)) == bytes(32)
    with pytest.raises(core.CryptoError):
        x25519_dh(b"short", bytes(32))
    assert dh_box_key(CLIENT_QUEUE.public.raw, SERVER_SESSION.raw) == core.box_beforenm(
        CLIENT_QUEUE.public.raw, SERVER_SESSION.raw
    )
