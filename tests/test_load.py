"""smpfast load end to end against the in-process smpfast server on 127.0.0.1.

Every run is bounded (a few hundred messages or a second or two, under trio_run's
timeout); nothing asserts on timing: counts, schema and exit codes only."""

from __future__ import annotations

import io
import json
import math

import jsonschema
import pytest
import trio

from smpfast.cli import main as cli_main
from smpfast.load import exitcodes
from smpfast.load.config import LoadConfig, Thresholds, Warmup
from smpfast.load.control import Control
from smpfast.load.histogram import Latency
from smpfast.load.main import run_load
from smpfast.load.progress import Progress
from smpfast.load.report import load_schema
from smpfast.load.stages import parse_stages
from smpfast.server.broker import BrokerConfig
from smpfast.testing.process import free_port

VALIDATOR = jsonschema.Draft202012Validator(load_schema())
FP = "q0nSMfsauvapypG-U61b_pDZGrfaj1DdXJnzzLMTZ2E="  # no server here has this fingerprint


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


# ------------------------------------------------------------------ stages


def test_rate_stages_offer_exactly_the_scheduled_counts(smp_server, trio_run):
    """0 -> 100/s over 0.5 s, 100/s for 0.5 s, 100/s -> 0 over 0.5 s: 25, 50 and 25 sends
    (counted per stage by intended time, so the counts do not depend on timing)."""
    code, doc = _load(smp_server, trio_run, pairs=2, stages=parse_stages("0.5s:100,0.5s:100,0.5s:0"))
    assert code == exitcodes.OK, doc["failures"]
    assert _counts(doc) == (100, 100, 0)
    stages = doc["results"]["stages"]
    assert [(s["planned"], s["sent"], s["received"], s["errors"]) for s in stages] == [
        (25, 25, 25, 0), (50, 50, 50, 0), (25, 25, 25, 0)]
    assert [(s["from_target"], s["to_target"], s["unit"]) for s in stages] == [
        (0.0, 100.0, "messages/s"), (100.0, 100.0, "messages/s"), (100.0, 0.0, "messages/s")]
    assert sum(s["latency_ms"]["count"] for s in stages) == 100
    assert doc["configuration"]["model"] == "open" and doc["configuration"]["stages"] == "0.5s:100,0.5s:100,0.5s:0"
    # every per-second row says which stage it belongs to
    assert {row["stage"] for row in doc["series"] if row["phase"] == "stage"} <= {0, 1, 2}
    assert all(row["target"] is not None for row in doc["series"])


def test_concurrency_stages_bound_the_sends_in_flight(smp_server, trio_run):
    code, doc = _load(smp_server, trio_run, pairs=3, stage_target="concurrency",
                      stages=parse_stages("0.4s:1,0.6s:3,0.3s:0"))
    assert code == exitcodes.OK, doc["failures"]
    _adds_up(doc)
    stages = doc["results"]["stages"]
    assert doc["configuration"]["model"] == "closed"
    assert [s["unit"] for s in stages] == ["sends in flight"] * 3 and stages[0]["planned"] is None
    for s in stages:  # a stage never has more of its sends in flight than its target allows
        assert s["max_in_flight"] <= max(s["from_target"], s["to_target"])
        assert s["sent"] == s["received"] + s["errors"]
    assert stages[1]["sent"] > 0
    assert sum(s["sent"] for s in stages) == doc["results"]["counts"]["sent"]


# ------------------------------------------------------------------ failures, --allow-errors


def test_server_gone_mid_run_with_allow_errors_exits_0_and_says_why(smp_server, trio_run):
    """The in-process server stops while the run sends: the run ends at once, and the
    report lists the lost connections and the early end; --allow-errors keeps exit 0."""
    out = io.StringIO()

    class Watch(Progress):
        def __init__(self, started: trio.Event) -> None:
            super().__init__(io.StringIO(), "plain")
            self.started = started

        def update(self, text: str) -> None:
            if "measure" in text and " rcvd 0 " not in text:
                self.started.set()

    async def main():
        async with smp_server() as srv:
            started = trio.Event()
            cfg = LoadConfig(srv.address, pairs=2, duration=60.0, allow_errors=True)
            cfg.validate()
            result = {}

            async def run():
                result["run"] = await run_load(cfg, Watch(started), out)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(run)
                await started.wait()
                srv.server.stop()
            return result["run"]

    code, doc = trio_run(main, timeout=60)
    VALIDATOR.validate(doc)
    assert code == exitcodes.OK and doc["outcome"] == "passed" and doc["failures_allowed"]
    kinds = {f["kind"] for f in doc["failures"]}
    assert {"connections_lost", "ended_early"} <= kinds
    assert doc["results"]["scenario"]["sending_seconds"] < 60
    _adds_up(doc)
    assert "FAILURE (allowed by --allow-errors): " in out.getvalue()


def test_fanout_summary_separates_messages_from_deliveries(smp_server, trio_run):
    out = io.StringIO()

    async def main():
        async with smp_server() as srv:
            cfg = LoadConfig(srv.address, scenario="fanout", group=4, messages=10, quiet=True)
            return await run_load(cfg, None, out)

    code, doc = trio_run(main)
    assert code == exitcodes.OK
    assert doc["results"]["messages_sent"] == 10 and doc["results"]["deliveries_per_message"] == 4
    assert "messages: sent 10 to a group of 4; deliveries: expected 40  delivered 40  errors 0" in out.getvalue()
    assert "deliveries/s" in out.getvalue()


def test_threshold_lines_print_readable_numbers(smp_server, trio_run):
    out = io.StringIO()

    async def main():
        async with smp_server() as srv:
            cfg = LoadConfig(srv.address, messages=10, quiet=True, thresholds=Thresholds(min_throughput=1e6))
            return await run_load(cfg, None, out)

    code, _ = trio_run(main)
    assert code == exitcodes.THRESHOLD
    line = next(x for x in out.getvalue().splitlines() if x.startswith("threshold "))
    assert "(limit >= 1,000,000 msgs/s) BREACHED" in line and "e+" not in line


# ------------------------------------------------------------------ connection errors: cause and fix


def _setup_error(trio_run, capsys, address, **options):
    async def main():
        cfg = LoadConfig(address, messages=5, quiet=True, **options)
        return await run_load(cfg, None, io.StringIO())

    code, doc = trio_run(main)
    assert code == exitcodes.USAGE_OR_SETUP and doc is None
    [line] = capsys.readouterr().err.strip().splitlines()  # one line, no traceback
    return line


def test_missing_and_wrong_password(smp_server, trio_run, capsys):
    async def main(address_of):
        async with smp_server(broker_config=BrokerConfig(create_password=b"s3cret")) as srv:
            cfg = LoadConfig(address_of(srv.address), messages=5, quiet=True)
            return await run_load(cfg, None, io.StringIO())

    assert trio_run(main, lambda a: a)[0] == exitcodes.USAGE_OR_SETUP
    line = capsys.readouterr().err.strip()
    assert "ERR AUTH" in line and "it needs a password; put it in the address: smp://FINGERPRINT[:PASSWORD]@HOST" in line
    wrong = lambda a: a.replace("@", ":nope@", 1)  # noqa: E731
    assert trio_run(main, wrong)[0] == exitcodes.USAGE_OR_SETUP
    assert "the password in the address is wrong" in capsys.readouterr().err
    right = lambda a: a.replace("@", ":s3cret@", 1)  # noqa: E731
    code, doc = trio_run(main, right)
    assert code == exitcodes.OK and "***" in doc["configuration"]["address"]


def test_refused_port_says_connection_refused(trio_run, capsys):
    line = _setup_error(trio_run, capsys, f"smp://{FP}@127.0.0.1:{free_port()}", connect_timeout=5.0)
    assert "connection refused by 127.0.0.1:" in line and "no server is listening there" in line
    assert "all attempts" not in line


def test_wrong_fingerprint_names_the_users_fingerprint(smp_server, trio_run, capsys):
    async def main():
        async with smp_server() as srv:
            address = f"smp://{FP}@127.0.0.1:{srv.port}"  # another server's fingerprint
            return await run_load(LoadConfig(address, messages=5, quiet=True), None, io.StringIO())

    assert trio_run(main)[0] == exitcodes.USAGE_OR_SETUP
    line = capsys.readouterr().err.strip()
    assert f"does not match the fingerprint '{FP}'" in line


def test_silent_port_is_a_timeout_and_garbage_is_a_tls_error(trio_run, capsys):
    """A port that accepts and never answers, and one that answers with HTTP."""

    async def main(reply: bytes | None, connect_timeout: float):
        [listener] = await trio.open_tcp_listeners(0, host="127.0.0.1")
        async with listener, trio.open_nursery() as nursery:
            async def peer():
                conn = await listener.accept()
                if reply is not None:
                    await conn.receive_some(100)
                    await conn.send_all(reply)
                await trio.sleep_forever()

            nursery.start_soon(peer)
            port = listener.socket.getsockname()[1]
            cfg = LoadConfig(f"smp://{FP}@127.0.0.1:{port}", messages=5, quiet=True, connect_timeout=connect_timeout)
            result = await run_load(cfg, None, io.StringIO())
            nursery.cancel_scope.cancel()
        return result

    assert trio_run(main, None, 0.5)[0] == exitcodes.USAGE_OR_SETUP
    line = capsys.readouterr().err.strip()
    assert "no answer from 127.0.0.1:" in line and "within 0.5 s (--connect-timeout)" in line
    assert trio_run(main, b"HTTP/1.1 400 Bad Request\r\n\r\n", 10.0)[0] == exitcodes.USAGE_OR_SETUP
    line = capsys.readouterr().err.strip()
    assert "the TLS handshake with 127.0.0.1:" in line and "is this the port of an SMP server?" in line


# ------------------------------------------------------------------ merge


def test_merge_of_two_runs(smp_server, trio_run, tmp_path, capsys):
    paths = [tmp_path / "a.json", tmp_path / "b.json"]

    async def main():
        docs = []
        async with smp_server() as srv:
            for path, n in zip(paths, (40, 60)):
                cfg = LoadConfig(srv.address, pairs=2, messages=n, quiet=True, json_path=str(path))
                docs.append((await run_load(cfg, None, io.StringIO()))[1])
        return docs

    a, b = trio_run(main, timeout=60)
    out_json, out_hgrm = tmp_path / "merged.json", tmp_path / "merged.hgrm"
    code = cli_main(["load", "merge", str(paths[0]), str(paths[1]), "--json", str(out_json), "--hgrm", str(out_hgrm)])
    assert code == exitcodes.OK
    printed = capsys.readouterr().out
    assert printed.startswith("merged 2 reports (sequential): ")  # one run after the other
    doc = json.loads(out_json.read_text())
    VALIDATOR.validate(doc)
    assert _counts(doc) == (100, 100, 0) and doc["merge_mode"] == "sequential"
    assert [m["counts"]["sent"] for m in doc["merged_from"]] == [40, 60]
    for name in ("end_to_end", "service", "send_ok"):  # exactly the sum of the two histograms
        expected = Latency.decode(a["results"]["histograms_us"][name])
        expected.add(Latency.decode(b["results"]["histograms_us"][name]))
        assert Latency.decode(doc["results"]["histograms_us"][name]).same_counts(expected)
        assert doc["results"]["latencies_ms"][name] == expected.summary()
    assert doc["results"]["throughput"]["per_second"] == pytest.approx(
        100 / (a["results"]["elapsed_seconds"] + b["results"]["elapsed_seconds"]), rel=1e-3)
    assert out_hgrm.read_text().splitlines()[-2].split()[-1] == "100]"  # Total count
    # a report of another kind, or no report at all, is a clean usage error
    (tmp_path / "x.json").write_text("{}")
    assert cli_main(["load", "merge", str(paths[0]), str(tmp_path / "x.json")]) == exitcodes.USAGE_OR_SETUP
    assert "not an smpfast load report" in capsys.readouterr().err


def test_interrupt_during_setup_writes_a_report_without_results(smp_server, trio_run, tmp_path):
    """SIGINT (here: the run control's interrupt, as the signal handler calls it) while
    the queues are being set up: exit 130 and a report that says where it stopped."""
    control = Control()

    class InterruptAfterConnecting(Progress):
        def __init__(self) -> None:
            super().__init__(io.StringIO(), "plain")

        def message(self, text: str) -> None:
            if "connections in" in text:
                control.interrupt()

    path = tmp_path / "setup.json"

    async def main():
        async with smp_server() as srv:
            cfg = LoadConfig(srv.address, pairs=2, queues=400, duration=30.0, json_path=str(path))
            return await run_load(cfg, InterruptAfterConnecting(), io.StringIO(), control)

    code, doc = trio_run(main)
    VALIDATOR.validate(doc)
    assert code == exitcodes.INTERRUPTED and doc["exit_code"] == 130 and doc["outcome"] == "interrupted"
    assert doc["results"] is None and doc["interrupted_during"] in ("connect", "create", "secure")
    assert json.loads(path.read_text()) == doc
