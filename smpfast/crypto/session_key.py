"""Signed public keys: the X.509 ``SignedExact PubKey`` of the server hello and PKEY,
also used for the service key of a v16 client handshake.

``DER = SEQUENCE { obj, AlgorithmIdentifier(Ed25519|Ed448), BIT STRING(0 || signature) }``
where ``obj = SEQUENCE { SPKI }`` and the signature covers the whole ``obj`` element.
Ed25519 signer → 122 bytes, Ed448 signer → 173 bytes (long-form outer length).
Parsing is strict DER: three elements, no trailing bytes, AlgorithmIdentifier without
parameters, a signature of the algorithm's length. Errors raise ``SignedKeyError``.
"""

from __future__ import annotations

import smpfast._core as core
from smpfast._core import CryptoError

from . import der
from .keys import (
    DH_ALGS,
    SIGN_ALGS,
    VERIFY_ALGS,
    Alg,
    KeyFormatError,
    PublicKey,
    as_private_key,
    as_public_key,
    decode_public_key,
    ed448_verify,
    parse_alg_id,
)

_SIG_LEN = {Alg.ED25519: 64, Alg.ED448: 114}


class SignedKeyError(CryptoError):
    """A signed key that does not parse, or whose signature does not verify."""


def _alg_id(alg: Alg) -> bytes:
    return der.tlv(der.SEQUENCE, der.tlv(der.OID, alg.oid))


def sign_public_key(public: PublicKey, signer: object) -> bytes:
    """SignedExact DER of ``public`` signed with an Ed25519/Ed448 private key (our
    PrivateKey, PyNaCl SigningKey or ``cryptography`` private key object)."""
    key = as_private_key(signer)
    if key.alg not in SIGN_ALGS:
        raise CryptoError(f"{key.alg.value} keys do not sign")
    obj = der.tlv(der.SEQUENCE, public.der)
    signature = key.sign(obj)
    return der.tlv(der.SEQUENCE, obj + _alg_id(key.alg) + der.tlv(der.BIT_STRING, b"\x00" + signature))


def parse_signed_public_key(data: bytes) -> tuple[PublicKey, Alg, bytes, bytes]:
    """Split a SignedExact DER: ``(public key, signature algorithm, signed bytes, signature)``."""
    try:
        data = bytes(data)
        vs, ve = der.expect_one(data, der.SEQUENCE)
        parts = der.children(data, vs, ve)
        if len(parts) != 3 or [p[0] for p in parts] != [der.SEQUENCE, der.SEQUENCE, der.BIT_STRING]:
            raise SignedKeyError("signed key must be SEQUENCE { object, algorithm, BIT STRING }")
        (_, os_, ovs, ove), (_, as_, _avs, ave), (_, _ss, svs, sve) = parts
        public = decode_public_key(data[ovs:ove])
        alg = parse_alg_id(data[as_:ave])
        signature = der.bit_string_bytes(data, svs, sve)
    except (der.DerError, KeyFormatError) as e:
        raise SignedKeyError(str(e)) from None
    except TypeError:
        raise SignedKeyError("signed key must be bytes") from None
    if alg not in SIGN_ALGS:
        raise SignedKeyError("unknown x509 signature algorithm")
    if len(signature) != _SIG_LEN[alg]:
        raise SignedKeyError("bad signature size")
    return public, alg, data[os_:ove], signature


def verify_signed_public_key(data: bytes, verify_key: object, allowed: frozenset[Alg] | None = None) -> PublicKey:
    """Check the signature with ``verify_key`` (PublicKey, SPKI DER, ``cryptography``
    public key or x509 certificate — the TLS leaf's) and return the signed key."""
    public, alg, signed, signature = parse_signed_public_key(data)
    key = _verify_key(verify_key)
    if key.alg is not alg:
        raise SignedKeyError("bad signature")  # C.verify: algorithms differ → False
    ok = (
        core.ed25519_verify(key.raw, signature, signed)
        if alg is Alg.ED25519
        else ed448_verify(key.raw, signature, signed)
    )
    if not ok:
        raise SignedKeyError("bad signature")
    if allowed is not None and public.alg not in allowed:
        raise SignedKeyError(f"signed {public.alg.value} key not allowed here")
    return public


def sign_session_key(x25519_public: PublicKey | bytes, signer: object) -> bytes:
    """Server hello / PKEY: the per-connection X25519 key (raw 32 bytes or PublicKey)."""
    pub = x25519_public if isinstance(x25519_public, PublicKey) else PublicKey(Alg.X25519, x25519_public)
    if pub.alg is not Alg.X25519:
        raise CryptoError("session key must be X25519")
    return sign_public_key(pub, signer)


def verify_session_key(data: bytes, verify_key: object) -> bytes:
    """Client side: the raw X25519 session key, or SignedKeyError."""
    return verify_signed_public_key(data, verify_key, DH_ALGS).raw


def _verify_key(obj: object) -> PublicKey:
    if hasattr(obj, "public_key") and hasattr(obj, "tbs_certificate_bytes"):  # x509.Certificate
        obj = obj.public_key()
    try:
        return as_public_key(obj, VERIFY_ALGS)
    except KeyFormatError as e:
        raise SignedKeyError(str(e)) from None
