"""Recompute the crypto of the golden transcripts recorded against the reference server
(tests/data/transcripts, README.md there): signed session keys, block-encryption chains
and the v11 encrypted blocks, client authorizations, MSG bodies and NMSG metadata."""

from __future__ import annotations


import pytest
from cryptography import x509

import smpfast._core as core
from smpfast.crypto.auth import AuthVerifier, authenticator, sender_id_for
from smpfast.crypto.blockcrypt import BLOCK_SIZE, client_block_ciphers, sbc_init, sbc_step, server_block_ciphers
from smpfast.crypto.keys import Alg, PrivateKey, decode_dh_key
from smpfast.crypto.message import decrypt_msg, decrypt_ntf_meta, precompute
from smpfast.crypto.session_key import verify_session_key
from transcripts import FILES, load, plaintext

H = bytes.fromhex

# Authorizations meant to fail (tests/data/transcripts/README.md): the fixed sample signature of the
# syntax cases, and these steps.
WRONG_STEPS = {
    "KEY with a wrong authorization",
    "SKEY with a wrong signature",
}


def test_all_transcripts_present():
    assert len(FILES) == 11


def transmissions(d: dict, block: dict) -> list[tuple]:
    conn = d["connections"][block["conn"]]
    v = conn["version"]
    return core.split_block(plaintext(block), H(conn["session_id"]), v >= 7, v >= 16)


class R:
    """A cursor for the few handshake/command layouts parsed here."""

    def __init__(self, data: bytes) -> None:
        self.d, self.p = data, 0

    def take(self, n: int) -> bytes:
        out = self.d[self.p : self.p + n]
        assert len(out) == n
        self.p += n
        return out

    def w16(self) -> int:
        return int.from_bytes(self.take(2), "big")

    def short(self) -> bytes:
        return self.take(self.take(1)[0])

    def large(self) -> bytes:
        return self.take(self.w16())


def cert_chain_and_signed_key(r: R) -> tuple[list[bytes], bytes]:
    chain = [r.large() for _ in range(r.take(1)[0])]
    return chain, r.large()


def leaf_key(der_hex: str):
    return x509.load_der_x509_certificate(H(der_hex)).public_key()


# ---------------------------------------------------------------- handshakes


@pytest.mark.parametrize("name", FILES)
def test_server_handshake_signed_session_keys(name):
    d = load(name)
    checked = 0
    for b in d["blocks"]:
        if b["kind"] != "server_handshake":
            continue
        conn = d["connections"][b["conn"]]
        server = d["servers"][conn["server"]]
        r = R(core.unpad(plaintext(b)))
        vmin, vmax = r.w16(), r.w16()
        assert vmin == 6 and vmax in (6, 18)
        assert r.short() == H(conn["session_id"])
        if vmax < 7:
            assert conn["version"] == 6 and "server_session_key_x25519" not in conn
            continue
        chain, signed = cert_chain_and_signed_key(r)
        assert [c.hex() for c in chain] == server["cert_chain_der"]
        assert len(signed) == 122
        key = verify_session_key(signed, leaf_key(server["cert_chain_der"][0]))
        if "server_session_key_x25519" in conn:
            assert key == H(conn["server_session_key_x25519"])
        # another server's leaf key must not verify it
        others = [s for n, s in d["servers"].items() if s["cert_chain_der"][0] != server["cert_chain_der"][0]]
        for s in others:
            with pytest.raises(core.CryptoError):
                verify_session_key(signed, leaf_key(s["cert_chain_der"][0]))
        checked += 1
    assert checked >= (0 if name.startswith("v6") else 1)


def test_pkey_signed_relay_key():
    d = load("v18-proxy.json")
    relay = d["servers"]["B"]
    seen = 0
    for b in d["blocks"]:
        if b["kind"] != "transmissions" or b["dir"] != "s2c":
            continue
        for t in transmissions(d, b):
            cmd = t[5]
            if not cmd.startswith(b"PKEY "):
                continue
            r = R(cmd[5:])
            assert r.short() == H(d["proxied_relay"]["session_id"])
            assert (r.w16(), r.w16()) == tuple(d["proxied_relay"]["vrange"])
            chain, signed = cert_chain_and_signed_key(r)
            assert [c.hex() for c in chain] == relay["cert_chain_der"]
            key = verify_session_key(signed, leaf_key(relay["cert_chain_der"][0]))
            assert key == H(d["proxied_relay"]["relay_session_key_x25519"])
            seen += 1
    assert seen == 2


# ---------------------------------------------------------------- block encryption


@pytest.mark.parametrize("name", FILES)
def test_session_secret_and_sbc_init(name):
    d = load(name)
    keys = {k["label"]: k for k in d["keys"]}
    for conn in d["connections"].values():
        if "session_dh_secret" in conn:
            priv = H(keys[conn["client_transport_dh"]]["priv_raw"])
            assert core.x25519(priv, H(conn["server_session_key_x25519"])) == H(conn["session_dh_secret"])
        if conn.get("block_encryption"):
            assert conn["version"] >= 11
            s2c, c2s = sbc_init(H(conn["session_id"]), H(conn["session_dh_secret"]))
            assert s2c.hex() == conn["sbc_init"]["server_snd_client_rcv_ck"]
            assert c2s.hex() == conn["sbc_init"]["server_rcv_client_snd_ck"]
        else:
            assert "sbc_init" not in conn


@pytest.mark.parametrize("name", FILES)
def test_block_chains(name):
    """Every recorded block key/nonce is the next step of its direction's chain; v11 blocks
    decrypt (server view for c2s, client view for s2c) and re-encrypt byte for byte."""
    d = load(name)
    chains = {}
    for cname, conn in d["connections"].items():
        if conn.get("block_encryption"):
            sid, secret = H(conn["session_id"]), H(conn["session_dh_secret"])
            s_enc, s_dec = server_block_ciphers(sid, secret)
            c_enc, c_dec = client_block_ciphers(sid, secret)
            chains[cname, "c2s"] = (c_enc, s_dec)
            chains[cname, "s2c"] = (s_enc, c_dec)
    decrypted = 0
    for b in d["blocks"]:
        if b["kind"] not in ("transmissions", "raw"):
            continue
        key = (b["conn"], b["dir"])
        if key not in chains:
            assert "sb" not in b and b["pad_to"] == BLOCK_SIZE
            continue
        enc, dec = chains[key]
        sb = b.get("sb") or b["sb_consumed"]
        assert sb["chain_key"] == enc.chain_key.hex() == dec.chain_key.hex()
        _, sb_key, nonce = sbc_step(enc.chain_key)
        assert (sb_key.hex(), nonce.hex()) == (sb["key"], sb["nonce"])
        if b["kind"] == "raw":  # a plaintext block on an encrypted connection
            with pytest.raises(core.CryptoError):
                dec.decrypt(plaintext(b))
            enc.next_key()  # the client kept its send chain in step
            continue
        assert b["pad_to"] == 16368
        if "enc_hex" in b:
            block = H(b["enc_hex"])
            assert dec.decrypt(block) == plaintext(b)
            assert enc.encrypt(plaintext(b)) == block
            decrypted += 1
        else:
            dec.next_key()
            enc.next_key()
    assert decrypted == sum("enc_hex" in b for b in d["blocks"])
    if name == "v11-block-encryption.json":
        assert decrypted >= 10
    if any(c.get("block_encryption") for c in d["connections"].values()):
        assert chains


# ---------------------------------------------------------------- authorizations


def _auth_keys(d: dict) -> list[PrivateKey]:
    return [PrivateKey(Alg(k["alg"]), H(k["priv_raw"])) for k in d["keys"] if k["purpose"] == "auth"]


def _verifies(keys: list[PrivateKey], auth: bytes, tfa: bytes, corr_id: bytes, server_key: bytes | None) -> bool:
    for k in keys:
        if len(auth) == 80 and k.alg is Alg.X25519 and server_key is not None:
            if authenticator(k, server_key, corr_id, tfa) == auth:
                return True
        elif len(auth) == 64 and k.alg is Alg.ED25519:
            if AuthVerifier(None).verify(k.public, auth, tfa, corr_id):
                return True
    return False


@pytest.mark.parametrize("name", FILES)
def test_client_authorizations(name):
    d = load(name)
    keys = _auth_keys(d)
    # the reference test-suite's sample signature (v7-errors sample_values), reused by v15
    sample = H(load("v7-errors.json")["sample_values"]["auth_signature"])
    ok = failed_as_intended = 0
    for b in d["blocks"]:
        if b["dir"] != "c2s" or b["kind"] not in ("transmissions", "raw"):
            continue
        conn = d["connections"][b["conn"]]
        try:
            ts = transmissions(d, b)
        except core.FramingError:
            assert b["step"].startswith(("malformed block", "block with invalid padding"))
            continue
        server_key = H(conn["server_session_key_x25519"]) if "server_session_key_x25519" in conn else None
        for status, auth, _ss, corr_id, _ent, _cmd, tfa in ts:
            if not auth or status != core.T_OK:
                continue
            if _verifies(keys, auth, tfa, corr_id, server_key):
                assert b["step"] not in WRONG_STEPS
                ok += 1
            else:
                assert auth == sample or b["step"] in WRONG_STEPS, b["step"]
                failed_as_intended += 1
    assert ok > 0 or name in ("v7-errors.json", "v7-batch-135-sub.json")
    if name == "v7-batch-135-sub.json":
        assert ok == 135 * 2
    if name in ("v18-queue-lifecycle.json", "v7-queue-lifecycle.json", "v9-skey.json"):
        assert failed_as_intended == 1


def test_x25519_authenticators_recorded():
    """v18 lifecycle: the recipient key is X25519; its authenticators match ours."""
    d = load("v18-queue-lifecycle.json")
    keys = [k for k in _auth_keys(d) if k.alg is Alg.X25519]
    assert keys
    n = 0
    for b in d["blocks"]:
        if b["dir"] == "c2s" and b["kind"] == "transmissions":
            conn = d["connections"][b["conn"]]
            for status, auth, ss, corr_id, _e, _c, tfa in transmissions(d, b):
                if len(auth) == 80 and b["step"] not in WRONG_STEPS:
                    assert ss is None
                    assert _verifies(keys, auth, tfa, corr_id, H(conn["server_session_key_x25519"]))
                    n += 1
    assert n >= 5


def test_proxied_inner_authorizations():
    d = load("v18-proxy.json")
    keys = _auth_keys(d)
    signed = 0
    for p in d["proxied_commands"]:
        v = p["version"]
        inner = core.encode_batch([H(p["inner_transmission_hex"])], BLOCK_SIZE)
        ((status, auth, _ss, corr_id, _e, _c, tfa),) = core.split_block(inner, H(p["relay_session_id"]), True, v >= 16)
        assert status == core.T_OK and corr_id.hex() == p["nonce_corr_id"]
        if auth:
            assert _verifies(keys, auth, tfa, corr_id, H(d["proxied_relay"]["relay_session_key_x25519"]))
            signed += 1
    assert signed == 5


def test_short_link_sender_ids():
    d = load("v15-short-links.json")
    responses = {}
    new = {}
    for b in d["blocks"]:
        if b["kind"] != "transmissions":
            continue
        for t in b["summary"]["transmissions"]:
            if b["dir"] == "c2s" and t["tag"] == "NEW" and t["fields"].get("link"):
                new[t["corr_id"]] = t["fields"]["link"]["snd_id"]
            elif b["dir"] == "s2c":
                responses[t["corr_id"]] = t
    assert len(new) == 3
    for corr_id, snd_id in new.items():
        derived = sender_id_for(H(corr_id)).hex() == snd_id
        assert responses[corr_id]["tag"] == ("IDS" if derived else "ERR")
        if not derived:
            assert responses[corr_id]["fields"]["err"] == "CMD PROHIBITED"


# ---------------------------------------------------------------- MSG and NMSG


@pytest.mark.parametrize("name", FILES)
def test_msg_and_nmsg_decrypt(name):
    d = load(name)
    keys = {k["label"]: k for k in d["keys"]}
    by_rcv, by_ntf = {}, {}
    for q in d["queues"]:
        secret = H(q["rcv_dh_secret"])
        rcv_dh = H(keys[q["rcv_dh_key"]]["priv_raw"])
        assert core.x25519(rcv_dh, decode_dh_key(H(q["srv_dh_pub_der"])).raw) == secret
        by_rcv[H(q["rcv_id"])] = precompute(secret)
        if "ntf_dh_secret" in q:
            ntf_secret = H(q["ntf_dh_secret"])
            ntf_dh = H(keys[q["ntf_dh_key"]]["priv_raw"])
            assert core.x25519(ntf_dh, decode_dh_key(H(q["srv_ntf_dh_pub_der"])).raw) == ntf_secret
            by_ntf[H(q["notifier_id"])] = precompute(ntf_secret)
    msgs = nmsgs = 0
    for b in d["blocks"]:
        if b["dir"] != "s2c" or b["kind"] != "transmissions":
            continue
        for t, summary in zip(transmissions(d, b), b["summary"]["transmissions"]):
            entity, cmd = t[4], t[5]
            if cmd.startswith(b"MSG "):
                r = R(cmd[4:])
                msg_id = r.short()
                enc = r.d[r.p :]
                assert len(enc) == 16122
                m = decrypt_msg(by_rcv[entity], msg_id, enc)
                exp = summary["fields"]["decrypted"]
                assert m.quota == exp["quota_marker"] and m.ts == exp["ts"]
                if not m.quota:
                    assert m.notification == (exp["flags"] == "T")
                    assert len(m.body) == exp["body"]["len"]
                    text = exp["body"].get("text")
                    if text is not None and len(text) == len(m.body):  # long bodies are abridged
                        assert m.body == text.encode()
                msgs += 1
            elif cmd.startswith(b"NMSG "):
                r = R(cmd[5:])
                nonce = r.take(24)
                enc = r.short()
                assert len(enc) == 144 and r.p == len(cmd) - 5
                meta = decrypt_ntf_meta(by_ntf[entity], nonce, enc)
                exp = summary["fields"]["decrypted"]
                assert (meta.msg_id.hex(), meta.ts) == (exp["msg_id"], exp["ts"])
                nmsgs += 1
    expected_any = {"v7-notifications.json": (1, 1), "v7-quota.json": (1, 0), "v11-block-encryption.json": (1, 0)}
    lo_msg, lo_ntf = expected_any.get(name, (0, 0))
    assert msgs >= lo_msg and nmsgs >= lo_ntf
    if d["queues"] and name not in ("v7-errors.json",):
        assert msgs > 0
