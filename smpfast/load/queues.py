"""Creating and securing many queues with batched commands (NEW, KEY), and the record
the scenarios keep per queue."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..client import BadResponse, RecipientQueue, SMPClient, SMPError
from ..client.errors import ResponseError
from ..crypto.keys import Alg, PrivateKey, generate_private_key
from ..protocol import commands as C

#: Commands per batch while setting up: 100 NEWs (about 200 bytes each) fill ~2 blocks.
SETUP_BATCH = 100

Progress = Callable[[int], None]


@dataclass(slots=True)
class QueueRef:
    """A queue as a load scenario uses it: the recipient's credentials, the sender's key
    and which stream (sender) or member it belongs to."""

    rcv_id: bytes
    snd_id: bytes
    rcv_auth_key: PrivateKey
    box_key: bytes
    sender_key: PrivateKey | None
    owner: int
    index: int  # position in the scenario's queue list


def sender_alg(auth: str) -> Alg:
    return Alg.X25519 if auth == "x25519" else Alg.ED25519


async def create(client: SMPClient, n: int, auth: str, *, subscribe: bool,
                 progress: Progress | None = None) -> list[RecipientQueue]:
    """``n`` queues in batches of SETUP_BATCH NEWs; raises SMPError on the first ERR."""
    out: list[RecipientQueue] = []
    while len(out) < n:
        k = min(SETUP_BATCH, n - len(out))
        out.extend(await client.create_queues(k, auth_alg=auth, subscribe=subscribe))
        if progress is not None:
            progress(k)
    return out


async def secure(client: SMPClient, queues: list[QueueRef], progress: Progress | None = None) -> None:
    """KEY every queue with its sender key, in batches; raises SMPError on the first ERR."""
    for i in range(0, len(queues), SETUP_BATCH):
        chunk = queues[i : i + SETUP_BATCH]
        replies = await client.batch(
            [(q.rcv_id, C.Key(q.sender_key.public.der), q.rcv_auth_key) for q in chunk]  # type: ignore[union-attr]
        )
        for reply in replies:
            if isinstance(reply, C.Err):
                raise SMPError(reply.error)
            if isinstance(reply, BadResponse):
                raise ResponseError(reply.error)
        if progress is not None:
            progress(len(chunk))


def refs(queues: list[RecipientQueue], auth: str, owners: list[int], start: int = 0,
         with_sender_keys: bool = True) -> list[QueueRef]:
    alg = sender_alg(auth)
    return [
        QueueRef(q.rcv_id, q.snd_id, q.rcv_auth_key, q.box_key,
                 generate_private_key(alg) if with_sender_keys else None, owner, start + i)
        for i, (q, owner) in enumerate(zip(queues, owners))
    ]
