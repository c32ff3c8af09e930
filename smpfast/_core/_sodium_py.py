"""Pure-Python twin of ``sodium.pyx``, on PyNaCl's public API.

Every box here is SimpleX's ``cryptoBox``: XSalsa20-Poly1305 keyed with a *precomputed*
key ``k1 = HSalsa20(K, 0^16)``, output ``tag(16) || ciphertext``. For the DH variant
``k1 = box_beforenm(pub, priv)``; for the symmetric variant (block encryption)
``k1 = hsalsa20_key(K)``.
"""

from __future__ import annotations

import hashlib
import hmac
import struct

import nacl.bindings as nb
import nacl.exceptions

from ._errors import CryptoError, FramingError
from ._framing_py import pad, unpad

ED25519_SIG = 64
X25519_AUTHENTICATOR = 80
NONCE_SIZE = 24
KEY_SIZE = 32
TAG_SIZE = 16

_SIGMA = b"expand 32-byte k"


def _rotl(v: int, c: int) -> int:
    return ((v << c) & 0xFFFFFFFF) | (v >> (32 - c))


def hsalsa20(key: bytes, inp: bytes) -> bytes:
    """The HSalsa20 core: Salsa20's 20 rounds without the feed-forward."""
    if len(key) != 32 or len(inp) != 16:
        raise CryptoError("hsalsa20 takes a 32-byte key and 16-byte input")
    c = struct.unpack("<4I", _SIGMA)
    k = struct.unpack("<8I", key)
    i = struct.unpack("<4I", inp)
    x = [c[0], k[0], k[1], k[2], k[3], c[1], i[0], i[1], i[2], i[3], c[2], k[4], k[5], k[6], k[7], c[3]]
    for _ in range(10):
        for a, b, cc, d in ((0, 4, 8, 12), (5, 9, 13, 1), (10, 14, 2, 6), (15, 3, 7, 11),
                            (0, 1, 2, 3), (5, 6, 7, 4), (10, 11, 8, 9), (15, 12, 13, 14)):
            x[b] ^= _rotl((x[a] + x[d]) & 0xFFFFFFFF, 7)
            x[cc] ^= _rotl((x[b] + x[a]) & 0xFFFFFFFF, 9)
            x[d] ^= _rotl((x[cc] + x[b]) & 0xFFFFFFFF, 13)
            x[a] ^= _rotl((x[d] + x[cc]) & 0xFFFFFFFF, 18)
    return struct.pack("<8I", x[0], x[5], x[10], x[15], x[6], x[7], x[8], x[9])


def hsalsa20_key(key: bytes) -> bytes:
    """``HSalsa20(key, 0^16)``: the precomputed key of the symmetric cryptoBox variant."""
    return hsalsa20(bytes(key), bytes(16))


def x25519(private: bytes, public: bytes) -> bytes:
    """Raw X25519 shared secret."""
    if len(private) != 32 or len(public) != 32:
        raise CryptoError("x25519 takes 32-byte keys")
    try:
        return nb.crypto_scalarmult(bytes(private), bytes(public))
    except nacl.exceptions.CryptoError as e:
        raise CryptoError(str(e)) from None


def box_beforenm(public: bytes, private: bytes) -> bytes:
    """``HSalsa20(X25519(private, public), 0^16)``: the precomputed key of the DH variant."""
    if len(private) != 32 or len(public) != 32:
        raise CryptoError("box_beforenm takes 32-byte keys")
    try:
        return nb.crypto_box_beforenm(bytes(public), bytes(private))
    except nacl.exceptions.CryptoError as e:
        raise CryptoError(str(e)) from None


def _check(key: bytes, nonce: bytes) -> None:
    if len(key) != KEY_SIZE or len(nonce) != NONCE_SIZE:
        raise CryptoError("box takes a 32-byte key and a 24-byte nonce")


def box_seal(key: bytes, nonce: bytes, plaintext: bytes) -> bytes:
    _check(key, nonce)
    return nb.crypto_box_easy_afternm(bytes(plaintext), bytes(nonce), bytes(key))


def box_seal_padded(key: bytes, nonce: bytes, data: bytes, padded_size: int) -> bytes:
    """``box_seal(key, nonce, pad(data, padded_size))``; output is ``padded_size + 16`` bytes."""
    _check(key, nonce)
    try:
        padded = pad(bytes(data), padded_size)
    except FramingError as e:
        raise CryptoError(str(e)) from None
    return nb.crypto_box_easy_afternm(padded, bytes(nonce), bytes(key))


def box_open(key: bytes, nonce: bytes, ciphertext: bytes) -> bytes:
    _check(key, nonce)
    if len(ciphertext) < TAG_SIZE:
        raise CryptoError("ciphertext shorter than its tag")
    try:
        return nb.crypto_box_open_easy_afternm(bytes(ciphertext), bytes(nonce), bytes(key))
    except nacl.exceptions.CryptoError:
        raise CryptoError("box failed to authenticate") from None


def box_open_padded(key: bytes, nonce: bytes, ciphertext: bytes) -> bytes:
    try:
        return unpad(box_open(key, nonce, ciphertext))
    except FramingError as e:
        raise CryptoError(str(e)) from None


def ed25519_verify(public: bytes, signature: bytes, message: bytes) -> bool:
    if len(public) != 32 or len(signature) != ED25519_SIG:
        return False
    try:
        nb.crypto_sign_open(bytes(signature) + bytes(message), bytes(public))
        return True
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.CryptoError, ValueError):
        return False


def authenticator_verify(key: bytes, nonce: bytes, authenticator: bytes, message: bytes) -> bool:
    """Check an 80-byte X25519 authenticator: ``box(key, nonce, SHA-512(message))``."""
    if len(key) != KEY_SIZE or len(nonce) != NONCE_SIZE or len(authenticator) != X25519_AUTHENTICATOR:
        return False
    try:
        digest = nb.crypto_box_open_easy_afternm(bytes(authenticator), bytes(nonce), bytes(key))
    except nacl.exceptions.CryptoError:
        return False
    return hmac.compare_digest(digest, hashlib.sha512(bytes(message)).digest())


def verify_batch(requests: list) -> list:
    """Verify many authorizations in one call.

    Each request is ``(key, auth, message, nonce)``: a 64-byte ``auth`` is an Ed25519
    signature and ``key`` the raw 32-byte public key; an 80-byte ``auth`` is an X25519
    authenticator, ``key`` the precomputed box key and ``nonce`` 24 bytes. Anything else
    (Ed448 included, which libsodium lacks) verifies as False: route it elsewhere.
    """
    out = []
    for key, auth, message, nonce in requests:
        if len(auth) == ED25519_SIG:
            out.append(ed25519_verify(key, auth, message))
        elif len(auth) == X25519_AUTHENTICATOR and nonce is not None:
            out.append(authenticator_verify(key, nonce, auth, message))
        else:
            out.append(False)
    return out


# --- v11+ block encryption: the secret-box chain (one step per block and direction) ------

CHAIN_KEY_SIZE = 32
_STEP_T1 = b"SimpleXSbChain\x01"  # HKDF expand inputs of one step, fixed
_STEP_T2 = b"SimpleXSbChain\x02"


def _check_chain_key(chain_key: bytes) -> bytes:
    if len(chain_key) != CHAIN_KEY_SIZE:
        raise CryptoError("chain key must be 32 bytes")
    return bytes(chain_key)


def sbc_step(chain_key: bytes) -> tuple[bytes, bytes, bytes]:
    """One step of the block-encryption chain: ``(next chain key, sbKey, nonce)``, i.e.
    ``HKDF-SHA512(salt="", ikm=chain_key, info="SimpleXSbChain", 88)`` split 32/32/24."""
    ck = _check_chain_key(chain_key)
    prk = hmac.digest(b"", ck, "sha512")
    t1 = hmac.digest(prk, _STEP_T1, "sha512")
    t2 = hmac.digest(prk, t1 + _STEP_T2, "sha512")
    return t1[:32], t1[32:], t2[:24]


def sbc_seal(chain_key: bytes, padded: bytes) -> tuple[bytes, bytes]:
    """Advance the chain and encrypt one block plaintext with that step's key:
    ``(next chain key, tag(16) || ciphertext)``."""
    next_ck, sb_key, nonce = sbc_step(chain_key)
    return next_ck, box_seal(hsalsa20_key(sb_key), nonce, padded)


def sbc_open(chain_key: bytes, block: bytes) -> tuple[bytes, bytes | None]:
    """Advance the chain and decrypt one block with that step's key: ``(next chain key,
    plaintext)``, the plaintext None when the block does not authenticate (the chain
    advances all the same)."""
    next_ck, sb_key, nonce = sbc_step(chain_key)
    try:
        return next_ck, box_open(hsalsa20_key(sb_key), nonce, block)
    except CryptoError:
        return next_ck, None
