"""Hypothesis strategies for the SMP protocol codecs (shared by tests/test_protocol_*.py).

Values are generated per version in the form that survives a round trip at that version
(fields a version cannot carry are left at their defaults).
"""

from __future__ import annotations

from hypothesis import strategies as st

from smpfast.protocol import commands as C
from smpfast.protocol import errors as E
from smpfast.protocol import names as N
from smpfast.protocol import versions as V
from smpfast.protocol.address import QueueMode, SMPServer
from smpfast.protocol.encoding import (
    ED25519_SPKI_PREFIX,
    ED448_SPKI_PREFIX,
    X25519_SPKI_PREFIX,
)
from smpfast.protocol.versions import VersionRange

VERSIONS = list(V.ALL_VERSIONS)
versions = st.sampled_from(VERSIONS)

short = st.binary(max_size=255)
ids = st.binary(min_size=0, max_size=32)
large = st.binary(max_size=600)
x25519 = st.binary(min_size=32, max_size=32).map(lambda k: X25519_SPKI_PREFIX + k)
ed25519 = st.binary(min_size=32, max_size=32).map(lambda k: ED25519_SPKI_PREFIX + k)
ed448 = st.binary(min_size=57, max_size=57).map(lambda k: ED448_SPKI_PREFIX + k)
auth_keys = st.one_of(ed25519, x25519, ed448)
basic_auth = st.binary(min_size=0, max_size=40).filter(C.valid_basic_auth)
word16 = st.integers(0, 65535)
int64 = st.integers(-(2**63), 2**63 - 1)


@st.composite
def version_ranges(draw, lo: int = 0, hi: int = 65535) -> VersionRange:
    a = draw(st.integers(lo, hi))
    b = draw(st.integers(a, hi))
    return VersionRange(a, b)


link_data = st.builds(C.QueueLinkData, large, large)
cert_keys = st.builds(
    C.CertChainPubKey, st.lists(st.binary(max_size=400), min_size=1, max_size=4), st.binary(max_size=200)
)

# ---- hosts / servers ----
domain = st.from_regex(r"[a-z][a-z0-9-]{0,15}(\.[a-z][a-z0-9-]{0,10}){0,3}", fullmatch=True).filter(
    lambda s: not s.endswith(".onion")
)
onion = st.from_regex(r"[a-z2-7]{16,56}\.onion", fullmatch=True)
ipv4 = st.tuples(*[st.integers(0, 255)] * 4).map(lambda t: ".".join(map(str, t)))
hosts = st.one_of(domain, onion, ipv4)
ports = st.one_of(st.just(""), st.integers(1, 65535).map(str))
servers = st.builds(
    SMPServer, st.lists(hosts, min_size=1, max_size=3).map(tuple), ports, st.binary(min_size=32, max_size=32)
)


# ---- errors ----
_text = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=255), max_size=60)
transport_errors = st.one_of(
    st.sampled_from(["BLOCK", "VERSION", "LARGE_MSG", "SESSION", "NO_AUTH"]).map(E.TransportError),
    st.sampled_from(E.HANDSHAKE_CODES).map(lambda h: E.TransportError("HANDSHAKE", h)),
)
broker_errors = st.one_of(
    st.builds(E.BrokerError, st.sampled_from(["RESPONSE", "UNEXPECTED"]), _text),
    st.builds(lambda t: E.BrokerError("TRANSPORT", t), transport_errors),
    st.just(E.BrokerError("NETWORK", E.NetworkError("FAILED"))),  # NETWORK goes bare on the wire
    st.sampled_from(["TIMEOUT", "HOST", "NO_SERVICE"]).map(E.BrokerError),
)
notices = st.builds(E.ClientNotice, st.one_of(st.none(), int64))
blocking = st.builds(E.BlockingInfo, st.sampled_from(E.BLOCKING_REASONS), st.one_of(st.none(), notices))


def _error_types(children):
    return st.one_of(
        st.builds(lambda e: E.ErrorType("PROXY", E.ProxyError("PROTOCOL", e)), children),
        st.builds(lambda e: E.ErrorType("PROXY", E.ProxyError("BROKER", e)), broker_errors),
    )


_leaf_errors = st.one_of(
    st.sampled_from([
        E.BLOCK, E.SESSION, E.AUTH, E.SERVICE, E.CRYPTO, E.QUOTA, E.EXPIRED, E.NO_MSG, E.LARGE_MSG,
        E.INTERNAL, E.DUPLICATE_, E.CMD_UNKNOWN, E.CMD_SYNTAX, E.CMD_PROHIBITED, E.CMD_NO_AUTH,
        E.CMD_HAS_AUTH, E.CMD_NO_ENTITY, E.PROXY_BASIC_AUTH, E.PROXY_NO_SESSION,
    ]),
    st.builds(lambda b: E.ErrorType("BLOCKED", b), blocking),
    st.builds(lambda t: E.ErrorType("STORE", t), st.text(max_size=40)),
    st.sampled_from([E.NAME_NO_RESOLVER, E.NAME_NOT_FOUND]),
    st.builds(E.name_resolver, st.text(max_size=40)),
)
error_types = st.recursive(_leaf_errors, _error_types, max_leaves=4)


# ---- v19/v20 values ----
ids_hashes = st.one_of(st.binary(min_size=16, max_size=16), short)  # the wire takes any shortString
_label = st.from_regex(r"[a-z0-9]{1,12}(-[a-z0-9]{1,6}){0,2}", fullmatch=True)
domains = st.one_of(
    st.builds(lambda labels, tld: N.SimplexDomain((*labels, tld)),
              st.lists(_label, min_size=1, max_size=4), st.sampled_from(["simplex", "testing"])),
    st.lists(_label, min_size=2, max_size=5).map(lambda labels: N.SimplexDomain(tuple(labels))),
)
_json_text = st.text(max_size=30)  # any code point except lone surrogates round-trips through JSON
name_records = st.builds(
    N.NameRecord,
    _json_text, _json_text, _json_text, _json_text,
    st.lists(_json_text, max_size=3).map(tuple), st.lists(_json_text, max_size=3).map(tuple),
    st.one_of(st.none(), _json_text), st.one_of(st.none(), _json_text),
    st.one_of(st.none(), _json_text), st.one_of(st.none(), _json_text),
    _json_text, _json_text,
)


def service_subscribes(cls, version: int):
    """SUBS/NSUBS as they survive the version (below v19: count -1 and the zero hash)."""
    if version >= V.RCV_SERVICE:
        return st.builds(cls, int64, ids_hashes)
    return st.just(cls())


def service_counts(cls, version: int):
    """SOKS/ENDS as they survive the version (below v19 the hash is not sent)."""
    if version >= V.RCV_SERVICE:
        return st.builds(cls, int64, ids_hashes)
    return st.builds(cls, int64)


# ---- commands ----
flags = st.builds(C.MsgFlags, st.booleans(), st.binary(max_size=7).map(lambda b: b.replace(b" ", b"x")))


def _queue_req(version: int):
    if version >= V.SHORT_LINKS:
        return st.one_of(
            st.none(),
            st.builds(C.QueueReqData, st.sampled_from(list(QueueMode))),
            st.builds(lambda s, d: C.QueueReqData(QueueMode.MESSAGING, s, d), ids, link_data),
            st.builds(lambda lnk, s, d: C.QueueReqData(QueueMode.CONTACT, s, d, lnk), ids, ids, link_data),
        )
    if version >= V.SND_AUTH_KEY:
        return st.builds(C.QueueReqData, st.sampled_from(list(QueueMode)))
    return st.none()


def new_commands(version: int):
    return st.builds(
        C.New,
        auth_keys,
        x25519,
        st.one_of(st.none(), basic_auth),
        st.booleans(),
        _queue_req(version),
        st.one_of(st.none(), st.builds(C.NewNtfCreds, auth_keys, x25519)) if version >= V.NEW_NTF_CREDS else st.none(),
    )


def commands(version: int):
    return st.one_of(
        new_commands(version),
        st.sampled_from([C.Sub(), C.Ldel(), C.Ndel(), C.Get(), C.Off(), C.Del(), C.Que(), C.Ping(),
                         C.Lget(), C.Nsub()]),
        service_subscribes(C.Subs, version),
        service_subscribes(C.Nsubs, version),
        st.builds(C.Rslv, domains),
        st.builds(C.Key, auth_keys),
        st.builds(C.Rkey, st.lists(auth_keys, min_size=1, max_size=4)),
        st.builds(C.Lset, ids, link_data),
        st.builds(C.Nkey, auth_keys, x25519),
        st.builds(C.Ack, ids),
        st.builds(C.Skey, auth_keys),
        st.builds(C.Send, flags, st.binary(max_size=400)),
        st.builds(C.Lkey, auth_keys),
        st.builds(C.Prxy, servers, st.one_of(st.none(), basic_auth)),
        st.builds(C.Pfwd, word16, x25519, st.binary(max_size=400)),
        st.builds(C.Rfwd, st.binary(max_size=400)),
    )


def ids_responses(version: int):
    if version >= V.SHORT_LINKS:
        mode = st.one_of(st.none(), st.sampled_from(list(QueueMode)))
        link = st.one_of(st.none(), ids)
    elif version >= V.SND_AUTH_KEY:
        mode, link = st.sampled_from(list(QueueMode)), st.none()
    else:
        mode, link = st.none(), st.none()
    svc = st.one_of(st.none(), ids) if version >= V.SERVICE_CERTS else st.none()
    ntf = st.one_of(st.none(), st.builds(C.ServerNtfCreds, ids, x25519)) if version >= V.NEW_NTF_CREDS else st.none()
    return st.builds(C.Ids, ids, ids, x25519, mode, link, svc, ntf)


def _err_for(version: int):
    def ok(e: E.ErrorType) -> bool:
        return _blocked_fits(e, version)

    return error_types.filter(ok).map(C.Err)


def _blocked_fits(e: E.ErrorType, version: int) -> bool:
    """Whether ``e`` survives the version's BLOCKED down-conversion unchanged."""
    if e.code == "BLOCKED":
        if version < V.BLOCKED_ENTITY:
            return False
        return version >= V.CLIENT_NOTICES or e.detail.notice is None
    if e.code == "PROXY" and e.detail.code == "PROTOCOL":
        return True  # nested errors are not adapted by the reference
    return True


info_json = st.builds(
    lambda s, n, size: ('{"qiSnd":%s,"qiNtf":%s,"qiSize":%d}' % ("true" if s else "false", "true" if n else "false", size)).encode(),
    st.booleans(), st.booleans(), st.integers(0, 1000),
)


def responses(version: int):
    return st.one_of(
        ids_responses(version),
        st.builds(C.Lnk, ids, link_data),
        st.builds(C.Sok, st.one_of(st.none(), ids)) if version >= V.SERVICE_CERTS else st.just(C.Ok()),
        service_counts(C.Soks, version),
        st.builds(C.Msg, ids, st.binary(max_size=400)),
        st.builds(C.Nid, ids, x25519),
        st.builds(C.Nmsg, st.binary(min_size=24, max_size=24), st.binary(max_size=255)),
        st.builds(C.Pkey, ids, version_ranges(), cert_keys),
        st.builds(C.Rres, st.binary(max_size=300)),
        st.builds(C.Pres, st.binary(max_size=300)),
        service_counts(C.Ends, version),
        st.just(C.Deld()) if version >= V.DELETED_EVENT else st.just(C.End()),
        st.builds(C.Info, info_json),
        st.sampled_from([C.End(), C.Ok(), C.Pong(), C.Alls()]),
        st.builds(C.Rname, name_records),
        _err_for(version),
    )
