"""The control port's sans-IO core (smpfast.server.admin): the reference's parser, its
messages, its Haskell ``show`` output, the daily block quota."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smpfast.protocol import errors as E
from smpfast.server.admin import (
    BlockQuota,
    ControlCommand,
    ControlSyntaxError,
    b64url_decode,
    parse_control_line,
    show_blocking_info,
    show_queue_mode,
    show_updated_at,
    show_utc,
)

# line -> the reference's parse result (a command) or its error text (attoparsec's)
PARSES = [
    (b"", ControlCommand("")),
    (b"stats", ControlCommand("stats")),
    (b"stats\r", ControlCommand("stats")),
    (b"stats-rts", ControlCommand("stats-rts")),
    (b"socket-threads", ControlCommand("socket-threads")),
    (b"delete AQID", ControlCommand("delete", entity=b"\x01\x02\x03")),
    (b"status AQI", ControlCommand("status", entity=b"\x01\x02")),
    (b"unblock AQI=", ControlCommand("unblock", entity=b"\x01\x02")),
    (b"auth p4ss!", ControlCommand("auth", password=b"p4ss!")),
    (b"block AQID reason=spam", ControlCommand("block", entity=b"\x01\x02\x03", info=E.BlockingInfo("spam"))),
    (b'block AQID reason=content,notice={"ttl":9}',
     ControlCommand("block", entity=b"\x01\x02\x03", info=E.BlockingInfo("content", E.ClientNotice(9)))),
    (b"block AQID reason=spam,notice={}",
     ControlCommand("block", entity=b"\x01\x02\x03", info=E.BlockingInfo("spam", E.ClientNotice(None)))),
    (b"stats ", "endOfInput"),
    (b" stats", "endOfInput"),
    (b"Stats", "Failed reading: bad ControlProtocol command"),
    (b"stats\tx", "Failed reading: bad ControlProtocol command"),
    (b"delete", "space: not enough input"),
    (b"delete ", "not enough input"),
    (b"delete *", "Failed reading: takeWhile1"),
    (b"delete AQID x", "endOfInput"),
    (b"delete A", "Failed reading: Base64-encoded bytestring has invalid size"),
    (b"delete AQ=", "Failed reading: Base64-encoded bytestring has invalid padding"),
    (b"delete AR", "Failed reading: non-canonical encoding detected at offset: 1"),
    (b"delete AQJ", "Failed reading: non-canonical encoding detected at offset: 2"),
    (b"delete A===", "Failed reading: invalid padding at offset: 1"),
    (b"delete AQ==AQ==", "endOfInput"),  # the '=' run ends the token
    (b"delete \xe9\xe9\xe9\xe9", "Failed reading: invalid character at offset: 0"),  # Latin-1 letters
    (b"block AQID", "space: not enough input"),
    (b"block AQID;reason=spam", "space: Failed reading: satisfyWith"),
    (b"block AQID reason", "not enough input"),
    (b"block AQID season=spam", "string"),
    (b"block AQID reason=", "not enough input"),
    (b"block AQID reason=con", "not enough input"),
    (b"block AQID reason=ham", "string"),
    (b"block AQID reason=spammy", "endOfInput"),
    (b"block AQID reason=spam,notice=", "endOfInput"),  # bad JSON: the notice is not taken
    (b"block AQID reason=spam,notice=[1]", "endOfInput"),
    (b"auth", "space: not enough input"),
    (b"auth ", "not enough input"),
    (b"auth @", "Failed reading: takeWhile1"),
    (b"auth a b", "Failed reading: invalid character in BasicAuth"),
    (b"auth a:b", "Failed reading: invalid character in BasicAuth"),
    (b"auth a\x7fb", "Failed reading: invalid character in BasicAuth"),
    (b"auth a@b", "endOfInput"),
]


@pytest.mark.parametrize("line, expected", PARSES, ids=[repr(p[0])[2:-1] or "empty" for p in PARSES])
def test_parse_control_line(line: bytes, expected) -> None:
    if isinstance(expected, str):
        with pytest.raises(ControlSyntaxError) as e:
            parse_control_line(line)
        assert str(e.value) == expected
    else:
        assert parse_control_line(line) == expected


@given(st.binary(max_size=64), st.booleans())
def test_b64url_decode_round_trip(data: bytes, padded: bool) -> None:
    text = base64.urlsafe_b64encode(data)
    assert b64url_decode(text if padded else text.rstrip(b"=")) == data


@given(st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", max_size=40))
def test_b64url_decode_accepts_exactly_the_canonical_encodings(text: str) -> None:
    s = text.encode()
    try:
        decoded = b64url_decode(s)
    except ValueError:
        # refused: wrong size or bits left over that a canonical encoder never sets
        assert len(s) % 4 == 1 or base64.urlsafe_b64encode(
            base64.urlsafe_b64decode(s + b"=" * (-len(s) % 4))).rstrip(b"=") != s
    else:
        assert base64.urlsafe_b64encode(decoded).rstrip(b"=") == s


def test_haskell_show() -> None:
    assert show_blocking_info(E.BlockingInfo("spam")) == "BlockingInfo {reason = BRSpam, notice = Nothing}"
    assert show_blocking_info(E.BlockingInfo("content", E.ClientNotice(-5))) == \
        "BlockingInfo {reason = BRContent, notice = Just (ClientNotice {ttl = Just (-5)})}"
    assert show_blocking_info(E.BlockingInfo("spam", E.ClientNotice(None))) == \
        "BlockingInfo {reason = BRSpam, notice = Just (ClientNotice {ttl = Nothing})}"
    assert show_updated_at(0) == "Nothing"
    assert show_updated_at(86400) == "Just (RoundedSystemTime {roundedSeconds = 86400})"
    assert (show_queue_mode("M"), show_queue_mode("C"), show_queue_mode(None)) == \
        ("Just QMMessaging", "Just QMContact", "Nothing")
    assert show_utc(0) == "1970-01-01 00:00:00 UTC"
    assert show_utc(1.25) == "1970-01-01 00:00:01.25 UTC"


def test_block_quota_is_per_utc_day() -> None:
    q = BlockQuota(2)
    day = 1_700_006_400  # 00:00 UTC
    assert not q.exhausted(day)
    q.spend(day)
    q.spend(day + 86399)
    assert q.exhausted(day + 86399)
    assert not q.exhausted(day + 86400)  # midnight: a new day
    assert q.used(day + 86400) == 0
    assert BlockQuota(0).exhausted(day) is False  # no limit
    assert BlockQuota(-1).exhausted(day) is True  # blocking forbidden
