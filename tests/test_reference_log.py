"""The reference server's store log and message file codecs (smpfast/store/reference_log.py).

Lines here are written by hand from the format description (the module docstring), one per
record kind and variant; the round trips are hypothesis-generated."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given, settings

from smpfast.protocol.encoding import ED448_SPKI_PREFIX, ED25519_SPKI_PREFIX, X25519_SPKI_PREFIX
from smpfast.store import NotifierRecord, QueueRecord, StoredMessage
from smpfast.store import reference_log as R
from reference_strategies import ids, message_entries, store_log_records


def b(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode()


RID = b"\x01" * 24
SID = b"\x02" * 24
NID = b"\x03" * 24
LNK = b"\x04" * 24
SRV = b"\x05" * 24
RK1 = ED25519_SPKI_PREFIX + b"\x11" * 32
RK2 = X25519_SPKI_PREFIX + b"\x12" * 32
SK = ED448_SPKI_PREFIX + b"\x13" * 57
NK = ED25519_SPKI_PREFIX + b"\x14" * 32
RDH = b"\x21" * 32
NDH = b"\x22" * 32
FIXED = b"fixed link data"
USER = b"user link data!"


def decode(line: str):
    return R.decode_store_log_line(line.encode())


# --- every record kind, from the description ----------------------------------------------------


def test_create_minimal():
    # No sender key: `sk=` ends the line.
    rec = decode(f"CREATE rid={b(RID)} rk={b(RK1)} rdh={b(RDH)} sid={b(SID)} sk=")
    assert rec == R.CreateQueue(QueueRecord(RID, [RK1], RDH, SID))


def test_create_every_field():
    line = (
        f"CREATE rid={b(RID)} rk={b(RK1)},{b(RK2)} rdh={b(RDH)} sid={b(SID)} sk={b(SK)}"
        f" queue_mode=C link_id={b(LNK)} queue_data={b(FIXED)} {b(USER)}"
        f" notifier={b(NID)} {b(NK)} {b(NDH)} nsrv={b(SRV)} updated_at=1700006400"
        f" status=blocked,reason=content,notice={{\"ttl\":86400}} rsrv={b(SRV)}"
    )
    q = decode(line).queue
    assert q == QueueRecord(
        recipient_id=RID,
        recipient_keys=[RK1, RK2],
        rcv_dh_secret=RDH,
        sender_id=SID,
        sender_key=SK,
        queue_mode="C",
        link_id=LNK,
        link_fixed=FIXED,
        link_user=USER,
        notifier=NotifierRecord(NID, NK, NDH, SRV),
        status="blocked",
        blocked_info=b'reason=content,notice={"ttl":86400}',
        updated_at=1700006400,
        rcv_service_id=SRV,
    )
    # The reference writes exactly this line for that record.
    assert R.encode_store_log_record(R.CreateQueue(q)) == line.encode()


def test_create_status_and_legacy_fields():
    base = f"CREATE rid={b(RID)} rk={b(RK1)} rdh={b(RDH)} sid={b(SID)} sk={b(SK)}"
    assert decode(base + " sndSecure=T").queue.queue_mode == "M"
    assert decode(base + " sndSecure=F").queue.queue_mode == "C"
    assert decode(base + " status=off").queue.status == "off"
    active = decode(base + " status=active").queue  # read, never written
    assert active.status == "active"
    assert R.encode_store_log_record(R.CreateQueue(active)) == base.encode()
    blocked = decode(base + " status=blocked,reason=spam").queue
    assert (blocked.status, blocked.blocked_info) == ("blocked", b"reason=spam")


def test_base64_with_and_without_padding():
    short = b"\x07" * 10  # 16 characters with "==", 14 without
    padded = f"DELETE {b(short)}"
    assert padded.endswith("==")
    assert decode(padded) == decode(padded.rstrip("=")) == R.DeleteQueue(short)
    assert R.encode_store_log_record(R.DeleteQueue(short)) == padded.encode()


RECORD_LINES = [
    (f"LINK {b(RID)} {b(LNK)} {b(FIXED)} {b(USER)}", R.CreateLink(RID, LNK, FIXED, USER)),
    (f"LDELETE {b(RID)}", R.DeleteLink(RID)),
    (f"SECURE {b(RID)} {b(SK)}", R.SecureQueue(RID, SK)),
    (f"KEYS {b(RID)} {b(RK1)},{b(RK2)}", R.UpdateKeys(RID, (RK1, RK2))),
    (f"NOTIFIER {b(RID)} {b(NID)} {b(NK)} {b(NDH)}", R.AddNotifier(RID, NotifierRecord(NID, NK, NDH))),
    (
        f"NOTIFIER {b(RID)} {b(NID)} {b(NK)} {b(NDH)} nsrv={b(SRV)}",
        R.AddNotifier(RID, NotifierRecord(NID, NK, NDH, SRV)),
    ),
    (f"SUSPEND {b(RID)}", R.SuspendQueue(RID)),
    (f"BLOCK {b(RID)} reason=spam", R.BlockQueue(RID, b"reason=spam")),
    (
        f'BLOCK {b(RID)} reason=content,notice={{"ttl":null}}',
        R.BlockQueue(RID, b'reason=content,notice={"ttl":null}'),
    ),
    (f"UNBLOCK {b(RID)}", R.UnblockQueue(RID)),
    (f"DELETE {b(RID)}", R.DeleteQueue(RID)),
    (f"NDELETE {b(RID)}", R.DeleteNotifier(RID)),
    (f"TIME {b(RID)} 1700006400", R.UpdateTime(RID, 1700006400)),
    (
        f"NEW_SERVICE service_id={b(SRV)} role=N cert={b(b'leaf cert')},{b(b'ca cert')}"
        f" cert_hash={b(b'h' * 32)} created_at=1700006400",
        R.NewService(R.ServiceRecord(SRV, "N", (b"leaf cert", b"ca cert"), b"h" * 32, 1700006400)),
    ),
    (f"QUEUE_SERVICE {b(RID)} R {b(SRV)}", R.QueueService(RID, "R", SRV)),
    # No service: the line ends in a space after the party.
    (f"QUEUE_SERVICE {b(RID)} N ", R.QueueService(RID, "N", None)),
]


@pytest.mark.parametrize("line, record", RECORD_LINES)
def test_record_kinds(line, record):
    assert decode(line) == record
    assert R.encode_store_log_record(record) == line.encode()


def test_every_record_kind_is_covered():
    kinds = {line.split(" ", 1)[0] for line, _ in RECORD_LINES} | {"CREATE"}
    assert kinds == {t.decode() for t in R.RECORD_TAGS}


def test_notice_followed_by_rsrv_is_read():
    # The reference writes this but its notice parser takes the rest of the line.
    line = (
        f"CREATE rid={b(RID)} rk={b(RK1)} rdh={b(RDH)} sid={b(SID)} sk="
        f' status=blocked,reason=spam,notice={{"ttl":5}} rsrv={b(SRV)}'
    )
    q = decode(line).queue
    assert (q.blocked_info, q.rcv_service_id) == (b'reason=spam,notice={"ttl":5}', SRV)


# --- message file ----------------------------------------------------------------------------------


MID = b"\x31" * 24


@pytest.mark.parametrize(
    "line, entry",
    [
        (f"v3 {b(RID)} {b(MID)} 1700000001 flags=F {b(b'body')}", StoredMessage(MID, 1700000001, False, b"body")),
        (f"v3 {b(RID)} {b(MID)} 1700000002 flags=T {b(b'body')}", StoredMessage(MID, 1700000002, True, b"body")),
        (f"v3 {b(RID)} {b(MID)} 1700000003 quota", StoredMessage(MID, 1700000003, False, b"", True)),
    ],
)
def test_message_lines(line, entry):
    assert R.decode_message_line(line.encode()) == (RID, entry)
    assert R.encode_message_line(RID, entry) == line.encode()


def test_message_line_variants_the_reader_accepts():
    # No flags= (older writers): no notification; flags beyond the first are ignored.
    assert R.decode_message_line(f"v3 {b(RID)} {b(MID)} 5 {b(b'x')}".encode())[1] == StoredMessage(MID, 5, False, b"x")
    assert R.decode_message_line(f"v3 {b(RID)} {b(MID)} 5 flags=T,X {b(b'x')}".encode())[1].notification
    # A body whose base64 starts with "quota" is a body.
    body = base64.urlsafe_b64decode("quotaAAA")
    assert R.decode_message_line(f"v3 {b(RID)} {b(MID)} 5 quotaAAA".encode())[1].body == body


# --- round trips -------------------------------------------------------------------------------------


@settings(max_examples=400)
@given(store_log_records)
def test_store_log_round_trip(rec):
    line = R.encode_store_log_record(rec)
    assert b"\n" not in line
    assert R.decode_store_log_line(line) == rec
    assert R.encode_store_log_record(R.decode_store_log_line(line)) == line


@settings(max_examples=200)
@given(ids, message_entries)
def test_message_round_trip(rid, entry):
    line = R.encode_message_line(rid, entry)
    assert R.decode_message_line(line) == (rid, entry)


# --- bad input -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "line, message",
    [
        ("", "empty line"),
        ("RENAME abc", "unknown record kind 'RENAME'"),
        ("DELETE", "line ends early"),
        (f"DELETE {b(RID)} extra", "unexpected text"),
        (f"DELETE {b(RID)[:-3]}", "invalid base64url"),
        (f"SECURE {b(RID)} {b(b'not a key')}", "sender key"),
        (f"CREATE rid={b(RID)} rk={b(RK1)} rdh={b(b'short')} sid={b(SID)} sk=", "32-byte X25519 secret"),
        (f"CREATE rid={b(RID)} rk={b(RK1)} rdh={b(RDH)}", "line ends early"),
        (f"CREATE rid={b(RID)} rk={b(RK1)} rdh={b(RDH)} sid={b(SID)} sk= queue_mode=X", "queue_mode"),
        (f"CREATE rid={b(RID)} rk={b(RK1)} rdh={b(RDH)} sid={b(SID)} sk= link_id={b(LNK)}", "queue_data"),
        (f"BLOCK {b(RID)} reason=rude", "spam or content"),
        (f"BLOCK {b(RID)} reason=spam,notice={{broken", "expected JSON"),
        (f"TIME {b(RID)} soon", "decimal"),
        (f"QUEUE_SERVICE {b(RID)} X ", "R or N"),
    ],
)
def test_bad_store_log_lines(line, message):
    with pytest.raises(R.ReferenceFormatError, match=message):
        decode(line)


@pytest.mark.parametrize(
    "line, message",
    [
        (f"v2 {b(RID)} {b(MID)} 5 quota", "v3"),
        (f"v3 {b(RID)} {b(MID)} 5", "line ends early"),
        (f"v3 {b(RID)} {b(MID)} 5 flags=F ", "message body"),  # an empty body is unreadable
        (f"v3 {b(RID)} {b(MID)} 5 flags=F {b(b'x' * 16089)}", "longer than 16088"),
        (f"v3 {b(RID)} {b(MID)} later quota", "timestamp"),
    ],
)
def test_bad_message_lines(line, message):
    with pytest.raises(R.ReferenceFormatError, match=message):
        R.decode_message_line(line.encode())


def test_encoders_refuse_what_the_reference_cannot_read_back():
    with pytest.raises(R.ReferenceFormatError, match="empty"):
        R.encode_message_line(RID, StoredMessage(MID, 5, False, b""))
    with pytest.raises(R.ReferenceFormatError, match="empty"):
        R.encode_store_log_record(R.CreateLink(RID, LNK, FIXED, b""))
