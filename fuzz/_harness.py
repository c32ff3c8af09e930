"""What every fuzz target shares: a cursor over the input and the atheris entry point.

Targets read their input with ``Cursor`` rather than atheris' FuzzedDataProvider where
the layout must stay stable for the seed corpus (a seed file is written in that layout by
``make_seeds.py``); a read past the end yields zeros/empty bytes, never an error, so every
input is a valid one.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable

import atheris


class Cursor:
    """Reads fields from the front of a fuzz input."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def byte(self) -> int:
        pos = self.pos
        if pos >= len(self.data):
            return 0
        self.pos = pos + 1
        return self.data[pos]

    def word16(self) -> int:
        return (self.byte() << 8) | self.byte()

    def take(self, n: int) -> bytes:
        out = self.data[self.pos : self.pos + n]
        self.pos += len(out)
        return out

    def short(self) -> bytes:
        """A length byte then up to that many bytes."""
        return self.take(self.byte())

    def rest(self) -> bytes:
        out = self.data[self.pos :]
        self.pos = len(self.data)
        return out

    def remaining(self) -> int:
        return len(self.data) - self.pos


def outcome(fn: Callable, *args: object) -> tuple:
    """``("ok", result)`` or ``("raises", type, message)`` of one call."""
    try:
        return ("ok", fn(*args))
    except Exception as exc:  # noqa: BLE001 - type and message are what is compared
        return ("raises", type(exc), str(exc))


def same(a: object, b: object) -> bool:
    """Equal values of the same types, recursively (1 and True differ, bytes and bytearray too)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, (tuple, list)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))  # type: ignore[arg-type]
    return a == b


class Divergence(AssertionError):
    """The two implementations (or an encoding and its parse) disagree."""


def check(condition: bool, *context: object) -> None:
    if not condition:
        raise Divergence(*context)


def main(test_one_input: Callable[[bytes], None]) -> None:
    """Run the target under libFuzzer with the command line's flags and corpus dirs.

    A dictionary ``<target>.dict`` beside the script is used unless ``-dict=`` is given."""
    argv = list(sys.argv)
    words = Path(argv[0]).with_suffix(".dict")
    if words.is_file() and not any(a.startswith("-dict=") for a in argv):
        argv.insert(1, f"-dict={words}")
    atheris.Setup(argv, test_one_input)
    atheris.Fuzz()
