"""deploy/: the container entrypoint (run here with a temporary data directory, as no
container engine runs on these machines), the Dockerfiles (hadolint), the systemd unit
(systemd-analyze verify) and the LICENSE file."""

from __future__ import annotations

import configparser
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import trio

import smpfast.client as sc
from smpfast.testing.process import ADDRESS_PREFIX, free_port

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
ENTRYPOINT = DEPLOY / "entrypoint.sh"
DOCKERFILES = [DEPLOY / "Dockerfile", DEPLOY / "Dockerfile.source"]
VENV_BIN = Path(sys.executable).parent  # where pip put `smpfast` and `hadolint`


def tool(name: str) -> str:
    """A tool from the test environment; failing (never skipping) when it is missing."""
    found = shutil.which(name, path=f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    assert found, f"{name} not found: install the test extra (pip install -e '.[test]')"
    return found


class Entrypoint:
    """deploy/entrypoint.sh in a child process, with its data directory in ``data``."""

    def __init__(self, tmp_path: Path, data: Path, **env: str) -> None:
        self.log_path = tmp_path / f"entrypoint-{time.monotonic_ns()}.log"
        self.env = {
            "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            "HOME": str(tmp_path),
            "SMPFAST_DATA": str(data),
            **env,
        }

    def start(self, *args: str) -> subprocess.Popen:
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            ["sh", str(ENTRYPOINT), *args], env=self.env, stdout=self.log, stderr=subprocess.STDOUT
        )
        return self.proc

    def output(self) -> str:
        return self.log_path.read_text()

    def wait_address(self, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.output().splitlines():
                if line.startswith(ADDRESS_PREFIX):
                    return line[len(ADDRESS_PREFIX) :].strip()
            assert self.proc.poll() is None, "the entrypoint exited early:\n" + self.output()
            time.sleep(0.05)
        raise TimeoutError(self.output())

    def stop(self, sig: int = signal.SIGTERM) -> int:
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=30)
        finally:
            self.log.close()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def ping(address: str) -> None:
    async def main() -> None:
        with trio.fail_after(20):
            async with sc.connect(address) as client:
                await client.ping()

    trio.run(main)


@pytest.mark.slow
def test_empty_volume_initialises_serves_and_stops_on_sigterm(tmp_path):
    data = tmp_path / "volume"
    port = free_port()
    ep = Entrypoint(tmp_path, data, ADDR="127.0.0.1", PASS="pass-word", SMPFAST_PORT=str(port))
    proc = ep.start()
    try:
        address = ep.wait_address()
        assert re.fullmatch(rf"smp://[A-Za-z0-9_-]{{43}}=:pass-word@127\.0\.0\.1:{port}", address), address
        assert address.split("@")[0].split("//")[1].split(":")[0] + "\n" == (data / "fingerprint").read_text()
        # exec: the process the container would signal is the server itself.
        assert b"start" in Path(f"/proc/{proc.pid}/cmdline").read_bytes()
        ping(address)
    except BaseException:
        ep.kill()
        raise
    assert ep.stop(signal.SIGTERM) == 0
    assert "received SIGTERM, stopping" in ep.output()


@pytest.mark.slow
def test_existing_volume_keeps_identity_and_address(tmp_path):
    data = tmp_path / "volume"
    port = free_port()
    first = Entrypoint(tmp_path, data, ADDR="127.0.0.1", PASS="", SMPFAST_PORT=str(port))
    first.start()
    try:
        address = first.wait_address()
    finally:
        assert first.stop() == 0
    assert ":" not in address.split("@")[0].removeprefix("smp:")  # empty PASS: no password
    ca = (data / "ca.crt").read_bytes()
    # The variables only matter on the first start.
    second = Entrypoint(tmp_path, data, ADDR="203.0.113.9", PASS="other", SMPFAST_PORT=str(free_port()))
    second.start()
    try:
        assert second.wait_address() == address
        ping(address)
    except BaseException:
        second.kill()
        raise
    assert second.stop(signal.SIGINT) == 0
    assert (data / "ca.crt").read_bytes() == ca


@pytest.mark.slow
def test_host_name_addr_and_bind(tmp_path):
    data = tmp_path / "volume"
    port = free_port()
    ep = Entrypoint(
        tmp_path, data, ADDR="smp.example.org", SMPFAST_PORT=str(port), SMPFAST_BIND="127.0.0.1",
        SMPFAST_SIGN_ALGORITHM="ED448",
    )
    ep.start()
    try:
        address = ep.wait_address()
        assert address.endswith(f"@smp.example.org:{port}")
        ini = (data / "smpfast.ini").read_text()
        assert re.search(r"^host = smp\.example\.org$", ini, re.M) and re.search(r"^bind = 127\.0\.0\.1$", ini, re.M)
        ping(address.replace("smp.example.org", "127.0.0.1"))
    except BaseException:
        ep.kill()
        raise
    assert ep.stop() == 0


@pytest.mark.parametrize("addr", ["", "localhost"])
def test_bad_addr_is_one_line(tmp_path, addr):
    ep = Entrypoint(tmp_path, tmp_path / "volume", ADDR=addr)
    ep.start()
    assert ep.proc.wait(timeout=30) == 1
    ep.log.close()
    lines = ep.output().splitlines()
    assert len(lines) == 1 and lines[0].startswith("smpfast: error: ") and "ADDR" in lines[0]
    assert not (tmp_path / "volume").exists()


def test_arguments_go_to_start(tmp_path):
    ep = Entrypoint(tmp_path, tmp_path / "volume", ADDR="127.0.0.1", SMPFAST_PORT=str(free_port()))
    ep.start("--help")
    assert ep.proc.wait(timeout=60) == 0
    ep.log.close()
    assert "usage: smpfast start" in ep.output()
    assert (tmp_path / "volume" / "smpfast.ini").exists()  # initialised first


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_lints_clean(dockerfile):
    proc = subprocess.run([tool("hadolint"), "--no-color", str(dockerfile)], capture_output=True, text=True, timeout=60)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")


def test_hadolint_reports_problems():
    # The lint test above would pass with a linter that accepts anything.
    proc = subprocess.run([tool("hadolint"), "--no-color", "-"], input="FROM debian\nRUN cd /tmp\n",
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and "DL3006" in proc.stdout and "DL3003" in proc.stdout


def test_dockerfiles_use_the_entrypoint_volume_and_signal():
    for path in DOCKERFILES:
        text = path.read_text()
        assert "smpfast-entrypoint" in text and 'VOLUME ["/var/opt/smpfast"]' in text
        assert "STOPSIGNAL SIGTERM" in text and "ENV SMPFAST_DATA=/var/opt/smpfast" in text
    assert re.search(r'pip install --no-cache-dir "smpfast==\$\{SMPFAST_VERSION\}"', DOCKERFILES[0].read_text())
    source = DOCKERFILES[1].read_text()
    assert source.count("FROM ") == 2 and "AS build" in source and "--from=build" in source


def test_compose_file_points_at_existing_files():
    text = (DEPLOY / "compose.yaml").read_text()
    dockerfile = re.search(r"dockerfile: \$\{SMPFAST_DOCKERFILE:-([^}]+)\}", text).group(1)
    assert (ROOT / dockerfile).is_file() and "context: .." in text
    assert "- smpfast-data:/var/opt/smpfast" in text and "init: true" in text
    for name in ("ADDR", "PASS", "SMPFAST_PORT"):
        assert re.search(rf"^\s+{name}: ", text, re.M) and name in ENTRYPOINT.read_text()


def test_systemd_unit(tmp_path):
    unit = DEPLOY / "smpfast.service"
    ini = configparser.ConfigParser(strict=False, interpolation=None)
    ini.optionxform = str
    ini.read(unit)
    s = ini["Service"]
    assert s["User"] == "smpfast" and s["StateDirectory"] == "smpfast"
    assert s["KillSignal"] == "SIGTERM" and s["Restart"] == "on-failure"
    assert int(s["LimitNOFILE"]) >= 65535
    exec_start = s["ExecStart"].split()
    # The command line is one smpfast accepts, on the state directory.
    from smpfast import cli

    args = cli.build_parser().parse_args(exec_start[1:])
    assert args.command == "start" and args.dir == "/var/lib/smpfast"
    # systemd's own check, with ExecStart pointing at this environment's smpfast.
    copy = tmp_path / "smpfast.service"
    copy.write_text(unit.read_text().replace(exec_start[0], tool("smpfast")))
    proc = subprocess.run([tool("systemd-analyze"), "verify", str(copy)], capture_output=True, text=True, timeout=60)
    assert (proc.returncode, proc.stderr.strip()) == (0, "")
    assert (DEPLOY / "smpfast.sysusers").read_text().splitlines()[-1].startswith("u smpfast ")


def test_license_is_the_agpl():
    text = (ROOT / "LICENSE").read_text()
    assert text.lstrip().startswith("GNU AFFERO GENERAL PUBLIC LICENSE\n                       Version 3, 19 November 2007")
    assert "END OF TERMS AND CONDITIONS" in text and len(text.splitlines()) == 661
    assert 'license = { text = "AGPL-3.0-only" }' in (ROOT / "pyproject.toml").read_text()
