"""Proxied transmissions (smpfast.protocol.proxy, smpfast.crypto.proxy): rebuilt byte for
byte from the v18-proxy transcript of the reference, and round trips through all four
layers (client → proxy → relay → proxy → client) with hypothesis."""

from __future__ import annotations

import datetime
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import smpfast._core as core
from smpfast.crypto import proxy as cp
from smpfast.crypto.keys import Alg, PrivateKey, generate_private_key
from smpfast.crypto.message import precompute
from smpfast.protocol import commands as C
from smpfast.protocol import errors as E
from smpfast.protocol import proxy as P
from smpfast.protocol.transmission import encode_client_transmission
from smpfast.protocol.versions import VersionRange
from smpfast.transport.identity import verify_server_chain
from transcripts import load, plaintext

H = bytes.fromhex
PROXY = "v18-proxy.json"


def _transcript() -> dict:
    return load(PROXY)


def _keys(d: dict) -> dict[str, PrivateKey]:
    return {k["label"]: PrivateKey(Alg(k["alg"]), H(k["priv_raw"])) for k in d["keys"]}


def _relay(d: dict) -> P.ProxiedRelay:
    r = d["proxied_relay"]
    return P.ProxiedRelay(H(r["session_id"]), r["version"], H(r["relay_session_key_x25519"]))


def _recorded(d: dict, dir_: str, tag: bytes) -> dict[bytes, tuple[dict, bytes, bytes]]:
    """corrId -> (block, entity id, command bytes) of the proxy client's ``tag`` transmissions."""
    sid = H(d["connections"]["proxy-client"]["session_id"])
    out = {}
    for b in d["blocks"]:
        if b["conn"] != "proxy-client" or b["dir"] != dir_ or b["kind"] != "transmissions":
            continue
        for _s, _a, _g, corr, ent, cmd, _tfa in core.split_block(plaintext(b), sid, True, True):
            if cmd.startswith(tag + b" "):
                out[corr] = (b, ent, cmd)
    return out


def _signer(d: dict, inner: bytes, relay: P.ProxiedRelay) -> PrivateKey | None:
    """The recorded key whose (deterministic) Ed25519 signature the inner transmission carries."""
    [(_s, auth, _g, corr, _e, _c, tfa)] = core.split_block(core.encode_batch([inner], 16226), relay.session_id, True, True)
    if not auth:
        return None
    for k in _keys(d).values():
        if k.alg is Alg.ED25519 and k.sign(tfa) == auth:
            return k
    raise AssertionError("no recorded key made this signature")


def test_pfwd_rebuilt_byte_for_byte() -> None:
    """Every recorded PFWD but the deliberately corrupted one is what proxied_command makes
    of its inner command with the recorded per-command key and nonce."""
    d = _transcript()
    relay, keys = _relay(d), _keys(d)
    pfwds = _recorded(d, "c2s", b"PFWD")
    rebuilt = 0
    for p in d["proxied_commands"]:
        nonce = H(p["nonce_corr_id"])
        _block, entity, recorded = pfwds[nonce]
        cmd_key = keys[p["cmd_dh_key"]]
        assert cp.box_key(relay.server_key, cmd_key.raw) == precompute(H(p["cmd_secret"]))
        inner = H(p["inner_transmission_hex"])
        [(_s, _a, _g, corr, inner_entity, inner_cmd, _tfa)] = core.split_block(
            core.encode_batch([inner], 16226), relay.session_id, True, True)
        assert corr == nonce
        sent = P.proxied_command(relay, inner_entity, inner_cmd, _signer(d, inner, relay),
                                 cmd_private=cmd_key.raw, nonce=nonce)
        assert sent.pfwd.version == p["version"] == 17
        if p["corrupted"]:
            assert sent.pfwd.encode(18) != recorded
            with pytest.raises(core.CryptoError):  # what the relay answers ERR CRYPTO to
                cp.open_command(sent.cmd_key, nonce, C.parse_command(recorded, 18).enc_transmission)
            continue
        assert sent.pfwd.encode(18) == recorded
        assert entity == relay.session_id or p["label"].startswith("PFWD with an unknown")
        assert len(sent.pfwd.enc_transmission) == cp.PROXIED_ENCRYPTED == 16242
        rebuilt += 1
    assert rebuilt == 5


def test_pres_opened_and_resealed_byte_for_byte() -> None:
    """Every recorded PRES opens to its recorded inner answer, and the relay's side
    (seal_forwarded) re-creates the very bytes the proxy returned."""
    d = _transcript()
    relay, keys = _relay(d), _keys(d)
    pres = _recorded(d, "s2c", b"PRES")
    pfwds = _recorded(d, "c2s", b"PFWD")
    opened = 0
    for p in d["proxied_commands"]:
        nonce = H(p["nonce_corr_id"])
        if nonce not in pres:
            continue
        block, _entity, recorded = pres[nonce]
        msg = C.parse_response(recorded, 18)
        sent = P.ProxiedCommand(C.parse_command(pfwds[nonce][2], 18), nonce,
                                cp.box_key(relay.server_key, keys[p["cmd_dh_key"]].raw))
        got = P.proxied_response(relay, sent, msg)
        [summary] = block["summary"]["transmissions"]
        inner = summary["fields"]["decrypted"]["inner"]
        assert (got.corr_id.hex(), got.entity_id.hex(), got.error) == (inner["corr_id"], inner["entity_id"], None)
        expected = b"ERR " + inner["fields"]["err"].encode() if inner["tag"] == "ERR" else inner["tag"].encode()
        assert got.response.encode(17) == expected
        # the relay's side: the same answer sealed for this client gives the recorded bytes
        link_key = os.urandom(32)
        fwd = P.Forwarded(os.urandom(24), nonce, 17, sent.cmd_key, None)  # type: ignore[arg-type]
        rres = P.seal_forwarded(link_key, relay.session_id, fwd, got.corr_id, got.entity_id, got.response)
        assert P.forwarded_response(link_key, fwd.rfwd_corr_id, rres) == msg.enc_response
        opened += 1
    assert opened == 4  # unsigned SEND, SKEY, signed SEND, SUB (-> ERR CMD PROHIBITED)


def _recorded_time(d: dict) -> datetime.datetime:
    return datetime.datetime.strptime(d["recorded_utc"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.UTC)


def test_pkey_accepted_as_the_reference_client() -> None:
    d = _transcript()
    when = _recorded_time(d)
    relay_hash = H(d["servers"]["B"]["key_hash"])
    [(_b, _e, cmd), *_] = _recorded(d, "s2c", b"PKEY").values()
    pkey = C.parse_response(cmd, 18)
    check = lambda chain, kh: verify_server_chain(chain, kh, now=when)  # noqa: E731
    relay = P.relay_from_pkey(pkey, relay_hash, verify_chain=check)
    assert relay == _relay(d)
    with pytest.raises(P.ProxyLayerError) as e:  # another relay's address
        P.relay_from_pkey(pkey, bytes(32), verify_chain=check)
    assert str(e.value.error) == "PROXY BROKER TRANSPORT HANDSHAKE IDENTITY"
    with pytest.raises(P.ProxyLayerError) as e:  # a range the client does not speak
        P.relay_from_pkey(C.Pkey(pkey.session_id, VersionRange(8, 17), pkey.cert_key), relay_hash,
                          VersionRange(6, 7), verify_chain=check)
    assert str(e.value.error) == "PROXY BROKER TRANSPORT VERSION"


def test_pkey_range_and_errors() -> None:
    assert P.relay_vrange(VersionRange(6, 18)) == VersionRange(8, 18)  # capped at 8..20
    assert P.relay_vrange(VersionRange(6, 18), VersionRange(8, 17)) == VersionRange(8, 17)  # a proxy at 18
    assert P.relay_vrange(VersionRange(6, 7)) is None
    assert P.pkey_error(18, VersionRange(6, 18), True) is None
    assert str(P.pkey_error(7, VersionRange(6, 7), True)) == "PROXY BROKER TRANSPORT VERSION"
    assert str(P.pkey_error(18, VersionRange(6, 18), False)) == "PROXY BROKER TRANSPORT NO_AUTH"


# ---------------------------------------------------------------- round trips


class _Parties:
    """Fresh keys for one proxied exchange: the relay's session key pair, the proxy link's
    box key, and the relay session."""

    def __init__(self, version: int) -> None:
        self.relay_private = os.urandom(32)
        relay_public = PrivateKey(Alg.X25519, self.relay_private).public.raw
        self.session_id = os.urandom(32)
        self.link_key = os.urandom(32)
        self.relay = P.ProxiedRelay(self.session_id, version, relay_public)


_versions = st.sampled_from([8, 9, 10, 11, 12, 14, 15, 16, 17, 18])
_ids = st.binary(min_size=0, max_size=32)


@settings(max_examples=60, deadline=None)
@given(version=_versions, entity=_ids.filter(bool), body=st.binary(max_size=2000), signed=st.booleans(),
       alg=st.sampled_from([Alg.ED25519, Alg.X25519, Alg.ED448]))
def test_round_trip_through_all_layers(version: int, entity: bytes, body: bytes, signed: bool, alg: Alg) -> None:
    parties = _Parties(version)
    key = generate_private_key(alg) if signed else None
    send = C.Send(C.MsgFlags(False), body)
    sent = P.proxied_command(parties.relay, entity, send, key)
    # the proxy forwards it, the relay opens it
    pfwd_corr = sent.nonce
    rfwd_corr, rfwd = P.forward_command(parties.link_key, pfwd_corr, sent.pfwd)
    fwd = P.open_forwarded(parties.link_key, parties.relay_private, parties.session_id, rfwd_corr, rfwd)
    assert (fwd.version, fwd.corr_id, fwd.rfwd_corr_id) == (version, pfwd_corr, rfwd_corr)
    got = fwd.command
    assert got.error is None and got.command == send and got.entity_id == entity
    assert bool(got.auth) == signed
    if signed:  # the authorization is made for the relay session
        from smpfast.crypto.auth import AuthRequest, AuthVerifier
        [ok] = AuthVerifier(parties.relay_private).verify_batch(
            [AuthRequest(key.public.der, got.auth, got.t_for_auth, got.corr_id, entity)])
        assert ok
    # the relay answers, the proxy unwraps, the client opens
    rres = P.seal_forwarded(parties.link_key, parties.session_id, fwd, got.corr_id, entity, C.OK)
    enc = P.forwarded_response(parties.link_key, rfwd_corr, rres)
    answer = P.proxied_response(parties.relay, sent, C.Pres(enc))
    assert (answer.corr_id, answer.entity_id, answer.response, answer.error) == (pfwd_corr, entity, C.OK, None)


@settings(max_examples=40, deadline=None)
@given(layer=st.sampled_from(["s2r", "p2r", "r2p", "r2c"]), pos=st.integers(min_value=0), flip=st.integers(1, 255))
def test_a_flipped_byte_in_any_layer_fails_with_the_reference_error(layer: str, pos: int, flip: int) -> None:
    parties = _Parties(17)
    sent = P.proxied_command(parties.relay, b"q" * 24, C.Send(C.MsgFlags(False), b"hi"))

    def flipped(b: bytes) -> bytes:
        i = pos % len(b)
        return b[:i] + bytes((b[i] ^ flip,)) + b[i + 1:]

    pfwd = sent.pfwd
    if layer == "s2r":
        pfwd = C.Pfwd(pfwd.version, pfwd.dh_key, flipped(pfwd.enc_transmission))
    rfwd_corr, rfwd = P.forward_command(parties.link_key, sent.nonce, pfwd)
    if layer == "p2r":
        rfwd = C.Rfwd(flipped(rfwd.enc_transmission))
    if layer in ("s2r", "p2r"):
        with pytest.raises(P.ProxyLayerError) as e:
            P.open_forwarded(parties.link_key, parties.relay_private, parties.session_id, rfwd_corr, rfwd)
        assert e.value.error == E.CRYPTO  # the relay answers ERR CRYPTO: PROXY PROTOCOL CRYPTO
        return
    fwd = P.open_forwarded(parties.link_key, parties.relay_private, parties.session_id, rfwd_corr, rfwd)
    rres = P.seal_forwarded(parties.link_key, parties.session_id, fwd, fwd.corr_id, b"q" * 24, C.OK)
    if layer == "r2p":
        with pytest.raises(P.ProxyLayerError) as e:
            P.forwarded_response(parties.link_key, rfwd_corr, C.Rres(flipped(rres.enc_response)))
        assert e.value.error == E.CRYPTO
        return
    enc = P.forwarded_response(parties.link_key, rfwd_corr, rres)
    with pytest.raises(core.CryptoError):
        P.proxied_response(parties.relay, sent, C.Pres(flipped(enc)))


def test_relay_layer_errors() -> None:
    parties = _Parties(17)
    sent = P.proxied_command(parties.relay, b"q" * 24, C.Send(C.MsgFlags(False), b"hi"))
    corr, rfwd = P.forward_command(parties.link_key, sent.nonce, sent.pfwd)
    with pytest.raises(P.ProxyLayerError) as e:  # the proxy sent no key in its handshake
        P.open_forwarded(None, parties.relay_private, parties.session_id, corr, rfwd)
    assert str(e.value.error) == "PROXY BROKER TRANSPORT NO_AUTH"
    with pytest.raises(P.ProxyLayerError) as e:  # another link's key
        P.open_forwarded(os.urandom(32), parties.relay_private, parties.session_id, corr, rfwd)
    assert e.value.error == E.CRYPTO
    with pytest.raises(P.ProxyLayerError) as e:  # a payload that is no FwdTransmission
        P.open_forwarded(parties.link_key, parties.relay_private, parties.session_id, corr,
                         C.Rfwd(cp.seal_forward(parties.link_key, corr, b"\x05short")))
    assert e.value.error == E.CMD_SYNTAX
    # two inner transmissions: the whole RFWD is ERR BLOCK
    inner = encode_client_transmission(17, parties.session_id, sent.nonce, b"q" * 24, b"PING")
    two = b"\x02" + b"".join(len(inner).to_bytes(2, "big") + inner for _ in range(2))
    fwd = C.FwdTransmission(sent.nonce, 17, sent.pfwd.dh_key, cp.seal_command(sent.cmd_key, sent.nonce, two))
    with pytest.raises(P.ProxyLayerError) as e:
        P.open_forwarded(parties.link_key, parties.relay_private, parties.session_id, corr,
                         C.Rfwd(cp.seal_forward(parties.link_key, corr, fwd.encode())))
    assert e.value.error == E.BLOCK
    # an inner transmission that does not parse is the command's own error (answered inside)
    fwd = C.FwdTransmission(sent.nonce, 17, sent.pfwd.dh_key, cp.seal_command(sent.cmd_key, sent.nonce, b"\x01\x00\x03abc"))
    got = P.open_forwarded(parties.link_key, parties.relay_private, parties.session_id, corr,
                           C.Rfwd(cp.seal_forward(parties.link_key, corr, fwd.encode())))
    assert got.command.error == E.BLOCK


def test_reverse_nonce() -> None:
    n = bytes(range(24))
    assert cp.reverse_nonce(n) == bytes(range(23, -1, -1))
    with pytest.raises(core.CryptoError):
        cp.reverse_nonce(b"short")


def test_a_response_too_large_for_the_proxied_block_is_block() -> None:
    parties = _Parties(17)
    sent = P.proxied_command(parties.relay, b"q" * 24, C.PING)
    corr, rfwd = P.forward_command(parties.link_key, sent.nonce, sent.pfwd)
    fwd = P.open_forwarded(parties.link_key, parties.relay_private, parties.session_id, corr, rfwd)
    big = C.Msg(b"m" * 24, b"x" * cp.PROXIED_PADDED)
    with pytest.raises(P.ProxyLayerError) as e:
        P.seal_forwarded(parties.link_key, parties.session_id, fwd, fwd.corr_id, b"q" * 24, big)
    assert e.value.error == E.BLOCK
