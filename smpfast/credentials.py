"""Server credential files in the config directory: create, renew, load.

Files (same names as the reference server): ``ca.key``, ``ca.crt`` (offline CA, the identity),
``server.key``, ``server.crt`` (online TLS certificate), ``fingerprint`` (base64url of the
identity + newline).  Private keys are PKCS#8 PEM with mode 0600.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from smpfast.crypto.certs import (
    CertError,
    PrivateKey,
    SignAlgorithm,
    certificate_der,
    certificate_pem,
    check_issued_by,
    check_key_matches,
    common_name_of,
    encode_fingerprint,
    generate_private_key,
    key_hash,
    load_certificates_pem,
    load_private_key_pem,
    make_ca_certificate,
    make_server_certificate,
    private_key_pem,
    sign_algorithm_of,
)

CA_KEY_FILE = "ca.key"
CA_CERT_FILE = "ca.crt"
SERVER_KEY_FILE = "server.key"
SERVER_CERT_FILE = "server.crt"
FINGERPRINT_FILE = "fingerprint"


class CredentialsError(Exception):
    """Credential files are missing, unreadable or inconsistent."""


@dataclass(frozen=True)
class CredentialPaths:
    ca_key: Path
    ca_cert: Path
    server_key: Path
    server_cert: Path
    fingerprint: Path

    @classmethod
    def in_dir(cls, directory: str | os.PathLike[str]) -> CredentialPaths:
        d = Path(directory)
        return cls(
            ca_key=d / CA_KEY_FILE,
            ca_cert=d / CA_CERT_FILE,
            server_key=d / SERVER_KEY_FILE,
            server_cert=d / SERVER_CERT_FILE,
            fingerprint=d / FINGERPRINT_FILE,
        )

    def all(self) -> tuple[Path, ...]:
        return (self.ca_key, self.ca_cert, self.server_key, self.server_cert, self.fingerprint)


@dataclass(frozen=True)
class ServerCredentials:
    """What the TLS listener needs: the chain [server cert, CA cert] and the server key."""

    chain_der: tuple[bytes, ...]  # leaf first, as sent in the TLS Certificate message
    private_key: PrivateKey
    key_hash: bytes  # 32 bytes, SHA-256 of the CA certificate DER

    @property
    def fingerprint(self) -> str:
        return encode_fingerprint(self.key_hash)

    def chain_pem(self) -> bytes:
        """Leaf-first PEM chain, e.g. for ``ssl.SSLContext.load_cert_chain``."""
        from cryptography import x509

        return b"".join(certificate_pem(x509.load_der_x509_certificate(d)) for d in self.chain_der)

    def private_key_pem(self) -> bytes:
        return private_key_pem(self.private_key)


# --- writing ----------------------------------------------------------------------------------


def _write_file(path: Path, data: bytes, mode: int) -> None:
    """Write via a temporary file and rename, with ``mode`` set regardless of the umask."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            fd = -1
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    finally:
        if fd != -1:
            os.close(fd)
    os.replace(tmp, path)


def _write_key(path: Path, key: PrivateKey) -> None:
    _write_file(path, private_key_pem(key), 0o600)


def write_fingerprint(path: Path, key_hash_bytes: bytes) -> None:
    _write_file(path, encode_fingerprint(key_hash_bytes).encode("ascii") + b"\n", 0o644)


def create_credentials(
    directory: str | os.PathLike[str],
    common_name: str,
    algorithm: SignAlgorithm = SignAlgorithm.ED25519,
) -> bytes:
    """Create CA and server credentials in ``directory``; return the identity (key hash).

    Refuses to overwrite: an existing credential file means a server identity already exists.
    """
    paths = CredentialPaths.in_dir(directory)
    existing = [p.name for p in paths.all() if p.exists()]
    if existing:
        raise CredentialsError(f"credential files already exist in {directory}: {', '.join(existing)}")
    Path(directory).mkdir(parents=True, exist_ok=True)
    ca_key = generate_private_key(algorithm)
    ca_cert = make_ca_certificate(ca_key)
    server_key = generate_private_key(algorithm)
    server_cert = make_server_certificate(server_key, common_name, ca_key, ca_cert)
    _write_key(paths.ca_key, ca_key)
    _write_file(paths.ca_cert, certificate_pem(ca_cert), 0o644)
    _write_key(paths.server_key, server_key)
    _write_file(paths.server_cert, certificate_pem(server_cert), 0o644)
    identity = key_hash(ca_cert)
    write_fingerprint(paths.fingerprint, identity)
    return identity


def renew_server_certificate(
    directory: str | os.PathLike[str],
    common_name: str | None = None,
    algorithm: SignAlgorithm | None = None,
) -> tuple[str, SignAlgorithm]:
    """New online key and certificate signed by the existing CA (needs ``ca.key`` present).

    Common name and algorithm default to those of the current server certificate.  The identity
    does not change.  Returns the (common name, algorithm) used.
    """
    paths = CredentialPaths.in_dir(directory)
    if not paths.ca_key.exists():
        raise CredentialsError(
            f"{paths.ca_key} not found: the CA private key is needed to sign a new server "
            "certificate (copy it back from offline storage)"
        )
    try:
        ca_key = load_private_key_pem(paths.ca_key.read_bytes())
        ca_cert = load_certificates_pem(_read(paths.ca_cert))[0]
        check_key_matches(ca_key, ca_cert)
        if common_name is None or algorithm is None:
            old = load_certificates_pem(_read(paths.server_cert))
            if len(old) != 1:
                raise CredentialsError(f"expected one certificate in {paths.server_cert}, found {len(old)}")
            common_name = common_name or common_name_of(old[0])
            algorithm = algorithm or sign_algorithm_of(old[0])
        server_key = generate_private_key(algorithm)
        server_cert = make_server_certificate(server_key, common_name, ca_key, ca_cert)
    except CertError as e:
        raise CredentialsError(str(e)) from None
    _write_key(paths.server_key, server_key)
    _write_file(paths.server_cert, certificate_pem(server_cert), 0o644)
    return common_name, algorithm


# --- reading ----------------------------------------------------------------------------------


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise CredentialsError(f"{path} not found") from None
    except OSError as e:
        raise CredentialsError(f"cannot read {path}: {e.strerror}") from None


def read_fingerprint_file(path: Path) -> str:
    """The first line of the fingerprint file, without its line ending."""
    lines = _read(path).decode("ascii", "replace").splitlines()
    return lines[0] if lines else ""


def load_identity(directory: str | os.PathLike[str]) -> bytes:
    """The identity from ``ca.crt``, checked against the ``fingerprint`` file.

    Like the reference, a fingerprint file that does not match the CA stops the server: it
    means ``ca.crt`` was replaced and every existing address would stop working.
    """
    paths = CredentialPaths.in_dir(directory)
    try:
        ca_cert = load_certificates_pem(_read(paths.ca_cert))[0]
    except CertError as e:
        raise CredentialsError(
            f"{paths.ca_cert}: {e}; restore it from a backup (it is the server's identity: "
            "a new one changes the address)"
        ) from None
    identity = key_hash(ca_cert)
    saved = read_fingerprint_file(paths.fingerprint)
    if saved != encode_fingerprint(identity):
        raise CredentialsError(
            f"stored fingerprint in {paths.fingerprint} ({saved!r}) does not match "
            f"{paths.ca_cert} ({encode_fingerprint(identity)})"
        )
    return identity


def load_server_credentials(directory: str | os.PathLike[str]) -> ServerCredentials:
    """Load the TLS chain and key; check fingerprint, CA signature and key/cert match."""
    paths = CredentialPaths.in_dir(directory)
    identity = load_identity(directory)
    fix = "restore it from a backup, or make a new server key and certificate with `smpfast cert` (needs ca.key)"
    current = paths.server_cert
    try:
        server_certs = load_certificates_pem(_read(paths.server_cert))
        current = paths.ca_cert
        ca_certs = load_certificates_pem(_read(paths.ca_cert))
        current = paths.server_key
        server_key = load_private_key_pem(_read(paths.server_key))
        check_key_matches(server_key, server_certs[0])
        current = paths.server_cert
        check_issued_by(server_certs[-1], ca_certs[0])
    except CertError as e:
        raise CredentialsError(f"{current}: {e}; {fix}") from None
    # Same order as the reference: the certificates of server.crt, then those of ca.crt.
    chain = tuple(certificate_der(c) for c in server_certs + ca_certs)
    return ServerCredentials(chain_der=chain, private_key=server_key, key_hash=identity)
