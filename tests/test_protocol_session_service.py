"""The v16 service handshake in the sans-IO sessions: a service client against a server, in
memory, for the success path and every failure the reference's smpServerHandshake answers
with its third block (HANDSHAKE BAD_AUTH, HANDSHAKE BAD_SERVICE), and the cases where no
service is presented at all."""

from __future__ import annotations

import os

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from smpfast import _core as core
from smpfast.crypto import chains
from smpfast.crypto import session_key as skey
from smpfast.crypto.keys import Alg, PrivateKey
from smpfast.protocol import commands as C
from smpfast.protocol import versions as V
from smpfast.protocol.commands import CertChainPubKey, ServiceRole
from smpfast.protocol.errors import TransportError
from smpfast.protocol.handshake import ClientHandshake, ClientService, HandshakeResponse
from smpfast.protocol.session import (
    BlockReceived,
    ClientSession,
    Established,
    HandshakeFailed,
    ServerSession,
    ServiceCredentials,
    ServiceIdentity,
    ServiceRequested,
    SessionError,
    State,
)
from smpfast.protocol.transmission import decode_server_transmissions, encode_client_transmission
from smpfast.protocol.versions import VersionRange
from smpfast.testing.throwaway_certs import make_cert, make_service_chain, new_key
from smpfast.transport import verify_server_chain
from session_support import exchange_hellos, split_blocks

SESSION_ID = bytes(range(32))
FULL = VersionRange(V.MIN_VERSION, V.MAX_VERSION)
SERVICE_ID = b"S" * 24


def _server(creds, peer_chain=(), vrange=FULL, deadline=None) -> ServerSession:
    c = creds.creds
    s = ServerSession(SESSION_ID, c.key_hash, c.chain_der, c.private_key, vrange, os.urandom(32),
                      deadline, peer_chain=peer_chain)
    s.start()
    return s


def _client(creds, service: ServiceCredentials | None, wanted=FULL, certificate_sent=True, **kw) -> ClientSession:
    c = creds.creds
    return ClientSession(SESSION_ID, c.key_hash, wanted, verify_server_chain, c.chain_der[0], os.urandom(32),
                         service=service, service_private=os.urandom(32) if service else None,
                         certificate_sent=certificate_sent, **kw)




def _creds(service_chain, role=ServiceRole.NOTIFIER) -> ServiceCredentials:
    return ServiceCredentials(role, service_chain.chain, service_chain.leaf_key)


@pytest.mark.parametrize("length", [1, 2, 3, 4])
@pytest.mark.parametrize("role", list(ServiceRole))
def test_service_session_is_established_with_the_service_id(smp_credentials, length, role):
    svc = make_service_chain(length)
    server = _server(smp_credentials, svc.chain)
    client = _client(smp_credentials, _creds(svc, role))
    c_events, [requested] = exchange_hellos(server, client)
    assert c_events == [] and client.state is State.AWAITING_SERVICE  # waits for the third block
    assert requested == ServiceRequested(role, svc.chain, svc.cert_hash)
    assert server.state is State.AWAITING_SERVICE
    [s_event] = server.accept_service(SERVICE_ID)
    [third] = split_blocks(server.data_to_send())
    # The third block is a plain padded handshake block, never block-encrypted.
    assert HandshakeResponse.parse(third) == HandshakeResponse(service_id=SERVICE_ID)
    [c_event] = client.receive_block(third)
    assert isinstance(c_event, Established) and isinstance(s_event, Established)
    assert c_event.version == s_event.version == V.MAX_VERSION
    assert c_event.block_encryption and s_event.block_encryption
    public = PrivateKey(Alg.ED25519, client.service_private).public.raw
    assert s_event.service == ServiceIdentity(SERVICE_ID, role, svc.cert_hash, public)
    assert c_event.service == ServiceIdentity(SERVICE_ID, role, svc.cert_hash, client.service_private)
    assert server.state is client.state is State.ESTABLISHED

    # Transmissions flow, block-encrypted, after the third block.
    ping = encode_client_transmission(V.MAX_VERSION, SESSION_ID, b"c", b"", C.PING)
    client.send_batches([[ping]])
    [block] = split_blocks(client.data_to_send())
    [received] = server.receive_block(block)
    assert isinstance(received, BlockReceived)
    [t] = decode_server_transmissions(received.plaintext, V.MAX_VERSION, SESSION_ID)
    assert (t.corr_id, t.command) == (b"c", C.PING)


def test_cert_hash_is_of_the_identity_certificate():
    two = make_service_chain(2)
    assert _creds(two).cert_hash == chains.certificate_hash(two.chain[1])
    one = make_service_chain(1)
    assert _creds(one).cert_hash == chains.certificate_hash(one.chain[0])


def _bad_auth(smp_credentials, client: ClientSession, server: ServerSession, detail_part: str) -> None:
    c_events, s_events = exchange_hellos(server, client)
    assert c_events == []
    [failed] = s_events
    assert isinstance(failed, HandshakeFailed) and failed.reason == "HANDSHAKE BAD_AUTH"
    assert detail_part in failed.detail
    assert server.state is State.CLOSED
    [third] = split_blocks(server.data_to_send())  # the error block goes out before the close
    assert HandshakeResponse.parse(third) == HandshakeResponse(error=TransportError("HANDSHAKE", "BAD_AUTH"))
    [c_failed] = client.receive_block(third)
    assert c_failed == HandshakeFailed("HANDSHAKE BAD_AUTH", c_failed.detail)
    assert client.state is State.CLOSED


def test_service_chain_other_than_the_tls_chain_is_bad_auth(smp_credentials):
    svc = make_service_chain(2)
    other = make_service_chain(2)
    _bad_auth(smp_credentials, _client(smp_credentials, _creds(svc)), _server(smp_credentials, other.chain),
              "not the TLS certificate chain")


def test_service_without_a_tls_certificate_is_bad_auth(smp_credentials):
    svc = make_service_chain(1)
    _bad_auth(smp_credentials, _client(smp_credentials, _creds(svc)), _server(smp_credentials, ()),
              "not the TLS certificate chain")


def test_service_chain_of_five_is_bad_auth(smp_credentials):
    # TLS refuses such chains; the handshake check refuses them too (chainIdCaCerts CCLong).
    svc = make_service_chain(5)
    _bad_auth(smp_credentials, _client(smp_credentials, _creds(svc)), _server(smp_credentials, svc.chain),
              "too long")


def _hello_with(creds, service: ClientService, version=V.MAX_VERSION) -> bytes:
    return ClientHandshake(version, creds.creds.key_hash, None, False, service).encode()


def _served_blocks(server: ServerSession) -> list[bytes]:
    return split_blocks(server.data_to_send())


@pytest.mark.parametrize(
    "case",
    ["signed by another key", "signed key is X25519", "signed key is Ed448", "garbage signed key", "leaf key is ECDSA"],
)
def test_bad_service_session_key_is_bad_auth(smp_credentials, case):
    svc = make_service_chain(1)
    chain, leaf_key = svc.chain, svc.leaf_key
    ed25519_pub = PrivateKey(Alg.ED25519, os.urandom(32)).public
    if case == "signed by another key":
        signed = skey.sign_public_key(ed25519_pub, new_key())
    elif case == "signed key is X25519":
        signed = skey.sign_public_key(PrivateKey(Alg.X25519, os.urandom(32)).public, leaf_key)
    elif case == "signed key is Ed448":
        signed = skey.sign_public_key(PrivateKey.generate(Alg.ED448).public, leaf_key)
    elif case == "garbage signed key":
        signed = b"\x30\x03\x02\x01\x00"
    else:
        ec_key = ec.generate_private_key(ec.SECP256R1())
        cert = make_cert(ec_key, "ecdsa service", ca=False)
        chain = (cert.public_bytes(serialization.Encoding.DER),)
        signed = skey.sign_public_key(ed25519_pub, leaf_key)
    server = _server(smp_credentials, chain)
    hello_out = _served_blocks(server)
    assert len(hello_out) == 1
    service = ClientService(ServiceRole.NOTIFIER, CertChainPubKey(list(chain), signed))
    [failed] = server.receive_block(_hello_with(smp_credentials, service))
    assert isinstance(failed, HandshakeFailed) and failed.reason == "HANDSHAKE BAD_AUTH"
    assert "service session key" in failed.detail
    [third] = _served_blocks(server)
    assert HandshakeResponse.parse(third).error == TransportError("HANDSHAKE", "BAD_AUTH")
    assert server.state is State.CLOSED


def test_rejected_service_is_bad_service(smp_credentials):
    svc = make_service_chain(2)
    server = _server(smp_credentials, svc.chain)
    client = _client(smp_credentials, _creds(svc, ServiceRole.MESSAGING))
    _, [requested] = exchange_hellos(server, client)
    assert isinstance(requested, ServiceRequested)
    [failed] = server.reject_service("its certificate belongs to a notifier service")
    assert failed == HandshakeFailed("HANDSHAKE BAD_SERVICE", "its certificate belongs to a notifier service")
    assert server.state is State.CLOSED
    [third] = split_blocks(server.data_to_send())
    [c_failed] = client.receive_block(third)
    assert isinstance(c_failed, HandshakeFailed) and c_failed.reason == "HANDSHAKE BAD_SERVICE"
    assert client.state is State.CLOSED and client.service is None


def test_no_service_below_v16(smp_credentials):
    # At v15 the hello has no service field: a client with a certificate is an ordinary one.
    svc = make_service_chain(1)
    server = _server(smp_credentials, svc.chain)
    client = _client(smp_credentials, _creds(svc), VersionRange(V.MIN_VERSION, V.SHORT_LINKS))
    [c_event], [s_event] = exchange_hellos(server, client)
    assert c_event.version == s_event.version == V.SHORT_LINKS
    assert c_event.service is None and s_event.service is None
    assert server.state is client.state is State.ESTABLISHED


def test_no_service_when_the_certificate_was_not_sent(smp_credentials):
    # The reference client presents its service only when the server asked for the TLS
    # certificate (certificateSent): here it did not.
    svc = make_service_chain(1)
    server = _server(smp_credentials, ())
    client = _client(smp_credentials, _creds(svc), certificate_sent=False)
    [c_event], [s_event] = exchange_hellos(server, client)
    assert c_event.version == V.MAX_VERSION and c_event.service is None and s_event.service is None


def test_server_below_v16_gets_no_service(smp_credentials):
    svc = make_service_chain(1)
    server = _server(smp_credentials, svc.chain, VersionRange(V.MIN_VERSION, V.SHORT_LINKS))
    client = _client(smp_credentials, _creds(svc))
    [c_event], [s_event] = exchange_hellos(server, client)
    assert c_event.version == V.SHORT_LINKS and c_event.service is None and s_event.service is None


@pytest.mark.parametrize("third", [b"X" + bytes(10), b"", b"R", b"E" + b"HANDSHAKE NOPE"])
def test_unparsable_third_block_is_handshake_parse(smp_credentials, third):
    svc = make_service_chain(1)
    server = _server(smp_credentials, svc.chain)
    client = _client(smp_credentials, _creds(svc))
    exchange_hellos(server, client)
    [failed] = client.receive_block(core.pad(third, V.BLOCK_SIZE))
    assert isinstance(failed, HandshakeFailed) and failed.reason == "HANDSHAKE PARSE"
    assert client.state is State.CLOSED


def test_service_handshake_times_out_on_both_sides(smp_credentials):
    svc = make_service_chain(1)
    server = _server(smp_credentials, svc.chain, deadline=10.0)
    c = smp_credentials.creds
    client = ClientSession(SESSION_ID, c.key_hash, FULL, verify_server_chain, c.chain_der[0], os.urandom(32),
                           deadline=10.0, service=_creds(svc), service_private=os.urandom(32),
                           certificate_sent=True)
    exchange_hellos(server, client)
    assert server.state is client.state is State.AWAITING_SERVICE
    assert server.handle_timer(9.0) == [] and client.handle_timer(9.0) == []
    [s_failed] = server.handle_timer(10.0)
    [c_failed] = client.handle_timer(10.0)
    assert s_failed.reason == c_failed.reason == "TIMEOUT"
    assert server.state is client.state is State.CLOSED
    assert server.data_to_send() == b""  # no error block on a timeout


def test_service_calls_outside_their_state_are_refused(smp_credentials):
    server = _server(smp_credentials)
    with pytest.raises(SessionError):
        server.accept_service(SERVICE_ID)
    with pytest.raises(SessionError):
        server.reject_service()
    svc = make_service_chain(1)
    server = _server(smp_credentials, svc.chain)
    client = _client(smp_credentials, _creds(svc))
    exchange_hellos(server, client)
    with pytest.raises(ValueError):
        server.accept_service(b"")  # a service id is a short string, never empty
    with pytest.raises(SessionError):
        server.receive_block(bytes(V.BLOCK_SIZE))  # nothing may arrive before the answer
    with pytest.raises(SessionError):
        client.send_batches([[b"x"]])  # nor be sent before the third block
    server.accept_service(SERVICE_ID)
    with pytest.raises(SessionError):
        server.accept_service(SERVICE_ID)


def test_a_service_needs_its_session_key(smp_credentials):
    c = smp_credentials.creds
    with pytest.raises(ValueError):
        ClientSession(SESSION_ID, c.key_hash, FULL, verify_server_chain, c.chain_der[0], os.urandom(32),
                      service=_creds(make_service_chain(1)))


@pytest.mark.parametrize("role, version, presented", [
    (ServiceRole.MESSAGING, V.CLIENT_NOTICES, False),  # a messaging service needs 19+
    (ServiceRole.MESSAGING, V.MAX_VERSION, True),
    (ServiceRole.NOTIFIER, V.SERVICE_CERTS, True),
])
def test_messaging_services_present_themselves_from_v19(smp_credentials, role, version, presented):
    svc = make_service_chain(1)
    server = _server(smp_credentials, svc.chain)
    client = _client(smp_credentials, _creds(svc, role), VersionRange(V.MIN_VERSION, version))
    c_events, s_events = exchange_hellos(server, client)
    if presented:
        assert c_events == [] and isinstance(s_events[0], ServiceRequested)
    else:  # an ordinary session, and the client does not wait for a third block
        assert c_events[0].service is None and s_events[0].service is None
        assert client.state is server.state is State.ESTABLISHED
