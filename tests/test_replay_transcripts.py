"""Replay the reference server's golden transcripts against smpfast's sans-IO sessions and
broker, every version they hold (6, 7, 9, 11, 15, 18).

Each transcript is replayed block by block: handshakes and (v11+) block encryption through a
``ServerSession`` offering 6..18 as the reference does, transmissions through
``Broker.process_block`` (see tests/replay.py for how values are substituted, requests
re-signed and responses compared); the test fails on the first response that differs from
the reference's, naming the block seq and step. The server announces the same 6..18
(``SERVER_MAX_VERSION``); ``v18-proxy`` replays both servers, the proxy and the relay.
"""

from __future__ import annotations

import copy
import functools
import os
import re

import pytest

from smpfast import _core as core
from smpfast.crypto import message as cmsg
from smpfast.protocol import commands as C
from smpfast.protocol import versions as V
from smpfast.server.connection import Identity
from replay import Replay, ReplayMismatch, load, plaintext, raw_transmissions
from transcripts import FILES

# the versions the codecs, sessions and broker speak (the replay's server offers 6..18)
SPOKEN = range(V.MIN_VERSION, V.MAX_VERSION + 1)

# ---------------------------------------------------------------- v7-quota: the elided part
# The file leaves out SEND msg 1..125 (and their OKs), the MSG 1 push and the ACKs of msg
# 1..126 (each answered by the next MSG). They are re-created here so that the recorded
# SEND msg 126..129 hit the quota exactly as they did on the reference, and the recorded
# "ACK msg 127" finds msg 127 delivered.

QUOTA_FILLED = 125


def _quota_queue(r: Replay) -> tuple[bytes, bytes, bytes]:
    """(recorded recipient id, smpfast recipient id, smpfast sender id) of q1."""
    q = r.t["queues"][0]
    rid = bytes.fromhex(q["rcv_id"])
    return rid, r.subst[rid], r.subst[bytes.fromhex(q["snd_id"])]


def _expect_msg(r: Replay, blocks: list, rec_rid: bytes, corr: bytes, body: bytes) -> bytes:
    """One block holding one MSG of ``body`` for the queue; returns its msg id."""
    ours = r.subst[rec_rid]
    if len(blocks) != 1 or len(blocks[0]) != 1:
        r.fail(f"expected one MSG {body!r}, smpfast sent {blocks}")
    t = blocks[0][0]
    msg = C.parse_response(t.command, 7)
    if not isinstance(msg, C.Msg) or t.entity_id != ours or t.corr_id != corr:
        r.fail(f"expected MSG {body!r} on {ours.hex()}, smpfast sent {t}")
    m = cmsg.decrypt_msg(r.msg_keys[rec_rid][1], msg.msg_id, msg.body)
    if (m.quota, m.notification, m.body) != (False, False, body):
        r.fail(f"expected MSG {body!r}, it decrypts to {m}")
    r.msg_ts[msg.msg_id] = m.ts
    return msg.msg_id


class QuotaFill:
    """Hooks that re-create the elided part of v7-quota around the recorded blocks."""

    def __init__(self) -> None:
        self.delivered = b""  # smpfast msg id of the message delivered to the recipient

    def sends(self, r: Replay) -> None:
        """Before "SEND msg 126": SEND msg 1..125, msg 1 pushed to the recipient."""
        rec_rid, _rid, sid = _quota_queue(r)
        key = r.keys["q1.snd_auth"]
        for i in range(1, QUOTA_FILLED + 1):
            corr = os.urandom(24)
            r.send("sender", [(corr, sid, C.Send(C.MsgFlags(False), b"msg %d" % i).encode(7), key)])
            got = r.take("sender")
            if [[(t.corr_id, t.entity_id, t.command) for t in b] for b in got] != [[(corr, sid, b"OK")]]:
                r.fail(f"filler SEND msg {i}: expected OK, smpfast sent {got}")
            if i == 1:  # the queue was empty: pushed to the subscribed recipient
                self.delivered = _expect_msg(r, r.take("recipient"), rec_rid, b"", b"msg 1")
        if r.take("recipient"):
            r.fail("only msg 1 may be pushed to the recipient")

    def acks(self, r: Replay) -> None:
        """Before "ACK msg 127": ACK msg 1..126, each answered by the next MSG."""
        rec_rid, rid, _sid = _quota_queue(r)
        key = r.keys["q1.rcv_auth"]
        for i in range(1, QUOTA_FILLED + 2):
            corr = os.urandom(24)
            r.send("recipient", [(corr, rid, C.Ack(self.delivered).encode(7), key)])
            self.delivered = _expect_msg(r, r.take("recipient"), rec_rid, corr, b"msg %d" % (i + 1))
        # The recorded ACK names msg 127 by the reference's id, seen only in an elided MSG.
        ack = next(b for b in r.t["blocks"] if (b.get("step") or "").startswith("ACK msg 127"))
        [(_s, _a, _g, _corr, _ent, command, _t)] = core.split_block(plaintext(ack), b"", True, False)
        r.bind(C.parse_command(command, 7).msg_id, self.delivered, "elided MSG 127 msg id")


def quota_hooks() -> dict:
    blocks = load("v7-quota.json")["blocks"]
    first_send = next(b["seq"] for b in blocks if b.get("step") == "SEND msg 126")
    first_ack = next(b["seq"] for b in blocks if (b.get("step") or "").startswith("ACK msg 127"))
    fill = QuotaFill()
    return {first_send: fill.sends, first_ack: fill.acks}


# ---------------------------------------------------------------- the cases

CASES = {
    "v6-no-alpn.json": {},
    # The "wrong-keyhash" connection is a failed client handshake (wrong key hash): the
    # session closes without a word, as the reference.
    "v7-errors.json": {},
    "v7-queue-lifecycle.json": {},
    "v7-quota.json": {"hooks": quota_hooks},
    "v7-batch-135-sub.json": {},
    "v7-notifications.json": {},
    "v9-skey.json": {},
    "v11-block-encryption.json": {},
    "v15-short-links.json": {},
    "v18-queue-lifecycle.json": {},
}

# transcript -> reason, for broker bugs reported and not yet fixed (xfail strict: a fix
# makes the test XPASS and fail, so the entry gets removed)
KNOWN_BROKER_BUGS: dict[str, str] = {}


def _params() -> list:
    out = []
    for name in CASES:
        bug = KNOWN_BROKER_BUGS.get(name)
        marks = [pytest.mark.xfail(strict=True, raises=ReplayMismatch, reason=bug)] if bug else []
        out.append(pytest.param(name, marks=marks, id=name.removesuffix(".json")))
    return out


def make_replay(name: str, transcript: dict | None = None) -> Replay:
    opts = dict(CASES[name])
    hooks = opts.pop("hooks", None)
    return Replay(name, hooks=hooks() if hooks else None, transcript=transcript, **opts)


# Authorizations that no recorded key made are the deliberately wrong ones only (README):
# the sample signature of the syntax cases, the "wrong authorization/key" steps, and the
# signature on an LGET (v15), which may not be signed at all (CMD HAS_AUTH whatever it is).
DELIBERATELY_WRONG = re.compile(r"syntax|wrong|LGET with a signature", re.I)


@pytest.mark.parametrize("name", _params())
def test_replay(name: str) -> None:
    t = load(name)
    skipped = set(CASES[name].get("skip_conns", ()))
    for cname, c in t["connections"].items():
        if cname not in skipped:
            assert c["version"] in SPOKEN, f"{name}: connection {cname} uses v{c['version']}"
    r = make_replay(name)
    r.run()
    unexpected = [s for s in r.kept_auth if not DELIBERATELY_WRONG.search(s)]
    assert not unexpected, f"authorizations no recorded key verifies, outside the deliberate cases: {unexpected}"
    signed = sum(
        1
        for b in t["blocks"]
        if b["dir"] == "c2s" and b["conn"] not in skipped and not DELIBERATELY_WRONG.search(b.get("step") or "")
        for tr in (b.get("summary") or {}).get("transmissions") or ()
        if tr.get("auth_len") in (64, 80, 114)
    )
    assert r.resigned >= signed, f"only {r.resigned} of {signed} authorizations were redone"


def test_every_transcript_is_replayed() -> None:
    assert set(CASES) | {"v18-proxy.json"} == set(FILES)


def test_the_announced_range_is_the_references_6_to_18() -> None:
    """The replays speak up to 18 and so does the server: every feature of 6..18 (proxying,
    service certificates, blocking notices) is served."""
    assert (Identity.__dataclass_fields__["max_version"].default, V.SERVER_MAX_VERSION) == (18, 18)


# ---------------------------------------------------------------- v18-proxy
# Server A is the proxy (PRXY/PFWD), server B the relay: the replay's one broker plays both
# (one server in both roles), the proxy's links to B in memory (tests/replay_proxy.py).
# PRXY names B by its recorded port and fingerprint; every other relay is unreachable. The
# recorded PFWDs are sealed again for smpfast's relay session (inner transmissions re-signed
# for it); PKEY is compared through the session id binding (range 8..17 byte for byte),
# PRES decrypted on both sides (the relay's inner answers compared), and B's queue and
# recipient see the forwarded SEND, SKEY and signed SEND as the reference's did.

PROXY = "v18-proxy.json"
PROXY_STEPS = {
    6: "PRXY -> PKEY (relay session to B)",
    8: "repeated PRXY -> PKEY of the same relay session",
    12: "PFWD unsigned SEND -> PRES",
    17: "PFWD SKEY -> PRES",
    19: "PFWD signed SEND -> PRES",
    24: "PFWD SUB -> PRES(ERR CMD PROHIBITED), a relay refusing recipient commands over RFWD",
    26: "PFWD with an unknown relay session -> ERR PROXY NO_SESSION",
    28: "corrupted PFWD -> ERR PROXY PROTOCOL CRYPTO",
    30: "PRXY to a closed port -> ERR PROXY BROKER NETWORK",
    32: "PRXY with a wrong relay key hash -> ERR PROXY BROKER NETWORK",
}


@functools.cache
def proxy_replay() -> Replay:
    r = Replay(PROXY, relay_server="B", tolerate=PROXY_STEPS)
    r.run()
    return r


def test_replay_v18_proxy() -> None:
    """The whole transcript, strictly: handshakes and block encryption of both
    connections, B's NEW/IDS, the proxy's answers, the forwarded commands' effect at B
    (MSG x2, ACK), the signed PRXY refused by syntax (CMD HAS_AUTH), DEL."""
    r = Replay(PROXY, relay_server="B")
    r.run()
    assert r.relays is not None and r.relays.opened == 1  # one relay session, reused
    assert len(r.proxied) == 6 and r.resigned >= 3
    # SEND, SKEY, signed SEND, SUB reached the relay; the corrupted one it refused (CRYPTO)
    assert r.broker.stats["pMsgFwdsRecv"] == 4 and r.broker.stats["pRelays.successes"] == 2


@pytest.mark.parametrize("seq", [pytest.param(seq, id=f"seq{seq}") for seq in PROXY_STEPS])
def test_replay_v18_proxy_step(seq: int) -> None:
    """Each proxy step on its own (a mismatch names the step)."""
    r = proxy_replay()
    assert seq not in r.mismatches, r.mismatches[seq]


# ---------------------------------------------------------------- the replay itself


def _tampered(name: str, seq: int, old: bytes, new: bytes) -> dict:
    """The transcript with the recorded block ``seq``'s command ``old`` replaced by ``new``."""
    t = copy.deepcopy(load(name))
    b = next(b for b in t["blocks"] if b["seq"] == seq)
    ts = raw_transmissions(plaintext(b))
    assert any(x.endswith(old) for x in ts)
    ts = [x[: -len(old)] + new if x.endswith(old) else x for x in ts]
    content = core.unpad(core.encode_batch(ts, b["pad_to"]))
    b["unpadded_hex"] = (len(content).to_bytes(2, "big") + content).hex()
    return t


@pytest.mark.parametrize(
    ("seq", "old", "new", "needle"),
    [
        (19, b"ERR AUTH", b"ERR NO_MSG", "seq 19 "),  # another error code
        (6, b"PONG", b"OK", "seq 6 "),  # another response
        (17, b"OK", b"ERR NO_MSG", "seq 17 "),  # an error where smpfast says OK
    ],
)
def test_replay_detects_a_wrong_answer(seq: int, old: bytes, new: bytes, needle: str) -> None:
    """A tampered recorded answer makes the replay fail at that block."""
    t = _tampered("v6-no-alpn.json", seq, old, new)
    with pytest.raises(ReplayMismatch, match=needle):
        make_replay("v6-no-alpn.json", t).run()


def test_replay_detects_a_missing_answer() -> None:
    """An answer the reference sent and smpfast did not (an extra recorded s2c block)."""
    t = copy.deepcopy(load("v6-no-alpn.json"))
    extra = copy.deepcopy(next(b for b in t["blocks"] if b["seq"] == 6))
    extra["seq"] = 6.5
    t["blocks"].insert(t["blocks"].index(next(b for b in t["blocks"] if b["seq"] == 7)), extra)
    with pytest.raises(ReplayMismatch, match=r"seq 6\.5 .*smpfast sent nothing"):
        make_replay("v6-no-alpn.json", t).run()


def test_replay_detects_an_extra_answer() -> None:
    """An answer smpfast sent and the reference did not (a recorded s2c block removed)."""
    t = copy.deepcopy(load("v6-no-alpn.json"))
    t["blocks"] = [b for b in t["blocks"] if b["seq"] != 21]
    with pytest.raises(ReplayMismatch, match="did not"):
        make_replay("v6-no-alpn.json", t).run()


def test_replay_detects_a_wrong_message_body(monkeypatch: pytest.MonkeyPatch) -> None:
    """MSG bodies are compared decrypted: a broker that flips the notification flag fails."""
    real = cmsg.encode_rcv_msg_body
    monkeypatch.setattr(cmsg, "encode_rcv_msg_body", lambda ts, ntf, body: real(ts, not ntf, body))
    with pytest.raises(ReplayMismatch, match=r"seq 15 .*MSG decrypts to quota=False ntf=True"):
        make_replay("v6-no-alpn.json").run()


def test_replay_detects_a_wrong_notification(monkeypatch: pytest.MonkeyPatch) -> None:
    """NMSG metadata is compared decrypted: a notification naming another msg id fails."""
    real = cmsg.encrypt_ntf_meta
    monkeypatch.setattr(cmsg, "encrypt_ntf_meta", lambda key, msg_id, ts, nonce=None: real(key, msg_id[::-1], ts, nonce))
    with pytest.raises(ReplayMismatch, match=r"seq 24 .*NMSG names msg"):
        make_replay("v7-notifications.json").run()


def test_replay_detects_a_wrong_proxied_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    """A relay that refused forwarded SENDs would answer ERR CMD PROHIBITED inside PRES:
    the replay opens the PRES and fails at that step."""
    import smpfast.server.broker as broker_module

    monkeypatch.setattr(broker_module, "_FORWARDED_COMMANDS", (C.Skey, C.Lkey, C.Lget))
    with pytest.raises(ReplayMismatch, match=r"seq 12 .*the relay answered"):
        Replay(PROXY, relay_server="B").run()


def test_replay_detects_a_wrong_pkey_range(monkeypatch: pytest.MonkeyPatch) -> None:
    import smpfast.proxy.service as service

    monkeypatch.setattr(service, "relay_vrange", lambda vr, cap=None: V.VersionRange(8, 18))
    with pytest.raises(ReplayMismatch, match=r"seq 6 "):
        Replay(PROXY, relay_server="B").run()
