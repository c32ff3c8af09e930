"""Block encryption chain, with a known-answer vector computed independently of smpfast."""

from __future__ import annotations

import hashlib

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from hypothesis import given, settings
from hypothesis import strategies as st

import smpfast._core as core
from smpfast.crypto.blockcrypt import (
    BLOCK_SIZE,
    PADDED_SIZE,
    BlockDecryptor,
    BlockEncryptor,
    client_block_ciphers,
    hkdf_sha512,
    sbc_init,
    sbc_step,
    server_block_ciphers,
)
from smpfast.crypto.keys import Alg, PrivateKey

H = bytes.fromhex
SESSION_ID = H("0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20")
CORR_ID = H("a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7")
SERVER_SESSION = PrivateKey(Alg.X25519, bytes(range(0x40, 0x60)))
CLIENT_TRANSPORT = PrivateKey(Alg.X25519, bytes(range(0x80, 0xA0)))
SECRET = H("dcd77236231add34de0561c47859a65d304f2a8550e8df98df053cf5dfabea0b")
CK1 = H("15edae1e6c8f3388f7cbb988ef10c584ed813a69a55b89b2262128c3b0dafb82")
CK2 = H("2748471430da6bc42732cca6f00f059f45205344ad2c88ccc4649c10385039f4")
PING_T = b"\x00\x18" + CORR_ID + b"\x00PING"


def test_secret_both_sides():
    assert core.x25519(CLIENT_TRANSPORT.raw, SERVER_SESSION.public.raw) == SECRET
    assert core.x25519(SERVER_SESSION.raw, CLIENT_TRANSPORT.public.raw) == SECRET


def test_chain_vectors():
    assert sbc_init(SESSION_ID, SECRET) == (CK1, CK2)
    ck, key, nonce = sbc_step(CK2)
    assert ck.hex() == "ac69fe518d1a82c0761606788fe9b51eb7132755833ae9def0a686e0da97bac2"
    assert key.hex() == "79ed188791e53ced0a29f3a2f23ff318c805dc815de085eda0be2fabe30a9dab"
    assert nonce.hex() == "799bdef469eeeaae0c27ca6549c1bb044958763223973800"
    _, key2, nonce2 = sbc_step(ck)
    assert key2.hex() == "c1af2b3d50fe2288445841e9502480678f54482644cc41368cea293069ade163"
    assert nonce2.hex() == "5ddee1b95a5f253b3a7c061ceeae0b5eb5783bd07ecf66c5"
    _, key3, nonce3 = sbc_step(CK1)
    assert key3.hex() == "927287cc3a53315fd3fd6337700c1a09fd35001528ac5cf8e899cb94ba59fdc9"
    assert nonce3.hex() == "e302905a8b92d0d182e9aa90ca434a424673419ee1443c28"


def test_hkdf_matches_cryptography():
    for salt, ikm, info, n in ((SESSION_ID, SECRET, b"SimpleXSbChainInit", 64), (b"", CK2, b"SimpleXSbChain", 88),
                               (b"s", b"k", b"i", 200)):
        ref = HKDF(hashes.SHA512(), n, salt or None, info).derive(ikm)
        assert hkdf_sha512(salt, ikm, info, n) == ref
    assert hkdf_sha512(b"", CK2, b"SimpleXSbChain", 88) == b"".join(sbc_step(CK2))


def test_ping_block_vector():
    enc, _ = client_block_ciphers(SESSION_ID, SECRET)
    batch = core.encode_batch([PING_T], PADDED_SIZE)
    block = enc.encrypt(batch)
    assert len(block) == BLOCK_SIZE
    assert block[:32].hex() == "d832d228ee457ca3b03ae36c5d04813987e06a5c4b3e03a5531e1d5aa7aee076"
    assert hashlib.sha256(block).hexdigest() == "a3af345bf9a1eece41160e44ee34f22d1c51bfcbf3b8def0e1bc0689a51dcaab"
    enc2, _ = client_block_ciphers(SESSION_ID, SECRET)
    assert enc2.encrypt_content(b"\x01\x00\x1f" + PING_T) == block
    # the server decrypts it to the padded plaintext, which split_block takes as is
    _, dec = server_block_ciphers(SESSION_ID, SECRET)
    plain = dec.decrypt(block)
    assert plain == batch and len(plain) == PADDED_SIZE
    (t,) = core.split_block(plain, SESSION_ID, True, False)
    assert t[3] == CORR_ID and t[5] == b"PING"


def test_both_directions_and_chain_advance_on_failure():
    s_enc, s_dec = server_block_ciphers(SESSION_ID, SECRET)
    c_enc, c_dec = client_block_ciphers(SESSION_ID, SECRET)
    for i in range(3):
        assert c_dec.decrypt(s_enc.encrypt_content(b"s2c %d" % i))[:7] == b"\x00\x05s2c %d" % i
        assert s_dec.decrypt(c_enc.encrypt_content(b"c2s %d" % i))[:7] == b"\x00\x05c2s %d" % i
    # a plaintext block on an encrypted connection fails and still consumes a step
    before = s_dec.chain_key
    with pytest.raises(core.CryptoError):
        s_dec.decrypt(core.pad(b"\x01\x00\x02xy", BLOCK_SIZE))
    assert s_dec.chain_key == sbc_step(before)[0]
    c_enc.next_key()  # the client consumed that step when it "sent" the plaintext
    assert s_dec.decrypt(c_enc.encrypt_content(b"after"))[2:7] == b"after"
    with pytest.raises(core.CryptoError):
        s_dec.decrypt(b"short")
    with pytest.raises(core.CryptoError):
        s_enc.encrypt(b"not 16368 bytes")
    with pytest.raises(core.CryptoError):
        s_enc.encrypt_content(bytes(PADDED_SIZE - 1))
    with pytest.raises(core.CryptoError):
        BlockEncryptor(b"short")


@settings(max_examples=25, deadline=None)
@given(st.binary(max_size=PADDED_SIZE - 2), st.binary(min_size=32, max_size=32), st.data())
def test_round_trip_and_tamper(content, ck, data):
    enc, dec, dec2 = BlockEncryptor(ck), BlockDecryptor(ck), BlockDecryptor(ck)
    block = enc.encrypt_content(content)
    assert len(block) == BLOCK_SIZE
    assert core.unpad(dec.decrypt(block)) == content
    i = data.draw(st.integers(0, BLOCK_SIZE - 1))
    bad = bytearray(block)
    bad[i] ^= data.draw(st.integers(1, 255))
    with pytest.raises(core.CryptoError):
        dec2.decrypt(bytes(bad))
    assert dec2.chain_key == dec.chain_key
