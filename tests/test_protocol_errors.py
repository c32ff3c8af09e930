"""ErrorType codec: round trips, exact wire forms, malformed input."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol_strategies import error_types, transport_errors
from smpfast.protocol import errors as E
from smpfast.protocol.errors import ParseError, parse_error_type, parse_transport_error


@given(error_types)
def test_error_round_trip(err: E.ErrorType) -> None:
    assert parse_error_type(err.encode()) == err


@given(transport_errors)
def test_transport_error_round_trip(err: E.TransportError) -> None:
    assert parse_transport_error(err.encode()) == err


@pytest.mark.parametrize(
    "wire,expected",
    [
        (b"BLOCK", E.BLOCK),
        (b"AUTH", E.AUTH),
        (b"CMD SYNTAX", E.CMD_SYNTAX),
        (b"CMD NO_QUEUE", E.CMD_NO_ENTITY),  # legacy alias
        (b"PROXY NO_SESSION", E.PROXY_NO_SESSION),
        (b"PROXY PROTOCOL CRYPTO", E.proxy_protocol(E.CRYPTO)),
        (b"PROXY BROKER NETWORK", E.proxy_broker(E.BrokerError("NETWORK", E.NetworkError("FAILED")))),
        (
            b"PROXY BROKER NETWORK CONNECT \x07refused",
            E.proxy_broker(E.BrokerError("NETWORK", E.NetworkError("CONNECT", "refused"))),
        ),
        (b"PROXY BROKER TRANSPORT VERSION", E.proxy_broker(E.BrokerError("TRANSPORT", E.TransportError("VERSION")))),
        (
            b"PROXY BROKER TRANSPORT HANDSHAKE IDENTITY",
            E.proxy_broker(E.BrokerError("TRANSPORT", E.TransportError("HANDSHAKE", "IDENTITY"))),
        ),
        (b"PROXY BROKER RESPONSE \x03a b", E.proxy_broker(E.BrokerError("RESPONSE", "a b"))),
        (b"PROXY BROKER UNEXPECTED \x00", E.proxy_broker(E.BrokerError("UNEXPECTED", ""))),
        (b"BLOCKED reason=spam", E.BLOCKED_SPAM),
        (
            b'BLOCKED reason=content,notice={"ttl":86400}',
            E.ErrorType("BLOCKED", E.BlockingInfo("content", E.ClientNotice(86400))),
        ),
        (b"BLOCKED reason=spam,notice={}", E.ErrorType("BLOCKED", E.BlockingInfo("spam", E.ClientNotice()))),
        (b"STORE disk full: x", E.ErrorType("STORE", "disk full: x")),
        (b"STORE ", E.ErrorType("STORE", "")),
    ],
)
def test_error_wire_forms(wire: bytes, expected: E.ErrorType) -> None:
    assert parse_error_type(wire) == expected


def test_network_detail_is_not_sent() -> None:
    """The reference sends NETWORK bare whatever its detail."""
    e = E.proxy_broker(E.BrokerError("NETWORK", E.NetworkError("TLS", "bad cert")))
    assert e.encode() == b"PROXY BROKER NETWORK"


def test_notice_json_variants() -> None:
    ok = [b'{"ttl": 5}', b'{"ttl":null}', b'{"other":1}', b' {"ttl":1e3} ']
    got = [parse_error_type(b"BLOCKED reason=spam,notice=" + j).detail.notice for j in ok]
    assert got == [E.ClientNotice(5), E.ClientNotice(), E.ClientNotice(), E.ClientNotice(1000)]


@pytest.mark.parametrize(
    "wire",
    [
        b"", b"BLOCK ", b"BLOCKX", b"block", b"CMD", b"CMD ", b"CMD FOO", b"CMD SYNTAX ", b"PROXY",
        b"PROXY BROKER", b"PROXY BROKER NETWORK x", b"PROXY BROKER RESPONSE \x05ab", b"PROXY PROTOCOL",
        b"PROXY BROKER TRANSPORT HANDSHAKE", b"PROXY BROKER TRANSPORT HANDSHAKE NOPE", b"BLOCKED",
        b"BLOCKED reason=", b"BLOCKED reason=ham", b"BLOCKED reason=spam,", b"BLOCKED reason=spam,notice=",
        b"BLOCKED reason=spam,notice=[1]", b'BLOCKED reason=spam,notice={"ttl":1.5}',
        b'BLOCKED reason=spam,notice={"ttl":"1"}', b"BLOCKED reason=spam,notice={\"ttl\":NaN}",
        b"BLOCKED reason=spam,notice=\xff", b"STORE", b"AUTH\x00", b"NO_MSG NO_MSG",
    ],
)
def test_error_malformed(wire: bytes) -> None:
    with pytest.raises(ParseError):
        parse_error_type(wire)


@settings(max_examples=500)
@given(st.binary(max_size=80))
def test_error_arbitrary_bytes_raise_only_parse_error(data: bytes) -> None:
    try:
        e = parse_error_type(data)
    except ParseError:
        return
    assert isinstance(e, E.ErrorType)


@given(error_types, st.integers(0, 200))
def test_error_truncated_or_extended(err: E.ErrorType, cut: int) -> None:
    wire = err.encode()
    for data in (wire[: cut % (len(wire) + 1)], wire + b" x"):
        try:
            parse_error_type(data)
        except ParseError:
            pass


def test_constructor_validation() -> None:
    with pytest.raises(ValueError):
        E.ErrorType("CMD", "NOPE")
    with pytest.raises(ValueError):
        E.ErrorType("AUTH", "x")
    with pytest.raises(ValueError):
        E.BlockingInfo("ham")
    with pytest.raises(ValueError):
        E.TransportError("HANDSHAKE")


def test_str_is_readable() -> None:
    assert str(E.CMD_SYNTAX) == "CMD SYNTAX"
    assert str(E.proxy_broker(E.BrokerError("NETWORK", E.NetworkError("FAILED")))) == "PROXY BROKER NETWORK"
    assert str(E.proxy_protocol(E.CRYPTO)) == "PROXY PROTOCOL CRYPTO"
