"""Replay a golden transcript (tests/data/transcripts) against smpfast's sans-IO broker.

One ``Broker`` over a ``MemoryStore``, one broker ``Client`` per recorded connection with the
recorded session id (so signatures made by the recorded keys over that session id verify).
The recorded blocks are walked in order:

- c2s ``transmissions``: every transmission gets the server-chosen values bound so far
  substituted (recipient/sender/notifier ids as entity ids, msg ids in ACK), is re-signed
  with the recorded key that signed it (found by verifying the recorded authorization over
  the recorded ``tForAuth``; authorizations no recorded key made, the deliberately wrong
  ones, are kept as they are), and the block is rebuilt with the same grouping and fed to
  ``broker.process_block``. A block that does not split, and ``raw`` blocks, go in as
  recorded.
- s2c ``transmissions``: compared with the next block smpfast produced for that connection.

What smpfast "sends": every ``Broker._send`` call appends one batch to the client's outbox —
the equivalent of one item of the reference's ``sndQ``, which the reference writes as its own
block(s), as smpfast's connection writer does. Each batch is cut into blocks with the
reference's packing (``group_transmissions``).

Comparison, transmission by transmission: same count per block; empty authorization; the
same corrId; the entity id mapped from the recorded one; the command bytes identical
except for per-session random fields: IDS/NID ids and server DH keys (bound here: recorded
value → smpfast value), MSG msg id (bound) and encrypted body (both decrypted with the
recipient's recorded DH key: flags, body and quota marker compared; padded sizes equal),
NMSG nonce and encrypted metadata (both decrypted: msg id compared through the binding,
timestamp equal to the message's).

Timing: the reference delivers END/DELD from a periodic task (up to ~15 s later) and NMSG
every 1.5 s; the broker sends END/DELD at once. ``deliver_notifications()`` is called after
every c2s block (so a notification the reference did not send shows up at once, before a
later NDEL/DEL could drop it) and before comparing a block that holds an NMSG. Events only
ever queue behind other traffic of the same connection, so per-connection order is what is
compared.

Sessions: every recorded connection also runs through a sans-IO ``ServerSession`` (with
smpfast's own session key and the recorded server's key hash and chain). Its server hello is
compared with the recorded one (version range, session id, a signed key from v7), the
recorded client hello must establish the recorded version and block encryption (or, for a
hello the reference refused, close the session, as the recorded ``connection_closed``
shows). On an encrypted connection the replay plays the client's block chains (its
recorded transport key against smpfast's session key): rebuilt blocks are encrypted before
the session decrypts them for the broker, smpfast's answers are packed and encrypted by the
session and decrypted before comparison (so the chains must stay in step), and a recorded
``raw`` block goes in unencrypted, as the reference received it.

Any difference raises ``ReplayMismatch`` naming the block seq and step. ``tolerate``: s2c
blocks (by seq) whose mismatch is recorded in ``mismatches`` instead (consuming smpfast's
next block, if any), for the steps of a feature smpfast does not have yet.
"""

from __future__ import annotations

import calendar
import hashlib
import os
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, NoReturn

from smpfast import _core as core
from smpfast.crypto import auth as cauth
from smpfast.crypto import message as cmsg
from smpfast.crypto.blockcrypt import BlockDecryptor, BlockEncryptor, client_block_ciphers
from smpfast.crypto.keys import Alg, PrivateKey, ed448_verify, generate_private_key, x25519_dh
from smpfast.protocol import commands as C
from smpfast.protocol import versions as V
from smpfast.protocol.errors import ParseError, UnknownTag
from smpfast.protocol.handshake import ClientHandshake, ServerHandshake
from smpfast.protocol.session import BlockReceived, Established, HandshakeFailed, ServerSession, State
from smpfast.server.broker import Broker, BrokerConfig, Peer, encode_answers
from smpfast.testing.broker import BrokerHarness
from smpfast.store.memory import MemoryStore
from transcripts import load, plaintext, raw_transmissions


# the top of the range the reference that recorded the transcripts offered (6.5.5)
RECORDED_MAX_VERSION = V.CLIENT_NOTICES


class ReplayMismatch(AssertionError):
    """smpfast answered differently from the reference (or the replay could not proceed)."""


@dataclass
class Conn:
    name: str
    version: int
    session_id: bytes
    client: Peer
    server_session_key: bytes  # public half of the Client's session_private (X25519 auth)
    session: ServerSession | None = None
    recorded_session_key: bytes | None = None  # the reference's X25519 session key (raw)
    client_private: bytes | None = None  # the recorded client's transport DH key (raw)
    encryptor: BlockEncryptor | None = None  # the client's chains, once established
    decryptor: BlockDecryptor | None = None
    produced: deque = field(default_factory=deque)  # blocks: (transmissions, padded size)
    requests: dict[bytes, C.Command] = field(default_factory=dict)  # recorded corrId -> command


@dataclass
class Sent:
    """One transmission smpfast produced, split."""

    corr_id: bytes
    entity_id: bytes
    command: bytes


def _describe(corr: bytes, entity: bytes, command: bytes) -> str:
    tag = command.split(b" ", 1)[0].decode("ascii", "replace")
    if tag == "ERR":
        tag = command.decode("ascii", "replace")
    return f"[corr {corr.hex()[:12] or '-'} ent {entity.hex()[:12] or '-'} {tag[:60]}]"


class Replay:
    """Replay one transcript. ``skip_conns``: connections not replayed (see the tests).
    ``hooks``: seq -> callable(replay) run just before that recorded block (to fill in
    elided parts with ``send``/``take``). ``transcript`` replaces the file's content
    (tests of the replay itself). ``relay_server``: the recorded server that PRXY reaches
    (the v18-proxy transcript's B): the broker then also plays the proxy role, its relay
    links in memory (``replay_proxy.MemoryRelays``); PFWDs are re-encrypted for smpfast's
    relay session and PKEY/PRES compared through their bindings and decryptions."""

    def __init__(
        self,
        name: str,
        *,
        skip_conns: tuple[str, ...] = (),
        hooks: dict[int, Callable[["Replay"], None]] | None = None,
        config: BrokerConfig | None = None,
        transcript: dict | None = None,
        tolerate: dict[int, str] | None = None,
        relay_server: str | None = None,
    ) -> None:
        self.name = name
        self.t = load(name) if transcript is None else transcript
        self.skip_conns = set(skip_conns)
        self.hooks = hooks or {}
        self.tolerate = dict(tolerate or {})
        self.mismatches: dict[int, str] = {}
        self.base_time = calendar.timegm(time.strptime(self.t["recorded_utc"], "%Y-%m-%dT%H:%M:%SZ"))
        self.now = float(self.base_time)
        self.broker = Broker(MemoryStore(), config or BrokerConfig(), clock=lambda: self.now)
        self.harness = BrokerHarness(self.broker)
        self.relays = None
        if relay_server is not None:
            self._play_proxy(relay_server)
        # PFWD corrId -> (recorded cmd box key, smpfast cmd box key, recorded relay, smpfast relay)
        self.proxied: dict[bytes, tuple] = {}
        self.where = "setup"
        # recorded -> smpfast values of server-chosen fields, and the reverse
        self.subst: dict[bytes, bytes] = {}
        self.inverse: dict[bytes, bytes] = {}
        # recorded rcv id / notifier id -> (recorded box key, smpfast box key)
        self.msg_keys: dict[bytes, tuple[bytes, bytes]] = {}
        self.ntf_keys: dict[bytes, tuple[bytes, bytes]] = {}
        self.msg_ts: dict[bytes, int] = {}  # smpfast msg id -> timestamp seen in its MSG
        self.auth_keys: list[PrivateKey] = []
        self.keys: dict[str, PrivateKey] = {}  # label -> private key
        self.dh_keys: dict[bytes, PrivateKey] = {}  # SPKI DER -> private key
        for k in self.t["keys"]:
            alg = Alg(k["alg"])
            priv = PrivateKey(alg, bytes.fromhex(k["priv_raw"]))
            if bytes.fromhex(k["pub_der"]) != priv.public.der:
                raise ReplayMismatch(f"{name}: recorded key {k['label']} does not match its public key")
            self.keys[k["label"]] = priv
            if k["purpose"] == "auth":
                self.auth_keys.append(priv)
            elif alg is Alg.X25519:
                self.dh_keys[priv.public.der] = priv
        self.conns: dict[str, Conn] = {}
        for cname, c in self.t["connections"].items():
            if cname in self.skip_conns:
                continue
            self.conns[cname] = self._connection(cname, c)
        self.resigned = 0
        self._last_c2s = "the start"
        self.kept_auth: list[str] = []  # steps whose authorization no recorded key made

    def _connection(self, cname: str, c: dict) -> Conn:
        version = c["version"]
        session_id = bytes.fromhex(c["session_id"])
        server = self.t["servers"][c["server"]]
        chain = [bytes.fromhex(d) for d in server["cert_chain_der"]]
        # The server's own key hash (the fingerprint of its CA certificate), whatever the
        # client expected; the reference that recorded the transcripts (simplexmq 6.5.5)
        # offers 6..18 with ALPN and 6..6 without.
        key_hash = hashlib.sha256(chain[-1]).digest()
        vrange = V.VersionRange(V.MIN_VERSION, RECORDED_MAX_VERSION if c.get("alpn_negotiated") else V.MIN_VERSION)
        session_private = os.urandom(32)
        session = ServerSession(session_id, key_hash, chain, generate_private_key(Alg.ED25519),
                                vrange, session_private)
        conn = Conn(cname, version, session_id, None,  # type: ignore[arg-type]
                    PrivateKey(Alg.X25519, session_private).public.raw, session)
        if c.get("server_session_key_x25519"):
            conn.recorded_session_key = bytes.fromhex(c["server_session_key_x25519"])
        label = c.get("client_transport_dh")
        if label:
            conn.client_private = self.keys[label].raw
        conn.client = self.harness.connect(version, session_id, session_private if version >= V.AUTH_CMDS else None)
        return conn

    def add_connection(self, name: str, version: int, session_id: bytes,
                       recorded_session_key: bytes | None = None) -> Conn:
        """A connection the transcript does not record (hooks use it with ``send``/``take``
        and ``replay_transmission``): an established, unencrypted session."""
        session_private = os.urandom(32)
        conn = Conn(name, version, session_id,
                    self.harness.connect(version, session_id, session_private if version >= V.AUTH_CMDS else None),
                    PrivateKey(Alg.X25519, session_private).public.raw,
                    recorded_session_key=recorded_session_key)
        self.conns[name] = conn
        return conn

    def _play_proxy(self, relay_server: str) -> None:
        import trio

        from replay_proxy import MemoryRelays
        from smpfast.proxy.service import ProxyService

        srv = self.t["servers"][relay_server]
        self.relays = MemoryRelays(self.harness, str(srv["port"]), bytes.fromhex(srv["key_hash"]))
        service = ProxyService(self.relays, self.broker.count, server_max=RECORDED_MAX_VERSION)  # type: ignore[arg-type]
        self.harness.proxy = lambda r: trio.run(service.answer, r.corr_id, r.entity_id, r.command)

    def _rebuild_pfwd(self, conn: Conn, corr: bytes, pfwd: C.Pfwd) -> bytes:
        """A recorded PFWD made again for smpfast's relay session: the recorded inner
        transmission with its ids substituted, re-signed for the new session and sealed
        with the recorded per-command key against smpfast's relay session key (a recorded
        corruption is applied again, byte for byte)."""
        from smpfast.crypto import proxy as cp
        from smpfast.protocol.proxy import ProxiedRelay, proxied_command

        p = next((p for p in self.t["proxied_commands"] if p["nonce_corr_id"] == corr.hex()), None)
        link = None if self.relays is None else self.relays.link
        if p is None or link is None:
            self.fail("a PFWD the transcript does not describe, or before any PKEY")
        rec_sid = bytes.fromhex(p["relay_session_id"])
        rec_key = cmsg.precompute(bytes.fromhex(p["cmd_secret"]))
        inner = bytes.fromhex(p["inner_transmission_hex"])
        [(_s, auth, _g, icorr, ient, icmd, tfa)] = core.split_block(
            core.encode_batch([inner], cp.PROXIED_PADDED), rec_sid, True, p["version"] >= V.SERVICE_CERTS)
        signer = None
        if auth:
            signer = next((k for k in self.auth_keys if k.alg is Alg.ED25519 and k.sign(tfa) == auth), None)
            if signer is None:
                self.fail("no recorded key signed the proxied transmission")
        ours = ProxiedRelay(link.session_id, p["version"], link.client.server_session_key)
        cmd_private = self.dh_keys[pfwd.dh_key].raw
        sent = proxied_command(ours, self.mapped(ient), icmd, signer, cmd_private=cmd_private, nonce=icorr)
        enc = sent.pfwd.enc_transmission
        if p["corrupted"]:
            correct = cp.seal_command(rec_key, corr, core.unpad(core.encode_batch([inner], cp.PROXIED_PADDED)))
            enc = bytes(a ^ b ^ c for a, b, c in zip(enc, correct, pfwd.enc_transmission))
        elif cp.seal_command(rec_key, corr, core.unpad(core.encode_batch([inner], cp.PROXIED_PADDED))) != pfwd.enc_transmission:
            self.fail("the recorded PFWD is not its recorded inner transmission sealed with its recorded key")
        recorded_relay = ProxiedRelay(rec_sid, p["version"], bytes.fromhex(self.t["proxied_relay"]["relay_session_key_x25519"]))
        self.proxied[corr] = (rec_key, sent.cmd_key, recorded_relay, ours)
        return C.Pfwd(pfwd.version, pfwd.dh_key, enc).encode(conn.version)

    def _compare_pres(self, here: str, corr: bytes, rec: C.Pres, ours: C.Pres) -> None:
        from smpfast.protocol.proxy import ProxiedCommand, proxied_response

        keys = self.proxied.get(corr)
        if keys is None:
            self.fail(f"{here}: PRES to a PFWD the replay did not send")
        rec_key, our_key, rec_relay, our_relay = keys
        r = proxied_response(rec_relay, ProxiedCommand(None, corr, rec_key), rec)  # type: ignore[arg-type]
        try:
            o = proxied_response(our_relay, ProxiedCommand(None, corr, our_key), ours)  # type: ignore[arg-type]
        except Exception as e:
            self.fail(f"{here}: smpfast's PRES does not open with the client's key ({e!r})")
        v = our_relay.version
        if o.error is not None or o.corr_id != r.corr_id or o.entity_id != self.mapped(r.entity_id) \
                or o.response.encode(v) != r.response.encode(v):
            self.fail(f"{here}: the relay answered {o} through smpfast, {r} through the reference")

    # ------------------------------------------------------------------ plumbing

    def fail(self, msg: str) -> NoReturn:
        raise ReplayMismatch(f"{self.name} {self.where}: {msg}")

    def collect(self) -> None:
        """Move every connection's outbox into its list of produced blocks: packed (and
        encrypted) by its session, then decrypted with the client's chain."""
        for conn in self.conns.values():
            outbox = self.harness.take(conn.client)
            if not outbox:
                continue
            batches = [encode_answers(conn.client, answers) for _, answers in outbox]
            if conn.session is None:
                for batch in batches:
                    pos = 0
                    for n in core.group_transmissions([len(t) for t in batch], V.BATCH_BUDGET, V.MAX_BATCH):
                        conn.produced.append((batch[pos : pos + n], V.BLOCK_SIZE))
                        pos += n
                continue
            conn.session.send_batches(batches)
            data = conn.session.data_to_send()
            for i in range(0, len(data), V.BLOCK_SIZE):
                block = data[i : i + V.BLOCK_SIZE]
                if conn.decryptor is not None:
                    try:
                        block = conn.decryptor.decrypt(block)
                    except Exception as e:
                        self.fail(f"smpfast's block to {conn.name} does not decrypt with the client's chain ({e!r})")
                conn.produced.append((raw_transmissions(block), len(block)))

    def split_sent(self, conn: Conn, transmissions: list[bytes]) -> list[Sent]:
        block = core.encode_batch(transmissions, V.BLOCK_SIZE)
        out = []
        for status, auth, sig, corr, ent, cmd, _tfa in core.split_block(
            block, conn.session_id, conn.client.implied_session, False
        ):
            if status != core.T_OK or auth or sig is not None:
                self.fail(f"smpfast sent a malformed transmission to {conn.name} (status {status}, auth {auth.hex()})")
            out.append(Sent(corr, ent, cmd))
        return out

    def take(self, conn_name: str) -> list[list[Sent]]:
        """Everything smpfast produced for a connection so far, as blocks."""
        self.collect()
        conn = self.conns[conn_name]
        blocks = [self.split_sent(conn, b) for b, _size in conn.produced]
        conn.produced.clear()
        return blocks

    def bind(self, recorded: bytes, ours: bytes, what: str) -> None:
        prev = self.subst.get(recorded)
        if prev is not None:
            if prev != ours:
                self.fail(f"{what}: recorded {recorded.hex()} was bound to {prev.hex()}, now smpfast says {ours.hex()}")
            return
        if ours in self.inverse:
            self.fail(f"{what}: smpfast value {ours.hex()} repeats (already stands for {self.inverse[ours].hex()})")
        if len(ours) != len(recorded):
            self.fail(f"{what}: smpfast value has {len(ours)} bytes, the reference's {len(recorded)}")
        self.subst[recorded] = ours
        self.inverse[ours] = recorded

    def mapped(self, recorded: bytes) -> bytes:
        return self.subst.get(recorded, recorded)

    # ------------------------------------------------------------------ client side

    def _find_signer(self, conn: Conn, auth: bytes, tfa: bytes, corr: bytes) -> PrivateKey | None:
        recorded_session_key = conn.recorded_session_key
        for key in self.auth_keys:
            if len(auth) == 64 and key.alg is Alg.ED25519:
                if core.ed25519_verify(key.public.raw, auth, tfa):
                    return key
            elif len(auth) == 114 and key.alg is Alg.ED448:
                if ed448_verify(key.public.raw, auth, tfa):
                    return key
            elif len(auth) == 80 and key.alg is Alg.X25519 and recorded_session_key:
                if cauth.authenticator(key, recorded_session_key, corr, tfa) == auth:
                    return key
        return None

    def authorize(self, conn: Conn, key: PrivateKey, corr: bytes, entity: bytes, command: bytes) -> bytes:
        tfa = cauth.t_for_auth(conn.session_id, corr, entity, command)
        return cauth.authorize(key, tfa, corr, conn.server_session_key if conn.version >= V.AUTH_CMDS else None)

    def encode(self, conn: Conn, auth: bytes, corr: bytes, entity: bytes, command: bytes) -> bytes:
        c = conn.client
        return core.encode_transmission(auth, corr, entity, command, conn.session_id, c.implied_session, c.service_auth)

    def send(self, conn_name: str, transmissions: list[tuple[bytes, bytes, bytes, PrivateKey | None]]) -> None:
        """Send one block of ``(corr, entity, command, signing key)`` made up by a test
        (not from the transcript), e.g. to fill elided parts."""
        conn = self.conns[conn_name]
        ts = []
        for corr, entity, command, key in transmissions:
            auth = b"" if key is None else self.authorize(conn, key, corr, entity, command)
            ts.append(self.encode(conn, auth, corr, entity, command))
        self.feed(conn, core.encode_batch(ts, V.ENCRYPTED_BLOCK_PAD if conn.encryptor else V.BLOCK_SIZE))
        self.collect()

    def replay_transmission(self, conn_name: str, transmission: bytes, label: str) -> None:
        """One recorded transmission (without its length), substituted and re-signed as
        the recorded blocks are, sent alone in a block on ``conn_name``."""
        conn = self.conns[conn_name]
        recorded = core.encode_batch([transmission], V.BLOCK_SIZE)
        block = {"seq": label, "step": label, "pad_to": V.BLOCK_SIZE}
        self.feed(conn, self._rebuild(conn, block, recorded))
        self.collect()

    def feed(self, conn: Conn, block: bytes, encrypt: bool = True) -> None:
        """A padded plaintext block from the client: encrypted with the client's chain
        (unless ``encrypt`` is False: a block sent as it is), through the session, to the
        broker."""
        if conn.session is not None:
            if conn.session.state is State.CLOSED:
                return  # the server hung up: nobody reads this block
            if conn.encryptor is not None:
                if encrypt:
                    block = conn.encryptor.encrypt(block)
                else:
                    # sent in the clear, but the client's chain steps on as the server's does
                    # (it consumes a step trying to decrypt), so both stay in step
                    conn.encryptor.encrypt(b"#" * V.ENCRYPTED_BLOCK_PAD)
            events = conn.session.receive_block(block)
            if len(events) != 1 or not isinstance(events[0], BlockReceived):
                self.fail(f"the session of {conn.name} gave {events} for a block")
            plaintext = events[0].plaintext
            if encrypt and conn.encryptor is not None and not plaintext:
                self.fail("the session did not decrypt a block the client's chain encrypted")
            block = plaintext
        try:
            self.harness.process(conn.client, block)
        except Exception as e:
            self.fail(f"broker.process_block raised {e!r}")

    def _rebuild(self, conn: Conn, block: dict, recorded: bytes) -> bytes:
        """The recorded block with bound values substituted and authorizations redone.
        Unchanged transmissions keep their recorded bytes exactly (checked)."""
        try:
            parts = core.split_block(recorded, conn.session_id, conn.client.implied_session, conn.client.service_auth)
        except core.FramingError:
            return recorded  # a deliberately malformed block: as recorded
        raws = raw_transmissions(recorded)
        out = []
        for raw, (status, auth, sig, corr, entity, command, tfa) in zip(raws, parts):
            if status != core.T_OK:
                out.append(raw)  # garbage, bad authorization length, wrong session: as recorded
                continue
            try:
                cmd = C.parse_command(command, conn.version)
            except (ParseError, UnknownTag):
                cmd = None
            if cmd is not None:
                conn.requests[corr] = cmd
            new_entity = self.mapped(entity)
            new_command = command
            if isinstance(cmd, C.Ack) and cmd.msg_id in self.subst:
                if C.Ack(cmd.msg_id).encode(conn.version) != command:
                    self.fail(f"ACK does not re-encode: {command.hex()}")
                new_command = C.Ack(self.subst[cmd.msg_id]).encode(conn.version)
            elif isinstance(cmd, C.Pfwd) and self.relays is not None:
                new_command = self._rebuild_pfwd(conn, corr, cmd)
            elif isinstance(cmd, C.Lset) and cmd.link_id in self.subst:  # a server-chosen link id
                if cmd.encode(conn.version) != command:
                    self.fail(f"LSET does not re-encode: {command.hex()}")
                new_command = C.Lset(self.subst[cmd.link_id], cmd.data).encode(conn.version)
            new_auth = auth
            if auth:
                signer = self._find_signer(conn, auth, tfa, corr)
                if signer is None:
                    self.kept_auth.append(f"seq {block['seq']} {block.get('step')}")
                else:
                    new_auth = self.authorize(conn, signer, corr, new_entity, new_command)
                    if new_entity == entity and new_command == command and signer.alg is not Alg.X25519:
                        if new_auth != auth:  # EdDSA is deterministic
                            self.fail("re-signing the unchanged transmission gave another signature")
                    self.resigned += 1
            if sig is not None:
                self.fail("service signatures are not replayed")
            rebuilt = self.encode(conn, new_auth, corr, new_entity, new_command)
            if (new_auth, new_entity, new_command) == (auth, entity, command) and rebuilt != raw:
                self.fail("rebuilding an unchanged transmission changed its bytes")
            out.append(rebuilt)
        result = core.encode_batch(out, block["pad_to"])
        if out == raws and result != recorded:
            self.fail("rebuilding an unchanged block changed its bytes")
        return result

    # ------------------------------------------------------------------ comparison

    def _s2c_label(self, block: dict) -> str:
        answers = {t.get("response_to") for t in (block.get("summary") or {}).get("transmissions") or ()}
        answers.discard(None)
        if answers:
            return "answer to " + ", ".join(sorted(answers))
        return f"event after {self._last_c2s}"

    def _compare_block(self, conn: Conn, recorded_block: dict) -> None:
        recorded = plaintext(recorded_block)
        rparts = core.split_block(recorded, conn.session_id, conn.client.implied_session, False)
        rec = [(corr, ent, cmd) for _s, _a, _g, corr, ent, cmd, _t in rparts]
        if not conn.produced and any(cmd.startswith(b"NMSG ") for _, _, cmd in rec):
            self.harness.apply(None, self.broker.deliver_notifications())
            self.collect()
        expected = " ".join(_describe(*r) for r in rec)
        if not conn.produced:
            self.fail(f"the reference sent {len(rec)} transmission(s) {expected}; smpfast sent nothing")
        produced, size = conn.produced.popleft()
        if size != recorded_block["pad_to"]:
            self.fail(f"smpfast's block is padded to {size} bytes, the reference's to {recorded_block['pad_to']}")
        ours = self.split_sent(conn, produced)
        got = " ".join(_describe(s.corr_id, s.entity_id, s.command) for s in ours)
        if len(ours) != len(rec):
            self.fail(f"the reference sent a block of {len(rec)}: {expected}; smpfast a block of {len(ours)}: {got}")
        for i, ((corr, ent, cmd), s) in enumerate(zip(rec, ours)):
            here = f"transmission {i + 1}/{len(rec)}"
            if s.corr_id != corr:
                self.fail(f"{here}: corrId {s.corr_id.hex()}, the reference {corr.hex()} (expected {expected}, got {got})")
            self._compare_command(conn, here, corr, ent, cmd, s.command)
            if s.entity_id != self.mapped(ent):
                self.fail(f"{here}: entity id {s.entity_id.hex()}, expected {self.mapped(ent).hex()} "
                          f"(reference {ent.hex()}) in {_describe(corr, ent, cmd)}")

    def _compare_command(
        self, conn: Conn, here: str, corr: bytes, entity: bytes, rec_bytes: bytes, our_bytes: bytes
    ) -> None:
        """Compare one response; ``corr``/``entity`` are the recorded transmission's."""
        v = conn.version
        try:
            rec = C.parse_response(rec_bytes, v)
        except (ParseError, UnknownTag) as e:
            self.fail(f"{here}: the recorded response does not parse ({e}): {rec_bytes[:40]!r}")
        try:
            ours = C.parse_response(our_bytes, v)
        except (ParseError, UnknownTag) as e:
            self.fail(f"{here}: smpfast's response does not parse ({e}): {our_bytes[:60]!r}")
        if ours.encode(v) != our_bytes:
            self.fail(f"{here}: smpfast's response does not re-encode: {our_bytes[:60]!r}")
        if type(ours) is not type(rec):
            self.fail(f"{here}: smpfast answered {our_bytes[:60]!r}, the reference {rec_bytes[:60]!r}")
        if isinstance(rec, C.Ids):
            self.bind(rec.rcv_id, ours.rcv_id, "IDS recipient id")
            self.bind(rec.snd_id, ours.snd_id, "IDS sender id")
            self.bind(rec.srv_dh_key, ours.srv_dh_key, "IDS server DH key")
            if rec.link_id is not None and ours.link_id is not None:
                self.bind(rec.link_id, ours.link_id, "IDS link id")
            if rec.ntf_creds is not None and ours.ntf_creds is not None:
                self.bind(rec.ntf_creds.notifier_id, ours.ntf_creds.notifier_id, "IDS notifier id")
                self.bind(rec.ntf_creds.dh_key, ours.ntf_creds.dh_key, "IDS notifier DH key")
            new = conn.requests.get(corr)
            if isinstance(new, C.New) and new.rcv_dh_key in self.dh_keys:
                priv = self.dh_keys[new.rcv_dh_key].raw
                self.msg_keys[rec.rcv_id] = (
                    cmsg.precompute(x25519_dh(priv, rec.srv_dh_key[-32:])),
                    cmsg.precompute(x25519_dh(priv, ours.srv_dh_key[-32:])),
                )
            comparable = C.Ids(rec.rcv_id, rec.snd_id, rec.srv_dh_key, ours.queue_mode,
                               None if ours.link_id is None else rec.link_id, ours.service_id,
                               None if ours.ntf_creds is None else rec.ntf_creds)
        elif isinstance(rec, C.Nid):
            self.bind(rec.notifier_id, ours.notifier_id, "NID notifier id")
            self.bind(rec.srv_ntf_dh_key, ours.srv_ntf_dh_key, "NID server DH key")
            nkey = conn.requests.get(corr)
            if isinstance(nkey, C.Nkey) and nkey.dh_key in self.dh_keys:
                priv = self.dh_keys[nkey.dh_key].raw
                self.ntf_keys[rec.notifier_id] = (
                    cmsg.precompute(x25519_dh(priv, rec.srv_ntf_dh_key[-32:])),
                    cmsg.precompute(x25519_dh(priv, ours.srv_ntf_dh_key[-32:])),
                )
            comparable = C.Nid(rec.notifier_id, rec.srv_ntf_dh_key)
        elif isinstance(rec, C.Msg):
            self._compare_msg(here, entity, rec, ours)
            comparable = C.Msg(rec.msg_id, rec.body)
        elif isinstance(rec, C.Nmsg):
            self._compare_nmsg(here, entity, rec, ours)
            comparable = C.Nmsg(rec.nonce, rec.enc_meta)
        elif isinstance(rec, C.Pkey):
            # the relay session and its chain are smpfast's; the range is the reference's
            self.bind(rec.session_id, ours.session_id, "PKEY relay session id")
            if len(ours.cert_key.chain) != len(rec.cert_key.chain):
                self.fail(f"{here}: PKEY with {len(ours.cert_key.chain)} certificates, the reference's {len(rec.cert_key.chain)}")
            comparable = C.Pkey(rec.session_id, ours.vrange, rec.cert_key)
        elif isinstance(rec, C.Pres):
            self._compare_pres(here, corr, rec, ours)
            comparable = rec
        else:
            comparable = ours
        if comparable.encode(v) != rec_bytes:
            self.fail(f"{here}: smpfast answered {our_bytes[:80]!r}, the reference {rec_bytes[:80]!r}")

    def _compare_msg(self, here: str, rid: bytes, rec: C.Msg, ours: C.Msg) -> None:
        keys = self.msg_keys.get(rid)
        if keys is None:
            self.fail(f"{here}: MSG for queue {rid.hex()} whose recipient DH key is unknown")
        if len(ours.body) != len(rec.body):
            self.fail(f"{here}: MSG body of {len(ours.body)} bytes, the reference's {len(rec.body)}")
        self.bind(rec.msg_id, ours.msg_id, "MSG msg id")
        r = cmsg.decrypt_msg(keys[0], rec.msg_id, rec.body)
        try:
            o = cmsg.decrypt_msg(keys[1], ours.msg_id, ours.body)
        except Exception as e:  # CryptoError/FramingError: say which
            self.fail(f"{here}: smpfast's MSG body does not decrypt with the recipient key ({e!r})")
        if (o.quota, o.notification, o.body) != (r.quota, r.notification, r.body):
            self.fail(f"{here}: MSG decrypts to quota={o.quota} ntf={o.notification} body={o.body[:40]!r}, "
                      f"the reference's to quota={r.quota} ntf={r.notification} body={r.body[:40]!r}")
        if not self.base_time <= o.ts <= self.now:
            self.fail(f"{here}: MSG timestamp {o.ts} outside the replay's clock {self.base_time}..{self.now}")
        prev = self.msg_ts.setdefault(ours.msg_id, o.ts)
        if prev != o.ts:
            self.fail(f"{here}: MSG {ours.msg_id.hex()} timestamp {o.ts}, earlier {prev}")

    def _compare_nmsg(self, here: str, nid: bytes, rec: C.Nmsg, ours: C.Nmsg) -> None:
        keys = self.ntf_keys.get(nid)
        if keys is None:
            self.fail(f"{here}: NMSG for notifier {nid.hex()} whose DH key is unknown")
        if len(ours.enc_meta) != len(rec.enc_meta):
            self.fail(f"{here}: NMSG metadata of {len(ours.enc_meta)} bytes, the reference's {len(rec.enc_meta)}")
        r = cmsg.decrypt_ntf_meta(keys[0], rec.nonce, rec.enc_meta)
        try:
            o = cmsg.decrypt_ntf_meta(keys[1], ours.nonce, ours.enc_meta)
        except Exception as e:
            self.fail(f"{here}: smpfast's NMSG does not decrypt with the notifier key ({e!r})")
        if r.msg_id not in self.subst:
            self.fail(f"{here}: NMSG for msg {r.msg_id.hex()} before its MSG was seen")
        if o.msg_id != self.subst[r.msg_id]:
            self.fail(f"{here}: NMSG names msg {o.msg_id.hex()}, expected {self.subst[r.msg_id].hex()}")
        if o.ts != self.msg_ts.get(o.msg_id):
            self.fail(f"{here}: NMSG timestamp {o.ts}, the message's {self.msg_ts.get(o.msg_id)}")

    # ------------------------------------------------------------------ driver

    def _server_hello(self, conn: Conn, block: dict) -> None:
        recorded = ServerHandshake.parse(plaintext(block))
        conn.session.start()  # type: ignore[union-attr]
        ours = ServerHandshake.parse(conn.session.data_to_send())  # type: ignore[union-attr]
        if (ours.vrange, ours.session_id) != (recorded.vrange, recorded.session_id):
            self.fail(f"smpfast's hello offers {ours.vrange} for session {ours.session_id.hex()}, the reference "
                      f"{recorded.vrange} for {recorded.session_id.hex()}")
        if (ours.cert_key is None) != (recorded.cert_key is None):
            self.fail(f"smpfast's hello {'lacks' if ours.cert_key is None else 'has'} a signed session key")

    def _client_hello(self, conn: Conn, block: dict) -> None:
        data = plaintext(block)
        hello = ClientHandshake.parse(data)
        [event] = conn.session.receive_block(data)  # type: ignore[union-attr]
        rec = self.t["connections"][conn.name]
        if isinstance(event, HandshakeFailed):
            following = [b for b in self.t["blocks"]
                         if b["conn"] == conn.name and b["seq"] > block["seq"] and b["dir"] == "s2c"]
            if not following or following[0]["kind"] != "connection_closed":
                self.fail(f"smpfast's session refused the client hello ({event.reason}: {event.detail})")
            return
        assert isinstance(event, Established)
        if (event.version, event.block_encryption) != (rec["version"], rec["block_encryption"]):
            self.fail(f"the session established v{event.version} (block encryption {event.block_encryption}), "
                      f"the reference v{rec['version']} ({rec['block_encryption']})")
        if event.block_encryption:
            if conn.client_private is None or hello.client_key is None:
                self.fail("block encryption without the client's transport key")
            secret = x25519_dh(conn.client_private, conn.server_session_key)
            conn.encryptor, conn.decryptor = client_block_ciphers(conn.session_id, secret)

    def run(self) -> None:
        for block in self.t["blocks"]:
            seq = block["seq"]
            hook = self.hooks.get(seq)
            if hook is not None:
                self.where = f"hook before seq {seq}"
                hook(self)
                self.collect()
            if block["conn"] in self.skip_conns:
                continue
            conn = self.conns[block["conn"]]
            self.now = self.base_time + block["t_ms"] / 1000
            step = block.get("step") or self._s2c_label(block)
            self.where = f"seq {seq} ({conn.name} {block['dir']} {block['kind']}, step {step!r})"
            kind = block["kind"]
            if kind == "server_handshake":
                self._server_hello(conn, block)
                continue
            if kind == "client_handshake":
                self._client_hello(conn, block)
                continue
            if kind == "connection_closed":
                if conn.session is None or conn.session.state is not State.CLOSED:
                    self.fail("the reference closed the connection; smpfast's session is open")
                continue
            if block["dir"] == "c2s":
                self._last_c2s = f"seq {seq} {block.get('step')!r}"
                recorded = plaintext(block)
                data = recorded if kind == "raw" else self._rebuild(conn, block, recorded)
                self.feed(conn, data, encrypt=kind != "raw")
                self.harness.apply(None, self.broker.deliver_notifications())
                self.collect()
            else:
                self.collect()
                if seq in self.tolerate:
                    try:
                        self._compare_block(conn, block)
                    except ReplayMismatch as e:
                        self.mismatches[seq] = str(e)
                        if conn.produced:
                            conn.produced.popleft()
                else:
                    self._compare_block(conn, block)
        self.where = "end of transcript"
        self.harness.apply(None, self.broker.deliver_notifications())
        self.collect()
        for conn in self.conns.values():
            if conn.produced:
                extra = [" ".join(_describe(s.corr_id, s.entity_id, s.command) for s in self.split_sent(conn, b))
                         for b, _size in conn.produced]
                self.fail(f"smpfast sent {conn.name} {len(extra)} block(s) the reference did not: {extra}")
