"""smpfast load end to end against the in-process smpfast server on 127.0.0.1.

Every run is bounded (a few hundred messages or a second or two, under trio_run's
timeout); nothing asserts on timing: counts, schema and exit codes only."""

from __future__ import annotations

import io
import json
import math

import jsonschema
import pytest

from smpfast.load import exitcodes
from smpfast.load.config import LoadConfig, Thresholds, Warmup
from smpfast.load.main import run_load
from smpfast.load.progress import Progress
from smpfast.load.report import load_schema
from smpfast.server.broker import BrokerConfig

VALIDATOR = jsonschema.Draft202012Validator(load_schema())


def _load(smp_server, trio_run, *, progress=None, server=None, timeout=60.0, **options):
    """Run one load against a fresh in-process server; returns (exit code, report)."""
    out = io.StringIO()

    async def main():
        async with smp_server(**(server or {})) as srv:
            cfg = LoadConfig(srv.address, quiet=progress is None, **options)
            cfg.validate()
            return await run_load(cfg, progress, out)

    code, doc = trio_run(main, timeout=timeout)
    if doc is not None:
        VALIDATOR.validate(doc)
        assert "result:" in out.getvalue()
    return code, doc


def _counts(doc):
    c = doc["results"]["counts"]
    return c["sent"], c["received"], c["errors"]


def _adds_up(doc):
    r = doc["results"]
    sent, received, errors = _counts(doc)
    assert sent == received + errors
    assert errors == sum(r["errors_by_type"].values())
    w = r["warmup"]
    assert w["sent"] == w["received"] + w["errors"]


def test_messaging_closed_loop_report(smp_server, trio_run, tmp_path):
    path = tmp_path / "load.json"
    code, doc = _load(smp_server, trio_run, pairs=2, queues=5, messages=200, warmup=Warmup(messages=20),
                      size=300, concurrency=2, json_path=str(path))
    assert code == exitcodes.OK
    assert json.loads(path.read_text()) == doc  # the file is the report
    VALIDATOR.validate(json.loads(path.read_text()))
    assert _counts(doc) == (200, 200, 0)
    _adds_up(doc)
    r = doc["results"]
    assert r["warmup"]["sent"] == 20
    assert r["latency_ms"]["name"] == "end_to_end" and r["latency_ms"]["count"] == 200
    assert r["latencies_ms"]["send_ok"]["count"] == 200
    assert r["throughput"]["per_second"] > 0
    assert r["traffic"]["total"]["connections_opened"] == 4
    # a SEND and an ACK per message; each recipient's last ACK may still be in flight when
    # the run's counters are read
    assert r["traffic"]["run"]["transmissions_sent"] >= 2 * 220 - 2
    assert r["traffic"]["run"]["blocks_sent"] >= 220  # ACKs may share blocks, SENDs do not
    assert doc["configuration"]["queues"] == 5 and doc["configuration"]["model"] == "closed"
    assert doc["server"]["version"] == 7 and doc["passed"] and doc["thresholds"] == []
    assert doc["environment"]["cpu_count"] >= 1


def test_messaging_duration_drains_everything(smp_server, trio_run):
    # 3 pairs share 2 connections per side
    code, doc = _load(smp_server, trio_run, pairs=3, connections=2, duration=1.0, warmup=Warmup(seconds=0.3),
                      concurrency=3)
    assert code == exitcodes.OK
    assert doc["results"]["traffic"]["total"]["connections_opened"] == 4
    sent, received, errors = _counts(doc)
    assert sent > 0 and errors == 0 and sent == received
    _adds_up(doc)
    phases = {row["phase"] for row in doc["series"]}
    assert "measure" in phases and doc["series"][-1]["phase"] == "drain"
    assert doc["results"]["scenario"]["lost"] == 0


@pytest.mark.parametrize("limits", [Thresholds(min_throughput=1e12), Thresholds(max_p99_ms=0.000001)],
                         ids=["min-throughput", "max-p99"])
def test_unmeetable_threshold_exits_2(smp_server, trio_run, limits):
    code, doc = _load(smp_server, trio_run, messages=30, thresholds=limits)
    assert code == exitcodes.THRESHOLD == 2
    assert doc["exit_code"] == 2 and not doc["passed"]
    [check] = doc["thresholds"]
    assert not check["passed"]


def test_thresholds_that_hold_exit_0(smp_server, trio_run):
    code, doc = _load(smp_server, trio_run, messages=30,
                      thresholds=Thresholds(max_p99_ms=60_000, min_throughput=0.001, max_errors=0))
    assert code == exitcodes.OK and doc["passed"] and len(doc["thresholds"]) == 3


def test_send_errors_are_counted_and_add_up(smp_server, trio_run):
    # A queue quota of 1 with an open loop that does not wait for deliveries: some SENDs
    # get ERR QUOTA (how many depends on timing); every message is accounted for anyway.
    code, doc = _load(smp_server, trio_run, server={"broker_config": BrokerConfig(quota=1)},
                      pairs=1, rate=2000.0, messages=200, concurrency=50, drain_timeout=5.0)
    assert code == exitcodes.OK
    assert _counts(doc)[0] == 200
    _adds_up(doc)
    assert all(k.startswith("SEND ERR") for k in doc["results"]["errors_by_type"])


def test_max_errors_threshold_counts_errors(smp_server, trio_run):
    code, doc = _load(smp_server, trio_run, server={"broker_config": BrokerConfig(quota=1)},
                      pairs=1, rate=5000.0, messages=300, concurrency=100,
                      thresholds=Thresholds(max_errors=0))
    errors = doc["results"]["counts"]["errors"] + doc["results"]["other_errors"]
    assert code == (exitcodes.THRESHOLD if errors else exitcodes.OK)
    _adds_up(doc)


@pytest.mark.parametrize("batch, concurrency", [(1, None), (135, None), (10, 3)])
def test_subscribe(smp_server, trio_run, batch, concurrency):
    n, conns = 400, 3
    code, doc = _load(smp_server, trio_run, scenario="subscribe", queues=n, connections=conns, batch=batch,
                      concurrency=concurrency)
    assert code == exitcodes.OK
    assert _counts(doc) == (n, n, 0)
    r = doc["results"]
    s = r["scenario"]
    assert r["unit"] == "subscriptions" and r["throughput"]["mb_per_second"] is None
    assert s["batches"] == sum(math.ceil(k / batch) for k in (134, 133, 133))
    assert r["latency_ms"]["name"] == "batch" and r["latency_ms"]["count"] == s["batches"]
    assert r["latencies_ms"]["connect"]["count"] == conns
    assert r["traffic"]["run"]["transmissions_sent"] == n
    assert r["traffic"]["run"]["connections_opened"] == conns
    # one block per batch (+ the hellos)
    assert r["traffic"]["run"]["blocks_sent"] == s["batches"] + conns


def test_fanout(smp_server, trio_run):
    G, M = 6, 25
    code, doc = _load(smp_server, trio_run, scenario="fanout", group=G, connections=2, messages=M,
                      warmup=Warmup(messages=5), concurrency=2)
    assert code == exitcodes.OK
    assert _counts(doc) == (G * M, G * M, 0)
    _adds_up(doc)
    r = doc["results"]
    assert r["warmup"]["sent"] == 5 * G
    assert r["scenario"]["fanouts_sent"] == M and r["scenario"]["fanouts_complete"] == M
    assert r["latencies_ms"]["fanout"]["count"] == M and r["latencies_ms"]["delivery"]["count"] == G * M
    assert r["latencies_ms"]["send_ok"]["count"] == M


def test_open_loop_rate(smp_server, trio_run):
    # The schedule fixes what is sent: rate × duration messages, split over the pairs.
    code, doc = _load(smp_server, trio_run, pairs=2, queues=4, rate=200.0, duration=1.0)
    assert code == exitcodes.OK
    assert doc["configuration"]["model"] == "open" and doc["configuration"]["rate"] == 200.0
    assert _counts(doc) == (200, 200, 0)
    assert doc["results"]["scenario"]["unsent"] == 0


def test_open_loop_rate_with_message_count(smp_server, trio_run):
    code, doc = _load(smp_server, trio_run, pairs=3, rate=500.0, messages=100, warmup=Warmup(messages=10))
    assert code == exitcodes.OK
    assert _counts(doc) == (100, 100, 0) and doc["results"]["warmup"]["sent"] == 10


def test_auth_x25519(smp_server, trio_run):
    code, doc = _load(smp_server, trio_run, auth="x25519", pairs=2, messages=60)
    assert code == exitcodes.OK
    assert _counts(doc) == (60, 60, 0) and doc["configuration"]["auth"] == "x25519"


def test_max_version_6(smp_server, trio_run):
    code, doc = _load(smp_server, trio_run, max_version=6, pairs=2, messages=60)
    assert code == exitcodes.OK
    assert doc["server"]["version"] == 6 and doc["configuration"]["max_version"] == 6
    assert _counts(doc) == (60, 60, 0)
    code, doc = _load(smp_server, trio_run, scenario="subscribe", max_version=6, queues=150, connections=1)
    assert code == exitcodes.OK and _counts(doc) == (150, 150, 0)


def test_x25519_on_a_v6_server_is_a_usage_error(smp_server, trio_run):
    code, doc = _load(smp_server, trio_run, server={"max_version": 6}, auth="x25519", messages=5)
    assert code == exitcodes.USAGE_OR_SETUP and doc is None


def test_unreachable_server_exits_1(trio_run):
    async def main():
        from smpfast.testing.process import free_port

        cfg = LoadConfig(f"smp://q0nSMfsauvapypG-U61b_pDZGrfaj1DdXJnzzLMTZ2E=@127.0.0.1:{free_port()}",
                         messages=5, quiet=True, connect_timeout=5.0)
        return await run_load(cfg, None, io.StringIO())

    code, doc = trio_run(main)
    assert code == exitcodes.USAGE_OR_SETUP and doc is None


def test_progress_plain_lines_when_not_a_tty(smp_server, trio_run):
    stream = io.StringIO()
    code, doc = _load(smp_server, trio_run, progress=Progress(stream), pairs=2, duration=1.5)
    assert code == exitcodes.OK
    text = stream.getvalue()
    assert "\r" not in text and "\x1b" not in text
    lines = text.splitlines()
    assert any("measure" in line and "msg/s" in line for line in lines)
    assert any("queues in" in line for line in lines)  # set-up steps are logged
