"""The client's SMP handshake checks against scripted server hellos over
real TLS on 127.0.0.1: session id, signed session key, handshake chain, versions."""

from __future__ import annotations

import os

import nacl.bindings as nb
import pytest
import trio

import smpfast.client as sc
from smpfast.credentials import create_credentials, load_server_credentials
from smpfast.crypto.keys import Alg, PublicKey, generate_private_key
from smpfast.crypto.session_key import sign_session_key
from smpfast.protocol.commands import CertChainPubKey
from smpfast.protocol.handshake import ClientHandshake, ServerHandshake
from smpfast.protocol.versions import MAX_VERSION, VersionRange
from smpfast.transport import serve_blocks, server_context


@pytest.fixture(scope="module")
def other_credentials(tmp_path_factory):
    d = tmp_path_factory.mktemp("other-credentials")
    create_credentials(d, "127.0.0.1")
    return load_server_credentials(d)


def _hello(conn, creds, *, vrange=VersionRange(6, 7), session_id=None, signer=None, chain=None,
           with_key=True) -> bytes:
    public = nb.crypto_scalarmult_base(os.urandom(32))
    cert_key = None
    if with_key:
        signed = sign_session_key(PublicKey(Alg.X25519, public), signer or creds.private_key)
        cert_key = CertChainPubKey(list(chain or creds.chain_der), signed)
    sid = conn.tls_unique if session_id is None else session_id
    return ServerHandshake(vrange, sid, cert_key).encode()


async def _scripted(smp_credentials, make_hello, connect_kwargs=None):
    """Serve one scripted hello; returns (client result or exception, client hello)."""
    d = smp_credentials.directory
    ctx = server_context(str(d / "server.crt"), str(d / "server.key"), cafile=str(d / "ca.crt"))
    received = []

    async def handler(conn):
        hello = make_hello(conn)
        if hello is None:
            return  # close at once
        await conn.send(hello)
        blocks = await conn.receive_blocks()
        if blocks:
            received.append(ClientHandshake.parse(blocks[0]))

    async with trio.open_nursery() as nursery:
        [listener] = await nursery.start(lambda task_status: serve_blocks(handler, 0, ctx, host="127.0.0.1",
                                                                          task_status=task_status))
        port = listener.socket.getsockname()[1]
        address = f"smp://{smp_credentials.fingerprint}@127.0.0.1:{port}"
        try:
            client = await sc.SMPClient.connect(address, timeout=5, **(connect_kwargs or {}))
            result = client
            await client.aclose()
        except sc.ClientError as e:
            result = e
        await trio.sleep(0.05)  # let the handler record the client hello
        nursery.cancel_scope.cancel()
    return result, received


def test_valid_hello_and_client_hello(smp_credentials, trio_run):
    async def main():
        creds = smp_credentials.creds
        client, [hello] = await _scripted(smp_credentials, lambda conn: _hello(conn, creds))
        assert isinstance(client, sc.SMPClient) and client.version == 7
        assert hello.version == 7 and hello.key_hash == creds.key_hash
        assert hello.client_key is not None and len(hello.client_key) == 44
        client, [hello] = await _scripted(
            smp_credentials, lambda conn: _hello(conn, creds, vrange=VersionRange(6, 6), with_key=False)
        )
        assert client.version == 6 and hello.version == 6 and hello.client_key is None

    trio_run(main)


def _bad_cases(creds, other):
    wrong_signer = generate_private_key(Alg.ED25519)
    return {
        "SESSION": lambda conn: _hello(conn, creds, session_id=os.urandom(32)),
        "HANDSHAKE BAD_AUTH (wrong signer)": lambda conn: _hello(conn, creds, signer=wrong_signer),
        "HANDSHAKE BAD_AUTH (other identity's chain)": lambda conn: _hello(
            conn, creds, chain=other.chain_der, signer=creds.private_key
        ),
        "HANDSHAKE BAD_AUTH (signed by the other server)": lambda conn: _hello(conn, creds, signer=other.private_key),
        "HANDSHAKE BAD_AUTH (no key at v7)": lambda conn: _hello(conn, creds, with_key=False),
        "VERSION": lambda conn: _hello(conn, creds, vrange=VersionRange(MAX_VERSION + 1, MAX_VERSION + 2)),
        "HANDSHAKE PARSE": lambda conn: b"\x00\x01" + bytes(16382),
        "HANDSHAKE CLOSED": lambda conn: None,
    }


@pytest.mark.parametrize("case", [
    "SESSION",
    "HANDSHAKE BAD_AUTH (wrong signer)",
    "HANDSHAKE BAD_AUTH (other identity's chain)",
    "HANDSHAKE BAD_AUTH (signed by the other server)",
    "HANDSHAKE BAD_AUTH (no key at v7)",
    "VERSION",
    "HANDSHAKE PARSE",
    "HANDSHAKE CLOSED",
])
def test_bad_server_hello(smp_credentials, other_credentials, trio_run, case):
    async def main():
        make = _bad_cases(smp_credentials.creds, other_credentials)[case]
        result, client_hellos = await _scripted(smp_credentials, make)
        assert isinstance(result, sc.HandshakeError), result
        assert result.code == case.split(" (")[0]
        assert client_hellos == []  # the client sends nothing after a bad hello

    trio_run(main)
