"""``--socks5`` of ``smpfast load`` and ``smpfast traffic``: a relay known only by a
``.onion`` address, reached through a real SOCKS5 server (pproxy routes ``*.onion`` to the
relay, as Tor reaches a hidden service), and the one-line errors without it."""

from __future__ import annotations

import json
import subprocess

import jsonschema
import pytest

from smpfast.cli import main
from smpfast.load.report import load_schema
from smpfast.testing.process import ServerProcess, free_port, init_data_dir, smpfast_command
from socks_support import SocksServer

ONION = "d" * 56 + ".onion"


@pytest.fixture(scope="module")
def relay(tmp_path_factory):
    directory = tmp_path_factory.mktemp("socks-relay")
    port = free_port()
    init_data_dir(directory, port)
    with ServerProcess(directory) as srv:
        srv.port = port
        yield srv


def onion_address(address: str) -> str:
    head, _, port = address.rpartition(":")
    return head.rsplit("@", 1)[0] + "@" + ONION + ":" + port


@pytest.mark.slow
def test_load_through_socks5_to_an_onion_address(relay, tmp_path):
    path = tmp_path / "r.json"
    with SocksServer(onion_to=relay.port) as socks:
        p = subprocess.run(smpfast_command("load", onion_address(relay.address), "--socks5", socks.address,
                                           "--messages", "20", "--json", str(path), "--quiet"),
                           capture_output=True, text=True, timeout=120)
        assert p.returncode == 0, p.stderr
        assert f"tunnel 127.0.0.1:{relay.port} -> {ONION}" in socks.log()
    doc = json.loads(path.read_text())
    jsonschema.Draft202012Validator(load_schema()).validate(doc)
    assert doc["results"]["counts"]["received"] == 20 and doc["configuration"]["socks5"] == socks.address


@pytest.mark.slow
def test_load_onion_without_socks5_is_one_line(relay):
    p = subprocess.run(smpfast_command("load", onion_address(relay.address), "--messages", "1", "--quiet"),
                       capture_output=True, text=True, timeout=60)
    assert p.returncode != 0 and "--socks5" in p.stderr and "Traceback" not in p.stderr
    p = subprocess.run(smpfast_command("load", relay.address, "--socks5", "localhost:9050", "--messages", "1"),
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 1 and "--socks5" in p.stderr and "IPv4 or IPv6" in p.stderr
    dead = f"127.0.0.1:{free_port()}"
    p = subprocess.run(smpfast_command("load", relay.address, "--socks5", dead, "--messages", "1", "--quiet"),
                       capture_output=True, text=True, timeout=60)
    assert p.returncode != 0 and "SOCKS" in p.stderr and "Traceback" not in p.stderr


@pytest.mark.slow
def test_traffic_through_socks5(relay, tmp_path, capsys):
    out = tmp_path / "t.json"
    with SocksServer(onion_to=relay.port) as socks:
        code = main(["traffic", onion_address(relay.address), "--socks5", socks.address, "--sweep", "2",
                     "--versions", "7", "--json", str(out)])
        assert code == 0, capsys.readouterr().err
        assert f"-> {ONION}" in socks.log()
    doc = json.loads(out.read_text())
    assert doc["versions"] == [7] and doc["measurements"]
    assert main(["traffic", "--socks5", "127.0.0.1:9050"]) == 1
    assert "--socks5 needs an ADDRESS" in capsys.readouterr().err
