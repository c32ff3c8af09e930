"""``[TRANSPORT] workers = 2`` for real: ``smpfast start --workers 2`` (a supervisor and two
worker processes on one LMDB store). Messages cross between workers, SIGTERM stops all,
SIGKILL of the supervisor takes the workers, and a worker killed under load is replaced
with nothing acknowledged lost (the crash harness in its kill-one-worker mode)."""

from __future__ import annotations

import os
import signal
import time

import trio

import smpfast.client as sc
from smpfast.crypto.keys import Alg, generate_private_key
from smpfast.testing import crash
from smpfast.testing.process import ServerProcess, free_port, init_data_dir


async def _pairs_exchange(address: str, pairs: int, messages: int) -> int:
    """``pairs`` recipient/sender connection pairs (the kernel spreads them over the
    workers), each sending ``messages`` messages, each received and ACKed; the count."""
    received = 0

    async def pair() -> None:
        nonlocal received
        async with sc.connect(address) as rcv, sc.connect(address) as snd:
            q = await rcv.create_queue("ed25519")
            key = generate_private_key(Alg.ED25519)
            await rcv.secure(q, key.public.der)
            for i in range(messages):
                await snd.send(q.snd_id, b"m%d" % i, key)
                with trio.fail_after(10):
                    event = await rcv.next_event()
                assert sc.decrypt_msg(q, event.message).body == b"m%d" % i
                assert await rcv.ack(q, event.message.msg_id) is None
                received += 1

    async with trio.open_nursery() as nursery:
        for _ in range(pairs):
            nursery.start_soon(pair)
    return received


def test_two_worker_processes_serve_and_stop(tmp_path):
    init_data_dir(tmp_path / "srv", free_port())
    server = ServerProcess(tmp_path / "srv", workers=2)
    address = server.start()
    try:
        pids = server.wait_workers()
        assert len(pids) == 2 and server.pid not in pids
        assert trio.run(_pairs_exchange, address, 8, 5) == 40
        # a killed worker is replaced; the server goes on serving
        server.kill_worker(pids[1])
        new = server.wait_workers()
        assert pids[0] in new and pids[1] not in new
        assert "was killed by SIGKILL: starting a new one" in server.log()
        assert trio.run(_pairs_exchange, address, 4, 3) == 12
        assert server.cpu_seconds() > 0
    finally:
        code = server.stop()
    assert code == 0
    log = server.log()
    assert log.count("stopped (exited with code 0)") == 2


def test_sigkill_of_the_supervisor_takes_the_workers(tmp_path):
    init_data_dir(tmp_path / "srv", free_port())
    server = ServerProcess(tmp_path / "srv", workers=2)
    server.start()
    pids = server.wait_workers()
    server.kill()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.05)
    assert not any(_alive(p) for p in pids)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_a_worker_killed_under_load_loses_nothing_acknowledged(tmp_path):
    result = crash.run_crash(4, seed=7, directory=tmp_path, workers=2, kill_workers=True)
    s = result.summary
    assert s["kills"] == 4
    assert s["messages"]["sent_acknowledged"] > 0
    assert not any(s["violations"].values()), crash.format_summary(result)
