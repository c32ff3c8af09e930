"""``--workers N``: N generator processes, each with its own trio event loop and its share
of the run (LoadConfig.share), so that one Python process's single core does not limit
the load. The parent starts them, lets them all set up, starts their traffic together,
shows their combined progress, and merges their reports (merge.py: exact histograms).

The parent talks to each worker (``python -m smpfast.load.workers``) over its stdin and
stdout, one JSON object per line:

    parent -> worker   {"config": LoadConfig.to_wire(), "index": i}   then   "go"
    worker -> parent   {"event": "ready"}   set up, waiting for "go"
                       {"event": "tick", "row": {...}, "totals": {...}}   every second
                       {"event": "report", "exit_code": n, "report": {...} | null}

Ctrl-C (SIGINT) to the parent is passed to every worker, which stops as a single
process does (control.py) and still sends its partial report. Workers run in their own
session, so a terminal's Ctrl-C reaches them once, through the parent; a worker whose
parent disappears (stdin closed) interrupts itself.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time

import trio

from . import environment, exitcodes, report
from .config import LoadConfig
from .control import Control
from .progress import INTERVAL, Progress

GO = b"go\n"


class LineReader:
    """Lines from a trio receive stream."""

    def __init__(self, stream: trio.abc.ReceiveStream) -> None:
        self.stream = stream
        self.buffer = b""

    async def readline(self) -> bytes | None:
        """The next line with its newline, or None at end of stream."""
        while b"\n" not in self.buffer:
            chunk = await self.stream.receive_some(65536)
            if not chunk:
                return None
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line + b"\n"


# ---------------------------------------------------------------- the worker side


def _emit(obj: dict) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


class WorkerControl(Control):
    """Waits for the parent's "go" at ``ready``; passes the per-second rows up; a closed
    stdin (the parent is gone) interrupts the run."""

    def __init__(self, stdin: LineReader, nursery: trio.Nursery) -> None:
        super().__init__()
        self.stdin = stdin
        self.nursery = nursery

    async def ready(self) -> None:
        await super().ready()
        _emit({"event": "ready"})
        line = await self.stdin.readline()
        if line != GO:
            self.interrupt()
            await super().ready()  # raises Interrupted
        self.nursery.start_soon(self._watch_parent)

    async def _watch_parent(self) -> None:
        while await self.stdin.readline() is not None:
            pass
        self.interrupt()

    def tick(self, row: dict, totals: dict) -> None:
        _emit({"event": "tick", "row": row, "totals": totals})


async def _worker_main() -> int:
    from .main import connections_needed, run_load
    from .pool import raise_fd_limit

    stdin = LineReader(trio.lowlevel.FdStream(os.dup(0)))
    first = await stdin.readline()
    if first is None:
        return exitcodes.USAGE_OR_SETUP
    cfg = LoadConfig.from_wire(json.loads(first)["config"])
    try:
        raise_fd_limit(connections_needed(cfg))
    except OSError as e:
        print(f"smpfast load: error: {e}", file=sys.stderr)
        _emit({"event": "report", "exit_code": exitcodes.USAGE_OR_SETUP, "report": None})
        return exitcodes.USAGE_OR_SETUP
    async with trio.open_nursery() as nursery:
        control = WorkerControl(stdin, nursery)
        code, doc = await run_load(cfg, Progress(mode="quiet"), io.StringIO(), control, signals=True)
        nursery.cancel_scope.cancel()
    _emit({"event": "report", "exit_code": code, "report": doc})
    return code


def worker_main() -> int:
    try:
        return trio.run(_worker_main)
    except KeyboardInterrupt:
        return exitcodes.INTERRUPTED


# ---------------------------------------------------------------- the parent side


class Worker:
    def __init__(self, index: int, process: trio.Process) -> None:
        self.index = index
        self.process = process
        self.ready = trio.Event()
        self.finished = trio.Event()
        self.report: dict | None = None
        self.exit_code: int | None = None
        self.totals = {"sent": 0, "received": 0, "errors": 0, "in_flight": 0}
        self.per_second = 0.0
        self.cpu_percent = 0.0
        self.stderr = b""

    def signal(self, sig: int) -> None:
        if self.process.returncode is None:
            try:
                self.process.send_signal(sig)
            except ProcessLookupError:
                pass

    async def read_events(self) -> None:
        assert self.process.stdout is not None
        lines = LineReader(self.process.stdout)
        while (line := await lines.readline()) is not None:
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                continue
            kind = event.get("event")
            if kind == "ready":
                self.ready.set()
            elif kind == "tick":
                self.totals = event["totals"]
                self.per_second = event["row"]["per_second"]
                self.cpu_percent = event["row"]["cpu_percent"]
            elif kind == "report":
                self.report = event["report"]
                self.exit_code = event["exit_code"]
        self.ready.set()  # (also when it ended without becoming ready)
        self.finished.set()

    async def read_stderr(self) -> None:
        assert self.process.stderr is not None
        while chunk := await self.process.stderr.receive_some(65536):
            self.stderr += chunk

    def error_lines(self) -> list[str]:
        return [line for line in self.stderr.decode(errors="replace").splitlines() if line.strip()]


def worker_command() -> list[str]:
    return [sys.executable, "-m", "smpfast.load.workers"]


async def _parent(cfg: LoadConfig) -> int:
    progress = Progress.for_options(cfg.quiet)
    env = environment.collect()
    started = report.now_iso()
    t_start = time.perf_counter()
    workers: list[Worker] = []
    interrupts = 0

    def forward(sig: int = signal.SIGINT) -> None:
        for w in workers:
            w.signal(sig)

    async with trio.open_nursery() as nursery:
        with trio.open_signal_receiver(signal.SIGINT) as signals:

            async def watch_signals() -> None:
                nonlocal interrupts
                async for _ in signals:
                    interrupts += 1
                    progress.message("interrupted: stopping the workers")
                    forward()

            nursery.start_soon(watch_signals)
            for i in range(cfg.workers):
                proc = await trio.lowlevel.open_process(
                    worker_command(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                    start_new_session=True)
                w = Worker(i, proc)
                workers.append(w)
                nursery.start_soon(w.read_events)
                nursery.start_soon(w.read_stderr)
                assert proc.stdin is not None
                await proc.stdin.send_all(json.dumps({"config": cfg.share(i, cfg.workers).to_wire(),
                                                      "index": i}).encode() + b"\n")
            for w in workers:
                await w.ready.wait()
            failed = [w for w in workers if w.finished.is_set() and w.report is None]
            if failed or interrupts:
                forward()
            else:
                for w in workers:
                    assert w.process.stdin is not None
                    await w.process.stdin.send_all(GO)
                progress.message(f"[{time.perf_counter() - t_start:6.1f}s] {cfg.workers} workers set up: traffic starts")
                nursery.start_soon(_show_progress, workers, progress, t_start)
            for w in workers:
                await w.finished.wait()
                await w.process.wait()
                if w.exit_code is None:
                    w.exit_code = w.process.returncode
            nursery.cancel_scope.cancel()
    progress.clear()
    said: dict[str, list[int]] = {}  # the same line from several workers is printed once
    for w in workers:
        for line in w.error_lines():
            said.setdefault(line, []).append(w.index)
    for line, who in said.items():
        name = f"worker {who[0]}" if len(who) == 1 else "workers " + ", ".join(map(str, who))
        print(f"{name}: {line}", file=sys.stderr)
    reports = [w.report for w in workers]
    if any(r is None for r in reports):
        if interrupts:
            return _interrupted_during_setup(cfg, env, started)
        print("smpfast load: error: a worker could not run (see its lines above)", file=sys.stderr)
        return exitcodes.USAGE_OR_SETUP
    if any(r["results"] is None for r in reports):  # type: ignore[index]
        return _interrupted_during_setup(cfg, env, started)
    from .main import finish
    from .merge import merge_reports

    doc = merge_reports(reports, "concurrent", spectrum=cfg.latency_spectrum, cfg=cfg,  # type: ignore[arg-type]
                        as_workers=True)
    env["loadavg_end"] = environment.loadavg()
    doc["environment"] = env
    doc["started_at"] = started
    doc["finished_at"] = report.now_iso()
    finish(cfg, doc, None)
    return doc["exit_code"]


def _interrupted_during_setup(cfg: LoadConfig, env: dict, started: str) -> int:
    from .main import finish

    env["loadavg_end"] = environment.loadavg()
    doc = report.build(cfg, env, None, None, [], started, report.now_iso(), interrupted_during="set-up")
    finish(cfg, doc, None)
    return doc["exit_code"]


async def _show_progress(workers: list[Worker], progress: Progress, t_start: float) -> None:
    while True:
        await trio.sleep(INTERVAL)
        tot = {k: sum(w.totals.get(k, 0) for w in workers) for k in ("sent", "received", "errors", "in_flight")}
        rate = sum(w.per_second for w in workers)
        cpus = " ".join(f"{w.cpu_percent:.0f}%" for w in workers)
        progress.update(f"[{time.perf_counter() - t_start:6.1f}s] {len(workers)} workers | sent {tot['sent']} "
                        f"rcvd {tot['received']} err {tot['errors']} | {rate:.0f} msg/s | in flight "
                        f"{tot['in_flight']} | cpu {cpus}")


def run_workers(cfg: LoadConfig) -> int:
    try:
        return trio.run(_parent, cfg)
    except KeyboardInterrupt:
        print("smpfast load: interrupted", file=sys.stderr)
        return exitcodes.INTERRUPTED


if __name__ == "__main__":
    sys.exit(worker_main())
