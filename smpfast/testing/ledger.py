"""The crash harness's ledger: what clients were told, and the checks run over it.

Sans-IO bookkeeping. The workload (``smpfast.testing.crash``) records every command it
issues on a queue, with the moment it was issued and, if an answer came, the moment and
the outcome:

* ``acknowledged``: the server answered with success (IDS, OK, NID, SOK, or for ACK also
  the next MSG). The server promises that this change survives any crash.
* ``maybe``: no answer (the server was killed first). It may or may not have happened.
* ``rejected``: the server answered ERR (recorded with the error text).

Deliveries (MSG) are recorded as they arrive, with the server lifetime (one lifetime per
server start) they arrived in. ``check(ledger)`` then looks for every way the server could
have broken its promise (see ``VIOLATIONS``); "maybe" operations may go either way.

Moments are ``ledger.tick()`` values: one counter for everything, so "issued after OFF
was acknowledged" is a comparison of two integers.

A message body is ``MAGIC | queue u32 | seq u64 | random filler``; the ledger keeps each
sent body's SHA-256, so a delivery proves which send it is and that it arrived intact.
"""

from __future__ import annotations

import hashlib
import struct
from collections import Counter
from dataclasses import dataclass, field

ACKNOWLEDGED = "acknowledged"
MAYBE = "maybe"
REJECTED = "rejected"
OUTCOMES = (ACKNOWLEDGED, MAYBE, REJECTED)
HAPPENED_OR_MAYBE = (ACKNOWLEDGED, MAYBE)

KINDS = ("NEW", "KEY", "SEND", "SUB", "ACK", "DEL", "OFF", "NKEY", "NSUB")

#: Each way the server can break its promise, as named in the summary and the JSON.
VIOLATIONS = {
    "lost": "acknowledged message never delivered and never ACKed",
    "ack_undone": "message delivered again in a later server lifetime after its ACK was answered",
    "duplicate_delivery": "message delivered again in the same server lifetime after its ACK was answered",
    "deleted_back": "queue usable again after its DEL was acknowledged",
    "queue_missing": "acknowledged queue gone without an acknowledged or unanswered DEL",
    "off_undone": "SEND accepted after OFF was acknowledged",
    "key_undone": "unsigned SEND accepted after KEY was acknowledged",
    "notifier_lost": "notifier id of the last acknowledged NKEY refused by NSUB",
    "corrupt": "delivered body undecryptable, unknown, altered, or one sequence number under two message ids",
    "reordered": "a queue's messages first delivered out of send order",
    "unexpected_error": "ERR the ledger cannot explain",
    "drain_incomplete": "the final drain could not empty or check a queue",
}

MAGIC = b"SMPC"
_HEAD = struct.Struct(">4sIQ")
HEADER_SIZE = _HEAD.size
EXAMPLES_KEPT = 5  # per violation kind, in the summary


def encode_body(queue: int, seq: int, filler: bytes) -> bytes:
    return _HEAD.pack(MAGIC, queue, seq) + filler


def parse_body(body: bytes) -> tuple[int, int] | None:
    """(queue, seq) of a harness body, None if it is not one."""
    if len(body) < HEADER_SIZE:
        return None
    magic, queue, seq = _HEAD.unpack_from(body)
    return (queue, seq) if magic == MAGIC else None


def digest(body: bytes) -> bytes:
    return hashlib.sha256(body).digest()


@dataclass
class Op:
    """One command. ``outcome`` is None while the answer is awaited."""

    kind: str
    issued: int
    lifetime: int
    queue: int | None = None
    answered: int | None = None
    outcome: str | None = None
    error: str | None = None
    nid: bytes | None = None  # NKEY's answer / NSUB's entity


@dataclass
class SendOp(Op):
    seq: int = 0
    body_digest: bytes = b""
    signed: bool = False
    probe: bool = False  # sent expecting a refusal (OFF, DEL, KEY checks)


@dataclass
class AckOp(Op):
    seq: int | None = None  # of the delivery it acknowledges (None: that delivery was corrupt)
    msg_id: bytes = b""


@dataclass
class Delivery:
    received: int
    lifetime: int
    msg_id: bytes
    seq: int | None  # None when the body is not a valid harness body of this queue
    problem: str | None = None


@dataclass
class QueueBook:
    """Everything about one acknowledged queue (NEW answered with IDS)."""

    index: int
    rcv_id: bytes
    created: Op
    ops: list[Op] = field(default_factory=list)  # KEY, OFF, DEL, NKEY, SUB, NSUB
    sends: dict[int, SendOp] = field(default_factory=dict)
    deliveries: list[Delivery] = field(default_factory=list)
    acks: list[AckOp] = field(default_factory=list)
    drain_sub: Op | None = None
    drain_problem: str | None = None

    def name(self) -> str:
        return f"queue {self.index} ({self.rcv_id.hex()[:12]})"

    # -- moments the checks compare against

    def first_issued(self, kind: str, outcomes: tuple[str, ...] = HAPPENED_OR_MAYBE) -> int | None:
        ticks = [o.issued for o in self.ops if o.kind == kind and o.outcome in outcomes]
        return min(ticks) if ticks else None

    def first_acknowledged(self, kind: str) -> int | None:
        ticks = [o.answered for o in self.ops if o.kind == kind and o.outcome == ACKNOWLEDGED]
        return min(ticks) if ticks else None  # type: ignore[type-var]


class Ledger:
    def __init__(self) -> None:
        self._tick = 0
        self.lifetime = 0  # the server lifetime now running (1 = first start)
        self.ops: list[Op] = []
        self.queues: list[QueueBook] = []
        self.kills = 0
        self._pending: list[Op] = []

    def tick(self) -> int:
        self._tick += 1
        return self._tick

    def start_lifetime(self) -> int:
        self.lifetime += 1
        return self.lifetime

    def end_lifetime(self) -> None:
        """The server is gone: everything still awaiting an answer becomes "maybe"."""
        for op in self._pending:
            if op.outcome is None:
                op.outcome = MAYBE
        self._pending = [op for op in self._pending if op.outcome is None]

    # -- recording

    def _issue(self, op: Op, book: QueueBook | None) -> Op:
        self.ops.append(op)
        self._pending.append(op)
        if book is not None and not isinstance(op, (SendOp, AckOp)):
            book.ops.append(op)
        return op

    def issue(self, kind: str, book: QueueBook | None = None, *, nid: bytes | None = None) -> Op:
        op = Op(kind, self.tick(), self.lifetime, None if book is None else book.index, nid=nid)
        return self._issue(op, book)

    def issue_send(self, book: QueueBook, seq: int, body: bytes, *, signed: bool, probe: bool = False) -> SendOp:
        op = SendOp("SEND", self.tick(), self.lifetime, book.index, seq=seq, body_digest=digest(body),
                    signed=signed, probe=probe)
        book.sends[seq] = op
        self._issue(op, book)
        return op

    def issue_ack(self, book: QueueBook, delivery: Delivery) -> AckOp:
        op = AckOp("ACK", self.tick(), self.lifetime, book.index, seq=delivery.seq, msg_id=delivery.msg_id)
        book.acks.append(op)
        self._issue(op, book)
        return op

    def acknowledge(self, op: Op, *, nid: bytes | None = None) -> None:
        op.answered, op.outcome = self.tick(), ACKNOWLEDGED
        if nid is not None:
            op.nid = nid

    def reject(self, op: Op, error: str) -> None:
        op.answered, op.outcome, op.error = self.tick(), REJECTED, error

    def new_queue(self, op: Op, rcv_id: bytes) -> QueueBook:
        """NEW ``op`` was answered with IDS for ``rcv_id``."""
        book = QueueBook(len(self.queues), rcv_id, op)
        op.queue = book.index
        self.queues.append(book)
        self.acknowledge(op)
        return book

    def delivered(self, book: QueueBook, msg_id: bytes, body: bytes | None, *, quota: bool = False) -> Delivery:
        """A MSG for ``book``'s queue; ``body`` None when it did not decrypt."""
        seq, problem = None, None
        if body is None:
            problem = "body does not decrypt"
        elif quota:
            problem = "quota marker (the harness keeps queues below the quota)"
        else:
            parsed = parse_body(body)
            if parsed is None:
                problem = "not a harness body"
            elif parsed[0] != book.index:
                problem = f"body of queue {parsed[0]}"
            else:
                sent = book.sends.get(parsed[1])
                if sent is None:
                    problem = f"seq {parsed[1]} was never sent"
                elif sent.body_digest != digest(body):
                    problem = f"seq {parsed[1]} altered"
                else:
                    seq = parsed[1]
        d = Delivery(self.tick(), self.lifetime, msg_id, seq, problem)
        book.deliveries.append(d)
        return d

    # -- summaries

    def operation_counts(self) -> dict[str, dict[str, int]]:
        """Per kind: issued, each outcome, and the rejections by error."""
        counts: dict[str, Counter] = {k: Counter() for k in KINDS}
        errors: dict[str, Counter] = {k: Counter() for k in KINDS}
        for op in self.ops:
            c = counts.setdefault(op.kind, Counter())
            c["issued"] += 1
            c[op.outcome or MAYBE] += 1
            if op.outcome == REJECTED:
                errors.setdefault(op.kind, Counter())[op.error or "?"] += 1
        return {
            k: {"issued": c["issued"], **{o: c[o] for o in OUTCOMES}, "errors": dict(errors[k])}
            for k, c in counts.items()
        }

    def message_counts(self) -> dict[str, int]:
        sends = [s for b in self.queues for s in b.sends.values() if not s.probe]
        return {
            "sent_acknowledged": sum(s.outcome == ACKNOWLEDGED for s in sends),
            "sent_maybe": sum(s.outcome in (None, MAYBE) for s in sends),
            "sent_rejected": sum(s.outcome == REJECTED for s in sends),
            "deliveries": sum(len(b.deliveries) for b in self.queues),
            "acks_acknowledged": sum(a.outcome == ACKNOWLEDGED for b in self.queues for a in b.acks),
            "queues_acknowledged": len(self.queues),
        }


# --------------------------------------------------------------------------- the checks


def check(ledger: Ledger) -> dict[str, list[str]]:
    """Every violation found, by kind (all kinds of ``VIOLATIONS`` present, maybe empty)."""
    found: dict[str, list[str]] = {k: [] for k in VIOLATIONS}
    for op in ledger.ops:
        if op.kind == "NEW" and op.outcome == REJECTED:
            found["unexpected_error"].append(f"NEW answered ERR {op.error} in lifetime {op.lifetime}")
    for book in ledger.queues:
        for kind, text in _check_queue(book):
            found[kind].append(text)
    return found


def _check_queue(book: QueueBook):
    name = book.name()
    del_issued = book.first_issued("DEL")
    del_acked = book.first_acknowledged("DEL")
    off_issued = book.first_issued("OFF")
    off_acked = book.first_acknowledged("OFF")
    key_issued = book.first_issued("KEY")
    key_acked = book.first_acknowledged("KEY")

    def deleted_before(tick: int) -> bool:
        return del_issued is not None and del_issued < tick

    if book.drain_problem is not None:
        yield "drain_incomplete", f"{name}: {book.drain_problem}"
    elif book.drain_sub is None or book.drain_sub.outcome not in (ACKNOWLEDGED, REJECTED):
        yield "drain_incomplete", f"{name}: not subscribed in the drain"
    drain_gone = book.drain_sub is not None and book.drain_sub.outcome == REJECTED and book.drain_sub.error == "AUTH"
    legitimately_gone = del_acked is not None or (del_issued is not None and drain_gone)

    # queue_missing: ERR AUTH to a recipient command while no DEL had been issued
    for op in [*book.ops, *book.acks]:
        if op.outcome == REJECTED and op.error == "AUTH" and op.kind != "NSUB" and not deleted_before(op.issued):
            yield "queue_missing", f"{name}: {op.kind} refused with ERR AUTH in lifetime {op.lifetime}"
            break

    # deleted_back: anything succeeding after DEL was acknowledged
    if del_acked is not None:
        back = [o for o in [*book.ops, *book.sends.values()]
                if o.issued > del_acked and o.outcome == ACKNOWLEDGED and o.kind != "DEL"]
        # A MSG pushed just before the DEL can reach us after its OK: only a later lifetime counts.
        del_lifetime = min(o.lifetime for o in book.ops if o.kind == "DEL" and o.outcome == ACKNOWLEDGED)
        back_deliveries = [d for d in book.deliveries if d.lifetime > del_lifetime]
        if back or back_deliveries:
            what = back[0].kind if back else "MSG"
            yield "deleted_back", f"{name}: {what} succeeded after DEL was acknowledged"

    # off_undone / key_undone: sends accepted that the acknowledged change forbids
    for s in book.sends.values():
        if s.outcome != ACKNOWLEDGED:
            continue
        if off_acked is not None and s.issued > off_acked:
            yield "off_undone", f"{name}: seq {s.seq} accepted after OFF was acknowledged"
        if key_acked is not None and s.issued > key_acked and not s.signed:
            yield "key_undone", f"{name}: unsigned seq {s.seq} accepted after KEY was acknowledged"

    # unexpected_error: ERR answers that nothing in the ledger explains
    for op in [*book.ops, *book.sends.values(), *book.acks]:
        if op.outcome != REJECTED or op.kind == "NSUB":
            continue
        if op.error == "QUOTA" and isinstance(op, SendOp):
            continue  # a full queue refuses: not a crash effect
        if op.error == "AUTH":
            if isinstance(op, SendOp):
                explained = (
                    op.probe
                    or deleted_before(op.issued)
                    or (off_issued is not None and off_issued < op.issued)
                    or (not op.signed and key_issued is not None and key_issued < op.issued)
                )
            else:
                explained = True  # a recipient command: queue_missing or a DEL explains it
            if explained:
                continue
        yield "unexpected_error", f"{name}: {op.kind} answered ERR {op.error} in lifetime {op.lifetime}"

    # corrupt: bad bodies, refused sends delivered, and one seq under two message ids
    ids_of_seq: dict[int, bytes] = {}
    for d in book.deliveries:
        if d.problem is not None:
            yield "corrupt", f"{name}: delivery in lifetime {d.lifetime}: {d.problem}"
        elif book.sends[d.seq].outcome == REJECTED:  # type: ignore[index]
            yield "corrupt", f"{name}: seq {d.seq} delivered although its SEND was refused"
        elif ids_of_seq.setdefault(d.seq, d.msg_id) != d.msg_id:  # type: ignore[arg-type]
            yield "corrupt", f"{name}: seq {d.seq} delivered under two message ids"

    # reordered: first deliveries must follow send order
    seen: set[int] = set()
    highest = 0
    for d in sorted(book.deliveries, key=lambda d: d.received):
        if d.seq is None or d.seq in seen:
            continue
        seen.add(d.seq)
        if d.seq < highest:
            yield "reordered", f"{name}: seq {d.seq} first delivered after seq {highest}"
        highest = max(highest, d.seq)

    # ack_undone: delivered in a later lifetime than an answered ACK of it.
    # duplicate_delivery: delivered twice in the lifetime of an answered ACK of it (each
    # connection subscribes once per lifetime, so the server has no reason to redeliver).
    reported: set[int] = set()
    for a in book.acks:
        if a.outcome != ACKNOWLEDGED or a.seq is None or a.seq in reported:
            continue
        lifetimes = [d.lifetime for d in book.deliveries if d.seq == a.seq]
        if any(lt > a.lifetime for lt in lifetimes):
            reported.add(a.seq)
            yield "ack_undone", f"{name}: seq {a.seq} ACKed in lifetime {a.lifetime}, delivered again later"
        elif lifetimes.count(a.lifetime) > 1:
            reported.add(a.seq)
            yield "duplicate_delivery", f"{name}: seq {a.seq} delivered twice in lifetime {a.lifetime}, ACKed"

    if legitimately_gone:
        return

    # lost: acknowledged sends to a queue that still exists, never ACKed by anyone
    acked_seqs = {a.seq for a in book.acks if a.outcome in HAPPENED_OR_MAYBE}
    for s in sorted(book.sends.values(), key=lambda s: s.seq):
        if s.outcome == ACKNOWLEDGED and s.seq not in acked_seqs:
            yield "lost", f"{name}: seq {s.seq} (acknowledged in lifetime {s.lifetime}) never delivered"

    # notifier_lost: the last acknowledged NKEY's id must still work (if no NKEY followed it)
    if del_issued is None:
        nkeys = [o for o in book.ops if o.kind == "NKEY" and o.outcome in HAPPENED_OR_MAYBE]
        nkeys.sort(key=lambda o: o.issued)
        # An unanswered NKEY after it may have replaced it: then nothing can be checked.
        if nkeys and nkeys[-1].outcome == ACKNOWLEDGED:
            last = len(nkeys) - 1
            nid = nkeys[last].nid
            nsubs = [o for o in book.ops if o.kind == "NSUB" and o.nid == nid and o.issued > nkeys[last].answered]  # type: ignore[operator]
            if not nsubs:
                yield "drain_incomplete", f"{name}: notifier not checked"
            elif not any(o.outcome == ACKNOWLEDGED for o in nsubs):
                yield "notifier_lost", f"{name}: NSUB refused ({nsubs[-1].error}) for the acknowledged notifier id"


def summary(ledger: Ledger, violations: dict[str, list[str]], **extra) -> dict:
    """The JSON report: counts, and a few examples of each violation found."""
    return {
        **extra,
        "server_lifetimes": ledger.lifetime,
        "kills": ledger.kills,
        "operations": ledger.operation_counts(),
        "messages": ledger.message_counts(),
        "violations": {k: len(v) for k, v in violations.items()},
        "violation_examples": {k: v[:EXAMPLES_KEPT] for k, v in violations.items() if v},
        "ok": not any(violations.values()),
    }
