"""What the server logs about failed TLS handshakes: once, with one prefix, no address."""

from __future__ import annotations

import logging

import pytest
import trio

import smpfast.client as sc


def test_log_tls_errors_prefix_once(smp_server, trio_run, caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        async with smp_server(log_tls_errors=True) as srv:
            stream = await trio.open_tcp_stream("127.0.0.1", srv.port)
            await stream.send_all(b"GET / HTTP/1.1\r\n\r\n" * 20)  # not a TLS ClientHello
            with trio.move_on_after(10):
                while await stream.receive_some(4096):
                    pass
            await stream.aclose()
            async with sc.connect(srv.address) as client:  # the server is fine
                await client.ping()

    with caplog.at_level(logging.WARNING, logger="smpfast"):
        trio_run(main)
    messages = [r.getMessage() for r in caplog.records if "TLS handshake" in r.getMessage()]
    assert len(messages) == 1, messages
    assert messages[0].count("TLS handshake failed") == 1
    assert "127.0.0.1" not in messages[0]
