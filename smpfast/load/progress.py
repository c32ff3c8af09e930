"""Live progress on stderr: one line rewritten in place each second on a terminal, plain
lines (one per second) otherwise, nothing with --quiet."""

from __future__ import annotations

import sys
import time
from typing import TextIO

import trio

INTERVAL = 1.0


class Progress:
    def __init__(self, stream: TextIO | None = None, mode: str | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        if mode is None:
            isatty = getattr(self.stream, "isatty", None)
            mode = "tty" if isatty is not None and isatty() else "plain"
        if mode not in ("tty", "plain", "quiet"):
            raise ValueError(f"progress mode {mode!r}")
        self.mode = mode
        self._dirty = False  # a tty line is showing

    @classmethod
    def for_options(cls, quiet: bool, stream: TextIO | None = None) -> "Progress":
        return cls(stream, "quiet" if quiet else None)

    def update(self, text: str) -> None:
        """The current state (replaces the previous one on a terminal)."""
        if self.mode == "quiet":
            return
        if self.mode == "tty":
            self.stream.write("\r\x1b[K" + text)
            self._dirty = True
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def message(self, text: str) -> None:
        """A line that stays (phase changes, warnings)."""
        if self.mode == "quiet":
            return
        self.clear()
        self.stream.write(text + "\n")
        self.stream.flush()

    def clear(self) -> None:
        if self._dirty:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self._dirty = False


class Phases:
    """What the run is doing now, for the progress line: a phase name and, during
    set-up, a done/total counter."""

    def __init__(self, progress: Progress, start: float | None = None) -> None:
        self.progress = progress
        self.start = time.perf_counter() if start is None else start
        self.name = "start"
        self.done = 0
        self.total = 0
        self.unit = ""
        self.entered = self.start
        self.timings: list[dict] = []  # finished set-up steps, for the report

    def enter(self, name: str, total: int = 0, unit: str = "") -> None:
        """Start a phase; a finished counted phase is logged as a permanent line."""
        self.finish()
        self.name, self.done, self.total, self.unit = name, 0, total, unit
        self.entered = time.perf_counter()

    def finish(self) -> None:
        if self.total:
            took = time.perf_counter() - self.entered
            self.timings.append({"phase": self.name, "what": self.unit, "count": self.done,
                                 "seconds": round(took, 6)})
            self.progress.message(f"{self.prefix()} {self.done}/{self.total} {self.unit} in {took:.2f} s")
            self.total = 0

    def advance(self, n: int = 1) -> None:
        self.done += n

    def prefix(self) -> str:
        return f"[{time.perf_counter() - self.start:6.1f}s] {self.name:<9}"

    def setup_line(self) -> str:
        if self.total:
            return f"{self.prefix()} {self.done}/{self.total} {self.unit}".rstrip()
        return self.prefix()

    async def show_setup(self, phases: frozenset[str] = frozenset({"connect", "create", "secure"})) -> None:
        """Print the set-up counter every second (while in one of ``phases``) until
        cancelled; the traffic phases print their own lines."""
        while True:
            await trio.sleep(INTERVAL)
            if self.name in phases:
                self.progress.update(self.setup_line())
