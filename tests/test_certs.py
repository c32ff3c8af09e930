"""Server credentials: CA and server certificates, fingerprint, files, loading, renewal."""

from __future__ import annotations

import base64
import datetime
import hashlib
import os
import ssl
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed448, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from smpfast.credentials import (
    CredentialPaths,
    CredentialsError,
    create_credentials,
    load_identity,
    load_server_credentials,
    renew_server_certificate,
)
from smpfast.crypto.certs import (
    VALIDITY_DAYS,
    CertError,
    SignAlgorithm,
    certificate_pem,
    decode_fingerprint,
    encode_fingerprint,
    generate_private_key,
    key_hash,
    load_certificates_pem,
    load_private_key_pem,
    make_ca_certificate,
    make_server_certificate,
    private_key_pem,
)

ALGORITHMS = [SignAlgorithm.ED25519, SignAlgorithm.ED448]
PUBLIC_TYPES = {
    SignAlgorithm.ED25519: ed25519.Ed25519PublicKey,
    SignAlgorithm.ED448: ed448.Ed448PublicKey,
}


def _ext(cert: x509.Certificate, cls):  # type: ignore[no-untyped-def]
    return cert.extensions.get_extension_for_class(cls)


@pytest.fixture(params=ALGORITHMS, ids=lambda a: a.value)
def algorithm(request: pytest.FixtureRequest) -> SignAlgorithm:
    return request.param


# --- certificates (pure) ----------------------------------------------------------------------


def test_ca_certificate(algorithm: SignAlgorithm) -> None:
    key = generate_private_key(algorithm)
    ca = make_ca_certificate(key)
    assert isinstance(ca.public_key(), PUBLIC_TYPES[algorithm])
    assert ca.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "SMP server CA"
    assert ca.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "SimpleX"
    assert ca.issuer == ca.subject
    ca.verify_directly_issued_by(ca)  # self-signed with its own key
    bc = _ext(ca, x509.BasicConstraints)
    assert bc.critical and bc.value.ca
    ski = _ext(ca, x509.SubjectKeyIdentifier).value
    aki = _ext(ca, x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == ski.digest
    assert ca.version is x509.Version.v3
    assert ca.not_valid_after_utc - ca.not_valid_before_utc == datetime.timedelta(days=VALIDITY_DAYS)
    now = datetime.datetime.now(datetime.timezone.utc)
    assert ca.not_valid_before_utc <= now < ca.not_valid_after_utc


def test_server_certificate_chain_verifies(algorithm: SignAlgorithm) -> None:
    ca_key = generate_private_key(algorithm)
    ca = make_ca_certificate(ca_key)
    server_key = generate_private_key(algorithm)
    cert = make_server_certificate(server_key, "smp.example.com", ca_key, ca)
    # The signature checks against the CA public key, and against nothing else.
    public = ca.public_key()
    public.verify(cert.signature, cert.tbs_certificate_bytes)
    cert.verify_directly_issued_by(ca)
    other_ca = make_ca_certificate(generate_private_key(algorithm))
    with pytest.raises(Exception):
        cert.verify_directly_issued_by(other_ca)
    assert cert.issuer == ca.subject
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "smp.example.com"
    assert cert.public_key().public_bytes_raw() == server_key.public_key().public_bytes_raw()
    assert not _ext(cert, x509.BasicConstraints).value.ca
    ku = _ext(cert, x509.KeyUsage).value
    assert ku.digital_signature and ku.content_commitment and ku.key_agreement
    assert not ku.key_cert_sign and not ku.key_encipherment
    assert list(_ext(cert, x509.ExtendedKeyUsage).value) == [ExtendedKeyUsageOID.SERVER_AUTH]
    aki = _ext(cert, x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == _ext(ca, x509.SubjectKeyIdentifier).value.digest
    assert cert.not_valid_after_utc - cert.not_valid_before_utc == datetime.timedelta(days=VALIDITY_DAYS)


def test_server_certificate_refuses_wrong_ca_key() -> None:
    ca = make_ca_certificate(generate_private_key())
    with pytest.raises(CertError):
        make_server_certificate(generate_private_key(), "h", generate_private_key(), ca)
    with pytest.raises(CertError):
        make_server_certificate(generate_private_key(), "", generate_private_key(), ca)


def test_validity_is_clamped_to_generalized_time_maximum() -> None:
    late = datetime.datetime(9000, 1, 1, tzinfo=datetime.timezone.utc)
    ca = make_ca_certificate(generate_private_key(), now=late)
    assert ca.not_valid_after_utc == datetime.datetime(
        9999, 12, 31, 23, 59, 59, tzinfo=datetime.timezone.utc
    )


def test_fingerprint_encoding() -> None:
    ca = make_ca_certificate(generate_private_key())
    h = key_hash(ca)
    assert h == hashlib.sha256(ca.public_bytes(serialization.Encoding.DER)).digest()
    fp = encode_fingerprint(h)
    assert fp == base64.urlsafe_b64encode(h).decode() and fp.endswith("=") and len(fp) == 44
    assert decode_fingerprint(fp) == h
    for bad in ["", fp[:-1], fp.replace("=", ""), "+" + fp[1:], base64.urlsafe_b64encode(b"x" * 31).decode()]:
        with pytest.raises(CertError):
            decode_fingerprint(bad)


def test_pem_round_trip(algorithm: SignAlgorithm) -> None:
    key = generate_private_key(algorithm)
    pem = private_key_pem(key)
    assert pem.startswith(b"-----BEGIN PRIVATE KEY-----")  # PKCS#8
    assert load_private_key_pem(pem).public_key().public_bytes_raw() == key.public_key().public_bytes_raw()
    ca = make_ca_certificate(key)
    assert load_certificates_pem(certificate_pem(ca) * 2) == [ca, ca]
    with pytest.raises(CertError):
        load_certificates_pem(b"")
    with pytest.raises(CertError):
        load_private_key_pem(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")


# --- files ------------------------------------------------------------------------------------


def _sha256_fingerprint_of_ca_file(path: Path) -> str:
    der = x509.load_pem_x509_certificate(path.read_bytes()).public_bytes(serialization.Encoding.DER)
    return base64.urlsafe_b64encode(hashlib.sha256(der).digest()).decode()


def test_create_credentials_files(tmp_path: Path, algorithm: SignAlgorithm) -> None:
    old_umask = os.umask(0)  # key modes must not depend on the umask
    try:
        identity = create_credentials(tmp_path, "192.0.2.7", algorithm)
    finally:
        os.umask(old_umask)
    paths = CredentialPaths.in_dir(tmp_path)
    for p in paths.all():
        assert p.is_file()
    assert stat.S_IMODE(paths.ca_key.stat().st_mode) == 0o600
    assert stat.S_IMODE(paths.server_key.stat().st_mode) == 0o600
    fp = _sha256_fingerprint_of_ca_file(paths.ca_cert)
    assert paths.fingerprint.read_text() == fp + "\n"
    assert encode_fingerprint(identity) == fp
    assert sorted(os.listdir(tmp_path)) == ["ca.crt", "ca.key", "fingerprint", "server.crt", "server.key"]
    server = x509.load_pem_x509_certificate(paths.server_cert.read_bytes())
    ca = x509.load_pem_x509_certificate(paths.ca_cert.read_bytes())
    server.verify_directly_issued_by(ca)
    assert isinstance(server.public_key(), PUBLIC_TYPES[algorithm])
    assert server.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "192.0.2.7"


def test_create_credentials_refuses_to_overwrite(tmp_path: Path) -> None:
    create_credentials(tmp_path, "h")
    before = (tmp_path / "ca.crt").read_bytes()
    with pytest.raises(CredentialsError, match="already exist"):
        create_credentials(tmp_path, "h")
    assert (tmp_path / "ca.crt").read_bytes() == before


def test_load_server_credentials(tmp_path: Path, algorithm: SignAlgorithm) -> None:
    identity = create_credentials(tmp_path, "h", algorithm)
    creds = load_server_credentials(tmp_path)
    assert len(creds.chain_der) == 2
    server = x509.load_der_x509_certificate(creds.chain_der[0])
    ca_der = creds.chain_der[1]
    assert ca_der == x509.load_pem_x509_certificate((tmp_path / "ca.crt").read_bytes()).public_bytes(
        serialization.Encoding.DER
    )
    assert creds.key_hash == identity == hashlib.sha256(ca_der).digest()
    assert creds.fingerprint == (tmp_path / "fingerprint").read_text().strip()
    assert server.public_key().public_bytes_raw() == creds.private_key.public_key().public_bytes_raw()
    assert load_certificates_pem(creds.chain_pem())[1].public_bytes(serialization.Encoding.DER) == ca_der
    assert load_identity(tmp_path) == identity


def test_load_detects_fingerprint_mismatch(tmp_path: Path) -> None:
    create_credentials(tmp_path, "h")
    fp_file = tmp_path / "fingerprint"
    good = fp_file.read_text()
    fp_file.write_text(encode_fingerprint(b"\x00" * 32) + "\n")
    with pytest.raises(CredentialsError, match="fingerprint"):
        load_server_credentials(tmp_path)
    fp_file.write_text(good)
    load_server_credentials(tmp_path)
    # A replaced CA certificate no longer matches the saved fingerprint either.
    other = tmp_path / "other"
    create_credentials(other, "h")
    (tmp_path / "ca.crt").write_bytes((other / "ca.crt").read_bytes())
    with pytest.raises(CredentialsError, match="fingerprint"):
        load_identity(tmp_path)


def test_load_detects_foreign_server_cert_and_key(tmp_path: Path) -> None:
    create_credentials(tmp_path / "a", "h")
    create_credentials(tmp_path / "b", "h")
    a, b = tmp_path / "a", tmp_path / "b"
    original_key = (a / "server.key").read_bytes()
    (a / "server.key").write_bytes((b / "server.key").read_bytes())
    with pytest.raises(CredentialsError, match="does not match"):
        load_server_credentials(a)
    (a / "server.key").write_bytes(original_key)
    (a / "server.crt").write_bytes((b / "server.crt").read_bytes())
    (a / "server.key").write_bytes((b / "server.key").read_bytes())
    with pytest.raises(CredentialsError, match="not signed by the CA"):
        load_server_credentials(a)


def test_load_missing_files(tmp_path: Path) -> None:
    with pytest.raises(CredentialsError, match="not found"):
        load_server_credentials(tmp_path)
    create_credentials(tmp_path, "h")
    (tmp_path / "server.key").unlink()
    with pytest.raises(CredentialsError, match="server.key"):
        load_server_credentials(tmp_path)


def test_renew_server_certificate(tmp_path: Path) -> None:
    identity = create_credentials(tmp_path, "smp.example.com", SignAlgorithm.ED25519)
    old_cert = (tmp_path / "server.crt").read_bytes()
    old_key = (tmp_path / "server.key").read_bytes()
    assert renew_server_certificate(tmp_path) == ("smp.example.com", SignAlgorithm.ED25519)
    assert (tmp_path / "server.crt").read_bytes() != old_cert
    assert (tmp_path / "server.key").read_bytes() != old_key
    assert stat.S_IMODE((tmp_path / "server.key").stat().st_mode) == 0o600
    creds = load_server_credentials(tmp_path)
    assert creds.key_hash == identity

    renew_server_certificate(tmp_path, common_name="new.example.com", algorithm=SignAlgorithm.ED448)
    creds = load_server_credentials(tmp_path)
    server = x509.load_der_x509_certificate(creds.chain_der[0])
    assert isinstance(server.public_key(), ed448.Ed448PublicKey)
    assert server.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "new.example.com"
    assert creds.key_hash == identity

    (tmp_path / "ca.key").unlink()  # moved offline
    with pytest.raises(CredentialsError, match="ca.key"):
        renew_server_certificate(tmp_path)


def test_tls_handshake_with_the_chain(tmp_path: Path, algorithm: SignAlgorithm) -> None:
    """OpenSSL (through Python's ssl) serves the chain; the client receives [server, CA]."""
    create_credentials(tmp_path, "h", algorithm)
    creds = load_server_credentials(tmp_path)
    (tmp_path / "chain.pem").write_bytes(creds.chain_pem())
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(tmp_path / "chain.pem", tmp_path / "server.key")
    client_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client_ctx.check_hostname = False
    client_ctx.verify_mode = ssl.CERT_NONE
    bios = [ssl.MemoryBIO() for _ in range(4)]
    server = server_ctx.wrap_bio(bios[0], bios[1], server_side=True)
    client = client_ctx.wrap_bio(bios[2], bios[3])
    done = set()
    for _ in range(10):
        for name, conn in (("client", client), ("server", server)):
            try:
                conn.do_handshake()
                done.add(name)
            except ssl.SSLWantReadError:
                pass
        bios[0].write(bios[3].read())
        bios[2].write(bios[1].read())
        if len(done) == 2:
            break
    assert done == {"client", "server"}
    assert client.getpeercert(binary_form=True) == creds.chain_der[0]
