"""Broker issues found by fuzz/broker_memory.py: several commands on one queue in one block,
LSET with another queue's link id, and a SUB's message arriving after the answer of an ACK
that acknowledged it in the same block.

The reference runs a block's verified commands one by one on the queue's current record
(secureQueue and suspendQueue read the queue's TVar), and it runs them from the block's last
command to its first (a right fold with effects over the batch), sending the answers in
block order and then the messages SUBs delivered. So of two KEYs with different keys the
last one in the block secures the queue and the first is ERR AUTH; a command before DEL in
the block runs after it (ERR AUTH). The broker does the same: the commands of a block on one
queue share its record, last first.

LSET with a link id that another queue holds used to answer ERR INTERNAL with the store's
DuplicateIdError traceback. The reference's stores disagree here (the STM store answers OK
and repoints the link index, the Postgres store answers ERR STORE); smpfast answers ERR AUTH,
the reference's answer to a duplicate id elsewhere (handleDuplicate), the link staying with
its queue and no error logged.
"""

from __future__ import annotations

import logging

import pytest

from smpfast import _core as core
from smpfast.crypto import auth as cauth
from smpfast.crypto.keys import Alg, PrivateKey
from smpfast.protocol import commands as C
from smpfast.protocol import errors as E
from smpfast.server.broker import Broker
from smpfast.store import MemoryStore

VERSION = 7
LINKS_VERSION = 15
SESSION = bytes(32)
RECIPIENT = PrivateKey(Alg.ED25519, bytes(32))
DH = PrivateKey(Alg.X25519, bytes([1]) * 32)
SENDER_A = PrivateKey(Alg.ED25519, bytes([2]) * 32)
SENDER_B = PrivateKey(Alg.ED25519, bytes([3]) * 32)


class Session:
    def __init__(self, version: int = VERSION) -> None:
        self.version = version
        self.broker = Broker(MemoryStore())
        self.client = self.broker.connect(version, SESSION, bytes([9]) * 32)
        self.rid = self.new_queue()

    def new_queue(self) -> bytes:
        [(_, _, ids)] = self.block((b"new", b"", C.New(RECIPIENT.public.der, DH.public.der)))
        return ids.rcv_id

    def block(self, *transmissions: tuple[bytes, bytes, C.Command]) -> list[tuple]:
        """Send one block of recipient-signed commands; the answers in order."""
        encoded = []
        for corr, entity, cmd in transmissions:
            body = cmd.encode(self.version)
            auth = RECIPIENT.sign(cauth.t_for_auth(SESSION, corr, entity, body))
            encoded.append(core.encode_transmission(auth, corr, entity, body, SESSION, True, False))
        effects = self.broker.process_block(self.client, core.encode_batch(encoded, 16384))
        return [answer for _, batch in effects.replies for answer in batch]


def test_of_two_keys_in_one_block_the_last_secures_the_queue():
    s = Session()
    answers = s.block((b"k1", s.rid, C.Key(SENDER_A.public.der)), (b"k2", s.rid, C.Key(SENDER_B.public.der)))
    assert [(corr, msg) for corr, _, msg in answers] == [(b"k1", C.Err(E.AUTH)), (b"k2", C.OK)]
    assert s.broker.store.get_queue(s.rid).sender_key == SENDER_B.public.der


@pytest.mark.parametrize("command", [C.Off(), C.Key(SENDER_A.public.der)], ids=["OFF", "KEY"])
def test_command_before_del_in_one_block_runs_after_it_and_is_auth(command, caplog):
    s = Session()
    with caplog.at_level(logging.ERROR, logger="smpfast"):
        answers = s.block((b"cmd", s.rid, command), (b"del", s.rid, C.Del()))
    assert [(corr, msg) for corr, _, msg in answers] == [(b"cmd", C.Err(E.AUTH)), (b"del", C.OK)]
    assert s.broker.store.get_queue(s.rid) is None
    assert not caplog.records  # a client's mistake is no server error


@pytest.mark.parametrize("command", [C.Off(), C.Key(SENDER_A.public.der)], ids=["OFF", "KEY"])
def test_command_after_del_in_one_block_runs_before_it(command):
    s = Session()
    answers = s.block((b"del", s.rid, C.Del()), (b"cmd", s.rid, command))
    assert [(corr, msg) for corr, _, msg in answers] == [(b"del", C.OK), (b"cmd", C.OK)]
    assert s.broker.store.get_queue(s.rid) is None


def test_lset_with_another_queues_link_id_is_auth(caplog):
    s = Session(LINKS_VERSION)
    other = s.new_queue()
    link, data = bytes([7]) * 24, C.QueueLinkData(b"fixed", b"user")
    assert s.block((b"l1", s.rid, C.Lset(link, data))) == [(b"l1", s.rid, C.OK)]
    with caplog.at_level(logging.ERROR, logger="smpfast"):
        answers = s.block((b"l2", other, C.Lset(link, data)))
    assert s.broker.store.queue_by_link(link).recipient_id == s.rid
    assert answers == [(b"l2", other, C.Err(E.AUTH))]
    assert not caplog.records


def _queue_with_two_messages(s: Session) -> bytes:
    [(_, _, ids)] = s.block((b"new", b"", C.New(RECIPIENT.public.der, DH.public.der, None, False)))
    for body in (b"one", b"two"):
        t = core.encode_transmission(b"", b"s" + body, ids.snd_id, C.Send(C.MsgFlags(False), body).encode(VERSION),
                                     SESSION, True, False)
        [(_, [(_, _, ok)])] = s.broker.process_block(s.client, core.encode_batch([t], 16384)).replies
        assert ok == C.OK
    return ids.rcv_id


def test_ack_after_sub_in_one_block_runs_first():
    """[SUB, ACK ""] on a queue the connection has not subscribed: ACK runs first (no
    message delivered: ERR NO_MSG), then SUB delivers the head after the answers."""
    s = Session()
    rid = _queue_with_two_messages(s)
    answers = s.block((b"sub", rid, C.SUB), (b"ack", rid, C.Ack(b"")))
    assert [(corr, type(m)) for corr, _, m in answers] == [(b"sub", C.Sok), (b"ack", C.Err), (b"", C.Msg)]
    assert answers[1][2] == C.Err(E.NO_MSG)
    assert s.broker.subscriptions.get(s.client.id, rid).delivered == answers[2][2].msg_id


def test_ack_with_an_empty_id_before_sub_acknowledges_what_the_sub_delivered():
    """[ACK "", SUB] on a subscribed queue: SUB runs first and delivers the head again; the
    ACK with an empty id then acknowledges it (unseen by the client) and is answered the
    next message, the one delivered now; the SUB's message still follows the answers.
    Found by the fuzz target, whose model of "the last MSG sent" assumed arrival order."""
    s = Session()
    rid = _queue_with_two_messages(s)
    [_, (_, _, first)] = s.block((b"sub", rid, C.SUB))
    answers = s.block((b"ack", rid, C.Ack(b"")), (b"sub", rid, C.SUB))
    assert [(corr, type(m)) for corr, _, m in answers] == [(b"ack", C.Msg), (b"sub", C.Sok), (b"", C.Msg)]
    second, again = answers[0][2], answers[2][2]
    assert again.msg_id == first.msg_id != second.msg_id
    assert s.broker.subscriptions.get(s.client.id, rid).delivered == second.msg_id
    head = s.broker.store.peek_message(rid)
    assert head is not None and head.msg_id == second.msg_id  # the first message is gone


def test_answers_and_messages_of_a_block_keep_its_order_though_it_runs_last_first():
    """Three SUBs and two GETs in one block: the answers arrive in block order and the three
    SUBs' messages after them, also in block order, though the commands ran last to first."""
    s = Session()
    rids = [_queue_with_two_messages(s) for _ in range(5)]
    answers = s.block((b"s0", rids[0], C.SUB), (b"g3", rids[3], C.Get()), (b"s1", rids[1], C.SUB),
                      (b"g4", rids[4], C.Get()), (b"s2", rids[2], C.SUB))
    assert [(corr, entity, type(m)) for corr, entity, m in answers] == [
        (b"s0", rids[0], C.Sok), (b"g3", rids[3], C.Msg), (b"s1", rids[1], C.Sok), (b"g4", rids[4], C.Msg),
        (b"s2", rids[2], C.Sok), (b"", rids[0], C.Msg), (b"", rids[1], C.Msg), (b"", rids[2], C.Msg)]
