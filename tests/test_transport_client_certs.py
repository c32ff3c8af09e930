"""Client (service) certificates over real TLS on 127.0.0.1: the server asks every client for
one, accepts none, validates a chain as the reference (validateClientCertificate) and
refuses a bad one with the reference's TLS alert; the client knows whether it was asked.
Also the chain checks themselves (crypto.chains) against hand-made chains."""

from __future__ import annotations

import datetime

import pytest
import trio
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography import x509

from smpfast.crypto import chains
from smpfast.testing.throwaway_certs import make_cert, make_service_chain, new_key, write_server_files
from smpfast.transport import (
    ClientCertificateContext,
    TransportError,
    open_block_connection,
    serve_blocks,
    server_context,
)

GUARD = 20.0
LONG_AGO = datetime.datetime(2001, 1, 1, tzinfo=datetime.UTC)


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return write_server_files(tmp_path_factory.mktemp("client-certs"))


def _connect(files, chain: tuple[bytes, ...] | None, leaf_key=None, request: bool = True):
    """Serve once with (or without) client certificate requests; connect with ``chain``
    (None: no certificate). Returns (chain the server saw or None, client error or None,
    whether the server asked, handshake errors on the server)."""
    sctx = server_context(files.chain_file, files.key_file, request_client_certs=request)
    seen: list = []
    errors: list[TransportError] = []

    async def handler(conn):
        seen.append(conn.peer_chain_der)
        await conn.send_blocks([bytes(16384)])
        await conn.receive_blocks()

    async def main():
        with trio.fail_after(GUARD):
            async with trio.open_nursery() as nursery:
                [listener] = await nursery.start(
                    lambda task_status: serve_blocks(handler, 0, sctx, host="127.0.0.1",
                                                     on_handshake_error=errors.append, task_status=task_status)
                )
                port = listener.socket.getsockname()[1]
                cc = None if chain is None else ClientCertificateContext(chain, leaf_key)
                conn = await open_block_connection("127.0.0.1", port, files.key_hash,
                                                   ssl_context=None if cc is None else cc.context)
                client_error = None
                try:
                    got = await conn.receive_blocks()
                    assert got == [bytes(16384)]
                except TransportError as e:
                    client_error = str(e)
                await conn.aclose()
                with trio.move_on_after(5):
                    while not seen and not errors:
                        await trio.sleep(0.01)
                nursery.cancel_scope.cancel()
                return (seen[0] if seen else None), client_error, (cc.requested if cc else None), errors

    return trio.run(main)


def test_client_without_certificate_is_accepted(files):
    seen, error, _, errors = _connect(files, None)
    assert seen == [] and error is None and errors == []


@pytest.mark.parametrize("length", [1, 2, 3, 4])
def test_service_chain_reaches_the_server(files, length):
    svc = make_service_chain(length)
    seen, error, requested, errors = _connect(files, svc.chain, svc.leaf_key)
    assert error is None and errors == [] and requested is True
    assert seen == list(svc.chain)


def test_without_requests_no_certificate_is_sent(files):
    svc = make_service_chain(1)
    seen, error, requested, _ = _connect(files, svc.chain, svc.leaf_key, request=False)
    assert error is None and requested is False and seen == []


@pytest.mark.parametrize(
    "case, alert",
    [
        ("expired", "CERTIFICATE_EXPIRED"),
        ("not yet valid", "CERTIFICATE_EXPIRED"),
        ("unknown CA", "UNKNOWN_CA"),
        ("too long", "CERTIFICATE_UNKNOWN"),
        ("leaf may not sign", "UNSUPPORTED_CERTIFICATE"),
    ],
)
def test_bad_service_chain_is_refused_with_the_reference_alert(files, case, alert):
    if case == "expired":
        svc = make_service_chain(1, days=2, not_before=LONG_AGO)
        chain, key = svc.chain, svc.leaf_key
    elif case == "not yet valid":
        svc = make_service_chain(2, not_before=datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=5))
        chain, key = svc.chain, svc.leaf_key
    elif case == "unknown CA":
        svc = make_service_chain(2)
        chain, key = (svc.chain[0], make_service_chain(2, name="stranger").chain[1]), svc.leaf_key
    elif case == "too long":
        svc = make_service_chain(5)
        chain, key = svc.chain, svc.leaf_key
    else:
        key = new_key()
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "no-sign")]))
            .issuer_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "no-sign")]))
            .public_key(key.public_key())
            .serial_number(1)
            .not_valid_before(datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=1))
            .not_valid_after(datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=1))
            .add_extension(x509.KeyUsage(False, False, True, False, False, False, False, False, False), True)
            .sign(key, None)
        )
        chain = (_der(cert),)
    seen, error, requested, errors = _connect(files, chain, key)
    assert seen is None, "the handler must not run for a refused certificate"
    assert requested is True
    assert error is not None and alert in error.upper()
    assert len(errors) == 1 and "CERTIFICATE_VERIFY_FAILED" in str(errors[0])


# ---------------------------------------------------------------- chain checks, no TLS


def test_chain_roles_follow_chain_id_ca_certs():
    a, b, c, d, e = (bytes([i]) for i in range(5))
    assert chains.chain_roles([]) == chains.ChainRoles(chains.ChainShape.EMPTY)
    assert chains.chain_roles([a]) == chains.ChainRoles(chains.ChainShape.SELF, a, a, a)
    assert chains.chain_roles([a, b]) == chains.ChainRoles(chains.ChainShape.VALID, a, b, b)
    assert chains.chain_roles([a, b, c]) == chains.ChainRoles(chains.ChainShape.VALID, a, b, c)
    assert chains.chain_roles([a, b, c, d]) == chains.ChainRoles(chains.ChainShape.VALID, a, b, d)
    assert chains.chain_roles([a, b, c, d, e]) == chains.ChainRoles(chains.ChainShape.LONG)


def test_validate_walks_the_chain_like_x509_validation():
    ok = make_service_chain(3)
    assert chains.validate(ok.chain[-1], ok.chain) == []
    # the root's own dates and CA flag are not checked: it is the trust anchor
    root_key = new_key()
    old_root = make_cert(root_key, "old root", ca=False, days=1, not_before=LONG_AGO)
    leaf_key = new_key()
    leaf = make_cert(leaf_key, "leaf", issuer_key=root_key, issuer_cert=old_root, ca=False)
    assert chains.validate(_der(old_root), [_der(leaf), _der(old_root)]) == []
    # a non-CA intermediate is refused
    mid_key = new_key()
    mid = make_cert(mid_key, "mid", issuer_key=root_key, issuer_cert=old_root, ca=False)
    leaf2 = make_cert(leaf_key, "leaf2", issuer_key=mid_key, issuer_cert=mid, ca=False)
    assert chains.validate(_der(old_root), [_der(leaf2), _der(mid), _der(old_root)]) == [chains.NOT_AN_AUTHORITY]
    # a self-issued leaf that is not the root
    lone = make_cert(new_key(), "lone", ca=False)
    assert chains.validate(_der(old_root), [_der(lone), _der(old_root)]) == [chains.SELF_SIGNED]
    # a forged signature: the leaf names the root but another key signed it
    forged = make_cert(leaf_key, "forged", issuer_key=new_key(), issuer_cert=old_root, ca=False)
    assert chains.validate(_der(old_root), [_der(forged), _der(old_root)]) == [chains.INVALID_SIGNATURE]
    # validity of a certificate in the chain is checked; the first problem ends the walk
    expired = make_service_chain(1, days=1, not_before=LONG_AGO)
    assert chains.validate(expired.chain[0], expired.chain) == [chains.EXPIRED]
    future = make_service_chain(1, not_before=datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=3))
    assert chains.validate(future.chain[0], future.chain) == [chains.IN_FUTURE]
    assert chains.validate(b"junk", [b"junk"]) == [chains.MALFORMED]


def test_validate_ecdsa_chain_and_leaf_key():
    # Other key types validate too (the TLS profile then refuses to sign with them), but
    # they are no service key.
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = make_cert(ca_key, "ec ca", ca=True)
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = make_cert(leaf_key, "ec leaf", issuer_key=ca_key, issuer_cert=ca, ca=False)
    assert chains.validate(_der(ca), [_der(leaf), _der(ca)]) == []
    with pytest.raises(Exception):
        chains.leaf_verify_key(_der(leaf))


def test_client_chain_rejection_reasons():
    assert chains.client_chain_rejection([]) is None
    assert chains.client_chain_rejection(make_service_chain(4).chain) is None
    assert chains.client_chain_rejection(make_service_chain(5).chain)[0] is chains.Rejection.OTHER
    expired = make_service_chain(2, days=1, not_before=LONG_AGO)
    assert chains.client_chain_rejection(expired.chain)[0] is chains.Rejection.EXPIRED
    svc = make_service_chain(2)
    stranger = (svc.chain[0], make_service_chain(2, name="stranger").chain[1])
    assert chains.client_chain_rejection(stranger)[0] is chains.Rejection.UNKNOWN_CA
    # a root with the issuer's name but another key: the signature fails ("other")
    namesake = (svc.chain[0], make_service_chain(2).chain[1])
    assert chains.client_chain_rejection(namesake)[0] is chains.Rejection.OTHER


def test_without_the_verify_callback_no_certificates_are_asked_for(files, monkeypatch, caplog):
    import ssl

    from smpfast.transport import _openssl

    def unavailable(*args, **kwargs):
        raise OSError("libssl verify functions unavailable")

    monkeypatch.setattr(_openssl, "request_client_certificates", unavailable)
    with caplog.at_level("WARNING", logger="smpfast.transport"):
        ctx = server_context(files.chain_file, files.key_file, request_client_certs=True)
    assert ctx.verify_mode is ssl.CERT_NONE
    assert "served as ordinary ones" in caplog.text
