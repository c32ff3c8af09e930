"""Commands and broker messages: per-version round trips, version down-conversions,
credential rules, syntax expectations (the reference's syntax tests) and malformed input."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol_strategies import VERSIONS, commands, responses, x25519, ed25519
from smpfast.protocol import commands as C
from smpfast.protocol import errors as E
from smpfast.protocol.address import QueueMode, SMPServer
from smpfast.protocol.errors import ParseError, UnknownTag
from smpfast.protocol.versions import VersionRange

ED = bytes.fromhex("302a300506032b65700321007c039f972bdb26fd5fb38338910e9bba26495604a9416b2e717abb53ace33206")
X = bytes.fromhex("302a300506032b656e032100ae2cbe1dc011221aac8128d59e32aaa1fb7ecbaa71af1758ebccf9e3e2e36214")


def sh(b: bytes) -> bytes:
    return bytes((len(b),)) + b


# ---- round trips at every version ----


@pytest.mark.parametrize("version", VERSIONS)
@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_command_round_trip(version: int, data: st.DataObject) -> None:
    cmd = data.draw(commands(version))
    wire = C.encode_command(cmd, version)
    assert C.parse_command(wire, version) == cmd
    assert C.encode_command(C.parse_command(wire, version), version) == wire


@pytest.mark.parametrize("version", VERSIONS)
@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_response_round_trip(version: int, data: st.DataObject) -> None:
    msg = data.draw(responses(version))
    wire = C.encode_response(msg, version)
    assert C.parse_response(wire, version) == msg
    assert C.encode_response(C.parse_response(wire, version), version) == wire


# ---- exact layouts per version ----

NEW_FULL = C.New(
    ED, X, b"pass", True,
    C.QueueReqData(QueueMode.MESSAGING, b"sid", C.QueueLinkData(b"F", b"U")),
    C.NewNtfCreds(ED, X),
)


def test_new_layouts_per_version() -> None:
    head = b"NEW " + sh(ED) + sh(X)
    assert NEW_FULL.encode(6) == head + b"A" + sh(b"pass") + b"S"
    assert NEW_FULL.encode(8) == head + b"A" + sh(b"pass") + b"S"
    assert C.New(ED, X, None, False).encode(7) == head + b"C"
    assert NEW_FULL.encode(9) == head + b"1" + sh(b"pass") + b"ST"
    assert NEW_FULL.encode(14) == head + b"1" + sh(b"pass") + b"ST"
    req = b"1M1" + sh(b"sid") + b"\x00\x01F\x00\x01U"
    assert NEW_FULL.encode(15) == head + b"1" + sh(b"pass") + b"S" + req
    assert NEW_FULL.encode(16) == head + b"1" + sh(b"pass") + b"S" + req
    assert NEW_FULL.encode(17) == head + b"1" + sh(b"pass") + b"S" + req + b"1" + sh(ED) + sh(X)
    contact = C.New(ED, X, None, True, C.QueueReqData(QueueMode.CONTACT))
    assert contact.encode(12) == head + b"0SF"
    assert C.New(ED, X).encode(12) == head + b"0SF"  # no request: not sender-securable
    assert contact.encode(18) == head + b"0S1C00"


def test_new_parse_per_version() -> None:
    head = b"NEW " + sh(ED) + sh(X)
    assert C.parse_command(head + b"S", 6) == C.New(ED, X)
    assert C.parse_command(head + b"A" + sh(b"pw") + b"C", 7) == C.New(ED, X, b"pw", False)
    assert C.parse_command(head + b"0ST", 9) == C.New(ED, X, None, True, C.QueueReqData(QueueMode.MESSAGING))
    assert C.parse_command(head + b"0SF", 9) == C.New(ED, X, None, True, C.QueueReqData(QueueMode.CONTACT))
    for v, tail in ((6, b"ST"), (9, b"S"), (9, b"STT"), (15, b"0S"), (15, b"0S00"), (17, b"0S0")):
        with pytest.raises(ParseError):
            C.parse_command(head + tail, v)
    # BasicAuth with a forbidden character: at v6 the 'A' is then read as the subMode
    with pytest.raises(ParseError):
        C.parse_command(head + b"A" + sh(b"a:b") + b"S", 6)


def test_ids_layouts_per_version() -> None:
    ids = C.Ids(b"r", b"s", X, QueueMode.MESSAGING, b"l", b"svc", C.ServerNtfCreds(b"n", X))
    head = b"IDS " + sh(b"r") + sh(b"s") + sh(X)
    assert ids.encode(8) == head
    assert ids.encode(9) == head + b"T"
    assert C.Ids(b"r", b"s", X, QueueMode.CONTACT).encode(14) == head + b"F"
    assert C.Ids(b"r", b"s", X).encode(10) == head + b"F"
    assert ids.encode(15) == head + b"1M1" + sh(b"l")
    assert ids.encode(16) == head + b"1M1" + sh(b"l") + b"1" + sh(b"svc")
    assert ids.encode(17) == head + b"1M1" + sh(b"l") + b"1" + sh(b"svc") + b"1" + sh(b"n") + sh(X)
    assert C.parse_response(head + b"T", 12) == C.Ids(b"r", b"s", X, QueueMode.MESSAGING)
    assert C.parse_response(head + b"000", 16) == C.Ids(b"r", b"s", X)


def test_down_conversions() -> None:
    assert C.encode_response(C.Deld(), 9) == b"END"
    assert C.encode_response(C.Deld(), 10) == b"DELD"
    assert C.parse_response(b"END", 9) == C.End()
    blocked = C.Err(E.ErrorType("BLOCKED", E.BlockingInfo("spam", E.ClientNotice(3600))))
    assert C.encode_response(blocked, 11) == b"ERR AUTH"
    assert C.encode_response(blocked, 12) == b"ERR BLOCKED reason=spam"
    assert C.encode_response(blocked, 17) == b"ERR BLOCKED reason=spam"
    assert C.encode_response(blocked, 18) == b'ERR BLOCKED reason=spam,notice={"ttl":3600}'
    assert C.encode_response(C.Sok(None), 15) == b"OK"
    assert C.encode_response(C.Sok(b"sv"), 15) == b"OK"
    assert C.encode_response(C.Sok(None), 16) == b"SOK 0"
    assert C.encode_response(C.Sok(b"sv"), 16) == b"SOK 1\x02sv"


def test_send_flags_and_body() -> None:
    assert C.parse_command(b"SEND T hello", 7) == C.Send(C.MsgFlags(True), b"hello")
    assert C.parse_command(b"SEND F ", 7) == C.Send(C.MsgFlags(False), b"")
    assert C.parse_command(b"SEND Fxyz a b", 7) == C.Send(C.MsgFlags(False, b"xyz"), b"a b")
    assert C.encode_command(C.parse_command(b"SEND Tab  x", 7), 7) == b"SEND Tab  x"
    for bad in (b"SEND", b"SEND ", b"SEND T", b"SEND X x", b"SEND  T x", b"SENDT x"):
        with pytest.raises(ParseError):
            C.parse_command(bad, 7)


def test_tags_are_not_version_gated() -> None:
    """The reference parses every tag at every version (e.g. SKEY at v8, DELD at v6)."""
    assert C.parse_command(b"SKEY " + sh(ED), 8) == C.Skey(ED)
    assert C.parse_command(b"LGET", 6) == C.Lget()
    assert C.parse_command(b"NSUBS", 6) == C.Nsubs()
    assert C.parse_response(b"DELD", 6) == C.Deld()
    assert C.parse_response(b"SOK 0", 6) == C.Sok(None)


def test_prxy_wire() -> None:
    srv = SMPServer(("127.0.0.1",), "18002", bytes(range(32)))
    wire = b"PRXY \x01\x09127.0.0.1\x0518002\x20" + bytes(range(32)) + b"0"
    assert C.encode_command(C.Prxy(srv), 18) == wire
    assert C.parse_command(wire, 18) == C.Prxy(srv)
    assert C.parse_command(wire[:-1] + b"1\x02pw", 18) == C.Prxy(srv, b"pw")
    # hosts must parse as hosts: a trailing dot-number after an IPv4 is rejected
    with pytest.raises(ParseError):
        C.parse_command(b"PRXY \x01\x091.2.3.4.5\x00\x00" + b"0", 18)
    # the reference prints hosts back in its own form
    parsed = C.parse_command(b"PRXY \x01\x0a01.2.3.260\x00\x00" + b"0", 18)
    assert parsed.server.hosts == ("1.2.3.4",)


def test_keys_must_be_of_an_accepted_algorithm() -> None:
    x448 = bytes.fromhex("3042300506032b656f033900") + bytes(56)
    for k in (x448, ED[:-1], b"A", ED + b"\x00"):
        with pytest.raises(ParseError):
            C.parse_command(b"KEY " + sh(k), 7)
    with pytest.raises(ParseError):  # NKEY's second key must be X25519
        C.parse_command(b"NKEY " + sh(ED) + sh(ED), 7)
    assert C.parse_command(b"NKEY " + sh(X) + sh(X), 7) == C.Nkey(X, X)


# ---- syntax expectations of the reference's tests (parse level) ----


@pytest.mark.parametrize(
    "wire,error",
    [
        (b"HELLO", UnknownTag),
        (b"SUB=", UnknownTag),
        (b"OK", UnknownTag),
        (b"sub", UnknownTag),
        (b"", UnknownTag),
        (b"NEW", ParseError),
        (b"NEW ", ParseError),
        (b"KEY", ParseError),
        (b"KEY " + sh(b"A") + sh(ED), ParseError),
        (b"ACK", ParseError),
        (b"ACK " + sh(b"1234") + b"x", ParseError),
        (b"SUB ", ParseError),
        (b"PING x", ParseError),
        (b"DEL ", ParseError),
    ],
)
def test_syntax_expectations(wire: bytes, error: type) -> None:
    with pytest.raises(error) as info:
        C.parse_command(wire, 7)
    assert info.type is error


def test_unknown_tag_is_a_parse_error_subclass() -> None:
    assert issubclass(UnknownTag, ParseError)


# ---- credentials (checkCredentials) ----

NEW = C.New(ED, X)
SEND = C.Send(C.MsgFlags(False), b"x")
CASES = [
    # (command, has_auth, entity, expected)
    (NEW, True, b"", None),
    (NEW, False, b"", E.CMD_NO_AUTH),
    (NEW, True, b"q", E.CMD_HAS_AUTH),
    (NEW, False, b"q", E.CMD_NO_AUTH),
    (SEND, False, b"q", None),
    (SEND, True, b"q", None),
    (SEND, True, b"", E.CMD_NO_ENTITY),
    (C.Lget(), False, b"l", None),
    (C.Lget(), True, b"l", E.CMD_HAS_AUTH),
    (C.Lget(), True, b"", E.CMD_NO_ENTITY),
    (C.Pfwd(17, X, b""), False, b"s", None),
    (C.Pfwd(17, X, b""), False, b"", E.CMD_NO_ENTITY),
    (C.Ping(), False, b"", None),
    (C.Ping(), True, b"", E.CMD_HAS_AUTH),
    (C.Ping(), False, b"e", E.CMD_HAS_AUTH),
    (C.Rfwd(b""), False, b"", None),
    (C.Prxy(SMPServer(("h",), "", b"k")), True, b"", E.CMD_HAS_AUTH),
    (C.Sub(), True, b"q", None),
    (C.Sub(), False, b"q", E.CMD_NO_AUTH),
    (C.Sub(), True, b"", E.CMD_NO_AUTH),
    (C.Nsub(), False, b"q", E.CMD_NO_AUTH),
    (C.Key(ED), True, b"", E.CMD_NO_AUTH),
    (C.Ack(b""), False, b"q", E.CMD_NO_AUTH),
    (C.Skey(ED), True, b"q", None),
    (C.Lkey(ED), False, b"l", E.CMD_NO_AUTH),
    (C.Subs(), True, b"s", None),
]


@pytest.mark.parametrize("cmd,has_auth,entity,expected", CASES)
def test_check_credentials(cmd: C.Command, has_auth: bool, entity: bytes, expected: E.ErrorType | None) -> None:
    assert C.check_credentials(cmd, has_auth, entity) == expected


def test_response_entity_rule() -> None:
    assert C.check_response_entity(C.Ids(b"r", b"s", X), b"") is None
    assert C.check_response_entity(C.Err(E.AUTH), b"") is None
    assert C.check_response_entity(C.Err(E.AUTH), b"q") is None
    assert C.check_response_entity(C.Pong(), b"") is None
    assert C.check_response_entity(C.Pong(), b"q") == E.CMD_HAS_AUTH
    assert C.check_response_entity(C.Rres(b""), b"q") == E.CMD_HAS_AUTH
    assert C.check_response_entity(C.Pkey(b"s", VersionRange(8, 17), C.CertChainPubKey([b"c"], b"k")), b"x") == E.CMD_HAS_AUTH
    assert C.check_response_entity(C.Ok(), b"") == E.CMD_NO_ENTITY
    assert C.check_response_entity(C.Msg(b"m", b""), b"q") is None
    assert C.check_response_entity(C.End(), b"") == E.CMD_NO_ENTITY


def test_parties_and_roles() -> None:
    assert C.Send.PARTY is C.Party.SENDER and C.New.PARTY is C.Party.CREATOR
    assert C.Lkey.PARTY is C.Party.LINK_CLIENT and C.Rfwd.PARTY is C.Party.PROXY_SERVICE
    assert C.PARTY_SERVICE_ROLE[C.Nsub.PARTY] is C.ServiceRole.NOTIFIER
    assert C.PARTY_SERVICE_ROLE[C.Ping.PARTY] is None
    assert {c.TAG for c in C.COMMAND_CLASSES} == {
        b"NEW", b"SUB", b"SUBS", b"KEY", b"RKEY", b"LSET", b"LDEL", b"NKEY", b"NDEL", b"GET", b"ACK", b"OFF",
        b"DEL", b"QUE", b"SKEY", b"SEND", b"PING", b"LKEY", b"LGET", b"NSUB", b"NSUBS", b"PRXY", b"PFWD", b"RFWD",
        b"RSLV",
    }


# ---- malformed input raises only ParseError/UnknownTag ----

_TAGS = [c.TAG for c in C.COMMAND_CLASSES] + [c.TAG for c in C.RESPONSE_CLASSES]


@pytest.mark.parametrize("version", [6, 9, 15, 16, 17, 18, 19, 20])
@settings(max_examples=300, deadline=None)
@given(tag=st.sampled_from(_TAGS), params=st.binary(max_size=120))
def test_arbitrary_params_raise_only_parse_errors(version: int, tag: bytes, params: bytes) -> None:
    for data in (tag + b" " + params, tag + params):
        for parse in (C.parse_command, C.parse_response):
            try:
                parse(data, version)
            except ParseError:
                pass


@pytest.mark.parametrize("version", [7, 15, 18, 20])
@settings(max_examples=100, deadline=None)
@given(data=st.data(), cut=st.integers(0, 1000))
def test_truncated_and_trailing(version: int, data: st.DataObject, cut: int) -> None:
    cmd = data.draw(commands(version))
    wire = C.encode_command(cmd, version)
    if cut < len(wire):
        try:
            C.parse_command(wire[:cut], version)
        except ParseError:
            pass
    trailing = wire + b"\x00"
    if isinstance(cmd, (C.Send, C.Pfwd, C.Rfwd)):
        assert C.parse_command(trailing, version) != cmd
    else:
        with pytest.raises(ParseError):
            C.parse_command(trailing, version)


@given(st.binary(max_size=64))
def test_random_bytes(data: bytes) -> None:
    for parse in (C.parse_command, C.parse_response):
        try:
            parse(data, 18)
        except ParseError:
            pass


def test_shared_instances_for_field_less_commands() -> None:
    assert C.parse_command(b"SUB", 18) is C.SUB
    assert C.parse_response(b"OK", 18) is C.OK
    assert C.SUB == C.Sub() and C.OK == C.Ok() and C.Sub() != C.Get()


@given(x25519, ed25519)
def test_queue_req_validation(x: bytes, e: bytes) -> None:
    with pytest.raises(ValueError):
        C.QueueReqData(QueueMode.MESSAGING, b"s").encode()
    with pytest.raises(ValueError):
        C.QueueReqData(QueueMode.MESSAGING, b"s", C.QueueLinkData(b"", b""), b"l").encode()
    with pytest.raises(ValueError):
        C.QueueReqData(QueueMode.CONTACT, b"s", C.QueueLinkData(b"", b"")).encode()


@given(st.binary(max_size=255), st.integers(0, 65535), x25519, st.binary(max_size=300))
def test_fwd_transmission_round_trip(corr: bytes, v: int, key: bytes, body: bytes) -> None:
    f = C.FwdTransmission(corr, v, key, body)
    assert f.encode() == bytes((len(corr),)) + corr + v.to_bytes(2, "big") + b"\x2c" + key + body
    assert C.FwdTransmission.parse(f.encode()) == f
    r = C.FwdResponse(corr, body)
    assert C.FwdResponse.parse(r.encode()) == r


@given(st.binary(max_size=100))
def test_fwd_arbitrary_bytes(data: bytes) -> None:
    for cls in (C.FwdTransmission, C.FwdResponse):
        try:
            cls.parse(data)
        except ParseError:
            pass
