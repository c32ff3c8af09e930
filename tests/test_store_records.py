"""Binary layouts of stored records: round trips, size bound, malformed input."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smpfast.store.errors import RecordError
from smpfast.store.records import (
    ServiceRecord,
    decode_service,
    encode_service,
    MAX_MESSAGE_BODY,
    MAX_MESSAGE_RECORD,
    NotifierRecord,
    QueueRecord,
    StoredMessage,
    decode_message,
    decode_queue,
    encode_message,
    encode_queue,
    message_meta,
    quota_marker,
)

ids = st.binary(min_size=0, max_size=255)
keys = st.binary(min_size=0, max_size=300)
opt = st.one_of(st.none(), keys)


@st.composite
def queue_records(draw) -> QueueRecord:
    link = draw(st.one_of(st.none(), st.tuples(ids, st.binary(max_size=2000), st.binary(max_size=2000))))
    status = draw(st.sampled_from(["active", "off", "blocked"]))
    notifier = draw(
        st.one_of(st.none(), st.builds(NotifierRecord, ids, keys, ids, st.one_of(st.none(), ids)))
    )
    return QueueRecord(
        recipient_id=draw(ids),
        recipient_keys=draw(st.lists(keys, min_size=1, max_size=4)),
        rcv_dh_secret=draw(ids),
        sender_id=draw(ids),
        sender_key=draw(opt),
        queue_mode=draw(st.sampled_from([None, "M", "C"])),
        link_id=link and link[0],
        link_fixed=link and link[1],
        link_user=link and link[2],
        notifier=notifier,
        status=status,
        blocked_info=draw(st.binary(max_size=500)) if status == "blocked" else None,
        updated_at=draw(st.integers(-(2**63), 2**63 - 1)),
        rcv_service_id=draw(st.one_of(st.none(), ids)),
    )


messages = st.one_of(
    st.builds(
        StoredMessage,
        ids,
        st.integers(-(2**63), 2**63 - 1),
        st.booleans(),
        st.binary(max_size=MAX_MESSAGE_BODY),
        st.just(False),
    ),
    st.builds(quota_marker, ids, st.integers(-(2**63), 2**63 - 1)),
)


@given(queue_records())
def test_queue_round_trip(rec):
    data = encode_queue(rec)
    assert data[0] == 1  # format version first
    assert decode_queue(data) == rec


@given(messages)
def test_message_round_trip(m):
    data = encode_message(m)
    assert data[0] == 1
    assert len(data) <= MAX_MESSAGE_RECORD
    assert decode_message(data) == m
    assert message_meta(data) == (m.msg_id, m.ts, m.is_quota)


def test_largest_message_fits_four_pages():
    # the largest SEND body (16088) with the 24-byte ids the server generates, and the
    # worst case of a 255-byte id, both stay within 16,368 bytes (four 4 KB pages)
    body = b"\xff" * MAX_MESSAGE_BODY
    assert len(encode_message(StoredMessage(b"i" * 24, 2**62, True, body))) == 16123
    assert len(encode_message(StoredMessage(b"i" * 255, 1, True, body))) <= MAX_MESSAGE_RECORD


def _raises_only_record_error(fn, data):
    try:
        fn(data)
    except RecordError:
        pass


@settings(max_examples=300)
@given(st.binary(max_size=400))
def test_random_bytes_raise_only_record_error(data):
    _raises_only_record_error(decode_queue, data)
    _raises_only_record_error(decode_message, data)
    _raises_only_record_error(message_meta, data)
    _raises_only_record_error(decode_queue, b"\x01" + data)
    _raises_only_record_error(decode_message, b"\x01" + data)


@given(queue_records(), st.data())
def test_mutated_queue_records_raise_only_record_error(rec, data):
    enc = bytearray(encode_queue(rec))
    cut = data.draw(st.integers(0, len(enc) - 1))
    with pytest.raises(RecordError):
        decode_queue(bytes(enc[:cut]))  # every strict prefix is truncated
    with pytest.raises(RecordError):
        decode_queue(bytes(enc) + b"\x00")  # trailing garbage
    pos = data.draw(st.integers(0, len(enc) - 1))
    enc[pos] ^= data.draw(st.integers(1, 255))
    _raises_only_record_error(decode_queue, bytes(enc))


@given(messages, st.data())
def test_mutated_message_records_raise_only_record_error(m, data):
    enc = bytearray(encode_message(m))
    cut = data.draw(st.integers(0, 10 + len(m.msg_id) - 1))
    with pytest.raises(RecordError):
        decode_message(bytes(enc[:cut]))
    pos = data.draw(st.integers(0, len(enc) - 1))
    enc[pos] ^= data.draw(st.integers(1, 255))
    _raises_only_record_error(decode_message, bytes(enc))


def test_unknown_versions_refused():
    q = encode_queue(QueueRecord(b"r", [b"k"], b"d", b"s"))
    m = encode_message(StoredMessage(b"i", 1, False, b"b"))
    for v in (0, 2, 255):
        with pytest.raises(RecordError, match="version"):
            decode_queue(bytes([v]) + q[1:])
        with pytest.raises(RecordError, match="version"):
            decode_message(bytes([v]) + m[1:])


@pytest.mark.parametrize(
    "bad",
    [
        dict(recipient_keys=[]),
        dict(status="gone"),
        dict(queue_mode="X"),
        dict(status="blocked"),  # without blocked_info
        dict(blocked_info=b"reason=spam"),  # with an active status
        dict(link_id=b"l"),  # without fixed/user data
        dict(sender_id="text"),
        dict(recipient_id=b"r" * 256),
        dict(updated_at=2**63),
        dict(sender_key=b"k" * 70000),
    ],
)
def test_invalid_queue_records_refused(bad):
    fields = dict(recipient_id=b"r", recipient_keys=[b"k"], rcv_dh_secret=b"d", sender_id=b"s")
    fields.update(bad)
    with pytest.raises(RecordError):
        encode_queue(QueueRecord(**fields))


@pytest.mark.parametrize(
    "bad",
    [
        StoredMessage(b"i", 1, False, b"x" * (MAX_MESSAGE_BODY + 1)),
        StoredMessage(b"i" * 256, 1, False, b""),
        StoredMessage(b"i", 2**63, False, b""),
        StoredMessage(b"i", 1, False, b"body", True),
        StoredMessage(b"i", 1, True, b"", True),
        StoredMessage(b"i", 1, False, "text"),
    ],
)
def test_invalid_messages_refused(bad):
    with pytest.raises(RecordError):
        encode_message(bad)


def test_layout_is_fixed():
    # a known record, byte for byte: the layout is a compatibility promise for stores on disk
    rec = QueueRecord(b"R", [b"K1", b"K2"], b"D", b"S", b"SK", "M", notifier=NotifierRecord(b"N", b"NK", b"ND"))
    rec.updated_at = 86400
    assert encode_queue(rec) == (
        bytes([1, 0, 1, 1 | 4]) + struct.pack(">q", 86400)
        + b"\x01R" + b"\x01D" + b"\x01S" + b"\x02" + b"\x00\x02K1" + b"\x00\x02K2"
        + b"\x00\x02SK" + b"\x01N" + b"\x00\x02NK" + b"\x02ND"
    )
    assert encode_message(StoredMessage(b"ID", 7, True, b"body")) == (
        bytes([1, 1]) + struct.pack(">q", 7) + b"\x02ID" + b"body"
    )
    assert encode_message(quota_marker(b"ID", 7)) == bytes([1, 2]) + struct.pack(">q", 7) + b"\x02ID"


services = st.builds(
    ServiceRecord,
    st.binary(min_size=1, max_size=255),
    st.sampled_from(["M", "N", "P"]),
    st.lists(st.binary(max_size=2000), min_size=1, max_size=5).map(tuple),
    st.binary(max_size=255),
    st.integers(-(2**63), 2**63 - 1),
)


@given(services)
def test_service_round_trip(rec):
    assert decode_service(encode_service(rec)) == rec


@given(services, st.data())
def test_mutated_service_records_raise_only_record_error(rec, data):
    raw = bytearray(encode_service(rec))
    i = data.draw(st.integers(0, len(raw) - 1))
    raw[i] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(raw)))
    for candidate in (bytes(raw), bytes(raw[:cut])):
        try:
            decode_service(candidate)
        except RecordError:
            pass
