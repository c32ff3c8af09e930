"""The server as an operator runs it: `smpfast init/address/start` in a child process,
SIGTERM, restarts and kill -9, with the LMDB store on disk."""

from __future__ import annotations

import socket
import subprocess

import pytest
import trio

import smpfast.client as sc
from smpfast.crypto.keys import Alg, generate_private_key
from smpfast.testing.process import ServerProcess, free_port, init_data_dir, smpfast_command

pytestmark = pytest.mark.slow


def _run(async_fn, *args, timeout: float = 60.0):
    async def guarded():
        with trio.fail_after(timeout):
            return await async_fn(*args)

    return trio.run(guarded)


def test_cli_init_address_start_roundtrip_sigterm(tmp_path):
    data = tmp_path / "data"
    address = init_data_dir(data, free_port())
    shown = subprocess.run(smpfast_command("address", "--dir", str(data)), capture_output=True,
                           text=True, check=True, timeout=60).stdout.strip()
    assert shown == address

    async def roundtrip(addr):
        async with sc.connect(addr) as rcv, sc.connect(addr) as snd:
            q = await rcv.create_queue()
            await snd.send(q.snd_id, b"through the real process")
            with trio.fail_after(10):
                _, msg = await rcv.next_event()
            assert sc.decrypt_msg(q, msg).body == b"through the real process"
            await rcv.ack(q, msg.msg_id)

    server = ServerProcess(data)
    assert server.start() == address
    try:
        _run(roundtrip, address)
    finally:
        code = server.stop()
    assert code == 0, server.log()
    assert "stopping" in server.log()


def _secured_queue_with_messages(address, count):
    async def main():
        async with sc.connect(address) as rcv, sc.connect(address) as snd:
            q = await rcv.create_queue(subscribe=False)
            key = generate_private_key(Alg.ED25519)
            await rcv.secure(q, key.public.der)
            for i in range(count):
                await snd.send(q.snd_id, b"message %d" % i, key)  # returns after OK
            # one delivered but not acknowledged
            first = await rcv.get(q)
            assert sc.decrypt_msg(q, first).body == b"message 0"
            return q, key

    return _run(main)


def _drain(address, q):
    async def main():
        bodies = []
        async with sc.connect(address) as rcv:
            while True:
                msg = await rcv.get(q)
                if msg is None:
                    return bodies
                bodies.append(sc.decrypt_msg(q, msg).body)
                await rcv.ack(q, msg.msg_id)

    return _run(main)


def test_graceful_restart_keeps_undelivered_and_unacknowledged_messages(tmp_path):
    data = tmp_path / "data"
    address = init_data_dir(data, free_port())
    with ServerProcess(data) as server:
        q, key = _secured_queue_with_messages(address, 5)
    assert server.proc.returncode == 0
    with ServerProcess(data):
        assert _drain(address, q) == [b"message %d" % i for i in range(5)]

        async def still_secured():
            async with sc.connect(address) as snd:
                with pytest.raises(sc.SMPError):
                    await snd.send(q.snd_id, b"unsigned")
                await snd.send(q.snd_id, b"signed", key)

        _run(still_secured)


def test_kill_9_right_after_ok_loses_nothing_acknowledged(tmp_path):
    data = tmp_path / "data"
    address = init_data_dir(data, free_port())
    server = ServerProcess(data)
    server.start()
    try:
        q, key = _secured_queue_with_messages(address, 3)

        async def send_then_kill():
            async with sc.connect(address) as snd:
                await snd.send(q.snd_id, b"acknowledged", key)
                server.kill()  # SIGKILL the moment the OK arrived

        _run(send_then_kill)
    finally:
        server.kill()
    with ServerProcess(data):
        assert _drain(address, q) == [b"message 0", b"message 1", b"message 2", b"acknowledged"]


def test_start_initialises_the_default_directory(tmp_path):
    """The README's run command works on a fresh machine: `smpfast start` without --dir
    initialises ./smpfast-data first (on a free port, not 5223), and prints the address once,
    when it listens."""
    port = free_port()
    proc = subprocess.Popen(smpfast_command("start", "--port", str(port)), cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = ""
        for line in proc.stdout:
            if line.startswith("Server address: smp://"):
                break
        assert line.startswith("Server address: smp://") and line.rstrip().endswith(f":{port}")
        with socket.create_connection(("127.0.0.1", port), timeout=10):
            pass  # it accepts connections once the address is out
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=30)
    assert "smp://" not in out + err  # no second address, before or after
    assert (tmp_path / "smpfast-data" / "smpfast.ini").exists()
    assert (tmp_path / "smpfast-data" / "store").is_dir()
