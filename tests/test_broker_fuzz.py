"""Bad input never crashes the broker: arbitrary blocks, and blocks of random (often
malformed) transmissions, are answered with errors, and the connection keeps working."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smpfast import _core as core
from smpfast.protocol import commands as C
from smpfast.protocol import transmission as T
from smpfast.server.broker import Broker, Peer, encode_answers
from smpfast.store.memory import MemoryStore

SESSION = bytes(range(32))
TAGS = [b"NEW", b"SUB", b"KEY", b"SKEY", b"SEND", b"ACK", b"GET", b"OFF", b"DEL", b"QUE", b"NKEY",
        b"NDEL", b"NSUB", b"PING", b"LSET", b"LKEY", b"LGET", b"LDEL", b"RKEY", b"PRXY", b"PFWD",
        b"RFWD", b"SUBS", b"NSUBS", b"OK", b"HELLO"]


def _ping_works(broker: Broker, client: Peer) -> None:
    t = T.encode_client_transmission(client.version, SESSION, b"p", b"", C.PING)
    [(_, answers)] = broker.process_block(client, core.encode_batch([t], 16384)).replies
    [answer] = encode_answers(client, answers)
    parts = core.split_block(core.encode_batch([answer], 16384), SESSION, client.implied_session, False)
    assert parts[0][3] == b"p" and parts[0][5] == b"PONG"


def _fresh(version: int) -> tuple[Broker, Peer]:
    broker = Broker(MemoryStore())
    return broker, broker.connect(version, SESSION, os.urandom(32))


transmission = st.builds(
    lambda auth, corr, entity, tag, params: core.encode_transmission(
        auth, corr, entity, tag + params, SESSION, True, False),
    st.sampled_from([b"", b"\x00" * 64, b"\x01" * 80, b"\x02" * 114, b"\x03" * 10]),
    st.binary(max_size=30),
    st.one_of(st.just(b""), st.binary(min_size=24, max_size=24)),
    st.sampled_from(TAGS),
    st.one_of(st.just(b""), st.binary(max_size=200).map(lambda b: b" " + b)),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from([6, 7]), st.lists(transmission, min_size=1, max_size=20))
def test_random_transmissions_get_answers(version, transmissions):
    broker, client = _fresh(version)
    block = core.encode_batch(transmissions, 16384)
    effects = broker.process_block(client, block)
    answered = sum(len(batch) for _, batch in effects.replies)
    assert answered >= len(transmissions)  # one answer each (SUB may add a MSG)
    _ping_works(broker, client)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([6, 7]), st.binary(max_size=600))
def test_arbitrary_blocks_get_answers(version, data):
    broker, client = _fresh(version)
    block = (data + b"#" * 16384)[:16384]
    effects = broker.process_block(client, block)
    assert effects.replies  # at least an ERR BLOCK
    _ping_works(broker, client)
