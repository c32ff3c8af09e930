"""Private message routing end to end: smpfast servers on loopback as SMP proxy and as
destination relay (and one server in both roles), over real TLS, with the project's client;
every PROXY error of the reference provoked for real."""

from __future__ import annotations

import os
import signal

import pytest
import trio

import smpfast.client as sc
from smpfast.client import SMPError
from smpfast.crypto.keys import Alg, generate_private_key
from smpfast.protocol import commands as C
from smpfast.protocol.address import SMPServer
from smpfast.protocol.proxy import ProxiedRelay
from smpfast.proxy.relays import RelayPoolConfig
from smpfast.server.broker import BrokerConfig
from smpfast.testing.process import ServerProcess, free_port, init_data_dir
from socks_support import SocksServer

MAX = 18
ONION = "e" * 56 + ".onion"


def relays(**kw) -> RelayPoolConfig:
    kw.setdefault("connect_timeout", 5.0)
    kw.setdefault("request_timeout", 5.0)
    kw.setdefault("persist_error_interval", 0.0)
    return RelayPoolConfig(**kw)


def server_of(address: str) -> SMPServer:
    return sc.parse_address(address)[0]


def with_hosts(address: str, *hosts: str, port: str | None = None, key_hash: bytes | None = None) -> SMPServer:
    s = server_of(address)
    return SMPServer(tuple(hosts) or s.hosts, s.port if port is None else port, s.key_hash if key_hash is None else key_hash)


async def expect_msg(client, q, body: bytes) -> None:
    entity, msg = await client.next_event(5)
    assert entity == q.rcv_id and isinstance(msg, C.Msg)
    assert client.decrypt_msg(q, msg).body == body
    await client.ack(q, msg.msg_id)


def test_messages_through_a_proxy_reach_the_relay(smp_server, trio_run):
    """The v18-proxy transcript's story with smpfast on both sides: PRXY → PKEY (8..17,
    v17), a repeated PRXY reuses the relay session, unsigned SEND, SKEY, signed SEND (each
    MSG arrives at the relay's subscriber) and SUB (ERR CMD PROHIBITED from the relay)."""

    async def main():
        async with smp_server(max_version=MAX) as relay, smp_server(max_version=MAX, relays=relays()) as proxy:
            async with sc.connect(relay.address) as recipient, sc.connect(proxy.address) as sender:
                q = await recipient.create_queue(sender_can_secure=True)
                r = await sender.proxy_relay(relay.address)
                assert r.version == 17 and len(r.session_id) == 32
                again = await sender.proxy_relay(relay.address)
                assert again.session_id == r.session_id and len(proxy.relay_links()) == 1
                await sender.proxied_send(r, q.snd_id, b"via proxy 1")
                await expect_msg(recipient, q, b"via proxy 1")
                key = generate_private_key(Alg.ED25519)
                await sender.proxied_sender_secure(r, q.snd_id, key)
                await sender.proxied_send(r, q.snd_id, b"via proxy 2", key)
                await expect_msg(recipient, q, b"via proxy 2")
                answer = await sender.proxied(r, q.rcv_id, C.SUB, q.rcv_auth_key)
                assert isinstance(answer, C.Err) and str(answer.error) == "CMD PROHIBITED"
                unsigned = await sender.proxied(r, q.snd_id, C.Send(C.MsgFlags(False), b"x"))
                assert isinstance(unsigned, C.Err) and str(unsigned.error) == "AUTH"  # secured now
            stats = proxy.stats()
            assert stats["pRelays.requests"] == 2 and stats["pRelays.successes"] == 2
            assert stats["pMsgFwds.requests"] == 5 and stats["pMsgFwds.successes"] == 5
            assert relay.stats()["pMsgFwdsRecv"] == 5
            assert relay.stats()["msgSent"] == 2

    trio_run(main)


def test_one_server_in_both_roles(smp_server, trio_run):
    async def main():
        async with smp_server(max_version=MAX, relays=relays()) as srv:
            async with sc.connect(srv.address) as recipient, sc.connect(srv.address) as sender:
                q = await recipient.create_queue()
                r = await sender.proxy_relay(srv.address)
                await sender.proxied_send(r, q.snd_id, b"to myself")
                await expect_msg(recipient, q, b"to myself")

    trio_run(main)


def test_the_forwarded_command_runs_at_the_version_it_carries(smp_server, trio_run):
    """A body of 16060 bytes: within v8's limit (16064), above v11's (16048)."""

    async def main():
        async with smp_server(max_version=MAX) as relay, smp_server(max_version=MAX, relays=relays()) as proxy:
            async with sc.connect(relay.address) as recipient, sc.connect(proxy.address) as sender:
                q = await recipient.create_queue()
                r = await sender.proxy_relay(relay.address)
                body = b"b" * 16060
                at17 = await sender.proxied(r, q.snd_id, C.Send(C.MsgFlags(False), body))
                assert isinstance(at17, C.Err) and str(at17.error) == "LARGE_MSG"
                v8 = ProxiedRelay(r.session_id, 8, r.server_key)
                assert await sender.proxied(v8, q.snd_id, C.Send(C.MsgFlags(False), body)) == C.OK
                await expect_msg(recipient, q, body)

    trio_run(main)


def test_every_proxy_error_for_real(smp_server, trio_run):
    async def main():
        async with smp_server(max_version=MAX) as relay, smp_server(max_version=7) as old, \
                smp_server(max_version=MAX, relays=relays()) as proxy:
            async with sc.connect(proxy.address) as c:
                async def prxy_error(server: SMPServer) -> str:
                    with pytest.raises(SMPError) as e:
                        await c.proxy_relay(server)
                    return str(e.value.error)

                assert await prxy_error(with_hosts(relay.address, port=str(free_port()))) == "PROXY BROKER NETWORK"
                assert await prxy_error(with_hosts(relay.address, key_hash=bytes(32))) == "PROXY BROKER NETWORK"
                assert await prxy_error(server_of(old.address)) == "PROXY BROKER TRANSPORT VERSION"
                assert await prxy_error(with_hosts(relay.address, ONION)) == "PROXY BROKER HOST"
                # a signed PRXY is refused by its syntax
                reply = await c.request(b"", C.Prxy(server_of(relay.address)), generate_private_key(Alg.ED25519))
                assert str(reply.error) == "CMD HAS_AUTH"
                r = await c.proxy_relay(relay.address)
                # an unknown relay session
                with pytest.raises(SMPError) as e:
                    await c.proxied(ProxiedRelay(bytes(32), 17, r.server_key), b"q" * 24, C.PING)
                assert str(e.value.error) == "PROXY NO_SESSION"
                # a corrupted PFWD: the relay answers ERR CRYPTO to the RFWD
                from smpfast.protocol.proxy import proxied_command

                sent = proxied_command(r, b"q" * 24, C.Send(C.MsgFlags(False), b"x"))
                enc = sent.pfwd.enc_transmission
                bad = C.Pfwd(17, sent.pfwd.dh_key, enc[:50] + bytes((enc[50] ^ 0xFF,)) + enc[51:])
                reply = await c.request(r.session_id, bad, corr_id=sent.nonce)
                assert str(reply.error) == "PROXY PROTOCOL CRYPTO"
            stats = proxy.stats()
            assert stats["pRelays.errorsConnect"] == 2 and stats["pRelays.errorsCompat"] == 1
            assert stats["pRelays.errorsOther"] == 1  # HOST
            assert stats["pMsgFwds.errorsConnect"] == 1  # NO_SESSION

    trio_run(main)


def test_a_proxy_password(smp_server, trio_run):
    async def main():
        async with smp_server(max_version=MAX) as relay, \
                smp_server(max_version=MAX, relays=relays(), broker_config=BrokerConfig(create_password=b"pw")) as proxy:
            async with sc.connect(proxy.address) as c:
                with pytest.raises(SMPError) as e:
                    await c.proxy_relay(relay.address)
                assert str(e.value.error) == "PROXY BASIC_AUTH"
                with pytest.raises(SMPError) as e:
                    await c.proxy_relay(relay.address, basic_auth="wrong")
                assert str(e.value.error) == "PROXY BASIC_AUTH"
                r = await c.proxy_relay(relay.address, basic_auth="pw")
                assert r.version == 17

    trio_run(main)


def RelayProcess(directory, port: int) -> ServerProcess:
    """A relay in a child process (so that it can be stopped with SIGSTOP), offering v18."""
    return ServerProcess(directory, max_version=MAX)


def test_a_stopped_relay_times_out_and_a_restarted_one_is_reconnected(smp_server, trio_run, tmp_path):
    """The relay process is stopped (SIGSTOP): the forwarded message gets PROXY BROKER
    TIMEOUT. Restarted (a new process, same address): the old session is NO_SESSION, a
    new PRXY reconnects and messages flow again."""
    port = free_port()
    init_data_dir(tmp_path / "relay", port)

    async def main():
        with RelayProcess(tmp_path / "relay", port) as relay_proc:
            relay_address = relay_proc.address
            async with smp_server(max_version=MAX, relays=relays(request_timeout=1.0)) as proxy:
                async with sc.connect(proxy.address) as c:
                    r = await c.proxy_relay(relay_address)
                    relay_proc.signal_all(signal.SIGSTOP)
                    try:
                        with pytest.raises(SMPError) as e:
                            await c.proxied(r, b"q" * 24, C.Send(C.MsgFlags(False), b"x"))
                        assert str(e.value.error) == "PROXY BROKER TIMEOUT"
                    finally:
                        relay_proc.signal_all(signal.SIGCONT)
                    await c.proxied(r, b"q" * 24, C.Send(C.MsgFlags(False), b"x"))  # alive again: AUTH inside
                    relay_proc.stop()
                    with trio.fail_after(10):
                        while proxy.relay_lookup(r.session_id) is not None:
                            await trio.sleep(0.05)
                    with pytest.raises(SMPError) as e:
                        await c.proxied(r, b"q" * 24, C.PING)
                    assert str(e.value.error) == "PROXY NO_SESSION"
                    relay_proc.start()
                    async with sc.connect(relay_address) as recipient:
                        q = await recipient.create_queue()
                        r2 = await c.proxy_relay(relay_address)
                        assert r2.session_id != r.session_id
                        await c.proxied_send(r2, q.snd_id, b"after restart")
                        await expect_msg(recipient, q, b"after restart")

    trio_run(main, timeout=90)


def test_socks5_between_proxy_and_relay(smp_server, trio_run):
    """The relay known by a .onion address; the proxy reaches it through a real SOCKS5
    server ([PROXY] socks_proxy, socks_mode = onion), as through Tor."""

    async def main():
        async with smp_server(max_version=MAX) as relay:
            with SocksServer(onion_to=relay.port) as socks:
                from smpfast.transport.socks import parse_socks_proxy

                cfg = relays(socks=parse_socks_proxy(socks.address), socks_mode="onion")
                async with smp_server(max_version=MAX, relays=cfg) as proxy:
                    async with sc.connect(relay.address) as recipient, sc.connect(proxy.address) as sender:
                        q = await recipient.create_queue()
                        r = await sender.proxy_relay(with_hosts(relay.address, ONION))
                        await sender.proxied_send(r, q.snd_id, b"through tor")
                        await expect_msg(recipient, q, b"through tor")
                        [link] = proxy.relay_links()
                        assert link.client.via_socks and link.client.host == ONION
                assert f"-> {ONION}" in socks.log()

    trio_run(main)


def test_proxy_ini_keys_reach_the_relay_links(tmp_path):
    """[PROXY] and the [LIMITS] proxy keys of smpfast.ini become the relay links' settings."""
    from smpfast.config import load_config
    from smpfast.server.main import build_server

    d = tmp_path / "srv"
    init_data_dir(d, free_port())
    ini = d / "smpfast.ini"
    ini.write_text(ini.read_text().replace("[PROXY]\n", "[PROXY]\nsocks_proxy = @127.0.0.1:9150\nsocks_mode = always\n"
                                           "host_mode = onion\nown_server_domains = example.com\n"
                                           "client_concurrency = 4\n", 1)
                   .replace("proxy_connect_timeout = 45", "proxy_connect_timeout = 7"))
    server, _ = build_server(load_config(d))
    try:
        s = server.settings
        assert (str(s.relays.socks), s.relays.socks_mode, s.relays.host_mode) == ("@127.0.0.1:9150", "always", "onion")
        assert s.relays.own_server_domains == ("example.com",) and s.relays.connect_timeout == 7.0
        assert s.relays.request_timeout == 30.0 and s.relays.max_relays == 10000
        assert s.proxy_client_concurrency == 4
    finally:
        server.store.close()


@pytest.mark.parametrize(("concurrency", "expected"), [(1, ["first", "ping", "second"]), (4, ["ping", "first", "second"])])
def test_client_concurrency_holds_the_client_back(smp_server, trio_run, tmp_path, concurrency, expected):
    """[PROXY] client_concurrency: with 1, a second PFWD waits for the first to end (the
    relay is stopped: it times out), and the client's later commands wait with it (its
    PING is answered only then); with 4 the PING is answered while both PFWDs wait."""
    port = free_port()
    init_data_dir(tmp_path / "relay", port)

    async def main():
        with RelayProcess(tmp_path / "relay", port) as relay_proc:
            async with smp_server(max_version=MAX, relays=relays(request_timeout=1.0),
                                  proxy_client_concurrency=concurrency) as proxy:
                async with sc.connect(proxy.address) as c:
                    r = await c.proxy_relay(relay_proc.address)
                    relay_proc.signal_all(signal.SIGSTOP)
                    order = []
                    try:
                        async def pfwd(name):
                            with pytest.raises(SMPError):
                                await c.proxied(r, b"q" * 24, C.Send(C.MsgFlags(False), b"x"))
                            order.append(name)

                        async def ping():
                            await c.ping()
                            order.append("ping")

                        async with trio.open_nursery() as n:
                            n.start_soon(pfwd, "first")
                            await trio.sleep(0.1)
                            n.start_soon(pfwd, "second")
                            await trio.sleep(0.1)
                            n.start_soon(ping)
                    finally:
                        relay_proc.signal_all(signal.SIGCONT)
                    assert order == expected

    trio_run(main, timeout=60)
