"""End to end: ``smpfast start`` in a child process (ServerProcess) and closed-loop clients
(smpfast.client, v7 over TLS on 127.0.0.1) in this process.

Groups (compare the members of a group within one run):

- ``e2e: 135 SUBs`` -- one round re-subscribes 135 queues on one connection: one batch
  (one block, one reply block) against 135 requests each waiting for its reply.
- ``e2e: 64 messages`` -- one round sends one 100-byte message into each of 64 queues and
  the subscribed recipient ACKs every MSG: batched (64 SENDs in one block, then the 64 ACKs
  in one block) against unbatched (send, wait for the MSG, ACK; one message at a time).
- ``e2e: core`` -- the batched message round against a server with the compiled core and
  one with ``SMPFAST_PURE=1`` (the pure-Python twins); the client is the same.
- ``e2e: load messaging`` -- one run of the load generator's messaging scenario (its
  Python API, ``smpfast.load.main.execute``): LOAD_PAIRS closed-loop sender/recipient
  pairs, LOAD_MESSAGES messages of 100 bytes, each decrypted, checked and ACKed, against
  the compiled and the pure core. A round includes the scenario's connects and queue
  set-up; the load's own throughput and latency are in ``extra_info``.

Each benchmark also records the server's CPU time per message or command
(``extra_info.server_cpu_us_per_op``, from /proc of the child): less noisy than wall time
on a shared machine, and free of the client's own CPU. The servers run with
``durability = none`` (the broker benchmarks measure fsync); commit interval 2 ms.

    .venv/bin/pytest bench/test_bench_e2e.py --benchmark-only
"""

from __future__ import annotations

import os
import threading

import pytest
import trio

from smpfast.client import SMPClient
from smpfast.crypto.keys import Alg, generate_private_key
from smpfast.protocol import commands as C
from smpfast.testing.process import ServerProcess, free_port, init_data_dir

SUBS = 135
MESSAGES = 64
BODY = os.urandom(100)
ROUND_TIMEOUT = 30.0
LOAD_PAIRS = 8
LOAD_QUEUES = 2000
LOAD_MESSAGES = 400


class TrioPortal:
    """A trio loop on its own thread, so that pytest-benchmark's synchronous rounds can
    drive clients that stay connected between rounds."""

    def __init__(self) -> None:
        self._ready = threading.Event()
        self._thread = threading.Thread(target=trio.run, args=(self._main,), daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the trio thread did not start")

    async def _main(self) -> None:
        self._stop = trio.Event()
        async with trio.open_nursery() as nursery:
            self.nursery = nursery
            self.token = trio.lowlevel.current_trio_token()
            self._ready.set()
            await self._stop.wait()
            nursery.cancel_scope.cancel()

    def run(self, afn, *args):
        return trio.from_thread.run(afn, *args, trio_token=self.token)

    def connect(self, address: str) -> SMPClient:
        client = self.run(SMPClient.connect, address)
        self.run(self.nursery.start, client.run)
        return client

    def close(self) -> None:
        trio.from_thread.run_sync(self._stop.set, trio_token=self.token)
        self._thread.join(10)


class Setup:
    """A server (compiled or pure core) with queues and connected clients:
    ``subscriber`` holds SUBS queues; ``sender`` and ``recipient`` MESSAGES secured queues."""

    def __init__(self, directory, pure: bool) -> None:
        init_data_dir(directory, free_port())
        ini = directory / "smpfast.ini"
        text = ini.read_text()
        assert "durability = fsync" in text
        ini.write_text(text.replace("durability = fsync", "durability = none"))
        self.server = ServerProcess(directory, env={"SMPFAST_PURE": "1" if pure else "0"})
        self.server.start()
        # The core the child really runs: the compiled one maps its extension module.
        with open(f"/proc/{self.server.pid}/maps") as f:
            mapped = "_core/framing.cpython" in f.read()
        assert mapped != pure, f"server core is not {'pure' if pure else 'compiled'}"
        self.portal = TrioPortal()
        address = self.server.address
        self.subscriber = self.portal.connect(address)
        self.recipient = self.portal.connect(address)
        self.sender = self.portal.connect(address)
        self.sub_queues = self.portal.run(self.subscriber.create_queues, SUBS)
        self.queues = self.portal.run(self.recipient.create_queues, MESSAGES)
        self.keys = [generate_private_key(Alg.ED25519) for _ in self.queues]
        replies = self.portal.run(self.recipient.batch, [
            (q.rcv_id, C.Key(k.public.der), q.rcv_auth_key) for q, k in zip(self.queues, self.keys)
        ])
        assert all(isinstance(r, C.Ok) for r in replies)
        self.by_rid = {q.rcv_id: q for q in self.queues}
        assert self.subscriber.version == 7

    def close(self) -> None:
        self.portal.close()
        self.server.stop()

    # ------------------------------------------------------------------ workloads

    async def subscribe_round(self, batched: bool) -> None:
        with trio.fail_after(ROUND_TIMEOUT):
            if batched:
                await self.subscriber.subscribe_many(self.sub_queues)
            else:
                for q in self.sub_queues:
                    await self.subscriber.subscribe(q)

    async def message_round(self, batched: bool) -> None:
        sender, recipient, by_rid = self.sender, self.recipient, self.by_rid
        flags = C.MsgFlags(False)
        with trio.fail_after(ROUND_TIMEOUT):
            if batched:
                replies = await sender.batch([(q.snd_id, C.Send(flags, BODY), k) for q, k in zip(self.queues, self.keys)])
                assert all(isinstance(r, C.Ok) for r in replies), replies
                acks = []
                for _ in self.queues:
                    rid, msg = await recipient.next_event()
                    assert isinstance(msg, C.Msg), msg
                    acks.append((rid, C.Ack(msg.msg_id), by_rid[rid].rcv_auth_key))
                replies = await recipient.batch(acks)
                assert all(isinstance(r, C.Ok) for r in replies), replies
            else:
                for q, k in zip(self.queues, self.keys):
                    await sender.send(q.snd_id, BODY, sender_key=k)
                    rid, msg = await recipient.next_event()
                    assert rid == q.rcv_id and isinstance(msg, C.Msg), msg
                    assert await recipient.ack(q, msg.msg_id) is None


    async def load_round(self, results: list) -> None:
        from smpfast.load.config import LoadConfig  # the load generator is optional here
        from smpfast.load.main import execute
        from smpfast.load.progress import Progress

        cfg = LoadConfig(self.server.address, scenario="messaging", pairs=LOAD_PAIRS,
                         messages=LOAD_MESSAGES, size=100, quiet=True)
        cfg.validate()
        with trio.fail_after(ROUND_TIMEOUT):
            result, _, _ = await execute(cfg, Progress.for_options(True))
        m = result.stats.measured
        assert (m.sent, m.received, m.errors) == (LOAD_MESSAGES, LOAD_MESSAGES, 0)
        results.append((m.received / result.elapsed, result.stats.latencies[result.latency].summary()))

    async def load_subscribe_round(self, batch: int, results: list) -> None:
        from smpfast.load.config import LoadConfig
        from smpfast.load.main import execute
        from smpfast.load.progress import Progress

        cfg = LoadConfig(self.server.address, scenario="subscribe", queues=LOAD_QUEUES, batch=batch,
                         connections=4, quiet=True)
        cfg.validate()
        with trio.fail_after(ROUND_TIMEOUT):
            result, _, _ = await execute(cfg, Progress.for_options(True))
        m = result.stats.measured
        assert (m.sent, m.received, m.errors) == (LOAD_QUEUES, LOAD_QUEUES, 0)
        results.append(m.received / result.elapsed)


@pytest.fixture(scope="module")
def setups(tmp_path_factory):
    """Setup per core, started on first use and stopped at the end of the module."""
    made: dict[str, Setup] = {}

    def get(core: str) -> Setup:
        if core not in made:
            made[core] = Setup(tmp_path_factory.mktemp(f"e2e-{core}"), pure=core == "pure")
        return made[core]

    yield get
    for s in made.values():
        s.close()


def _measure(benchmark, setup: Setup, fn, ops_per_round: int, rounds: int) -> None:
    """Benchmark ``fn`` (one round) and record the server's CPU time per operation."""
    setup.portal.run(fn)  # warm-up, and fails loudly if the workload is broken
    cpu0 = setup.server.cpu_seconds()
    benchmark.pedantic(lambda: setup.portal.run(fn), rounds=rounds, iterations=1)
    cpu = setup.server.cpu_seconds() - cpu0
    benchmark.extra_info["server_cpu_us_per_op"] = round(cpu / (rounds * ops_per_round) * 1e6, 1)
    benchmark.extra_info["ops_per_round"] = ops_per_round


@pytest.mark.parametrize("mode", ["batched", "unbatched"])
def test_e2e_subscribe(benchmark, setups, mode):
    benchmark.group = f"e2e: {SUBS} SUBs on one connection (per round)"
    s = setups("compiled")
    _measure(benchmark, s, lambda: s.subscribe_round(mode == "batched"), SUBS, rounds=10)


@pytest.mark.parametrize("mode", ["batched", "unbatched"])
def test_e2e_messages(benchmark, setups, mode):
    benchmark.group = f"e2e: {MESSAGES} messages SEND→MSG→ACK, closed loop (per round)"
    s = setups("compiled")
    _measure(benchmark, s, lambda: s.message_round(mode == "batched"), MESSAGES, rounds=5)


@pytest.mark.parametrize("core", ["compiled", "pure"])
def test_e2e_core(benchmark, setups, core):
    benchmark.group = f"e2e: core, {MESSAGES} batched messages (per round)"
    s = setups(core)
    _measure(benchmark, s, lambda: s.message_round(True), MESSAGES, rounds=20)


@pytest.mark.parametrize("core", ["compiled", "pure"])
def test_e2e_load_messaging(benchmark, setups, core):
    benchmark.group = f"e2e: load messaging scenario, {LOAD_PAIRS} pairs × {LOAD_MESSAGES} messages (per run)"
    s = setups(core)
    results: list = []
    _measure(benchmark, s, lambda: s.load_round(results), LOAD_MESSAGES, rounds=3)
    measured = results[1:]  # results[0] is _measure's warm-up run
    rates = sorted(r for r, _ in measured)
    p99s = sorted(lat["p99"] for _, lat in measured)
    benchmark.extra_info["load_messages_per_second_median"] = round(rates[len(rates) // 2], 1)
    benchmark.extra_info["load_p99_ms_median"] = p99s[len(p99s) // 2]


@pytest.mark.parametrize("mode", ["batched", "unbatched"])
def test_e2e_load_subscribe(benchmark, setups, mode):
    """The load generator's reconnect storm: LOAD_QUEUES queues re-subscribed from 4
    connections in batches of 135 (batched) or one SUB per block (unbatched). The time
    includes creating the queues; ``subs_per_second_median`` is the storm alone."""
    benchmark.group = f"e2e: load subscribe scenario, {LOAD_QUEUES} queues (per run)"
    s = setups("compiled")
    results: list = []
    batch = 135 if mode == "batched" else 1
    _measure(benchmark, s, lambda: s.load_subscribe_round(batch, results), LOAD_QUEUES, rounds=3)
    rates = sorted(results[1:])
    benchmark.extra_info["subs_per_second_median"] = round(rates[len(rates) // 2], 1)
