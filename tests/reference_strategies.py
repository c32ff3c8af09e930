"""Hypothesis strategies for the reference server's store log and message file records."""

from __future__ import annotations

import json

from hypothesis import strategies as st

from smpfast.protocol.encoding import ED25519_SPKI_PREFIX, ED448_SPKI_PREFIX, X25519_SPKI_PREFIX
from smpfast.store import MAX_MESSAGE_BODY, NotifierRecord, QueueRecord, StoredMessage
from smpfast.store import reference_log as R

# Every base64 field of the reference's format is non-empty.
ids = st.binary(min_size=1, max_size=32)
blobs = st.binary(min_size=1, max_size=300)
dh_secrets = st.binary(min_size=32, max_size=32)
int64 = st.integers(-(2**63), 2**63 - 1)
auth_keys = st.one_of(
    st.binary(min_size=32, max_size=32).map(lambda k: ED25519_SPKI_PREFIX + k),
    st.binary(min_size=32, max_size=32).map(lambda k: X25519_SPKI_PREFIX + k),
    st.binary(min_size=57, max_size=57).map(lambda k: ED448_SPKI_PREFIX + k),
)
notices = st.fixed_dictionaries({}, optional={"ttl": st.integers(0, 2**40)}) | st.fixed_dictionaries(
    {"ttl": st.none()}
)


@st.composite
def blocking_infos(draw) -> bytes:
    info = b"reason=" + draw(st.sampled_from([b"spam", b"content"]))
    if draw(st.booleans()):
        info += b",notice=" + json.dumps(draw(notices), separators=(",", ":")).encode()
    return info


notifiers = st.builds(NotifierRecord, ids, auth_keys, dh_secrets, st.none() | ids)


@st.composite
def queue_records(draw) -> QueueRecord:
    status = draw(st.sampled_from(["active", "off", "blocked"]))
    link = draw(st.none() | st.tuples(ids, blobs, blobs))
    return QueueRecord(
        recipient_id=draw(ids),
        recipient_keys=draw(st.lists(auth_keys, min_size=1, max_size=3)),
        rcv_dh_secret=draw(dh_secrets),
        sender_id=draw(ids),
        sender_key=draw(st.none() | auth_keys),
        queue_mode=draw(st.sampled_from([None, "M", "C"])),
        link_id=link and link[0],
        link_fixed=link and link[1],
        link_user=link and link[2],
        notifier=draw(st.none() | notifiers),
        status=status,
        blocked_info=draw(blocking_infos()) if status == "blocked" else None,
        updated_at=draw(st.just(0) | int64),
        rcv_service_id=draw(st.none() | ids),
    )


services = st.builds(
    R.ServiceRecord,
    ids,
    st.sampled_from(R.SERVICE_ROLES),
    st.lists(blobs, min_size=1, max_size=3).map(tuple),
    blobs,
    int64,
)

store_log_records = st.one_of(
    st.builds(R.CreateQueue, queue_records()),
    st.builds(R.CreateLink, ids, ids, blobs, blobs),
    st.builds(R.DeleteLink, ids),
    st.builds(R.SecureQueue, ids, auth_keys),
    st.builds(R.UpdateKeys, ids, st.lists(auth_keys, min_size=1, max_size=3).map(tuple)),
    st.builds(R.AddNotifier, ids, notifiers),
    st.builds(R.SuspendQueue, ids),
    st.builds(R.BlockQueue, ids, blocking_infos()),
    st.builds(R.UnblockQueue, ids),
    st.builds(R.DeleteQueue, ids),
    st.builds(R.DeleteNotifier, ids),
    st.builds(R.UpdateTime, ids, int64),
    st.builds(R.NewService, services),
    st.builds(R.QueueService, ids, st.sampled_from(R.SERVICE_PARTIES), st.none() | ids),
)

messages = st.builds(
    StoredMessage,
    ids,
    int64,
    st.booleans(),
    st.binary(min_size=1, max_size=MAX_MESSAGE_BODY),
    st.just(False),
)
markers = st.builds(StoredMessage, ids, int64, st.just(False), st.just(b""), st.just(True))
message_entries = messages | markers
