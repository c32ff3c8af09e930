"""SSL contexts with the reference's TLS profile (defaultSupportedParams in its Transport.hs).

Both sides: TLS 1.3 with TLS_CHACHA20_POLY1305_SHA256 only, or TLS 1.2 with
ECDHE-ECDSA-CHACHA20-POLY1305 only; key exchange X25519/X448; Ed25519/Ed448 signatures; no
renegotiation, no session tickets (a resumed session would change the tls-unique value).
The server sends the chain [server cert, CA cert]. The client checks the server itself (no CA
store, no SNI, no hostname): see identity.verify_server_chain.
"""

from __future__ import annotations

import base64
import functools
import logging
import os
import ssl
import tempfile
from collections.abc import Sequence

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ..crypto import chains
from ..crypto.keys import as_private_key
from . import _openssl

log = logging.getLogger("smpfast.transport")

SMP_ALPN = "smp/1"
HTTP11_ALPN = "http/1.1"
#: What the reference server offers; it picks the first of THIS list the client offered.
SERVER_ALPN: tuple[str, ...] = (SMP_ALPN, "h2", HTTP11_ALPN)
#: What the reference client offers (operator "preset" servers get ("http/1.1",) instead).
CLIENT_ALPN: tuple[str, ...] = (SMP_ALPN,)

TLS13_CIPHERSUITES = "TLS_CHACHA20_POLY1305_SHA256"
TLS12_CIPHERS = "ECDHE-ECDSA-CHACHA20-POLY1305"
# X448 too: the reference's client sends its key share for X448 first, so a server without
# X448 would cost every connection a HelloRetryRequest round trip.
GROUPS = ("X25519:X448", "X25519")
SIGALGS = "ed25519:ed448"


def _apply_profile(ctx: ssl.SSLContext) -> bool:
    """Settings common to both sides. True when the native lists (suites, groups) applied."""
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.maximum_version = ssl.TLSVersion.TLSv1_3
    ctx.set_ciphers(TLS12_CIPHERS)  # TLS 1.2 list only; TLS 1.3 suites are separate in OpenSSL
    ctx.options |= ssl.OP_NO_TICKET | ssl.OP_NO_RENEGOTIATION | ssl.OP_NO_COMPRESSION
    errors = []
    for groups in GROUPS:
        try:
            _openssl.set_tls_lists(
                ctx, ciphersuites=TLS13_CIPHERSUITES, groups=groups, sigalgs=SIGALGS
            )
            return True
        except OSError as e:
            errors.append(str(e))
    log.warning(
        "cannot restrict TLS 1.3 suites/groups/signature algorithms (%s); "
        "using OpenSSL defaults with X25519 only",
        "; ".join(errors),
    )
    ctx.set_ecdh_curve("X25519")
    return False


def server_context(
    certfile: str | os.PathLike[str],
    keyfile: str | os.PathLike[str],
    cafile: str | os.PathLike[str] | None = None,
    *,
    alpn: Sequence[str] | None = SERVER_ALPN,
    request_client_certs: bool = False,
) -> ssl.SSLContext:
    """Server context. ``certfile`` holds the server cert, followed by the CA cert unless
    ``cafile`` is given (the reference's server.crt + ca.crt layout): the chain sent is
    [server cert, CA cert]. With ``request_client_certs`` (the reference's
    ``accept_service_credentials``) clients are asked for a certificate, as services
    answer; see ``client_certificate_verdict`` for which chains are accepted."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    _apply_profile(ctx)
    ctx.num_tickets = 0
    ctx.verify_mode = ssl.CERT_NONE
    if cafile is None:
        ctx.load_cert_chain(certfile, keyfile)
    else:
        # load_cert_chain takes only files: join leaf + CA into a private temporary PEM.
        with open(certfile, "rb") as f:
            leaf = f.read()
        with open(cafile, "rb") as f:
            ca = f.read()
        with tempfile.NamedTemporaryFile("wb", suffix=".pem") as tmp:
            tmp.write(leaf.rstrip(b"\n") + b"\n" + ca)
            tmp.flush()
            ctx.load_cert_chain(tmp.name, keyfile)
    if alpn:
        ctx.set_alpn_protocols(list(alpn))
    if request_client_certs:
        try:
            _openssl.request_client_certificates(ctx, client_certificate_verdict, _log_judge_error)
        except OSError as e:
            # Without the callback OpenSSL could only check chains against a CA store: ask
            # for nothing rather than refuse the services' own chains.
            ctx.verify_mode = ssl.CERT_NONE
            log.warning("cannot ask clients for certificates (%s); service clients are served "
                        "as ordinary ones", e)
    return ctx


def client_certificate_verdict(chain_der: Sequence[bytes]) -> int | None:
    """None to accept a client's TLS chain (leaf first), else the X509_V_ERR code of the alert
    to refuse it with: the reference's validateClientCertificate (crypto.chains), then its
    TLS library's check that a leaf with a key usage extension may sign."""
    rejection = chains.client_chain_rejection(chain_der)
    if rejection is not None:
        reason, detail = rejection
        log.debug("client certificate refused: %s (%s)", reason.value, detail)
        return _REJECTION_CODES[reason]
    if chain_der and not chains.leaf_may_sign(chain_der[0]):
        return _openssl.X509_V_ERR_INVALID_PURPOSE
    return None


_REJECTION_CODES = {
    chains.Rejection.EXPIRED: _openssl.X509_V_ERR_CERT_HAS_EXPIRED,
    chains.Rejection.UNKNOWN_CA: _openssl.X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY,
    chains.Rejection.OTHER: _openssl.X509_V_ERR_SUBJECT_ISSUER_MISMATCH,
}


def _log_judge_error(e: Exception) -> None:
    log.error("checking a client certificate failed: %r", e)


def _new_client_context(alpn: Sequence[str] | None) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    _apply_profile(ctx)
    # The server is authenticated by its key hash, not by a CA store or a host name.
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if alpn:
        ctx.set_alpn_protocols(list(alpn))
    return ctx


@functools.lru_cache(maxsize=8)
def _cached_client_context(alpn: tuple[str, ...] | None) -> ssl.SSLContext:
    return _new_client_context(alpn)


def client_context(alpn: Sequence[str] | None = CLIENT_ALPN) -> ssl.SSLContext:
    """Client context (shared per ALPN list; do not mutate it). ``alpn=None`` offers no ALPN,
    which makes a reference server fall back to the legacy version range 6..6."""
    return _cached_client_context(tuple(alpn) if alpn else None)


class ClientCertificateContext:
    """A client context that presents a certificate chain when the server asks for one,
    for one connection (service clients), with ``requested``: whether the server asked.

    ``chain_der``: DER certificates, leaf first; ``private_key``: the leaf's Ed25519/Ed448
    key (ours, PyNaCl's, ``cryptography``'s or PKCS#8 DER)."""

    def __init__(
        self,
        chain_der: Sequence[bytes],
        private_key: object,
        alpn: Sequence[str] | None = CLIENT_ALPN,
    ) -> None:
        ctx = _new_client_context(alpn)
        pem = b"".join(
            x509.load_der_x509_certificate(bytes(c)).public_bytes(serialization.Encoding.PEM)
            for c in chain_der
        )
        key_pem = _pem(as_private_key(private_key).der, "PRIVATE KEY")
        # load_cert_chain takes only files: a private temporary directory, removed at once.
        with tempfile.TemporaryDirectory() as d:
            chain_path, key_path = os.path.join(d, "chain.pem"), os.path.join(d, "key.pem")
            with open(os.open(chain_path, os.O_WRONLY | os.O_CREAT, 0o600), "wb") as f:
                f.write(pem)
            with open(os.open(key_path, os.O_WRONLY | os.O_CREAT, 0o600), "wb") as f:
                f.write(key_pem)
            ctx.load_cert_chain(chain_path, key_path)
        self.context = ctx
        self.requested = False
        _openssl.on_certificate_request(ctx, self._requested)

    def _requested(self) -> None:
        self.requested = True


def _pem(der: bytes, label: str) -> bytes:
    body = base64.encodebytes(der).decode("ascii")  # 76-column lines
    return f"-----BEGIN {label}-----\n{body}-----END {label}-----\n".encode("ascii")


def native_profile_available() -> bool:
    """True when the TLS 1.3 suite/group/sigalg restriction works in this Python."""
    try:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        _openssl.set_tls_lists(
            ctx, ciphersuites=TLS13_CIPHERSUITES, groups=GROUPS[-1], sigalgs=SIGALGS
        )
        return True
    except OSError:
        return False
