"""The golden transcripts of the reference server (``shared/transcripts`` beside the
repository; README.md there) and the few helpers every test reading them needs.

The folder is found beside the checkout (``<repo>/../shared/transcripts``, where CI puts it),
or named by ``SMPFAST_TRANSCRIPTS``. Missing transcripts fail the tests that need them.
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path

from smpfast import _core as core


def _find() -> Path:
    named = os.environ.get("SMPFAST_TRANSCRIPTS")
    candidates = [Path(named)] if named else []
    candidates.append(Path(__file__).resolve().parents[2] / "shared" / "transcripts")
    for path in candidates:
        if path.is_dir():
            return path
    raise FileNotFoundError(f"golden transcripts not found (looked in {', '.join(map(str, candidates))})")


TRANSCRIPTS = _find()
FILES = sorted(p.name for p in TRANSCRIPTS.glob("*.json"))
assert FILES, f"no transcript in {TRANSCRIPTS}"


@functools.cache
def load(name: str) -> dict:
    return json.loads((TRANSCRIPTS / name).read_text())


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
