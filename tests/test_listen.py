"""Several ports and both address families: ``bind = ::`` accepts IPv4 and IPv6, falls back to
IPv4 with one log line where IPv6 is disabled; ``port = A,B`` serves both; the address lists
every host of ``init --ip/--fqdn``."""

from __future__ import annotations

import errno
import logging
import socket
import subprocess
from pathlib import Path

import pytest
import trio

from smpfast.protocol.address import parse_server_address
from smpfast.testing.process import ServerProcess, free_port, smpfast_command
from smpfast.transport import BLOCK_SIZE, open_block_connection
from smpfast.transport.listen import open_listeners


def ipv6_loopback_works() -> bool:
    """Whether this machine can listen and connect on ::1 (checked, never assumed)."""
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


async def _accepts(listeners: list[trio.SocketListener], *hosts: str) -> None:
    """A TCP connection to each host, on the listeners' port, reaches one of ``listeners``
    (which are closed after)."""
    port = listeners[0].socket.getsockname()[1]
    accepted = trio.Semaphore(0)

    async def handler(stream: trio.SocketStream) -> None:
        accepted.release()
        await stream.aclose()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(trio.serve_listeners, handler, listeners)
        for host in hosts:
            with trio.fail_after(10):
                stream = await trio.open_tcp_stream(host, port)
                await accepted.acquire()
            await stream.aclose()
        nursery.cancel_scope.cancel()


def test_all_interfaces_means_ipv4_and_ipv6(trio_run, caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        listeners = await open_listeners(0, "::")
        families = sorted(listener.socket.family for listener in listeners)
        ports = {listener.socket.getsockname()[1] for listener in listeners}
        assert len(ports) == 1  # one port for both families, even when asked for an ephemeral one
        if ipv6_loopback_works():
            assert families == sorted([socket.AF_INET, socket.AF_INET6])
            await _accepts(listeners, "127.0.0.1", "::1")
        else:  # then the fallback must have happened, and said so
            assert families == [socket.AF_INET]
            assert "IPv6 is not available" in caplog.text
            await _accepts(listeners, "127.0.0.1")

    trio_run(main)


def test_ipv6_disabled_falls_back_to_ipv4_with_one_line(trio_run, monkeypatch, caplog) -> None:
    real_socket = trio.socket.socket

    def no_ipv6(family=socket.AF_INET, *args, **kwargs):
        if family == socket.AF_INET6:
            raise OSError(errno.EAFNOSUPPORT, "Address family not supported by protocol")
        return real_socket(family, *args, **kwargs)

    monkeypatch.setattr(trio.socket, "socket", no_ipv6)

    async def main() -> None:
        with caplog.at_level(logging.WARNING, logger="smpfast.transport"):
            listeners = await open_listeners(0, "::")
        assert [listener.socket.family for listener in listeners] == [socket.AF_INET]
        assert listeners[0].socket.getsockname()[0] == "0.0.0.0"
        await _accepts(listeners, "127.0.0.1")

    trio_run(main)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert warnings[0].getMessage().startswith("IPv6 is not available on this machine (")
    assert "listening on 0.0.0.0 port 0 (IPv4) only" in warnings[0].getMessage()


def test_a_specific_address_is_bound_as_given(trio_run) -> None:
    async def main() -> None:
        listeners = await open_listeners(0, "127.0.0.1")
        assert [listener.socket.getsockname()[0] for listener in listeners] == ["127.0.0.1"]
        for listener in listeners:
            await listener.aclose()

    trio_run(main)


def test_start_serves_every_port_on_both_families(tmp_path: Path, trio_run) -> None:
    """`smpfast init --ip 203.0.113.5,2001:db8::5 --port A,B`: bind = ::, both ports, and the
    address lists both hosts; then SMP over 127.0.0.1 on each port and over ::1."""
    d = tmp_path / "srv"
    a, b = free_port(), free_port()
    init = subprocess.run(
        smpfast_command("init", "--dir", str(d), "--ip", "203.0.113.5,2001:db8::5", "--port", f"{a},{b}",
                        "--password", "none", "--yes"),
        capture_output=True, text=True, timeout=60,
    )
    assert init.returncode == 0, init.stderr
    address = init.stdout.strip().splitlines()[-1]
    fingerprint = address.split("//")[1].split("@")[0]
    # The reference's format: the hosts as written, comma-separated; port 5223 is not shown,
    # another first port is.
    assert address == f"smp://{fingerprint}@203.0.113.5,2001:db8::5:{a}".replace("2001:db8::5:", "[2001:db8::5]:")
    server_id, _ = parse_server_address(address)
    assert server_id.hosts == ("203.0.113.5", "2001:db8::5") and server_id.port == str(a)
    ini = (d / "smpfast.ini").read_text()
    assert "\nbind = ::\n" in ini and f"\nport = {a},{b}\n" in ini
    with ServerProcess(d) as server:
        assert server.address == address

        async def main() -> None:
            hosts = [("127.0.0.1", a), ("127.0.0.1", b)]
            if ipv6_loopback_works():
                hosts.append(("::1", b))
            for host, port in hosts:
                conn = await open_block_connection(host, port, server_id.key_hash)
                try:
                    with trio.fail_after(10):
                        [hello] = await conn.receive_blocks()
                    assert len(hello) == BLOCK_SIZE, (host, port)
                finally:
                    await conn.aclose()

        trio_run(main)
    log = server.log()
    assert f"port(s) {a},{b}" in log
    assert ("IPv6 is not available" in log) == (not ipv6_loopback_works())
