"""Fixtures of the core micro-benchmarks: a block of 135 SUBs (a full v16 block), their
Ed25519 signatures, and a 16 KB message body with its key and nonce."""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

import nacl.signing
import pytest

from smpfast._core import _framing_py

SUBS_PER_BLOCK = 135
SESSION = os.urandom(32)
V16 = (True, True)  # implied session, service-signature slot


@pytest.fixture(scope="session")
def session_id() -> bytes:
    return SESSION


@pytest.fixture(scope="session")
def sub_fields() -> list[tuple]:
    """encode_transmission arguments of 135 SUBs signed with Ed25519 (v16+)."""
    out = []
    for _ in range(SUBS_PER_BLOCK):
        out.append((os.urandom(64), os.urandom(24), os.urandom(24), b"SUB", SESSION, *V16))
    return out


@pytest.fixture(scope="session")
def sub_block(sub_fields) -> bytes:
    ts = [_framing_py.encode_transmission(*f) for f in sub_fields]
    return _framing_py.encode_batch(ts, 16384)


@pytest.fixture(scope="session")
def signed_requests() -> list[tuple]:
    """verify_batch requests of 135 valid Ed25519 signatures over SUB-sized messages."""
    requests = []
    for _ in range(SUBS_PER_BLOCK):
        signer = nacl.signing.SigningKey(os.urandom(32))
        message = b"\x20" + SESSION + b"\x18" + os.urandom(24) + b"\x18" + os.urandom(24) + b"SUB"
        requests.append((bytes(signer.verify_key), signer.sign(message).signature, message, None))
    return requests


@pytest.fixture(scope="session")
def two_threads():
    # The pool starts threads lazily and reuses an idle one when it can: make both exist
    # now (two tasks that wait for each other), so the two halves of a batch run in parallel.
    barrier = threading.Barrier(2)
    with ThreadPoolExecutor(max_workers=2) as pool:
        for f in [pool.submit(barrier.wait, 10) for _ in range(2)]:
            f.result()
        yield pool


@pytest.fixture(scope="session")
def body_16k() -> tuple[bytes, bytes, bytes]:
    """(key, nonce, body): a 16048-byte SEND body, padded to 16106 like a MSG."""
    return os.urandom(32), os.urandom(24), os.urandom(16048)
