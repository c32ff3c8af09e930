"""SMP v19 (service subscriptions with count and IdsHash, ALLS) and v20 (RSLV/RNAME, ERR NAME):
codecs, down-conversions below 19, the IdsHash rule and fixed vectors.

How the fixed vectors were derived (by hand, not by running this code):
- MD5 digests of "a", "abc" and "message digest" are the test suite of RFC 1321
  (appendix A.5); those of the 24-byte ids 00 01 .. 17 and ff fe .. e8 came from
  coreutils ``md5sum`` (``printf '\\x00\\x01...\\x17' | md5sum``).
- Their XORs were worked out byte by byte on paper (e.g. 0c ^ 90 = 9c, c1 ^ 01 = c0, ...).
- Wire bytes follow docs/protocol-v19-v20.md: Int64 is 8 bytes big-endian, the hash a
  shortString (length byte 0x10 and 16 bytes); JSON as aeson writes it.
"""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol_strategies import domains, ids_hashes, int64, name_records
from smpfast.protocol import commands as C
from smpfast.protocol import errors as E
from smpfast.protocol import handshake as H
from smpfast.protocol import names as N
from smpfast.protocol import versions as V
from smpfast.protocol.errors import ParseError, UnknownTag
from smpfast.protocol.ids_hash import (
    EMPTY_IDS_HASH,
    NO_SERVICE_SUBS,
    add_service_subs,
    ids_hash,
    queue_id_hash,
    subtract_service_subs,
    xor_hashes,
)

MD5_A = bytes.fromhex("0cc175b9c0f1b6a831c399e269772661")
MD5_ABC = bytes.fromhex("900150983cd24fb0d6963f7d28e17f72")
MD5_MESSAGE_DIGEST = bytes.fromhex("f96b697d7cb7938d525a2f31aaf161d0")
HASH_A_ABC = bytes.fromhex("9cc02521fc23f918e755a69f41965913")
HASH_A_ABC_MD = bytes.fromhex("65ab4c5c80946a95b50f89aeeb6738c3")
QID_UP = bytes(range(24))
QID_DOWN = bytes(255 - i for i in range(24))
MD5_QID_UP = bytes.fromhex("8bd9c8efbbac58748951ca5a45cfd386")
MD5_QID_DOWN = bytes.fromhex("6d05a61f20ea5e2b0e9c67391a2a8f51")
HASH_QIDS = bytes.fromhex("e6dc6ef09b46065f87cdad635fe55cd7")

PRE_19 = [v for v in V.ALL_VERSIONS if v < V.RCV_SERVICE]
FROM_19 = [v for v in V.ALL_VERSIONS if v >= V.RCV_SERVICE]

qids = st.lists(st.binary(min_size=0, max_size=32), max_size=30)


# ---- versions ----


def test_version_numbers_and_rules() -> None:
    assert (V.CLIENT_NOTICES, V.RCV_SERVICE, V.NAMES, V.MAX_VERSION) == (18, 19, 20, 20)
    assert V.ALL_VERSIONS[-2:] == (19, 20) and 13 not in V.ALL_VERSIONS
    assert [V.service_subs_hash(v) for v in (16, 18, 19, 20)] == [False, False, True, True]
    # proxiedSMPRelayVersion of 6.5.5 (18 -> 17), 7.0.0.0-.2 (19 -> 18), 7.0.0.3 (20 -> 20)
    assert [V.proxied_max_version(v) for v in (18, 19, 20, 21)] == [17, 18, 20, 21]
    assert H.PROXIED_VRANGE == V.VersionRange(8, 20)
    assert H.proxied_vrange(20) == V.VersionRange(8, 20)


def test_service_credentials_in_client_hello() -> None:
    # a messaging service sends its certificate from v19 only; notifier/proxy from v16
    M, N_, P = C.ServiceRole.MESSAGING, C.ServiceRole.NOTIFIER, C.ServiceRole.PROXY
    assert [H.client_sends_service(M, v) for v in (16, 18, 19, 20)] == [False, False, True, True]
    assert [H.client_sends_service(N_, v) for v in (15, 16, 18)] == [False, True, True]
    assert H.client_sends_service(P, 16) and not H.client_sends_service(P, 15)


# ---- IdsHash ----


def test_ids_hash_fixed_vectors() -> None:
    assert queue_id_hash(b"a") == MD5_A and queue_id_hash(b"abc") == MD5_ABC
    assert queue_id_hash(QID_UP) == MD5_QID_UP and queue_id_hash(QID_DOWN) == MD5_QID_DOWN
    assert ids_hash([]) == EMPTY_IDS_HASH == bytes(16)
    assert ids_hash([b"a"]) == MD5_A
    assert ids_hash([b"a", b"abc"]) == HASH_A_ABC
    assert ids_hash([b"message digest", b"abc", b"a"]) == HASH_A_ABC_MD
    assert ids_hash([QID_UP, QID_DOWN]) == HASH_QIDS
    assert ids_hash([b"a", b"abc", b"a"]) == MD5_ABC  # an id XORed twice cancels out
    assert xor_hashes(HASH_A_ABC, MD5_MESSAGE_DIGEST) == HASH_A_ABC_MD


def test_service_subs_add_and_subtract() -> None:
    two = add_service_subs(NO_SERVICE_SUBS, (2, HASH_A_ABC))
    assert two == (2, HASH_A_ABC)
    assert add_service_subs(two, (1, MD5_MESSAGE_DIGEST)) == (3, HASH_A_ABC_MD)
    assert subtract_service_subs((3, HASH_A_ABC_MD), (1, MD5_MESSAGE_DIGEST)) == (2, HASH_A_ABC)
    # removing as many as there are (or more) gives the empty state, whatever the hashes
    assert subtract_service_subs((2, HASH_A_ABC), (2, MD5_A)) == NO_SERVICE_SUBS
    assert subtract_service_subs((1, MD5_A), (5, MD5_ABC)) == NO_SERVICE_SUBS
    # hashes of other lengths combine over the shorter length, as the reference's zipWith
    assert xor_hashes(b"\x0f\xf0\xaa", b"\xff\x0f") == b"\xf0\xff"


@settings(max_examples=200, deadline=None)
@given(a=qids, b=qids, seed=st.randoms())
def test_ids_hash_is_an_order_free_xor(a: list[bytes], b: list[bytes], seed) -> None:
    shuffled = list(a)
    seed.shuffle(shuffled)
    assert ids_hash(shuffled) == ids_hash(a)
    assert ids_hash(a + b) == xor_hashes(ids_hash(a), ids_hash(b))
    naive = bytearray(16)
    for q in a:
        for i, x in enumerate(hashlib.md5(q).digest()):
            naive[i] ^= x
    assert ids_hash(a) == bytes(naive)
    # the incremental counters of a service reach the same state as recomputing
    total = NO_SERVICE_SUBS
    for q in a + b:
        total = add_service_subs(total, (1, queue_id_hash(q)))
    assert total == (len(a) + len(b), ids_hash(a + b))
    if b:
        assert subtract_service_subs(total, (len(b), ids_hash(b))) == (
            (len(a), ids_hash(a)) if a else NO_SERVICE_SUBS
        )


# ---- SUBS / NSUBS ----


def test_subs_fixed_layouts() -> None:
    count2 = bytes.fromhex("0000000000000002")
    assert C.Subs(2, HASH_QIDS).encode(19) == b"SUBS " + count2 + b"\x10" + HASH_QIDS
    assert C.Nsubs(2, HASH_QIDS).encode(20) == b"NSUBS " + count2 + b"\x10" + HASH_QIDS
    assert C.Subs(-1, EMPTY_IDS_HASH).encode(20) == b"SUBS " + b"\xff" * 8 + b"\x10" + bytes(16)
    for v in PRE_19:  # below v19 the tag goes alone
        assert C.Subs(2, HASH_QIDS).encode(v) == b"SUBS"
        assert C.Nsubs(7, HASH_QIDS).encode(v) == b"NSUBS"
    assert C.parse_command(b"SUBS " + count2 + b"\x10" + HASH_QIDS, 19) == C.Subs(2, HASH_QIDS)
    # a pre-v19 subscriber parses as count -1 and the zero hash (the reference's marker)
    assert C.parse_command(b"SUBS", 18) == C.Subs(-1, EMPTY_IDS_HASH) == C.Subs()
    assert C.parse_command(b"NSUBS", 16) == C.Nsubs(-1, EMPTY_IDS_HASH)
    # the hash is any shortString on the wire (it then just fails to match)
    assert C.parse_command(b"SUBS " + count2 + b"\x00", 19) == C.Subs(2, b"")
    assert C.parse_command(b"SUBS " + count2 + b"\x03abc", 20) == C.Subs(2, b"abc")


@pytest.mark.parametrize(
    "wire,version",
    [
        (b"SUBS", 19),  # v19 needs the parameters
        (b"SUBS ", 19),
        (b"SUBS " + bytes(8), 19),  # no hash
        (b"SUBS " + bytes(8) + b"\x10" + bytes(15), 20),  # short hash
        (b"SUBS " + bytes(8) + b"\x10" + bytes(17), 20),  # trailing byte
        (b"NSUBS " + bytes(7), 19),
        (b"SUBS " + bytes(8) + b"\x10" + bytes(16), 18),  # below v19: no parameters at all
        (b"NSUBS x", 16),
    ],
)
def test_subs_syntax_errors(wire: bytes, version: int) -> None:
    with pytest.raises(ParseError) as e:
        C.parse_command(wire, version)
    assert not isinstance(e.value, UnknownTag)
    # without the space the whole transmission is the tag: CMD UNKNOWN
    with pytest.raises(UnknownTag):
        C.parse_command(b"SUBS" + bytes(8) + b"\x10" + bytes(16), 20)


@pytest.mark.parametrize("version", FROM_19)
@settings(max_examples=150, deadline=None)
@given(cls=st.sampled_from([C.Subs, C.Nsubs]), n=int64, h=ids_hashes)
def test_subs_round_trip(version: int, cls, n: int, h: bytes) -> None:
    cmd = cls(n, h)
    wire = C.encode_command(cmd, version)
    assert wire == cls.TAG + b" " + n.to_bytes(8, "big", signed=True) + bytes((len(h),)) + h
    assert C.parse_command(wire, version) == cmd


@pytest.mark.parametrize("version", PRE_19)
@given(cls=st.sampled_from([C.Subs, C.Nsubs]), n=int64, h=ids_hashes)
def test_subs_down_conversion(version: int, cls, n: int, h: bytes) -> None:
    wire = C.encode_command(cls(n, h), version)
    assert wire == cls.TAG
    assert C.parse_command(wire, version) == cls(-1, EMPTY_IDS_HASH)


# ---- SOKS / ENDS / ALLS ----


def test_soks_ends_fixed_layouts() -> None:
    count3 = bytes.fromhex("0000000000000003")
    assert C.Soks(3, HASH_A_ABC_MD).encode(19) == b"SOKS " + count3 + b"\x10" + HASH_A_ABC_MD
    assert C.Ends(3, HASH_A_ABC_MD).encode(20) == b"ENDS " + count3 + b"\x10" + HASH_A_ABC_MD
    assert C.Soks(3, HASH_A_ABC_MD).encode(18) == b"SOKS " + count3  # the hash is dropped below v19
    assert C.Ends(3, HASH_A_ABC_MD).encode(16) == b"ENDS " + count3
    assert C.Soks(3).ids_hash == EMPTY_IDS_HASH  # what the server builds without a hash
    assert C.parse_response(b"SOKS " + count3, 18) == C.Soks(3, EMPTY_IDS_HASH)
    assert C.parse_response(b"ENDS " + count3 + b"\x10" + HASH_A_ABC_MD, 19) == C.Ends(3, HASH_A_ABC_MD)
    for bad, v in ((b"SOKS " + count3, 19), (b"SOKS " + count3 + b"\x10" + bytes(16), 18),
                   (b"ENDS " + count3 + b"\x10" + bytes(16) + b"x", 20), (b"ENDS", 19)):
        with pytest.raises(ParseError):
            C.parse_response(bad, v)


@pytest.mark.parametrize("version", V.ALL_VERSIONS)
@settings(max_examples=60, deadline=None)
@given(cls=st.sampled_from([C.Soks, C.Ends]), n=int64, h=ids_hashes)
def test_soks_ends_per_version(version: int, cls, n: int, h: bytes) -> None:
    wire = C.encode_response(cls(n, h), version)
    back = C.parse_response(wire, version)
    assert back.count == n
    assert back.ids_hash == (h if version >= V.RCV_SERVICE else EMPTY_IDS_HASH)


def test_alls() -> None:
    for v in (6, 18, 19, 20):  # no down-conversion: the tag at every version
        assert C.encode_response(C.ALLS, v) == b"ALLS"
        assert C.parse_response(b"ALLS", v) is C.ALLS
    with pytest.raises(ParseError):
        C.parse_response(b"ALLS x", 19)
    assert C.check_response_entity(C.ALLS, b"") is None
    assert C.check_response_entity(C.ALLS, b"q") == E.CMD_HAS_AUTH


# ---- names ----


def test_domain_canonical_form_and_tld() -> None:
    d = N.parse_domain("Alice.SimpleX")
    assert d.labels == ("alice", "simplex") and d.full_name == "alice.simplex" and d.tld == "simplex"
    assert d.encode() == b"alice.simplex"
    assert N.parse_domain("a.b.Domain.simplex").labels == ("a", "b", "domain", "simplex")
    assert N.parse_domain("x-1.test-2.testing").tld == "testing"
    assert N.parse_domain("example.com").tld == "web"
    assert N.parse_domain("0.9").full_name == "0.9"  # digits are letters here
    longest = ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 61])
    assert len(longest) == 253 and N.parse_domain(longest).full_name == longest


@pytest.mark.parametrize(
    "text",
    [
        b"alice", b"", b"-a.simplex", b"a-.simplex", b"a--b.simplex", b"a..simplex", b"a.simplex.",
        b".a.simplex", b"a_b.simplex", b"\xc3\xa4.simplex", b"a.sim\xffplex", b"a@b.simplex",
        ("a" * 64 + ".simplex").encode(), ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 62]).encode(),
        b"a.simplex/x", b"a.simplex\x00",
    ],
)
def test_domain_syntax_errors(text: bytes) -> None:
    with pytest.raises(ParseError):
        N.parse_domain(text)
    with pytest.raises(ParseError) as e:  # RSLV with a bad name is CMD SYNTAX, not UNKNOWN
        C.parse_command(b"RSLV " + text, V.NAMES)
    assert not isinstance(e.value, UnknownTag)


def test_rslv_layout() -> None:
    cmd = C.Rslv(N.parse_domain("x.alice.simplex"))
    assert cmd.encode(20) == b"RSLV x.alice.simplex"
    assert cmd.encode(7) == b"RSLV x.alice.simplex"  # not version-gated
    assert C.parse_command(b"RSLV X.Alice.SIMPLEX", 20) == cmd
    # the name ends at whitespace; whatever follows is ignored
    assert C.parse_command(b"RSLV x.alice.simplex junk", 20) == cmd
    assert C.parse_command(b"RSLV x.alice.simplex\t\xff\xfe", 20) == cmd
    for bad in (b"RSLV", b"RSLV ", b"RSLV  x.alice.simplex"):
        with pytest.raises(ParseError):
            C.parse_command(bad, 20)
    with pytest.raises(UnknownTag):
        C.parse_command(b"RSLV\tx.alice.simplex", 20)  # the tag ends at a space only
    assert C.Rslv.PARTY is C.Party.RESOLVER
    assert C.PARTY_SERVICE_ROLE[C.Party.RESOLVER] is C.ServiceRole.MESSAGING
    assert C.Rslv in C.FORWARDED_COMMANDS and C.Subs not in C.FORWARDED_COMMANDS
    # neither authorization nor entity
    assert C.check_credentials(cmd, False, b"") is None
    assert C.check_credentials(cmd, True, b"") == E.CMD_HAS_AUTH
    assert C.check_credentials(cmd, False, b"q") == E.CMD_HAS_AUTH


@settings(max_examples=200, deadline=None)
@given(d=domains, version=st.sampled_from(list(V.ALL_VERSIONS)))
def test_rslv_round_trip(d: N.SimplexDomain, version: int) -> None:
    wire = C.encode_command(C.Rslv(d), version)
    assert C.parse_command(wire, version) == C.Rslv(d)
    assert C.parse_command(wire.upper(), version) == C.Rslv(d)  # case-folded


RECORD = N.NameRecord(
    name="alice.simplex",
    nickname='A "q" \\ é',
    website="https://alice.example/",
    location="line1\nline2\ttab\r\x01\x08\x0c\x7f€😀",
    simplex_contact=("simplex:/contact#a", "simplex:/contact#b"),
    simplex_channel=(),
    eth="0x0000000000000000000000000000000000000001",
    owner="0x" + "ab" * 20,
    resolver="0x" + "cd" * 20,
)
# aeson's compact form: keys in declaration order, only " \\ and controls escaped
RECORD_JSON = (
    '{"name":"alice.simplex","nickname":"A \\"q\\" \\\\ é","website":"https://alice.example/",'
    '"location":"line1\\nline2\\ttab\\r\\u0001\\u0008\\u000c\x7f€😀",'
    '"simplexContact":["simplex:/contact#a","simplex:/contact#b"],"simplexChannel":[],'
    '"eth":"0x0000000000000000000000000000000000000001","btc":null,"xmr":null,"dot":null,'
    '"owner":"0x' + "ab" * 20 + '","resolver":"0x' + "cd" * 20 + '"}'
).encode("utf-8")


def test_rname_layout() -> None:
    assert RECORD.to_json() == RECORD_JSON
    assert C.Rname(RECORD).encode(20) == b"RNAME " + RECORD_JSON
    assert C.parse_response(b"RNAME " + RECORD_JSON, 20) == C.Rname(RECORD)
    assert C.check_response_entity(C.Rname(RECORD), b"") is None
    assert C.check_response_entity(C.Rname(RECORD), b"q") == E.CMD_HAS_AUTH
    for bad in (b"RNAME", b"RNAME ", b"RNAME {}", b"RNAME" + RECORD_JSON, b"RNAME " + RECORD_JSON + b"x"):
        with pytest.raises(ParseError):
            C.parse_response(bad, 20)


def test_name_record_parsing_rules() -> None:
    minimal = (b'{"resolver":"r","owner":"o","simplexChannel":[],"simplexContact":["l"],'
               b'"location":"","website":"","nickname":"","name":"n","extra":{"x":[1,2.5e999]}}')
    r = N.NameRecord.from_json(minimal)  # any key order, absent coins, unknown keys ignored
    assert r == N.NameRecord("n", simplex_contact=("l",), owner="o", resolver="r")
    spaced = b' \n{ "name" : "n", "nickname":"", "website":"", "location":"", "simplexContact":["l"],' \
             b' "simplexChannel":[], "eth":null, "btc":"bc1", "owner":"o", "resolver":"r" }\t'
    assert N.NameRecord.from_json(spaced).btc == "bc1"
    assert N.NameRecord.from_json(b'{"name":"\\ud800x","nickname":"","website":"","location":"",'
                                  b'"simplexContact":[],"simplexChannel":[],"owner":"","resolver":""}').name == "\ufffdx"
    for bad in (
        minimal.replace(b'"owner":"o",', b""),  # a required key missing
        minimal.replace(b'"nickname":""', b'"nickname":null'),  # text fields are never null
        minimal.replace(b'["l"]', b'[1]'),
        minimal.replace(b'["l"]', b'"l"'),
        minimal.replace(b'"extra":{"x":[1,2.5e999]}', b'"eth":5'),
        minimal.replace(b'"extra":{"x":[1,2.5e999]}', b'"extra":NaN'),
        b"[]", b"", b"null", minimal + b"x", minimal.replace(b'"n"', b'"\xff"'),
        b"\xef\xbb\xbf" + minimal, b"[" * 100000,
    ):
        with pytest.raises(ParseError):
            N.NameRecord.from_json(bad)


@settings(max_examples=200, deadline=None)
@given(r=name_records)
def test_name_record_round_trip(r: N.NameRecord) -> None:
    raw = r.to_json()
    assert N.NameRecord.from_json(raw) == r
    assert C.parse_response(C.Rname(r).encode(20), 20) == C.Rname(r)


def test_resolver_http_helpers() -> None:
    assert N.resolve_path(N.parse_domain("x.Alice.simplex")) == "/resolve/x.alice.simplex"
    assert N.HEALTH_PATH == "/health"
    assert N.http_status_detail(404) is None and N.http_status_detail(400) is None  # NOT_FOUND
    assert N.http_status_detail(502) == "HTTP 502" and N.http_status_detail(401) == "HTTP 401"


# ---- ERR NAME ----


@pytest.mark.parametrize(
    "wire,err",
    [
        (b"NAME NO_RESOLVER", E.NAME_NO_RESOLVER),
        (b"NAME NOT_FOUND", E.NAME_NOT_FOUND),
        (b"NAME RESOLVER HTTP 502", E.name_resolver("HTTP 502")),
        (b"NAME RESOLVER ", E.name_resolver("")),
        (b"NAME RESOLVER timeout", E.name_resolver(N.DETAIL_TIMEOUT)),
        (b"NAME RESOLVER \xc3\xa9 \xff\xfe!", E.name_resolver("é ??!")),  # each invalid byte is '?'
        (b"PROXY PROTOCOL NAME NOT_FOUND", E.proxy_protocol(E.NAME_NOT_FOUND)),
    ],
)
def test_name_error_layouts(wire: bytes, err: E.ErrorType) -> None:
    assert E.parse_error_type(wire) == err
    assert C.parse_response(b"ERR " + wire, 20) == C.Err(err)
    if b"\xff" not in wire:
        assert err.encode() == wire
        for v in (6, 12, 18, 20):  # no down-conversion
            assert C.Err(err).encode(v) == b"ERR " + wire


@pytest.mark.parametrize(
    "wire",
    [b"NAME", b"NAME ", b"NAME FOO", b"NAME RESOLVER", b"NAME NO_RESOLVER x", b"NAME NOT_FOUND ",
     b"NAMENOT_FOUND", b"NAME not_found"],
)
def test_name_error_syntax(wire: bytes) -> None:
    with pytest.raises(ParseError):
        E.parse_error_type(wire)


def test_store_text_uses_the_reference_replacement() -> None:
    assert E.parse_error_type(b"STORE disk \xff") == E.ErrorType("STORE", "disk ?")
    assert E.safe_utf8(b"\xe2\x82A\xe2\x82\xac") == "??A€"


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=60))
def test_name_resolver_round_trip(text: str) -> None:
    err = E.name_resolver(text)
    assert E.parse_error_type(err.encode()) == err
    assert str(err) == f"NAME RESOLVER {text}"


def test_name_error_values() -> None:
    with pytest.raises(ValueError):
        E.NameResolutionError("RESOLVER")
    with pytest.raises(ValueError):
        E.NameResolutionError("NOT_FOUND", "x")
    with pytest.raises(ValueError):
        E.ErrorType("NAME")


# ---- hosts (PRXY's server address): 7.x no longer takes brackets into a domain name ----


def test_domain_hosts_exclude_brackets() -> None:
    from smpfast.protocol import address as A

    assert A.parse_host("[::1]") == "::1" and A.parse_host("relay.example.com") == "relay.example.com"
    for bad in ("[zz]", "a[b", "a]b", "[]"):
        with pytest.raises(ParseError):
            A.parse_host(bad)
