"""Stored records and their fixed, versioned binary layouts.

Every encoded record starts with a one-byte format version; decoders refuse versions they do
not know. Integers are big-endian. ``b8`` is a one-byte length then the bytes, ``b16`` a
two-byte length then the bytes.

Queue record, version 1::

    u8  version (1)
    u8  status        0 active, 1 off, 2 blocked
    u8  queue_mode    0 unknown/legacy, 1 'M' (messaging), 2 'C' (contact)
    u8  flags         bit 0 sender_key, 1 link, 2 notifier, 3 ntf_service_id,
                      4 blocked_info, 5 rcv_service_id (other bits must be 0)
    i64 updated_at    seconds, a multiple of 86400 (the reference's SystemDate); 0 = never set
    b8  recipient_id
    b8  rcv_dh_secret
    b8  sender_id
    u8  number of recipient keys (1..255), then each key as b16 (SPKI DER)
    [b16 sender_key]                                     if flag 0
    [b8 link_id, b16 link_fixed, b16 link_user]          if flag 1
    [b8 notifier_id, b16 notifier_key, b8 ntf_dh_secret] if flag 2
    [b8 ntf_service_id]                                  if flag 3 (requires flag 2)
    [b16 blocked_info]                                   if flag 4 (exactly when status is blocked)
    [b8 rcv_service_id]                                  if flag 5

Service record, version 1 (a service client: the reference's ServiceRec)::

    u8  version (1)
    u8  role          'M' (messaging), 'N' (notifier) or 'P' (proxy), ASCII
    i64 created_at    seconds
    b8  service_id
    b8  cert_hash     SHA-256 of the identity certificate (32 bytes)
    u8  number of certificates (1..255), then each as b16 (DER, leaf first)

Message record, version 1 (at most 16,354 bytes, so it fits four LMDB pages)::

    u8  version (1)
    u8  flags         bit 0 notification, bit 1 quota marker (then no body, no notification)
    i64 ts            seconds
    b8  msg_id
    ... body          the rest of the record (at most MAX_MESSAGE_BODY bytes)
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from .errors import RecordError

QUEUE_RECORD_VERSION = 1
MESSAGE_RECORD_VERSION = 1
SERVICE_RECORD_VERSION = 1

# The largest SEND body any protocol version accepts (the reference's MaxMessageLen).
MAX_MESSAGE_BODY = 16088
# A value of at most this size takes four 4 KB LMDB overflow pages; one byte more takes five.
MAX_MESSAGE_RECORD = 16368

STATUS_ACTIVE = "active"
STATUS_OFF = "off"
STATUS_BLOCKED = "blocked"

_STATUS_CODE = {STATUS_ACTIVE: 0, STATUS_OFF: 1, STATUS_BLOCKED: 2}
_STATUS_NAME = (STATUS_ACTIVE, STATUS_OFF, STATUS_BLOCKED)
MODE_MESSAGING = "M"  # the queue modes of QueueReqData (v15 short links)
MODE_CONTACT = "C"
_MODE_CODE = {None: 0, MODE_MESSAGING: 1, MODE_CONTACT: 2}
_MODE_NAME = (None, "M", "C")

_F_SENDER_KEY = 1
_F_LINK = 2
_F_NOTIFIER = 4
_F_NTF_SERVICE = 8
_F_BLOCKED_INFO = 16
_F_RCV_SERVICE = 32
_F_ALL = 63

_M_NOTIFICATION = 1
_M_QUOTA = 2

_QUEUE_HEADER = struct.Struct(">BBBBq")
_MSG_HEADER = struct.Struct(">BBqB")
_U16 = struct.Struct(">H")


@dataclass(slots=True)
class NotifierRecord:
    """A queue's notifier credentials (the reference's NtfCreds)."""

    notifier_id: bytes
    notifier_key: bytes  # SPKI DER
    ntf_dh_secret: bytes  # raw 32-byte X25519 secret (box key: crypto.message.precompute)
    ntf_service_id: bytes | None = None


@dataclass(slots=True)
class QueueRecord:
    """One queue (the reference's QueueRec plus its recipient id)."""

    recipient_id: bytes
    recipient_keys: list[bytes]  # SPKI DER, non-empty
    rcv_dh_secret: bytes  # raw 32-byte X25519 secret (box key: crypto.message.precompute)
    sender_id: bytes
    sender_key: bytes | None = None  # SPKI DER
    queue_mode: str | None = None  # 'M', 'C', or None (unknown/legacy)
    link_id: bytes | None = None  # the three link fields are all set or all None
    link_fixed: bytes | None = None
    link_user: bytes | None = None
    notifier: NotifierRecord | None = None
    status: str = STATUS_ACTIVE  # 'active' | 'off' | 'blocked'
    blocked_info: bytes | None = None  # BlockingInfo text; set exactly when status is 'blocked'
    updated_at: int = 0  # seconds rounded down to a day (multiple of 86400); 0 = never set
    rcv_service_id: bytes | None = None


SERVICE_ROLES = ("M", "N", "P")  # messaging, notifier, proxy (SMPServiceRole)
# The two parties a queue associates with a service by (ServiceParty): its recipient
# ('R', rcv_service_id, messaging services) or its notifier ('N', ntf_service_id).
SERVICE_RECIPIENT = "R"
SERVICE_NOTIFIER = "N"


@dataclass(frozen=True, slots=True)
class ServiceRecord:
    """A service client (the reference's ServiceRec): created at its first service session,
    found again by ``cert_hash``; queues name it by ``service_id``."""

    service_id: bytes
    role: str  # 'M' | 'N' | 'P'
    certificates: tuple[bytes, ...]  # DER, leaf first (the TLS chain it first came with)
    cert_hash: bytes
    created_at: int  # seconds


@dataclass(slots=True)
class StoredMessage:
    """A message in a queue, or the quota marker (is_quota: no body, no notification)."""

    msg_id: bytes
    ts: int  # seconds
    notification: bool = False
    body: bytes = b""
    is_quota: bool = False


def quota_marker(msg_id: bytes, ts: int) -> StoredMessage:
    """The marker appended in place of the SEND that hit the quota (carries its id and ts)."""
    return StoredMessage(msg_id, ts, False, b"", True)


def copy_queue(rec: QueueRecord) -> QueueRecord:
    """An independent copy (the memory store keeps and hands out copies, like LMDB does)."""
    n = rec.notifier
    return QueueRecord(
        rec.recipient_id,
        list(rec.recipient_keys),
        rec.rcv_dh_secret,
        rec.sender_id,
        rec.sender_key,
        rec.queue_mode,
        rec.link_id,
        rec.link_fixed,
        rec.link_user,
        None if n is None else NotifierRecord(n.notifier_id, n.notifier_key, n.ntf_dh_secret, n.ntf_service_id),
        rec.status,
        rec.blocked_info,
        rec.updated_at,
        rec.rcv_service_id,
    )


# --- encoding helpers -------------------------------------------------------------------------


def _b8(out: list[bytes], value: object, name: str) -> None:
    if not isinstance(value, bytes):
        raise RecordError(f"{name} must be bytes, not {type(value).__name__}")
    if len(value) > 255:
        raise RecordError(f"{name} longer than 255 bytes")
    out.append(bytes((len(value),)))
    out.append(value)


def _b16(out: list[bytes], value: object, name: str) -> None:
    if not isinstance(value, bytes):
        raise RecordError(f"{name} must be bytes, not {type(value).__name__}")
    if len(value) > 65535:
        raise RecordError(f"{name} longer than 65535 bytes")
    out.append(_U16.pack(len(value)))
    out.append(value)


def encode_queue(rec: QueueRecord) -> bytes:
    """The version-1 layout of a queue record. Raises RecordError for an invalid record."""
    status = _STATUS_CODE.get(rec.status)
    if status is None:
        raise RecordError(f"unknown queue status {rec.status!r}")
    mode = _MODE_CODE.get(rec.queue_mode, -1)
    if mode < 0:
        raise RecordError(f"unknown queue mode {rec.queue_mode!r}")
    if (rec.status == STATUS_BLOCKED) != (rec.blocked_info is not None):
        raise RecordError("blocked_info must be set exactly when the status is 'blocked'")
    link = (rec.link_id, rec.link_fixed, rec.link_user)
    has_link = rec.link_id is not None
    if any((x is None) == has_link for x in link):
        raise RecordError("link_id, link_fixed and link_user must be all set or all None")
    keys = rec.recipient_keys
    if not isinstance(keys, list) or not 1 <= len(keys) <= 255:
        raise RecordError("recipient_keys must be a list of 1..255 keys")
    if not isinstance(rec.updated_at, int) or not -(2**63) <= rec.updated_at < 2**63:
        raise RecordError("updated_at must be a 64-bit integer")
    ntf = rec.notifier
    flags = (
        (_F_SENDER_KEY if rec.sender_key is not None else 0)
        | (_F_LINK if has_link else 0)
        | (_F_NOTIFIER if ntf is not None else 0)
        | (_F_NTF_SERVICE if ntf is not None and ntf.ntf_service_id is not None else 0)
        | (_F_BLOCKED_INFO if rec.blocked_info is not None else 0)
        | (_F_RCV_SERVICE if rec.rcv_service_id is not None else 0)
    )
    out = [_QUEUE_HEADER.pack(QUEUE_RECORD_VERSION, status, mode, flags, rec.updated_at)]
    _b8(out, rec.recipient_id, "recipient_id")
    _b8(out, rec.rcv_dh_secret, "rcv_dh_secret")
    _b8(out, rec.sender_id, "sender_id")
    out.append(bytes((len(keys),)))
    for k in keys:
        _b16(out, k, "recipient key")
    if rec.sender_key is not None:
        _b16(out, rec.sender_key, "sender_key")
    if has_link:
        _b8(out, rec.link_id, "link_id")
        _b16(out, rec.link_fixed, "link_fixed")
        _b16(out, rec.link_user, "link_user")
    if ntf is not None:
        if not isinstance(ntf, NotifierRecord):
            raise RecordError("notifier must be a NotifierRecord")
        _b8(out, ntf.notifier_id, "notifier_id")
        _b16(out, ntf.notifier_key, "notifier_key")
        _b8(out, ntf.ntf_dh_secret, "ntf_dh_secret")
        if ntf.ntf_service_id is not None:
            _b8(out, ntf.ntf_service_id, "ntf_service_id")
    if rec.blocked_info is not None:
        _b16(out, rec.blocked_info, "blocked_info")
    if rec.rcv_service_id is not None:
        _b8(out, rec.rcv_service_id, "rcv_service_id")
    return b"".join(out)


class _Cursor:
    """Reads length-prefixed fields; every overrun becomes RecordError."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes, pos: int) -> None:
        self.data = data
        self.pos = pos

    def take(self, n: int) -> bytes:
        end = self.pos + n
        if end > len(self.data):
            raise RecordError("record truncated")
        v = self.data[self.pos : end]
        self.pos = end
        return v

    def u8(self) -> int:
        if self.pos >= len(self.data):
            raise RecordError("record truncated")
        v = self.data[self.pos]
        self.pos += 1
        return v

    def b8(self) -> bytes:
        return self.take(self.u8())

    def b16(self) -> bytes:
        hi = self.u8()
        return self.take((hi << 8) | self.u8())


def decode_queue(data: bytes) -> QueueRecord:
    """Parse a queue record. Raises only RecordError."""
    data = bytes(data)
    if len(data) < _QUEUE_HEADER.size:
        raise RecordError("queue record truncated")
    version, status, mode, flags, updated_at = _QUEUE_HEADER.unpack_from(data)
    if version != QUEUE_RECORD_VERSION:
        raise RecordError(f"unknown queue record version {version}")
    if status > 2 or mode > 2 or flags & ~_F_ALL:
        raise RecordError("invalid queue record header")
    if (flags & _F_NTF_SERVICE and not flags & _F_NOTIFIER) or (
        bool(flags & _F_BLOCKED_INFO) != (status == 2)
    ):
        raise RecordError("inconsistent queue record flags")
    c = _Cursor(data, _QUEUE_HEADER.size)
    rid = c.b8()
    dh = c.b8()
    sid = c.b8()
    n = c.u8()
    if n == 0:
        raise RecordError("queue record without recipient keys")
    keys = [c.b16() for _ in range(n)]
    sender_key = c.b16() if flags & _F_SENDER_KEY else None
    link_id = link_fixed = link_user = None
    if flags & _F_LINK:
        link_id = c.b8()
        link_fixed = c.b16()
        link_user = c.b16()
    notifier = None
    if flags & _F_NOTIFIER:
        notifier = NotifierRecord(c.b8(), c.b16(), c.b8())
        if flags & _F_NTF_SERVICE:
            notifier.ntf_service_id = c.b8()
    blocked_info = c.b16() if flags & _F_BLOCKED_INFO else None
    rcv_service_id = c.b8() if flags & _F_RCV_SERVICE else None
    if c.pos != len(data):
        raise RecordError("trailing bytes after queue record")
    return QueueRecord(
        rid,
        keys,
        dh,
        sid,
        sender_key,
        _MODE_NAME[mode],
        link_id,
        link_fixed,
        link_user,
        notifier,
        _STATUS_NAME[status],
        blocked_info,
        updated_at,
        rcv_service_id,
    )


_SERVICE_HEADER = struct.Struct(">BBq")


def encode_service(rec: ServiceRecord) -> bytes:
    """The version-1 layout of a service record. Raises RecordError for an invalid record."""
    if rec.role not in SERVICE_ROLES:
        raise RecordError(f"unknown service role {rec.role!r}")
    certs = rec.certificates
    if not isinstance(certs, tuple) or not 1 <= len(certs) <= 255:
        raise RecordError("certificates must be a tuple of 1..255 certificates")
    if not rec.service_id:
        raise RecordError("a service id is not empty")
    try:
        out = [_SERVICE_HEADER.pack(SERVICE_RECORD_VERSION, ord(rec.role), rec.created_at)]
    except (struct.error, TypeError) as e:
        raise RecordError(f"invalid created_at: {e}") from None
    _b8(out, rec.service_id, "service_id")
    _b8(out, rec.cert_hash, "cert_hash")
    out.append(bytes((len(certs),)))
    for c in certs:
        _b16(out, c, "certificate")
    return b"".join(out)


def decode_service(data: bytes) -> ServiceRecord:
    """Parse a service record. Raises only RecordError."""
    data = bytes(data)
    if len(data) < _SERVICE_HEADER.size:
        raise RecordError("service record truncated")
    version, role, created_at = _SERVICE_HEADER.unpack_from(data)
    if version != SERVICE_RECORD_VERSION:
        raise RecordError(f"unknown service record version {version}")
    if chr(role) not in SERVICE_ROLES:
        raise RecordError("invalid service role")
    c = _Cursor(data, _SERVICE_HEADER.size)
    service_id = c.b8()
    cert_hash = c.b8()
    n = c.u8()
    if n == 0 or not service_id:
        raise RecordError("invalid service record")
    certs = tuple(c.b16() for _ in range(n))
    if c.pos != len(data):
        raise RecordError("trailing bytes after service record")
    return ServiceRecord(service_id, chr(role), certs, cert_hash, created_at)


def queue_services(rec: QueueRecord | None) -> set[tuple[bytes, str, bytes]]:
    """The (service id, party, queue id) associations a queue record holds: its recipient
    (party 'R', the recipient id) and its notifier (party 'N', the notifier id)."""
    out: set[tuple[bytes, str, bytes]] = set()
    if rec is None:
        return out
    if rec.rcv_service_id is not None:
        out.add((rec.rcv_service_id, SERVICE_RECIPIENT, rec.recipient_id))
    n = rec.notifier
    if n is not None and n.ntf_service_id is not None:
        out.add((n.ntf_service_id, SERVICE_NOTIFIER, n.notifier_id))
    return out


def encode_message(msg: StoredMessage) -> bytes:
    """The version-1 layout of a message record. Raises RecordError for an invalid message."""
    msg_id = msg.msg_id
    body = msg.body
    if not isinstance(msg_id, bytes) or len(msg_id) > 255:
        raise RecordError("msg_id must be at most 255 bytes")
    if not isinstance(body, bytes):
        raise RecordError("body must be bytes")
    if len(body) > MAX_MESSAGE_BODY:
        raise RecordError(f"message body longer than {MAX_MESSAGE_BODY} bytes")
    if msg.is_quota:
        if body or msg.notification:
            raise RecordError("a quota marker has no body and no notification")
        flags = _M_QUOTA
    else:
        flags = _M_NOTIFICATION if msg.notification else 0
    try:
        header = _MSG_HEADER.pack(MESSAGE_RECORD_VERSION, flags, msg.ts, len(msg_id))
    except struct.error as e:
        raise RecordError(f"invalid message timestamp: {e}") from None
    return b"".join((header, msg_id, body))


def message_meta(data: bytes) -> tuple[bytes, int, bool]:
    """(msg_id, ts, is_quota) of a message record without copying its body. Raises RecordError."""
    if len(data) < _MSG_HEADER.size:
        raise RecordError("message record truncated")
    version, flags, ts, id_len = _MSG_HEADER.unpack_from(data)
    if version != MESSAGE_RECORD_VERSION:
        raise RecordError(f"unknown message record version {version}")
    start = _MSG_HEADER.size
    if start + id_len > len(data):
        raise RecordError("message record truncated")
    return bytes(data[start : start + id_len]), ts, bool(flags & _M_QUOTA)


def decode_message(data: bytes) -> StoredMessage:
    """Parse a message record. Raises only RecordError."""
    data = bytes(data)
    if len(data) < _MSG_HEADER.size:
        raise RecordError("message record truncated")
    version, flags, ts, id_len = _MSG_HEADER.unpack_from(data)
    if version != MESSAGE_RECORD_VERSION:
        raise RecordError(f"unknown message record version {version}")
    if flags & ~(_M_NOTIFICATION | _M_QUOTA) or flags == _M_NOTIFICATION | _M_QUOTA:
        raise RecordError("invalid message flags")
    start = _MSG_HEADER.size
    end = start + id_len
    if end > len(data):
        raise RecordError("message record truncated")
    body = data[end:]
    if len(body) > MAX_MESSAGE_BODY or (flags & _M_QUOTA and body):
        raise RecordError("invalid message body")
    return StoredMessage(data[start:end], ts, bool(flags & _M_NOTIFICATION), body, bool(flags & _M_QUOTA))


__all__ = [
    "MAX_MESSAGE_BODY",
    "MAX_MESSAGE_RECORD",
    "MESSAGE_RECORD_VERSION",
    "QUEUE_RECORD_VERSION",
    "STATUS_ACTIVE",
    "STATUS_BLOCKED",
    "STATUS_OFF",
    "NotifierRecord",
    "QueueRecord",
    "SERVICE_NOTIFIER",
    "SERVICE_RECIPIENT",
    "SERVICE_ROLES",
    "ServiceRecord",
    "StoredMessage",
    "TYPICAL_QUEUE",
    "TYPICAL_QUEUE_RECORD",
    "copy_queue",
    "decode_message",
    "decode_queue",
    "decode_service",
    "encode_message",
    "encode_queue",
    "encode_service",
    "message_meta",
    "queue_services",
    "quota_marker",
]

# A secured messaging-mode queue with a notifier, the common layout (one recipient key,
# 44-byte keys). A lookup that finds nothing decodes it (Store.cover_miss): the time of
# ERR AUTH must not tell whether a queue id exists. Values do not matter, lengths do.
TYPICAL_QUEUE = QueueRecord(
    recipient_id=bytes(24),
    recipient_keys=[bytes(44)],
    rcv_dh_secret=bytes(32),
    sender_id=bytes(24),
    sender_key=bytes(44),
    queue_mode=MODE_MESSAGING,
    notifier=NotifierRecord(bytes(24), bytes(44), bytes(32)),
    updated_at=0,
)
TYPICAL_QUEUE_RECORD = encode_queue(TYPICAL_QUEUE)

# A message record of the largest body and id stays within four LMDB pages.
assert _MSG_HEADER.size + 255 + MAX_MESSAGE_BODY <= MAX_MESSAGE_RECORD
