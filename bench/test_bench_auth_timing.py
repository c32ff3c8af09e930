"""ERR AUTH for an existing queue vs an absent one, sans-IO (pytest-benchmark view).

Each group holds the two members of one case: ``existing`` (a probe signed with a wrong
key to a queue that exists) and ``absent`` (the same to a random id); the ratio of their
medians should be 1. pytest-benchmark runs the two one after the other, so drift on a busy
machine shows up as a difference: bench/auth_timing.py interleaves the two kinds, adds the
end-to-end level and the statistics, and is the one to quote::

    .venv/bin/pytest bench/test_bench_auth_timing.py --benchmark-only --benchmark-columns=min,median,rounds
"""

from __future__ import annotations

import itertools
import os

import pytest

from auth_timing import (
    WARMUP,
    answered,
    broker_setup,
    is_err_auth,
    probe_transmissions,
    single_blocks,
    target_id,
)
from smpfast.crypto.keys import Alg, generate_private_key

ROUNDS = 1500
ALGS = ["ed25519", "x25519"]


@pytest.fixture(scope="module", params=["memory", "lmdb"])
def setup(request, tmp_path_factory):
    s = broker_setup(request.param, tmp_path_factory.mktemp("auth-timing"), ALGS)
    yield request.param, s
    s.broker.store.close()


@pytest.mark.parametrize("kind", ["existing", "absent"])
@pytest.mark.parametrize("alg", ALGS)
@pytest.mark.parametrize("command", ["GET", "SEND", "NSUB"])
def test_err_auth(benchmark, setup, command, alg, kind):
    store_kind, s = setup
    benchmark.group = f"ERR AUTH {command} {alg} [{store_kind}]: existing vs absent queue"
    if kind == "existing":
        ids = [target_id(command, q[0]) for q in s.queues[alg]]
    else:
        ids = [os.urandom(24) for _ in s.queues[alg]]
    attacker = generate_private_key(Alg(alg))
    blocks = single_blocks(probe_transmissions(command, ids, ROUNDS + WARMUP, attacker,
                                               s.client.session_id, s.server_session_key))
    broker, client = s.broker, s.client
    [r] = answered(client, broker.process_block(client, blocks[0]).replies)
    assert is_err_auth(r), r
    it = itertools.cycle(blocks)

    def probe() -> None:
        broker.process_block(client, next(it))

    benchmark.extra_info.update(store=store_kind, command=command, alg=alg, kind=kind)
    benchmark.pedantic(probe, rounds=ROUNDS, iterations=1, warmup_rounds=WARMUP)
