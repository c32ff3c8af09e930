"""Each versioned feature end to end, at the version that introduces it and at the version
below: the in-process server over real TLS with its maximum raised to 18 (it announces 6..7
by default until the proxy role exists), clients of the project's library asking for the
version under test. BLOCKED (v12) and its notice (v18) are in test_control_port.py, since
only the control port blocks a queue.
"""

from __future__ import annotations

import os

import pytest

import smpfast.client as sc
import smpfast.client.base as client_base
from smpfast import _core as core
from smpfast.crypto.keys import Alg, generate_private_key
from smpfast.protocol import commands as C
from smpfast.protocol import errors as E
from smpfast.protocol import versions as V
from smpfast.protocol.address import QueueMode

MAX = 18


def short(b: bytes) -> bytes:
    return bytes((len(b),)) + b


class RawResponses:
    """The command bytes of every transmission the client library decodes (to check wire
    layouts without trusting the codec that parses them)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.seen: list[bytes] = []
        real = client_base.decode_client_transmissions

        def recording(block: bytes, version: int, session_id: bytes):
            for part in core.split_block(block, session_id, version >= V.AUTH_CMDS, version >= V.SERVICE_CERTS):
                self.seen.append(part[5])
            return real(block, version, session_id)

        monkeypatch.setattr(client_base, "decode_client_transmissions", recording)

    def last(self, prefix: bytes) -> bytes:
        return next(cmd for cmd in reversed(self.seen) if cmd.startswith(prefix))


# ---------------------------------------------------------------------------- DELD (v10)


@pytest.mark.parametrize("version, event", [(9, C.END), (10, C.DELD), (MAX, C.DELD)])
def test_deleted_queue_event(smp_server, trio_run, version, event):
    async def main():
        async with smp_server(max_version=MAX) as srv:
            async with sc.connect(srv.address, max_version=version) as sub, \
                    sc.connect(srv.address, max_version=version) as other:
                assert sub.version == version
                q = await sub.create_queue()
                await other.delete(q)
                assert await sub.next_event(5) == (q.rcv_id, event)

    trio_run(main)


# ---------------------------------------------------------------------------- SOK (v16)


@pytest.mark.parametrize("version", [15, 16, MAX])
def test_sub_and_nsub_answer(smp_server, trio_run, monkeypatch, version):
    """SUB and NSUB answer SOK (no service id) from v16, OK below."""
    raw = RawResponses(monkeypatch)

    async def main():
        async with smp_server(max_version=MAX) as srv:
            async with sc.connect(srv.address, max_version=version) as c:
                q = await c.create_queue(subscribe=False)
                creds = await c.enable_notifications(q)
                expected = b"SOK 0" if version >= V.SERVICE_CERTS else b"OK"
                await c.request(q.rcv_id, C.SUB, q.rcv_auth_key)
                assert raw.seen[-1] == expected
                await c.request(creds.notifier_id, C.Nsub(), creds.notifier_key)
                assert raw.seen[-1] == expected

    trio_run(main)


# ---------------------------------------------------------------------------- SEND body limit (v8, v11)

BODY_LIMITS = [(6, 16088), (7, 16088), (8, 16064), (10, 16064), (11, 16048), (MAX, 16048)]


@pytest.mark.parametrize("version, limit", BODY_LIMITS, ids=[f"v{v}" for v, _ in BODY_LIMITS])
def test_max_send_body(smp_server, trio_run, version, limit):
    async def main():
        async with smp_server(max_version=MAX) as srv:
            kwargs = {"alpn": None} if version == 6 else {"max_version": version}  # v6: no ALPN
            async with sc.connect(srv.address, **kwargs) as rcv, sc.connect(srv.address, **kwargs) as snd:
                assert rcv.version == version
                q = await rcv.create_queue()
                body = os.urandom(limit)
                await snd.send(q.snd_id, body)
                _, msg = await rcv.next_event(5)
                assert sc.decrypt_msg(q, msg).body == body
                assert await snd.request(q.snd_id, C.Send(C.MsgFlags(False), body + b"x")) == C.Err(E.LARGE_MSG)

    trio_run(main)


def test_max_send_body_v11_without_block_encryption(smp_server, trio_run):
    """The v11 limit is the version's, not the encryption's."""

    async def main():
        async with smp_server(max_version=MAX) as srv:
            async with sc.connect(srv.address, max_version=11, block_encryption=False) as c:
                assert c.version == 11 and not c.block_encryption
                q = await c.create_queue(subscribe=False)
                await c.send(q.snd_id, b"y" * 16048)
                assert await c.request(q.snd_id, C.Send(C.MsgFlags(False), b"y" * 16049)) == C.Err(E.LARGE_MSG)

    trio_run(main)


# ---------------------------------------------------------------------------- block encryption (v11)


@pytest.mark.parametrize("version, encrypted", [(10, False), (11, True), (MAX, True)])
def test_block_encryption_from_v11(smp_server, trio_run, version, encrypted):
    async def main():
        async with smp_server(max_version=MAX) as srv:
            async with sc.connect(srv.address, max_version=version) as c:
                assert (c.version, c.block_encryption) == (version, encrypted)
                await c.ping()
                q = await c.create_queue()
                await c.send(q.snd_id, b"hello")
                _, msg = await c.next_event(5)
                assert sc.decrypt_msg(q, msg).body == b"hello"

    trio_run(main)


# ---------------------------------------------------------------------------- NEW / IDS layouts (v9, v15, v16, v17)


def _new(version: int, rcv_der: bytes, dh_der: bytes, messaging: bool, ntf: tuple[bytes, bytes] | None) -> bytes:
    """NEW written by hand, field by field, as each version lays it out."""
    out = b"NEW " + short(rcv_der) + short(dh_der)
    if version < V.SND_AUTH_KEY:
        return out + b"S"
    out += b"0" + b"S"  # no basic auth, subscribe
    if version < V.SHORT_LINKS:
        return out + (b"T" if messaging else b"F")  # sndSecure
    out += b"1M0" if messaging else b"0"  # Maybe QueueReqData: messaging, no link data
    if version >= V.NEW_NTF_CREDS:
        out += b"0" if ntf is None else b"1" + short(ntf[0]) + short(ntf[1])
    return out


def _ids_tail(ids: bytes) -> tuple[bytes, bytes, bytes, bytes]:
    """rcvId, sndId, server DH key and everything after them."""
    assert ids.startswith(b"IDS ")
    pos, fields = 4, []
    for _ in range(3):
        n = ids[pos]
        fields.append(ids[pos + 1 : pos + 1 + n])
        pos += 1 + n
    return fields[0], fields[1], fields[2], ids[pos:]


LAYOUTS = [
    # version, messaging, ntf creds, the IDS bytes after the DH key (N: the notifier part)
    (8, False, False, b""),
    (9, True, False, b"T"),
    (9, False, False, b"F"),
    (14, True, False, b"T"),
    (15, True, False, b"1M0"),  # Maybe queue mode, Maybe link id
    (15, False, False, b"00"),
    (16, True, False, b"1M00"),  # + Maybe service id
    (17, True, False, b"1M000"),  # + Maybe notifier credentials
    (17, True, True, b"1M001N"),
    (MAX, True, True, b"1M001N"),
]


@pytest.mark.parametrize("version, messaging, ntf, tail", LAYOUTS,
                         ids=[f"v{v}-{'M' if m else 'C'}{'-ntf' if n else ''}" for v, m, n, _ in LAYOUTS])
def test_new_ids_layout(smp_server, trio_run, monkeypatch, version, messaging, ntf, tail):
    raw = RawResponses(monkeypatch)

    async def main():
        async with smp_server(max_version=MAX) as srv:
            async with sc.connect(srv.address, max_version=version) as c:
                assert c.version == version
                rcv = generate_private_key(Alg.ED25519)
                dh = generate_private_key(Alg.X25519)
                ntf_keys = (generate_private_key(Alg.ED25519), generate_private_key(Alg.X25519)) if ntf else None
                new = _new(version, rcv.public.der, dh.public.der, messaging,
                           None if ntf_keys is None else (ntf_keys[0].public.der, ntf_keys[1].public.der))
                reply = await c.request(b"", new, rcv)
                assert isinstance(reply, C.Ids), reply
                rid, sid, srv_dh, rest = _ids_tail(raw.last(b"IDS "))
                assert len(rid) == len(sid) == 24 and rid != sid and len(srv_dh) == 44
                if tail.endswith(b"N"):
                    nid_len = rest[len(tail) - 1]
                    nid = rest[len(tail) : len(tail) + nid_len]
                    ntf_dh = rest[len(tail) + nid_len + 1 :]
                    assert (rest[: len(tail) - 1], nid_len, len(ntf_dh), rest[len(tail) + nid_len]) == \
                        (tail[:-1], 24, 44, 44)
                    assert reply.ntf_creds == C.ServerNtfCreds(nid, ntf_dh)
                    # the notifier works: NSUB with the notifier key
                    assert await c.request(nid, C.Nsub(), ntf_keys[0]) == C.Sok(None)
                else:
                    assert rest == tail
                # the queue behaves as the mode says: SKEY only on a messaging queue (v9+)
                if version >= V.SND_AUTH_KEY:
                    key = generate_private_key(Alg.ED25519)
                    expected = C.OK if messaging else C.Err(E.AUTH)
                    assert await c.request(sid, C.Skey(key.public.der), key) == expected

    trio_run(main)


# ---------------------------------------------------------------------------- SKEY (v9), short links (v15)
# As the reference, the commands themselves parse at every version: what v9 and v15 gate is
# the NEW/IDS layout (above), i.e. whether a messaging queue (which SKEY needs) can exist.


@pytest.mark.parametrize("version", [8, 9])
def test_skey_from_v9(smp_server, trio_run, version):
    async def main():
        async with smp_server(max_version=MAX) as srv:
            async with sc.connect(srv.address, max_version=version) as c:
                q = await c.create_queue(sender_can_secure=version >= 9)
                assert q.queue_mode is (None if version < 9 else QueueMode.MESSAGING)
                key = generate_private_key(Alg.ED25519)
                reply = await c.request(q.snd_id, b"SKEY " + short(key.public.der), key)
                # below v9 no queue has the messaging mode SKEY needs
                assert reply == (C.OK if version >= 9 else C.Err(E.AUTH))

    trio_run(main)


@pytest.mark.parametrize("version", [14, 15])
def test_short_links_around_v15(smp_server, trio_run, version):
    """LSET/LGET parse below v15 as well (the reference's parser has no gate); v15 adds
    the link fields to NEW/IDS."""

    async def main():
        async with smp_server(max_version=MAX) as srv:
            async with sc.connect(srv.address, max_version=version) as c:
                q = await c.create_queue(subscribe=False)
                assert q.link_id is None
                link_id = os.urandom(24)
                lset = b"LSET " + short(link_id) + b"\x00\x05fixed" + b"\x00\x04user"
                assert await c.request(q.rcv_id, lset, q.rcv_auth_key) == C.OK
                assert await c.request(link_id, C.Lget()) == C.Lnk(q.snd_id, C.QueueLinkData(b"fixed", b"user"))

    trio_run(main)
