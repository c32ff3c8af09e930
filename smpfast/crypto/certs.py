"""X.509 credentials of an SMP server: offline CA, online server certificate, identity.

The server identity (the fingerprint in ``smp://<fingerprint>@host``) is SHA-256 over the DER
encoding of the CA certificate, so the online certificate can be replaced at any time without
changing the address, as long as it is signed by the same CA.

Pure functions over keys, certificates and bytes; reading and writing the files is done by
:mod:`smpfast.credentials`.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import enum
import hashlib

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed448, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from smpfast._core import CryptoError

PrivateKey = ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey

CA_COMMON_NAME = "SMP server CA"
CA_ORGANIZATION = "SimpleX"
# The reference asks openssl for 999999 days (until year ~4764).  X.509 GeneralizedTime cannot
# go past 9999-12-31, so the end date is clamped there should the validity ever exceed it.
VALIDITY_DAYS = 999999
_LATEST_NOT_AFTER = datetime.datetime(9999, 12, 31, 23, 59, 59, tzinfo=datetime.timezone.utc)

KEY_HASH_SIZE = 32


class CertError(CryptoError):
    """A key, certificate or fingerprint is malformed or does not fit the others."""


class SignAlgorithm(enum.Enum):
    ED25519 = "ED25519"
    ED448 = "ED448"

    @classmethod
    def parse(cls, name: str) -> SignAlgorithm:
        try:
            return cls(name.upper())
        except ValueError:
            raise CertError(f"unknown signature algorithm {name!r} (ED25519 or ED448)") from None


def generate_private_key(algorithm: SignAlgorithm = SignAlgorithm.ED25519) -> PrivateKey:
    if algorithm is SignAlgorithm.ED448:
        return ed448.Ed448PrivateKey.generate()
    return ed25519.Ed25519PrivateKey.generate()


def _validity(now: datetime.datetime | None) -> tuple[datetime.datetime, datetime.datetime]:
    start = (now or datetime.datetime.now(datetime.timezone.utc)).replace(microsecond=0)
    if start.tzinfo is None:
        start = start.replace(tzinfo=datetime.timezone.utc)
    try:
        end = start + datetime.timedelta(days=VALIDITY_DAYS)
    except OverflowError:
        end = _LATEST_NOT_AFTER
    return start, min(end, _LATEST_NOT_AFTER)


def make_ca_certificate(
    ca_key: PrivateKey, *, now: datetime.datetime | None = None
) -> x509.Certificate:
    """Self-signed CA: CN "SMP server CA", O "SimpleX", critical CA:true, SKI and AKI."""
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, CA_COMMON_NAME),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, CA_ORGANIZATION),
        ]
    )
    start, end = _validity(now)
    public = ca_key.public_key()
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
    )
    return builder.sign(ca_key, None)


def make_server_certificate(
    server_key: PrivateKey,
    common_name: str,
    ca_key: PrivateKey,
    ca_cert: x509.Certificate,
    *,
    now: datetime.datetime | None = None,
) -> x509.Certificate:
    """Online TLS certificate for ``common_name`` (FQDN or IP), signed by the CA."""
    if not common_name:
        raise CertError("server certificate needs a common name")
    if ca_key.public_key().public_bytes_raw() != _raw_public(ca_cert):
        raise CertError("CA private key does not match the CA certificate")
    start, end = _validity(now)
    public = server_key.public_key()
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca_cert.subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=False)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=True,  # nonRepudiation
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=True,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
    )
    return builder.sign(ca_key, None)


def _raw_public(cert: x509.Certificate) -> bytes:
    public = cert.public_key()
    if not isinstance(public, (ed25519.Ed25519PublicKey, ed448.Ed448PublicKey)):
        raise CertError("certificate key is not Ed25519 or Ed448")
    return public.public_bytes_raw()


# --- identity ---------------------------------------------------------------------------------


def key_hash(ca_cert: x509.Certificate) -> bytes:
    """Server identity (KeyHash): SHA-256 of the CA certificate's DER encoding."""
    return hashlib.sha256(ca_cert.public_bytes(serialization.Encoding.DER)).digest()


def encode_fingerprint(key_hash_bytes: bytes) -> str:
    """base64url with padding, as in the server address and the `fingerprint` file."""
    return base64.urlsafe_b64encode(key_hash_bytes).decode("ascii")


def decode_fingerprint(text: str) -> bytes:
    try:
        raw = base64.urlsafe_b64decode(text.encode("ascii"))
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise CertError(f"fingerprint {text!r} is not base64url") from None
    if len(raw) != KEY_HASH_SIZE or encode_fingerprint(raw) != text:
        raise CertError(f"fingerprint {text!r} is not a base64url SHA-256 hash")
    return raw


# --- PEM --------------------------------------------------------------------------------------


def private_key_pem(key: PrivateKey) -> bytes:
    """Unencrypted PKCS#8 PEM, the format `openssl genpkey` writes."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def certificate_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def certificate_der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def load_private_key_pem(data: bytes) -> PrivateKey:
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as e:
        raise CertError(f"cannot read private key: {e}") from None
    if not isinstance(key, (ed25519.Ed25519PrivateKey, ed448.Ed448PrivateKey)):
        raise CertError("private key is not Ed25519 or Ed448")
    return key


def load_certificates_pem(data: bytes) -> list[x509.Certificate]:
    """All certificates in a PEM file, in file order (at least one)."""
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError as e:
        raise CertError(f"cannot read certificate: {e}") from None
    if not certs:
        raise CertError("no certificate found")
    return certs


# --- inspection -------------------------------------------------------------------------------


def sign_algorithm_of(cert: x509.Certificate) -> SignAlgorithm:
    public = cert.public_key()
    if isinstance(public, ed448.Ed448PublicKey):
        return SignAlgorithm.ED448
    if isinstance(public, ed25519.Ed25519PublicKey):
        return SignAlgorithm.ED25519
    raise CertError("certificate key is not Ed25519 or Ed448")


def common_name_of(cert: x509.Certificate) -> str:
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not names:
        raise CertError("certificate subject has no CN")
    value = names[0].value
    return value if isinstance(value, str) else value.decode("utf-8", "replace")


def check_issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> None:
    """Raise CertError unless ``cert`` carries a valid signature by ``issuer``."""
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature) as e:
        raise CertError(f"certificate is not signed by the CA: {e or 'bad signature'}") from None


def check_key_matches(key: PrivateKey, cert: x509.Certificate) -> None:
    if key.public_key().public_bytes_raw() != _raw_public(cert):
        raise CertError("private key does not match the certificate")
