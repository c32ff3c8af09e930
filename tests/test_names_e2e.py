"""SMP v20 name resolution end to end: smpfast servers on loopback over real TLS at v20 (and
RSLV sent below 20), with the project's client, directly and forwarded through a proxy,
with no resolver and with a real local HTTP resolver (smpfast.testing.resolver)."""

from __future__ import annotations

import pytest
import trio

import smpfast.client as sc
from smpfast.client import SMPError, UnsupportedByVersion
from smpfast.protocol import commands as C
from smpfast.protocol import errors as E
from smpfast.protocol import versions as V
from smpfast.protocol.names import NameRecord, parse_domain
from smpfast.proxy.relays import RelayPoolConfig
from smpfast.server.metrics import metrics_text
from smpfast.server.names import NAME_STATS
from smpfast.server.resolver import ResolverSettings
from smpfast.testing.resolver import LocalResolver, Reply

pytestmark = pytest.mark.slow

V20 = V.NAMES
ALICE = NameRecord("Alice", nickname="alice", location="Lisbon", simplex_contact=("https://simplex.chat/c#x",),
                   simplex_channel=("https://simplex.chat/ch#y",), eth="0x" + "12" * 20, dot=None,
                   owner="0x" + "34" * 20, resolver="0x" + "56" * 20)
TOKEN = "Bearer e2e-token"


def records() -> dict:
    return {
        "alice.simplex": ALICE,
        "broken.simplex": Reply(500, b"upstream down"),
        "garbage.simplex": Reply(200, b"<html>"),
        "huge.simplex": Reply(200, b"{" + b" " * 20000 + b"}"),
        "slow.simplex": Reply(200, ALICE.to_json(), trickle=0.05),
    }


def resolver_settings(lr: LocalResolver, authorization: str | None = TOKEN) -> ResolverSettings:
    return ResolverSettings(lr.endpoint, timeout=0.5, max_response_bytes=16000, authorization=authorization)


def relays() -> RelayPoolConfig:
    return RelayPoolConfig(connect_timeout=5.0, request_timeout=5.0, persist_error_interval=0.0)


def name_error(e: SMPError) -> str:
    return str(e.error)


def stats(server) -> dict[str, int]:
    return {name: server.stats().get(name, 0) for name in NAME_STATS}  # summed over workers


def test_direct_without_a_resolver(smp_server, trio_run):
    async def main():
        async with smp_server(max_version=V20) as srv:
            async with sc.connect(srv.address, max_version=V20) as client:
                assert client.version == V20
                with pytest.raises(SMPError) as e:
                    await client.resolve("alice.simplex")
                assert name_error(e.value) == "NAME NO_RESOLVER"
                # malformed names: CMD SYNTAX from the server (sent raw, past the client's parser)
                reply = await client.request(b"", b"RSLV alice..simplex")
                assert isinstance(reply, C.Err) and reply.error == E.CMD_SYNTAX
            assert stats(srv) == dict.fromkeys(NAME_STATS, 0) | {"rslvReqs": 1, "rslvDisabled": 1}

    trio_run(main)


def test_below_v20_the_server_answers_rslv_the_same(smp_server, trio_run):
    """The reference server does not gate RSLV by version; its client does (so does ours)."""

    async def main():
        async with smp_server(max_version=V20) as srv:
            async with sc.connect(srv.address, max_version=V.RCV_SERVICE) as client:
                assert client.version == 19
                with pytest.raises(UnsupportedByVersion):
                    await client.resolve("alice.simplex")
                reply = await client.request(b"", C.Rslv(parse_domain("alice.simplex")))
                assert reply == C.Err(E.NAME_NO_RESOLVER)
        with LocalResolver(records(), authorization=TOKEN) as lr:
            async with smp_server(max_version=V20, resolver=resolver_settings(lr)) as srv:
                async with sc.connect(srv.address, max_version=V.RCV_SERVICE) as client:
                    assert await client.request(b"", C.Rslv(parse_domain("alice.simplex"))) == C.Rname(ALICE)

    trio_run(main)


def test_direct_with_a_resolver(smp_server, trio_run):
    async def main():
        with LocalResolver(records(), authorization=TOKEN) as lr:
            async with smp_server(max_version=V20, resolver=resolver_settings(lr)) as srv:
                async with sc.connect(srv.address, max_version=V20) as client:
                    assert await client.resolve("Alice.Simplex") == ALICE
                    outcomes = {}
                    for name in ("nobody.simplex", "broken.simplex", "garbage.simplex", "huge.simplex",
                                 "slow.simplex"):
                        with pytest.raises(SMPError) as e:
                            await client.resolve(name)
                        outcomes[name] = name_error(e.value)
                    assert outcomes == {
                        "nobody.simplex": "NAME NOT_FOUND",
                        "broken.simplex": "NAME RESOLVER HTTP 500",
                        "garbage.simplex": "NAME RESOLVER invalid response",
                        "huge.simplex": "NAME RESOLVER response too large",
                        "slow.simplex": "NAME RESOLVER timeout",
                    }
                    await client.ping()  # the connection is fine after all of them
                assert stats(srv) == {"rslvReqs": 6, "rslvSucc": 1, "rslvNotFound": 1, "rslvResolverErrs": 4,
                                      "rslvDisabled": 0}
                await srv.server.refresh_stats()  # as /metrics does: the other workers' too
                text = metrics_text(srv.server.stats_values(), 0.0, 0.0)
                for metric, n in (("reqs", 6), ("success", 1), ("not_found", 1), ("resolver_errs", 4),
                                  ("disabled", 0)):
                    assert f"\nsimplex_smp_names_{metric} {n} 0\n" in text, metric
            paths = [r.path for r in lr.requests]
            assert paths[0] == "/health"  # the start-up probe
            assert "/resolve/alice.simplex" in paths
            assert all(r.headers.get("authorization") == TOKEN for r in lr.requests)

    trio_run(main)


def test_a_wrong_token_is_a_resolver_error(smp_server, trio_run):
    async def main():
        with LocalResolver(records(), authorization=TOKEN) as lr:
            settings = resolver_settings(lr, authorization="Bearer wrong")
            async with smp_server(max_version=V20, resolver=settings) as srv:
                async with sc.connect(srv.address, max_version=V20) as client:
                    with pytest.raises(SMPError) as e:
                        await client.resolve("alice.simplex")
                    assert name_error(e.value) == "NAME RESOLVER HTTP 401"

    trio_run(main)


def test_an_unreachable_resolver_does_not_stop_the_server(smp_server, trio_run):
    async def main():
        with LocalResolver() as lr:
            endpoint = lr.endpoint
        # the resolver is gone: the probe fails (logged), the server serves
        settings = ResolverSettings(endpoint, timeout=0.5, max_response_bytes=16000)
        async with smp_server(max_version=V20, resolver=settings) as srv:
            async with sc.connect(srv.address, max_version=V20) as client:
                with pytest.raises(SMPError) as e:
                    await client.resolve("alice.simplex")
                assert name_error(e.value) == "NAME RESOLVER transport failure"

    trio_run(main)


def test_resolutions_do_not_hold_up_other_commands(smp_server, trio_run):
    """A slow resolution runs off the connection's reader: a later PING is answered first.
    With resolver_concurrency = 1 a second RSLV waits for the first, and the reader with it."""

    async def order(srv) -> list[str]:
        done: list[str] = []
        async with sc.connect(srv.address, max_version=V20) as client:
            async def slow():
                with pytest.raises(SMPError):
                    await client.resolve("slow.simplex")
                done.append("slow")

            async def fast():
                assert await client.resolve("alice.simplex") == ALICE
                done.append("fast")

            async def ping():
                await client.ping()
                done.append("ping")

            async with trio.open_nursery() as nursery:
                for task in (slow, fast, ping):
                    nursery.start_soon(task)
                    await trio.sleep(0.05)  # sent in this order
        return done

    async def main():
        with LocalResolver(records(), authorization=TOKEN) as lr:
            async with smp_server(max_version=V20, resolver=resolver_settings(lr)) as srv:
                assert await order(srv) == ["fast", "ping", "slow"]
            async with smp_server(max_version=V20, resolver=resolver_settings(lr), resolver_concurrency=1) as srv:
                assert (await order(srv))[0] == "slow"

    trio_run(main)


# ---------------------------------------------------------------- forwarded through a proxy

def test_forwarded_without_a_resolver(smp_server, trio_run):
    async def main():
        async with smp_server(max_version=V20) as relay, smp_server(max_version=V20, relays=relays()) as proxy:
            async with sc.connect(proxy.address, max_version=V20) as client:
                r = await client.proxy_relay(relay.address)
                assert r.version == V20  # a proxy at 20 returns the relay's range capped to 8..20
                with pytest.raises(SMPError) as e:
                    await client.proxied_resolve(r, "alice.simplex")
                assert name_error(e.value) == "NAME NO_RESOLVER"
            assert stats(relay) == dict.fromkeys(NAME_STATS, 0) | {"rslvReqs": 1, "rslvDisabled": 1}
            assert stats(proxy)["rslvReqs"] == 0  # the proxy only forwarded it
            assert relay.stats()["pMsgFwdsRecv"] == 1

    trio_run(main)


def test_forwarded_with_a_resolver(smp_server, trio_run):
    async def main():
        with LocalResolver(records(), authorization=TOKEN) as lr:
            async with smp_server(max_version=V20, resolver=resolver_settings(lr)) as relay, \
                    smp_server(max_version=V20, relays=relays()) as proxy:
                async with sc.connect(proxy.address, max_version=V20) as client:
                    r = await client.proxy_relay(relay.address)
                    assert await client.proxied_resolve(r, "alice.simplex") == ALICE
                    for name, error in (("nobody.simplex", "NAME NOT_FOUND"),
                                        ("broken.simplex", "NAME RESOLVER HTTP 500"),
                                        ("slow.simplex", "NAME RESOLVER timeout")):
                        with pytest.raises(SMPError) as e:
                            await client.proxied_resolve(r, name)
                        assert name_error(e.value) == error
                    # several at once over the one proxy→relay link, answered by corrId
                    async with trio.open_nursery() as nursery:
                        got = []

                        async def one():
                            got.append(await client.proxied_resolve(r, "alice.simplex"))

                        for _ in range(5):
                            nursery.start_soon(one)
                    assert got == [ALICE] * 5
                assert stats(relay) == {"rslvReqs": 9, "rslvSucc": 6, "rslvNotFound": 1, "rslvResolverErrs": 2,
                                        "rslvDisabled": 0}
                assert relay.stats()["pMsgFwdsRecv"] == 9

    trio_run(main)


def test_forwarded_below_20_the_relay_answers_the_same(smp_server, trio_run):
    """A relay offering up to 19: the proxied version is 19, the client refuses to forward
    RSLV (as the reference's), but one sent anyway is answered as at 20."""

    async def main():
        with LocalResolver(records(), authorization=TOKEN) as lr:
            async with smp_server(max_version=V.RCV_SERVICE, resolver=resolver_settings(lr)) as relay, \
                    smp_server(max_version=V20, relays=relays()) as proxy:
                async with sc.connect(proxy.address, max_version=V20) as client:
                    r = await client.proxy_relay(relay.address)
                    assert r.version == V.RCV_SERVICE
                    with pytest.raises(UnsupportedByVersion):
                        await client.proxied_resolve(r, "alice.simplex")
                    assert await client.proxied(r, b"", C.Rslv(parse_domain("alice.simplex"))) == C.Rname(ALICE)
                    answer = await client.proxied(r, b"", C.Rslv(parse_domain("nobody.simplex")))
                    assert answer == C.Err(E.NAME_NOT_FOUND)

    trio_run(main)


def test_a_proxy_below_20_returns_no_rslv_range(smp_server, trio_run):
    """A proxy announcing 18 caps PKEY at 17: the client does not forward RSLV (as the
    reference client, which needs the proxied version 20)."""

    async def main():
        async with smp_server(max_version=V20) as relay, smp_server(max_version=18, relays=relays()) as proxy:
            async with sc.connect(proxy.address, max_version=V20) as client:
                r = await client.proxy_relay(relay.address)
                assert r.version == 17
                with pytest.raises(UnsupportedByVersion):
                    await client.proxied_resolve(r, "alice.simplex")

    trio_run(main)


# ---------------------------------------------------------------- from the INI, in a process

def test_smpfast_start_with_names_from_the_ini(tmp_path, trio_run):
    """`[NAMES]` in smpfast.ini wires the resolver into a server process (at v20)."""
    import subprocess

    from smpfast.testing.process import ServerProcess, free_port, init_data_dir, smpfast_command

    data = tmp_path / "srv"
    init_data_dir(data, free_port())
    ini = data / "smpfast.ini"
    text = ini.read_text()
    with LocalResolver(records(), authorization=TOKEN) as lr:
        assert text.count("\nenable = off\n") == 1  # [NAMES]'s, as init writes it
        ini.write_text(text.replace("\nenable = off\n", (
            f"\nenable = on\nresolver_endpoint = {lr.endpoint}/\nresolver_auth = bearer e2e-token\n"
            "resolver_timeout_ms = 500\n"), 1))

        async def main():
            with ServerProcess(data, max_version=V20) as proc:
                async with sc.connect(proc.address, max_version=V20) as client:
                    assert await client.resolve("alice.simplex") == ALICE
                    with pytest.raises(SMPError) as e:
                        await client.resolve("slow.simplex")
                    assert name_error(e.value) == "NAME RESOLVER timeout"
                log = proc.log()
            assert "[NAMES] resolver health probe ok" in log
            assert "e2e-token" not in log

        trio_run(main)
        assert [r.path for r in lr.requests][:1] == ["/health"]
    # a bad value: one line naming the key, no traceback
    ini.write_text(text.replace("enable = off", "enable = on\nresolver_endpoint = http://10.0.0.1\n"
                                                "resolver_auth = bearer x", 1))
    proc = subprocess.run(smpfast_command("start", "--dir", str(data)), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    [line] = proc.stderr.splitlines()
    assert line.startswith("smpfast: error: [NAMES] resolver_endpoint: http with resolver_auth on a non-loopback")
