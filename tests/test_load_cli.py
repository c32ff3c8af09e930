"""``python -m smpfast load`` as CI runs it: a subprocess against `smpfast start` in a
child process (ServerProcess), its exit codes and its JSON file."""

from __future__ import annotations

import json
import subprocess

import jsonschema
import pytest

from smpfast.load.report import load_schema
from smpfast.testing.process import ServerProcess, free_port, init_data_dir, smpfast_command

RUN_TIMEOUT = 120


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
                                  ["--auth", "x25519", "--max-version", "6"], ["--bogus"]])
def test_cli_usage_errors_exit_1(args):
    p = _load("smp://q0nSMfsauvapypG-U61b_pDZGrfaj1DdXJnzzLMTZ2E=@127.0.0.1:1", *args)
    assert p.returncode == 1, (p.stdout, p.stderr)
    assert "error" in p.stderr


def test_cli_help_documents_exit_codes():
    p = _load("--help")
    assert p.returncode == 0
    assert "exit codes:" in p.stdout and "threshold was breached" in p.stdout
