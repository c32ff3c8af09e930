"""Service sessions over the sans-IO broker for tests: a World (memory store, broker,
harness) and its connections (Conn), which sign as the project's client does, optionally as
a service session."""

from __future__ import annotations

import os

import pytest

from smpfast import _core as core
from smpfast.crypto import auth as cauth
from smpfast.crypto.keys import Alg, PrivateKey
from smpfast.protocol import commands as C
from smpfast.protocol import versions as V
from smpfast.protocol.commands import ServiceRole
from smpfast.protocol.session import ServiceIdentity
from smpfast.server.broker import Broker
from smpfast.store import MemoryStore, Store
from smpfast.testing.broker import BrokerHarness

V16 = V.SERVICE_CERTS
V18 = V.MAX_VERSION  # the codecs' top (20 now): what these tests negotiate
AUTO = object()  # sign as the library does


class Conn:
    """One connected client of the harness, optionally a service session."""

    def __init__(self, h: "World", version: int = V18, role: ServiceRole | None = None,
                 cert_hash: bytes | None = None, service_id: bytes | None = None) -> None:
        self.h = h
        self.version = version
        self.session_id = os.urandom(32)
        self.service_private = os.urandom(32)
        self.service = None
        if role is not None:
            cert_hash = cert_hash or os.urandom(32)
            if service_id is None:
                service_id, _ = h.broker.get_create_service(role.value, (b"cert",), cert_hash)
            public = PrivateKey(Alg.ED25519, self.service_private).public.raw
            self.service = ServiceIdentity(service_id, role, cert_hash, public)
        self.peer = h.harness.connect(version, self.session_id, os.urandom(32), self.service)

    def transmission(self, corr: bytes, entity: bytes, cmd: C.Command, key: PrivateKey | None,
                     sig=AUTO, prefix=AUTO, auth: bytes | None = None) -> bytes:
        body = cmd.encode(self.version)
        tfa = cauth.t_for_auth(self.session_id, corr, entity, body)
        service_auth = self.service is not None and C.uses_service_auth(cmd)
        if sig is AUTO:
            sig = cauth.service_signature(self.service_private, tfa) if service_auth and key else None
        if prefix is AUTO:
            prefix = self.service.cert_hash if service_auth and key else b""
        if auth is None:
            auth = key.sign(prefix + tfa) if key is not None else b""
        return core.encode_transmission(auth, corr, entity, body, self.session_id, True,
                                        self.version >= V16, sig if auth and self.version >= V16 else None)

    def block(self, *transmissions: bytes) -> list[tuple]:
        self.h.harness.process(self.peer, core.encode_batch(list(transmissions), 16384))
        return self.answers()

    def send(self, entity: bytes, cmd: C.Command, key: PrivateKey | None, **kw):
        [(_, _, answer)] = self.block(self.transmission(b"c" + os.urandom(4), entity, cmd, key, **kw))
        return answer

    def answers(self) -> list[tuple]:
        return self.h.harness.answers(self.peer)

    def events(self) -> list[tuple]:
        return [(ent, msg) for corr, ent, msg in self.answers() if not corr]

    def close(self) -> None:
        self.h.harness.disconnect(self.peer)


class World:
    def __init__(self, store: Store | None = None) -> None:
        self.store = MemoryStore() if store is None else store
        self.broker = Broker(self.store)
        self.harness = BrokerHarness(self.broker)

    def conn(self, *args, **kw) -> Conn:
        return Conn(self, *args, **kw)




def new_queue(c: Conn, subscribe: bool = True, ntf: bool = True):
    """NEW (with notifier credentials at v17+); (rid, sid, recipient key, notifier id, notifier key,
    notifier box key)."""
    rk, dk = PrivateKey.generate(Alg.ED25519), PrivateKey.generate(Alg.X25519)
    nk, ndk = PrivateKey.generate(Alg.ED25519), PrivateKey.generate(Alg.X25519)
    creds = C.NewNtfCreds(nk.public.der, ndk.public.der) if ntf else None
    ids = c.send(b"", C.New(rk.public.der, dk.public.der, subscribe=subscribe, ntf_creds=creds), rk)
    assert isinstance(ids, C.Ids), ids
    nid = ids.ntf_creds.notifier_id if ntf else None
    return ids, rk, nid, nk


def send(c: Conn, sid: bytes, body: bytes = b"hello", notification: bool = True):
    return c.send(sid, C.Send(C.MsgFlags(notification), body), None)


