"""Server addresses and SMP queue URIs (StrEncoding of ProtocolServer / SMPQueueUri)."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol_strategies import basic_auth, servers, version_ranges, x25519
from smpfast.protocol import address as A
from smpfast.protocol.address import QueueMode, SMPQueueUri, SMPServer
from smpfast.protocol.encoding import Reader
from smpfast.protocol.errors import ParseError
from smpfast.protocol.versions import VersionRange

FP = "9RPHic2Fng3uuOz68XBaBDbTUJsZvZAZeyx92ZE4-YE="
KH = bytes.fromhex("f513c789cd859e0deeb8ecfaf1705a0436d3509b19bd90197b2c7dd99138f981")
DH = bytes.fromhex("302a300506032b656e032100ae2cbe1dc011221aac8128d59e32aaa1fb7ecbaa71af1758ebccf9e3e2e36214")


def test_transcript_address() -> None:
    srv, auth = A.parse_server_address("smp://" + FP + "@127.0.0.1:18001")
    assert srv == SMPServer(("127.0.0.1",), "18001", KH) and auth is None
    assert str(srv) == "smp://" + FP + "@127.0.0.1:18001"


@pytest.mark.parametrize(
    "text,hosts,port,auth,printed",
    [
        ("smp://" + FP + "@smp.example.com", ("smp.example.com",), "", None, None),
        ("smp://" + FP + ":secret@a.com,b.onion:443", ("a.com", "b.onion"), "443", b"secret", None),
        ("smp://" + FP + "@[::1]:5223", ("::1",), "5223", None, "smp://" + FP + "@::1:5223"),
        ("smp://" + FP + "@[2001:DB8::5]:5224", ("2001:db8::5",), "5224", None, "smp://" + FP + "@2001:db8::5:5224"),
        ("smp://" + FP + "@1.2.3.4:05223", ("1.2.3.4",), "5223", None, "smp://" + FP + "@1.2.3.4:5223"),
        ("smp://9RPHic2Fng3uuOz68XBaBDbTUJsZvZAZeyx92ZE4-YE@h", ("h",), "", None, "smp://" + FP + "@h"),
        ("smp://" + FP + "@300.1.1.1", ("300.1.1.1",), "", None, None),  # not IPv4: a domain
    ],
)
def test_server_address_forms(text: str, hosts: tuple, port: str, auth: bytes | None, printed: str | None) -> None:
    srv, a = A.parse_server_address(text)
    assert (srv.hosts, srv.port, srv.key_hash, a) == (hosts, port, KH, auth)
    assert A.format_server(srv, a) == (printed or text)


@pytest.mark.parametrize(
    "text",
    [
        "", "smp://", "ntf://" + FP + "@h", "smp:/" + FP + "@h", "smp://" + FP, "smp://" + FP + "@",
        "smp://" + FP + "@h:", "smp://" + FP + "@h,", "smp://@h", "smp://" + FP + ":a b@h",
        "smp://" + FP + ":a:b@h", "smp://" + FP + "@1.2.3.4.5", "smp://" + FP + "@x.onion.onion",
        "smp://" + FP + "@a.b.onion", "smp://" + FP + "@h/", "smp://" + FP + "@h x", "smp://" + FP + ":@h",
    ],
)
def test_server_address_malformed(text: str) -> None:
    with pytest.raises(ParseError):
        A.parse_server_address(text)


@settings(max_examples=200, deadline=None)
@given(servers, st.one_of(st.none(), basic_auth.filter(bool)))
def test_server_address_round_trip(srv: SMPServer, auth: bytes | None) -> None:
    assert A.parse_server_address(A.format_server(srv, auth)) == (srv, auth)


@settings(max_examples=200, deadline=None)
@given(servers)
def test_binary_server_round_trip(srv: SMPServer) -> None:
    r = Reader(A.encode_server_binary(srv))
    assert A.read_server(r) == srv and r.at_end()


def test_host_forms() -> None:
    assert A.parse_host("127.0.0.1") == "127.0.0.1"
    assert A.parse_host("1.2.3.260") == "1.2.3.4"  # last octet read as a Word8
    # bare IPv6 stops at the first '.', so a dotted tail only parses in brackets (as the reference)
    with pytest.raises(ParseError):
        A.parse_host("::ffff:1.2.3.4")
    assert A.parse_host("[::ffff:1.2.3.4]") == "::ffff:1.2.3.4"
    assert A.parse_host("abcdefghijklmnop.onion") == "abcdefghijklmnop.onion"
    assert A.parse_host("example.com") == "example.com"
    for bad in ("", "1.2.3.4x", "a.b.onion", "Abc.onion", "a b", "a/b", "[::1", "fe80::1%eth0"):
        with pytest.raises(ParseError):
            A.parse_host(bad)


@settings(max_examples=500)
@given(st.text(max_size=60))
def test_address_arbitrary_text(text: str) -> None:
    for parse in (A.parse_server_address, A.parse_queue_uri, A.parse_host):
        try:
            parse(text)
        except ParseError:
            pass


# ---- queue URIs ----

SID = bytes(range(24))
SID_B64 = base64.urlsafe_b64encode(SID).decode()
DH_B64 = base64.urlsafe_b64encode(DH).decode()
SRV = SMPServer(("smp.example.com", "abc.onion"), "5223", KH)


def test_queue_uri_current_form() -> None:
    q = SMPQueueUri(SRV, SID, DH, VersionRange(2, 4), QueueMode.MESSAGING)
    text = A.format_queue_uri(q)
    assert text == (
        "smp://" + FP + "@smp.example.com,abc.onion:5223/" + SID_B64 + "#/?v=2-4&dh="
        + DH_B64.replace("=", "%3D") + "&q=m&k=s"
    )
    assert A.parse_queue_uri(text) == q
    q4 = SMPQueueUri(SRV, SID, DH, VersionRange(4, 4), QueueMode.CONTACT)
    assert A.format_queue_uri(q4).endswith("#/?v=4&dh=" + DH_B64.replace("=", "%3D") + "&q=c")
    assert A.parse_queue_uri(A.format_queue_uri(q4)) == q4


def test_queue_uri_older_forms() -> None:
    base = "smp://" + FP + "@smp.example.com/" + SID_B64
    one = SMPServer(("smp.example.com",), "", KH)
    # unversioned: the dh key right after '#'
    assert A.parse_queue_uri(base + "#" + DH_B64) == SMPQueueUri(one, SID, DH, VersionRange(1, 1), None)
    # dh key before the query, '/' after the sender id, k=s meaning messaging
    got = A.parse_queue_uri(base + "/#" + DH_B64 + "/?v=1-3&k=s")
    assert got == SMPQueueUri(one, SID, DH, VersionRange(1, 3), QueueMode.MESSAGING)
    # legacy srv= parameter adds hosts
    got = A.parse_queue_uri(base + "#/?v=1&dh=" + DH_B64 + "&srv=abc.onion")
    assert got.server.hosts == ("smp.example.com", "abc.onion")
    legacy = SMPQueueUri(SRV, SID, DH, VersionRange(1, 1), None)
    text = A.format_queue_uri(legacy)
    assert "@smp.example.com:5223/" in text and text.endswith("&srv=abc.onion")
    assert A.parse_queue_uri(text) == legacy


@pytest.mark.parametrize(
    "suffix",
    ["#", "#/?dh=" + DH_B64, "#/?v=1-4", "#/?v=4-1&dh=" + DH_B64, "#/?v=1&dh=" + SID_B64, "#/?v=1&dh=" + DH_B64 + " x",
     "#" + DH_B64 + "x!", "/?v=1&dh=" + DH_B64],
)
def test_queue_uri_malformed(suffix: str) -> None:
    with pytest.raises(ParseError):
        A.parse_queue_uri("smp://" + FP + "@h/" + SID_B64 + suffix)


def test_queue_uri_rejects_basic_auth() -> None:
    with pytest.raises(ParseError):
        A.parse_queue_uri("smp://" + FP + ":pw@h/" + SID_B64 + "#/?v=1&dh=" + DH_B64)


@settings(max_examples=200, deadline=None)
@given(servers, st.binary(min_size=1, max_size=32), x25519, version_ranges(1, 10),
       st.one_of(st.none(), st.sampled_from(list(QueueMode))))
def test_queue_uri_round_trip(srv: SMPServer, sid: bytes, dh: bytes, vr: VersionRange, mode: QueueMode | None) -> None:
    q = SMPQueueUri(srv, sid, dh, vr, mode)
    assert A.parse_queue_uri(A.format_queue_uri(q)) == q
