"""The client's check of the server's certificate chain (reference: validateCertificateChain).

The server address carries a key hash: SHA-256 of the DER of the chain's second certificate
(the "identity" cert, normally the offline CA). A chain is accepted when it has 2-4
certificates, its identity cert has that hash, each certificate is signed by the next one,
issuers are CA certificates, and all are within their validity period. The last certificate is
the only trust anchor; there is no host name check.
"""

from __future__ import annotations

import datetime
import _ssl
import hashlib
import ssl
from collections.abc import Sequence

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from .errors import TLSIdentityError

MIN_CHAIN = 2
MAX_CHAIN = 4


def key_hash(cert_der: bytes) -> bytes:
    """The SMP server identity of a certificate: SHA-256 of its DER encoding (32 bytes)."""
    return hashlib.sha256(cert_der).digest()


def peer_chain_der(sslobj: ssl.SSLObject | ssl.SSLSocket) -> list[bytes]:
    """The certificates the peer sent, leaf first, as DER (no verification).

    Public API from Python 3.13; before that only the private ``_sslobj`` method exists.
    On the server side (no client certificate requested) this is [].
    """
    public = getattr(sslobj, "get_unverified_chain", None)
    if public is not None:
        chain = public()
    else:
        private = getattr(getattr(sslobj, "_sslobj", None), "get_unverified_chain", None)
        if private is None:
            raise TLSIdentityError("this Python cannot read the peer certificate chain")
        chain = private()
    if not chain:
        return []
    return [c if isinstance(c, bytes) else c.public_bytes(_ssl.ENCODING_DER) for c in chain if c is not None]


def _not_before(cert: x509.Certificate) -> datetime.datetime:
    value = getattr(cert, "not_valid_before_utc", None)
    return value if value is not None else cert.not_valid_before.replace(tzinfo=datetime.UTC)


def _not_after(cert: x509.Certificate) -> datetime.datetime:
    value = getattr(cert, "not_valid_after_utc", None)
    return value if value is not None else cert.not_valid_after.replace(tzinfo=datetime.UTC)


def _check_issuer(cert: x509.Certificate, position: int) -> None:
    try:
        bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        raise TLSIdentityError(f"certificate {position} issues certificates but is not a CA")
    if not bc.ca:
        raise TLSIdentityError(f"certificate {position} issues certificates but is not a CA")
    try:
        ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return
    if not ku.key_cert_sign:
        raise TLSIdentityError(f"certificate {position} may not sign certificates")


def verify_server_chain(
    chain_der: Sequence[bytes],
    expected_key_hash: bytes,
    *,
    now: datetime.datetime | None = None,
) -> None:
    """Accept the server's chain or raise TLSIdentityError (see the module docstring)."""
    n = len(chain_der)
    if not MIN_CHAIN <= n <= MAX_CHAIN:
        raise TLSIdentityError(f"server sent {n} certificate(s); expected 2 to 4")
    if key_hash(chain_der[1]) != expected_key_hash:
        raise TLSIdentityError("server identity certificate does not match the key hash")
    try:
        certs = [x509.load_der_x509_certificate(der) for der in chain_der]
    except ValueError as e:
        raise TLSIdentityError(f"malformed certificate: {e}") from None
    when = now or datetime.datetime.now(datetime.UTC)
    for i, cert in enumerate(certs):
        if not _not_before(cert) <= when <= _not_after(cert):
            raise TLSIdentityError(f"certificate {i} is outside its validity period")
    for i in range(n - 1):
        issuer = certs[i + 1]
        _check_issuer(issuer, i + 1)
        try:
            certs[i].verify_directly_issued_by(issuer)
        except (ValueError, TypeError, InvalidSignature) as e:
            raise TLSIdentityError(
                f"certificate {i} is not issued by certificate {i + 1}: {e!r}"
            ) from None
