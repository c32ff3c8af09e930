"""What service certificates (v16) cost.

- TLS handshake, both ends in this process over memory BIOs: a server that does not ask for
  client certificates, one that asks (the reference's default; an ordinary client answers
  with none), and a service client whose 2-certificate chain the server validates.
- Broker: one block of 100 NSUBs from an ordinary session against the same from a notifier
  service session (each NSUB then verifies two signatures and the first one stores the
  association; the block is sent twice so the measured one is all duplicates).

    nice .venv/bin/pytest -q bench/test_bench_services.py --benchmark-columns=mean,stddev
"""

from __future__ import annotations

import os
import ssl

import pytest

from smpfast import _core as core
from smpfast.crypto import auth as cauth
from smpfast.crypto.keys import Alg, PrivateKey
from smpfast.protocol import commands as C
from smpfast.protocol import versions as V
from smpfast.protocol.commands import ServiceRole
from smpfast.protocol.session import ServiceIdentity
from smpfast.server.broker import Broker
from smpfast.store import MemoryStore
from smpfast.testing.throwaway_certs import make_service_chain, write_server_files
from smpfast.transport.tls import ClientCertificateContext, client_context, server_context

N = 100


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return write_server_files(tmp_path_factory.mktemp("bench-services"))


def _handshake(sctx: ssl.SSLContext, cctx: ssl.SSLContext) -> None:
    si, so, ci, co = ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO()
    server = sctx.wrap_bio(si, so, server_side=True)
    client = cctx.wrap_bio(ci, co, server_side=False)
    done = [False, False]
    for _ in range(8):
        for i, (end, out, peer_in) in enumerate(((client, co, si), (server, so, ci))):
            if not done[i]:
                try:
                    end.do_handshake()
                    done[i] = True
                except ssl.SSLWantReadError:
                    pass
            peer_in.write(out.read())
        if all(done):
            return
    raise AssertionError("handshake did not finish")


@pytest.mark.parametrize("case", ["no request", "request, no certificate", "request, service chain"])
def test_tls_handshake(benchmark, files, case):
    sctx = server_context(files.chain_file, files.key_file, request_client_certs=case != "no request")
    if case == "request, service chain":
        svc = make_service_chain(2)
        benchmark(lambda: _handshake(sctx, ClientCertificateContext(svc.chain, svc.leaf_key).context))
    else:
        cctx = client_context()
        benchmark(lambda: _handshake(sctx, cctx))


def _nsub_world(service: bool):
    broker = Broker(MemoryStore())
    owner = broker.connect(V.MAX_VERSION, os.urandom(32), os.urandom(32))
    notifiers = []
    for i in range(N):
        rk, dk = PrivateKey.generate(Alg.ED25519), PrivateKey.generate(Alg.X25519)
        nk, ndk = PrivateKey.generate(Alg.ED25519), PrivateKey.generate(Alg.X25519)
        body = C.New(rk.public.der, dk.public.der, ntf_creds=C.NewNtfCreds(nk.public.der, ndk.public.der)).encode(V.MAX_VERSION)
        corr = i.to_bytes(24, "big")
        t = core.encode_transmission(rk.sign(cauth.t_for_auth(owner.session_id, corr, b"", body)), corr, b"",
                                     body, owner.session_id, True, True, None)
        [(_, [(_, _, ids)])] = broker.process_block(owner, core.encode_batch([t], 16384)).replies
        notifiers.append((ids.ntf_creds.notifier_id, nk))
    session_id, service_private, identity = os.urandom(32), os.urandom(32), None
    if service:
        sid, _ = broker.get_create_service("N", (b"cert",), os.urandom(32))
        identity = ServiceIdentity(sid, ServiceRole.NOTIFIER, os.urandom(32),
                                   PrivateKey(Alg.ED25519, service_private).public.raw)
    peer = broker.connect(V.MAX_VERSION, session_id, os.urandom(32), identity)
    body = C.Nsub().encode(V.MAX_VERSION)
    ts = []
    for i, (nid, nk) in enumerate(notifiers):
        corr = i.to_bytes(24, "big")
        tfa = cauth.t_for_auth(session_id, corr, nid, body)
        sig = None if identity is None else cauth.service_signature(service_private, tfa)
        authorized = tfa if identity is None else identity.cert_hash + tfa
        ts.append(core.encode_transmission(nk.sign(authorized), corr, nid, body, session_id, True, True, sig))
    blocks = [core.encode_batch(ts[i : i + 50], 16384) for i in range(0, N, 50)]
    return broker, peer, blocks


@pytest.mark.parametrize("service", [False, True], ids=["ordinary", "notifier service"])
def test_nsub_block(benchmark, service):
    broker, peer, blocks = _nsub_world(service)
    for block in blocks:  # the first round subscribes (and associates)
        broker.process_block(peer, block)

    def run():
        for block in blocks:
            effects = broker.process_block(peer, block)
        return effects

    effects = benchmark(run)
    [(_, answers)] = effects.replies
    expected = C.Sok(peer.service.service_id if service else None)
    assert all(a == expected for _, _, a in answers)
