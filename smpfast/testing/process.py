"""Run ``smpfast start`` as a child process: for end-to-end tests, benchmarks and tools
that must measure the server from outside (CPU time, restarts, kill -9)."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ADDRESS_PREFIX = "Server address: "


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def smpfast_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "smpfast", *args]


def init_data_dir(directory: str | os.PathLike[str], port: int, password: str = "none") -> str:
    """``smpfast init`` a fresh directory on loopback; returns the address it printed."""
    out = subprocess.run(
        smpfast_command("init", "--dir", str(directory), "--port", str(port), "--password", password, "--yes"),
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    return out.strip().splitlines()[-1]


_WORKER_STARTED = re.compile(r"worker (\d+) started \(pid (\d+)\)")
_WORKER_SERVING = re.compile(r"worker \d+ \(pid (\d+)\) serving")


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except (FileNotFoundError, ProcessLookupError):
        return []


def _running(pid: int) -> bool:
    """Alive and not a zombie (dead, not yet reaped)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (FileNotFoundError, ProcessLookupError):
        # Reaped between open() and read(): the kernel answers ESRCH.
        return False


def _cpu_seconds(pid: int, reaped: bool = False) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    used = int(fields[11]) + int(fields[12])  # utime + stime
    if reaped:
        used += int(fields[13]) + int(fields[14])  # cutime + cstime: children it waited for
    return used / ticks


NO_WORKERS_FLAG = 0  # ServerProcess(workers=): start it without --workers


class ServerProcess:
    """``smpfast start --dir DIR`` in a child process.

    ``start()`` waits until the server prints its address (it is listening then);
    ``stop()`` sends SIGTERM and returns the exit code; ``kill()`` sends SIGKILL.
    ``cpu_seconds()`` is the child's user + system CPU time so far (Linux /proc), its worker
    processes' included. ``workers``: ``--workers N`` (default: the environment's
    ``SMPFAST_TEST_WORKERS``, else 1, one process; ``NO_WORKERS_FLAG``: no such option, for
    another tree's server from before worker processes); ``worker_pids()`` are the live workers
    (with N > 1), in the order of their index as the supervisor logged them.
    ``cwd``: the child's working directory (default: ours). ``python -m`` puts it first on
    the import path, ahead of PYTHONPATH, so to run another source tree's smpfast through
    ``env={"PYTHONPATH": tree}`` give a directory without an ``smpfast`` package in it.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        env: dict[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        max_version: int | None = None,
        workers: int | None = None,
    ) -> None:
        self.directory = Path(directory)
        self.workers = workers if workers is not None else int(os.environ.get("SMPFAST_TEST_WORKERS", "1") or 1)
        self.max_version = max_version  # offer up to it (smpfast.testing.serve), not the announced range
        self.env = {**os.environ, **(env or {})}
        self.cwd = cwd
        self.proc: subprocess.Popen[str] | None = None
        self.address: str | None = None

    def start(self, timeout: float = 60.0) -> str:
        # Output goes to a file, not a pipe: a pipe nobody drains would block the server.
        self.log_path = self.directory / "server.log"
        self._log = open(self.log_path, "w")
        if self.max_version is None:
            command = smpfast_command("start", "--dir", str(self.directory))
            if self.workers != NO_WORKERS_FLAG:
                command += ["--workers", str(self.workers)]
        else:
            command = [sys.executable, "-m", "smpfast.testing.serve", str(self.directory), str(self.max_version),
                       str(self.workers)]
        self.proc = subprocess.Popen(
            command,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            text=True,
            env=self.env,
            cwd=self.cwd,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.log_path.read_text().splitlines():
                if line.startswith(ADDRESS_PREFIX):
                    self.address = line[len(ADDRESS_PREFIX) :].strip()
                    return self.address
            if self.proc.poll() is not None:
                raise RuntimeError("smpfast start exited early:\n" + self.log_path.read_text())
            time.sleep(0.05)
        self.kill()
        raise TimeoutError("smpfast start did not print its address")

    def log(self) -> str:
        return self.log_path.read_text()

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def cpu_seconds(self) -> float:
        """The server's CPU: the process, its live workers, and the workers it reaped."""
        total = _cpu_seconds(self.pid, reaped=True)
        for pid in _children(self.pid):
            try:
                total += _cpu_seconds(pid)
            except (FileNotFoundError, ProcessLookupError):
                pass  # exited meanwhile: counted once reaped
        return total

    def worker_pids(self) -> list[int]:
        """The live workers' pids by worker index, from the supervisor's log lines."""
        pids: dict[int, int] = {}
        for line in self.log().splitlines():
            m = _WORKER_STARTED.search(line)
            if m:
                pids[int(m.group(1))] = int(m.group(2))
        live = {pid for pid in _children(self.pid) if _running(pid)}
        return [pids[i] for i in sorted(pids) if pids[i] in live]

    def serving_workers(self) -> list[int]:
        """Live worker pids that logged that they serve."""
        serving = {int(m.group(1)) for m in _WORKER_SERVING.finditer(self.log())}
        return [pid for pid in self.worker_pids() if pid in serving]

    def wait_workers(self, timeout: float = 30.0) -> list[int]:
        """Wait until all ``workers`` workers serve (after a restart); their pids."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pids = self.serving_workers()
            if len(pids) == self.workers:
                return pids
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError("the server exited:\n" + self.log()[-4000:])
            time.sleep(0.05)
        raise TimeoutError(f"{len(self.serving_workers())} of {self.workers} workers serve")

    def signal_all(self, signum: int) -> None:
        """Send ``signum`` to the server and every worker (SIGSTOP/SIGCONT freeze and thaw
        all of it; the supervisor alone would leave the workers serving)."""
        for pid in [self.pid, *_children(self.pid)]:
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass

    def kill_worker(self, pid: int) -> None:
        """SIGKILL one worker (the supervisor starts another)."""
        if pid not in self.worker_pids():
            raise ValueError(f"{pid} is not a live worker of this server")
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while _running(pid) and time.monotonic() < deadline:
            time.sleep(0.01)

    def stop(self, timeout: float = 30.0) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=timeout)
        self._log.close()
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)
            self._log.close()

    def __enter__(self) -> "ServerProcess":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                self.stop()
            except subprocess.TimeoutExpired:
                self.kill()
