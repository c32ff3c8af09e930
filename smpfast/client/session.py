"""Opening an SMP session: parse the address, TLS with the fingerprint pinned, then the SMP
handshake, which the sans-IO ``protocol.session.ClientSession`` runs (this module only moves
its blocks)."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

import trio

from ..crypto.keys import Alg, PrivateKey
from ..protocol import versions as V
from ..protocol.address import DEFAULT_PORT, SMPServer, parse_server_address
from ..protocol.session import BlockLayer, ClientSession, HandshakeFailed, ServiceCredentials, ServiceIdentity, State
from ..protocol.versions import VersionRange
from ..transport import (
    CLIENT_ALPN,
    BlockConnection,
    ClientCertificateContext,
    TransportError,
    open_block_connection,
    verify_server_chain,
)
from .errors import ConnectError, HandshakeError

CONNECT_TIMEOUT = 30.0


@dataclass(slots=True)
class Session:
    """A connection after a successful SMP handshake."""

    conn: BlockConnection
    server: SMPServer
    basic_auth: bytes | None
    version: int
    session_id: bytes
    server_vrange: VersionRange
    server_session_key: bytes | None  # raw X25519 key the server signed (v >= 7)
    # The session's block layer: packing (and v11 encryption) of requests, decryption of
    # answers; a request too large for a block raises instead of being dropped.
    blocks: BlockLayer = field(default_factory=lambda: BlockLayer(drop_oversize=False))
    leftover: list[bytes] = field(default_factory=list)  # blocks received with the hello
    service: ServiceIdentity | None = None  # a service session's service (v16+)


def parse_address(address: str | SMPServer) -> tuple[SMPServer, bytes | None]:
    """``smp://fingerprint[:password]@host[,host...][:port]`` (or an SMPServer) →
    (server, basic auth or None). Raises ValueError (ParseError) on a bad address."""
    if isinstance(address, SMPServer):
        return address, None
    return parse_server_address(address)


def _port(server: SMPServer) -> int:
    return int(server.port) if server.port else DEFAULT_PORT


async def open_session(
    address: str | SMPServer,
    *,
    min_version: int = V.MIN_VERSION,
    max_version: int | None = None,
    alpn: list[str] | None = list(CLIENT_ALPN),
    timeout: float | None = CONNECT_TIMEOUT,
    block_encryption: bool = True,
    service: ServiceCredentials | None = None,
) -> Session:
    """TLS + SMP handshake with the server at ``address``; hosts are tried in order. With
    ``service``, its chain is the TLS client certificate and, when the server asked for it
    at v16+, the session is a service session (``Session.service``)."""
    server, basic_auth = parse_address(address)
    wanted = VersionRange(min_version, V.MAX_VERSION if max_version is None else max_version)
    try:
        with trio.fail_after(math.inf if timeout is None else timeout):
            cert_ctx = None
            if service is not None:
                cert_ctx = ClientCertificateContext(service.chain, service.leaf_key, alpn)
            conn = await _connect(server, alpn, cert_ctx)
            try:
                return await _handshake(conn, server, basic_auth, wanted, block_encryption, service, cert_ctx)
            except BaseException:
                with trio.CancelScope(shield=True):
                    await conn.aclose()
                raise
    except trio.TooSlowError:
        raise ConnectError(f"connecting to {server} took more than {timeout} s") from None


async def _connect(
    server: SMPServer, alpn: list[str] | None, cert_ctx: ClientCertificateContext | None = None
) -> BlockConnection:
    error: TransportError | None = None
    for host in server.hosts:
        try:
            # The caller's fail_after bounds the whole connect.
            return await open_block_connection(
                host, _port(server), server.key_hash, alpn=alpn, timeout=None,
                ssl_context=None if cert_ctx is None else cert_ctx.context,
            )
        except TransportError as e:
            error = e
    raise ConnectError(f"cannot connect to {server}: {error}") from error


async def _handshake(
    conn: BlockConnection,
    server: SMPServer,
    basic_auth: bytes | None,
    wanted: VersionRange,
    want_encryption: bool,
    service: ServiceCredentials | None = None,
    cert_ctx: ClientCertificateContext | None = None,
) -> Session:
    session_id = conn.tls_unique
    if session_id is None:
        raise HandshakeError("SESSION", "no tls-unique channel binding")
    peer = conn.peer_chain_der
    proto = ClientSession(
        session_id,
        server.key_hash,
        wanted,
        verify_server_chain,
        peer[0] if peer else None,
        PrivateKey.generate(Alg.X25519).raw,
        want_encryption,
        service=service,
        service_private=None if service is None else os.urandom(32),
        certificate_sent=cert_ctx is not None and cert_ctx.requested,
    )
    try:
        blocks = await conn.receive_blocks()
    except TransportError as e:
        raise HandshakeError("HANDSHAKE CLOSED", str(e)) from e
    if not blocks:
        raise HandshakeError("HANDSHAKE CLOSED", "the server closed the connection")
    # [Established], [HandshakeFailed], or [] when a service waits for the third block
    for event in proto.receive_block(blocks[0]):
        if isinstance(event, HandshakeFailed):
            raise HandshakeError(event.reason, event.detail)
    try:
        await conn.send(proto.data_to_send())
    except TransportError as e:
        raise HandshakeError("HANDSHAKE CLOSED", str(e)) from e
    leftover = blocks[1:]
    if proto.state is State.AWAITING_SERVICE:  # a service: the server answers a third block
        if not leftover:
            try:
                leftover = await conn.receive_blocks()
            except TransportError as e:
                raise HandshakeError("HANDSHAKE CLOSED", str(e)) from e
            if not leftover:
                raise HandshakeError("HANDSHAKE CLOSED", "the server closed the connection")
        [event] = proto.receive_block(leftover[0])
        leftover = leftover[1:]
        if isinstance(event, HandshakeFailed):
            raise HandshakeError(event.reason, event.detail)
    assert proto.server_vrange is not None
    assert proto.blocks is not None
    return Session(conn, server, basic_auth, proto.version, session_id, proto.server_vrange,
                   proto.server_session_key, proto.blocks, leftover=leftover,
                   service=proto.service)
