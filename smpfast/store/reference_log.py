"""The reference server's persistence formats, as codecs (sans-IO: lines in, records out).

Two text files of ``smp-server`` (memory queue store with the store log enabled):

``smp-server-store.log``, one record per line::

    CREATE rid=<rid> rk=<key>[,<key>...] rdh=<dh> sid=<sid> sk=[<key>][ queue_mode=M|C]
           [ link_id=<lnk> queue_data=<fixed> <user>][ notifier=<nid> <nkey> <ndh>[ nsrv=<srv>]]
           [ updated_at=<date>][ status=off|blocked,<info>][ rsrv=<srv>]     (one line)
    LINK <rid> <lnk> <fixed> <user>        LDELETE <rid>
    SECURE <rid> <key>                     KEYS <rid> <key>[,<key>...]
    NOTIFIER <rid> <nid> <nkey> <ndh>[ nsrv=<srv>]                NDELETE <rid>
    SUSPEND <rid>   BLOCK <rid> <info>   UNBLOCK <rid>   DELETE <rid>   TIME <rid> <date>
    NEW_SERVICE service_id=<id> role=M|N|P cert=<der>[,<der>...] cert_hash=<hash> created_at=<date>
    QUEUE_SERVICE <rid> R|N [<srv>]

``smp-server-messages.log``, one queued entry per line::

    v3 <rid> <msgId> <ts> flags=<T|F>[...] <body>
    v3 <rid> <msgId> <ts> quota

Binary fields are base64url (written with padding, read with or without it, never empty);
keys are X.509 SubjectPublicKeyInfo DER, DH secrets the raw 32-byte X25519 secret, dates and
timestamps signed decimal seconds. ``<info>`` is ``reason=spam|content[,notice=<JSON>]``.
The legacy ``sndSecure=T|F`` is read in place of ``queue_mode`` (T: M, F: C), ``status=active``
is read though never written, and a message line without ``flags=`` means no notification.

Where this reader is more lenient than the reference's: the JSON of a blocking notice is read
as one JSON value, so a CREATE line with both a notice and ``rsrv=`` (which the reference
writes but cannot read back: its notice parser takes the rest of the line) is accepted, and a
legacy message body that starts with ``quota`` is a body, not a malformed marker.

Decoders raise :class:`ReferenceFormatError` only; the caller adds the file and line number.
Encoders write exactly what the reference writes for the same record.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from typing import Union

from ..crypto.keys import KeyFormatError, decode_auth_key
from .records import MAX_MESSAGE_BODY, SERVICE_ROLES, NotifierRecord, QueueRecord, ServiceRecord, StoredMessage

STORE_LOG_FILE = "smp-server-store.log"
MESSAGES_FILE = "smp-server-messages.log"
NTFS_FILE = "smp-server-ntfs.log"
INI_FILE = "smp-server.ini"

DH_SECRET_SIZE = 32  # the store log's DH secrets are X25519 (the reference checks the algorithm)
BLOCK_REASONS = ("spam", "content")
SERVICE_PARTIES = ("R", "N")  # recipient service, notifier service
QUEUE_MODES = ("M", "C")

_B64 = re.compile(rb"[A-Za-z0-9_-]+(=*)")
_DECIMAL = re.compile(rb"[-+]?[0-9]+")
_MSG_VERSION = b"v3"


class ReferenceFormatError(ValueError):
    """A line that is not a valid record of the reference's format."""


# --- records ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class CreateQueue:
    queue: QueueRecord  # updated_at 0: no updated_at field


@dataclass(frozen=True)
class CreateLink:
    recipient_id: bytes
    link_id: bytes
    fixed_data: bytes
    user_data: bytes


@dataclass(frozen=True)
class DeleteLink:
    recipient_id: bytes


@dataclass(frozen=True)
class SecureQueue:
    recipient_id: bytes
    sender_key: bytes


@dataclass(frozen=True)
class UpdateKeys:
    recipient_id: bytes
    recipient_keys: tuple[bytes, ...]


@dataclass(frozen=True)
class AddNotifier:
    recipient_id: bytes
    notifier: NotifierRecord


@dataclass(frozen=True)
class SuspendQueue:
    recipient_id: bytes


@dataclass(frozen=True)
class BlockQueue:
    recipient_id: bytes
    blocking_info: bytes  # reason=...[,notice=...], as the queue record keeps it


@dataclass(frozen=True)
class UnblockQueue:
    recipient_id: bytes


@dataclass(frozen=True)
class DeleteQueue:
    recipient_id: bytes


@dataclass(frozen=True)
class DeleteNotifier:
    recipient_id: bytes


@dataclass(frozen=True)
class UpdateTime:
    recipient_id: bytes
    date: int


@dataclass(frozen=True)
class NewService:
    service: ServiceRecord


@dataclass(frozen=True)
class QueueService:
    recipient_id: bytes
    party: str  # 'R' (recipient service) | 'N' (notifier service)
    service_id: bytes | None


StoreLogRecord = Union[
    CreateQueue,
    CreateLink,
    DeleteLink,
    SecureQueue,
    UpdateKeys,
    AddNotifier,
    SuspendQueue,
    BlockQueue,
    UnblockQueue,
    DeleteQueue,
    DeleteNotifier,
    UpdateTime,
    NewService,
    QueueService,
]

# Records that name nothing but a queue: tag <-> class.
_QUEUE_ONLY: dict[bytes, type] = {
    b"LDELETE": DeleteLink,
    b"SUSPEND": SuspendQueue,
    b"UNBLOCK": UnblockQueue,
    b"DELETE": DeleteQueue,
    b"NDELETE": DeleteNotifier,
}
_QUEUE_ONLY_TAG = {cls: tag for tag, cls in _QUEUE_ONLY.items()}

RECORD_TAGS = (
    b"CREATE", b"LINK", b"LDELETE", b"SECURE", b"KEYS", b"NOTIFIER", b"SUSPEND", b"BLOCK",
    b"UNBLOCK", b"DELETE", b"NDELETE", b"TIME", b"NEW_SERVICE", b"QUEUE_SERVICE",
)  # fmt: skip


# --- field codecs -----------------------------------------------------------------------------


def b64(data: bytes) -> bytes:
    """base64url with padding (the reference's ByteString StrEncoding)."""
    return base64.urlsafe_b64encode(data)


def _check_b64_field(value: bytes, name: str) -> bytes:
    # The reference's parser reads no empty field back: refuse to write one.
    if not value:
        raise ReferenceFormatError(f"{name} is empty (the reference cannot read it back)")
    return b64(value)


class _Cursor:
    """Reads one line left to right; every failure is a ReferenceFormatError naming the field."""

    __slots__ = ("line", "pos")

    def __init__(self, line: bytes) -> None:
        self.line = line
        self.pos = 0

    def fail(self, what: str) -> ReferenceFormatError:
        if self.pos >= len(self.line):
            return ReferenceFormatError(f"{what}: the line ends early")
        near = self.line[self.pos : self.pos + 20].decode("ascii", "replace")
        return ReferenceFormatError(f"{what} at column {self.pos + 1} (near {near!r})")

    def at_end(self) -> bool:
        return self.pos >= len(self.line)

    def end(self) -> None:
        if not self.at_end():
            raise self.fail("unexpected text")

    def peek(self, literal: bytes) -> bool:
        return self.line.startswith(literal, self.pos)

    def optional(self, literal: bytes) -> bool:
        if self.line.startswith(literal, self.pos):
            self.pos += len(literal)
            return True
        return False

    def expect(self, literal: bytes, what: str | None = None) -> None:
        if not self.optional(literal):
            raise self.fail(what or f"expected {literal.decode()!r}")

    def space(self) -> None:
        self.expect(b" ", "expected a space")

    def token(self) -> bytes:
        """Up to the next space or the end (the space is not consumed)."""
        end = self.line.find(b" ", self.pos)
        end = len(self.line) if end < 0 else end
        v = self.line[self.pos : end]
        self.pos = end
        return v

    def bytes_(self, what: str) -> bytes:
        m = _B64.match(self.line, self.pos)
        if m is None:
            raise self.fail(f"{what}: expected base64url")
        value = _decode_b64(m.group(0), what)
        if value is None:
            raise self.fail(f"{what}: invalid base64url")
        self.pos = m.end()
        return value

    def maybe_bytes(self, what: str) -> bytes | None:
        return self.bytes_(what) if _B64.match(self.line, self.pos) else None

    def bytes_list(self, what: str) -> tuple[bytes, ...]:
        items = [self.bytes_(what)]
        while self.optional(b","):
            items.append(self.bytes_(what))
        return tuple(items)

    def key(self, what: str) -> bytes:
        """An authorization key (Ed25519, Ed448 or X25519 SPKI DER), kept as written."""
        start = self.pos
        der = self.bytes_(what)
        try:
            decode_auth_key(der)
        except KeyFormatError as e:
            self.pos = start
            raise self.fail(f"{what}: {e}") from None
        return der

    def maybe_key(self, what: str) -> bytes | None:
        return self.key(what) if _B64.match(self.line, self.pos) else None

    def key_list(self, what: str) -> list[bytes]:
        items = [self.key(what)]
        while self.optional(b","):
            items.append(self.key(what))
        return items

    def decimal(self, what: str) -> int:
        m = _DECIMAL.match(self.line, self.pos)
        if m is None:
            raise self.fail(f"{what}: expected a decimal number")
        self.pos = m.end()
        value = int(m.group(0))
        if not -(2**63) <= value < 2**63:
            raise self.fail(f"{what}: out of the 64-bit range")
        return value

    def char(self, allowed: tuple[str, ...], what: str) -> str:
        c = self.line[self.pos : self.pos + 1].decode("ascii", "replace")
        if c not in allowed:
            raise self.fail(f"{what}: expected {' or '.join(allowed)}")
        self.pos += 1
        return c

    def blocking_info(self) -> bytes:
        """``reason=spam|content[,notice=<JSON>]``, returned as its text."""
        start = self.pos
        self.expect(b"reason=", "expected reason=")
        for reason in BLOCK_REASONS:
            if self.optional(reason.encode()):
                break
        else:
            raise self.fail("blocking reason: expected spam or content")
        if self.optional(b",notice="):
            try:
                text = self.line[self.pos :].decode("utf-8")
                notice, used = json.JSONDecoder().raw_decode(text)
            except (UnicodeDecodeError, json.JSONDecodeError):
                raise self.fail("blocking notice: expected JSON") from None
            if not isinstance(notice, dict):
                raise self.fail("blocking notice: expected a JSON object")
            self.pos += len(text[:used].encode("utf-8"))
        return self.line[start : self.pos]


def _decode_b64(token: bytes, what: str) -> bytes | None:
    body = token.rstrip(b"=")
    pad = len(token) - len(body)
    if len(body) % 4 == 1 or pad > 2 or (pad and (len(body) + pad) % 4):
        return None
    try:
        return base64.urlsafe_b64decode(body + b"=" * (-len(body) % 4))
    except (binascii.Error, ValueError):
        return None


def _dh_secret(c: _Cursor, what: str) -> bytes:
    start = c.pos
    value = c.bytes_(what)
    if len(value) != DH_SECRET_SIZE:
        c.pos = start
        raise c.fail(f"{what}: expected a {DH_SECRET_SIZE}-byte X25519 secret, got {len(value)} bytes")
    return value


def _ntf_creds(c: _Cursor) -> NotifierRecord:
    nid = c.bytes_("notifier id")
    c.space()
    key = c.key("notifier key")
    c.space()
    dh = _dh_secret(c, "notifier DH secret")
    service = c.bytes_("nsrv") if c.optional(b" nsrv=") else None
    return NotifierRecord(nid, key, dh, service)


def _encode_ntf_creds(n: NotifierRecord) -> bytes:
    out = b" ".join(
        (
            _check_b64_field(n.notifier_id, "notifier id"),
            _check_b64_field(n.notifier_key, "notifier key"),
            _check_b64_field(n.ntf_dh_secret, "notifier DH secret"),
        )
    )
    if n.ntf_service_id is not None:
        out += b" nsrv=" + _check_b64_field(n.ntf_service_id, "nsrv")
    return out


def _encode_keys(keys: "tuple[bytes, ...] | list[bytes]", what: str) -> bytes:
    if not keys:
        raise ReferenceFormatError(f"{what}: at least one key is needed")
    return b",".join(_check_b64_field(k, what) for k in keys)


# --- store log: CREATE ------------------------------------------------------------------------


def _decode_create(c: _Cursor) -> CreateQueue:
    c.expect(b"rid=")
    rid = c.bytes_("rid")
    c.space()
    c.expect(b"rk=")
    keys = c.key_list("recipient key")
    c.space()
    c.expect(b"rdh=")
    rdh = _dh_secret(c, "rdh")
    c.space()
    c.expect(b"sid=")
    sid = c.bytes_("sid")
    c.space()
    c.expect(b"sk=")
    sender_key = c.maybe_key("sk")
    queue_mode: str | None = None
    if c.optional(b" sndSecure="):
        queue_mode = "M" if c.char(("T", "F"), "sndSecure") == "T" else "C"
    elif c.optional(b" queue_mode="):
        queue_mode = c.char(QUEUE_MODES, "queue_mode")
    link = (None, None, None)
    if c.optional(b" link_id="):
        link_id = c.bytes_("link_id")
        c.expect(b" queue_data=", "expected queue_data= after link_id=")
        fixed = c.bytes_("queue_data (fixed)")
        c.space()
        link = (link_id, fixed, c.bytes_("queue_data (user)"))
    notifier = _ntf_creds(c) if c.optional(b" notifier=") else None
    updated_at = c.decimal("updated_at") if c.optional(b" updated_at=") else 0
    status, blocked_info = "active", None
    if c.optional(b" status="):
        if c.optional(b"blocked,"):
            status, blocked_info = "blocked", c.blocking_info()
        elif c.optional(b"off"):
            status = "off"
        elif not c.optional(b"active"):
            raise c.fail("status: expected active, off or blocked,...")
    rsrv = c.bytes_("rsrv") if c.optional(b" rsrv=") else None
    c.end()
    return CreateQueue(
        QueueRecord(
            recipient_id=rid,
            recipient_keys=keys,
            rcv_dh_secret=rdh,
            sender_id=sid,
            sender_key=sender_key,
            queue_mode=queue_mode,
            link_id=link[0],
            link_fixed=link[1],
            link_user=link[2],
            notifier=notifier,
            status=status,
            blocked_info=blocked_info,
            updated_at=updated_at,
            rcv_service_id=rsrv,
        )
    )


def _encode_create(q: QueueRecord) -> bytes:
    out = [
        b"CREATE rid=", _check_b64_field(q.recipient_id, "rid"),
        b" rk=", _encode_keys(q.recipient_keys, "recipient key"),
        b" rdh=", _check_b64_field(q.rcv_dh_secret, "rdh"),
        b" sid=", _check_b64_field(q.sender_id, "sid"),
        b" sk=", b"" if q.sender_key is None else _check_b64_field(q.sender_key, "sk"),
    ]  # fmt: skip
    if q.queue_mode is not None:
        if q.queue_mode not in QUEUE_MODES:
            raise ReferenceFormatError(f"unknown queue mode {q.queue_mode!r}")
        out += [b" queue_mode=", q.queue_mode.encode()]
    if q.link_id is not None:
        if q.link_fixed is None or q.link_user is None:
            raise ReferenceFormatError("a link needs both its fixed and user data")
        out += [
            b" link_id=", _check_b64_field(q.link_id, "link_id"),
            b" queue_data=", _check_b64_field(q.link_fixed, "queue_data (fixed)"),
            b" ", _check_b64_field(q.link_user, "queue_data (user)"),
        ]  # fmt: skip
    if q.notifier is not None:
        out += [b" notifier=", _encode_ntf_creds(q.notifier)]
    if q.updated_at:
        out += [b" updated_at=", str(q.updated_at).encode()]
    if q.status == "off":
        out.append(b" status=off")
    elif q.status == "blocked":
        out += [b" status=blocked,", _encode_blocking_info(q.blocked_info)]
    elif q.status != "active":
        raise ReferenceFormatError(f"unknown queue status {q.status!r}")
    if q.rcv_service_id is not None:
        out += [b" rsrv=", _check_b64_field(q.rcv_service_id, "rsrv")]
    return b"".join(out)


def _encode_blocking_info(info: bytes | None) -> bytes:
    if info is None:
        raise ReferenceFormatError("a blocked queue needs its blocking info")
    c = _Cursor(info)
    c.blocking_info()  # what we write must read back
    c.end()
    return info


# --- store log: the other records -------------------------------------------------------------


def _decode_service(c: _Cursor) -> ServiceRecord:
    c.expect(b"service_id=")
    service_id = c.bytes_("service_id")
    c.expect(b" role=")
    role = c.char(SERVICE_ROLES, "role")
    c.expect(b" cert=")
    certs = c.bytes_list("cert")
    c.expect(b" cert_hash=")
    cert_hash = c.bytes_("cert_hash")
    c.expect(b" created_at=")
    return ServiceRecord(service_id, role, certs, cert_hash, c.decimal("created_at"))


def _encode_service(s: ServiceRecord) -> bytes:
    if s.role not in SERVICE_ROLES:
        raise ReferenceFormatError(f"unknown service role {s.role!r}")
    return b"".join(
        (
            b"service_id=", _check_b64_field(s.service_id, "service_id"),
            b" role=", s.role.encode(),
            b" cert=", _encode_keys(s.certificates, "cert"),
            b" cert_hash=", _check_b64_field(s.cert_hash, "cert_hash"),
            b" created_at=", str(s.created_at).encode(),
        )
    )  # fmt: skip


def decode_store_log_line(line: bytes) -> StoreLogRecord:
    """One store log line (without its newline) as a record. Raises ReferenceFormatError."""
    c = _Cursor(bytes(line))
    tag = c.token()
    if tag not in RECORD_TAGS:
        shown = tag[:30].decode("ascii", "replace")
        raise ReferenceFormatError(f"unknown record kind {shown!r}" if tag else "empty line")
    c.space()
    rec: StoreLogRecord
    if tag == b"CREATE":
        return _decode_create(c)  # checks the end itself
    if tag == b"NEW_SERVICE":
        rec = NewService(_decode_service(c))
    else:
        rid = c.bytes_("recipient id")
        cls = _QUEUE_ONLY.get(tag)
        if cls is not None:
            rec = cls(rid)
        else:
            c.space()
            if tag == b"LINK":
                link_id = c.bytes_("link id")
                c.space()
                fixed = c.bytes_("link fixed data")
                c.space()
                rec = CreateLink(rid, link_id, fixed, c.bytes_("link user data"))
            elif tag == b"SECURE":
                rec = SecureQueue(rid, c.key("sender key"))
            elif tag == b"KEYS":
                rec = UpdateKeys(rid, tuple(c.key_list("recipient key")))
            elif tag == b"NOTIFIER":
                rec = AddNotifier(rid, _ntf_creds(c))
            elif tag == b"BLOCK":
                rec = BlockQueue(rid, c.blocking_info())
            elif tag == b"TIME":
                rec = UpdateTime(rid, c.decimal("date"))
            else:  # QUEUE_SERVICE
                party = c.char(SERVICE_PARTIES, "service party")
                c.space()
                rec = QueueService(rid, party, c.maybe_bytes("service id"))
    c.end()
    return rec


def encode_store_log_record(rec: StoreLogRecord) -> bytes:
    """The line (without newline) the reference writes for ``rec``."""
    if isinstance(rec, CreateQueue):
        return _encode_create(rec.queue)
    if isinstance(rec, NewService):
        return b"NEW_SERVICE " + _encode_service(rec.service)
    rid = _check_b64_field(rec.recipient_id, "recipient id")
    tag = _QUEUE_ONLY_TAG.get(type(rec))
    if tag is not None:
        return tag + b" " + rid
    if isinstance(rec, CreateLink):
        fields = [rec.link_id, rec.fixed_data, rec.user_data]
        names = ("link id", "link fixed data", "link user data")
        return b" ".join([b"LINK", rid] + [_check_b64_field(v, n) for v, n in zip(fields, names)])
    if isinstance(rec, SecureQueue):
        return b"SECURE " + rid + b" " + _check_b64_field(rec.sender_key, "sender key")
    if isinstance(rec, UpdateKeys):
        return b"KEYS " + rid + b" " + _encode_keys(rec.recipient_keys, "recipient key")
    if isinstance(rec, AddNotifier):
        return b"NOTIFIER " + rid + b" " + _encode_ntf_creds(rec.notifier)
    if isinstance(rec, BlockQueue):
        return b"BLOCK " + rid + b" " + _encode_blocking_info(rec.blocking_info)
    if isinstance(rec, UpdateTime):
        return b"TIME " + rid + b" " + str(rec.date).encode()
    if isinstance(rec, QueueService):
        if rec.party not in SERVICE_PARTIES:
            raise ReferenceFormatError(f"unknown service party {rec.party!r}")
        srv = b"" if rec.service_id is None else _check_b64_field(rec.service_id, "service id")
        return b"QUEUE_SERVICE " + rid + b" " + rec.party.encode() + b" " + srv
    raise TypeError(f"not a store log record: {rec!r}")


# --- message file -----------------------------------------------------------------------------


def decode_message_line(line: bytes) -> tuple[bytes, StoredMessage]:
    """One message file line as (recipient id, message or quota marker)."""
    c = _Cursor(bytes(line))
    if c.token() != _MSG_VERSION:
        c.pos = 0
        raise c.fail(f"expected a {_MSG_VERSION.decode()} message record")
    c.space()
    rid = c.bytes_("recipient id")
    c.space()
    msg_id = c.bytes_("message id")
    c.space()
    ts = c.decimal("timestamp")
    c.space()
    if c.line[c.pos :] == b"quota":
        return rid, StoredMessage(msg_id, ts, False, b"", True)
    notification = False
    if c.optional(b"flags="):
        notification = c.char(("T", "F"), "flags") == "T"
        c.token()  # later flags: the reference ignores what follows the first
        c.space()
    start = c.pos
    body = c.bytes_("message body")
    if len(body) > MAX_MESSAGE_BODY:
        c.pos = start
        raise c.fail(f"message body longer than {MAX_MESSAGE_BODY} bytes")
    c.end()
    return rid, StoredMessage(msg_id, ts, notification, body, False)


def encode_message_line(rid: bytes, msg: StoredMessage) -> bytes:
    """The line (without newline) the reference writes for a queued entry."""
    head = b" ".join(
        (
            _MSG_VERSION,
            _check_b64_field(rid, "recipient id"),
            _check_b64_field(msg.msg_id, "message id"),
            str(msg.ts).encode(),
        )
    )
    if msg.is_quota:
        return head + b" quota"
    flags = b"T" if msg.notification else b"F"
    return head + b" flags=" + flags + b" " + _check_b64_field(msg.body, "message body")


__all__ = [
    "INI_FILE",
    "MESSAGES_FILE",
    "NTFS_FILE",
    "RECORD_TAGS",
    "STORE_LOG_FILE",
    "AddNotifier",
    "BlockQueue",
    "CreateLink",
    "CreateQueue",
    "DeleteLink",
    "DeleteNotifier",
    "DeleteQueue",
    "NewService",
    "QueueService",
    "ReferenceFormatError",
    "SecureQueue",
    "ServiceRecord",
    "StoreLogRecord",
    "SuspendQueue",
    "UnblockQueue",
    "UpdateKeys",
    "UpdateTime",
    "b64",
    "decode_message_line",
    "decode_store_log_line",
    "encode_message_line",
    "encode_store_log_record",
]
