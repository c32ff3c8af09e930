"""Micro-benchmarks of the core: compiled against pure, one batch call against a loop.

Run explicitly (pytest's default testpaths is ``tests``)::

    pytest bench/ --benchmark-only

Each group holds the alternatives to compare (see the ``group`` names).
"""

from __future__ import annotations

import nacl.bindings
import pytest

from smpfast._core import _framing_py, _sodium_py
from smpfast._core import framing as cy_framing  # the compiled core must be built
from smpfast._core import sodium as cy_sodium

FRAMING = {"cython": cy_framing, "pure": _framing_py}
SODIUM = {"cython": cy_sodium, "pure": _sodium_py}
MSG_PADDED = 16106


@pytest.mark.benchmark(group="parse a block of 135 SUB (split_block)")
@pytest.mark.parametrize("impl", ["cython", "pure"])
def test_parse_block(benchmark, impl, sub_block, session_id):
    split_block = FRAMING[impl].split_block
    result = benchmark(split_block, sub_block, session_id, True, True)
    assert len(result) == 135 and all(r[0] == 0 for r in result)


@pytest.mark.benchmark(group="build a block of 135 SUB (encode_transmission + encode_batch)")
@pytest.mark.parametrize("impl", ["cython", "pure"])
def test_build_block(benchmark, impl, sub_fields, sub_block):
    fr = FRAMING[impl]
    encode, batch = fr.encode_transmission, fr.encode_batch

    def build():
        return batch([encode(*f) for f in sub_fields], 16384)

    assert benchmark(build) == sub_block


@pytest.mark.benchmark(group="verify 135 Ed25519 signatures")
def test_verify_batch_one_call(benchmark, signed_requests):
    result = benchmark.pedantic(cy_sodium.verify_batch, (signed_requests,), rounds=30, warmup_rounds=2)
    assert all(result)


@pytest.mark.benchmark(group="verify 135 Ed25519 signatures")
def test_verify_batch_two_threads(benchmark, signed_requests, two_threads):
    half = len(signed_requests) // 2
    parts = (signed_requests[:half], signed_requests[half:])

    def verify():
        futures = [two_threads.submit(cy_sodium.verify_batch, p) for p in parts]
        return futures[0].result() + futures[1].result()

    result = benchmark.pedantic(verify, rounds=30, warmup_rounds=2)
    assert len(result) == 135 and all(result)


@pytest.mark.benchmark(group="verify 135 Ed25519 signatures")
def test_verify_pynacl_loop(benchmark, signed_requests):
    sign_open = nacl.bindings.crypto_sign_open

    def verify():
        return [sign_open(sig + msg, key) == msg for key, sig, msg, _ in signed_requests]

    result = benchmark.pedantic(verify, rounds=30, warmup_rounds=2)
    assert all(result)


@pytest.mark.benchmark(group="encrypt a 16 KB MSG body (box_seal_padded)")
@pytest.mark.parametrize("impl", ["cython", "pure"])
def test_seal_16k(benchmark, impl, body_16k):
    key, nonce, body = body_16k
    sealed = benchmark(SODIUM[impl].box_seal_padded, key, nonce, body, MSG_PADDED)
    assert len(sealed) == MSG_PADDED + 16


@pytest.mark.benchmark(group="decrypt a 16 KB MSG body (box_open_padded)")
@pytest.mark.parametrize("impl", ["cython", "pure"])
def test_open_16k(benchmark, impl, body_16k):
    key, nonce, body = body_16k
    sealed = _sodium_py.box_seal_padded(key, nonce, body, MSG_PADDED)
    assert benchmark(SODIUM[impl].box_open_padded, key, nonce, sealed) == body
