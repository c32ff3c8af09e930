"""Server CPU per echoed 16 KB block: the server's connections (``serve_blocks``: TLS on the
socket, SocketBlockConnection), the MemoryBIO loop (BlockConnection, the client's) and
trio.SSLStream.

The echo server runs in its own process (this file, run as a script) so its CPU time is not
mixed with the client's; it reports process CPU seconds from the end of the handshake to EOF
for each connection. The client is a blocking ssl socket here, sending WINDOW blocks per write
and reading their echoes back. Run: pytest bench/test_bench_transport.py -s
"""

from __future__ import annotations

import os
import socket
import ssl
import statistics
import subprocess
import sys
import time

import pytest

BLOCK = 16384
BLOCKS = 1000  # per round (16 MB each way)
WINDOW = 8  # blocks per client write
ROUNDS = 5
MODES = ("serve_blocks", "memorybio", "sslstream")

RESULTS: dict[str, float] = {}  # mode -> median server CPU us per block


# -- server process -------------------------------------------------------------------------


def _serve(mode: str, chain: str, key: str) -> None:
    import trio

    from smpfast.transport import BLOCK_SIZE, BlockConnection, serve_blocks, server_context

    ctx = server_context(chain, key)

    def report(cpu: float, n: int) -> None:
        print(f"{cpu} {n}", flush=True)

    async def block_echo(conn) -> None:
        t0, n = time.process_time(), 0
        while True:
            blocks = await conn.receive_blocks()
            if not blocks:
                break
            n += len(blocks)
            await conn.send_blocks(blocks)
        report(time.process_time() - t0, n)

    async def memorybio_echo(stream) -> None:
        conn = BlockConnection(stream, ctx, server_side=True)
        try:
            await conn.handshake()
            await block_echo(conn)
        finally:
            await conn.aclose()

    async def sslstream_echo(stream) -> None:
        s = trio.SSLStream(stream, ctx, server_side=True)
        try:
            await s.do_handshake()
            t0, n, buf = time.process_time(), 0, bytearray()
            while True:
                try:
                    data = await s.receive_some(256 * 1024)
                except trio.BrokenResourceError:
                    data = b""
                if not data:
                    break
                buf += data
                whole = len(buf) - len(buf) % BLOCK_SIZE
                if whole:
                    out = bytes(buf[:whole])
                    del buf[:whole]
                    n += whole // BLOCK_SIZE
                    await s.send_all(out)
            report(time.process_time() - t0, n)
        finally:
            await trio.aclose_forcefully(stream)

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            if mode == "serve_blocks":
                listeners = await nursery.start(
                    lambda task_status: serve_blocks(
                        block_echo, 0, ctx, host="127.0.0.1", task_status=task_status
                    )
                )
            elif mode == "memorybio":
                listeners = await nursery.start(
                    lambda task_status: trio.serve_tcp(
                        memorybio_echo, 0, host="127.0.0.1", task_status=task_status
                    )
                )
            else:
                listeners = await nursery.start(
                    lambda task_status: trio.serve_tcp(
                        sslstream_echo, 0, host="127.0.0.1", task_status=task_status
                    )
                )
            print(listeners[0].socket.getsockname()[1], flush=True)

    trio.run(main)


# -- client side ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server_files(tmp_path_factory):
    from smpfast.testing.throwaway_certs import write_server_files

    return write_server_files(tmp_path_factory.mktemp("bench-tls"))


@pytest.fixture(scope="module")
def servers(server_files):
    procs = {}
    try:
        for mode in MODES:
            proc = subprocess.Popen(
                [sys.executable, __file__, mode]
                + [str(server_files.chain_file), str(server_files.key_file)],
                stdout=subprocess.PIPE,
                text=True,
            )
            procs[mode] = (proc, int(proc.stdout.readline()))
        yield procs
    finally:
        for proc, _ in procs.values():
            proc.terminate()
            proc.wait(10)


def _client_context() -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def echo_round(proc: subprocess.Popen, port: int, nblocks: int = BLOCKS) -> float:
    """One connection echoing nblocks; returns the server's CPU us per block."""
    payload = os.urandom(BLOCK * WINDOW)
    buf = bytearray(len(payload))
    with socket.create_connection(("127.0.0.1", port), timeout=30) as raw:
        with _client_context().wrap_socket(raw) as s:
            assert s.cipher()[0] == "TLS_CHACHA20_POLY1305_SHA256"
            for _ in range(nblocks // WINDOW):
                s.sendall(payload)
                view, got = memoryview(buf), 0
                while got < len(buf):
                    k = s.recv_into(view[got:])
                    assert k, "server closed early"
                    got += k
                assert buf == payload
    cpu, n = proc.stdout.readline().split()
    assert int(n) == nblocks // WINDOW * WINDOW
    return float(cpu) / int(n) * 1e6


@pytest.mark.parametrize("mode", MODES)
def test_server_cpu_per_echoed_block(benchmark, servers, mode):
    proc, port = servers[mode]
    echo_round(proc, port, 40)  # warm-up
    samples: list[float] = []
    benchmark.pedantic(lambda: samples.append(echo_round(proc, port)), rounds=ROUNDS, iterations=1)
    RESULTS[mode] = statistics.median(samples)
    benchmark.extra_info["server_cpu_us_per_block"] = round(RESULTS[mode], 1)
    print(f"\n{mode}: server CPU {RESULTS[mode]:.1f} us per echoed 16 KB block")


def test_cpu_ratio(servers):
    for mode in MODES:
        if mode not in RESULTS:  # run alone (-k): measure here
            proc, port = servers[mode]
            RESULTS[mode] = statistics.median(echo_round(proc, port) for _ in range(3))
    ratio = RESULTS["serve_blocks"] / RESULTS["sslstream"]
    print(
        f"\nserve_blocks (TLS on the socket) {RESULTS['serve_blocks']:.1f} us, MemoryBIO loop "
        f"{RESULTS['memorybio']:.1f} us, trio.SSLStream {RESULTS['sslstream']:.1f} us per block: "
        f"serve_blocks/SSLStream {ratio:.2f}, serve_blocks/MemoryBIO "
        f"{RESULTS['serve_blocks'] / RESULTS['memorybio']:.2f}"
    )
    assert ratio < 1.0


if __name__ == "__main__":
    _serve(*sys.argv[1:4])
