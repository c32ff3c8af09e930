"""Opening an SMP session: parse the address, TLS with the fingerprint pinned, the SMP
handshake and the block-encryption keys."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import trio
from cryptography import x509

from ..crypto import CryptoError
from ..crypto.blockcrypt import BlockDecryptor, BlockEncryptor, client_block_ciphers
from ..crypto.keys import Alg, PrivateKey, x25519_dh
from ..crypto.session_key import verify_session_key
from ..protocol import versions as V
from ..protocol.address import SMPServer, parse_server_address
from ..protocol.commands import CertChainPubKey
from ..protocol.errors import ParseError
from ..protocol.handshake import ClientHandshake, ServerHandshake, block_encryption, client_version
from ..protocol.versions import VersionRange
from ..transport import (
    CLIENT_ALPN,
    BlockConnection,
    TLSIdentityError,
    TransportError,
    open_block_connection,
    verify_server_chain,
)
from .errors import ConnectError, HandshakeError

DEFAULT_PORT = 5223
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
    encryptor: BlockEncryptor | None = None
    decryptor: BlockDecryptor | None = None
    leftover: list[bytes] = field(default_factory=list)  # blocks received with the hello


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
) -> Session:
    """TLS + SMP handshake with the server at ``address``; hosts are tried in order."""
    server, basic_auth = parse_address(address)
    wanted = VersionRange(min_version, V.MAX_VERSION if max_version is None else max_version)
    try:
        with trio.fail_after(math.inf if timeout is None else timeout):
            conn = await _connect(server, alpn)
            try:
                return await _handshake(conn, server, basic_auth, wanted, block_encryption)
            except BaseException:
                with trio.CancelScope(shield=True):
                    await conn.aclose()
                raise
    except trio.TooSlowError:
        raise ConnectError(f"connecting to {server} took more than {timeout} s") from None


async def _connect(server: SMPServer, alpn: list[str] | None) -> BlockConnection:
    error: TransportError | None = None
    for host in server.hosts:
        try:
            # The caller's fail_after bounds the whole connect.
            return await open_block_connection(host, _port(server), server.key_hash, alpn=alpn, timeout=None)
        except TransportError as e:
            error = e
    raise ConnectError(f"cannot connect to {server}: {error}") from error


async def _handshake(
    conn: BlockConnection,
    server: SMPServer,
    basic_auth: bytes | None,
    wanted: VersionRange,
    want_encryption: bool,
) -> Session:
    session_id = conn.tls_unique
    if session_id is None:
        raise HandshakeError("SESSION", "no tls-unique channel binding")
    try:
        blocks = await conn.receive_blocks()
    except TransportError as e:
        raise HandshakeError("HANDSHAKE CLOSED", str(e)) from e
    if not blocks:
        raise HandshakeError("HANDSHAKE CLOSED", "the server closed the connection")
    try:
        hello = ServerHandshake.parse(blocks[0])
    except ParseError as e:
        raise HandshakeError("HANDSHAKE PARSE", str(e)) from e
    if hello.session_id != session_id:
        raise HandshakeError("SESSION", "session id differs from tls-unique")
    version = client_version(hello.vrange, wanted)
    if version is None:
        raise HandshakeError("VERSION", f"server offers {hello.vrange}, client wants {wanted}")
    server_key = None
    if hello.cert_key is not None:
        server_key = _verify_server_key(hello.cert_key, conn, server.key_hash)
    elif version >= V.AUTH_CMDS:
        # The reference client tolerates this, but then cannot use X25519 authorization;
        # a server offering v7+ always signs a key, so its absence is a server fault.
        raise HandshakeError("HANDSHAKE BAD_AUTH", "no signed session key at v7+")
    # The client key enables X25519 DH for block encryption (v11+); below v11 it is sent
    # anyway, as the reference client does.
    client_private = client_public = None
    if version >= V.AUTH_CMDS and (version < V.ENCRYPTED_BLOCK or want_encryption):
        key = PrivateKey.generate(Alg.X25519)
        client_private, client_public = key.raw, key.public.der
    try:
        await conn.send(ClientHandshake(version, server.key_hash, client_public).encode())
    except TransportError as e:
        raise HandshakeError("HANDSHAKE CLOSED", str(e)) from e
    session = Session(conn, server, basic_auth, version, session_id, hello.vrange, server_key,
                      leftover=blocks[1:])
    if block_encryption(version, client_public is not None, False):
        assert server_key is not None and client_private is not None
        secret = x25519_dh(client_private, server_key)
        session.encryptor, session.decryptor = client_block_ciphers(session_id, secret)
    return session


def _verify_server_key(cert_key: CertChainPubKey, conn: BlockConnection, key_hash: bytes) -> bytes:
    """The server's raw X25519 session key, checked like the reference client: the
    handshake chain proves the identity, the key is signed by the TLS leaf certificate
    (from the TLS peer chain, not from the handshake)."""
    try:
        verify_server_chain(list(cert_key.chain), key_hash)
    except TLSIdentityError as e:
        raise HandshakeError("HANDSHAKE BAD_AUTH", f"handshake chain: {e}") from e
    peer = conn.peer_chain_der
    if not peer:
        raise HandshakeError("HANDSHAKE BAD_AUTH", "no TLS peer certificate")
    try:
        leaf = x509.load_der_x509_certificate(peer[0])
        return verify_session_key(cert_key.signed_key, leaf)
    except (CryptoError, ValueError) as e:
        raise HandshakeError("HANDSHAKE BAD_AUTH", f"signed session key: {e}") from e
