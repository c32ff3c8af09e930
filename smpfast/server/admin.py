"""The control port's line protocol, with no I/O: a line in, the lines to answer out.

The reference server (``Server/Control.hs``, ``runCPClient`` in ``Server.hs``) serves a
plain-text TCP port on 127.0.0.1 for operators: a greeting, ``auth <password>`` for the
admin or user role, then one command per line. This module parses the lines exactly as the
reference does (same acceptance, same ``error: ...`` texts, which are attoparsec's messages),
checks roles as the reference does and formats answers as the reference prints them
(Haskell ``show`` output included, so operators' scripts keep working). It reads and changes
server state only through a :class:`ControlTarget`; the trio listener (``control.py``)
moves the lines and waits for commits before it writes an answer.

Where smpfast has nothing to report that the reference reports (per-subscription threads,
GHC runtime statistics), the answer keeps the reference's shape with smpfast's facts; the
counters smpfast does not keep yet are left out of ``stats`` rather than printed as zero.
"""

from __future__ import annotations

import base64
import datetime
import enum
import hashlib
import hmac
import logging
from dataclasses import dataclass, field
from typing import Protocol, Sequence

from ..protocol import errors as E
from ..protocol.errors import ParseError
from ..store.errors import StoreError
from ..store.records import MODE_CONTACT, MODE_MESSAGING, STATUS_ACTIVE, STATUS_BLOCKED, STATUS_OFF, QueueRecord

log = logging.getLogger("smpfast.control")

GREETING = ("SMP server control port", "'help' for supported commands")
HELP = "commands: stats, stats-rts, clients, sockets, socket-threads, threads, server-info, delete, save, help, quit"
CLIENTS_HEADER = "clientId,sessionId,connected,createdAt,rcvActiveAt,sndActiveAt,age,subscriptions"
DEFAULT_CONTROL_PORT = 5224  # `init --control-port` without a value, as the reference
DEFAULT_DAILY_BLOCK_QUOTA = 20  # the reference's daily_block_queue_quota when the INI is silent
DAY = 86400


class Role(enum.Enum):
    """The session's role; the values are how the reference prints them."""

    NONE = "CPRNone"
    USER = "CPRUser"
    ADMIN = "CPRAdmin"


# ---------------------------------------------------------------------------- parsing


class ControlSyntaxError(ValueError):
    """A line the reference does not parse; ``str()`` is the reference's message."""


@dataclass(frozen=True, slots=True)
class ControlCommand:
    name: str  # as typed: "stats", "block", ...; "" for an empty line
    entity: bytes | None = None  # sender id or link id (delete, status, block, unblock)
    info: E.BlockingInfo | None = None  # block
    password: bytes | None = None  # auth


_NO_ARGUMENT = frozenset(
    ("suspend", "resume", "clients", "stats", "stats-rts", "threads", "sockets", "socket-threads",
     "server-info", "save", "help", "quit", "")
)
_ENTITY_ARGUMENT = frozenset(("delete", "status", "unblock"))


class _Line:
    """A cursor over one line, failing with attoparsec's messages."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def at_end(self) -> bool:
        return self.pos >= len(self.data)

    def end(self) -> None:
        if not self.at_end():
            raise ControlSyntaxError("endOfInput")

    def space(self) -> None:
        # attoparsec's Char8 `space`: ' ' or \t..\r, failing with the context "space"
        if self.at_end():
            raise ControlSyntaxError("space: not enough input")
        c = self.data[self.pos]
        if not (c == 32 or 9 <= c <= 13):
            raise ControlSyntaxError("space: Failed reading: satisfyWith")
        self.pos += 1

    def base64url(self) -> bytes:
        """The reference's base64urlP: alphanumerics, '-' and '_', then any '=', decoded."""
        start = self.pos
        while not self.at_end() and _b64_token_char(self.data[self.pos]):
            self.pos += 1
        if self.pos == start:
            if self.at_end():
                raise ControlSyntaxError("not enough input")
            raise ControlSyntaxError("Failed reading: takeWhile1")
        while not self.at_end() and self.data[self.pos] == 0x3D:
            self.pos += 1
        try:
            return b64url_decode(self.data[start : self.pos])
        except ValueError as e:
            raise ControlSyntaxError(f"Failed reading: {e}") from None


def _b64_token_char(c: int) -> bool:
    # Data.Char.isAlphaNum over the Latin-1 character of the byte, '-' or '_'
    return c in (0x2D, 0x5F) or chr(c).isalnum()


_B64_VALUES = {c: i for i, c in enumerate(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")}
_PAD = -1


def b64url_decode(s: bytes) -> bytes:
    """base64url with optional padding, as base64-bytestring's ``URL.decode``: the same
    acceptance (canonical encodings only) and the same error messages."""
    if not s:
        return b""
    r = len(s) % 4
    if r == 1:
        raise ValueError("Base64-encoded bytestring has invalid size")
    if r == 3 and s[-1] == 0x3D:
        raise ValueError("Base64-encoded bytestring has invalid padding")
    if r:
        s = s + b"=" * (4 - r)
    vals = [_PAD if c == 0x3D else _B64_VALUES.get(c) for c in s]
    out = bytearray()
    last = len(s) - 4
    for i in range(0, len(s), 4):
        a, b, c, d = vals[i : i + 4]
        final = i == last
        if a == _PAD:
            raise ValueError(f"invalid padding at offset: {i}")
        if b == _PAD:
            raise ValueError(f"invalid padding at offset: {i + 1}")
        if not final:
            if c == _PAD:
                raise ValueError(f"invalid padding at offset: {i + 2}")
            if d == _PAD:
                raise ValueError(f"invalid padding at offset: {i + 3}")
        elif c == _PAD and d != _PAD:
            raise ValueError(f"invalid character at offset: {i + 3}")
        for k, v in enumerate((a, b, c, d)):
            if v is None:
                raise ValueError(f"invalid character at offset: {i + k}")
        c_ = 0 if c == _PAD else c
        d_ = 0 if d == _PAD else d
        w = (a << 18) | (b << 12) | (c_ << 6) | d_
        if final and c == _PAD:
            if b & 0x0F:
                raise ValueError(f"non-canonical encoding detected at offset: {i + 1}")
            out.append(w >> 16)
        elif final and d == _PAD:
            if c & 0x03:
                raise ValueError(f"non-canonical encoding detected at offset: {i + 2}")
            out += bytes((w >> 16, (w >> 8) & 0xFF))
        else:
            out += bytes((w >> 16, (w >> 8) & 0xFF, w & 0xFF))
    return bytes(out)


def _basic_auth(r: _Line) -> bytes:
    """BasicAuth's parser: everything up to '@', printable, no whitespace, ':' or '/'."""
    start = r.pos
    while not r.at_end() and r.data[r.pos] != 0x40:
        r.pos += 1
    if r.pos == start:
        if r.at_end():
            raise ControlSyntaxError("not enough input")
        raise ControlSyntaxError("Failed reading: takeWhile1")
    value = r.data[start : r.pos]
    for byte in value:
        ch = chr(byte)  # Char8: each byte is a Latin-1 character
        if not ch.isprintable() or ch.isspace() or ch in ":/":
            raise ControlSyntaxError("Failed reading: invalid character in BasicAuth")
    return value


def _blocking_info(r: _Line) -> E.BlockingInfo:
    """``reason=spam|content[,notice=<json>]``. As in the reference's parser, a notice that
    is not valid JSON is simply not taken, so the line then fails at endOfInput."""
    rest = r.data[r.pos :]
    if not rest.startswith(b"reason="):
        raise ControlSyntaxError("not enough input" if b"reason=".startswith(rest) else "string")
    r.pos += 7
    for reason in ("spam", "content"):
        if r.data.startswith(reason.encode(), r.pos):
            r.pos += len(reason)
            break
    else:
        # "spam" <|> "content": the error is the last alternative's
        rest = r.data[r.pos :]
        raise ControlSyntaxError("not enough input" if b"content".startswith(rest) else "string")
    if r.data.startswith(b",notice=", r.pos):
        try:
            parsed = E.parse_error_type(b"BLOCKED reason=" + reason.encode() + r.data[r.pos :])
        except ParseError:
            return E.BlockingInfo(reason)
        r.pos = len(r.data)
        return parsed.detail  # type: ignore[return-value]
    return E.BlockingInfo(reason)


def parse_control_line(line: bytes) -> ControlCommand:
    """One line (without its newline) as the reference's ``strDecode`` parses it."""
    if line.endswith(b"\r"):
        line = line[:-1]
    end = line.find(b" ")
    word = line if end < 0 else line[:end]
    r = _Line(line)
    r.pos = len(word)
    try:
        name = word.decode("ascii")
    except UnicodeDecodeError:
        name = "\x00"  # not a command
    if name in _NO_ARGUMENT:
        r.end()
        return ControlCommand(name)
    if name in _ENTITY_ARGUMENT:
        r.space()
        entity = r.base64url()
        r.end()
        return ControlCommand(name, entity=entity)
    if name == "block":
        r.space()
        entity = r.base64url()
        r.space()
        info = _blocking_info(r)
        r.end()
        return ControlCommand(name, entity=entity, info=info)
    if name == "auth":
        r.space()
        password = _basic_auth(r)
        r.end()
        return ControlCommand(name, password=password)
    raise ControlSyntaxError("Failed reading: bad ControlProtocol command")


# ---------------------------------------------------------------------------- Haskell show


def show_blocking_info(info: E.BlockingInfo) -> str:
    reason = "BRSpam" if info.reason == "spam" else "BRContent"
    if info.notice is None:
        notice = "Nothing"
    else:
        ttl = info.notice.ttl
        ttl_s = "Nothing" if ttl is None else f"Just {ttl}" if ttl >= 0 else f"Just ({ttl})"
        notice = f"Just (ClientNotice {{ttl = {ttl_s}}})"
    return f"BlockingInfo {{reason = {reason}, notice = {notice}}}"


def stored_blocking_info(q: QueueRecord) -> E.BlockingInfo:
    """The blocking info kept with a blocked queue (spam if it is unreadable)."""
    try:
        e = E.parse_error_type(b"BLOCKED " + (q.blocked_info or b""))
        return e.detail  # type: ignore[return-value]
    except ParseError:
        return E.BlockingInfo("spam")


def show_status(q: QueueRecord) -> str:
    if q.status == STATUS_BLOCKED:
        return f"EntityBlocked ({show_blocking_info(stored_blocking_info(q))})"
    return "EntityOff" if q.status == STATUS_OFF else "EntityActive"


def show_updated_at(updated_at: int) -> str:
    return "Nothing" if not updated_at else f"Just (RoundedSystemTime {{roundedSeconds = {updated_at}}})"


def show_queue_mode(mode: str | None) -> str:
    return {MODE_MESSAGING: "Just QMMessaging", MODE_CONTACT: "Just QMContact"}.get(mode or "", "Nothing")


def show_utc(ts: float) -> str:
    """Haskell's ``show`` of a UTCTime (microseconds here; trailing zeros dropped)."""
    t = datetime.datetime.fromtimestamp(ts, datetime.timezone.utc)
    frac = f"{t.microsecond:06d}".rstrip("0")
    return t.strftime("%Y-%m-%d %H:%M:%S") + (f".{frac}" if frac else "") + " UTC"


def show_store_error(error: Exception) -> str:
    text = str(error) or type(error).__name__
    return 'STORE {storeErr = "' + text.replace("\\", "\\\\").replace('"', '\\"') + '"}'


def _show_tuple(values: Sequence[int]) -> str:
    return "(" + ",".join(str(v) for v in values) + ")"


def _show_list(values: Sequence[int]) -> str:
    return "[" + ",".join(str(v) for v in values) + "]"


# ---------------------------------------------------------------------------- what the commands read


@dataclass(frozen=True, slots=True)
class Counters:
    """The statistics ``stats`` prints (the ones smpfast keeps)."""

    from_time: float
    queues_created: int
    queues_deleted: int
    messages_sent: int
    messages_received: int
    queue_count: int
    notifier_count: int
    message_count: int
    notification_count: int


@dataclass(frozen=True, slots=True)
class ClientInfo:
    """One connected client (after its SMP handshake)."""

    client_id: int
    session_id: bytes
    connected: bool
    created_at: float
    rcv_active_at: float
    snd_active_at: float
    subscriptions: int  # SUB and GET relations, as the reference's subscriptions map
    prohibited: int  # of which GET (the reference's ProhibitSub)
    ntf_subscriptions: int
    outbox: int  # answer batches waiting to be written (the reference's sndQ)


@dataclass(frozen=True, slots=True)
class SocketCounts:
    port: int
    accepted: int
    closed: int
    active: int


@dataclass(frozen=True, slots=True)
class TaskInfo:
    """A task of the server (the reference lists its Haskell threads)."""

    task_id: int
    state: str
    name: str


@dataclass(frozen=True, slots=True)
class SocketTask:
    port: int
    socket_id: int
    task: TaskInfo | None  # None: the connection's task is gone


class ControlTarget(Protocol):
    """What the control port reads and changes. Queue changes run in their own store write
    unit and raise StoreError when it fails; the caller waits for the commit."""

    def now(self) -> float: ...

    def counters(self) -> Counters: ...

    def clients(self) -> list[ClientInfo]: ...

    def sockets(self) -> list[SocketCounts]: ...

    def tasks(self) -> list[TaskInfo]: ...

    def socket_tasks(self) -> list[SocketTask]: ...

    def subscribers(self) -> tuple[dict[bytes, int], dict[bytes, int]]:
        """(recipient id -> subscribed client id, notifier id -> subscribed client id)."""
        ...

    def runtime_stats(self) -> list[str]: ...

    def sender_queue(self, entity_id: bytes) -> QueueRecord | None:
        """The queue with this sender id, else with this link id."""
        ...

    def block_queue(self, q: QueueRecord, info: E.BlockingInfo) -> None: ...

    def unblock_queue(self, q: QueueRecord) -> None: ...

    def delete_queue(self, q: QueueRecord) -> int:
        """Delete the queue; returns how many messages it held."""
        ...


class BlockQuota:
    """``daily_block_queue_quota``: how many active queues the control port may block per
    UTC day (0: no limit; negative: none). Shared by all control sessions."""

    def __init__(self, limit: int = DEFAULT_DAILY_BLOCK_QUOTA) -> None:
        self.limit = limit
        self._day = -1
        self._count = 0

    def used(self, now: float) -> int:
        day = int(now) // DAY
        if day != self._day:
            self._day, self._count = day, 0
        return self._count

    def exhausted(self, now: float) -> bool:
        return self.limit != 0 and self.used(now) >= self.limit

    def spend(self, now: float) -> None:
        self.used(now)
        self._count += 1


# ---------------------------------------------------------------------------- the session


class Flush:
    """A step of a reply: make every change so far durable before going on (``save``)."""

    __slots__ = ()


FLUSH = Flush()


@dataclass(frozen=True, slots=True)
class ControlReply:
    """What to write: lines, with FLUSH steps between them; ``close`` after writing."""

    steps: tuple[str | Flush, ...] = ()
    close: bool = False

    @property
    def lines(self) -> list[str]:
        return [s for s in self.steps if isinstance(s, str)]


@dataclass(frozen=True, slots=True)
class ControlPasswords:
    admin: bytes | None = None
    user: bytes | None = None


def _matches(given: bytes, expected: bytes | None) -> bool:
    # Constant time: digests of equal length compared with compare_digest, so neither the
    # content nor the length of a password shows in the time (the caller checks both roles).
    if expected is None:
        return False
    return hmac.compare_digest(hashlib.sha256(given).digest(), hashlib.sha256(expected).digest())


@dataclass
class ControlSession:
    """One control-port connection."""

    target: ControlTarget
    passwords: ControlPasswords
    quota: BlockQuota = field(default_factory=BlockQuota)
    role: Role = Role.NONE

    def greeting(self) -> ControlReply:
        return ControlReply(GREETING)

    def handle_line(self, line: bytes) -> ControlReply:
        """Answer one line (without its newline)."""
        try:
            cmd = parse_control_line(line)
        except ControlSyntaxError as e:
            return ControlReply((f"error: {e}",))
        if cmd.name == "quit":
            return ControlReply(close=True)
        if cmd.name not in ("auth", "help", ""):
            log.warning("ControlPort: %r", line.rstrip(b"\r"))
        handler = getattr(self, "_" + cmd.name.replace("-", "_"), None) if cmd.name else None
        if handler is None:
            return ControlReply()
        return handler(cmd)

    # --- roles

    def _auth(self, cmd: ControlCommand) -> ControlReply:
        assert cmd.password is not None
        is_admin = _matches(cmd.password, self.passwords.admin)
        is_user = _matches(cmd.password, self.passwords.user)
        new = Role.ADMIN if is_admin else Role.USER if is_user else Role.NONE
        if self.role is Role.NONE:
            self.role = new
            return ControlReply((f"Current role is {new.value}",))
        suffix = "" if new is self.role else ", start new session to change."
        return ControlReply((f"Current role is {self.role.value}{suffix}",))

    def _unauthorized(self) -> ControlReply:
        log.error("Unauthorized control port command")
        return ControlReply(("AUTH",))

    def _is_user(self) -> bool:
        return self.role is not Role.NONE

    def _is_admin(self) -> bool:
        return self.role is Role.ADMIN

    # --- commands

    def _help(self, cmd: ControlCommand) -> ControlReply:
        return ControlReply((HELP,))

    def _suspend(self, cmd: ControlCommand) -> ControlReply:
        if not self._is_admin():
            return self._unauthorized()
        return ControlReply(("suspend not implemented",))

    def _resume(self, cmd: ControlCommand) -> ControlReply:
        if not self._is_admin():
            return self._unauthorized()
        return ControlReply(("resume not implemented",))

    def _save(self, cmd: ControlCommand) -> ControlReply:
        if not self._is_admin():
            return self._unauthorized()
        return ControlReply(("saving server state...", FLUSH, "server state saved!"))

    def _stats_rts(self, cmd: ControlCommand) -> ControlReply:
        # the reference checks no role for stats-rts
        return ControlReply(tuple(self.target.runtime_stats()))

    def _stats(self, cmd: ControlCommand) -> ControlReply:
        if not self._is_user():
            return self._unauthorized()
        c = self.target.counters()
        lines = [
            f"fromTime: {show_utc(c.from_time)}",
            f"qCreated: {c.queues_created}",
            f"qDeletedAll: {c.queues_deleted}",
            f"msgSent: {c.messages_sent}",
            f"msgRecv: {c.messages_received}",
            f"qCount: {c.queue_count}",
            f"qCount 2: {c.queue_count}",
            f"notifiers: {c.notifier_count}",
            f"msgCount: {c.message_count}",
            f"ntfCount: {c.notification_count}",
        ]
        if self._is_admin():
            lines.append(f"ntfCount 2: {c.notification_count}")
        # no service certificates yet: these counts are what they say
        lines += ["rcvServiceCount: 0", "ntfServiceCount: 0", "rcvServiceQueuesCount: 0", "ntfServiceQueuesCount: 0"]
        return ControlReply(tuple(lines))

    def _clients(self, cmd: ControlCommand) -> ControlReply:
        if not self._is_admin():
            return self._unauthorized()
        now = int(self.target.now())
        lines = [CLIENTS_HEADER]
        for c in self.target.clients():
            lines.append(",".join((
                str(c.client_id),
                base64.b64encode(c.session_id).decode(),
                str(c.connected),
                str(int(c.created_at)),
                str(int(c.rcv_active_at or c.created_at)),
                str(int(c.snd_active_at or c.created_at)),
                str(now - int(c.created_at)),
                str(c.subscriptions),
            )))
        return ControlReply(tuple(lines))

    def _sockets(self, cmd: ControlCommand) -> ControlReply:
        if not self._is_user():
            return self._unauthorized()
        lines: list[str] = []
        for s in self.target.sockets():
            lines += [
                f"Sockets for port {s.port}:",
                f"accepted: {s.accepted}",
                f"closed: {s.closed}",
                f"active: {s.active}",
                f"leaked: {s.accepted - s.closed - s.active}",
            ]
        return ControlReply(tuple(lines))

    def _threads(self, cmd: ControlCommand) -> ControlReply:
        if not self._is_admin():
            return self._unauthorized()
        tasks = sorted(self.target.tasks(), key=lambda t: t.task_id)
        lines = [f"Threads: {len(tasks)}"]
        lines += [f"{t.task_id} ({t.state}) {t.name}" for t in tasks]
        return ControlReply(tuple(lines))

    def _socket_threads(self, cmd: ControlCommand) -> ControlReply:
        if not self._is_admin():
            return self._unauthorized()
        lines = []
        for s in self.target.socket_tasks():
            if s.task is None:
                lines.append(f"{s.port},{s.socket_id},,gone,")
            else:
                lines.append(f"{s.port},{s.socket_id},{s.task.task_id},{s.task.state},{s.task.name}")
        return ControlReply(tuple(lines))

    def _server_info(self, cmd: ControlCommand) -> ControlReply:
        if not self._is_user():
            return self._unauthorized()
        clients = self.target.clients()
        lines = [f"Threads: {len(self.target.tasks())}", f"Clients: {len(clients)}"]
        if self._is_admin():
            subscribed = [c for c in clients if c.subscriptions]
            ntf_subscribed = [c for c in clients if c.ntf_subscriptions]
            lines += [
                f"Client queues (rcvQ, sndQ, msgQ): {_show_tuple((0, sum(c.outbox for c in clients), 0))}",
                f"SMP subscriptions (via clients): {sum(c.subscriptions for c in clients)}",
                "SMP subscriptions (by group: NoSub, SubPending, SubThread, ProhibitSub): "
                + _show_tuple((sum(c.subscriptions - c.prohibited for c in clients), 0, 0,
                               sum(c.prohibited for c in clients))),
                f"SMP subscribed clients (via clients): {len(subscribed)}",
                "SMP subscribed clients queues (via clients, rcvQ, sndQ, msgQ): "
                + _show_tuple((0, sum(c.outbox for c in subscribed), 0)),
                f"Ntf subscriptions (via clients): {sum(c.ntf_subscriptions for c in clients)}",
                f"Ntf subscribed clients (via clients): {len(ntf_subscribed)}",
                "Ntf subscribed clients queues (via clients, rcvQ, sndQ, msgQ): "
                + _show_tuple((0, sum(c.outbox for c in ntf_subscribed), 0)),
            ]
        smp, ntf = self.target.subscribers()
        for proto, subs, show_ids in (("SMP", smp, False), ("Ntf", ntf, True)):
            ids = sorted(set(subs.values()))
            lines.append(f"{proto} subscriptions: {len(subs)}")
            lines.append(f"{proto} subscribed clients: {len(ids)}" + (f" {_show_list(ids)}" if show_ids else ""))
            lines.append(f"{proto} subscribed clients count 2: {len(ids)}"
                         + (f" fromList {_show_list(ids)}" if show_ids else ""))
        return ControlReply(tuple(lines))

    # --- queues (by sender id or link id)

    def _queue(self, cmd: ControlCommand) -> QueueRecord | None:
        assert cmd.entity is not None
        return self.target.sender_queue(cmd.entity)

    def _status(self, cmd: ControlCommand) -> ControlReply:
        if not self._is_user():
            return self._unauthorized()
        q = self._queue(cmd)
        if q is None:
            return ControlReply(("error: AUTH",))
        return ControlReply((
            f"status: {show_status(q)}, updatedAt: {show_updated_at(q.updated_at)}, "
            f"queueMode: {show_queue_mode(q.queue_mode)}",
        ))

    def _delete(self, cmd: ControlCommand) -> ControlReply:
        if not self._is_admin():
            return self._unauthorized()
        q = self._queue(cmd)
        if q is None:
            return ControlReply(("error: AUTH",))
        try:
            deleted = self.target.delete_queue(q)
        except StoreError as e:
            return ControlReply((f"error: {show_store_error(e)}",))
        return ControlReply((f"ok, {deleted} messages deleted",))

    def _block(self, cmd: ControlCommand) -> ControlReply:
        if not self._is_user():
            return self._unauthorized()
        assert cmd.info is not None
        now = self.target.now()
        if self.quota.exhausted(now):
            return ControlReply((f"error: reached limit of {self.quota.limit} queues blocked daily",))
        q = self._queue(cmd)
        if q is None:
            return ControlReply(("error: AUTH",))
        was_active = q.status == STATUS_ACTIVE
        # Blocking again with other information replaces it (and tells the subscriber again).
        if q.status != STATUS_BLOCKED or stored_blocking_info(q) != cmd.info:
            try:
                self.target.block_queue(q, cmd.info)
            except StoreError as e:
                return ControlReply((f"error: {show_store_error(e)}",))
        status = f"EntityBlocked ({show_blocking_info(cmd.info)})"
        if was_active:
            self.quota.spend(now)
            return ControlReply((f"ok, queue blocked: {status}",))
        return ControlReply((f"ok, already inactive: {status}",))

    def _unblock(self, cmd: ControlCommand) -> ControlReply:
        if not self._is_user():
            return self._unauthorized()
        q = self._queue(cmd)
        if q is None:
            return ControlReply(("error: AUTH",))
        if q.status == STATUS_ACTIVE:
            return ControlReply(("ok, queue was active",))
        if q.status == STATUS_OFF:
            return ControlReply(("error, queue is inactive",))
        info = stored_blocking_info(q)
        try:
            self.target.unblock_queue(q)
        except StoreError as e:
            return ControlReply((f"error: {show_store_error(e)}",))
        return ControlReply((f"ok, queue unblocked, reason to block was: {show_blocking_info(info)}",))
