"""The golden transcripts of the reference server (tests/data/transcripts, README.md there)
and the few helpers every test reading them needs.

Each recording is kept as its original JSON, xz-compressed (``NAME.json.xz``); tests name
it ``NAME.json``.
"""

from __future__ import annotations

import functools
import json
import lzma
from pathlib import Path

from smpfast import _core as core

TRANSCRIPTS = Path(__file__).resolve().parent / "data" / "transcripts"
FILES = sorted(p.name.removesuffix(".xz") for p in TRANSCRIPTS.glob("*.json.xz"))
assert FILES, f"no transcript in {TRANSCRIPTS}"


@functools.cache
def load(name: str) -> dict:
    return json.loads(lzma.decompress((TRANSCRIPTS / f"{name}.xz").read_bytes()))


def plaintext(block: dict) -> bytes:
    """The recorded padded plaintext block: ``unpadded_hex`` then '#' up to ``pad_to``."""
    raw = bytes.fromhex(block["unpadded_hex"])
    return raw + b"#" * (block["pad_to"] - len(raw))


def raw_transmissions(block: bytes) -> list[bytes]:
    """The transmissions of a well-formed padded batch, without their length prefixes."""
    content = core.unpad(block)
    out, pos = [], 1
    for _ in range(content[0]):
        n = int.from_bytes(content[pos : pos + 2], "big")
        out.append(content[pos + 2 : pos + 2 + n])
        pos += 2 + n
    assert pos == len(content)
    return out
