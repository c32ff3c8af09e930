"""The kill -9 harness (smpfast.testing.crash): its checks catch each violation on
fabricated ledgers, a damaged store is caught end to end, and 10 real rounds of SIGKILL
against `smpfast start` lose nothing acknowledged."""

from __future__ import annotations

import json

import pytest

from smpfast.store import LMDBStore
from smpfast.testing import crash
from smpfast.testing import ledger as L

# --------------------------------------------------------------------------- ledger helpers


class History:
    """Builds a ledger the way the harness does, one queue at a time."""

    def __init__(self) -> None:
        self.ledger = L.Ledger()
        self.ledger.start_lifetime()
        self.bodies: dict[tuple[int, int], bytes] = {}

    def queue(self) -> L.QueueBook:
        op = self.ledger.issue("NEW")
        return self.ledger.new_queue(op, bytes([len(self.ledger.queues)]) * 24)

    def send(self, book: L.QueueBook, seq: int, outcome: str = L.ACKNOWLEDGED, *, signed: bool = False,
             error: str = "AUTH") -> L.SendOp:
        body = L.encode_body(book.index, seq, b"filler %d" % seq)
        self.bodies[(book.index, seq)] = body
        op = self.ledger.issue_send(book, seq, body, signed=signed)
        self._resolve(op, outcome, error)
        return op

    def deliver(self, book: L.QueueBook, seq: int, body: bytes | None = None) -> L.Delivery:
        body = self.bodies[(book.index, seq)] if body is None else body
        return self.ledger.delivered(book, b"id%d" % seq, body)

    def ack(self, book: L.QueueBook, delivery: L.Delivery, outcome: str = L.ACKNOWLEDGED) -> L.AckOp:
        op = self.ledger.issue_ack(book, delivery)
        self._resolve(op, outcome)
        return op

    def receive(self, book: L.QueueBook, *seqs: int) -> None:
        for seq in seqs:
            self.ack(book, self.deliver(book, seq))

    def op(self, kind: str, book: L.QueueBook, outcome: str = L.ACKNOWLEDGED, *, nid: bytes | None = None,
           error: str = "AUTH") -> L.Op:
        op = self.ledger.issue(kind, book, nid=nid if kind == "NSUB" else None)
        if outcome == L.ACKNOWLEDGED:
            self.ledger.acknowledge(op, nid=nid)
        else:
            self._resolve(op, outcome, error)
        return op

    def _resolve(self, op: L.Op, outcome: str, error: str = "AUTH") -> None:
        if outcome == L.ACKNOWLEDGED:
            self.ledger.acknowledge(op)
        elif outcome == L.REJECTED:
            self.ledger.reject(op, error)
        # MAYBE: left pending, end_lifetime() turns it into "maybe"

    def kill(self) -> None:
        self.ledger.kills += 1
        self.ledger.end_lifetime()
        self.ledger.start_lifetime()

    def drain(self, *present: L.QueueBook, gone: tuple[L.QueueBook, ...] = ()) -> None:
        """The drain's SUB: ``present`` answer SOK, ``gone`` ERR AUTH."""
        for book in present:
            book.drain_sub = self.op("SUB", book)
        for book in gone:
            book.drain_sub = self.op("SUB", book, L.REJECTED, error="AUTH")

    def violations(self) -> dict[str, int]:
        return {k: len(v) for k, v in L.check(self.ledger).items() if v}


def test_a_clean_history_with_kills_and_maybes_has_no_violation():
    h = History()
    q, r = h.queue(), h.queue()
    h.op("KEY", q)
    h.send(q, 1, signed=True)
    h.send(q, 2, L.MAYBE, signed=True)  # lost or not: either is fine
    h.send(q, 3, signed=True)
    h.receive(q, 1)
    h.ack(q, h.deliver(q, 2), L.MAYBE)  # unanswered ACK: may come back
    h.op("NKEY", r, nid=b"n1")
    h.op("OFF", r)
    h.send(r, 1, L.REJECTED, error="AUTH")  # SEND after OFF: refused, as it must be
    h.kill()
    h.receive(q, 2, 3)  # seq 2 redelivered after the unanswered ACK: allowed
    h.drain(q, r)
    h.op("NSUB", r, nid=b"n1")
    assert h.violations() == {}


def test_an_acknowledged_message_that_never_arrives_is_lost():
    h = History()
    q = h.queue()
    h.send(q, 1)
    h.send(q, 2)
    h.receive(q, 1)
    h.kill()
    h.drain(q)
    found = L.check(h.ledger)
    assert found["lost"] == [f"{q.name()}: seq 2 (acknowledged in lifetime 1) never delivered"]
    assert h.violations() == {"lost": 1}


def test_an_unanswered_send_may_be_lost():
    h = History()
    q = h.queue()
    h.send(q, 1, L.MAYBE)
    h.kill()
    h.drain(q)
    assert h.violations() == {}


def test_a_delivered_message_whose_ack_was_never_sent_must_come_back():
    h = History()
    q = h.queue()
    h.send(q, 1)
    h.deliver(q, 1)  # the kill came before the ACK was sent
    h.kill()
    h.drain(q)  # ... and it never came back
    assert h.violations() == {"lost": 1}


def test_an_answered_ack_undone_by_a_restart():
    h = History()
    q = h.queue()
    h.send(q, 1)
    h.receive(q, 1)
    h.kill()
    h.receive(q, 1)
    h.drain(q)
    assert h.violations() == {"ack_undone": 1}


def test_a_second_delivery_in_the_same_lifetime_after_an_answered_ack():
    h = History()
    q = h.queue()
    h.send(q, 1)
    h.receive(q, 1)
    h.deliver(q, 1)
    h.drain(q)
    assert h.violations() == {"duplicate_delivery": 1}


def test_a_deleted_queue_that_comes_back():
    h = History()
    q = h.queue()
    h.op("DEL", q)
    h.kill()
    h.drain(q)  # SUB answered SOK
    assert h.violations() == {"deleted_back": 1}


def test_an_unanswered_del_may_have_happened():
    h = History()
    q = h.queue()
    h.send(q, 1)
    h.op("DEL", q, L.MAYBE)
    h.kill()
    h.drain(gone=(q,))
    assert h.violations() == {}


def test_a_queue_gone_without_del_is_missing_and_its_messages_lost():
    h = History()
    q = h.queue()
    h.send(q, 1)
    h.kill()
    h.drain(gone=(q,))
    assert h.violations() == {"queue_missing": 1, "lost": 1}


def test_send_accepted_after_an_acknowledged_off():
    h = History()
    q = h.queue()
    h.op("OFF", q)
    h.kill()
    h.send(q, 1)
    h.receive(q, 1)
    h.drain(q)
    assert h.violations() == {"off_undone": 1}


def test_unsigned_send_accepted_after_an_acknowledged_key():
    h = History()
    q = h.queue()
    h.op("KEY", q)
    h.kill()
    h.send(q, 1, signed=False)
    h.receive(q, 1)
    h.drain(q)
    assert h.violations() == {"key_undone": 1}


def test_notifier_of_the_last_acknowledged_nkey_refused():
    h = History()
    q = h.queue()
    h.op("NKEY", q, nid=b"n1")
    h.kill()
    h.drain(q)
    h.op("NSUB", q, L.REJECTED, nid=b"n1", error="AUTH")
    assert h.violations() == {"notifier_lost": 1}


def test_an_unanswered_nkey_after_the_last_acknowledged_one_makes_it_uncheckable():
    h = History()
    q = h.queue()
    h.op("NKEY", q, nid=b"n1")
    h.op("NKEY", q, L.MAYBE)
    h.kill()
    h.drain(q)
    assert h.violations() == {}


@pytest.mark.parametrize("body, problem", [
    (None, "body does not decrypt"),
    (b"hello", "not a harness body"),
    (L.encode_body(7, 1, b"x"), "body of queue 7"),
    (L.encode_body(0, 9, b"x"), "seq 9 was never sent"),
    (L.encode_body(0, 1, b"tampered"), "seq 1 altered"),
])
def test_corrupt_deliveries(body, problem):
    h = History()
    q = h.queue()
    h.send(q, 1)
    d = h.ledger.delivered(q, b"id1", body)
    h.ack(q, d)
    h.receive(q, 1)
    h.drain(q)
    assert d.problem == problem
    assert h.violations() == {"corrupt": 1}


def test_a_refused_send_delivered_is_corrupt():
    h = History()
    q = h.queue()
    h.op("OFF", q)  # (explains the AUTH)
    h.send(q, 1, L.REJECTED, error="AUTH")
    h.receive(q, 1)
    h.drain(q)
    assert h.violations() == {"corrupt": 1}


def test_one_seq_under_two_message_ids_is_corrupt():
    h = History()
    q = h.queue()
    h.send(q, 1)
    h.receive(q, 1)
    h.kill()
    d = h.ledger.delivered(q, b"another id", h.bodies[(q.index, 1)])
    h.ack(q, d)
    h.drain(q)
    assert h.violations() == {"corrupt": 1, "ack_undone": 1}


def test_messages_first_delivered_out_of_send_order():
    h = History()
    q = h.queue()
    h.send(q, 1)
    h.send(q, 2)
    h.receive(q, 2, 1)
    h.drain(q)
    assert h.violations() == {"reordered": 1}


def test_an_unexplained_err_is_reported():
    h = History()
    q = h.queue()
    h.send(q, 1, L.REJECTED, error="AUTH")  # unsecured, active queue: no reason for AUTH
    h.send(q, 2, L.REJECTED, error="QUOTA")  # explained: the queue is full
    h.drain(q)
    assert h.violations() == {"unexpected_error": 1}


def test_a_queue_the_drain_did_not_reach():
    h = History()
    h.queue()
    assert h.violations() == {"drain_incomplete": 1}


def test_summary_counts_operations_and_violations():
    h = History()
    q = h.queue()
    h.send(q, 1)
    h.send(q, 2, L.MAYBE)
    h.kill()
    h.drain(q)
    summary = L.summary(h.ledger, L.check(h.ledger), rounds=1)
    assert summary["rounds"] == 1 and summary["kills"] == 1 and not summary["ok"]
    assert summary["operations"]["SEND"] == {"issued": 2, "acknowledged": 1, "maybe": 1, "rejected": 0,
                                             "errors": {}}
    assert summary["violations"]["lost"] == 1
    assert set(summary["violations"]) == set(L.VIOLATIONS)
    json.dumps(summary)  # the --json file


# --------------------------------------------------------------------------- real server


@pytest.mark.slow
def test_a_store_damaged_behind_the_servers_back_is_caught(tmp_path):
    """End to end: the drain observes the server, not the ledger. Before the drain, one
    acknowledged queue is removed from the LMDB store (and one waiting message from every
    other queue that has one): the harness must report them."""
    removed: dict[str, int] = {"queues": 0, "acknowledged_messages": 0}

    def damage(store_path, ledger):
        store = LMDBStore(str(store_path))
        try:
            untouched = [b for b in ledger.queues
                         if b.first_issued("DEL") is None and store.get_queue(b.rcv_id) is not None]
            victim, others = untouched[0], untouched[1:]
            assert store.delete_queue(victim.rcv_id) is not None
            removed["queues"] += 1
            for book in others:
                msg = store.peek_message(book.rcv_id)
                parsed = None if msg is None else L.parse_body(msg.body)
                if parsed is None:
                    continue
                seq = parsed[1]
                acked = any(a.seq == seq and a.outcome in L.HAPPENED_OR_MAYBE for a in book.acks)
                if book.sends[seq].outcome == L.ACKNOWLEDGED and not acked:
                    assert store.delete_message(book.rcv_id, msg.msg_id)
                    removed["acknowledged_messages"] += 1
            store.commit()
            store.sync()
        finally:
            store.close()

    result = crash.run_crash(2, seed=5, directory=tmp_path, before_drain=damage)
    v = result.summary["violations"]
    assert removed["queues"] == 1
    assert v["queue_missing"] >= 1
    assert v["lost"] >= removed["acknowledged_messages"]
    assert not result.ok


@pytest.mark.slow
def test_ten_rounds_of_kill_9_lose_nothing_acknowledged(tmp_path):
    result = crash.run_crash(10, seed=7, directory=tmp_path)
    s = result.summary
    assert s["kills"] == 10 and s["server_lifetimes"] == 11
    # the workload really ran: every kind of command, answered and unanswered
    for kind in L.KINDS:
        assert s["operations"][kind]["acknowledged"] > 0, kind
    assert s["messages"]["sent_acknowledged"] > 500
    assert s["messages"]["sent_maybe"] > 0
    assert s["violations"] == {k: 0 for k in L.VIOLATIONS}, crash.format_summary(result)


def test_the_command_line_refuses_bad_options(capsys):
    with pytest.raises(SystemExit) as e:
        crash.main(["--rounds", "0"])
    assert e.value.code == 2
    assert "--rounds" in capsys.readouterr().err
