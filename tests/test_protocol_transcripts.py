"""Replay of the golden transcripts (tests/data/transcripts) through the codecs.

For every recorded block: handshakes parse and re-encode to the same content; transmission
blocks split, every transmission parses at the connection's negotiated version and
re-encodes byte for byte, the whole block re-batches to the same plaintext, and decoded
fields match the recorded summary. Transmissions the reference rejected (syntax cases,
malformed blocks, the plaintext block on an encrypted connection) produce exactly the
ERR the server sent back.
"""

from __future__ import annotations

import re

import pytest

from smpfast import _core
from smpfast.protocol import commands as C
from smpfast.protocol import handshake as H
from smpfast.protocol import transmission as T
from smpfast.protocol.address import QueueMode
from smpfast.protocol.errors import ErrorType
from transcripts import FILES, load, plaintext, raw_transmissions



def h(b: bytes | None) -> str | None:
    return None if b is None else b.hex()


def test_all_transcripts_present() -> None:
    assert len(FILES) >= 10


# ---- summary checks ----


def check_handshake(b: dict, hs: H.ServerHandshake | H.ClientHandshake) -> None:
    s = b["summary"]
    if isinstance(hs, H.ServerHandshake):
        assert [hs.vrange.min, hs.vrange.max] == s["vrange"] and hs.session_id.hex() == s["session_id"]
        if "signed_session_key_der" in s:
            assert hs.cert_key is not None and hs.cert_key.signed_key.hex() == s["signed_session_key_der"]
            assert [f"{len(c)} bytes DER" for c in hs.cert_key.chain] == s["cert_chain"]
        else:
            assert hs.cert_key is None
    else:
        assert hs.version == s["version"] and hs.key_hash.hex() == s["key_hash"]
        assert h(hs.client_key) == s.get("client_dh_key")
        assert hs.proxy_server == s.get("proxy_server", False)
        assert hs.service is None and s.get("client_service") is None


def _blob(d: dict, value: bytes) -> None:
    assert d["len"] == len(value)
    if "text" in d:
        m = re.fullmatch(r"(.*)\.\.\.\(\+\d+\)", d["text"], re.S)  # long texts are cut
        if m:
            assert value.startswith(m.group(1).encode())
        else:
            assert value == d["text"].encode()


def check_command(t: dict, cmd: C.Command) -> None:
    if "fields" not in t:  # the batch file keeps compact summaries
        return
    f = t["fields"]
    if isinstance(cmd, C.New):
        assert cmd.rcv_auth_key.hex() == f["rcv_auth_key"] and cmd.rcv_dh_key.hex() == f["rcv_dh_key"]
        assert ("S" if cmd.subscribe else "C") == f["sub_mode"]
        assert cmd.basic_auth is None and f.get("basic_auth") is None
        if "sender_can_secure" in f:
            assert (cmd.queue_req.mode is QueueMode.MESSAGING) == f["sender_can_secure"]
        if "queue_mode" in f:
            assert cmd.queue_req is not None and cmd.queue_req.mode.value == f["queue_mode"]
        if "link" in f:
            q, link = cmd.queue_req, f["link"]
            assert q.sender_id.hex() == link["snd_id"] and h(q.link_id) == link.get("link_id")
            _blob(link["fixed_data"], q.link_data.fixed_data)
            _blob(link["user_data"], q.link_data.user_data)
        if "ntf_creds" in f:
            assert cmd.ntf_creds is None and f["ntf_creds"] is None
    elif isinstance(cmd, (C.Key, C.Skey, C.Lkey)):
        assert cmd.key.hex() == f["key"]
    elif isinstance(cmd, C.Ack):
        assert cmd.msg_id.hex() == f["msg_id"]
    elif isinstance(cmd, C.Send):
        assert cmd.flags.notification == f["notification"] and cmd.flags.reserved.hex() == f["extra_flags"]
        _blob(f["body"], cmd.body)
    elif isinstance(cmd, C.Nkey):
        assert cmd.notifier_key.hex() == f["ntf_key"] and cmd.dh_key.hex() == f["ntf_dh_key"]
    elif isinstance(cmd, C.Lset):
        assert cmd.link_id.hex() == f["link_id"]
        _blob(f["fixed_data"], cmd.data.fixed_data)
        _blob(f["user_data"], cmd.data.user_data)
    elif isinstance(cmd, C.Prxy):
        assert list(cmd.server.hosts) == f["hosts"] and cmd.server.port == f["port"]
        assert cmd.server.key_hash.hex() == f["key_hash"] and cmd.basic_auth is None and f["basic_auth"] is None
    elif isinstance(cmd, C.Pfwd):
        assert cmd.version == f["version"] and cmd.dh_key.hex() == f["cmd_dh_key"]
        assert len(cmd.enc_transmission) == f["enc_transmission_len"]
    else:
        assert f == {}


def check_response(t: dict, msg: C.Response) -> None:
    f = t.get("fields", t)  # the batch file keeps compact summaries without "fields"
    if isinstance(msg, C.Err):
        assert str(msg.error) == f["err"]
    elif isinstance(msg, C.Ids):
        assert msg.rcv_id.hex() == f["rcv_id"] and msg.snd_id.hex() == f["snd_id"]
        if "srv_dh" in f:
            assert msg.srv_dh_key.hex() == f["srv_dh"]
        if "queue_mode" in f:
            assert msg.queue_mode is not None and msg.queue_mode.value == f["queue_mode"]
        else:
            assert msg.queue_mode is None
        for attr, key in (("link_id", "link_id"), ("service_id", "service_id")):
            if key in f:
                assert h(getattr(msg, attr)) == f[key]
        if "ntf_creds" in f:
            assert msg.ntf_creds is None and f["ntf_creds"] is None
    elif isinstance(msg, C.Msg):
        assert msg.msg_id.hex() == f["msg_id"] and len(msg.body) == f["body"]["len"]
    elif isinstance(msg, C.Nid):
        assert msg.notifier_id.hex() == f["ntf_id"] and msg.srv_ntf_dh_key.hex() == f["srv_ntf_dh"]
    elif isinstance(msg, C.Nmsg):
        assert msg.nonce.hex() == f["nonce"] and msg.enc_meta.hex() == f["enc_meta"]
    elif isinstance(msg, C.Pkey):
        assert msg.session_id.hex() == f["session_id"] and [msg.vrange.min, msg.vrange.max] == f["vrange"]
        assert msg.cert_key.signed_key.hex() == f["signed_key"]
        assert [f"{len(c)} bytes DER" for c in msg.cert_key.chain] == f["chain"]
    elif isinstance(msg, C.Lnk):
        assert msg.sender_id.hex() == f["snd_id"]
        assert [msg.data.fixed_data.hex(), msg.data.user_data.hex()] == f["data"]
    elif isinstance(msg, C.Sok):
        assert h(msg.service_id) == f["service_id"]
    elif isinstance(msg, C.Pres):
        assert len(msg.enc_response) == f["raw"]["len"]


# ---- replay ----


@pytest.mark.parametrize("name", FILES)
def test_replay(name: str) -> None:
    d = load(name)
    conns = d["connections"]
    pending: dict[str, list[tuple[bytes, bytes, ErrorType]]] = {c: [] for c in conns}
    checked = 0
    for b in d["blocks"]:
        seq, kind, conn = b["seq"], b["kind"], b["conn"]
        if kind == "connection_closed":
            continue
        c = conns[conn]
        v, sid = c["version"], bytes.fromhex(c["session_id"])
        block = plaintext(b)
        if kind in ("server_handshake", "client_handshake"):
            cls = H.ServerHandshake if kind == "server_handshake" else H.ClientHandshake
            hs = cls.parse(block)
            assert hs.encode_content() == _core.unpad(block), seq
            assert hs.encode()[: len(b["unpadded_hex"]) // 2] == bytes.fromhex(b["unpadded_hex"]), seq
            check_handshake(b, hs)
            continue
        if kind == "raw":
            if c.get("block_encryption"):
                # a plaintext block on an encrypted connection fails to decrypt
                sb = b["sb_consumed"]
                key = _core.hsalsa20_key(bytes.fromhex(sb["key"]))
                with pytest.raises(_core.CryptoError):
                    _core.box_open(key, bytes.fromhex(sb["nonce"]), block)
                got = T.block_error_command()
            else:
                got = T.decode_server_transmissions(block, v, sid)
            assert [(r.corr_id, r.entity_id, r.error) for r in got] == [(b"", b"", got[0].error)]
            pending[conn] += [(r.corr_id, r.entity_id, r.error) for r in got]
            continue
        summary = b["summary"]
        if b["dir"] == "c2s":
            got = T.decode_server_transmissions(block, v, sid)
            if "block_parse_error" in summary:
                assert len(got) == 1 and got[0].error is not None, seq
                pending[conn].append((got[0].corr_id, got[0].entity_id, got[0].error))
                continue
            raws = raw_transmissions(block)
            assert len(got) == len(raws) == summary["count"], seq
            reencoded = []
            for r, raw, t in zip(got, raws, summary["transmissions"]):
                if r.error is not None:
                    pending[conn].append((r.corr_id, r.entity_id, r.error))
                    reencoded.append(raw)
                    continue
                enc = T.encode_client_transmission(v, sid, r.corr_id, r.entity_id, r.command, r.auth, r.service_sig)
                assert enc == raw, seq
                assert r.command.TAG.decode() == t["tag"] and r.corr_id.hex() == t["corr_id"], seq
                if "entity_id" in t:
                    assert r.entity_id.hex() == t["entity_id"], seq
                if "auth_len" in t:
                    assert len(r.auth) == t["auth_len"], seq
                if "service_sig" in t:
                    assert r.service_sig is None and t["service_sig"] is None
                check_command(t, r.command)
                reencoded.append(enc)
                checked += 1
            assert T.batch_blocks(reencoded, b["pad_to"]) == [block], seq
        else:
            got = T.decode_client_transmissions(block, v, sid)
            raws = raw_transmissions(block)
            assert len(got) == len(raws) == summary["count"], seq
            reencoded = []
            for r, raw, t in zip(got, raws, summary["transmissions"]):
                assert r.error is None, (seq, r)
                enc = T.encode_server_transmission(v, sid, r.corr_id, r.entity_id, r.response)
                assert enc == raw, seq
                assert r.response.TAG.decode() == t["tag"] and r.corr_id.hex() == t["corr_id"], seq
                if "entity_id" in t:
                    assert r.entity_id.hex() == t["entity_id"], seq
                check_response(t, r.response)
                if isinstance(r.response, C.Err):
                    exp = (r.corr_id, r.entity_id, r.response.error)
                    if exp in pending[conn]:
                        pending[conn].remove(exp)
                reencoded.append(enc)
                checked += 1
            assert T.batch_blocks(reencoded, b["pad_to"]) == [block], seq
    assert all(not p for p in pending.values()), pending  # every decode error was answered as recorded
    assert checked > 0


def test_proxied_inner_transmissions() -> None:
    """The decrypted inner transmissions of PFWD (v18-proxy.json) at the proxied version."""
    d = load("v18-proxy.json")
    for p in d["proxied_commands"]:
        v, sid = p["version"], bytes.fromhex(p["relay_session_id"])
        inner = bytes.fromhex(p["inner_transmission_hex"])
        padded = _core.encode_batch([inner], p["padded_to"])
        [r] = T.decode_server_transmissions(padded, v, sid)
        assert r.error is None and r.corr_id.hex() == p["nonce_corr_id"]
        assert T.encode_client_transmission(v, sid, r.corr_id, r.entity_id, r.command, r.auth, r.service_sig) == inner
        assert isinstance(r.command, (C.Send, C.Skey, C.Sub))


def test_batch_grouping_matches_reference() -> None:
    """135 NEWs at v7 go out as 48 + 87 (packed from the end); 135 SUBs fit in one block,
    and 136 would (the reference's budget, tests/data/transcripts/README.md)."""
    d = load("v7-batch-135-sub.json")
    c2s = [b for b in d["blocks"] if b["dir"] == "c2s" and b["kind"] == "transmissions"]
    news = [plaintext(b) for b in c2s if b["summary"]["transmissions"][0]["tag"] == "NEW"]
    assert [b[2] for b in news] == [48, 87]
    all_news = [t for b in news for t in raw_transmissions(b)]
    assert T.batch_blocks(all_news) == news
    [subs] = [plaintext(b) for b in c2s if b["summary"]["transmissions"][0]["tag"] == "SUB"]
    sub_ts = raw_transmissions(subs)
    assert len(sub_ts) == 135 and T.batch_blocks(sub_ts) == [subs]
    assert [b[2] for b in T.batch_blocks(sub_ts + sub_ts[:1])] == [136]
    assert [b[2] for b in T.batch_blocks(sub_ts + sub_ts[:2])] == [1, 136]
