"""Statistics: the reference's counters after a scripted workload through the real server,
the Prometheus endpoint scraped over HTTP on 127.0.0.1, the daily stats CSV line, the log
summary; and the same from `smpfast start` configured by its INI."""

from __future__ import annotations

import datetime
import logging
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families

import smpfast.client as sc
from smpfast.crypto.keys import Alg, generate_private_key
from smpfast.server.stats import CSV_COLUMNS, GAUGES, STATS_FILE, csv_line, seconds_until
from smpfast.testing.process import ServerProcess, free_port, init_data_dir

# What run_workload does, in the reference's counter names.
EXPECTED_COUNTERS = {
    "qCreated": 3,
    "qSecured": 1,
    "msgSent": 3,
    "msgSentAuth": 2,
    "msgSentLarge": 1,
    "msgGet": 1,
    "msgGetNoMsg": 1,
    "msgRecv": 3,
    "msgRecvGet": 1,
    "qSub": 1,
    "qDeletedAll": 1,
    "qDeletedNew": 1,
}
EXPECTED_GAUGES = {"qCount": 2, "msgCount": 0}


async def run_workload(address: str) -> None:
    """3 queues; KEY; 3 SENDs; GET on an empty and a full queue; SUB with messages waiting;
    3 ACKs; DEL; SENDs unsigned to a secured and to a suspended queue (AUTH, counted
    once by verification, once by the queue's status) and a too large SEND."""
    async with sc.connect(address) as client:
        q0, q1, q2 = [await client.create_queue(subscribe=False) for _ in range(3)]
        sender = generate_private_key(Alg.ED25519)
        await client.secure(q0, sender)
        await client.send(q0.snd_id, b"one", sender)
        await client.send(q0.snd_id, b"two", sender)
        await client.send(q1.snd_id, b"three")
        with pytest.raises(sc.SMPError):
            await client.send(q0.snd_id, b"unsigned to a secured queue")
        assert await client.get(q2) is None
        msg = await client.get(q1)
        assert msg is not None and await client.ack(q1, msg.msg_id) is None
        await client.subscribe(q0)
        _, first = await client.next_event(timeout=10)
        second = await client.ack(q0, first.msg_id)
        assert second is not None and await client.ack(q0, second.msg_id) is None
        await client.delete(q2)
        await client.suspend(q1)
        with pytest.raises(sc.SMPError):
            await client.send(q1.snd_id, b"to a suspended queue")
        with pytest.raises(sc.SMPError):
            await client.send(q0.snd_id, b"x" * 16100, sender)  # over 16088, still one block


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
        assert reply.status == 200 and reply.headers["Content-Type"].startswith("text/plain")
        text = reply.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def test_counters_metrics_and_csv_after_a_workload(smp_server, trio_run, tmp_path: Path) -> None:
    stats_file = tmp_path / STATS_FILE

    async def main() -> None:
        async with smp_server("lmdb", metrics_port=0, stats_file=str(stats_file), stats_interval=0.2) as srv:
            await run_workload(srv.address)
            stats = srv.stats()  # summed over the workers
            for name, n in EXPECTED_COUNTERS.items():
                assert stats.get(name, 0) == n, name
            assert srv.server.stats_gauges()["qCount"] == 2
            # Over HTTP on 127.0.0.1, from a thread: the server's loop keeps running.
            samples = await trio.to_thread.run_sync(scrape, srv.server.metrics_port)
            assert samples[("simplex_smp_queues_created", ())] == 3
            assert samples[("simplex_smp_queues_secured", ())] == 1
            assert samples[("simplex_smp_queues_deleted", (("type", "all"),))] == 1
            assert samples[("simplex_smp_queues_deleted", (("type", "new"),))] == 1
            assert samples[("simplex_smp_queues_deleted", (("type", "secured"),))] == 0
            assert samples[("simplex_smp_messages_sent", ())] == 3
            assert samples[("simplex_smp_messages_received", ())] == 3
            assert samples[("simplex_smp_messages_sent_errors", (("type", "auth"),))] == 2
            assert samples[("simplex_smp_messages_sent_errors", (("type", "large"),))] == 1
            assert samples[("simplex_smp_messages_notify_get_sent", ())] == 1
            assert samples[("simplex_smp_messages_notify_get_errors", (("type", "nomsg"),))] == 1
            assert samples[("simplex_smp_subscribtion_successes", ())] == 1
            assert samples[("simplex_smp_queues_total1", ())] == 2
            assert samples[("simplex_smp_messages_total", ())] == 0
            # Wait for a line written after the workload.
            done = time.time()
            with trio.fail_after(10):
                while not stats_file.exists() or _last_written(stats_file) < done:
                    await trio.sleep(0.05)
        lines = stats_file.read_text().splitlines()
        rows = [dict(zip(CSV_COLUMNS, line.split(","))) for line in lines]
        # the reference's 7.x line: 96 columns of 6.5.5, then the five name-resolution ones
        assert all(len(line.split(",")) == len(CSV_COLUMNS) == 101 for line in lines)
        assert rows[0]["fromTime"] == datetime.datetime.now(datetime.timezone.utc).date().isoformat()
        # Each line holds the counts since the one before: together, the whole workload.
        for name, n in EXPECTED_COUNTERS.items():
            if name in CSV_COLUMNS:
                assert sum(int(r[name]) for r in rows) == n, name
        for name, n in EXPECTED_GAUGES.items():
            assert int(rows[-1][name]) == n, name
        assert int(rows[-1]["queueCount"]) == 2

    trio_run(main)


def _last_written(path: Path) -> float:
    return path.stat().st_mtime


def test_metrics_endpoint_answers_only_metrics(smp_server, trio_run) -> None:
    async def main() -> None:
        async with smp_server(metrics_port=0) as srv:
            port = srv.server.metrics_port

            def other_path() -> int:
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10)
                except urllib.error.HTTPError as e:
                    return e.code
                return 200

            assert await trio.to_thread.run_sync(other_path) == 404
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            await stream.send_all(b"garbage\r\n\r\n")
            reply = b""
            while chunk := await stream.receive_some(4096):
                reply += chunk
            assert reply.startswith(b"HTTP/1.0 400")
            # The SMP side is unaffected.
            async with sc.connect(srv.address) as client:
                await client.ping()

    trio_run(main)


def test_log_summary_line(smp_server, trio_run, caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        async with smp_server(stats_summary_interval=0.1) as srv:
            async with sc.connect(srv.address) as client:
                await client.create_queue()
                await trio.sleep(0.3)

    with caplog.at_level(logging.INFO, logger="smpfast.server"):
        trio_run(main)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("stats: ")]
    assert lines and "qCreated=1" in lines[-1] and "queues=1" in lines[-1]
    assert "127.0.0.1" not in "\n".join(lines)  # no addresses in the log


def test_csv_line_columns_and_schedule() -> None:
    line = csv_line(datetime.date(2026, 12, 3), {"qCreated": 5, "msgSent": 7, "ntfCount": 2, "rslvReqs": 4,
                                                 "rslvDisabled": 3})
    fields = line.split(",")
    assert fields[0] == "2026-12-03" and len(fields) == 101
    # v20: the last five columns are the reference's name-resolution counters
    assert fields[-5:] == ["4", "0", "0", "0", "3"]
    assert fields[1] == "5" and fields[4] == "7" and fields[CSV_COLUMNS.index("ntfCount")] == "2"
    assert fields[2] == "0"  # qSecured: absent counts as 0
    assert set(GAUGES) <= set(CSV_COLUMNS)
    midnight = 1_780_000_000 - 1_780_000_000 % 86400
    assert seconds_until(midnight + 10, 0, 86400) == 86390
    assert seconds_until(midnight, 0, 86400) == 86400
    assert seconds_until(midnight + 10, 3600, 86400) == 3590


@pytest.mark.slow
def test_smpfast_start_serves_metrics_and_writes_stats_from_the_ini(tmp_path: Path, trio_run) -> None:
    data = tmp_path / "srv"
    init_data_dir(data, free_port())
    metrics_port = free_port()
    ini = data / "smpfast.ini"
    text = ini.read_text().replace("log_stats = off", "log_stats = on")
    text = text.replace("# port = 9090", f"port = {metrics_port}")
    ini.write_text(text)
    with ServerProcess(data) as server:
        assert server.address is not None
        trio_run(lambda: _one_queue(server.address))
        samples = scrape(metrics_port)
        assert samples[("simplex_smp_queues_created", ())] == 1
        assert samples[("simplex_smp_queues_total1", ())] == 1
    log = server.log()
    assert f"http://127.0.0.1:{metrics_port}/metrics" in log and STATS_FILE in log


async def _one_queue(address: str) -> None:
    async with sc.connect(address) as client:
        await client.create_queue()
