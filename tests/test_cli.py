"""The smpfast command: init, address, cert, start (without serving), --version."""

from __future__ import annotations

import base64
import os
import re
import subprocess
import sys
import types
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ed448
from cryptography.x509.oid import NameOID

import smpfast
from smpfast import cli
from smpfast.config import Config, load_config

ADDRESS_RE = re.compile(
    r"^smp://(?P<fp>[A-Za-z0-9_-]{43}=)(?::(?P<pw>[^@]+))?@(?P<hosts>[^@]+?)(?::(?P<port>[0-9]+))?$"
)
EXPECTED_FILES = {"ca.key", "ca.crt", "server.key", "server.crt", "fingerprint", "smpfast.ini", "store"}


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def init(capsys: pytest.CaptureFixture[str], d: Path, *extra: str) -> re.Match[str]:
    code, out, err = run(capsys, "init", "--dir", str(d), *extra)
    assert code == 0, err
    m = ADDRESS_RE.match(out.rstrip("\n").splitlines()[-1])
    assert m, out
    return m


def test_init_creates_everything_and_prints_address_last(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d = tmp_path / "srv"
    m = init(capsys, d)
    assert set(os.listdir(d)) == EXPECTED_FILES
    assert (d / "store").is_dir()
    assert m["fp"] + "\n" == (d / "fingerprint").read_text()
    assert m["hosts"] == "127.0.0.1" and m["port"] is None
    cfg = load_config(d)
    # default password: random, 32 bytes base64url with padding, as the reference's init
    assert m["pw"] == cfg.auth.create_password
    assert len(base64.urlsafe_b64decode(m["pw"])) == 32 and m["pw"].endswith("=")
    assert cfg.transport.bind == "127.0.0.1"
    assert cfg.transport.port == (5223,)
    assert os.stat(d / "ca.key").st_mode & 0o777 == 0o600


def test_init_mentions_moving_ca_key_offline(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "init", "--dir", str(tmp_path / "s"))
    assert code == 0
    assert "offline" in out and str(tmp_path / "s" / "ca.key") in out


def test_init_refuses_non_empty_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = tmp_path / "srv"
    init(capsys, d)
    before = {p: (d / p).read_bytes() for p in os.listdir(d) if (d / p).is_file()}
    code, out, err = run(capsys, "init", "--dir", str(d))
    assert code == 1
    assert "refusing" in err and str(d) in err
    assert {p: (d / p).read_bytes() for p in before} == before

    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    assert run(capsys, "init", "--dir", str(other))[0] == 1
    assert os.listdir(other) == ["notes.txt"]


def test_init_into_existing_empty_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    init(capsys, tmp_path)
    assert set(os.listdir(tmp_path)) == EXPECTED_FILES


def test_address_matches_init(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = tmp_path / "srv"
    code, out, _ = run(capsys, "init", "--dir", str(d))
    init_address = out.splitlines()[-1]
    code, out, _ = run(capsys, "address", "--dir", str(d))
    assert code == 0
    assert out == init_address + "\n"


def test_password_none(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = tmp_path / "srv"
    m = init(capsys, d, "--password", "none")
    assert m["pw"] is None
    assert load_config(d).auth.create_password is None
    assert not re.search(r"^create_password\s*=", (d / "smpfast.ini").read_text(), re.M)


def test_password_value(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = tmp_path / "srv"
    m = init(capsys, d, "--password", "Open!Sesame#1")
    assert m["pw"] == "Open!Sesame#1"
    assert load_config(d).auth.create_password == "Open!Sesame#1"
    assert "create_password = Open!Sesame#1\n" in (d / "smpfast.ini").read_text()


@pytest.mark.parametrize("bad", ["a@b", "a:b", "a/b", "with space"])
def test_password_invalid_creates_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str], bad: str) -> None:
    d = tmp_path / "srv"
    code, _, err = run(capsys, "init", "--dir", str(d), "--password", bad)
    assert code == 1 and "--password" in err
    assert not d.exists()


def test_random_passwords_differ(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = init(capsys, tmp_path / "a")["pw"]
    b = init(capsys, tmp_path / "b")["pw"]
    assert a != b


def test_port_shown_only_when_not_5223(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    m = init(capsys, tmp_path / "a", "--port", "5224")
    assert m["port"] == "5224"
    assert load_config(tmp_path / "a").transport.port == (5224,)
    m = init(capsys, tmp_path / "b", "--port", "5223,443")
    assert m["port"] is None
    assert load_config(tmp_path / "b").transport.port == (5223, 443)
    code, _, err = run(capsys, "init", "--dir", str(tmp_path / "c"), "--port", "99999")
    assert code == 1 and "--port" in err and not (tmp_path / "c").exists()


def test_public_ip_binds_all_interfaces(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = tmp_path / "srv"
    m = init(capsys, d, "--ip", "192.0.2.10")
    assert m["hosts"] == "192.0.2.10"
    cfg = load_config(d)
    assert cfg.transport.bind == "::" and cfg.transport.host == ("192.0.2.10",)
    cert = x509.load_pem_x509_certificate((d / "server.crt").read_bytes())
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "192.0.2.10"


def test_public_ip_says_what_it_binds(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "init", "--dir", str(tmp_path / "a"), "--ip", "203.0.113.5")
    assert code == 0
    assert "listens on all interfaces ([TRANSPORT] bind = ::)" in out and "203.0.113.5" in out
    code, out, _ = run(capsys, "init", "--dir", str(tmp_path / "b"), "--ip", "203.0.113.5", "--bind", "203.0.113.5")
    assert code == 0 and "listens on 203.0.113.5 only" in out
    assert load_config(tmp_path / "b").transport.bind == "203.0.113.5"
    code, _, err = run(capsys, "init", "--dir", str(tmp_path / "c"), "--bind", "nowhere")
    assert code == 1 and "--bind" in err and not (tmp_path / "c").exists()


def test_fqdn_and_ed448(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = tmp_path / "srv"
    m = init(capsys, d, "--fqdn", "smp.example.com,xyz.onion", "--sign-algorithm", "ED448")
    assert m["hosts"] == "smp.example.com,xyz.onion"
    cert = x509.load_pem_x509_certificate((d / "server.crt").read_bytes())
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "smp.example.com"
    assert isinstance(cert.public_key(), ed448.Ed448PublicKey)
    ca = x509.load_pem_x509_certificate((d / "ca.crt").read_bytes())
    assert isinstance(ca.public_key(), ed448.Ed448PublicKey)
    assert load_config(d).transport.bind == "127.0.0.1"  # --ip decides the listen address


def test_init_bad_ip(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "init", "--dir", str(tmp_path / "s"), "--ip", "example.com")
    assert code == 1 and "--ip" in err and not (tmp_path / "s").exists()


def test_cert_renews_keeping_address(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = tmp_path / "srv"
    m = init(capsys, d)
    old = (d / "server.crt").read_bytes()
    code, out, err = run(capsys, "cert", "--dir", str(d), "--cn", "new.example.com")
    assert code == 0, err
    assert (d / "server.crt").read_bytes() != old
    assert run(capsys, "address", "--dir", str(d))[1].strip() == m.group(0)
    (d / "ca.key").unlink()
    code, _, err = run(capsys, "cert", "--dir", str(d))
    assert code == 1 and "ca.key" in err


def test_address_reports_fingerprint_mismatch(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = tmp_path / "srv"
    init(capsys, d)
    (d / "fingerprint").write_text("AAAA\n")
    code, out, err = run(capsys, "address", "--dir", str(d))
    assert code == 1 and "fingerprint" in err and out == ""


def test_address_without_init(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "address", "--dir", str(tmp_path))
    assert code == 1 and "smpfast init" in err


@pytest.fixture
def fake_server(monkeypatch: pytest.MonkeyPatch) -> list[Config]:
    """Stand-in for smpfast.server.main: records the config instead of serving."""
    calls: list[Config] = []
    module = types.ModuleType("smpfast.server.main")

    def run_server(config: Config, *, debug: bool = False) -> int:
        calls.append(config)
        return 7

    module.run = run_server  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "smpfast.server.main", module)
    return calls


@pytest.mark.parametrize("make_dir", [False, True])
def test_start_init_initialises_missing_or_empty_dir(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fake_server: list[Config], make_dir: bool
) -> None:
    d = tmp_path / "fresh"
    if make_dir:
        d.mkdir()
    code, out, err = run(capsys, "start", "--init", "--dir", str(d))
    assert code == 7  # the server's exit code is the command's
    assert "initialising" in err
    assert set(os.listdir(d)) == EXPECTED_FILES
    [config] = fake_server
    assert config.config_dir == d.absolute()
    assert config.transport.bind == "127.0.0.1"
    # The address is printed once, by the server when it listens, not by the init step.
    assert "smp://" not in out + err
    fingerprint = (d / "fingerprint").read_text().strip()
    assert f"Fingerprint: {fingerprint}" in err


@pytest.mark.parametrize("make_dir", [False, True])
def test_start_refuses_missing_or_empty_dir_without_init(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fake_server: list[Config], make_dir: bool
) -> None:
    d = tmp_path / "op3-typo"
    if make_dir:
        d.mkdir()
    code, out, err = run(capsys, "start", "--dir", str(d))
    assert code == 1 and fake_server == []
    [line] = err.splitlines()
    assert line.startswith("smpfast: error: ") and str(d) in line and "--init" in line
    assert "smpfast init" in line
    assert os.path.exists(d) == make_dir and (not make_dir or os.listdir(d) == [])


def test_start_initialises_the_default_dir(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fake_server: list[Config], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    code, _, err = run(capsys, "start")
    assert code == 7 and "initialising" in err
    assert set(os.listdir(tmp_path / cli.DEFAULT_DIR)) == EXPECTED_FILES
    assert fake_server[0].config_dir == (tmp_path / cli.DEFAULT_DIR).absolute()


def test_start_port_and_bind_override_the_ini(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fake_server: list[Config]
) -> None:
    d = tmp_path / "srv"
    init(capsys, d, "--port", "6000")
    code, _, err = run(capsys, "start", "--dir", str(d), "--port", "7000,7001", "--bind", "::1")
    assert code == 7, err
    assert fake_server[0].transport.port == (7000, 7001) and fake_server[0].transport.bind == "::1"
    assert load_config(d).transport.port == (6000,)  # the file is unchanged
    code, _, err = run(capsys, "start", "--dir", str(d), "--bind", "localhost")
    assert code == 1 and err.startswith("smpfast: error: --bind") and len(err.splitlines()) == 1


def test_start_uses_existing_server(tmp_path: Path, capsys: pytest.CaptureFixture[str], fake_server: list[Config]) -> None:
    d = tmp_path / "srv"
    init(capsys, d, "--port", "6000")
    fingerprint = (d / "fingerprint").read_text()
    code, _, err = run(capsys, "start", "--dir", str(d))
    assert code == 7 and "initialising" not in err
    assert (d / "fingerprint").read_text() == fingerprint
    assert fake_server[0].transport.port == (6000,)


def test_start_with_bad_config_names_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fake_server: list[Config]
) -> None:
    d = tmp_path / "srv"
    init(capsys, d)
    ini = d / "smpfast.ini"
    ini.write_text(ini.read_text().replace("log_stats = off", "log_stats = yes"))
    code, _, err = run(capsys, "start", "--dir", str(d))
    assert code == 1 and "[STORE_LOG] log_stats" in err
    assert fake_server == []


def test_ensure_initialized_directly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    result = cli.ensure_initialized(tmp_path / "x")
    assert result is not None and result.config.auth.create_password
    assert cli.ensure_initialized(tmp_path / "x") is None
    assert cli.ensure_initialized(tmp_path / "x", allowed=False) is None
    with pytest.raises(cli.CliError):
        cli.ensure_initialized(tmp_path / "y", allowed=False)


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"smpfast {smpfast.__version__}"


def test_python_dash_m(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-W", "ignore", "-m", "smpfast", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0 and proc.stdout.strip() == f"smpfast {smpfast.__version__}"


def test_subcommands_registered() -> None:
    assert {"init", "address", "cert", "start"} <= set(cli.SUBCOMMANDS)
    help_text = cli.build_parser().format_help()
    for name in ("init", "address", "cert", "start"):
        assert name in help_text


@pytest.mark.parametrize(
    "extra,hosts,port,auth",
    [
        ((), ("127.0.0.1",), "", True),
        (("--password", "none", "--port", "5224"), ("127.0.0.1",), "5224", False),
        (("--fqdn", "smp.example.com,abc.onion", "--port", "443,5223"), ("smp.example.com", "abc.onion"), "443", True),
        (("--ip", "2001:db8::5", "--port", "5224", "--password", "p#w"), ("2001:db8::5",), "5224", True),
    ],
)
def test_address_parses_as_smp_server(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: tuple[str, ...], hosts: tuple[str, ...], port: str, auth: bool
) -> None:
    """The printed address is what the protocol's own address parser accepts."""
    from smpfast.protocol.address import parse_server_address

    d = tmp_path / "srv"
    m = init(capsys, d, *extra)
    server, basic_auth = parse_server_address(m.group(0))
    assert server.hosts == hosts and server.port == port
    assert base64.urlsafe_b64encode(server.key_hash).decode() + "\n" == (d / "fingerprint").read_text()
    cfg = load_config(d)
    assert (basic_auth.decode() if basic_auth else None) == cfg.auth.create_password
    assert (basic_auth is not None) == auth


def test_init_control_port(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`init --control-port [PORT]` as the reference: 5224 by default, two different random
    passwords (18 bytes, base64url); without it the lines are written commented out."""
    d = tmp_path / "a"
    code, out, _ = run(capsys, "init", "--dir", str(d), "--control-port", "-y")
    assert code == 0 and "Control port: 127.0.0.1:5224" in out
    cfg = load_config(d)
    admin, user = cfg.auth.control_port_admin_password, cfg.auth.control_port_user_password
    assert cfg.transport.control_port == 5224
    assert admin != user and len(base64.urlsafe_b64decode(admin)) == len(base64.urlsafe_b64decode(user)) == 18
    assert cfg.auth.daily_block_queue_quota == 20
    init(capsys, tmp_path / "b", "--control-port", "7001")
    assert load_config(tmp_path / "b").transport.control_port == 7001
    init(capsys, tmp_path / "c")
    cfg = load_config(tmp_path / "c")
    assert cfg.transport.control_port is None and cfg.auth.control_port_admin_password is None
    assert "# control_port = 5224" in (tmp_path / "c" / "smpfast.ini").read_text()
    with pytest.raises(SystemExit):
        cli.main(["init", "--dir", str(tmp_path / "d"), "--control-port", "70000"])
    assert "--control-port" in capsys.readouterr().err
    assert not (tmp_path / "d").exists()


def test_init_socks_proxy_and_own_domains(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """As the reference's init: --socks-proxy alone is 127.0.0.1:9050, --own-domains is
    comma-separated; both land in [PROXY]; the printed onion address is one the client reads."""
    from smpfast.client import parse_address
    from smpfast.transport.socks import SocksProxy

    onion = "c" * 56 + ".onion"
    d = tmp_path / "a"
    m = init(capsys, d, "--fqdn", f"smp.example.com,{onion}", "--socks-proxy", "--own-domains", "example.com,example.net")
    cfg = load_config(d)
    assert cfg.proxy.socks_proxy == SocksProxy("127.0.0.1", 9050)
    assert cfg.proxy.own_server_domains == ("example.com", "example.net")
    server, _ = parse_address(m.group(0))
    assert server.hosts == ("smp.example.com", onion)
    init(capsys, tmp_path / "b", "--socks-proxy", "@10.1.2.3:9150")
    assert load_config(tmp_path / "b").proxy.socks_proxy == SocksProxy("10.1.2.3", 9150, isolate=False)
    code, _, err = run(capsys, "init", "--dir", str(tmp_path / "c"), "--socks-proxy", "localhost:9050")
    assert code == 1 and "--socks-proxy" in err and not (tmp_path / "c").exists()
