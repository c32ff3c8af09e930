"""Valid commands through this checkout's broker and another checkout's, paired in one process.

Separate runs of a benchmark on a shared machine differ by more than a small change costs.
This loads ``smpfast/server/broker.py`` and ``smpfast/crypto/auth.py`` of another checkout
(``--other``, e.g. ``git worktree add /tmp/base main``) next to this one's, gives both
brokers the same store (memory, or LMDB with 10,000 queues, as bench/auth_timing.py), and
times ``Broker.process_block`` of GET, SUB, SEND and NSUB signed with the right key, one
block of each broker per pair, in random order. Everything else (core, store, protocol)
is this checkout's, so only changes to those two modules are compared. Per case: both
medians and the median of the paired differences with its 95 % interval (sign test).

    .venv/bin/python bench/broker_ab.py --other /tmp/base
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType

import auth_timing as at
import smpfast.server.broker as this_broker

COMMANDS = ("GET", "SUB", "SEND", "NSUB")
ALGS = ("ed25519", "x25519")
WARMUP = 100


def _load(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def load_other(tree: Path) -> ModuleType:
    """The other checkout's broker module, using its auth module."""
    auth = _load("smpfast.crypto.auth_other", tree / "smpfast/crypto/auth.py")
    broker = _load("smpfast.server.broker_other", tree / "smpfast/server/broker.py")
    broker.cauth = auth  # the connection record's verifier and the broker look it up at call time
    return broker


def _connect(module: ModuleType, broker, session_private: bytes):
    """A connection record in either broker API: ``Broker.connect`` (effects), or the older
    ``Client`` whose outbox the broker filled."""
    if hasattr(module, "Client"):
        return module.Client(at.VERSION, os.urandom(32), session_private)
    return broker.connect(at.VERSION, os.urandom(32), session_private)


def _replies(client, result) -> list:
    """The answer batches of one processed block, in either broker API."""
    if result is not None:
        return result.replies
    batches = list(client.outbox)
    client.outbox.clear()
    return batches


def paired_case(setup: at.BrokerSetup, modules: tuple[ModuleType, ModuleType], command: str, alg: str, n: int,
                rng: random.Random) -> tuple[list[int], list[int]]:
    store = setup.broker.store
    brokers = [m.Broker(store) for m in modules]
    clients = [_connect(m, b, setup.client.session_private) for m, b in zip(modules, brokers)]
    encoded = at._command(command).encode(at.VERSION)
    blocks: list[list[tuple[bytes, bytes]]] = [[], []]
    for side, client in enumerate(clients):
        for i in range(n + WARMUP):
            rec, rk, sk, nk = setup.queues[alg][i % at.TARGETS]
            key = sk if command == "SEND" else nk if command == "NSUB" else rk
            entity, corr = at.target_id(command, rec), os.urandom(at.ID_LEN)
            auth = at._auth(key, client.session_id, corr, entity, encoded, setup.server_session_key)
            t = at.encode_client_transmission(at.VERSION, client.session_id, corr, entity, encoded, auth)
            blocks[side].append((rec.recipient_id, at.single_blocks([t])[0]))
    times: tuple[list[int], list[int]] = ([], [])
    clock = time.perf_counter_ns
    gc.collect()
    gc.disable()
    try:
        for i in range(n + WARMUP):
            first = rng.randrange(2)
            for side in (first, 1 - first):
                rid, block = blocks[side][i]
                client = clients[side]
                t0 = clock()
                result = brokers[side].process_block(client, block)
                t1 = clock()
                batches = _replies(client, result)
                if i < WARMUP:
                    [r] = at.answered(client, batches)
                    assert type(r).__name__ in ("Ok", "Sok"), (command, alg, r)
                else:
                    times[side].append(t1 - t0)
                if command == "SEND":  # keep the queue empty, untimed
                    msg = store.peek_message(rid)
                    assert msg is not None and store.delete_message(rid, msg.msg_id)
                    store.commit()
    finally:
        gc.enable()
    return times


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--other", type=Path, required=True, help="another checkout of smpfast (the baseline)")
    p.add_argument("--samples", type=int, default=3000, help="pairs per case (default 3000)")
    p.add_argument("--stores", type=at._names(at.STORES), default=list(at.STORES))
    p.add_argument("--seed", type=int, default=None)
    args = p.parse_args(argv)
    other = load_other(args.other)
    rng = random.Random(args.seed)
    print(f"{'store':<7}{'cmd':<5}{'auth':<8}{'other µs':>9}{'this µs':>9}{'this/other':>11}"
          f"  paired diff µs, median [95 % CI]")
    for kind in args.stores:
        with tempfile.TemporaryDirectory(prefix="smpfast-broker-ab-") as tmp:
            setup = at.broker_setup(kind, Path(tmp), list(ALGS))
            for command in COMMANDS:
                for alg in ALGS:
                    base, this = paired_case(setup, (other, this_broker), command, alg, args.samples, rng)
                    mb, mt = statistics.median(base) / 1000, statistics.median(this) / 1000
                    diffs = sorted((b - a) / 1000 for a, b in zip(base, this))
                    k = max(0, int(len(diffs) / 2 - 1.96 * len(diffs) ** 0.5 / 2))
                    print(f"{kind:<7}{command:<5}{alg:<8}{mb:9.2f}{mt:9.2f}{mt / mb:11.4f}"
                          f"  {statistics.median(diffs):+.3f} [{diffs[k]:+.3f}, {diffs[-k - 1]:+.3f}]", flush=True)
            setup.broker.store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
