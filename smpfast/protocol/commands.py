"""SMP commands (client → server) and broker messages (server → client), per version.

One small slotted dataclass per command/response/event. Keys are SPKI DER ``bytes`` as on
the wire (checked to be of an accepted algorithm, as the reference's DER decoding does);
ids are ``bytes``. Each class carries:

- ``TAG``: the wire tag (bytes);
- commands: ``PARTY`` (``Party``), ``CRED`` (credential rule of ``check_credentials``) and
  ``MIN_VERSION`` (informational: the version that introduced it; the reference neither
  gates the parser nor the encoder on it, so neither do we).

API: ``encode_command``, ``parse_command``, ``encode_response``, ``parse_response``,
``check_credentials`` (server side) and ``check_response_entity`` (client side).
``parse_*`` raise only ``UnknownTag`` (unknown tag: the reference's CMD UNKNOWN) and
``ParseError`` (bad or trailing parameters: CMD SYNTAX).

Version adaptations done by the encoders, as the reference does (silently):
NEW and IDS layouts per version; DELD → END below v10; SOK → OK below v16;
ERR BLOCKED → ERR AUTH below v12 and without its notice below v18; SUBS/NSUBS without
their count and hash, and SOKS/ENDS without their hash, below v19 (parsed there as count
-1 / the zero hash). ALLS, RSLV, RNAME and ERR NAME have no down-conversion (the
reference parses and sends them at any version). Layouts: docs/protocol-v19-v20.md.
"""

from __future__ import annotations

import enum
import json
import struct
from dataclasses import dataclass, fields
from typing import Callable, ClassVar, Union

from . import versions as V
from .address import QueueMode, SMPServer, encode_server_binary, read_server
from .encoding import Reader, key_algorithm, AUTH_KEY_ALGORITHMS, X25519_SPKI_PREFIX
from .ids_hash import EMPTY_IDS_HASH
from .names import NameRecord, SimplexDomain, read_domain
from .errors import (
    AUTH,
    CMD_HAS_AUTH,
    CMD_NO_AUTH,
    CMD_NO_ENTITY,
    BlockingInfo,
    ErrorType,
    ParseError,
    UnknownTag,
    read_error_type,
)
from .versions import VersionRange

_I64 = struct.Struct(">q")
_W16 = struct.Struct(">H")


class Party(enum.Enum):
    CREATOR = "creator"
    RECIPIENT = "recipient"
    RECIPIENT_SERVICE = "recipient_service"
    SENDER = "sender"
    IDLE_CLIENT = "idle_client"
    NOTIFIER = "notifier"
    NOTIFIER_SERVICE = "notifier_service"
    LINK_CLIENT = "link_client"
    PROXIED_CLIENT = "proxied_client"
    PROXY_SERVICE = "proxy_service"
    RESOLVER = "resolver"  # RSLV (v20)


class ServiceRole(enum.Enum):
    """SMPServiceRole: the role of a service (TLS client certificate) session."""

    MESSAGING = "M"
    NOTIFIER = "N"
    PROXY = "P"


# partyClientRole: the service role a party's command needs in a service session
# (None: allowed in any session).
PARTY_SERVICE_ROLE: dict[Party, ServiceRole | None] = {
    Party.CREATOR: ServiceRole.MESSAGING,
    Party.RECIPIENT: ServiceRole.MESSAGING,
    Party.RECIPIENT_SERVICE: ServiceRole.MESSAGING,
    Party.SENDER: ServiceRole.MESSAGING,
    Party.IDLE_CLIENT: None,
    Party.NOTIFIER: ServiceRole.NOTIFIER,
    Party.NOTIFIER_SERVICE: ServiceRole.NOTIFIER,
    Party.LINK_CLIENT: ServiceRole.MESSAGING,
    Party.PROXIED_CLIENT: ServiceRole.MESSAGING,
    Party.PROXY_SERVICE: ServiceRole.PROXY,
    Party.RESOLVER: ServiceRole.MESSAGING,
}


# Credential rules (checkCredentials in Protocol.hs).
CRED_AUTH = 0  # authorization and entity required, else CMD NO_AUTH
CRED_NEW = 1  # authorization required (NO_AUTH), entity must be empty (HAS_AUTH)
CRED_SEND = 2  # entity required (NO_ENTITY), authorization optional
CRED_ENTITY = 3  # entity required (NO_ENTITY), authorization forbidden (HAS_AUTH)
CRED_NONE = 4  # neither authorization nor entity (HAS_AUTH)


def _fail(msg: str) -> ParseError:
    return ParseError(msg)


def _short(b: bytes) -> bytes:
    n = len(b)
    if n > 255:
        raise ValueError("short string longer than 255 bytes")
    return bytes((n,)) + b


def _large(b: bytes) -> bytes:
    if len(b) > 65535:
        raise ValueError("large string longer than 65535 bytes")
    return _W16.pack(len(b)) + b


def _maybe(v: object, enc: Callable[[object], bytes]) -> bytes:
    return b"0" if v is None else b"1" + enc(v)


def _no_params(params: bytes) -> None:
    if params:
        raise _fail("unexpected parameters")


def _one_key(params: bytes, auth: bool = True) -> bytes:
    """`` ' ' key`` exactly (the fast path of KEY/SKEY/LKEY)."""
    if len(params) < 2 or params[0] != 0x20 or len(params) != 2 + params[1]:
        raise _fail("bad key parameter")
    key = params[2:]
    if auth:
        if key_algorithm(key) not in AUTH_KEY_ALGORITHMS:
            raise _fail("bad authorization key")
    elif len(key) != 44 or key[:12] != X25519_SPKI_PREFIX:
        raise _fail("bad X25519 key")
    return key


def _reader(params: bytes) -> Reader:
    """A reader after the mandatory space that starts every parameter list."""
    if not params or params[0] != 0x20:
        raise _fail("expected space")
    return Reader(params, 1)


# ---------------------------------------------------------------------------------------
# Shared value types


@dataclass(slots=True)
class QueueLinkData:
    """Encrypted short-link data: two Large blobs, opaque to the server."""

    fixed_data: bytes
    user_data: bytes

    def encode(self) -> bytes:
        return _large(self.fixed_data) + _large(self.user_data)


def _link_data_p(r: Reader) -> QueueLinkData:
    return QueueLinkData(r.large(), r.large())


@dataclass(slots=True)
class QueueReqData:
    """NEW's queue request (v15+): ``M`` Maybe(senderId, linkData) or ``C`` Maybe(linkId,
    (senderId, linkData)). Messaging: ``link_id`` is None and ``sender_id``/``link_data``
    are both set or both None; contact: all three set or all None."""

    mode: QueueMode
    sender_id: bytes | None = None
    link_data: QueueLinkData | None = None
    link_id: bytes | None = None

    def encode(self) -> bytes:
        has_data = self.sender_id is not None
        if has_data != (self.link_data is not None):
            raise ValueError("sender_id and link_data go together")
        if self.mode is QueueMode.MESSAGING:
            if self.link_id is not None:
                raise ValueError("a messaging queue request has no link_id")
            if not has_data:
                return b"M0"
            return b"M1" + _short(self.sender_id) + self.link_data.encode()  # type: ignore[union-attr,arg-type]
        if has_data != (self.link_id is not None):
            raise ValueError("contact link_id, sender_id and link_data go together")
        if not has_data:
            return b"C0"
        return b"C1" + _short(self.link_id) + _short(self.sender_id) + self.link_data.encode()  # type: ignore[union-attr,arg-type]


def _queue_req_p(r: Reader) -> QueueReqData:
    tag = r.byte()
    if tag == 0x4D:  # 'M'
        return r.maybe(_qr_messaging) or QueueReqData(QueueMode.MESSAGING)
    if tag == 0x43:  # 'C'
        return r.maybe(_qr_contact) or QueueReqData(QueueMode.CONTACT)
    raise _fail("bad QueueReqData")


def _qr_messaging(r: Reader) -> QueueReqData:
    sid = r.short_string()
    return QueueReqData(QueueMode.MESSAGING, sid, _link_data_p(r))


def _qr_contact(r: Reader) -> QueueReqData:
    lid = r.short_string()
    sid = r.short_string()
    return QueueReqData(QueueMode.CONTACT, sid, _link_data_p(r), lid)


@dataclass(slots=True)
class NewNtfCreds:
    """NEW's notifier credentials (v17+): notifier auth key and X25519 DH key (DER)."""

    notifier_key: bytes
    dh_key: bytes

    def encode(self) -> bytes:
        return _short(self.notifier_key) + _short(self.dh_key)


@dataclass(slots=True)
class ServerNtfCreds:
    """IDS's notifier credentials (v17+): notifier id and server X25519 DH key (DER)."""

    notifier_id: bytes
    dh_key: bytes

    def encode(self) -> bytes:
        return _short(self.notifier_id) + _short(self.dh_key)


@dataclass(slots=True)
class MsgFlags:
    """``notification`` is the one defined flag. ``reserved`` keeps the bytes the parser
    skipped up to the next space (future flags), so re-encoding a parsed SEND is exact.
    The reference's encoder writes only the Bool: build MSG bodies from ``notification``."""

    notification: bool
    reserved: bytes = b""

    def encode(self) -> bytes:
        return (b"T" if self.notification else b"F") + self.reserved


@dataclass(slots=True)
class CertChainPubKey:
    """A certificate chain (DER, leaf first) and a key signed by its leaf (X.509
    SignedExact DER). Opaque here: the crypto layer validates both."""

    chain: list[bytes]
    signed_key: bytes

    def encode(self) -> bytes:
        if not 1 <= len(self.chain) <= 255:
            raise ValueError("certificate chain must have 1..255 certificates")
        return bytes((len(self.chain),)) + b"".join(_large(c) for c in self.chain) + _large(self.signed_key)


def read_cert_chain_pub_key(r: Reader) -> CertChainPubKey:
    chain = r.short_list(Reader.large, non_empty=True)
    return CertChainPubKey(chain, r.large())


_BASIC_AUTH_OK = frozenset(
    c for c in range(256)
    if (0x21 <= c <= 0x7E and c not in b"@:/") or (0xA1 <= c <= 0xFF and c != 0xAD)
)


def valid_basic_auth(b: bytes) -> bool:
    """BasicAuth bytes: printable, no spaces, no '@', ':' or '/' (Char8 / Latin-1 rules)."""
    return all(c in _BASIC_AUTH_OK for c in b)


def read_basic_auth(r: Reader) -> bytes:
    b = r.short_string()
    if not valid_basic_auth(b):
        raise _fail("invalid character in BasicAuth")
    return b


def _enc_basic_auth(b: bytes) -> bytes:
    if not valid_basic_auth(b):
        raise ValueError("invalid character in BasicAuth")
    return _short(b)


# ---------------------------------------------------------------------------------------
# Commands


class Command:
    """Base of client commands."""

    __slots__ = ()
    TAG: ClassVar[bytes]
    PARTY: ClassVar[Party]
    CRED: ClassVar[int] = CRED_AUTH
    MIN_VERSION: ClassVar[int] = V.MIN_VERSION

    def encode(self, version: int) -> bytes:
        return self.TAG

    @classmethod
    def parse(cls, params: bytes, version: int) -> "Command":
        _no_params(params)
        return cls()


@dataclass(slots=True)
class New(Command):
    """NEW: create a queue. ``basic_auth`` is the server password, if any; ``subscribe``
    False is subMode 'C' (create only). ``queue_req`` (v15+; at v9-14 only its mode is
    sent, as sndSecure) and ``ntf_creds`` (v17+) are dropped at versions that lack them."""

    TAG: ClassVar[bytes] = b"NEW"
    PARTY: ClassVar[Party] = Party.CREATOR
    CRED: ClassVar[int] = CRED_NEW
    rcv_auth_key: bytes
    rcv_dh_key: bytes
    basic_auth: bytes | None = None
    subscribe: bool = True
    queue_req: QueueReqData | None = None
    ntf_creds: NewNtfCreds | None = None

    def encode(self, version: int) -> bytes:
        out = b"NEW " + _short(self.rcv_auth_key) + _short(self.rcv_dh_key)
        sub = b"S" if self.subscribe else b"C"
        if version >= V.SND_AUTH_KEY:
            out += _maybe(self.basic_auth, _enc_basic_auth) + sub
            if version >= V.SHORT_LINKS:
                out += _maybe(self.queue_req, QueueReqData.encode)
                if version >= V.NEW_NTF_CREDS:
                    out += _maybe(self.ntf_creds, NewNtfCreds.encode)
            else:
                q = self.queue_req
                out += b"T" if q is not None and q.mode is QueueMode.MESSAGING else b"F"
            return out
        if self.basic_auth is not None:
            out += b"A" + _enc_basic_auth(self.basic_auth)
        return out + sub

    @classmethod
    def parse(cls, params: bytes, version: int) -> "New":
        r = _reader(params)
        rk = r.auth_key()
        dk = r.x25519_key()
        if version >= V.SND_AUTH_KEY:
            ba = r.maybe(read_basic_auth)
        elif r.peek() == 0x41:  # 'A': optional BasicAuth, else backtrack to subMode
            save = r.pos
            r.pos += 1
            try:
                ba = read_basic_auth(r)
            except ParseError:
                r.pos = save
                ba = None
        else:
            ba = None
        m = r.byte()
        if m == 0x53:
            sub = True
        elif m == 0x43:
            sub = False
        else:
            raise _fail("bad SubscriptionMode")
        qr = nc = None
        if version >= V.SHORT_LINKS:
            qr = r.maybe(_queue_req_p)
            if version >= V.NEW_NTF_CREDS:
                nc = r.maybe(_new_ntf_creds_p)
        elif version >= V.SND_AUTH_KEY:
            qr = QueueReqData(QueueMode.MESSAGING if r.boolean() else QueueMode.CONTACT)
        r.end()
        return cls(rk, dk, ba, sub, qr, nc)


def _new_ntf_creds_p(r: Reader) -> NewNtfCreds:
    return NewNtfCreds(r.auth_key(), r.x25519_key())


@dataclass(slots=True)
class Sub(Command):
    TAG: ClassVar[bytes] = b"SUB"
    PARTY: ClassVar[Party] = Party.RECIPIENT


class _ServiceSubscribe(Command):
    """SUBS/NSUBS: subscribe all queues associated with the session's service. From v19
    they carry the count and IdsHash the service expects (`` ' ' Int64 shortString``);
    below v19 the tag goes alone and parses as count -1 with the zero hash (the
    reference's marker for a subscriber too old to say)."""

    __slots__ = ()
    count: int
    ids_hash: bytes

    def encode(self, version: int) -> bytes:
        if not V.service_subs_hash(version):
            return self.TAG
        return self.TAG + b" " + _I64.pack(self.count) + _short(self.ids_hash)

    @classmethod
    def parse(cls, params: bytes, version: int) -> "_ServiceSubscribe":
        if not V.service_subs_hash(version):
            _no_params(params)
            return cls()
        r = _reader(params)
        n = r.int64()
        h = r.short_string()
        r.end()
        return cls(n, h)


@dataclass(slots=True)
class Subs(_ServiceSubscribe):
    TAG: ClassVar[bytes] = b"SUBS"
    PARTY: ClassVar[Party] = Party.RECIPIENT_SERVICE
    MIN_VERSION: ClassVar[int] = V.SERVICE_CERTS
    count: int = -1
    ids_hash: bytes = EMPTY_IDS_HASH


@dataclass(slots=True)
class Key(Command):
    """KEY: the recipient secures the queue with the sender's key."""

    TAG: ClassVar[bytes] = b"KEY"
    PARTY: ClassVar[Party] = Party.RECIPIENT
    key: bytes

    def encode(self, version: int) -> bytes:
        return b"KEY " + _short(self.key)

    @classmethod
    def parse(cls, params: bytes, version: int) -> "Key":
        return cls(_one_key(params))


@dataclass(slots=True)
class Rkey(Command):
    """RKEY: replace the recipient keys (NonEmpty)."""

    TAG: ClassVar[bytes] = b"RKEY"
    PARTY: ClassVar[Party] = Party.RECIPIENT
    MIN_VERSION: ClassVar[int] = V.SHORT_LINKS
    keys: list[bytes]

    def encode(self, version: int) -> bytes:
        if not 1 <= len(self.keys) <= 255:
            raise ValueError("RKEY needs 1..255 keys")
        return b"RKEY " + bytes((len(self.keys),)) + b"".join(_short(k) for k in self.keys)

    @classmethod
    def parse(cls, params: bytes, version: int) -> "Rkey":
        r = _reader(params)
        keys = r.short_list(Reader.auth_key, non_empty=True)
        r.end()
        return cls(keys)


@dataclass(slots=True)
class Lset(Command):
    TAG: ClassVar[bytes] = b"LSET"
    PARTY: ClassVar[Party] = Party.RECIPIENT
    MIN_VERSION: ClassVar[int] = V.SHORT_LINKS
    link_id: bytes
    data: QueueLinkData

    def encode(self, version: int) -> bytes:
        return b"LSET " + _short(self.link_id) + self.data.encode()

    @classmethod
    def parse(cls, params: bytes, version: int) -> "Lset":
        r = _reader(params)
        lid = r.short_string()
        d = _link_data_p(r)
        r.end()
        return cls(lid, d)


@dataclass(slots=True)
class Ldel(Command):
    TAG: ClassVar[bytes] = b"LDEL"
    PARTY: ClassVar[Party] = Party.RECIPIENT
    MIN_VERSION: ClassVar[int] = V.SHORT_LINKS


@dataclass(slots=True)
class Nkey(Command):
    TAG: ClassVar[bytes] = b"NKEY"
    PARTY: ClassVar[Party] = Party.RECIPIENT
    notifier_key: bytes
    dh_key: bytes

    def encode(self, version: int) -> bytes:
        return b"NKEY " + _short(self.notifier_key) + _short(self.dh_key)

    @classmethod
    def parse(cls, params: bytes, version: int) -> "Nkey":
        r = _reader(params)
        k = r.auth_key()
        d = r.x25519_key()
        r.end()
        return cls(k, d)


@dataclass(slots=True)
class Ndel(Command):
    TAG: ClassVar[bytes] = b"NDEL"
    PARTY: ClassVar[Party] = Party.RECIPIENT


@dataclass(slots=True)
class Get(Command):
    TAG: ClassVar[bytes] = b"GET"
    PARTY: ClassVar[Party] = Party.RECIPIENT


@dataclass(slots=True)
class Ack(Command):
    """ACK: an empty ``msg_id`` matches whatever message is delivered."""

    TAG: ClassVar[bytes] = b"ACK"
    PARTY: ClassVar[Party] = Party.RECIPIENT
    msg_id: bytes

    def encode(self, version: int) -> bytes:
        return b"ACK " + _short(self.msg_id)

    @classmethod
    def parse(cls, params: bytes, version: int) -> "Ack":
        if len(params) < 2 or params[0] != 0x20 or len(params) != 2 + params[1]:
            raise _fail("bad ACK parameter")
        return cls(params[2:])


@dataclass(slots=True)
class Off(Command):
    TAG: ClassVar[bytes] = b"OFF"
    PARTY: ClassVar[Party] = Party.RECIPIENT


@dataclass(slots=True)
class Del(Command):
    TAG: ClassVar[bytes] = b"DEL"
    PARTY: ClassVar[Party] = Party.RECIPIENT


@dataclass(slots=True)
class Que(Command):
    TAG: ClassVar[bytes] = b"QUE"
    PARTY: ClassVar[Party] = Party.RECIPIENT


@dataclass(slots=True)
class Skey(Command):
    """SKEY: the sender secures a messaging queue itself."""

    TAG: ClassVar[bytes] = b"SKEY"
    PARTY: ClassVar[Party] = Party.SENDER
    MIN_VERSION: ClassVar[int] = V.SND_AUTH_KEY
    key: bytes

    def encode(self, version: int) -> bytes:
        return b"SKEY " + _short(self.key)

    @classmethod
    def parse(cls, params: bytes, version: int) -> "Skey":
        return cls(_one_key(params))


@dataclass(slots=True)
class Send(Command):
    """SEND: ``body`` is the rest of the transmission (its size limit is checked by the
    server: versions.max_message_length)."""

    TAG: ClassVar[bytes] = b"SEND"
    PARTY: ClassVar[Party] = Party.SENDER
    CRED: ClassVar[int] = CRED_SEND
    flags: MsgFlags
    body: bytes

    def encode(self, version: int) -> bytes:
        return b"SEND " + self.flags.encode() + b" " + self.body

    @classmethod
    def parse(cls, params: bytes, version: int) -> "Send":
        # ' ' Bool [reserved non-space bytes] ' ' body
        if len(params) < 3 or params[0] != 0x20:
            raise _fail("bad SEND parameters")
        f = params[1]
        if f == 0x54:
            n = True
        elif f == 0x46:
            n = False
        else:
            raise _fail("bad Bool")
        sp = params.find(b" ", 2)
        if sp < 0:
            raise _fail("no SEND body separator")
        return cls(MsgFlags(n, params[2:sp]), params[sp + 1 :])


@dataclass(slots=True)
class Ping(Command):
    TAG: ClassVar[bytes] = b"PING"
    PARTY: ClassVar[Party] = Party.IDLE_CLIENT
    CRED: ClassVar[int] = CRED_NONE


@dataclass(slots=True)
class Lkey(Command):
    TAG: ClassVar[bytes] = b"LKEY"
    PARTY: ClassVar[Party] = Party.LINK_CLIENT
    MIN_VERSION: ClassVar[int] = V.SHORT_LINKS
    key: bytes

    def encode(self, version: int) -> bytes:
        return b"LKEY " + _short(self.key)

    @classmethod
    def parse(cls, params: bytes, version: int) -> "Lkey":
        return cls(_one_key(params))


@dataclass(slots=True)
class Lget(Command):
    TAG: ClassVar[bytes] = b"LGET"
    PARTY: ClassVar[Party] = Party.LINK_CLIENT
    CRED: ClassVar[int] = CRED_ENTITY
    MIN_VERSION: ClassVar[int] = V.SHORT_LINKS


@dataclass(slots=True)
class Nsub(Command):
    TAG: ClassVar[bytes] = b"NSUB"
    PARTY: ClassVar[Party] = Party.NOTIFIER


@dataclass(slots=True)
class Nsubs(_ServiceSubscribe):
    TAG: ClassVar[bytes] = b"NSUBS"
    PARTY: ClassVar[Party] = Party.NOTIFIER_SERVICE
    MIN_VERSION: ClassVar[int] = V.SERVICE_CERTS
    count: int = -1
    ids_hash: bytes = EMPTY_IDS_HASH


@dataclass(slots=True)
class Prxy(Command):
    """PRXY: ask the proxy for a session with relay ``server``."""

    TAG: ClassVar[bytes] = b"PRXY"
    PARTY: ClassVar[Party] = Party.PROXIED_CLIENT
    CRED: ClassVar[int] = CRED_NONE
    MIN_VERSION: ClassVar[int] = V.SENDING_PROXY
    server: SMPServer
    basic_auth: bytes | None = None

    def encode(self, version: int) -> bytes:
        return b"PRXY " + encode_server_binary(self.server) + _maybe(self.basic_auth, _enc_basic_auth)

    @classmethod
    def parse(cls, params: bytes, version: int) -> "Prxy":
        r = _reader(params)
        srv = read_server(r)
        ba = r.maybe(read_basic_auth)
        r.end()
        return cls(srv, ba)


@dataclass(slots=True)
class Pfwd(Command):
    """PFWD: ``version`` is the proxied (client↔relay) version, ``dh_key`` the per-command
    X25519 key (DER), ``enc_transmission`` the encrypted padded inner batch."""

    TAG: ClassVar[bytes] = b"PFWD"
    PARTY: ClassVar[Party] = Party.PROXIED_CLIENT
    CRED: ClassVar[int] = CRED_ENTITY
    MIN_VERSION: ClassVar[int] = V.SENDING_PROXY
    version: int
    dh_key: bytes
    enc_transmission: bytes

    def encode(self, version: int) -> bytes:
        return b"PFWD " + _W16.pack(self.version) + _short(self.dh_key) + self.enc_transmission

    @classmethod
    def parse(cls, params: bytes, version: int) -> "Pfwd":
        r = _reader(params)
        v = r.word16()
        k = r.x25519_key()
        return cls(v, k, r.rest())


@dataclass(slots=True)
class Rfwd(Command):
    """RFWD (proxy → relay): the encrypted forwarded transmission."""

    TAG: ClassVar[bytes] = b"RFWD"
    PARTY: ClassVar[Party] = Party.PROXY_SERVICE
    CRED: ClassVar[int] = CRED_NONE
    MIN_VERSION: ClassVar[int] = V.SENDING_PROXY
    enc_transmission: bytes

    def encode(self, version: int) -> bytes:
        return b"RFWD " + self.enc_transmission

    @classmethod
    def parse(cls, params: bytes, version: int) -> "Rfwd":
        if not params or params[0] != 0x20:
            raise _fail("expected space")
        return cls(params[1:])


@dataclass(slots=True)
class Rslv(Command):
    """RSLV (v20): resolve a name. Sent directly or forwarded inside PFWD; neither
    authorization nor entity. The parser reads the name up to whitespace and ignores
    whatever follows it, as the reference does."""

    TAG: ClassVar[bytes] = b"RSLV"
    PARTY: ClassVar[Party] = Party.RESOLVER
    CRED: ClassVar[int] = CRED_NONE
    MIN_VERSION: ClassVar[int] = V.NAMES
    domain: SimplexDomain

    def encode(self, version: int) -> bytes:
        return b"RSLV " + self.domain.encode()

    @classmethod
    def parse(cls, params: bytes, version: int) -> "Rslv":
        return cls(read_domain(_reader(params)))


# ---------------------------------------------------------------------------------------
# Broker messages (responses and events)


class Response:
    """Base of broker messages (responses and events)."""

    __slots__ = ()
    TAG: ClassVar[bytes]

    def encode(self, version: int) -> bytes:
        return self.TAG

    @classmethod
    def parse(cls, params: bytes, version: int) -> "Response":
        _no_params(params)
        return cls()


@dataclass(slots=True)
class Ids(Response):
    """IDS (answer to NEW). ``queue_mode`` exists from v9 (as sndSecure at v9-14: messaging
    ↔ True), ``link_id`` from v15, ``service_id`` from v16, ``ntf_creds`` from v17."""

    TAG: ClassVar[bytes] = b"IDS"
    rcv_id: bytes
    snd_id: bytes
    srv_dh_key: bytes
    queue_mode: QueueMode | None = None
    link_id: bytes | None = None
    service_id: bytes | None = None
    ntf_creds: ServerNtfCreds | None = None

    def encode(self, version: int) -> bytes:
        out = b"IDS " + _short(self.rcv_id) + _short(self.snd_id) + _short(self.srv_dh_key)
        if version >= V.SHORT_LINKS:
            qm = self.queue_mode
            out += b"0" if qm is None else (b"1M" if qm is QueueMode.MESSAGING else b"1C")
            out += _maybe(self.link_id, _short)
            if version >= V.SERVICE_CERTS:
                out += _maybe(self.service_id, _short)
                if version >= V.NEW_NTF_CREDS:
                    out += _maybe(self.ntf_creds, ServerNtfCreds.encode)
        elif version >= V.SND_AUTH_KEY:
            out += b"T" if self.queue_mode is QueueMode.MESSAGING else b"F"
        return out

    @classmethod
    def parse(cls, params: bytes, version: int) -> "Ids":
        r = _reader(params)
        rid = r.short_string()
        sid = r.short_string()
        dh = r.x25519_key()
        qm = lid = svc = nc = None
        if version >= V.SHORT_LINKS:
            qm = r.maybe(_queue_mode_p)
            lid = r.maybe(Reader.short_string)
            if version >= V.SERVICE_CERTS:
                svc = r.maybe(Reader.short_string)
                if version >= V.NEW_NTF_CREDS:
                    nc = r.maybe(_server_ntf_creds_p)
        elif version >= V.SND_AUTH_KEY:
            qm = QueueMode.MESSAGING if r.boolean() else QueueMode.CONTACT
        r.end()
        return cls(rid, sid, dh, qm, lid, svc, nc)


def _queue_mode_p(r: Reader) -> QueueMode:
    b = r.byte()
    if b == 0x4D:
        return QueueMode.MESSAGING
    if b == 0x43:
        return QueueMode.CONTACT
    raise _fail("bad QueueMode")


def _server_ntf_creds_p(r: Reader) -> ServerNtfCreds:
    return ServerNtfCreds(r.short_string(), r.x25519_key())


@dataclass(slots=True)
class Lnk(Response):
    TAG: ClassVar[bytes] = b"LNK"
    sender_id: bytes
    data: QueueLinkData

    def encode(self, version: int) -> bytes:
        return b"LNK " + _short(self.sender_id) + self.data.encode()

    @classmethod
    def parse(cls, params: bytes, version: int) -> "Lnk":
        r = _reader(params)
        sid = r.short_string()
        d = _link_data_p(r)
        r.end()
        return cls(sid, d)


@dataclass(slots=True)
class Sok(Response):
    """SOK (answer to SUB/NSUB from v16; sent as OK below v16)."""

    TAG: ClassVar[bytes] = b"SOK"
    service_id: bytes | None = None

    def encode(self, version: int) -> bytes:
        if version < V.SERVICE_CERTS:
            return b"OK"
        return b"SOK " + _maybe(self.service_id, _short)

    @classmethod
    def parse(cls, params: bytes, version: int) -> "Sok":
        r = _reader(params)
        s = r.maybe(Reader.short_string)
        r.end()
        return cls(s)


class _ServiceCount(Response):
    """SOKS/ENDS: a service's queue count and, from v19, their IdsHash
    (`` ' ' Int64 shortString``; below v19 `` ' ' Int64`` and the hash parses as zero)."""

    __slots__ = ()
    count: int
    ids_hash: bytes

    def encode(self, version: int) -> bytes:
        out = self.TAG + b" " + _I64.pack(self.count)
        return out + _short(self.ids_hash) if V.service_subs_hash(version) else out

    @classmethod
    def parse(cls, params: bytes, version: int) -> "_ServiceCount":
        r = _reader(params)
        n = r.int64()
        h = r.short_string() if V.service_subs_hash(version) else EMPTY_IDS_HASH
        r.end()
        return cls(n, h)


@dataclass(slots=True)
class Soks(_ServiceCount):
    """SOKS (answer to SUBS/NSUBS): the queues the server has associated with the service."""

    TAG: ClassVar[bytes] = b"SOKS"
    count: int
    ids_hash: bytes = EMPTY_IDS_HASH


@dataclass(slots=True)
class Msg(Response):
    """MSG: ``body`` is the server-encrypted message (16122 bytes from a real server)."""

    TAG: ClassVar[bytes] = b"MSG"
    msg_id: bytes
    body: bytes

    def encode(self, version: int) -> bytes:
        return b"MSG " + _short(self.msg_id) + self.body

    @classmethod
    def parse(cls, params: bytes, version: int) -> "Msg":
        if len(params) < 2 or params[0] != 0x20 or len(params) < 2 + params[1]:
            raise _fail("bad MSG parameters")
        end = 2 + params[1]
        return cls(params[2:end], params[end:])


@dataclass(slots=True)
class Nid(Response):
    TAG: ClassVar[bytes] = b"NID"
    notifier_id: bytes
    srv_ntf_dh_key: bytes

    def encode(self, version: int) -> bytes:
        return b"NID " + _short(self.notifier_id) + _short(self.srv_ntf_dh_key)

    @classmethod
    def parse(cls, params: bytes, version: int) -> "Nid":
        r = _reader(params)
        nid = r.short_string()
        k = r.x25519_key()
        r.end()
        return cls(nid, k)


@dataclass(slots=True)
class Nmsg(Response):
    """NMSG: 24-byte nonce and the encrypted notification metadata (144 bytes normally)."""

    TAG: ClassVar[bytes] = b"NMSG"
    nonce: bytes
    enc_meta: bytes

    def encode(self, version: int) -> bytes:
        if len(self.nonce) != 24:
            raise ValueError("NMSG nonce must be 24 bytes")
        return b"NMSG " + self.nonce + _short(self.enc_meta)

    @classmethod
    def parse(cls, params: bytes, version: int) -> "Nmsg":
        r = _reader(params)
        nonce = r.take(24)
        meta = r.short_string()
        r.end()
        return cls(nonce, meta)


@dataclass(slots=True)
class Pkey(Response):
    """PKEY (answer to PRXY): relay session id, relay version range, relay cert chain and
    signed session key."""

    TAG: ClassVar[bytes] = b"PKEY"
    session_id: bytes
    vrange: VersionRange
    cert_key: CertChainPubKey

    def encode(self, version: int) -> bytes:
        return (
            b"PKEY " + _short(self.session_id) + _W16.pack(self.vrange.min) + _W16.pack(self.vrange.max)
            + self.cert_key.encode()
        )

    @classmethod
    def parse(cls, params: bytes, version: int) -> "Pkey":
        r = _reader(params)
        sid = r.short_string()
        vr = read_version_range(r)
        ck = read_cert_chain_pub_key(r)
        r.end()
        return cls(sid, vr, ck)


def read_version_range(r: Reader) -> VersionRange:
    lo = r.word16()
    hi = r.word16()
    if lo > hi:
        raise _fail("invalid version range")
    return VersionRange(lo, hi)


@dataclass(slots=True)
class Rres(Response):
    TAG: ClassVar[bytes] = b"RRES"
    enc_response: bytes

    def encode(self, version: int) -> bytes:
        return b"RRES " + self.enc_response

    @classmethod
    def parse(cls, params: bytes, version: int) -> "Rres":
        if not params or params[0] != 0x20:
            raise _fail("expected space")
        return cls(params[1:])


@dataclass(slots=True)
class Pres(Response):
    TAG: ClassVar[bytes] = b"PRES"
    enc_response: bytes

    def encode(self, version: int) -> bytes:
        return b"PRES " + self.enc_response

    @classmethod
    def parse(cls, params: bytes, version: int) -> "Pres":
        if not params or params[0] != 0x20:
            raise _fail("expected space")
        return cls(params[1:])


@dataclass(slots=True)
class End(Response):
    TAG: ClassVar[bytes] = b"END"


@dataclass(slots=True)
class Ends(_ServiceCount):
    """ENDS (event): another session of the service took over these subscriptions."""

    TAG: ClassVar[bytes] = b"ENDS"
    count: int
    ids_hash: bytes = EMPTY_IDS_HASH


@dataclass(slots=True)
class Alls(Response):
    """ALLS (event, v19): the messages pending when SUBS subscribed have all been delivered."""

    TAG: ClassVar[bytes] = b"ALLS"


@dataclass(slots=True)
class Rname(Response):
    """RNAME (answer to RSLV, v20): the resolved record as JSON taking the rest."""

    TAG: ClassVar[bytes] = b"RNAME"
    record: NameRecord

    def encode(self, version: int) -> bytes:
        return b"RNAME " + self.record.to_json()

    @classmethod
    def parse(cls, params: bytes, version: int) -> "Rname":
        if not params or params[0] != 0x20:
            raise _fail("expected space")
        return cls(NameRecord.from_json(params[1:]))


@dataclass(slots=True)
class Deld(Response):
    """DELD (v10+; sent as END below v10)."""

    TAG: ClassVar[bytes] = b"DELD"

    def encode(self, version: int) -> bytes:
        return b"DELD" if version >= V.DELETED_EVENT else b"END"


@dataclass(slots=True)
class Info(Response):
    """INFO (answer to QUE): the QueueInfo JSON, kept as raw bytes."""

    TAG: ClassVar[bytes] = b"INFO"
    info: bytes

    def encode(self, version: int) -> bytes:
        return b"INFO " + self.info

    @classmethod
    def parse(cls, params: bytes, version: int) -> "Info":
        if not params or params[0] != 0x20:
            raise _fail("expected space")
        raw = params[1:]
        try:
            obj = json.loads(raw.decode("utf-8"))
        except (ValueError, RecursionError) as e:
            raise _fail("bad QueueInfo JSON") from e
        if not isinstance(obj, dict) or not all(k in obj for k in ("qiSnd", "qiNtf", "qiSize")):
            raise _fail("bad QueueInfo")
        return cls(raw)


@dataclass(slots=True)
class Ok(Response):
    TAG: ClassVar[bytes] = b"OK"


@dataclass(slots=True)
class Err(Response):
    """ERR. BLOCKED is sent as AUTH below v12 and without its notice below v18."""

    TAG: ClassVar[bytes] = b"ERR"
    error: ErrorType

    def encode(self, version: int) -> bytes:
        e = self.error
        if e.code == "BLOCKED":
            if version < V.BLOCKED_ENTITY:
                e = AUTH
            elif version < V.CLIENT_NOTICES and e.detail.notice is not None:  # type: ignore[union-attr]
                e = ErrorType("BLOCKED", BlockingInfo(e.detail.reason))  # type: ignore[union-attr]
        return b"ERR " + e.encode()

    @classmethod
    def parse(cls, params: bytes, version: int) -> "Err":
        r = _reader(params)
        e = read_error_type(r)
        r.end()
        return cls(e)


@dataclass(slots=True)
class Pong(Response):
    TAG: ClassVar[bytes] = b"PONG"


# ---------------------------------------------------------------------------------------
# Proxy ↔ relay inner encodings (the plaintexts inside RFWD and RRES)


@dataclass(slots=True)
class FwdTransmission:
    """Decrypted RFWD payload: the PFWD's corrId (the client's nonce), proxied version,
    per-command X25519 key (DER) and the client's encrypted transmission."""

    corr_id: bytes
    version: int
    dh_key: bytes
    enc_transmission: bytes

    def encode(self) -> bytes:
        return _short(self.corr_id) + _W16.pack(self.version) + _short(self.dh_key) + self.enc_transmission

    @classmethod
    def parse(cls, data: bytes) -> "FwdTransmission":
        """Raises ParseError (the relay answers CMD SYNTAX)."""
        r = Reader(data)
        corr = r.short_string()
        v = r.word16()
        return cls(corr, v, r.x25519_key(), r.rest())


@dataclass(slots=True)
class FwdResponse:
    """Decrypted RRES payload: the forwarded corrId and the response encrypted for the
    client (returned to it in PRES)."""

    corr_id: bytes
    enc_response: bytes

    def encode(self) -> bytes:
        return _short(self.corr_id) + self.enc_response

    @classmethod
    def parse(cls, data: bytes) -> "FwdResponse":
        r = Reader(data)
        return cls(r.short_string(), r.rest())


# ---------------------------------------------------------------------------------------
# Dispatch

COMMAND_CLASSES: tuple[type[Command], ...] = (
    New, Sub, Subs, Key, Rkey, Lset, Ldel, Nkey, Ndel, Get, Ack, Off, Del, Que, Skey, Send, Ping,
    Lkey, Lget, Nsub, Nsubs, Prxy, Pfwd, Rfwd, Rslv,
)
RESPONSE_CLASSES: tuple[type[Response], ...] = (
    Ids, Lnk, Sok, Soks, Msg, Alls, Nid, Nmsg, Pkey, Rres, Pres, End, Ends, Deld, Info, Ok, Err,
    Pong, Rname,
)
# The commands a relay executes when they arrive forwarded (RFWD); any other inner command
# is answered ERR CMD PROHIBITED (the reference's rejectOrVerify).
FORWARDED_COMMANDS: frozenset[type[Command]] = frozenset((Send, Skey, Lkey, Lget, Rslv))
COMMAND_TAGS: dict[bytes, type[Command]] = {c.TAG: c for c in COMMAND_CLASSES}
RESPONSE_TAGS: dict[bytes, type[Response]] = {c.TAG: c for c in RESPONSE_CLASSES}

# Commands without fields never change: parse returns these shared instances. (SUBS/NSUBS
# have fields whose parse depends on the version, so they always go through parse.)
_NO_FIELD_COMMANDS = {c.TAG: c() for c in COMMAND_CLASSES if not fields(c)}  # type: ignore[arg-type]
_NO_FIELD_RESPONSES = {c.TAG: c() for c in RESPONSE_CLASSES if not fields(c)}  # type: ignore[arg-type]

SUB = _NO_FIELD_COMMANDS[b"SUB"]
PING = _NO_FIELD_COMMANDS[b"PING"]
OK = _NO_FIELD_RESPONSES[b"OK"]
PONG = _NO_FIELD_RESPONSES[b"PONG"]
END = _NO_FIELD_RESPONSES[b"END"]
DELD = _NO_FIELD_RESPONSES[b"DELD"]
ALLS = _NO_FIELD_RESPONSES[b"ALLS"]

AnyCommand = Union[
    New, Sub, Subs, Key, Rkey, Lset, Ldel, Nkey, Ndel, Get, Ack, Off, Del, Que, Skey, Send, Ping,
    Lkey, Lget, Nsub, Nsubs, Prxy, Pfwd, Rfwd, Rslv,
]
AnyResponse = Union[
    Ids, Lnk, Sok, Soks, Msg, Alls, Nid, Nmsg, Pkey, Rres, Pres, End, Ends, Deld, Info, Ok, Err,
    Pong, Rname,
]


def _split_tag(data: bytes) -> tuple[bytes, bytes]:
    sp = data.find(b" ")
    if sp < 0:
        return data, b""
    return data[:sp], data[sp:]


def encode_command(cmd: Command, version: int) -> bytes:
    """The command bytes (tag and parameters) for the session version."""
    return cmd.encode(version)


def parse_command(data: bytes, version: int) -> Command:
    """Parse a command. Raises UnknownTag (CMD UNKNOWN) or ParseError (CMD SYNTAX).

    Tags are not version-gated (the reference parses e.g. SKEY at v8 too); only the
    parameter layouts of NEW depend on the version.
    """
    sp = data.find(b" ")
    if sp < 0:
        c = _NO_FIELD_COMMANDS.get(data)
        if c is not None:
            return c
        tag, params = data, b""
    else:
        tag, params = data[:sp], data[sp:]
    cls = COMMAND_TAGS.get(tag)
    if cls is None:
        raise UnknownTag("unknown command")
    try:
        return cls.parse(params, version)
    except ParseError:
        raise
    except (ValueError, IndexError, struct.error) as e:  # defensive: nothing else escapes
        raise ParseError(str(e)) from e


def encode_response(msg: Response, version: int) -> bytes:
    """The broker message bytes, with the reference's version down-conversions."""
    return msg.encode(version)


def parse_response(data: bytes, version: int) -> Response:
    """Parse a broker message. Raises UnknownTag or ParseError."""
    sp = data.find(b" ")
    if sp < 0:
        m = _NO_FIELD_RESPONSES.get(data)
        if m is not None:
            return m
        tag, params = data, b""
    else:
        tag, params = data[:sp], data[sp:]
    cls = RESPONSE_TAGS.get(tag)
    if cls is None:
        raise UnknownTag("unknown broker message")
    try:
        return cls.parse(params, version)
    except ParseError:
        raise
    except (ValueError, IndexError, struct.error) as e:
        raise ParseError(str(e)) from e


def check_credentials(cmd: Command, has_auth: bool, entity_id: bytes) -> ErrorType | None:
    """The server's checkCredentials: the error to answer, or None when acceptable.

    ``has_auth`` is whether the transmission carried a non-empty authorization.
    """
    rule = cmd.CRED
    if rule == CRED_AUTH:
        if not has_auth or not entity_id:
            return CMD_NO_AUTH
    elif rule == CRED_SEND:
        if not entity_id:
            return CMD_NO_ENTITY
    elif rule == CRED_NEW:
        if not has_auth:
            return CMD_NO_AUTH
        if entity_id:
            return CMD_HAS_AUTH
    elif rule == CRED_ENTITY:
        if not entity_id:
            return CMD_NO_ENTITY
        if has_auth:
            return CMD_HAS_AUTH
    elif has_auth or entity_id:  # CRED_NONE
        return CMD_HAS_AUTH
    return None


_ANY_ENTITY_RESPONSES = frozenset((b"IDS", b"ERR"))
_NO_ENTITY_RESPONSES = frozenset((b"PONG", b"PKEY", b"RRES", b"ALLS", b"RNAME"))


def check_response_entity(msg: Response, entity_id: bytes) -> ErrorType | None:
    """The client's acceptance rule (checkCredentials for BrokerMsg): IDS and ERR may have
    any entity; PONG, PKEY, RRES, ALLS and RNAME must have none (else CMD HAS_AUTH); all
    others need one (else CMD NO_ENTITY)."""
    tag = msg.TAG
    if tag in _ANY_ENTITY_RESPONSES:
        return None
    if tag in _NO_ENTITY_RESPONSES:
        return CMD_HAS_AUTH if entity_id else None
    return None if entity_id else CMD_NO_ENTITY
