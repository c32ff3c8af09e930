"""SMP transport handshake blocks (sent after TLS, never block-encrypted) and version
negotiation.

Each handshake message is one block ``pad(message, 16384)``. Parsing is lenient like the
reference's (``parseOnly``): bytes after the last field are ignored.

- server → client: ``ServerHandshake``: version range, session id (tls-unique), and from
  max version 7 the certificate chain with the signed per-connection X25519 key.
- client → server: ``ClientHandshake``: chosen version, expected server key hash, from v7
  an optional X25519 key (not Maybe-tagged: present or absent), from v14 ``proxy_server``,
  from v16 an optional service (role, certificate chain, signed Ed25519 key).
- server → client, only after a client service (v16+): ``HandshakeResponse``:
  ``'R'`` service id or ``'E'`` transport error.
"""

from __future__ import annotations

from dataclasses import dataclass

from .. import _core
from . import versions as V
from .commands import CertChainPubKey, ServiceRole, read_cert_chain_pub_key, read_version_range
from .encoding import Reader, X25519_SPKI_PREFIX
from .errors import ParseError, TransportError, read_transport_error
from .versions import VersionRange

HANDSHAKE_BLOCK = V.BLOCK_SIZE
SERVER_VRANGE = VersionRange(V.MIN_VERSION, V.MAX_VERSION)  # offered when ALPN was negotiated
LEGACY_SERVER_VRANGE = VersionRange(V.MIN_VERSION, V.MIN_VERSION)  # offered without ALPN
CLIENT_VRANGE = VersionRange(V.MIN_VERSION, V.MAX_VERSION)


def proxied_vrange(server_max: int) -> VersionRange:
    """The cap on the relay range a proxy returns in PKEY, for a proxy whose announced
    max is ``server_max`` (8..17 at 18, 8..20 at 20: versions.proxied_max_version)."""
    return VersionRange(V.SENDING_PROXY, V.proxied_max_version(server_max))


PROXIED_VRANGE = proxied_vrange(V.SERVER_MAX_VERSION)  # the PKEY range cap of a proxy announcing our range


def _short(b: bytes) -> bytes:
    if len(b) > 255:
        raise ValueError("short string longer than 255 bytes")
    return bytes((len(b),)) + b


def _w16(n: int) -> bytes:
    return n.to_bytes(2, "big")


def _content(block: bytes) -> Reader:
    try:
        return Reader(_core.unpad(block))
    except _core.FramingError as e:
        raise ParseError(str(e)) from e


def _block(content: bytes) -> bytes:
    return _core.pad(content, HANDSHAKE_BLOCK)


class _HandshakeBlock:
    """A handshake message sent as one padded 16384-byte block (never block-encrypted).
    Subclasses define ``encode_content`` and ``_read``; parsing ignores trailing bytes, as
    the reference does, and raises only ParseError (the reference: HANDSHAKE PARSE)."""

    __slots__ = ()

    def encode_content(self) -> bytes:
        raise NotImplementedError

    def encode(self) -> bytes:
        """The padded 16384-byte block."""
        return _block(self.encode_content())

    @classmethod
    def parse_content(cls, content: bytes):
        return _parse(cls._read, content)

    @classmethod
    def parse(cls, block: bytes):
        """Parse the padded block."""
        return _parse(cls._read, None, block)

    @classmethod
    def _read(cls, r: Reader):
        raise NotImplementedError


@dataclass(slots=True)
class ServerHandshake(_HandshakeBlock):
    """``cert_key`` (chain + signed session key) goes on the wire only when
    ``vrange.max >= 7``; a real server always sends it then."""

    vrange: VersionRange
    session_id: bytes
    cert_key: CertChainPubKey | None = None

    def encode_content(self) -> bytes:
        out = _w16(self.vrange.min) + _w16(self.vrange.max) + _short(self.session_id)
        if self.vrange.max >= V.AUTH_CMDS and self.cert_key is not None:
            out += self.cert_key.encode()
        return out

    @classmethod
    def _read(cls, r: Reader) -> "ServerHandshake":
        vr = read_version_range(r)
        sid = r.short_string()
        ck = None
        if vr.max >= V.AUTH_CMDS:
            save = r.pos
            try:
                ck = read_cert_chain_pub_key(r)
            except ParseError:  # `optional`: absent or unparsable → no key
                r.pos = save
        return cls(vr, sid, ck)


@dataclass(slots=True)
class ClientService:
    """A service client's credentials in the client hello (v16+): role, its TLS
    certificate chain and an Ed25519 session key signed by the leaf certificate."""

    role: ServiceRole
    cert_key: CertChainPubKey

    def encode(self) -> bytes:
        return self.role.value.encode() + self.cert_key.encode()


_ROLES = {r.value.encode()[0]: r for r in ServiceRole}


def _read_service(r: Reader) -> ClientService:
    role = _ROLES.get(r.byte())
    if role is None:
        raise ParseError("bad SMPServiceRole")
    return ClientService(role, read_cert_chain_pub_key(r))


@dataclass(slots=True)
class ClientHandshake(_HandshakeBlock):
    """``client_key``: X25519 SPKI DER (v7+, present or absent; enables block encryption
    from v11 unless ``proxy_server``); ``proxy_server`` is sent from v14, ``service`` (a
    Maybe) from v16. Fields a version lacks are dropped when encoding."""

    version: int
    key_hash: bytes
    client_key: bytes | None = None
    proxy_server: bool = False
    service: ClientService | None = None

    def encode_content(self) -> bytes:
        v = self.version
        out = _w16(v) + _short(self.key_hash)
        if v >= V.AUTH_CMDS and self.client_key is not None:
            out += _short(self.client_key)
        if v >= V.PROXY_SERVER_HANDSHAKE:
            out += b"T" if self.proxy_server else b"F"
        if v >= V.SERVICE_CERTS:
            out += b"0" if self.service is None else b"1" + self.service.encode()
        return out

    @classmethod
    def _read(cls, r: Reader) -> "ClientHandshake":
        v = r.word16()
        kh = r.short_string()
        key = None
        if v >= V.AUTH_CMDS:
            # `optional` X25519 key: if the next field does not decode as one, it is absent
            save = r.pos
            try:
                key = r.x25519_key()
            except ParseError:
                r.pos = save
        proxy = r.boolean() if v >= V.PROXY_SERVER_HANDSHAKE else False
        service = r.maybe(_read_service) if v >= V.SERVICE_CERTS else None
        return cls(v, kh, key, proxy, service)

    @property
    def block_encryption(self) -> bool:
        """Whether the session encrypts blocks (v11+, client key sent, not a proxy)."""
        return block_encryption(self.version, self.client_key is not None, self.proxy_server)


@dataclass(slots=True)
class HandshakeResponse(_HandshakeBlock):
    """The optional third block: ``service_id`` on success, else ``error``."""

    service_id: bytes | None = None
    error: TransportError | None = None

    def encode_content(self) -> bytes:
        if (self.service_id is None) == (self.error is None):
            raise ValueError("exactly one of service_id and error")
        if self.service_id is not None:
            return b"R" + _short(self.service_id)
        return b"E" + self.error.encode()  # type: ignore[union-attr]

    @classmethod
    def _read(cls, r: Reader) -> "HandshakeResponse":
        t = r.byte()
        if t == 0x52:  # 'R'
            return cls(service_id=r.short_string())
        if t == 0x45:  # 'E'
            return cls(error=read_transport_error(r))
        raise ParseError("bad SMPServerHandshakeResponse")


def _parse(read, content: bytes | None, block: bytes | None = None):
    r = Reader(content) if content is not None else _content(block)  # type: ignore[arg-type]
    try:
        return read(r)
    except ParseError:
        raise
    except (ValueError, IndexError) as e:
        raise ParseError(str(e)) from e


# ---- negotiation ----


def server_vrange(alpn_negotiated: bool) -> VersionRange:
    """The range a server offers: full with any ALPN, 6..6 without."""
    return SERVER_VRANGE if alpn_negotiated else LEGACY_SERVER_VRANGE


def client_version(server: VersionRange, client: VersionRange = CLIENT_VRANGE, proxy_server: bool = False) -> int | None:
    """The version a client picks: the max of the intersection, or None (TEVersion).

    A proxy (``proxy_server``) talking to a relay whose max is below 14 caps its own max
    at ``max(client.min, 10)`` (no block encryption between them).
    """
    if proxy_server and server.max < V.PROXY_SERVER_HANDSHAKE:
        client = VersionRange(client.min, max(client.min, V.DELETED_EVENT))
    both = server.intersect(client)
    return None if both is None else both.max


def client_sends_service(role: ServiceRole, version: int) -> bool:
    """Whether a client with service credentials puts them in its hello at ``version``: a
    messaging service from v19, a notifier or proxy service from v16. A client that does
    not send them must not wait for the server's service block either (the reference's
    fix #1790 for new messaging services talking to v16-18 servers)."""
    if role is ServiceRole.MESSAGING:
        return version >= V.RCV_SERVICE
    return version >= V.SERVICE_CERTS


def server_accepts(server: VersionRange, version: int) -> bool:
    """The server accepts the client's version iff it lies within its own range."""
    return server.min <= version <= server.max


def block_encryption(version: int, client_key_sent: bool, proxy_server: bool) -> bool:
    return version >= V.ENCRYPTED_BLOCK and client_key_sent and not proxy_server


def is_x25519_der(der: bytes) -> bool:
    return len(der) == 44 and der[:12] == X25519_SPKI_PREFIX
