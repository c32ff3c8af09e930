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
from ..protocol.commands import CertChainPubKey
from ..protocol.address import DEFAULT_PORT, SMPServer, parse_server_address
from ..protocol.session import BlockLayer, ClientSession, HandshakeFailed, ServiceCredentials, ServiceIdentity, State
from ..protocol.versions import VersionRange
from ..transport.hosts import NoUsableHost, routes
from ..transport.socks import SocksProxy, parse_socks_proxy
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
    host: str = ""  # the host of the address that was reached
    via_socks: bool = False
    session_box_key: bytes | None = None  # the handshake DH's box key (proxy links: RFWD)
    server_cert_key: CertChainPubKey | None = None  # the server's chain and signed key (PKEY)


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
    socks: SocksProxy | str | None = None,
    socks_mode: str = "always",
    host_mode: str = "public",
    required_host_mode: bool = False,
    proxy_server: bool = False,
) -> Session:
    """TLS + SMP handshake with the server at ``address``: its hosts are tried in order of
    ``host_mode`` until one connects (``transport.hosts``), ``.onion`` hosts only through
    the SOCKS5 proxy ``socks`` (used for every host with ``socks_mode`` "always", for
    ``.onion`` hosts only with "onion"). ``proxy_server``: the v14 handshake flag of an SMP
    proxy's link to a relay (no block encryption; v10 at most towards relays below v14).
    With ``service``, its chain is the TLS client certificate and, when the server asked
    for it at v16+, the session is a service session (``Session.service``)."""
    server, basic_auth = parse_address(address)
    if isinstance(socks, str):
        socks = parse_socks_proxy(socks)
    wanted = VersionRange(min_version, V.MAX_VERSION if max_version is None else max_version)
    try:
        tries = routes(server.hosts, socks=socks is not None, socks_mode=socks_mode,
                       host_mode=host_mode, required_host_mode=required_host_mode)
    except NoUsableHost as e:
        raise ConnectError(f"cannot connect to {server}: {e}", code="HOST") from None
    try:
        with trio.fail_after(math.inf if timeout is None else timeout):
            cert_ctx = None
            if service is not None:
                cert_ctx = ClientCertificateContext(service.chain, service.leaf_key, alpn)
            conn, route = await _connect(server, tries, alpn, socks, cert_ctx)
            try:
                session = await _handshake(conn, server, basic_auth, wanted, block_encryption, proxy_server,
                                           service, cert_ctx)
            except BaseException:
                with trio.CancelScope(shield=True):
                    await conn.aclose()
                raise
            session.host, session.via_socks = route.host, route.via_socks
            return session
    except trio.TooSlowError:
        raise ConnectError(f"connecting to {server} took more than {timeout} s", code="TIMEOUT") from None


async def _connect(server: SMPServer, tries, alpn: list[str] | None, socks: SocksProxy | None,
                   cert_ctx: ClientCertificateContext | None = None):
    error: TransportError | None = None
    for route in tries:
        try:
            # The caller's fail_after bounds the whole connect.
            conn = await open_block_connection(route.host, _port(server), server.key_hash, alpn=alpn, timeout=None,
                                               socks=socks if route.via_socks else None,
                                               ssl_context=None if cert_ctx is None else cert_ctx.context)
            return conn, route
        except TransportError as e:
            error = e
    raise ConnectError(f"cannot connect to {server}: {error}") from error


async def _handshake(
    conn: BlockConnection,
    server: SMPServer,
    basic_auth: bytes | None,
    wanted: VersionRange,
    want_encryption: bool,
    proxy_server: bool = False,
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
        proxy_server,
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
                   service=proto.service, session_box_key=proto.session_box_key,
                   server_cert_key=proto.server_cert_key)
