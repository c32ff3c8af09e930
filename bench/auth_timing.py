"""Timing parity of ERR AUTH: does a wrong authorization for an existing queue cost what
the same authorization for an absent queue costs?

If it does not, anybody can tell which queue ids exist by timing ERR AUTH answers. The
reference verifies absent queues against dummy keys so that both paths do the same
cryptography; this benchmark checks the whole path, not only the cryptography.

An attacker signs each probe with a key of its own (Ed25519, Ed448, or an X25519
authenticator made with the server's session key), for a recipient command (GET, SUB,
KEY), the sender's SEND, or the notifier's NSUB, and sends it once to an id that exists
(recipient / sender / notifier id of a queue whose keys are of the same algorithm) and once
to a random id. Every probe is answered ERR AUTH (checked). Samples of the two kinds are
interleaved: pairs (existing, absent) in random order within each pair, one pair after the
other, so drift on a shared machine hits both kinds alike.

Two levels:

- ``broker``: ``Broker.process_block`` of the decrypted block, sans-IO, on the memory store
  and on an LMDB store holding FILLER queues; ``time.perf_counter_ns`` around each call,
  garbage collection off while timing. Low noise: differences of 1 % are visible.
- ``e2e``: ``smpfast start`` in a child process (LMDB store, durability none) and one
  attacker session of smpfast.client (TLS on 127.0.0.1, at the version the server
  negotiates); the time from handing the block to TLS to receiving the reply block. The
  probes are prebuilt, so the client's signing is not timed.

Per case: both medians, the relative difference ``existing / absent - 1``, a bootstrap
95 % interval of that difference, and the two-sided p-value of a Mann-Whitney U test (a
small p with a tiny difference is still a tiny difference: read the interval).
``--valid`` adds the cost of the same commands with the right key at the broker level
(the hot path that parity work must not slow down).

    .venv/bin/python bench/auth_timing.py                        # both levels, 1500 pairs
    .venv/bin/python bench/auth_timing.py --level broker --valid  # sans-IO only, + valid commands
    .venv/bin/python bench/auth_timing.py --level valid           # only the valid commands
    .venv/bin/python bench/auth_timing.py --samples 300 --commands GET,SEND --algs ed25519
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import random
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from smpfast import _core as core
from smpfast.crypto.auth import authenticator
from smpfast.crypto.keys import Alg, PrivateKey, generate_private_key
from smpfast.protocol import commands as C
from smpfast.protocol import errors as E
from smpfast.protocol import versions as V
from smpfast.protocol.transmission import (
    batch_blocks,
    decode_client_transmissions,
    encode_client_transmission,
    t_for_auth,
)
from smpfast.server.broker import Broker, Peer, encode_answers
from smpfast.store import LMDBStore, MemoryStore, NotifierRecord, QueueRecord

COMMANDS = ("GET", "SUB", "KEY", "SEND", "NSUB")
ALGS = ("ed25519", "ed448", "x25519")
STORES = ("memory", "lmdb")
VERSION = V.SERVER_MAX_VERSION  # what the server negotiates with smpfast.client
ID_LEN = 24
DAY = 86400
FILLER = 10_000  # other queues in the broker-level stores (a B-tree of realistic depth)
TARGETS = 8  # existing (and absent) ids probed per case, in turn
WARMUP = 100  # untimed pairs before each case
BODY = b"m" * 100


def _command(name: str) -> C.Command:
    if name == "GET":
        return C.Get()
    if name == "SUB":
        return C.SUB
    if name == "KEY":
        return C.Key(generate_private_key(Alg.ED25519).public.der)
    if name == "SEND":
        return C.Send(C.MsgFlags(False), BODY)
    if name == "NSUB":
        return C.Nsub()
    raise ValueError(f"unknown command {name}")


def _auth(key: PrivateKey, session_id: bytes, corr: bytes, entity: bytes, encoded: bytes,
          server_session_key: bytes) -> bytes:
    tfa = t_for_auth(session_id, corr, entity, encoded)
    if key.alg is Alg.X25519:
        return authenticator(key, server_session_key, corr, tfa)
    return key.sign(tfa)


def probe_transmissions(command: str, entity_ids: list[bytes], n: int, attacker: PrivateKey,
                        session_id: bytes, server_session_key: bytes) -> list[bytes]:
    """``n`` transmissions of ``command`` to the ids in turn, each with a fresh corrId and
    authorized by ``attacker`` (a key the queues do not know)."""
    encoded = _command(command).encode(VERSION)
    out = []
    for i in range(n):
        corr, entity = os.urandom(ID_LEN), entity_ids[i % len(entity_ids)]
        auth = _auth(attacker, session_id, corr, entity, encoded, server_session_key)
        out.append(encode_client_transmission(VERSION, session_id, corr, entity, encoded, auth))
    return out


def single_blocks(transmissions: list[bytes]) -> list[bytes]:
    """One (decrypted) padded block per transmission (what the server's reader passes on)."""
    size = V.ENCRYPTED_BLOCK_PAD if VERSION >= V.ENCRYPTED_BLOCK else V.BLOCK_SIZE
    return [batch_blocks([t], size)[0] for t in transmissions]


def responses(blocks: list[bytes], session_id: bytes) -> list[C.Response | None]:
    out = []
    for block in blocks:
        out.extend(r.response for r in decode_client_transmissions(block, VERSION, session_id))
    return out


def answered(client: Peer, batches: list) -> list[C.Response | None]:
    """The responses of ``client``'s answer batches (``Effects.replies``), encoded and
    decoded as the wire carries them."""
    return responses([core.encode_batch(encode_answers(client, batch), V.BLOCK_SIZE) for _, batch in batches],
                     client.session_id)


def is_err_auth(response: object) -> bool:
    return isinstance(response, C.Err) and response.error == E.AUTH


# ---------------------------------------------------------------- statistics


def mann_whitney_p(a: list[float], b: list[float]) -> float:
    """Two-sided p of the Mann-Whitney U test (normal approximation, tie-corrected)."""
    n1, n2 = len(a), len(b)
    pooled = sorted([(x, 0) for x in a] + [(x, 1) for x in b])
    n = n1 + n2
    rank_sum_a = 0.0
    ties = 0.0
    i = 0
    while i < n:
        j = i
        while j + 1 < n and pooled[j + 1][0] == pooled[i][0]:
            j += 1
        rank = (i + j) / 2 + 1
        t = j - i + 1
        ties += t**3 - t
        rank_sum_a += rank * sum(1 for k in range(i, j + 1) if pooled[k][1] == 0)
        i = j + 1
    u = rank_sum_a - n1 * (n1 + 1) / 2
    sigma = math.sqrt(n1 * n2 / 12 * ((n + 1) - ties / (n * (n - 1))))
    if sigma == 0:
        return 1.0
    z = (u - n1 * n2 / 2) / sigma
    return math.erfc(abs(z) / math.sqrt(2))


def bootstrap_ratio_ci(a: list[float], b: list[float], resamples: int, rng: random.Random) -> tuple[float, float]:
    """95 % percentile-bootstrap interval of median(a) / median(b) - 1."""
    stats = []
    median = statistics.median
    for _ in range(resamples):
        stats.append(median(rng.choices(a, k=len(a))) / median(rng.choices(b, k=len(b))) - 1)
    stats.sort()
    return stats[int(0.025 * resamples)], stats[min(resamples - 1, int(0.975 * resamples))]


@dataclass
class CaseResult:
    level: str
    store: str
    command: str
    alg: str
    samples: int  # per kind
    existing_us: float
    absent_us: float
    diff_pct: float
    ci_low_pct: float
    ci_high_pct: float
    mann_whitney_p: float

    def row(self) -> str:
        return (f"{self.level:<6} {self.store:<6} {self.command:<5} {self.alg:<8} {self.existing_us:9.1f} "
                f"{self.absent_us:9.1f} {self.diff_pct:+7.2f} [{self.ci_low_pct:+6.2f}, {self.ci_high_pct:+6.2f}]"
                f" {self.mann_whitney_p:8.2g} {self.samples:6d}")


HEADER = (f"{'level':<6} {'store':<6} {'cmd':<5} {'auth':<8} {'exist µs':>9} {'absent µs':>9} {'diff %':>7}"
          f" {'95% CI (bootstrap)':>17} {'MW p':>8} {'n':>6}")


def summarize(level: str, store: str, command: str, alg: str, existing: list[int], absent: list[int],
              resamples: int) -> CaseResult:
    e = [x / 1000 for x in existing]
    a = [x / 1000 for x in absent]
    me, ma = statistics.median(e), statistics.median(a)
    lo, hi = bootstrap_ratio_ci(e, a, resamples, random.Random(1))
    return CaseResult(level, store, command, alg, len(e), me, ma, (me / ma - 1) * 100, lo * 100, hi * 100,
                      mann_whitney_p(e, a))


def interleaved(n: int, measure: Callable[[int, int], int], rng: random.Random) -> tuple[list[int], list[int]]:
    """n pairs; within each pair kind 0 (existing) and 1 (absent) in random order.
    ``measure(kind, i)`` returns nanoseconds."""
    times: tuple[list[int], list[int]] = ([], [])
    for i in range(n):
        first = rng.randrange(2)
        for kind in (first, 1 - first):
            times[kind].append(measure(kind, i))
    return times


# ---------------------------------------------------------------- broker level


def _alg(name: str) -> Alg:
    return Alg(name)


@dataclass
class BrokerSetup:
    broker: Broker
    client: Peer
    server_session_key: bytes
    # per alg: the target queues and their private keys
    queues: dict[str, list[tuple[QueueRecord, PrivateKey, PrivateKey, PrivateKey]]] = field(default_factory=dict)


def broker_setup(kind: str, directory: Path, algs: list[str]) -> BrokerSetup:
    store = MemoryStore() if kind == "memory" else LMDBStore(directory / "store", map_size=1 << 30, durability="none")
    broker = Broker(store)
    today = int(broker.clock()) // DAY * DAY
    filler_key = generate_private_key(Alg.ED25519).public.der
    for _ in range(FILLER):
        store.add_queue(_record(today, filler_key, filler_key, filler_key))
    session_private = os.urandom(32)
    client = broker.connect(VERSION, os.urandom(32), session_private)
    setup = BrokerSetup(broker, client, PrivateKey(Alg.X25519, session_private).public.raw)
    for name in algs:
        alg = _alg(name)
        targets = []
        for _ in range(TARGETS):
            rk, sk, nk = (generate_private_key(alg) for _ in range(3))
            rec = _record(today, rk.public.der, sk.public.der, nk.public.der)
            assert store.add_queue(rec)
            targets.append((rec, rk, sk, nk))
        setup.queues[name] = targets
    store.commit()
    return setup


def _record(today: int, rcv_key: bytes, snd_key: bytes, ntf_key: bytes) -> QueueRecord:
    """A queue as NEW (messaging mode) + KEY + NKEY leave it."""
    return QueueRecord(
        recipient_id=os.urandom(ID_LEN), recipient_keys=[rcv_key], rcv_dh_secret=os.urandom(32),
        sender_id=os.urandom(ID_LEN), sender_key=snd_key, queue_mode="M",
        notifier=NotifierRecord(os.urandom(ID_LEN), ntf_key, os.urandom(32)), updated_at=today,
    )


def target_id(command: str, rec: QueueRecord) -> bytes:
    if command == "SEND":
        return rec.sender_id
    if command == "NSUB":
        assert rec.notifier is not None
        return rec.notifier.notifier_id
    return rec.recipient_id


def broker_case(setup: BrokerSetup, command: str, alg: str, n: int, rng: random.Random) -> tuple[list[int], list[int]]:
    broker, client = setup.broker, setup.client
    attacker = generate_private_key(_alg(alg))
    existing_ids = [target_id(command, q[0]) for q in setup.queues[alg]]
    absent_ids = [os.urandom(ID_LEN) for _ in existing_ids]
    total = n + WARMUP
    blocks = [
        single_blocks(probe_transmissions(command, ids, total, attacker, client.session_id, setup.server_session_key))
        for ids in (existing_ids, absent_ids)
    ]
    # Both kinds answer ERR AUTH (checked on the warm-up pairs), and nothing else happens.
    for i in range(WARMUP):
        for kind in (0, 1):
            effects = broker.process_block(client, blocks[kind][i])
            [r] = answered(client, effects.replies)
            assert is_err_auth(r) and not effects.pushes, (command, alg, kind, r)
    process = broker.process_block
    clock = time.perf_counter_ns

    def measure(kind: int, i: int) -> int:
        block = blocks[kind][WARMUP + i]
        t0 = clock()
        process(client, block)
        t1 = clock()
        return t1 - t0

    gc.collect()
    gc.disable()
    try:
        return interleaved(n, measure, rng)
    finally:
        gc.enable()


def valid_case(setup: BrokerSetup, command: str, alg: str, n: int) -> float:
    """Median µs of ``process_block`` for ``command`` with the right key, on a fresh
    connection. KEY repeats the queue's sender key (OK, nothing written); SEND's message
    is removed again, untimed, so that the queue never fills."""
    broker, store = setup.broker, setup.broker.store
    client = broker.connect(VERSION, os.urandom(32), setup.client.session_private)
    blocks = []
    for i in range(n + WARMUP):
        rec, rk, sk, nk = setup.queues[alg][i % TARGETS]
        key = sk if command == "SEND" else nk if command == "NSUB" else rk
        cmd = C.Key(sk.public.der) if command == "KEY" else _command(command)
        encoded, entity, corr = cmd.encode(VERSION), target_id(command, rec), os.urandom(ID_LEN)
        auth = _auth(key, client.session_id, corr, entity, encoded, setup.server_session_key)
        t = encode_client_transmission(VERSION, client.session_id, corr, entity, encoded, auth)
        blocks.append((rec.recipient_id, single_blocks([t])[0]))
    clock = time.perf_counter_ns
    times = []
    gc.collect()
    gc.disable()
    try:
        for i, (rid, block) in enumerate(blocks):
            t0 = clock()
            effects = broker.process_block(client, block)
            t1 = clock()
            if i < WARMUP:
                [r] = answered(client, effects.replies)
                assert isinstance(r, (C.Ok, C.Sok)), (command, alg, r)
            else:
                times.append(t1 - t0)
            if command == "SEND":
                msg = store.peek_message(rid)
                assert msg is not None and store.delete_message(rid, msg.msg_id)
                store.commit()
    finally:
        gc.enable()
    broker.disconnect(client)
    return statistics.median(times) / 1000


def run_broker(args: argparse.Namespace, rng: random.Random) -> tuple[list[CaseResult], list[dict]]:
    results, valid = [], []
    for kind in args.stores:
        with tempfile.TemporaryDirectory(prefix="smpfast-authtiming-") as tmp:
            setup = broker_setup(kind, Path(tmp), args.algs)
            for command in args.commands if args.level != "valid" else ():
                for alg in args.algs:
                    existing, absent = broker_case(setup, command, alg, args.samples, rng)
                    r = summarize("broker", kind, command, alg, existing, absent, args.bootstrap)
                    results.append(r)
                    print(r.row(), flush=True)
            if args.valid or args.level == "valid":
                for command in args.commands:
                    for alg in args.algs:
                        us = valid_case(setup, command, alg, args.samples)
                        valid.append({"store": kind, "command": command, "alg": alg, "valid_us": us})
                        print(f"valid  {kind:<6} {command:<5} {alg:<8} {us:9.1f} µs per block", flush=True)
            setup.broker.store.close()
    return results, valid


# ---------------------------------------------------------------- end to end


def run_e2e(args: argparse.Namespace, rng: random.Random) -> list[CaseResult]:
    import trio

    from smpfast.client import SMPClient
    from smpfast.client.session import open_session
    from smpfast.testing.process import ServerProcess, free_port, init_data_dir

    results: list[CaseResult] = []
    with tempfile.TemporaryDirectory(prefix="smpfast-authtiming-e2e-") as tmp:
        directory = Path(tmp)
        init_data_dir(directory, free_port())
        ini = directory / "smpfast.ini"
        text = ini.read_text()
        assert "durability = fsync" in text
        ini.write_text(text.replace("durability = fsync", "durability = none"))
        server = ServerProcess(directory)
        server.start()
        address = server.address
        assert address is not None

        async def main() -> None:
            # The queues: created and secured by their owner on one connection.
            owner_ids: dict[str, list[tuple[bytes, bytes, bytes]]] = {}
            async with await SMPClient.connect(address) as owner:
                for alg in args.algs:
                    queues = await owner.create_queues(TARGETS, auth_alg=alg, subscribe=False)
                    replies = await owner.batch([
                        (q.rcv_id, C.Key(generate_private_key(_alg(alg)).public.der), q.rcv_auth_key)
                        for q in queues
                    ])
                    assert all(isinstance(r, C.Ok) for r in replies), replies
                    ids = []
                    for q in queues:
                        creds = await owner.enable_notifications(q, auth_alg=alg)
                        ids.append((q.rcv_id, q.snd_id, creds.notifier_id))
                    owner_ids[alg] = ids
            session = await open_session(address)
            assert session.version == VERSION and session.server_session_key is not None
            conn, enc, dec = session.conn, session.blocks.encryptor, session.blocks.decryptor
            clock = time.perf_counter_ns
            try:
                for command in args.commands:
                    for alg in args.algs:
                        column = {"SEND": 1, "NSUB": 2}.get(command, 0)
                        existing_ids = [ids[column] for ids in owner_ids[alg]]
                        absent_ids = [os.urandom(ID_LEN) for _ in existing_ids]
                        attacker = generate_private_key(_alg(alg))
                        total = args.samples + WARMUP
                        blocks = [
                            single_blocks(probe_transmissions(command, ids, total, attacker, session.session_id,
                                                              session.server_session_key))
                            for ids in (existing_ids, absent_ids)
                        ]
                        times: tuple[list[int], list[int]] = ([], [])
                        for i in range(total):
                            first = rng.randrange(2)
                            for kind in (first, 1 - first):
                                wire = blocks[kind][i] if enc is None else enc.encrypt(blocks[kind][i])
                                t0 = clock()
                                await conn.send_blocks([wire])
                                got = await conn.receive_blocks()
                                t1 = clock()
                                assert len(got) == 1, "one reply block per probe"
                                reply = got[0] if dec is None else dec.decrypt(got[0])
                                [r] = responses([reply], session.session_id)
                                assert is_err_auth(r), (command, alg, kind, r)
                                if i >= WARMUP:
                                    times[kind].append(t1 - t0)
                        r = summarize("e2e", "lmdb", command, alg, times[0], times[1], args.bootstrap)
                        results.append(r)
                        print(r.row(), flush=True)
            finally:
                await conn.aclose()

        try:
            trio.run(main)
        finally:
            server.stop()
    return results


# ---------------------------------------------------------------- command line


def _names(allowed: tuple[str, ...]) -> Callable[[str], list[str]]:
    def parse(text: str) -> list[str]:
        names = [x.strip() for x in text.split(",") if x.strip()]
        for x in names:
            if x not in allowed:
                raise argparse.ArgumentTypeError(f"{x!r} is not one of {', '.join(allowed)}")
        return names
    return parse


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--level", choices=("broker", "e2e", "both", "valid"), default="both",
                   help="valid: only the commands with the right key, at the broker level")
    p.add_argument("--samples", type=int, default=1500, help="pairs (existing, absent) per case (default 1500)")
    p.add_argument("--commands", type=_names(COMMANDS), default=list(COMMANDS))
    p.add_argument("--algs", type=_names(ALGS), default=list(ALGS))
    p.add_argument("--stores", type=_names(STORES), default=list(STORES), help="broker level stores")
    p.add_argument("--valid", action="store_true", help="also time the commands with the right key (broker level)")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples (default 1000)")
    p.add_argument("--seed", type=int, default=None, help="seed of the interleaving order")
    p.add_argument("--json", type=Path, help="write the results here")
    args = p.parse_args(argv)
    rng = random.Random(args.seed)
    print(HEADER)
    results: list[CaseResult] = []
    valid: list[dict] = []
    if args.level in ("broker", "both", "valid"):
        r, valid = run_broker(args, rng)
        results += r
    if args.level in ("e2e", "both"):
        results += run_e2e(args, rng)
    if args.json:
        args.json.write_text(json.dumps({"cases": [asdict(r) for r in results], "valid": valid}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
