"""Public and private keys of SMP: RFC 8410 SPKI / PKCS#8 DER, typed per algorithm.

The wire carries public keys as ``shortString(SPKI DER)``; parameters of
the AlgorithmIdentifier are absent. Decoding parses the DER (one SubjectPublicKeyInfo, no
trailing bytes, a known OID, the right raw length) and raises ``KeyFormatError`` — and only
that — on anything else. Like the reference, points are not validated at decode time: a
bad point simply never verifies.
"""

from __future__ import annotations

import enum
import os

import nacl.bindings as nb
from cryptography.hazmat.primitives import serialization as _ser
from cryptography.hazmat.primitives.asymmetric import ed448

import smpfast._core as core
from smpfast._core import CryptoError

from . import der


class KeyFormatError(CryptoError):
    """A key that is not a well-formed SPKI/PKCS#8 DER of an allowed algorithm."""


class Alg(str, enum.Enum):
    """Key algorithms of SMP, with their OID body (1.3.101.x) and raw key length."""

    ED25519 = "ed25519"
    X25519 = "x25519"
    ED448 = "ed448"
    X448 = "x448"

    @property
    def oid(self) -> bytes:
        return _OIDS[self]

    @property
    def raw_len(self) -> int:
        return _RAW_LEN[self]


_OIDS = {Alg.X25519: b"\x2b\x65\x6e", Alg.X448: b"\x2b\x65\x6f", Alg.ED25519: b"\x2b\x65\x70", Alg.ED448: b"\x2b\x65\x71"}
_ALG_BY_OID = {v: k for k, v in _OIDS.items()}
_RAW_LEN = {Alg.ED25519: 32, Alg.X25519: 32, Alg.ED448: 57, Alg.X448: 56}
_PRIV_LEN = {Alg.ED25519: 32, Alg.X25519: 32, Alg.ED448: 57, Alg.X448: 56}

AUTH_ALGS = frozenset((Alg.ED25519, Alg.ED448, Alg.X25519))  # APublicAuthKey
VERIFY_ALGS = frozenset((Alg.ED25519, Alg.ED448))  # APublicVerifyKey
DH_ALGS = frozenset((Alg.X25519,))  # PublicKeyX25519
SIGN_ALGS = VERIFY_ALGS


def _alg_id(alg: Alg) -> bytes:
    return der.tlv(der.SEQUENCE, der.tlv(der.OID, alg.oid))


# SEQUENCE { SEQUENCE { OID } BIT STRING { 00 raw } } has a fixed prefix per algorithm.
_SPKI_PREFIX = {
    alg: bytes((der.SEQUENCE, 7 + 3 + alg.raw_len)) + _alg_id(alg) + bytes((der.BIT_STRING, alg.raw_len + 1, 0))
    for alg in Alg
}
_PREFIX_BY_LEN = {len(p) + a.raw_len: {} for a, p in _SPKI_PREFIX.items()}
for _a, _p in _SPKI_PREFIX.items():
    _PREFIX_BY_LEN[len(_p) + _a.raw_len][_p] = _a


def spki_prefix(alg: Alg) -> bytes:
    return _SPKI_PREFIX[alg]


class PublicKey:
    """A public key: its algorithm and raw bytes; ``.der`` is the SPKI sent on the wire."""

    __slots__ = ("alg", "raw")

    def __init__(self, alg: Alg, raw: bytes) -> None:
        raw = bytes(raw)
        if len(raw) != alg.raw_len:
            raise KeyFormatError(f"{alg.value} public key must be {alg.raw_len} bytes")
        self.alg = alg
        self.raw = raw

    @property
    def der(self) -> bytes:
        return _SPKI_PREFIX[self.alg] + self.raw

    @classmethod
    def from_der(cls, data: bytes) -> PublicKey:
        return decode_public_key(data)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PublicKey) and self.alg is other.alg and self.raw == other.raw

    def __hash__(self) -> int:
        return hash((self.alg, self.raw))

    def __repr__(self) -> str:
        return f"PublicKey({self.alg.value}, {self.raw.hex()})"


def encode_public_key(alg: Alg, raw: bytes) -> bytes:
    """SPKI DER of a raw public key."""
    return PublicKey(alg, raw).der


def decode_public_key(data: bytes, allowed: frozenset[Alg] | None = None) -> PublicKey:
    """Parse one SPKI DER (no trailing bytes). ``allowed`` restricts the algorithm."""
    try:
        data = bytes(data)
    except TypeError:
        raise KeyFormatError("key DER must be bytes") from None
    # Fast path: the canonical encodings are a fixed prefix and the raw key; the generic
    # parse below yields the same result for them.
    by_prefix = _PREFIX_BY_LEN.get(len(data))
    alg = None
    if by_prefix is not None:
        for prefix, a in by_prefix.items():
            if data.startswith(prefix):
                alg, raw = a, data[len(prefix) :]
                break
    if alg is None:
        alg, raw = _parse_spki(data)
    if allowed is not None and alg not in allowed:
        raise KeyFormatError(f"{alg.value} key not allowed here")
    return PublicKey(alg, raw)


def _parse_spki(data: bytes) -> tuple[Alg, bytes]:
    try:
        vs, ve = der.expect_one(data, der.SEQUENCE)
        parts = der.children(data, vs, ve)
        if len(parts) != 2 or parts[0][0] != der.SEQUENCE or parts[1][0] != der.BIT_STRING:
            raise KeyFormatError("SPKI must be SEQUENCE { AlgorithmIdentifier, BIT STRING }")
        alg = _parse_alg_id(data, parts[0][2], parts[0][3])
        raw = der.bit_string_bytes(data, parts[1][2], parts[1][3])
    except der.DerError as e:
        raise KeyFormatError(str(e)) from None
    if len(raw) != alg.raw_len:
        raise KeyFormatError(f"{alg.value} public key must be {alg.raw_len} bytes")
    return alg, raw


def _parse_alg_id(data: bytes, vs: int, ve: int) -> Alg:
    """AlgorithmIdentifier of RFC 8410: the OID alone, parameters absent."""
    parts = der.children(data, vs, ve)
    if len(parts) != 1 or parts[0][0] != der.OID:
        raise KeyFormatError("AlgorithmIdentifier must hold only an OID")
    alg = _ALG_BY_OID.get(bytes(data[parts[0][2] : parts[0][3]]))
    if alg is None:
        raise KeyFormatError("unknown key algorithm OID")
    return alg


def parse_alg_id(data: bytes) -> Alg:
    """Parse a complete AlgorithmIdentifier DER (used by signed objects)."""
    try:
        vs, ve = der.expect_one(data, der.SEQUENCE)
        return _parse_alg_id(data, vs, ve)
    except der.DerError as e:
        raise KeyFormatError(str(e)) from None


def decode_auth_key(data: bytes) -> PublicKey:
    """Queue authorization key (NEW/KEY/SKEY/LKEY/NKEY/RKEY): Ed25519, Ed448 or X25519."""
    return decode_public_key(data, AUTH_ALGS)


def decode_verify_key(data: bytes) -> PublicKey:
    """Signature verification key: Ed25519 or Ed448."""
    return decode_public_key(data, VERIFY_ALGS)


def decode_dh_key(data: bytes) -> PublicKey:
    """DH key (rcvDhKey, handshake clientKey, ...): X25519 only."""
    return decode_public_key(data, DH_ALGS)


def x25519_raw(data: bytes) -> bytes:
    """The raw 32 bytes of an X25519 SPKI DER."""
    return decode_public_key(data, DH_ALGS).raw


# ---------------------------------------------------------------- private keys


class PrivateKey:
    """A private key: algorithm and raw bytes (Ed25519 seed, X25519 scalar, Ed448 57 bytes).

    ``public`` is derived once. ``sign`` works for Ed25519 (libsodium) and Ed448
    (``cryptography``)."""

    __slots__ = ("alg", "raw", "public", "_signer")

    def __init__(self, alg: Alg, raw: bytes) -> None:
        raw = bytes(raw)
        if alg is Alg.X448:
            raise KeyFormatError("X448 private keys are not used by SMP")
        if len(raw) != _PRIV_LEN[alg]:
            raise KeyFormatError(f"{alg.value} private key must be {_PRIV_LEN[alg]} bytes")
        self.alg = alg
        self.raw = raw
        if alg is Alg.ED25519:
            pk, sk = nb.crypto_sign_seed_keypair(raw)
            self._signer = sk
            pub = pk
        elif alg is Alg.X25519:
            self._signer = None
            pub = nb.crypto_scalarmult_base(raw)
        else:
            self._signer = ed448.Ed448PrivateKey.from_private_bytes(raw)
            pub = self._signer.public_key().public_bytes(_ser.Encoding.Raw, _ser.PublicFormat.Raw)
        self.public = PublicKey(alg, pub)

    def sign(self, message: bytes) -> bytes:
        if self.alg is Alg.ED25519:
            return nb.crypto_sign(bytes(message), self._signer)[:64]
        if self.alg is Alg.ED448:
            return self._signer.sign(bytes(message))
        raise CryptoError(f"{self.alg.value} keys do not sign")

    @property
    def der(self) -> bytes:
        """PKCS#8 DER (RFC 8410 OneAsymmetricKey v1, no attributes)."""
        inner = der.tlv(der.OCTET_STRING, self.raw)
        body = der.tlv(der.INTEGER, b"\x00") + _alg_id(self.alg) + der.tlv(der.OCTET_STRING, inner)
        return der.tlv(der.SEQUENCE, body)

    @classmethod
    def from_der(cls, data: bytes) -> PrivateKey:
        return decode_private_key(data)

    @classmethod
    def generate(cls, alg: Alg) -> PrivateKey:
        return generate_private_key(alg)

    def __repr__(self) -> str:
        return f"PrivateKey({self.alg.value}, public={self.public.raw.hex()})"


def generate_private_key(alg: Alg) -> PrivateKey:
    """A fresh key pair (``.public`` holds the public half)."""
    if alg is Alg.ED448:
        raw = ed448.Ed448PrivateKey.generate().private_bytes(
            _ser.Encoding.Raw, _ser.PrivateFormat.Raw, _ser.NoEncryption()
        )
        return PrivateKey(alg, raw)
    if alg in (Alg.ED25519, Alg.X25519):
        return PrivateKey(alg, os.urandom(32))
    raise KeyFormatError(f"cannot generate {alg.value} keys")


def decode_private_key(data: bytes, allowed: frozenset[Alg] | None = None) -> PrivateKey:
    """Parse PKCS#8 DER: SEQUENCE { INTEGER 0, AlgorithmIdentifier, OCTET STRING { OCTET STRING raw } }."""
    try:
        data = bytes(data)
        vs, ve = der.expect_one(data, der.SEQUENCE)
        parts = der.children(data, vs, ve)
        if len(parts) != 3 or [p[0] for p in parts] != [der.INTEGER, der.SEQUENCE, der.OCTET_STRING]:
            raise KeyFormatError("PKCS#8 must be SEQUENCE { INTEGER, AlgorithmIdentifier, OCTET STRING }")
        if data[parts[0][2] : parts[0][3]] != b"\x00":
            raise KeyFormatError("PKCS#8 version must be 0")
        alg = _parse_alg_id(data, parts[1][2], parts[1][3])
        octets = data[parts[2][2] : parts[2][3]]
        ivs, ive = der.expect_one(octets, der.OCTET_STRING)
        raw = octets[ivs:ive]
    except der.DerError as e:
        raise KeyFormatError(str(e)) from None
    except TypeError:
        raise KeyFormatError("key DER must be bytes") from None
    if allowed is not None and alg not in allowed:
        raise KeyFormatError(f"{alg.value} key not allowed here")
    return PrivateKey(alg, raw)


def x25519_dh(private: bytes, public: bytes) -> bytes:
    """Raw X25519 like the reference (crypton ``dh``): a low-order public key yields the
    all-zero secret instead of the error libsodium raises. Wrong sizes still raise."""
    try:
        return core.x25519(private, public)
    except CryptoError:
        if len(private) != 32 or len(public) != 32:
            raise
        return bytes(32)  # libsodium refuses only an all-zero result


def dh_box_key(public: bytes, private: bytes) -> bytes:
    """``box_beforenm`` with the same leniency: ``HSalsa20(x25519_dh(...), 0^16)``."""
    try:
        return core.box_beforenm(public, private)
    except CryptoError:
        return core.hsalsa20_key(x25519_dh(private, public))


def ed448_verify(public: bytes, signature: bytes, message: bytes) -> bool:
    """Ed448 is absent from libsodium: verify it with ``cryptography``."""
    if len(public) != 57 or len(signature) != 114:
        return False
    try:
        ed448.Ed448PublicKey.from_public_bytes(bytes(public)).verify(bytes(signature), bytes(message))
        return True
    except Exception:  # InvalidSignature, or a public key OpenSSL rejects
        return False


def as_private_key(key: object) -> PrivateKey:
    """Accept our PrivateKey, a PyNaCl ``SigningKey``/``PrivateKey``, a ``cryptography``
    Ed25519/Ed448/X25519 private key, or PKCS#8 DER bytes."""
    if isinstance(key, PrivateKey):
        return key
    if isinstance(key, (bytes, bytearray, memoryview)):
        return decode_private_key(key)
    import nacl.public
    import nacl.signing
    from cryptography.hazmat.primitives.asymmetric import ed25519, x25519

    if isinstance(key, nacl.signing.SigningKey):
        return PrivateKey(Alg.ED25519, bytes(key))
    if isinstance(key, nacl.public.PrivateKey):
        return PrivateKey(Alg.X25519, bytes(key))
    for cls, alg in (
        (ed25519.Ed25519PrivateKey, Alg.ED25519),
        (ed448.Ed448PrivateKey, Alg.ED448),
        (x25519.X25519PrivateKey, Alg.X25519),
    ):
        if isinstance(key, cls):
            raw = key.private_bytes(_ser.Encoding.Raw, _ser.PrivateFormat.Raw, _ser.NoEncryption())
            return PrivateKey(alg, raw)
    raise KeyFormatError(f"unsupported private key object {type(key).__name__}")


def as_public_key(key: object, allowed: frozenset[Alg] | None = None) -> PublicKey:
    """Accept our PublicKey, SPKI DER bytes, a PyNaCl ``VerifyKey``/``PublicKey`` or a
    ``cryptography`` public key object; ``allowed`` restricts the algorithm."""
    if isinstance(key, PublicKey):
        pub = key
    elif isinstance(key, (bytes, bytearray, memoryview)):
        pub = decode_public_key(key)
    else:
        import nacl.public
        import nacl.signing

        if isinstance(key, nacl.signing.VerifyKey):
            pub = PublicKey(Alg.ED25519, bytes(key))
        elif isinstance(key, nacl.public.PublicKey):
            pub = PublicKey(Alg.X25519, bytes(key))
        elif hasattr(key, "public_bytes"):
            try:
                pub = decode_public_key(
                    key.public_bytes(_ser.Encoding.DER, _ser.PublicFormat.SubjectPublicKeyInfo)
                )
            except ValueError as e:
                raise KeyFormatError(str(e)) from None
        else:
            raise KeyFormatError(f"unsupported public key object {type(key).__name__}")
    if allowed is not None and pub.alg not in allowed:
        raise KeyFormatError(f"{pub.alg.value} key not allowed here")
    return pub
