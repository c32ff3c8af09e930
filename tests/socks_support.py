"""A real SOCKS5 server for tests: ``pproxy`` (a maintained Python proxy from PyPI) run as
a child process on 127.0.0.1.

``SocksServer(onion_to=port)`` also routes every ``*.onion`` destination to
127.0.0.1:``port`` (pproxy's tunnel rule), the way Tor reaches a hidden service: a relay
given a ``.onion`` address is then reachable through the proxy only. ``auth="user:pass"``
makes the proxy require those credentials (RFC 1929). The log (``log()``) shows every
connection the proxy made, ``-> host:port`` or ``-> tunnel ...``.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from smpfast.testing.process import free_port


class SocksServer:
    def __init__(self, *, onion_to: int | None = None, auth: str | None = None) -> None:
        self.port = free_port()
        self.onion_to = onion_to
        self.auth = auth
        self._dir = tempfile.TemporaryDirectory(prefix="socks-")
        self.log_path = Path(self._dir.name) / "pproxy.log"
        self.proc: subprocess.Popen | None = None

    @property
    def address(self) -> str:
        """``[user:pass@]127.0.0.1:port`` as smpfast's SocksProxy reads it."""
        return f"{self.auth + '@' if self.auth else ''}127.0.0.1:{self.port}"

    def start(self) -> "SocksServer":
        listen = f"socks5://127.0.0.1:{self.port}" + (f"#{self.auth}" if self.auth else "")
        cmd = [sys.executable, "-m", "pproxy", "-l", listen, "-v"]
        if self.onion_to is not None:
            rules = Path(self._dir.name) / "onion.rules"
            rules.write_text(r".*\.onion$" + "\n")
            cmd += ["-r", f"tunnel://127.0.0.1:{self.onion_to}?{rules}"]
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("pproxy exited:\n" + self.log())
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise TimeoutError("pproxy did not start listening")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        if self.proc is not None:
            self._log.close()
        self._dir.cleanup()

    def __enter__(self) -> "SocksServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
