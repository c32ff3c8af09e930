"""Every start-up failure is one line ``smpfast: error: ...`` naming the cause and the fix,
exit code 1, no traceback (``--debug`` shows it).  ``smpfast start`` runs as a subprocess.

Tests run as root here, where file permissions do not stop writes; the failures are made in
ways that fail for root too: a path under /sys (the kernel refuses), a path under a regular
file, garbage in the LMDB file.  A read-only mount and a full disk cannot be made without
privileges this sandbox lacks: their messages are checked on the errors the OS would raise.
"""

from __future__ import annotations

import errno
import os
import socket
import subprocess
from pathlib import Path

import pytest

from smpfast.startup_errors import ListenError, explain
from smpfast.testing.process import free_port, init_data_dir, smpfast_command


def start(directory: Path, *extra: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        smpfast_command("start", "--dir", str(directory), *extra),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def one_error_line(proc: subprocess.CompletedProcess[str]) -> str:
    """The process failed with exactly one line on stderr and nothing on stdout."""
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("smpfast: error: ")
    assert "Server address" not in proc.stdout
    return lines[0]


def set_ini(directory: Path, old: str, new: str) -> None:
    ini = directory / "smpfast.ini"
    text = ini.read_text()
    assert old in text
    ini.write_text(text.replace(old, new, 1))


@pytest.fixture
def server_dir(tmp_path: Path) -> Path:
    d = tmp_path / "srv"
    init_data_dir(d, free_port())
    return d


def _port(directory: Path) -> int:
    for line in (directory / "smpfast.ini").read_text().splitlines():
        if line.startswith("port = "):
            return int(line.split("=")[1])
    raise AssertionError("no port line")


def test_port_in_use(server_dir: Path) -> None:
    port = _port(server_dir)
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", port))
        blocker.listen()
        line = one_error_line(start(server_dir))
    assert f"127.0.0.1 port {port}" in line and "already in use" in line
    assert "--port" in line and "[TRANSPORT] port" in line


def test_port_in_use_debug_shows_the_traceback(server_dir: Path) -> None:
    port = _port(server_dir)
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", port))
        blocker.listen()
        proc = start(server_dir, "--debug")
    assert proc.returncode == 1
    assert "Traceback" in proc.stderr and "Address already in use" in proc.stderr
    assert proc.stderr.splitlines()[-1].startswith("smpfast: error: cannot listen on 127.0.0.1")


def test_start_port_overrides_the_ini_and_is_checked(server_dir: Path) -> None:
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        taken = blocker.getsockname()[1]
        line = one_error_line(start(server_dir, "--port", str(taken)))
    assert f"port {taken}" in line and "already in use" in line


def test_control_port_in_use(server_dir: Path) -> None:
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        taken = blocker.getsockname()[1]
        set_ini(server_dir, "[TRANSPORT]\n", f"[TRANSPORT]\ncontrol_port = {taken}\n")
        set_ini(server_dir, "# control_port = ", "# was control_port = ")
        line = one_error_line(start(server_dir))
    assert f"port {taken} (control)" in line and "[TRANSPORT] control_port" in line


def test_metrics_port_in_use(server_dir: Path) -> None:
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        taken = blocker.getsockname()[1]
        set_ini(server_dir, "# port = 9090", f"port = {taken}")
        line = one_error_line(start(server_dir))
    assert f"127.0.0.1 port {taken} (metrics)" in line and "[PROMETHEUS] port" in line


def test_bind_address_not_on_this_machine(server_dir: Path) -> None:
    line = one_error_line(start(server_dir, "--bind", "192.0.2.1"))  # TEST-NET-1, never local
    assert "192.0.2.1 is not an address of this machine" in line and "bind" in line


def test_store_permission_denied(server_dir: Path) -> None:
    target = "/sys/kernel/smpfast-test-store"
    if not Path("/sys/kernel").is_dir():
        pytest.skip("needs /sys (Linux), where even root may not create directories")
    set_ini(server_dir, "path = store", f"path = {target}")
    line = one_error_line(start(server_dir))
    assert "permission denied" in line and target in line and "owns" in line


def test_store_path_under_a_regular_file(server_dir: Path) -> None:
    set_ini(server_dir, "path = store", "path = fingerprint/store")
    line = one_error_line(start(server_dir))
    assert "not a directory" in line and "[STORE] path" in line


def test_store_not_lmdb(server_dir: Path) -> None:
    (server_dir / "store" / "data.mdb").write_bytes(os.urandom(16384))
    line = one_error_line(start(server_dir))
    assert "not a readable LMDB store" in line and "backup" in line


@pytest.mark.parametrize("name", ["server.crt", "server.key", "ca.crt"])
def test_bad_certificate(server_dir: Path, name: str) -> None:
    (server_dir / name).write_text("-----BEGIN CERTIFICATE-----\nnot base64\n")
    line = one_error_line(start(server_dir))
    assert name in line
    assert "backup" in line or "fingerprint" in line


def test_unknown_key_names_file_and_nearest_key(server_dir: Path) -> None:
    set_ini(server_dir, "ttl = ", "tll = ")
    line = one_error_line(start(server_dir))
    assert "[INACTIVE_CLIENTS] tll" in line and "smpfast.ini" in line and "did you mean `ttl`?" in line


def test_bad_value(server_dir: Path) -> None:
    set_ini(server_dir, "disconnect = on", "disconnect = yes")
    line = one_error_line(start(server_dir))
    assert "[INACTIVE_CLIENTS] disconnect" in line and "on or off" in line


@pytest.mark.parametrize(
    "old, new, words",
    [
        ("level = info", "level = verbose", "[LOG] level: must be one of debug, info, warn, error, not 'verbose'"),
        ("format = text", "format = yaml", "[LOG] format: must be one of text, json, not 'yaml'"),
    ],
)
def test_bad_log_setting(server_dir: Path, old: str, new: str, words: str) -> None:
    set_ini(server_dir, old, new)
    line = one_error_line(start(server_dir))
    assert words in line


def test_web_certificate_not_rsa_4096(server_dir: Path) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec

    from smpfast.testing.throwaway_certs import key_pem, make_cert, pem

    key = ec.generate_private_key(ec.SECP256R1())
    (server_dir / "web.crt").write_bytes(pem(make_cert(key, "localhost", ca=False)))
    (server_dir / "web.key").write_bytes(key_pem(key))
    set_ini(server_dir, "# static_path = www", "static_path = www")
    set_ini(server_dir, "# https = 443", f"https = {free_port()}")
    set_ini(server_dir, "# cert = /etc/letsencrypt/live/your.domain/fullchain.pem", "cert = web.crt")
    set_ini(server_dir, "# key = /etc/letsencrypt/live/your.domain/privkey.pem", "key = web.key")
    line = one_error_line(start(server_dir))
    assert "[WEB] cert:" in line and "must have a 4096-bit RSA key" in line and "certbot" in line


def test_web_port_in_use(server_dir: Path) -> None:
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        taken = blocker.getsockname()[1]
        set_ini(server_dir, "# static_path = www", "static_path = www")
        set_ini(server_dir, "# http = 8000", f"http = {taken}")
        line = one_error_line(start(server_dir))
    assert f"127.0.0.1 port {taken} (web)" in line and "[WEB] http / https" in line


def test_mistyped_dir_is_not_initialised(tmp_path: Path) -> None:
    line = one_error_line(start(tmp_path / "op3-typo"))
    assert "does not exist" in line and "--init" in line
    assert not (tmp_path / "op3-typo").exists()


# --- failures this sandbox cannot cause for real (needs a read-only mount or a full disk) ---


@pytest.mark.parametrize(
    "code, words",
    [
        (errno.EROFS, "read-only file system"),
        (errno.ENOSPC, "no space left"),
        (errno.EACCES, "permission denied"),
    ],
)
def test_os_error_messages(code: int, words: str) -> None:
    e = OSError(code, os.strerror(code), "/data/store")
    message = explain(BaseExceptionGroup("wrapped as trio does", [e]))
    assert message is not None and words in message and "/data/store" in message


def test_privileged_port_message() -> None:
    e = ListenError("SMP", "::", 443, PermissionError(errno.EACCES, "Permission denied"))
    message = explain(ExceptionGroup("g", [ExceptionGroup("h", [e])]))
    assert message is not None and "port 443" in message and "CAP_NET_BIND_SERVICE" in message


def test_unknown_error_is_not_explained() -> None:
    assert explain(ValueError("x")) is None
