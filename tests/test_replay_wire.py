"""Response grouping on the wire: recorded request blocks through smpfast's ``Connection``.

The broker replay (test_replay_transcripts.py) checks what the broker answers, batch by
batch. Which of those batches share a block is decided by the connection's writer. The
reference writes every answer batch as its own block(s) — the verification/parse errors of
a request block, then the responses to its commands, and the responses of each request
block separately — so "responses follow the grouping and order of the request blocks"
(tests/data/transcripts/README.md). These tests feed recorded c2s blocks, arriving together as the
recording client sent them, through a ``Connection`` over an in-memory block transport and
compare the blocks it writes with the recorded s2c blocks.

The connections get the recorded session id as their TLS unique, so the recorded
signatures verify unchanged and the recorded bytes can be fed as they are.
"""

from __future__ import annotations

import os
from collections import deque

import trio
from cryptography.hazmat.primitives.asymmetric import ed25519

from smpfast import _core as core
from smpfast.protocol.handshake import ClientHandshake
from smpfast.server.broker import Broker
from smpfast.server.committer import GroupCommitter
from smpfast.server.connection import Connection, Identity
from smpfast.store.memory import MemoryStore

from replay import load, plaintext, raw_transmissions

BLOCK = 16384


class MemoryBlockConnection:
    """The parts of ``transport.BlockConnection`` that ``Connection`` uses, in memory:
    ``receive_blocks`` hands out the given batches of blocks, then (after giving the
    writer time to flush) reports the end of the stream."""

    def __init__(self, session_id: bytes, batches: list[list[bytes]]) -> None:
        self.tls_unique = session_id
        self.alpn = "smp/1"
        self.peer_chain_der: list[bytes] = []  # the client sent no certificate
        self.sent: list[bytes] = []
        self._batches = deque(batches)
        self.read_waits = 0  # it never waits for a socket

    async def receive_blocks(self) -> list[bytes]:
        if self._batches:
            return self._batches.popleft()
        await trio.sleep(0.2)
        return []

    async def send(self, data: bytes) -> None:
        self.sent.append(bytes(data))


def serve(session_id: bytes, requests: list[bytes]) -> list[list[bytes]]:
    """Run a v7 connection that receives ``requests`` in one read after the client hello;
    returns the blocks it wrote after its handshake, as lists of transmissions."""
    key_hash = os.urandom(32)
    identity = Identity(key_hash, (b"leaf certificate", b"CA certificate"), ed25519.Ed25519PrivateKey.generate())
    hello = ClientHandshake(7, key_hash).encode()
    conn = MemoryBlockConnection(session_id, [[hello, *requests]])
    store = MemoryStore()

    async def main() -> None:
        with trio.fail_after(10):
            await Connection(conn, Broker(store), GroupCommitter(store), identity).run()

    trio.run(main)
    data = b"".join(conn.sent[1:])  # sent[0] is the server handshake
    assert len(data) % BLOCK == 0
    return [raw_transmissions(data[i : i + BLOCK]) for i in range(0, len(data), BLOCK)]


def recorded(name: str, seqs: list[int]) -> list[dict]:
    blocks = {b["seq"]: b for b in load(name)["blocks"]}
    return [blocks[s] for s in seqs]


def describe(blocks: list[list[bytes]]) -> list[str]:
    out = []
    for b in blocks:
        parts = core.split_block(core.encode_batch(b, BLOCK), b"", True, False)
        out.append(" ".join(f"{p[3].hex()[:8] or '-'}:{p[5].split(b' ')[0].decode()}" for p in parts))
    return out


def test_errors_and_responses_of_one_block_are_separate_blocks() -> None:
    """v7-errors seq 69 (PING, garbage, short authenticator, unknown command, PING): the
    reference answers [ERR BLOCK, ERR BLOCK c3, ERR CMD UNKNOWN c4] (seq 70), then
    [PONG c1, PONG c5] (seq 71)."""
    name = "v7-errors.json"
    session_id = bytes.fromhex(load(name)["connections"]["client"]["session_id"])
    [request, *answers] = recorded(name, [69, 70, 71])
    expected = [raw_transmissions(plaintext(b)) for b in answers]
    got = serve(session_id, [plaintext(request)])
    assert got == expected, f"expected blocks {describe(expected)}, smpfast wrote {describe(got)}"


def test_responses_keep_the_request_grouping() -> None:
    """v7-batch-135-sub seq 5/6: 135 NEW in two blocks (48 + 87) sent together; the
    reference answers 48 IDS (seq 7), then 87 IDS (seq 8), in request order."""
    name = "v7-batch-135-sub.json"
    session_id = bytes.fromhex(load(name)["connections"]["creator"]["session_id"])
    requests = recorded(name, [5, 6])
    answers = recorded(name, [7, 8])
    got = serve(session_id, [plaintext(b) for b in requests])
    corr = lambda ts: [core.split_block(core.encode_batch([t], BLOCK), b"", True, False)[0][3] for t in ts]  # noqa: E731
    expected = [corr(raw_transmissions(plaintext(b))) for b in answers]
    assert [len(b) for b in got] == [len(b) for b in expected], (
        f"IDS per block: smpfast {[len(b) for b in got]}, the reference {[len(b) for b in expected]}"
    )
    assert [corr(b) for b in got] == expected


def test_one_batch_in_one_block() -> None:
    """Control: a request block whose answers form one batch is answered in one block
    (v7-errors seq 61 PING -> seq 62 PONG, byte for byte)."""
    name = "v7-errors.json"
    session_id = bytes.fromhex(load(name)["connections"]["client"]["session_id"])
    request, answer = recorded(name, [61, 62])
    assert serve(session_id, [plaintext(request)]) == [raw_transmissions(plaintext(answer))]
