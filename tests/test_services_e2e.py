"""Service certificates (v16) end to end: the in-process server over real TLS with its
maximum raised to 18, asking for client certificates as the reference does, and clients of
the project's library presenting a TLS client certificate made by the test.

A notifier service subscribes notifiers (NSUB → SOK with its id), gets their NMSGs, gets
them back with NSUBS (SOKS with the count) after reconnecting and after a server restart,
and is told ENDS when a newer session of the same service takes over. Below v16 the same
client is an ordinary one (OK, no service). Bad certificates fail in TLS, a role that does
not match the stored service fails with HANDSHAKE BAD_SERVICE.
"""

from __future__ import annotations

import datetime

import pytest
import trio

import smpfast.client as sc
from smpfast.client.errors import ConnectError, HandshakeError, SMPError
from smpfast.crypto import chains
from smpfast.protocol import commands as C
from smpfast.protocol import errors as E
from smpfast.protocol import versions as V
from smpfast.protocol.commands import ServiceRole
from smpfast.protocol.ids_hash import ids_hash
from smpfast.server.main import Server, ServerSettings, load_serving_identity
from smpfast.store import LMDBStore, MemoryStore
from smpfast.testing.throwaway_certs import make_service_chain

pytestmark = pytest.mark.slow

MAX = V.MAX_VERSION
NTF_INTERVAL = 0.05  # seconds between NMSG deliveries (the reference: 1.5 s)


def creds(chain, role=ServiceRole.NOTIFIER) -> sc.ServiceCredentials:
    return sc.ServiceCredentials(role, chain.chain, chain.leaf_key)


async def nmsgs(client: sc.SMPClient, n: int, timeout: float = 10.0) -> list[bytes]:
    """The notifier ids of the next ``n`` NMSG events (other events fail the test)."""
    out = []
    with trio.fail_after(timeout):
        while len(out) < n:
            ev = await client.next_event()
            assert isinstance(ev.message, C.Nmsg), ev
            out.append(ev.entity_id)
    return out


async def queue_with_notifier(owner: sc.SMPClient):
    q = await owner.create_queue(ntf=True)
    assert q.notifier is not None
    return q


@pytest.mark.parametrize("length", [1, 2])
def test_notifier_service_end_to_end(smp_server, trio_run, length):
    chain = make_service_chain(length)

    async def main():
        async with smp_server(max_version=MAX, ntf_delivery_interval=NTF_INTERVAL) as srv:
            async with sc.connect(srv.address) as owner, sc.connect(srv.address) as sender, \
                    sc.connect(srv.address, service=creds(chain)) as svc:
                assert svc.version == MAX and svc.service is not None
                assert svc.service.role is ServiceRole.NOTIFIER
                assert svc.service.cert_hash == chains.certificate_hash(chain.chain[-1 if length > 1 else 0])
                service_id = svc.service.service_id
                assert srv.store.service_by_cert(chain.cert_hash).service_id == service_id
                q = await queue_with_notifier(owner)
                assert await svc.notifications_subscribe(q.notifier) == service_id
                assert srv.store.queue_by_notifier(q.notifier.notifier_id).notifier.ntf_service_id == service_id
                await sender.send(q.snd_id, b"for the service", notification=True)
                assert await nmsgs(svc, 1) == [q.notifier.notifier_id]
                # an ordinary client's subscriptions answer SOK without a service id
                assert await owner.subscribe(q) is None

    trio_run(main)


def test_reconnecting_service_gets_its_associations_back(smp_server, trio_run, tmp_path):
    chain = make_service_chain(2)
    store = LMDBStore(tmp_path / "store", map_size=1 << 28, durability="none")

    async def main():
        async with smp_server(store, max_version=MAX, ntf_delivery_interval=NTF_INTERVAL) as srv:
            async with sc.connect(srv.address) as owner, sc.connect(srv.address, service=creds(chain)) as svc:
                service_id = svc.service.service_id
                queues = [await queue_with_notifier(owner) for _ in range(3)]
                for q in queues:
                    assert await svc.notifications_subscribe(q.notifier) == service_id
            # the service went away; a new session of it gets the same id and its notifiers
            async with sc.connect(srv.address, service=creds(chain)) as svc, \
                    sc.connect(srv.address) as sender:
                assert svc.service.service_id == service_id
                assert await svc.service_subscribe_notifications() == 3
                assert await svc.service_subscribe_notifications() == 3  # already subscribed
                await sender.send(queues[0].snd_id, b"one", notification=True)
                await sender.send(queues[2].snd_id, b"two", notification=True)
                got = await nmsgs(svc, 2)
                assert sorted(got) == sorted([queues[0].notifier.notifier_id, queues[2].notifier.notifier_id])
        # the server restarts on the same store: the service and its associations are kept
        async with smp_server(store, max_version=MAX, ntf_delivery_interval=NTF_INTERVAL) as srv:
            async with sc.connect(srv.address, service=creds(chain)) as svc, sc.connect(srv.address) as sender:
                assert svc.service.service_id == service_id
                assert await svc.service_subscribe_notifications() == 3
                await sender.send(queues[1].snd_id, b"after restart", notification=True)
                assert await nmsgs(svc, 1) == [queues[1].notifier.notifier_id]

    try:
        trio_run(main)
    finally:
        store.close()


def test_newer_service_session_takes_over_with_ends(smp_server, trio_run):
    chain = make_service_chain(1)

    async def main():
        async with smp_server(max_version=MAX, ntf_delivery_interval=NTF_INTERVAL) as srv:
            async with sc.connect(srv.address) as owner, sc.connect(srv.address) as sender, \
                    sc.connect(srv.address, service=creds(chain)) as first:
                queues = [await queue_with_notifier(owner) for _ in range(2)]
                for q in queues:
                    await first.notifications_subscribe(q.notifier)
                async with sc.connect(srv.address, service=creds(chain)) as second:
                    assert second.service.service_id == first.service.service_id
                    assert await second.service_subscribe_notifications() == 2
                    ev = await first.next_event(timeout=10)
                    nids = [q.notifier.notifier_id for q in queues]
                    assert ev == sc.Event(first.service.service_id, C.Ends(2, ids_hash(nids)))
                    await sender.send(queues[1].snd_id, b"to the newer session", notification=True)
                    assert await nmsgs(second, 1) == [queues[1].notifier.notifier_id]
                with pytest.raises(trio.TooSlowError):
                    await first.next_event(timeout=0.3)  # nothing for the old session

    trio_run(main)


def test_direct_nsub_ends_a_service_association(smp_server, trio_run):
    chain = make_service_chain(1)

    async def main():
        async with smp_server(max_version=MAX, ntf_delivery_interval=NTF_INTERVAL) as srv:
            async with sc.connect(srv.address) as owner, sc.connect(srv.address, service=creds(chain)) as svc:
                q = await queue_with_notifier(owner)
                await svc.notifications_subscribe(q.notifier)
                assert await owner.notifications_subscribe(q.notifier) is None
                ev = await svc.next_event(timeout=10)
                assert ev == sc.Event(q.notifier.notifier_id, C.END)
                assert srv.store.service_queue_count(svc.service.service_id, "N") == 0

    trio_run(main)


def test_messaging_service_creates_and_subscribes(smp_server, trio_run):
    chain = make_service_chain(1, name="chat relay")

    async def main():
        async with smp_server(max_version=MAX) as srv:
            async with sc.connect(srv.address, service=creds(chain, ServiceRole.MESSAGING)) as relay, \
                    sc.connect(srv.address) as sender:
                service_id = relay.service.service_id
                q = await relay.create_queue()
                assert q.service_id == service_id  # IDS carries the service id (v16+)
                assert srv.store.get_queue(q.rcv_id).rcv_service_id == service_id
                assert await relay.subscribe(q) == service_id  # SOK with the service id
                await sender.send(q.snd_id, b"to the relay")
                ev = await relay.next_event(timeout=10)
                assert isinstance(ev.message, C.Msg) and relay.decrypt_msg(q, ev.message).body == b"to the relay"
                # what a messaging service may not do
                with pytest.raises(SMPError) as e:
                    await relay.create_queue(subscribe=False)
                assert e.value.error == E.CMD_PROHIBITED
                assert await relay.service_subscribe() == 1  # SUBS (v19): its one queue
                with pytest.raises(SMPError) as e:
                    await relay.service_subscribe_notifications()
                assert e.value.error == E.CMD_PROHIBITED

    trio_run(main)


def test_notifier_service_may_not_create_or_send(smp_server, trio_run):
    chain = make_service_chain(1)

    async def main():
        async with smp_server(max_version=MAX) as srv:
            async with sc.connect(srv.address) as owner, sc.connect(srv.address, service=creds(chain)) as svc:
                q = await owner.create_queue()
                for call in (svc.create_queue(), svc.send(q.snd_id, b"x"), svc.subscribe(q)):
                    with pytest.raises(SMPError) as e:
                        await call
                    assert e.value.error == E.CMD_PROHIBITED
                await svc.ping()
            async with sc.connect(srv.address) as plain:
                with pytest.raises(sc.UnsupportedByVersion):
                    await plain.service_subscribe_notifications()

    trio_run(main)


@pytest.mark.parametrize("version", [V.SHORT_LINKS, V.SERVICE_CERTS])
def test_below_v16_a_service_client_is_an_ordinary_one(smp_server, trio_run, version):
    chain = make_service_chain(1)

    async def main():
        async with smp_server(max_version=MAX, ntf_delivery_interval=NTF_INTERVAL) as srv:
            async with sc.connect(srv.address) as owner, \
                    sc.connect(srv.address, max_version=version, service=creds(chain)) as svc:
                q = await queue_with_notifier(owner)
                result = await svc.notifications_subscribe(q.notifier)
                if version < V.SERVICE_CERTS:
                    assert svc.service is None and result is None  # OK, as v15 answers
                    assert srv.store.service_by_cert(chain.cert_hash) is None
                else:
                    assert result == svc.service.service_id

    trio_run(main)


def test_without_certificate_requests_no_service(trio_run, smp_credentials):
    # accept_service_credentials = off: the server asks for no certificate, so the client
    # presents no service (the reference client's certificateSent).
    chain = make_service_chain(1)

    async def main():
        _, identity, ctx = load_serving_identity(smp_credentials.directory, MAX, accept_service_credentials=False)
        server = Server(MemoryStore(), identity, ctx, None, ServerSettings(bind="127.0.0.1", ports=(0,)))
        async with trio.open_nursery() as nursery:
            [port] = await nursery.start(server.serve)
            address = f"smp://{smp_credentials.fingerprint}@127.0.0.1:{port}"
            try:
                async with sc.connect(address, service=creds(chain)) as svc:
                    assert svc.version == MAX and svc.service is None
                    await svc.ping()
            finally:
                server.stop()

    trio_run(main)


def test_bad_client_certificates_fail_the_connection(smp_server, trio_run):
    long_ago = datetime.datetime(2001, 1, 1, tzinfo=datetime.UTC)
    expired = make_service_chain(1, days=1, not_before=long_ago)
    too_long = make_service_chain(5)

    async def main():
        async with smp_server(max_version=MAX) as srv:
            for chain, alert in ((expired, "CERTIFICATE_EXPIRED"), (too_long, "CERTIFICATE_UNKNOWN")):
                with pytest.raises(ConnectError) as e:
                    await sc.SMPClient.connect(srv.address, service=creds(chain))
                assert alert in str(e.value).upper()
            # the server goes on serving
            async with sc.connect(srv.address) as plain:
                await plain.ping()

    trio_run(main)


def test_a_certificate_of_another_role_is_bad_service(smp_server, trio_run):
    chain = make_service_chain(1)

    async def main():
        async with smp_server(max_version=MAX) as srv:
            async with sc.connect(srv.address, service=creds(chain, ServiceRole.NOTIFIER)) as svc:
                assert svc.service is not None
            with pytest.raises(HandshakeError) as e:
                await sc.SMPClient.connect(srv.address, service=creds(chain, ServiceRole.MESSAGING))
            assert e.value.code == "HANDSHAKE BAD_SERVICE"

    trio_run(main)
