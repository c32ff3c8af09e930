"""``smpfast traffic`` against real smpfast servers on 127.0.0.1: the tool's own in-process
server, a server subprocess (an external ADDRESS) and the test fixture's server."""

from __future__ import annotations

import json
import math
import struct
import sys

import pytest

from smpfast.cli import main
from smpfast.testing.process import ServerProcess, free_port, init_data_dir
from smpfast.traffic import BLOCK_SIZE
from smpfast.traffic.measure import measure_row

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
TLS13_RECORD_OVERHEAD = 22  # header 5 + content type 1 + AEAD tag 16, one record per block


def _rows(doc: dict, **match) -> list[dict]:
    return [m for m in doc["measurements"] if all(m[k] == v for k, v in match.items())]


def _one(doc: dict, **match) -> dict:
    [row] = _rows(doc, **match)
    return row


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == PNG_MAGIC
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_in_process_sweep_json_table_and_plot(tmp_path, capsys):
    out_json, out_png = tmp_path / "traffic.json", tmp_path / "traffic.png"
    code = main(["traffic", "--sweep", "1,90", "--json", str(out_json), "--plot", str(out_png)])
    assert code == 0
    printed = capsys.readouterr().out
    lines = printed.splitlines()
    # the verdict comes first: the v3.1 claim at every version, v18 (block encryption) included
    assert lines[0] == (
        "verdict: SimpleX v3.1's claim (90 subscriptions: 90 blocks -> 1 block, ~1.5 MB -> 16 KB) holds at "
        "v6, v7 and v18 (block encryption): 90× fewer blocks, 90.0× fewer TLS bytes or better.")
    assert lines[1].startswith("  v6  (no ALPN): 90 SUBs unbatched 90 blocks, 1,476,540 TLS bytes -> batched 1 block,")
    assert lines[3].startswith("  v18 (ALPN smp/1, block encryption): 90 SUBs unbatched 90 blocks")
    assert lines[3].endswith("×90.0 blocks, ×90.0 TLS bytes (holds)")
    assert "SMP v6 (no ALPN)" in printed and "SMP v18 (ALPN smp/1, block encryption)" in printed
    assert "   90  90 -> 1 (×90.0) " in printed  # the table: one line per N

    doc = json.loads(out_json.read_text())
    assert doc["tool"] == "smpfast traffic" and doc["server"] == "in-process"
    assert doc["address"].startswith("smp://") and "@127.0.0.1:" in doc["address"]
    # the in-process server offers up to v18; by default v6, v7 and v18 are measured
    assert doc["server_versions"] == [6, 18] and doc["versions"] == [6, 7, 18]
    assert doc["block_size"] == BLOCK_SIZE and doc["sweep"] == [1, 90] and doc["message_size"] == 128
    # every (version, N, phase, mode) once, with both directions fully described
    assert len(doc["measurements"]) == 3 * 2 * 3 * 2
    for m in doc["measurements"]:
        assert m["alpn"] == (None if m["version"] == 6 else "smp/1")
        for d in ("client_to_server", "server_to_client"):
            c = m[d]
            assert set(c) == {"blocks", "transmissions", "smp_bytes", "tls_bytes"}
            assert c["smp_bytes"] == c["blocks"] * BLOCK_SIZE
            # loopback TLS 1.3: each 16 KB block is one record
            assert c["tls_bytes"] == c["blocks"] * (BLOCK_SIZE + TLS13_RECORD_OVERHEAD)
        assert m["seconds"] >= 0

    for v in (6, 7, 18):
        unb = _one(doc, version=v, n=90, phase="subscribe", mode="unbatched")
        bat = _one(doc, version=v, n=90, phase="subscribe", mode="batched")
        assert unb["client_to_server"]["blocks"] == 90 and unb["client_to_server"]["transmissions"] == 90
        assert bat["client_to_server"]["blocks"] == 1 and bat["client_to_server"]["transmissions"] == 90
        assert unb["server_to_client"]["blocks"] == 90 and bat["server_to_client"]["blocks"] == 1
        assert unb["client_to_server"]["smp_bytes"] == 90 * 16384  # the claim's ~1.5 MB
        # one message per queue: every MSG delivery is a padded ~16 KB block in both modes
        for mode in ("batched", "unbatched"):
            rcv = _one(doc, version=v, n=90, phase="receive", mode=mode)
            assert rcv["server_to_client"]["transmissions"] == 180  # 90 MSG + 90 ACK replies
            assert rcv["server_to_client"]["blocks"] >= 90
        for mode in ("batched", "unbatched"):  # N = 1: batching changes nothing
            for phase in ("subscribe", "send"):
                one = _one(doc, version=v, n=1, phase=phase, mode=mode)
                assert one["client_to_server"]["blocks"] == one["server_to_client"]["blocks"] == 1

    red = {(r["version"], r["n"], r["phase"]): r for r in doc["reductions"]}
    assert red[(6, 90, "subscribe")]["client_to_server"] == {"blocks": 90.0, "smp_bytes": 90.0, "tls_bytes": 90.0}
    assert red[(7, 1, "send")]["total"]["blocks"] == 1.0
    assert [(c["version"], c["holds"]) for c in doc["claim"]] == [(6, True), (7, True), (18, True)]
    assert doc["claim"][0]["batched_smp_bytes"] == 16384
    v = doc["verdict"]
    assert v["holds"] and v["holds_at"] == [6, 7, 18] and v["fails_at"] == [] and v["v18_note"] is None
    assert v["v18"]["version"] == 18 and v["v18"]["batched_blocks"] == 1

    width, height = _png_size(out_png.read_bytes())
    assert width >= 800 and height >= 300


def test_block_counts_follow_the_block_budget(smp_server, trio_run):
    """255 SUBs: 106 fit a block at v6 (153 bytes each with the session id), 136 at v7."""

    async def run():
        async with smp_server() as srv:
            return {v: await measure_row(srv.address, v, 255, 128, 30.0) for v in (6, 7)}

    rows = trio_run(run, timeout=60)
    for v, per_block in ((6, 106), (7, 136)):
        got = {(m.phase, m.mode): m for m in rows[v]}
        bat = got[("subscribe", "batched")]
        assert bat.up.blocks == math.ceil(255 / per_block) and bat.up.transmissions == 255
        assert got[("subscribe", "unbatched")].up.blocks == 255
        assert got[("send", "unbatched")].down.blocks == 255
        # the 255 MSG deliveries never share a block (16122-byte bodies)
        assert got[("receive", "batched")].down.blocks >= 255
        assert got[("receive", "unbatched")].down.blocks == 2 * 255


def test_external_address(tmp_path, capsys):
    """ADDRESS given: the tool measures a server running in another process."""
    directory = tmp_path / "data"
    init_data_dir(directory, free_port())
    with ServerProcess(directory) as server:
        out_json = tmp_path / "t.json"
        code = main(["traffic", server.address, "--sweep", "3", "--versions", "7",
                     "--message-size", "1000", "--json", str(out_json)])
        assert code == 0
        printed = capsys.readouterr().out
        # a version the server does not offer is refused before measuring
        assert main(["traffic", server.address, "--sweep", "1", "--versions", "19"]) == 1
        assert "the server offers v6-v18, not v19 (--versions)" in capsys.readouterr().err
    doc = json.loads(out_json.read_text())
    assert doc["server"] == "external" and doc["versions"] == [7] and doc["message_size"] == 1000
    assert _one(doc, phase="send", mode="unbatched")["client_to_server"]["blocks"] == 3
    assert _one(doc, phase="send", mode="batched")["client_to_server"]["blocks"] == 1
    assert "SMP v7" in printed
    # no N = 90 in the sweep: the verdict says so rather than guessing
    assert printed.splitlines()[0] == "verdict: no verdict on SimpleX v3.1's claim: N = 90 is not in --sweep"


def test_verdict_says_when_v18_cannot_be_measured(tmp_path, capsys):
    """A server that offers only v6-v7: the verdict is given for what was measured and
    says why v18 is missing instead of pretending."""
    out_json = tmp_path / "t.json"
    code = main(["traffic", "--server-max-version", "7", "--sweep", "90", "--json", str(out_json)])
    assert code == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith("verdict: SimpleX v3.1's claim (90 subscriptions: 90 blocks -> 1 block")
    assert "holds at v6 and v7: 90× fewer blocks" in first
    assert first.endswith("; v18 not measured: the server offers v6-v7 only "
                          "(start the in-process server with --server-max-version 18).")
    doc = json.loads(out_json.read_text())
    assert doc["versions"] == [6, 7] and doc["verdict"]["v18"] is None and doc["verdict"]["holds_at"] == [6, 7]


def test_plot_without_matplotlib(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    code = main(["traffic", "--sweep", "1", "--plot", str(tmp_path / "x.png")])
    assert code == 1
    err = capsys.readouterr().err
    assert "matplotlib" in err and "smpfast[plot]" in err
    assert not (tmp_path / "x.png").exists()


@pytest.mark.parametrize("args, message", [
    (["--sweep", "0"], "--sweep"),
    (["--versions", "13"], "--versions"),
    (["--message-size", "20000"], "--message-size"),
    (["--server-max-version", "5"], "--server-max-version"),
])
def test_bad_arguments(args, message, capsys):
    assert main(["traffic", *args]) == 1
    assert message in capsys.readouterr().err


def test_private_routing_row(tmp_path, capsys):
    """The in-process server in both roles: a proxied message costs the sender what a
    direct one does, plus one block each way on the proxy's link to the relay."""
    out_json = tmp_path / "t.json"
    assert main(["traffic", "--sweep", "1", "--versions", "18", "--private-routing", "5",
                 "--json", str(out_json)]) == 0
    printed = capsys.readouterr().out
    cost = json.loads(out_json.read_text())["private_routing"]
    assert (cost["messages"], cost["version"], cost["proxied_version"]) == (5, 18, 17)
    for side in ("direct", "proxied", "link"):
        assert (cost[side]["blocks_up"], cost[side]["blocks_down"]) == (1.0, 1.0), side
    assert cost["link"]["tls_bytes_up"] > 16384 and cost["proxied"]["tls_bytes_up"] > 16384
    assert "private routing (5 messages" in printed and "2.00x the blocks" in printed
    assert main(["traffic", "--private-routing", "-1"]) == 1


# ---------------------------------------------------------------- --mode services


def test_services_mode_one_subs_against_batched_subs(tmp_path, capsys):
    out_json = tmp_path / "services.json"
    code = main(["traffic", "--mode", "services", "--sweep", "5,600", "--json", str(out_json)])
    assert code == 0
    text = capsys.readouterr().out
    assert "one SUBS" in text and "batched SUB" in text and "SOKS count and hash match" in text
    doc = json.loads(out_json.read_text())
    assert doc["mode"] == "services" and doc["server_versions"][1] == 19 and doc["versions"] == [19]
    for n in (5, 600):
        subs = _one(doc, n=n, mode="services")
        batched = _one(doc, n=n, mode="batched")
        # one SUBS is one block up; down: SOKS and ALLS, each its own block
        assert subs["client_to_server"]["blocks"] == 1 and subs["client_to_server"]["transmissions"] == 1
        assert subs["server_to_client"]["blocks"] == 2 and subs["server_to_client"]["transmissions"] == 2
        assert batched["client_to_server"]["transmissions"] == n
        assert batched["server_to_client"]["transmissions"] == n
        for direction in ("client_to_server", "server_to_client"):
            d = subs[direction]
            assert d["smp_bytes"] == d["blocks"] * BLOCK_SIZE
    [row600] = [r for r in doc["rows"] if r["n"] == 600]
    assert row600["hash_matches"] and row600["soks_count"] == 600
    # 600 SUBs with two signatures each need several blocks; one SUBS always one
    assert _one(doc, n=600, mode="batched")["client_to_server"]["blocks"] > 1
    assert row600["reduction"]["total"]["blocks"] > 2


@pytest.mark.parametrize("args, message", [
    (["--mode", "services", "--versions", "18"], "v19"),
    (["--mode", "services", "--server-max-version", "18"], "--server-max-version 19"),
    (["--mode", "services", "--sweep", "2000000"], "--sweep"),
])
def test_services_mode_bad_arguments(args, message, capsys):
    assert main(["traffic", *args]) == 1
    assert message in capsys.readouterr().err
