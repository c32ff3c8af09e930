"""``python -m smpfast load`` as CI runs it: a subprocess against `smpfast start` in a
child process (ServerProcess), its exit codes and its JSON file."""

from __future__ import annotations

import json
import signal
import subprocess

import jsonschema
import pytest

from smpfast.load.report import load_schema
from smpfast.testing.process import ServerProcess, free_port, init_data_dir, smpfast_command

RUN_TIMEOUT = 120
VALIDATOR = jsonschema.Draft202012Validator(load_schema())


def _load(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(smpfast_command("load", *args), capture_output=True, text=True, timeout=RUN_TIMEOUT)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    directory = tmp_path_factory.mktemp("load-server")
    init_data_dir(directory, free_port())
    with ServerProcess(directory) as srv:
        yield srv


@pytest.mark.slow
def test_cli_end_to_end(server, tmp_path):
    path = tmp_path / "report.json"
    p = _load(server.address, "--pairs", "2", "--messages", "100", "--warmup", "10msgs", "--size", "512",
              "--json", str(path), "--max-p99", "60000", "--max-errors", "0")
    assert p.returncode == 0, p.stderr
    doc = json.loads(path.read_text())
    jsonschema.Draft202012Validator(load_schema()).validate(doc)
    c = doc["results"]["counts"]
    assert (c["sent"], c["received"], c["errors"]) == (100, 100, 0)
    assert doc["exit_code"] == 0 and doc["passed"]
    assert "throughput:" in p.stdout and "p99" in p.stdout and "result: PASSED" in p.stdout
    # not a terminal: progress comes as plain lines on stderr
    assert "\r" not in p.stderr and "queues in" in p.stderr


@pytest.mark.slow
def test_cli_threshold_breach_exits_2(server):
    p = _load(server.address, "--scenario", "subscribe", "--queues", "50", "--connections", "2",
              "--min-throughput", "1e12", "--quiet")
    assert p.returncode == 2, p.stderr
    assert "THRESHOLD BREACHED" in p.stdout and p.stderr == ""


@pytest.mark.slow
def test_cli_json_to_stdout(server):
    p = _load(server.address, "--messages", "10", "--json", "-", "--quiet")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["results"]["counts"]["sent"] == 10
    assert "result: PASSED" in p.stderr


@pytest.mark.parametrize("args", [["--pairs", "0"], ["--duration", "soon"], ["--auth", "rsa"],
                                  ["--auth", "x25519", "--max-version", "6"], ["--bogus"],
                                  ["--stages", "10s"], ["--stages", "1s:5", "--rate", "5"],
                                  ["--workers", "2"], ["--stage-target", "speed"]])
def test_cli_usage_errors_exit_1(args):
    p = _load("smp://q0nSMfsauvapypG-U61b_pDZGrfaj1DdXJnzzLMTZ2E=@127.0.0.1:1", *args)
    assert p.returncode == 1, (p.stdout, p.stderr)
    assert "error" in p.stderr


def test_cli_help_documents_exit_codes():
    p = _load("--help")
    assert p.returncode == 0
    assert "exit codes:" in p.stdout and "threshold was breached" in p.stdout


def _start_load(*args: str) -> subprocess.Popen:
    return subprocess.Popen(smpfast_command("load", *args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def _wait_for_traffic(p: subprocess.Popen) -> list[str]:
    """Read the progress lines (plain, one per second, on stderr) until one shows
    messages received in the measured phase; returns the lines read."""
    lines = []
    for line in p.stderr:  # type: ignore[union-attr]
        lines.append(line)
        if " measure " in line and " rcvd 0 " not in line:
            return lines
    raise AssertionError("the load ended before any traffic:\n" + "".join(lines))


@pytest.mark.slow
def test_server_killed_mid_run_fails_with_the_reason(tmp_path):
    """The server dies (SIGKILL) 1-2 s into a 60 s run: exit code 3, and the JSON says
    connections were lost, messages with them, and the run ended early."""
    directory = tmp_path / "doomed"
    init_data_dir(directory, free_port())
    path = tmp_path / "report.json"
    with ServerProcess(directory) as srv:
        p = _start_load(srv.address, "--pairs", "2", "--duration", "60", "--json", str(path))
        try:
            _wait_for_traffic(p)
            srv.kill()
            out, err = p.communicate(timeout=RUN_TIMEOUT)
        finally:
            if p.poll() is None:
                p.kill()
    assert p.returncode == 3, err
    doc = json.loads(path.read_text())
    VALIDATOR.validate(doc)
    assert doc["outcome"] == "failed" and doc["exit_code"] == 3 and not doc["passed"]
    kinds = {f["kind"] for f in doc["failures"]}
    assert {"connections_lost", "ended_early"} <= kinds
    assert doc["results"]["scenario"]["connections_lost"] >= 1
    c = doc["results"]["counts"]
    assert c["sent"] > 0 and c["sent"] == c["received"] + c["errors"]
    assert "result: FAILED (exit code 3)" in out and "FAILURE: " in out


@pytest.mark.slow
def test_sigint_writes_a_partial_report_and_exits_130(server, tmp_path):
    path = tmp_path / "partial.json"
    p = _start_load(server.address, "--pairs", "2", "--duration", "60", "--json", str(path))
    try:
        _wait_for_traffic(p)
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=RUN_TIMEOUT)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 130, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    doc = json.loads(path.read_text())
    VALIDATOR.validate(doc)
    assert doc["outcome"] == "interrupted" and doc["exit_code"] == 130 and doc["results"]["interrupted"]
    c = doc["results"]["counts"]
    assert c["sent"] > 0 and c["sent"] == c["received"] + c["errors"]
    assert doc["results"]["scenario"]["sending_seconds"] < 60
    assert "result: INTERRUPTED" in out


@pytest.mark.slow
def test_two_workers_merge_into_one_report(server, tmp_path):
    path, hgrm = tmp_path / "workers.json", tmp_path / "workers.hgrm"
    p = _load(server.address, "--workers", "2", "--pairs", "3", "--messages", "90", "--json", str(path),
              "--hgrm", str(hgrm), "--latency-spectrum", "--quiet")
    assert p.returncode == 0, p.stderr
    doc = json.loads(path.read_text())
    VALIDATOR.validate(doc)
    c = doc["results"]["counts"]
    assert (c["sent"], c["received"], c["errors"]) == (90, 90, 0)
    assert [w["counts"]["sent"] for w in doc["workers"]] == [45, 45]
    assert doc["results"]["latency_ms"]["count"] == 90 and doc["results"]["latency_spectrum"][-1]["count"] == 90
    assert doc["results"]["generator"]["processes"] == 2 and doc["configuration"]["workers"] == 2
    assert doc["results"]["traffic"]["total"]["connections_opened"] == 2 * 3  # a connection per pair and side
    assert "worker 0:" in p.stdout and "worker 1:" in p.stdout and "Value (ms)" in p.stdout
    assert hgrm.read_text().splitlines()[-2].split()[-1] == "90]"


# ---------------------------------------------------------------- subscribe --mode services


@pytest.fixture(scope="module")
def server19(tmp_path_factory):
    directory = tmp_path_factory.mktemp("load-server-19")
    init_data_dir(directory, free_port())
    with ServerProcess(directory, max_version=19) as srv:
        yield srv


@pytest.mark.slow
def test_subscribe_services_mode_one_subs(server19, tmp_path):
    path = tmp_path / "services.json"
    p = _load(server19.address, "--scenario", "subscribe", "--mode", "services", "--queues", "300",
              "--json", str(path), "--max-errors", "0")
    assert p.returncode == 0, p.stderr
    assert "300 queues of one messaging service, one SUBS" in p.stdout
    doc = json.loads(path.read_text())
    VALIDATOR.validate(doc)
    assert doc["configuration"]["mode"] == "services" and doc["configuration"]["connections"] == 1
    d = doc["results"]["scenario"]
    assert d["mode"] == "services" and d["hash_matches"] and d["soks_count"] == 300
    c = doc["results"]["counts"]
    assert (c["sent"], c["received"], c["errors"]) == (300, 300, 0)
    # the measured part (as for --mode queues, from the reconnect on): the hello blocks of
    # the service's handshake (client hello; server hello and its service answer), then one
    # SUBS up and SOKS + ALLS down, each in its own block
    t = doc["results"]["traffic"]["run"]
    assert (t["transmissions_sent"], t["transmissions_received"]) == (1, 2)
    assert (t["blocks_sent"], t["blocks_received"]) == (1 + 1, 2 + 2)


@pytest.mark.slow
def test_subscribe_services_mode_needs_v19(server):
    p = _load(server.address, "--scenario", "subscribe", "--mode", "services", "--queues", "5", "--quiet")
    assert p.returncode == 1 and "v19" in p.stderr, (p.stdout, p.stderr)


@pytest.mark.parametrize("args", [["--mode", "services"], ["-s", "subscribe", "--mode", "services", "-c", "3"],
                                  ["-s", "subscribe", "--mode", "services", "--workers", "2", "--queues", "4"],
                                  ["-s", "subscribe", "--mode", "everything"]])
def test_services_mode_usage_errors(args):
    p = _load("smp://q0nSMfsauvapypG-U61b_pDZGrfaj1DdXJnzzLMTZ2E=@127.0.0.1:1", *args)
    assert p.returncode == 1, (p.stdout, p.stderr)
    assert "error" in p.stderr or "--mode" in p.stderr
