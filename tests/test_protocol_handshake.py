"""Handshake blocks (independently computed known answers) and version negotiation."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol_strategies import cert_keys, ids, transport_errors, version_ranges, x25519
from smpfast import _core
from smpfast.protocol import handshake as H
from smpfast.protocol.commands import CertChainPubKey, ServiceRole
from smpfast.protocol.errors import ParseError, TransportError
from smpfast.protocol.versions import ALL_VERSIONS, VersionRange

SESSION = bytes(range(1, 33))
KEY_HASH = bytes.fromhex("0253e29e90283de0c7852518f46af9a64046caca99d9a82d8ef316a1e085b5a8")
CLIENT_KEY = bytes.fromhex("302a300506032b656e032100493e82fc74464a59268817623d2053c5eb8e2cc4a988b4fee179ec6b010d531d")
SIGNED_KEY = bytes.fromhex(
    "3078302c302a300506032b656e03210079a631eede1bf9c98f12032cdeadd0e7a079398fc786b88cc846ec89af85a51a"
    "300506032b65700341005ade7e9c6b48ab4e58dcd087a26954c682caa24c5ed46ce770620c126333ffee415fb74fcef2"
    "cda2a60735c93213d595650c485b3182f404e17d8b879621b406"
)


def test_client_hello_vector() -> None:
    hs = H.ClientHandshake(18, KEY_HASH, CLIENT_KEY, proxy_server=False)
    content = hs.encode_content()
    assert content.hex() == "001220" + KEY_HASH.hex() + "2c" + CLIENT_KEY.hex() + "4630"
    assert len(content) == 82
    block = hs.encode()
    assert len(block) == 16384 and block[:2] == b"\x00\x52"
    assert H.ClientHandshake.parse(block) == hs
    assert hs.block_encryption


def test_server_hello_vector() -> None:
    ck = CertChainPubKey([b"\x30" * 10, b"\x31" * 5], SIGNED_KEY)
    hs = H.ServerHandshake(VersionRange(6, 18), SESSION, ck)
    content = hs.encode_content()
    assert content.hex().startswith("0006001220" + SESSION.hex() + "02000a")
    assert content.endswith(b"\x00\x7a" + SIGNED_KEY)
    assert H.ServerHandshake.parse(hs.encode()) == hs


def test_v6_server_hello_has_no_key() -> None:
    ck = CertChainPubKey([b"c"], b"k")
    hs = H.ServerHandshake(VersionRange(6, 6), SESSION, ck)
    assert hs.encode_content() == b"\x00\x06\x00\x06\x20" + SESSION
    assert H.ServerHandshake.parse(hs.encode()) == H.ServerHandshake(VersionRange(6, 6), SESSION, None)


@settings(max_examples=200, deadline=None)
@given(version_ranges(), ids, st.one_of(st.none(), cert_keys))
def test_server_hello_round_trip(vr: VersionRange, sid: bytes, ck: CertChainPubKey | None) -> None:
    hs = H.ServerHandshake(vr, sid, ck)
    got = H.ServerHandshake.parse(hs.encode())
    assert got == (hs if vr.max >= 7 else H.ServerHandshake(vr, sid, None))


services = st.builds(H.ClientService, st.sampled_from(list(ServiceRole)), cert_keys)


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 65535), ids, st.one_of(st.none(), x25519), st.booleans(), st.one_of(st.none(), services))
def test_client_hello_round_trip(v: int, kh: bytes, key: bytes | None, proxy: bool, service: H.ClientService | None) -> None:
    hs = H.ClientHandshake(v, kh, key, proxy, service)
    expect = H.ClientHandshake(
        v, kh, key if v >= 7 else None, proxy if v >= 14 else False, service if v >= 16 else None
    )
    assert H.ClientHandshake.parse(hs.encode()) == expect
    assert H.ClientHandshake.parse_content(hs.encode_content() + b"trailing ignored") == expect


def test_client_hello_without_key() -> None:
    """The key is not Maybe-tagged: when absent the next field is read in its place."""
    for v, tail in ((7, b""), (11, b""), (14, b"T"), (16, b"F1N\x01\x00\x01c\x00\x01k"), (18, b"F0")):
        content = v.to_bytes(2, "big") + b"\x20" + KEY_HASH + tail
        hs = H.ClientHandshake.parse_content(content)
        assert hs.client_key is None and hs.encode_content() == content
    hs = H.ClientHandshake.parse_content(b"\x00\x10\x20" + KEY_HASH + b"F1N\x01\x00\x01c\x00\x01k")
    assert hs.service == H.ClientService(ServiceRole.NOTIFIER, CertChainPubKey([b"c"], b"k"))
    assert not hs.block_encryption


def test_client_hello_malformed() -> None:
    for content in (b"", b"\x00", b"\x00\x12", b"\x00\x12\x20" + KEY_HASH, b"\x00\x12\x20" + KEY_HASH + b"X0",
                    b"\x00\x10\x20" + KEY_HASH + b"F2"):
        with pytest.raises(ParseError):
            H.ClientHandshake.parse_content(content)
    with pytest.raises(ParseError):
        H.ClientHandshake.parse(b"\xff\xff" + bytes(16382))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_handshakes_arbitrary_bytes(data: bytes) -> None:
    for cls in (H.ServerHandshake, H.ClientHandshake, H.HandshakeResponse):
        for parse in (cls.parse_content, cls.parse):
            try:
                parse(data)
            except ParseError:
                pass


@given(st.one_of(ids.map(lambda s: H.HandshakeResponse(service_id=s)), transport_errors.map(lambda e: H.HandshakeResponse(error=e))))
def test_third_block_round_trip(resp: H.HandshakeResponse) -> None:
    assert H.HandshakeResponse.parse(resp.encode()) == resp


def test_third_block_wire() -> None:
    assert H.HandshakeResponse(service_id=b"sv").encode_content() == b"R\x02sv"
    err = H.HandshakeResponse(error=TransportError("HANDSHAKE", "BAD_SERVICE"))
    assert err.encode_content() == b"EHANDSHAKE BAD_SERVICE"
    with pytest.raises(ParseError):
        H.HandshakeResponse.parse_content(b"X")


def test_negotiation() -> None:
    assert H.server_vrange(True) == VersionRange(6, 20)  # the codecs' range (simplexmq 7.x offers 6..20)
    assert H.server_vrange(False) == VersionRange(6, 6)
    assert H.client_version(VersionRange(6, 18)) == 18
    assert H.client_version(VersionRange(6, 6)) == 6
    assert H.client_version(VersionRange(6, 18), VersionRange(6, 7)) == 7
    assert H.client_version(VersionRange(19, 20)) == 20
    assert H.client_version(VersionRange(21, 22)) is None
    # a proxy caps its max at 10 towards relays older than v14
    assert H.client_version(VersionRange(6, 12), proxy_server=True) == 10
    assert H.client_version(VersionRange(6, 14), proxy_server=True) == 14
    assert H.client_version(VersionRange(6, 12), VersionRange(12, 18), proxy_server=True) == 12
    assert all(H.server_accepts(VersionRange(6, 20), v) for v in ALL_VERSIONS)
    assert not H.server_accepts(VersionRange(6, 18), 19) and not H.server_accepts(VersionRange(6, 6), 7)
    assert H.block_encryption(11, True, False) and not H.block_encryption(10, True, False)
    assert not H.block_encryption(18, False, False) and not H.block_encryption(18, True, True)
    assert H.PROXIED_VRANGE == VersionRange(8, 20)  # a proxy announcing 20 (7.0.0.3)
    assert H.proxied_vrange(18) == VersionRange(8, 17) and H.proxied_vrange(19) == VersionRange(8, 18)


def test_pad_content_round_trip() -> None:
    hs = H.ClientHandshake(7, KEY_HASH, CLIENT_KEY)
    assert _core.unpad(hs.encode()) == hs.encode_content()
