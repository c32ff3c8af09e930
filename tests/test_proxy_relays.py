"""The proxy's outbound links (smpfast.proxy.relays) against real smpfast relays on
loopback over real TLS, directly and through a real SOCKS5 server (pproxy)."""

from __future__ import annotations

from contextlib import asynccontextmanager

import pytest
import trio

from smpfast.client.session import parse_address
from smpfast.protocol import commands as C
from smpfast.protocol import versions as V
from smpfast.protocol.address import SMPServer
from smpfast.protocol.proxy import ProxiedRelay, proxied_command
from smpfast.proxy.relays import RelayError, RelayPool, RelayPoolConfig
from smpfast.server.main import Server, ServerSettings, load_serving_identity
from smpfast.store import MemoryStore
from smpfast.testing.process import free_port
from smpfast.transport.socks import parse_socks_proxy
from socks_support import SocksServer

ONION = "a" * 56 + ".onion"


def server_of(address: str) -> SMPServer:
    return parse_address(address)[0]


def with_hosts(address: str, *hosts: str) -> SMPServer:
    s = server_of(address)
    return SMPServer(tuple(hosts), s.port, s.key_hash)


@asynccontextmanager
async def relay_on(smp_credentials, port: int, max_version: int = 18):
    """An in-process relay on a fixed port (to stop and start it again at one address)."""
    creds, identity, ctx = load_serving_identity(smp_credentials.directory, max_version)
    server = Server(MemoryStore(), identity, ctx, None, ServerSettings(bind="127.0.0.1", ports=(port,)))
    async with trio.open_nursery() as n:
        await n.start(server.serve)
        try:
            yield f"smp://{creds.fingerprint}@127.0.0.1:{port}"
        finally:
            server.stop()


def cfg(**kw) -> RelayPoolConfig:
    kw.setdefault("connect_timeout", 5.0)
    kw.setdefault("request_timeout", 5.0)
    return RelayPoolConfig(**kw)


def test_one_shared_link_per_relay_with_the_proxy_flag(smp_server, trio_run):
    async def main():
        async with smp_server(max_version=18) as relay, RelayPool(cfg()) as pool:
            srv = server_of(relay.address)
            links = []

            async def get():
                links.append(await pool.connect(srv))

            async with trio.open_nursery() as n:
                for _ in range(10):
                    n.start_soon(get)
            assert len({id(link) for link in links}) == 1 and pool.connects == 1
            [link] = pool.links
            assert link.version == 18 and link.server_vrange == V.VersionRange(6, 18)
            assert not link.client.block_encryption  # proxy links are not block-encrypted
            assert link.client.session_box_key is not None and link.cert_key is not None
            assert pool.lookup(link.session_id) is link and pool.lookup(b"x" * 32) is None
            await link.client.ping()
            assert await pool.connect(srv) is link

    trio_run(main)


@pytest.mark.parametrize(("relay_max", "version"), [(12, 10), (10, 10), (7, 7)])
def test_the_version_is_capped_at_10_below_14(smp_server, trio_run, relay_max, version):
    async def main():
        async with smp_server(max_version=relay_max) as relay, RelayPool(cfg()) as pool:
            link = await pool.connect(server_of(relay.address))
            assert link.version == version and not link.client.block_encryption

    trio_run(main)


def test_connect_errors_are_the_references_and_persist(smp_server, trio_run):
    async def main():
        async with smp_server(max_version=18) as relay, RelayPool(cfg(persist_error_interval=60)) as pool:
            dead = with_hosts(relay.address, "127.0.0.1")
            dead = SMPServer(dead.hosts, str(free_port()), dead.key_hash)
            with pytest.raises(RelayError) as e:
                await pool.connect(dead)
            assert str(e.value.error) == "PROXY BROKER NETWORK"
            with pytest.raises(RelayError):  # persisted: no second attempt
                await pool.connect(dead)
            assert pool.connect_errors == 1
            wrong = SMPServer(dead.hosts, str(relay.port), bytes(32))  # another fingerprint
            with pytest.raises(RelayError) as e:
                await pool.connect(wrong)
            assert str(e.value.error) == "PROXY BROKER NETWORK" and pool.connect_errors == 2
            assert pool.links == []

    trio_run(main)


def test_a_silent_relay_times_out_as_network(trio_run, smp_credentials):
    """A TCP peer that never answers the TLS handshake: the connect timeout (the
    reference's NETimeoutError, sent as PROXY BROKER NETWORK)."""

    async def main():
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        port = listeners[0].socket.getsockname()[1]
        async with trio.open_nursery() as n:
            n.start_soon(trio.serve_listeners, lambda s: trio.sleep_forever(), listeners)
            async with RelayPool(cfg(connect_timeout=0.5, persist_error_interval=0)) as pool:
                srv = SMPServer(("127.0.0.1",), str(port), smp_credentials.key_hash)
                start = trio.current_time()
                with pytest.raises(RelayError) as e:
                    await pool.connect(srv)
                assert str(e.value.error) == "PROXY BROKER NETWORK"
                assert 0.4 < trio.current_time() - start < 3
            n.cancel_scope.cancel()

    trio_run(main)


def test_a_relay_that_goes_away_is_reconnected_on_demand(smp_credentials, trio_run):
    async def main():
        port = free_port()
        async with RelayPool(cfg(persist_error_interval=0)) as pool:
            async with relay_on(smp_credentials, port) as address:
                first = await pool.connect(server_of(address))
            with trio.fail_after(5):
                await first.client.wait_closed()
            await trio.sleep(0)
            assert pool.lookup(first.session_id) is None and pool.links == []
            with pytest.raises(RelayError):
                await pool.connect(server_of(address))
            async with relay_on(smp_credentials, port) as address:
                second = await pool.connect(server_of(address))
                assert second is not first and second.session_id != first.session_id
                assert pool.lookup(second.session_id) is second
                await second.client.ping()

    trio_run(main)


def test_the_outbound_limit(smp_server, trio_run):
    async def main():
        async with smp_server(max_version=18) as a, smp_server(max_version=18) as b, \
                RelayPool(cfg(max_relays=1)) as pool:
            await pool.connect(server_of(a.address))
            with pytest.raises(RelayError) as e:
                await pool.connect(server_of(b.address))
            assert str(e.value.error) == "PROXY BROKER NETWORK" and "outbound limit" in str(e.value)

    trio_run(main)


def test_a_relay_refusing_rfwd_is_proxy_protocol(smp_server, trio_run):
    """The relay's ERR to an RFWD (here: a corrupted PFWD) is PROXY PROTOCOL <its error>."""

    async def main():
        async with smp_server(max_version=18) as relay, RelayPool(cfg()) as pool:
            link = await pool.connect(server_of(relay.address))
            sent = proxied_command(ProxiedRelay(link.session_id, 17, link.client.server_session_key),
                                   b"q" * 24, C.Send(C.MsgFlags(False), b"hello"))
            enc = sent.pfwd.enc_transmission
            corrupted = C.Pfwd(17, sent.pfwd.dh_key, enc[:100] + bytes((enc[100] ^ 1,)) + enc[101:])
            with pytest.raises(RelayError) as e:
                await pool.forward(link, sent.nonce, corrupted)
            assert str(e.value.error) == "PROXY PROTOCOL CRYPTO"

    trio_run(main)


# ---------------------------------------------------------------- SOCKS5


def test_links_through_a_real_socks5_proxy(smp_server, trio_run):
    async def main():
        async with smp_server(max_version=18) as relay:
            with SocksServer() as socks:
                config = cfg(socks=parse_socks_proxy(socks.address), socks_mode="always")
                async with RelayPool(config) as pool:
                    link = await pool.connect(server_of(relay.address))
                    assert link.client.via_socks and link.version == 18
                    await link.client.ping()
                assert f"-> 127.0.0.1:{relay.port}" in socks.log()

    trio_run(main)


def test_onion_hosts_only_through_socks(smp_server, trio_run):
    """``smp://fp@xxxx.onion,127.0.0.1:port``: with socks_mode = onion the .onion host goes
    through SOCKS (pproxy routes it to the relay, like Tor), the public one directly;
    without SOCKS only the public host is tried; an onion-only relay without SOCKS is HOST."""

    async def main():
        async with smp_server(max_version=18) as relay:
            both = with_hosts(relay.address, ONION, "127.0.0.1")
            onion_only = with_hosts(relay.address, ONION)
            with SocksServer(onion_to=relay.port) as socks:
                proxy = parse_socks_proxy(socks.address)
                async with RelayPool(cfg(socks=proxy, socks_mode="onion", host_mode="onion")) as pool:
                    link = await pool.connect(both)
                    assert (link.client.host, link.client.via_socks) == (ONION, True)
                async with RelayPool(cfg(socks=proxy, socks_mode="onion")) as pool:  # host_mode public
                    link = await pool.connect(both)
                    assert (link.client.host, link.client.via_socks) == ("127.0.0.1", False)
                    link = await pool.connect(onion_only)
                    assert (link.client.host, link.client.via_socks) == (ONION, True)
                assert f"tunnel 127.0.0.1:{relay.port} -> {ONION}" in socks.log()
            async with RelayPool(cfg()) as pool:
                link = await pool.connect(both)
                assert (link.client.host, link.client.via_socks) == ("127.0.0.1", False)
                with pytest.raises(RelayError) as e:
                    await pool.connect(onion_only)
                assert str(e.value.error) == "PROXY BROKER HOST"
            async with RelayPool(cfg(required_host_mode=True)) as pool:
                with pytest.raises(RelayError) as e:
                    await pool.connect(onion_only)
                assert str(e.value.error) == "PROXY BROKER HOST"

    trio_run(main)


def test_socks_credentials(smp_server, trio_run):
    """A proxy requiring credentials (RFC 1929): the right ones connect, wrong ones are
    PROXY BROKER NETWORK. (pproxy remembers an authenticated client address, so each case
    gets its own proxy.)"""

    async def main():
        async with smp_server(max_version=18) as relay:
            with SocksServer(auth="alice:secret") as socks:
                bad = cfg(socks=parse_socks_proxy(f"alice:wrong@127.0.0.1:{socks.port}"), socks_mode="always")
                async with RelayPool(bad) as pool:
                    with pytest.raises(RelayError) as e:
                        await pool.connect(server_of(relay.address))
                    assert str(e.value.error) == "PROXY BROKER NETWORK"
                isolated = cfg(socks=parse_socks_proxy(f"127.0.0.1:{socks.port}"), socks_mode="always")
                async with RelayPool(isolated) as pool:  # derived credentials are not alice's
                    with pytest.raises(RelayError):
                        await pool.connect(server_of(relay.address))
                assert "Unauthorized SOCKS" in socks.log()
            with SocksServer(auth="alice:secret") as socks:
                good = cfg(socks=parse_socks_proxy(socks.address), socks_mode="always")
                async with RelayPool(good) as pool:
                    assert (await pool.connect(server_of(relay.address))).client.via_socks

    trio_run(main)
