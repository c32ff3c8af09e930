"""Throw-away certificate chains for tests and benchmarks (not for production identities).

Mirrors the shape ``smp-server init`` creates: a self-signed CA (CA:true) signing a server
certificate (CA:false, serverAuth), Ed25519 by default or Ed448.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed448, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

PrivateKey = ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey


def new_key(algorithm: str = "ed25519") -> PrivateKey:
    if algorithm == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    if algorithm == "ed448":
        return ed448.Ed448PrivateKey.generate()
    raise ValueError(f"unsupported algorithm {algorithm!r}")


def make_cert(
    subject_key: Any,
    common_name: str,
    *,
    issuer_key: Any | None = None,
    issuer_cert: x509.Certificate | None = None,
    ca: bool,
    days: int = 3650,
    not_before: datetime.datetime | None = None,
) -> x509.Certificate:
    """A v3 certificate for ``subject_key``; self-signed when no issuer is given."""
    start = not_before or datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=1)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    issuer = issuer_cert.subject if issuer_cert is not None else subject
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(subject_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=ca)
    )
    if not ca:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
    signer = issuer_key or subject_key
    # Ed25519/Ed448 sign without a separate hash; other key types (used in tests) with SHA-256.
    eddsa = isinstance(signer, (ed25519.Ed25519PrivateKey, ed448.Ed448PrivateKey))
    digest = None if eddsa else hashes.SHA256()
    return builder.sign(signer, digest)


def pem(*certs: x509.Certificate) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


def key_pem(key: Any) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


@dataclasses.dataclass
class ServerFiles:
    chain_file: Path  # server cert + CA cert, for server_context(chain_file, key_file)
    key_file: Path
    cert_file: Path  # server cert alone, for server_context(cert_file, key_file, ca_file)
    ca_file: Path
    key_hash: bytes  # SHA-256 of the CA cert's DER: the server address fingerprint
    ca_cert: x509.Certificate
    ca_key: PrivateKey
    server_cert: x509.Certificate
    server_key: PrivateKey


def write_server_files(
    directory: Path, algorithm: str = "ed25519", *, name: str = "server"
) -> ServerFiles:
    """Create a CA and a server certificate signed by it, written as PEM files."""
    directory = Path(directory)
    ca_key = new_key(algorithm)
    ca_cert = make_cert(ca_key, "SMP server CA", ca=True)
    server_key = new_key(algorithm)
    server_cert = make_cert(
        server_key, "localhost", issuer_key=ca_key, issuer_cert=ca_cert, ca=False
    )
    files = ServerFiles(
        chain_file=directory / f"{name}.chain.pem",
        key_file=directory / f"{name}.key",
        cert_file=directory / f"{name}.crt",
        ca_file=directory / f"{name}.ca.crt",
        key_hash=hashlib.sha256(ca_cert.public_bytes(serialization.Encoding.DER)).digest(),
        ca_cert=ca_cert,
        ca_key=ca_key,
        server_cert=server_cert,
        server_key=server_key,
    )
    files.chain_file.write_bytes(pem(server_cert, ca_cert))
    files.key_file.write_bytes(key_pem(server_key))
    files.cert_file.write_bytes(pem(server_cert))
    files.ca_file.write_bytes(pem(ca_cert))
    return files


@dataclasses.dataclass
class ServiceChain:
    """A service client's TLS credentials: ``chain`` (DER, leaf first) and the leaf's key."""

    chain: tuple[bytes, ...]
    leaf_key: PrivateKey
    certificates: tuple[x509.Certificate, ...]

    @property
    def cert_hash(self) -> bytes:
        """SHA-256 of the identity certificate (the second, or the only one)."""
        return hashlib.sha256(self.chain[1] if len(self.chain) > 1 else self.chain[0]).digest()


def make_service_chain(
    length: int = 1,
    algorithm: str = "ed25519",
    *,
    name: str = "service",
    days: int = 3650,
    not_before: datetime.datetime | None = None,
) -> ServiceChain:
    """A service certificate chain of ``length`` certificates: 1 is a self-signed leaf;
    2..4 a leaf signed by a chain of CA certificates up to a self-signed root (the last).
    ``days``/``not_before`` set the leaf's validity (to make expired or future ones)."""
    if length < 1:
        raise ValueError("a chain has at least one certificate")
    leaf_key = new_key(algorithm)
    if length == 1:
        leaf = make_cert(leaf_key, name, ca=False, days=days, not_before=not_before)
        certs = (leaf,)
    else:
        keys = [new_key(algorithm) for _ in range(length - 1)]  # CA keys, root last
        cas = [make_cert(keys[-1], f"{name} root CA", ca=True)]
        for i in range(length - 3, -1, -1):
            cas.insert(0, make_cert(keys[i], f"{name} CA {i}", issuer_key=keys[i + 1], issuer_cert=cas[0], ca=True))
        leaf = make_cert(leaf_key, name, issuer_key=keys[0], issuer_cert=cas[0], ca=False,
                         days=days, not_before=not_before)
        certs = (leaf, *cas)
    return ServiceChain(tuple(c.public_bytes(serialization.Encoding.DER) for c in certs), leaf_key, certs)
