"""The sans-IO sessions: a ClientSession against a ServerSession in memory, no sockets
(aioquic's way of testing its connection), for every version and every handshake failure."""

from __future__ import annotations

import os

import pytest

from smpfast import _core as core
from smpfast.protocol import commands as C
from smpfast.protocol import versions as V
from smpfast.protocol.handshake import ClientHandshake, ClientService, ServerHandshake
from smpfast.protocol.session import (
    BlockReceived,
    ClientSession,
    Established,
    HandshakeFailed,
    ServerSession,
    SessionError,
    State,
)
from smpfast.protocol.transmission import (
    decode_client_transmissions,
    decode_server_transmissions,
    encode_client_transmission,
    encode_server_transmission,
)
from smpfast.protocol.versions import VersionRange
from smpfast.transport import verify_server_chain
from session_support import exchange_hellos, split_blocks

SESSION_ID = bytes(range(32))


def _server(creds, vrange=VersionRange(V.MIN_VERSION, V.MAX_VERSION), deadline=None) -> ServerSession:
    c = creds.creds
    s = ServerSession(SESSION_ID, c.key_hash, c.chain_der, c.private_key, vrange, os.urandom(32), deadline)
    s.start()
    return s


def _client(creds, wanted=VersionRange(V.MIN_VERSION, V.MAX_VERSION), key_hash=None, **kw) -> ClientSession:
    c = creds.creds
    return ClientSession(SESSION_ID, key_hash or c.key_hash, wanted, verify_server_chain, c.chain_der[0],
                         os.urandom(32), **kw)




@pytest.mark.parametrize("version", V.ALL_VERSIONS)
@pytest.mark.parametrize("encrypt", [True, False])
def test_sessions_agree_and_carry_transmissions(smp_credentials, version, encrypt):
    server = _server(smp_credentials)
    client = _client(smp_credentials, VersionRange(V.MIN_VERSION, version), want_encryption=encrypt)
    [c_event], [s_event] = exchange_hellos(server, client)
    expect_encryption = encrypt and version >= V.ENCRYPTED_BLOCK
    assert c_event == Established(version, SESSION_ID, expect_encryption, client.server_session_key)
    assert s_event == Established(version, SESSION_ID, expect_encryption, None)
    assert server.state is client.state is State.ESTABLISHED
    assert client.server_session_key is not None  # a server offering 7+ always signs one
    assert server.encrypts_blocks == client.encrypts_blocks == expect_encryption

    # Client -> server: a batch of 3 PINGs, then server -> client: the PONGs, two batches.
    pings = [encode_client_transmission(version, SESSION_ID, b"c%d" % i, b"", C.PING) for i in range(3)]
    client.send_batches([pings])
    [block] = split_blocks(client.data_to_send())
    [received] = server.receive_block(block)
    assert isinstance(received, BlockReceived)
    decoded = decode_server_transmissions(received.plaintext, version, SESSION_ID)
    assert [(d.corr_id, d.command) for d in decoded] == [(b"c%d" % i, C.PING) for i in range(3)]
    pongs = [encode_server_transmission(version, SESSION_ID, d.corr_id, b"", C.PONG) for d in decoded]
    server.send_batches([pongs[:1], pongs[1:]])  # batches never share a block
    blocks = split_blocks(server.data_to_send())
    assert len(blocks) == 2
    answers = []
    for block in blocks:
        [event] = client.receive_block(block)
        answers += decode_client_transmissions(event.plaintext, version, SESSION_ID)
    assert [(a.corr_id, a.response) for a in answers] == [(b"c%d" % i, C.PONG) for i in range(3)]


def test_without_alpn_only_v6_is_offered(smp_credentials):
    server = _server(smp_credentials, VersionRange(V.MIN_VERSION, V.MIN_VERSION))
    client = _client(smp_credentials)
    [c_event], [s_event] = exchange_hellos(server, client)
    assert c_event.version == s_event.version == 6 and client.server_session_key is None


def test_a_client_expecting_another_server_is_closed_silently(smp_credentials):
    server = _server(smp_credentials)
    client = _client(smp_credentials, key_hash=b"\x01" * 32)
    [hello] = split_blocks(server.data_to_send())
    [event] = client.receive_block(hello)
    # The handshake chain proves the server is not the one the address names.
    assert isinstance(event, HandshakeFailed) and event.reason == "HANDSHAKE BAD_AUTH"
    # A client that sends the wrong key hash anyway is closed without an answer.
    wrong = ClientHandshake(7, b"\x01" * 32).encode()
    [s_event] = server.receive_block(wrong)
    assert s_event == HandshakeFailed("IDENTITY", s_event.detail)
    assert server.state is State.CLOSED and server.data_to_send() == b""


def test_no_common_version(smp_credentials):
    server = _server(smp_credentials, VersionRange(6, 7))
    client = _client(smp_credentials, VersionRange(8, V.MAX_VERSION))
    [hello] = split_blocks(server.data_to_send())
    [event] = client.receive_block(hello)
    assert isinstance(event, HandshakeFailed) and event.reason == "VERSION"
    assert client.state is State.CLOSED and client.data_to_send() == b""
    # A client choosing a version the server does not offer is closed.
    [s_event] = server.receive_block(ClientHandshake(9, smp_credentials.key_hash).encode())
    assert s_event.reason == "VERSION" and server.state is State.CLOSED


def test_bad_blocks_in_the_handshake(smp_credentials):
    server = _server(smp_credentials)
    [event] = server.receive_block(b"\x00\x05hello" + b"#" * (V.BLOCK_SIZE - 7))
    assert event.reason == "HANDSHAKE PARSE" and server.state is State.CLOSED
    with pytest.raises(SessionError):
        server.receive_block(b"#" * V.BLOCK_SIZE)  # nothing is read after close
    client = _client(smp_credentials)
    [event] = client.receive_block(core.pad(b"\xff", V.BLOCK_SIZE))
    assert event.reason == "HANDSHAKE PARSE"
    # A session id that is not the TLS channel's.
    other = ServerHandshake(VersionRange(6, 6), b"\x07" * 32).encode()
    [event] = _client(smp_credentials).receive_block(other)
    assert event.reason == "SESSION"


def test_a_bad_service_block_fails_the_handshake(smp_credentials):
    server = _server(smp_credentials)
    hello = ClientHandshake(16, smp_credentials.key_hash).encode_content()
    bad_service = hello[:-1] + b"1" + b"Z"  # Maybe service: Just, with an unknown role
    [event] = server.receive_block(core.pad(bad_service, V.BLOCK_SIZE))
    assert event.reason == "HANDSHAKE PARSE" and server.state is State.CLOSED
    assert ClientService  # the service type is what the v16 block carries


def test_a_v7_server_hello_without_a_signed_key_is_refused(smp_credentials):
    hello = ServerHandshake(VersionRange(6, 7), SESSION_ID, None).encode()
    [event] = _client(smp_credentials).receive_block(hello)
    assert event.reason == "HANDSHAKE BAD_AUTH"


def test_the_handshake_times_out_with_the_time_passed_in(smp_credentials):
    server = _server(smp_credentials, deadline=100.0)
    assert server.handle_timer(99.9) == [] and server.state is State.AWAITING_HELLO
    [event] = server.handle_timer(100.0)
    assert event.reason == "TIMEOUT" and server.state is State.CLOSED
    established = _server(smp_credentials, deadline=100.0)
    exchange_hellos(established, _client(smp_credentials))
    assert established.deadline is None and established.handle_timer(1e9) == []


def test_an_undecryptable_block_is_answered_and_the_chain_goes_on(smp_credentials):
    server = _server(smp_credentials)
    client = _client(smp_credentials)
    exchange_hellos(server, client)
    assert server.encrypts_blocks
    [event] = server.receive_block(os.urandom(V.BLOCK_SIZE))
    assert event == BlockReceived(b"")  # answered ERR BLOCK by the shell
    # The chain advanced on both sides for that block only if the client sent it; a block
    # the client really sends after a lost one is out of step, as in the reference.
    client.send_batches([[encode_client_transmission(V.MAX_VERSION, SESSION_ID, b"x", b"", C.PING)]])
    [event] = server.receive_block(client.data_to_send())
    assert event == BlockReceived(b"")


def test_sending_before_the_handshake_is_a_usage_error(smp_credentials):
    client = _client(smp_credentials)
    with pytest.raises(SessionError):
        client.send_batches([[b"x"]])


def test_an_answer_too_large_for_a_block_is_dropped_alone(smp_credentials):
    server = _server(smp_credentials)
    client = _client(smp_credentials, VersionRange(V.MIN_VERSION, 7))
    exchange_hellos(server, client)
    small = encode_server_transmission(7, SESSION_ID, b"a", b"", C.PONG)
    huge = b"\x00" * (V.BATCH_BUDGET - 1)
    server.send_batches([[small, huge, small]])
    [block] = split_blocks(server.data_to_send())
    assert server.dropped == 1
    [event] = client.receive_block(block)
    answers = decode_client_transmissions(event.plaintext, 7, SESSION_ID)
    assert [(a.corr_id, a.response) for a in answers] == [(b"a", C.PONG), (b"a", C.PONG)]


@pytest.mark.parametrize(("server_max", "version"), [(18, 18), (12, 10), (11, 10), (10, 10), (8, 8), (7, 7)])
def test_a_proxy_link_shares_the_session_secret_without_block_encryption(smp_credentials, server_max, version):
    """A proxy (proxy_server, v14 flag) gets no block encryption, caps at v10 towards relays
    below v14, and both ends hold the same session secret (the RFWD/RRES layer's key)."""
    server = _server(smp_credentials, VersionRange(V.MIN_VERSION, server_max))
    client = _client(smp_credentials, proxy_server=True)
    [hello] = split_blocks(server.data_to_send())
    [c_event] = client.receive_block(hello)
    [client_hello] = split_blocks(client.data_to_send())
    assert ClientHandshake.parse(client_hello).proxy_server is (version >= V.PROXY_SERVER_HANDSHAKE)
    [s_event] = server.receive_block(client_hello)
    assert c_event.version == s_event.version == version
    assert not c_event.block_encryption and not server.encrypts_blocks and not client.encrypts_blocks
    assert client.session_box_key is not None and client.session_box_key == server.session_box_key


def test_a_client_without_a_key_has_no_session_secret(smp_credentials):
    server = _server(smp_credentials)
    client = ClientSession(SESSION_ID, smp_credentials.creds.key_hash, VersionRange(6, 18), verify_server_chain,
                           smp_credentials.creds.chain_der[0], None)
    exchange_hellos(server, client)
    assert server.state is State.ESTABLISHED and server.session_box_key is None and client.session_box_key is None
