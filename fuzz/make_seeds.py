"""Writes the seed corpus fuzz/corpus/<target>/ (run once; the files are committed).

Seeds come from the golden transcripts in tests/data/transcripts (every recorded block,
handshake and command, converted to each target's input layout), plus a few hand-made
inputs for what the recordings lack, plus broker programs picked from a fixed pseudo-random
search because they reach answers the others do not. Deterministic: running it again
writes the same files.

    python fuzz/make_seeds.py
"""

from __future__ import annotations

import hashlib
import json
import lzma
import random
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
TRANSCRIPTS = HERE.parent / "tests" / "data" / "transcripts"
CORPUS = HERE / "corpus"
BIG = 2048  # larger seeds are kept only a few per target (the corpus stays small)

sys.path.insert(0, str(HERE))
from smpfast._core import _framing_py as F  # noqa: E402
from smpfast.protocol import versions as V  # noqa: E402


def transcripts() -> list[dict]:
    return [json.loads(lzma.decompress(p.read_bytes())) for p in sorted(TRANSCRIPTS.glob("*.json.xz"))]


class Seeds:
    def __init__(self, target: str, max_big: int = 2) -> None:
        self.dir = CORPUS / target
        self.items: dict[bytes, None] = {}
        self.max_big = max_big
        self.big = 0

    def add(self, data: bytes) -> None:
        if data in self.items:
            return
        if len(data) > BIG:
            if self.big >= self.max_big:
                return
            self.big += 1
        self.items[data] = None

    def write(self) -> int:
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir.mkdir(parents=True)
        for data in self.items:
            (self.dir / hashlib.sha1(data).hexdigest()).write_bytes(data)
        return sum(len(d) for d in self.items)


def recorded(core: Seeds, commands: Seeds, handshakes: Seeds, broker_steps: dict) -> None:
    kinds: set = set()
    for t in transcripts():
        conns = t["connections"]
        for b in t["blocks"]:
            if "unpadded_hex" not in b:
                continue
            content = bytes.fromhex(b["unpadded_hex"])
            conn = conns[b["conn"]]
            if b["kind"] in ("server_handshake", "client_handshake"):
                handshakes.add(b"\x03" + content)
                continue
            version = conn.get("version") or V.MIN_VERSION
            session = bytes.fromhex(conn["session_id"])
            implied, service = V.implied_session(version), V.service_auth(version) and b["dir"] == "c2s"
            core.add(bytes((0, 0x11, len(session))) + session + content)
            if b["dir"] == "c2s" and len(content) <= 700:
                broker_steps.setdefault((t["scenario"], b["conn"], version), []).append(content)
            try:
                parts = F.split_block(content + b"#" * (V.BLOCK_SIZE - len(content)), session, implied, service)
            except F.FramingError:
                continue
            for status, auth, _, _, entity, command, _ in parts:
                tag = command.split(b" ", 1)[0][:8]
                key = (version, tag, len(command) // 256, bool(auth), bool(entity), status)
                if key not in kinds:
                    kinds.add(key)
                    commands.add(bytes((version - V.MIN_VERSION, bool(auth) | bool(entity) << 1)) + command)


def hand_made(core: Seeds, handshakes: Seeds, commands: Seeds) -> None:
    rng = random.Random(7)
    key, nonce = bytes(range(32)), bytes(range(24))
    core.add(bytes((1, 0, 0x00, 0x40)) + b"hello")  # pad
    core.add(bytes((1, 0x03, 0xFF, 0xFF)) + b"x" * 40)  # pad, huge size
    core.add(bytes((2, 0, 0x40, 0x00, 3, 2)) + b"ab" + b"\x00\x05hello")  # batch
    core.add(bytes((3, 0x03, 64)) + bytes(64) + b"\x03abc\x18" + bytes(24) + b"\x00\x40" + bytes(64) + b"SEND T hi")
    core.add(bytes((3, 0x00, 0, 1)) + b"c" + b"\x00\x20" + bytes(32) + b"\x00PING")  # v6 layout
    core.add(bytes((4, 0, 8)) + bytes(rng.randrange(256) for _ in range(8)))  # group
    core.add(bytes((4, 0x07, 0xFF, 0x3F, 0xED, 0x00, 0x00, 0xFF, 4, 0, 0x3F, 0xFF, 1, 1, 0x01, 0, 0, 0)))
    core.add(bytes((5, 0)) + key + nonce + b"\x00\x07" + b"\x00\x05hello###")  # boxes
    core.add(bytes((5, 0x40)) + key + nonce + b"\x01\x00" + b"some plaintext")
    core.add(bytes((6, 0)) + key + bytes(range(32, 64)) + bytes(16))  # dh / hsalsa20
    core.add(bytes((6, 0)) + key + bytes(32) + bytes(16))  # low-order point
    core.add(bytes((7, 0)) + nonce + key + b"\x00\x10" + b"authorized bytes")  # signatures
    core.add(bytes((7, 0x55)) + nonce + key + b"\x01\x23" + b"authorized bytes")
    # the third handshake block (v16 services), absent from the recordings
    handshakes.add(b"\x03" + F.pad(b"R\x18" + bytes(24), 28)[:28])
    handshakes.add(b"\x03\x00\x17EHANDSHAKE BAD_SERVICE")
    handshakes.add(b"\x03\x00\x06EBLOCK")
    for version in (16, 17, 18):  # responses a v16+ server sends that the recordings lack
        v = version - V.MIN_VERSION
        commands.add(bytes((v, 2)) + b"SOK 1\x18" + bytes(24))
        commands.add(bytes((v, 2)) + b"SOKS " + bytes(8))
        commands.add(bytes((v, 2)) + b"ERR BLOCKED reason=spam,notice={\"ttl\":3600}")
        commands.add(bytes((v, 0)) + b"ERR PROXY BROKER NETWORK CONNECT \x04fail")
        commands.add(bytes((v, 2)) + b"ERR STORE store full")
    # structured values the recordings lack (or carry only in large PFWD blocks)
    from smpfast.protocol import commands as C
    from smpfast.protocol.address import QueueMode, SMPServer
    from smpfast.protocol.versions import VersionRange

    ed = bytes.fromhex("302a300506032b6570032100") + bytes(range(32))
    x = bytes.fromhex("302a300506032b656e032100") + bytes(range(1, 33))
    chain = C.CertChainPubKey([b"leaf-der", b"ca-der"], b"signed-key-der")
    values = [
        (15, C.Rkey([ed, x])),
        (18, C.Pfwd(17, x, b"encrypted transmission")),
        (17, C.New(ed, x, b"pw", True, C.QueueReqData(QueueMode.CONTACT, bytes(24), C.QueueLinkData(b"f", b"u"), bytes(24)), C.NewNtfCreds(ed, x))),
        (6, C.New(ed, x, b"password", False)),
        (8, C.Prxy(SMPServer(("smp.example.com", "1.2.3.4"), "5223", bytes(32)), b"pw")),
        (17, C.Ids(bytes(24), bytes(24), x, QueueMode.MESSAGING, bytes(24), bytes(24), C.ServerNtfCreds(bytes(24), x))),
        (9, C.Ids(bytes(24), bytes(24), x, QueueMode.CONTACT)),
        (7, C.Nid(bytes(24), x)),
        (7, C.Info(b'{"qiSnd":true,"qiNtf":false,"qiSize":1,"qiSub":{"qSubThread":"noSub"}}')),
        (8, C.Pkey(bytes(32), VersionRange(8, 17), chain)),
        (7, C.Nmsg(bytes(24), bytes(144))),
        (15, C.Lnk(bytes(24), C.QueueLinkData(b"fixed", b"user"))),
    ]
    for version, value in values:
        commands.add(bytes((version - V.MIN_VERSION, 3)) + value.encode(version))


def broker_programs(recorded_steps: dict, broker: Seeds) -> None:
    # recorded client blocks, replayed as raw blocks of a connection at their version
    for (_, _, version), blocks in sorted(recorded_steps.items()):
        v = version - V.MIN_VERSION
        program = bytearray((0x00, 0x12, 0x34, v, v, v))
        for content in blocks[:24]:
            program += bytes((4 | 8, 0)) + len(content).to_bytes(2, "big") + content
        broker.add(bytes(program))
    # structured programs from a fixed search: keep each one that reaches a new answer
    import broker_memory as B

    reached: set = set()
    rng = random.Random(1)
    for _ in range(3000):
        data = rng.randbytes(rng.randrange(40, 400))
        c = B.Cursor(data)
        world = B.World(c)
        seen: set = set()
        original = world._learn

        def learn(ci, corr, entity, msg, seen=seen, original=original):
            seen.add((type(msg).__name__, str(getattr(msg, "error", "")), bool(corr)))
            original(ci, corr, entity, msg)

        world._learn = learn
        steps = 0
        while c.remaining() and steps < 24:
            world.step(c)
            steps += 1
        if seen - reached:
            reached |= seen
            broker.add(data)


def main() -> None:
    core, commands, handshakes, broker = (Seeds(n) for n in ("core_twins", "command_codecs", "handshake_blocks", "broker_memory"))
    steps: dict = {}
    recorded(core, commands, handshakes, steps)
    hand_made(core, handshakes, commands)
    broker_programs(steps, broker)
    total = 0
    for seeds in (core, commands, handshakes, broker):
        size = seeds.write()
        total += size
        print(f"{seeds.dir.name}: {len(seeds.items)} files, {size} bytes")
    print(f"total {total} bytes")


if __name__ == "__main__":
    main()
