"""Certificate chains of service clients: their shape and the reference's X.509 validation.

A TLS chain, leaf first, takes one of these shapes (the reference's ``chainIdCaCerts``):

| length | shape | leaf | identity (its SHA-256 names the service) | validation root |
|--------|-------|------|------------------------------------------|-----------------|
| 0      | EMPTY | -    | -                                        | -               |
| 1      | SELF  | [0]  | [0]                                      | [0]             |
| 2      | VALID | [0]  | [1]                                      | [1]             |
| 3      | VALID | [0]  | [1]                                      | [2]             |
| 4      | VALID | [0]  | [1]                                      | [3]             |
| 5+     | LONG  | -    | -                                        | -               |

``validate(root, chain)`` follows the x509-validation package the reference runs with its
default checks minus the host name (``x509validate``): the leaf must be an X.509 v3
certificate; from the leaf up, each certificate must be within its validity period and be
signed either by the root (found by the issuer's name; the root itself is not checked) or,
when it is self-issued, by itself (failure SelfSigned), or by a certificate of the chain
with its issuer's name, which must be a CA allowed to sign at that depth. The first
certificate with a problem ends the walk, as the non-exhaustive check does.
"""

from __future__ import annotations

import datetime
import enum
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa

from .keys import Alg, KeyFormatError, PublicKey, as_public_key


class ChainShape(enum.Enum):
    EMPTY = "empty"
    SELF = "self-signed"
    VALID = "valid"
    LONG = "too long"


@dataclass(frozen=True, slots=True)
class ChainRoles:
    """Which certificate (DER) plays which part; None where the shape has none."""

    shape: ChainShape
    leaf: bytes | None = None
    identity: bytes | None = None
    root: bytes | None = None


def chain_roles(chain: Sequence[bytes]) -> ChainRoles:
    """The reference's ``chainIdCaCerts`` (see the module docstring)."""
    n = len(chain)
    if n == 0:
        return ChainRoles(ChainShape.EMPTY)
    if n == 1:
        return ChainRoles(ChainShape.SELF, chain[0], chain[0], chain[0])
    if n <= 4:
        return ChainRoles(ChainShape.VALID, chain[0], chain[1], chain[-1])
    return ChainRoles(ChainShape.LONG)


def certificate_hash(cert_der: bytes) -> bytes:
    """SHA-256 of a certificate's DER: a service's certificate hash (of its identity
    certificate), as a server's key hash is of its CA certificate."""
    return hashlib.sha256(cert_der).digest()


# Failure names of x509-validation's FailedReason that this check can produce.
EXPIRED = "Expired"
IN_FUTURE = "InFuture"
UNKNOWN_CA = "UnknownCA"
SELF_SIGNED = "SelfSigned"
LEAF_NOT_V3 = "LeafNotV3"
NOT_AN_AUTHORITY = "NotAnAuthority"
NOT_ALLOWED_TO_SIGN = "NotAllowedToSign"
AUTHORITY_TOO_DEEP = "AuthorityTooDeep"
INVALID_SIGNATURE = "InvalidSignature"
MALFORMED = "Malformed"  # DER that does not parse (the reference fails earlier, in TLS)


def _utc(value: datetime.datetime) -> datetime.datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=datetime.UTC)


def _validity(cert: x509.Certificate) -> tuple[datetime.datetime, datetime.datetime]:
    before = getattr(cert, "not_valid_before_utc", None) or _utc(cert.not_valid_before)
    after = getattr(cert, "not_valid_after_utc", None) or _utc(cert.not_valid_after)
    return before, after


def _time_failures(cert: x509.Certificate, now: datetime.datetime) -> list[str]:
    before, after = _validity(cert)
    if now < before:
        return [IN_FUTURE]
    if now > after:
        return [EXPIRED]
    return []


def _signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> list[str]:
    """x509-validation's checkSignature: the signature only (names were matched before)."""
    key = issuer.public_key()
    data, sig = cert.tbs_certificate_bytes, cert.signature
    try:
        if isinstance(key, (ed25519.Ed25519PublicKey, ed448.Ed448PublicKey)):
            key.verify(sig, data)
        elif isinstance(key, rsa.RSAPublicKey):
            key.verify(sig, data, padding.PKCS1v15(), cert.signature_hash_algorithm)  # type: ignore[arg-type]
        elif isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(sig, data, ec.ECDSA(cert.signature_hash_algorithm))  # type: ignore[arg-type]
        else:
            return [INVALID_SIGNATURE]
    except (InvalidSignature, UnsupportedAlgorithm, TypeError, ValueError):
        return [INVALID_SIGNATURE]
    return []


def _ca_failures(issuer: x509.Certificate, level: int) -> list[str]:
    """x509-validation's checkCA for the issuer found at ``level`` (0 = the leaf's)."""
    try:
        ku = issuer.extensions.get_extension_for_class(x509.KeyUsage).value
        allowed_sign = ku.key_cert_sign
    except x509.ExtensionNotFound:
        allowed_sign = True
    try:
        bc = issuer.extensions.get_extension_for_class(x509.BasicConstraints).value
        allowed_ca, path_len = bc.ca, bc.path_length
    except x509.ExtensionNotFound:
        allowed_ca, path_len = False, None
    if not allowed_ca:
        path_len = None
    allowed_depth = path_len is None or path_len >= level
    out = []
    if not allowed_sign:
        out.append(NOT_ALLOWED_TO_SIGN)
    if not allowed_ca:
        out.append(NOT_AN_AUTHORITY)
    if not allowed_depth:
        out.append(AUTHORITY_TOO_DEEP)
    return out


def validate(root_der: bytes, chain_der: Sequence[bytes], now: datetime.datetime | None = None) -> list[str]:
    """The failures of ``chain_der`` (leaf first) against the one trusted ``root_der``;
    [] when the chain is valid. See the module docstring."""
    if not chain_der:
        raise ValueError("empty chain")
    try:
        root = x509.load_der_x509_certificate(bytes(root_der))
        chain = [x509.load_der_x509_certificate(bytes(c)) for c in chain_der]
    except ValueError:
        return [MALFORMED]
    when = now or datetime.datetime.now(datetime.UTC)
    leaf = chain[0]
    if leaf.version is not x509.Version.v3:
        return [LEAF_NOT_V3]
    root_subject = root.subject.public_bytes()
    current, rest, level = leaf, chain[1:], 0
    while True:
        failures = _time_failures(current, when)
        if failures:
            return failures
        issuer_name = current.issuer.public_bytes()
        if issuer_name == root_subject:
            return _signed_by(current, root)
        if current.subject.public_bytes() == issuer_name:  # self-issued, not the root
            return [SELF_SIGNED]
        found = next((i for i, c in enumerate(rest) if c.subject.public_bytes() == issuer_name), None)
        if found is None:
            return [UNKNOWN_CA]
        issuer = rest[found]
        failures = _ca_failures(issuer, level) or _signed_by(current, issuer)
        if failures:
            return failures
        current, rest, level = issuer, rest[:found] + rest[found + 1 :], level + 1


class Rejection(enum.Enum):
    """Why a client certificate is refused in the TLS handshake (hs-tls's
    CertificateRejectReason: each becomes its own TLS alert)."""

    EXPIRED = "expired"
    UNKNOWN_CA = "unknown CA"
    OTHER = "other"


def client_chain_rejection(chain_der: Sequence[bytes], now: datetime.datetime | None = None) -> tuple[Rejection, str] | None:
    """The reference's ``validateClientCertificate``: None to accept the client's TLS
    chain, else (reason, detail). An empty chain is accepted (clients that are no service
    send none); a single certificate is validated against itself, 2 to 4 against the last;
    longer chains are refused."""
    roles = chain_roles(chain_der)
    if roles.shape is ChainShape.EMPTY:
        return None
    if roles.shape is ChainShape.LONG:
        return Rejection.OTHER, "chain too long"
    assert roles.root is not None
    failures = validate(roles.root, chain_der, now)
    if not failures:
        return None
    if EXPIRED in failures or IN_FUTURE in failures:
        return Rejection.EXPIRED, ", ".join(failures)
    if UNKNOWN_CA in failures:
        return Rejection.UNKNOWN_CA, ", ".join(failures)
    return Rejection.OTHER, ", ".join(failures)


def leaf_verify_key(leaf_der: bytes) -> PublicKey:
    """The leaf certificate's Ed25519/Ed448 key (``getCertVerifyKey``); KeyFormatError for
    another key type."""
    try:
        cert = x509.load_der_x509_certificate(bytes(leaf_der))
    except ValueError as e:
        raise KeyFormatError(f"malformed certificate: {e}") from None
    return as_public_key(cert.public_key(), frozenset((Alg.ED25519, Alg.ED448)))


def leaf_may_sign(leaf_der: bytes) -> bool:
    """hs-tls's check of an accepted client chain (verifyLeafKeyUsage [digitalSignature]):
    a leaf with a key usage extension must allow digital signatures."""
    try:
        cert = x509.load_der_x509_certificate(bytes(leaf_der))
        ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return True
    except ValueError:
        return False
    return ku.digital_signature
