"""SMP sessions, sans-IO: the handshake and the block layer of one connection, both ends.

A session sits between a TLS stream of 16 KB blocks and the transmissions inside them. It
owns version negotiation, the handshake blocks, the server key-hash check, the v7 signed
session key, the v11 block-encryption chains and the packing of answer batches into blocks.
It does no I/O and reads no clock: the shell feeds it received blocks (``receive_block``),
takes what it must write (``data_to_send``), and passes the time in (``handle_timer``).

    server:  AWAITING_HELLO --client hello ok--> ESTABLISHED --close()--> CLOSED
                    |\\--bad hello / timeout--> CLOSED (nothing is sent, as the reference)
                    \\--hello with a service (v16+)--> AWAITING_SERVICE
             AWAITING_SERVICE --accept_service(id)--> ESTABLISHED ('R' block queued)
                    \\--reject_service()--> CLOSED ('E' block queued); timeout--> CLOSED
    client:  AWAITING_HELLO --server hello ok--> ESTABLISHED (client hello queued)
                    |\\--bad hello / timeout--> CLOSED with HandshakeFailed
                    \\--server hello ok, service presented--> AWAITING_SERVICE
             AWAITING_SERVICE --'R' block--> ESTABLISHED;  --'E' block / timeout--> CLOSED

Services (v16, the reference's smpServerHandshake): a client whose TLS certificate was asked
for and sent may add a service to its hello: a role and a certificate chain with an Ed25519
session key signed by the chain's leaf. The server checks that the chain is the TLS chain,
that it is self-signed or 2-4 long, and the signature (else it answers an 'E HANDSHAKE
BAD_AUTH' block and closes). Then the shell finds or creates the service record for the
identity certificate's hash (``ServiceRequested``) and answers ``accept_service`` ('R' and
the service id) or ``reject_service`` ('E HANDSHAKE BAD_SERVICE', then close). This third
block is never block-encrypted.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from cryptography import x509

from .. import _core as core
from ..crypto import chains
from ..crypto.blockcrypt import BlockDecryptor, BlockEncryptor, client_block_ciphers, server_block_ciphers
from ..crypto import session_key as skey
from ..crypto.keys import Alg, KeyFormatError, PrivateKey, x25519_dh
from . import versions as V
from .commands import CertChainPubKey, ServiceRole
from .errors import ParseError, TransportError
from .handshake import (
    ClientHandshake,
    ClientService,
    HandshakeResponse,
    ServerHandshake,
    block_encryption,
    client_sends_service,
    client_version,
)
from .versions import VersionRange


_MAX_TRANSMISSION = V.BATCH_BUDGET - 2  # a transmission and its length prefix fill a block
_BAD_AUTH = TransportError("HANDSHAKE", "BAD_AUTH")
_BAD_SERVICE = TransportError("HANDSHAKE", "BAD_SERVICE")
_SERVICE_KEY_ALGS = frozenset((Alg.ED25519,))  # the service session key (x509ToPublic')


class State(enum.Enum):
    AWAITING_HELLO = "awaiting hello"
    AWAITING_SERVICE = "awaiting service block"
    ESTABLISHED = "established"
    CLOSED = "closed"


# Which state may follow which: a transition outside this table is a bug.
_TRANSITIONS = {
    State.AWAITING_HELLO: {State.AWAITING_SERVICE, State.ESTABLISHED, State.CLOSED},
    State.AWAITING_SERVICE: {State.ESTABLISHED, State.CLOSED},
    State.ESTABLISHED: {State.CLOSED},
    State.CLOSED: set(),
}


class SessionError(Exception):
    """The session was used in a state that does not allow it."""


@dataclass(frozen=True, slots=True)
class ServiceIdentity:
    """The service of a service session (the reference's THClientService).

    ``cert_hash``: SHA-256 of the service's identity certificate (raw 32 bytes), which the
    queue keys' authorizations cover too; ``key``: the raw Ed25519 session key that signs
    the session's service signatures: public on the server, private on the client."""

    service_id: bytes
    role: ServiceRole
    cert_hash: bytes
    key: bytes


@dataclass(frozen=True, slots=True)
class ServiceCredentials:
    """What a client needs to present a service: its role, its TLS certificate chain (DER,
    leaf first) and the leaf's private key (signs the session key)."""

    role: ServiceRole
    chain: tuple[bytes, ...]
    leaf_key: object  # Ed25519/Ed448 private key (ours, PyNaCl's or ``cryptography``'s)

    @property
    def cert_hash(self) -> bytes:
        identity = chains.chain_roles(self.chain).identity
        if identity is None:
            raise ValueError("a service chain has 1 to 4 certificates")
        return chains.certificate_hash(identity)


@dataclass(frozen=True, slots=True)
class Established:
    """The handshake succeeded: transmissions may flow. ``service``: the session's service
    (v16+ service sessions), else None."""

    version: int
    session_id: bytes
    block_encryption: bool
    server_session_key: bytes | None  # raw X25519 key the server signed (v7+)
    service: ServiceIdentity | None = None


@dataclass(frozen=True, slots=True)
class ServiceRequested:
    """Server side: the client presented a valid service. The shell finds the service
    record with this certificate hash (or creates one, committed, with a new id), then calls
    ``accept_service(service_id)``, or ``reject_service()`` when the store fails or the
    record has another role (the reference: HANDSHAKE BAD_SERVICE)."""

    role: ServiceRole
    chain: tuple[bytes, ...]
    cert_hash: bytes


@dataclass(frozen=True, slots=True)
class HandshakeFailed:
    """The handshake failed; ``reason`` is the reference's handshake error (VERSION,
    IDENTITY, SESSION, HANDSHAKE PARSE, HANDSHAKE BAD_AUTH, TIMEOUT ...)."""

    reason: str
    detail: str = ""


@dataclass(frozen=True, slots=True)
class BlockReceived:
    """A block after the handshake, decrypted when the session encrypts blocks: the
    padded batch to split; b"" when it did not decrypt (answered ERR BLOCK; the chain
    has advanced, so the session goes on)."""

    plaintext: bytes


Event = Established | HandshakeFailed | BlockReceived | ServiceRequested


class BlockLayer:
    """An established session's blocks, the one block <-> transmission codec of both ends:
    encoded transmissions, batch by batch, into padded blocks (16368 bytes then encrypted
    into 16384 when v11 block encryption is on), and received blocks back into padded
    plaintext batches.

    ``drop_oversize``: a transmission too large for any block is left out and counted in
    ``dropped`` (what the reference server does with such an answer); otherwise packing
    raises ``_core.FramingError`` before anything of that batch is queued (what a client
    wants: the caller learns its request cannot be sent)."""

    __slots__ = ("encryptor", "decryptor", "drop_oversize", "dropped")

    def __init__(
        self,
        encryptor: BlockEncryptor | None = None,
        decryptor: BlockDecryptor | None = None,
        drop_oversize: bool = True,
    ) -> None:
        self.encryptor = encryptor
        self.decryptor = decryptor
        self.drop_oversize = drop_oversize
        self.dropped = 0

    def pack(self, batches: Iterable[Sequence[bytes]]) -> list[bytes]:
        """Each batch packs into as few blocks as fit; two batches never share a block (as
        the reference writes them)."""
        size = V.ENCRYPTED_BLOCK_PAD if self.encryptor is not None else V.BLOCK_SIZE
        encrypt = self.encryptor.encrypt if self.encryptor is not None else None
        out = []
        for transmissions in batches:
            sizes = [len(t) for t in transmissions]
            try:
                counts = core.group_transmissions(sizes)
            except core.FramingError:
                if not self.drop_oversize:
                    raise
                # The reference drops an answer too large for a block (e.g. a MSG answering a
                # request with a 188+ byte corrId) and keeps the connection.
                transmissions = [t for t in transmissions if len(t) <= _MAX_TRANSMISSION]
                self.dropped += len(sizes) - len(transmissions)
                counts = core.group_transmissions([len(t) for t in transmissions])
            start = 0
            for count in counts:
                block = core.encode_batch(transmissions[start : start + count], size)
                start += count
                out.append(encrypt(block) if encrypt is not None else block)
        return out

    def unpack(self, block: bytes) -> bytes:
        """The padded plaintext batch of a received block; b"" when it does not decrypt
        (the chain has advanced all the same, so the session goes on)."""
        if self.decryptor is None:
            return block
        plaintext = self.decryptor.decrypt_or_none(block)
        return b"" if plaintext is None else plaintext


class _Session:
    """What both ends share: state, the block layer and the output buffer."""

    def __init__(self, session_id: bytes, deadline: float | None, drop_oversize: bool = True) -> None:
        self.session_id = session_id
        self.state = State.AWAITING_HELLO
        self.version = 0
        self.deadline = deadline  # handshake deadline (time passed in), None when done
        self._encryptor: BlockEncryptor | None = None
        self._decryptor: BlockDecryptor | None = None
        self._outgoing: list[bytes] = []
        # X25519(client handshake key, server session key): block encryption's secret, and
        # the proxy link's (RFWD/RRES) box key; None when the client sent no key.
        self.session_secret: bytes | None = None
        self._drop_oversize = drop_oversize
        self.blocks: BlockLayer | None = None  # once established

    # --- state

    def _to(self, state: State) -> None:
        if state not in _TRANSITIONS[self.state]:
            raise SessionError(f"no transition from {self.state.value} to {state.value}")
        self.state = state
        if state is not State.AWAITING_HELLO and state is not State.AWAITING_SERVICE:
            self.deadline = None

    def close(self) -> None:
        if self.state is not State.CLOSED:
            self._to(State.CLOSED)

    def handle_timer(self, now: float) -> list[Event]:
        """Fail the handshake if its deadline has passed."""
        if self.deadline is not None and now >= self.deadline:
            self._to(State.CLOSED)
            return [HandshakeFailed("TIMEOUT", "no handshake in time")]
        return []

    @property
    def encrypts_blocks(self) -> bool:
        return self._encryptor is not None

    @property
    def dropped(self) -> int:
        """Transmissions too large for any block, left out (see BlockLayer)."""
        return 0 if self.blocks is None else self.blocks.dropped

    def _establish(self) -> None:
        self._to(State.ESTABLISHED)
        self.blocks = BlockLayer(self._encryptor, self._decryptor, self._drop_oversize)

    @property
    def session_box_key(self) -> bytes | None:
        """The precomputed box key of ``session_secret`` (the p2r/r2p layers), or None."""
        return None if self.session_secret is None else core.hsalsa20_key(self.session_secret)

    @property
    def implied_session(self) -> bool:
        return V.implied_session(self.version)

    @property
    def service_auth(self) -> bool:
        return V.service_auth(self.version)

    # --- blocks

    def data_to_send(self) -> bytes:
        """Everything queued for the wire, once."""
        out, self._outgoing = self._outgoing, []
        return b"".join(out)

    def blocks_to_send(self) -> list[bytes]:
        """Everything queued for the wire, once, as 16 KB blocks."""
        out, self._outgoing = self._outgoing, []
        return out

    def receive_block(self, block: bytes) -> list[Event]:
        """One 16 KB block from the peer: the hello while the handshake runs, afterwards a
        block of transmissions (decrypted when the session encrypts blocks)."""
        if self.state is State.ESTABLISHED:
            return self._established_block(block)
        if self.state is State.AWAITING_HELLO:
            return self._receive_hello(block)
        if self.state is State.AWAITING_SERVICE:
            return self._receive_service_block(block)
        raise SessionError(f"block received while {self.state.value}")

    def _receive_hello(self, block: bytes) -> list[Event]:
        raise NotImplementedError

    def _receive_service_block(self, block: bytes) -> list[Event]:
        raise SessionError(f"block received while {self.state.value}")

    def _fail(self, reason: str, detail: str) -> list[Event]:
        self._to(State.CLOSED)
        return [HandshakeFailed(reason, detail)]

    def _established_block(self, block: bytes) -> list[Event]:
        return [BlockReceived(self.blocks.unpack(block))]  # b"": answered ERR BLOCK

    def send_batches(self, batches: Iterable[Sequence[bytes]]) -> None:
        """Queue encoded transmissions, batch by batch (see BlockLayer.pack)."""
        if self.state is not State.ESTABLISHED:
            raise SessionError(f"cannot send transmissions while {self.state.value}")
        self._outgoing.extend(self.blocks.pack(batches))


class ServerSession(_Session):
    """The server end. ``start()`` queues the server hello; the client hello then either
    establishes the session or closes it silently."""

    def __init__(
        self,
        session_id: bytes,
        key_hash: bytes,
        chain_der: Sequence[bytes],
        sign_key: object,
        vrange: VersionRange,
        session_private: bytes,
        deadline: float | None = None,
        peer_chain: Sequence[bytes] = (),
    ) -> None:
        """``vrange`` is what this connection offers (6..6 without ALPN); ``sign_key`` the
        TLS key that signs the per-connection X25519 key ``session_private`` (random bytes
        from the caller); ``peer_chain`` the client's TLS certificate chain (DER, leaf
        first; empty when it sent none), which a service in the hello must repeat."""
        super().__init__(session_id, deadline)
        self.key_hash = key_hash
        self.vrange = vrange
        self.session_private = session_private
        self.peer_chain = tuple(bytes(c) for c in peer_chain)
        self.service: ServiceIdentity | None = None
        self._hello_in: ClientHandshake | None = None
        self._service_in: tuple[ServiceRole, bytes, bytes] | None = None  # role, hash, key
        cert_key = None
        if vrange.max >= V.AUTH_CMDS:
            public = PrivateKey(Alg.X25519, session_private).public
            cert_key = CertChainPubKey(list(chain_der), skey.sign_session_key(public, sign_key))
        self._hello = ServerHandshake(vrange, session_id, cert_key)

    def start(self) -> None:
        self._outgoing.append(self._hello.encode())

    def _receive_hello(self, block: bytes) -> list[Event]:
        try:
            hello = ClientHandshake.parse(block)
        except ParseError as e:
            return self._fail("HANDSHAKE PARSE", str(e))
        if hello.key_hash != self.key_hash:
            return self._fail("IDENTITY", "the client expects another server key")
        if hello.version not in self.vrange:
            return self._fail("VERSION", f"client chose {hello.version}, server offers {self.vrange}")
        self.version = hello.version
        if hello.service is not None:  # parsed only at v16+
            try:
                cert_hash, key = self._check_service(hello.service)
            except ValueError as e:
                self._outgoing.append(HandshakeResponse(error=_BAD_AUTH).encode())
                return self._fail("HANDSHAKE BAD_AUTH", str(e))
            self._hello_in = hello
            self._service_in = (hello.service.role, cert_hash, key)
            self._to(State.AWAITING_SERVICE)
            return [ServiceRequested(hello.service.role, tuple(hello.service.cert_key.chain), cert_hash)]
        return self._establish_with(hello)

    def _establish_with(self, hello: ClientHandshake) -> list[Event]:
        if hello.client_key is not None:
            self.session_secret = x25519_dh(self.session_private, hello.client_key[-32:])
        if hello.block_encryption:
            assert self.session_secret is not None
            self._encryptor, self._decryptor = server_block_ciphers(self.session_id, self.session_secret)
        self._establish()
        return [Established(self.version, self.session_id, self._encryptor is not None, None, self.service)]

    def _check_service(self, service: ClientService) -> tuple[bytes, bytes]:
        """The reference's getClientService checks: (certificate hash, raw Ed25519 key), or
        ValueError (answered HANDSHAKE BAD_AUTH)."""
        chain = tuple(bytes(c) for c in service.cert_key.chain)
        if chain != self.peer_chain:
            raise ValueError("the service chain is not the TLS certificate chain")
        roles = chains.chain_roles(chain)
        if roles.shape is not chains.ChainShape.SELF and roles.shape is not chains.ChainShape.VALID:
            raise ValueError(f"bad service certificate chain ({roles.shape.value})")
        assert roles.leaf is not None and roles.identity is not None
        try:
            leaf_key = chains.leaf_verify_key(roles.leaf)
            key = skey.verify_signed_public_key(service.cert_key.signed_key, leaf_key, _SERVICE_KEY_ALGS)
        except (KeyFormatError, skey.SignedKeyError) as e:
            raise ValueError(f"service session key: {e}") from None
        return chains.certificate_hash(roles.identity), key.raw

    def accept_service(self, service_id: bytes) -> list[Event]:
        """After ServiceRequested: the service record's id. Queues the 'R' block and
        establishes the session."""
        if self.state is not State.AWAITING_SERVICE or self._service_in is None or self._hello_in is None:
            raise SessionError(f"accept_service while {self.state.value}")
        if not 0 < len(service_id) <= 255:
            raise ValueError("a service id is 1..255 bytes")
        role, cert_hash, key = self._service_in
        self.service = ServiceIdentity(bytes(service_id), role, cert_hash, key)
        self._outgoing.append(HandshakeResponse(service_id=self.service.service_id).encode())
        return self._establish_with(self._hello_in)

    def reject_service(self, detail: str = "") -> list[Event]:
        """After ServiceRequested: no service record (store error, or its role differs).
        Queues 'E HANDSHAKE BAD_SERVICE' and closes."""
        if self.state is not State.AWAITING_SERVICE:
            raise SessionError(f"reject_service while {self.state.value}")
        self._outgoing.append(HandshakeResponse(error=_BAD_SERVICE).encode())
        return self._fail("HANDSHAKE BAD_SERVICE", detail)

    @property
    def server_session_private(self) -> bytes | None:
        """The X25519 key X25519 authenticators are checked with (v7+)."""
        return self.session_private if self.version >= V.AUTH_CMDS else None


class ClientSession(_Session):
    """The client end. The server hello, checked, queues the client hello and
    establishes the session (the server answers nothing to the hello)."""

    def __init__(
        self,
        session_id: bytes,
        key_hash: bytes,
        wanted: VersionRange,
        verify_chain: Callable[[Sequence[bytes], bytes], None],
        peer_leaf_der: bytes | None,
        client_private: bytes | None,
        want_encryption: bool = True,
        proxy_server: bool = False,
        deadline: float | None = None,
        service: ServiceCredentials | None = None,
        service_private: bytes | None = None,
        certificate_sent: bool = False,
    ) -> None:
        """``verify_chain(chain, key_hash)`` raises for a handshake chain that is not the
        pinned server's; ``peer_leaf_der`` is the TLS leaf that must have signed the
        session key; ``client_private`` random X25519 bytes from the caller (None: send
        no key, so no X25519 DH and no block encryption). A ``service`` is presented, with
        the Ed25519 session key ``service_private`` (random bytes from the caller), when
        the version is 16+ (19+ for a messaging service: handshake.client_sends_service) and
        ``certificate_sent`` (the server asked for the TLS
        certificate and got this service's chain), as the reference client does. A request
        too large for any block makes ``send_batches`` raise ``_core.FramingError`` (nothing
        is dropped)."""
        super().__init__(session_id, deadline, drop_oversize=False)
        if service is not None and service_private is None:
            raise ValueError("a service needs its session key (service_private)")
        self.service_credentials = service
        self.service_private = service_private
        self.certificate_sent = certificate_sent
        self.service: ServiceIdentity | None = None
        self._pending_established: Established | None = None
        self.key_hash = key_hash
        self.wanted = wanted
        self.verify_chain = verify_chain
        self.peer_leaf_der = peer_leaf_der
        self.client_private = client_private
        self.want_encryption = want_encryption
        self.proxy_server = proxy_server
        self.server_vrange: VersionRange | None = None
        self.server_session_key: bytes | None = None
        self.server_cert_key: CertChainPubKey | None = None  # chain + signed key (a proxy's PKEY)

    def _receive_hello(self, block: bytes) -> list[Event]:
        try:
            hello = ServerHandshake.parse(block)
        except ParseError as e:
            return self._fail("HANDSHAKE PARSE", str(e))
        if hello.session_id != self.session_id:
            return self._fail("SESSION", "session id differs from tls-unique")
        version = client_version(hello.vrange, self.wanted, self.proxy_server)
        if version is None:
            return self._fail("VERSION", f"server offers {hello.vrange}, client wants {self.wanted}")
        server_key = None
        if hello.cert_key is not None:
            try:
                server_key = self._verify_server_key(hello.cert_key)
            except ValueError as e:
                return self._fail("HANDSHAKE BAD_AUTH", str(e))
        elif version >= V.AUTH_CMDS:
            # The reference client tolerates this but then cannot use X25519 authorization;
            # a server offering v7+ always signs a key, so its absence is a server fault.
            return self._fail("HANDSHAKE BAD_AUTH", "no signed session key at v7+")
        # The client key enables X25519 DH for block encryption (v11+); below v11 it is
        # sent anyway, as the reference client does.
        private = self.client_private
        if version < V.AUTH_CMDS or (version >= V.ENCRYPTED_BLOCK and not self.want_encryption):
            private = None
        public = None if private is None else PrivateKey(Alg.X25519, private).public.der
        creds = self.service_credentials
        service = None
        if creds is not None and client_sends_service(creds.role, version) and self.certificate_sent:
            service = self._client_service(creds)
        self._outgoing.append(ClientHandshake(version, self.key_hash, public, self.proxy_server, service).encode())
        self.version = version
        self.server_vrange = hello.vrange
        self.server_session_key = server_key
        self.server_cert_key = hello.cert_key if server_key is not None else None
        if server_key is not None and private is not None:
            self.session_secret = x25519_dh(private, server_key)
        if block_encryption(version, public is not None, self.proxy_server):
            assert self.session_secret is not None
            self._encryptor, self._decryptor = client_block_ciphers(self.session_id, self.session_secret)
        established = Established(version, self.session_id, self._encryptor is not None, server_key)
        if service is not None:
            # The server answers a service with a third block: wait for it.
            self._pending_established = established
            self._to(State.AWAITING_SERVICE)
            return []
        self._establish()
        return [established]

    def _client_service(self, creds: ServiceCredentials) -> ClientService:
        public = PrivateKey(Alg.ED25519, self.service_private).public  # type: ignore[arg-type]
        signed = skey.sign_public_key(public, creds.leaf_key)
        return ClientService(creds.role, CertChainPubKey(list(creds.chain), signed))

    def _receive_service_block(self, block: bytes) -> list[Event]:
        """The server's third block: 'R' service id, or 'E' transport error."""
        try:
            answer = HandshakeResponse.parse(block)
        except ParseError as e:
            return self._fail("HANDSHAKE PARSE", str(e))
        if answer.error is not None:
            return self._fail(str(answer.error), "the server refused the service")
        creds, established = self.service_credentials, self._pending_established
        assert creds is not None and established is not None and answer.service_id is not None
        self.service = ServiceIdentity(answer.service_id, creds.role, creds.cert_hash, self.service_private)  # type: ignore[arg-type]
        self._establish()
        return [Established(established.version, established.session_id, established.block_encryption,
                            established.server_session_key, self.service)]

    def _verify_server_key(self, cert_key: CertChainPubKey) -> bytes:
        """The server's raw X25519 session key, checked like the reference client: the
        handshake chain proves the identity, the key is signed by the TLS leaf certificate
        (from the TLS peer chain, not from the handshake). ValueError when it is not."""
        try:
            self.verify_chain(list(cert_key.chain), self.key_hash)
        except Exception as e:
            raise ValueError(f"handshake chain: {e}") from e
        if not self.peer_leaf_der:
            raise ValueError("no TLS peer certificate")
        try:
            leaf = x509.load_der_x509_certificate(self.peer_leaf_der)
            return skey.verify_session_key(cert_key.signed_key, leaf)
        except Exception as e:
            raise ValueError(f"signed session key: {e}") from e
