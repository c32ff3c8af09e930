"""IdsHash: the order-free digest of a service's queue ids that SUBS/NSUBS/SOKS/ENDS carry (v19).

The digest of a set of queue ids is the byte-wise XOR of the MD5 digests of the ids (16
bytes; the empty set gives 16 zero bytes). XOR makes it independent of order and lets one
id be added or removed with a single XOR, so a server can keep it per service incrementally.
Which ids: recipient ids for a messaging service (SUBS), notifier ids for a notifier
service (NSUBS). See docs/protocol-v19-v20.md for the reference rule this follows.
"""

from __future__ import annotations

import hashlib
from typing import Iterable

IDS_HASH_SIZE = 16
EMPTY_IDS_HASH = bytes(IDS_HASH_SIZE)  # the reference's mempty: also what a pre-v19 SOKS/ENDS parses to

# (queue count, IdsHash) as a server or client keeps it per service
ServiceSubs = tuple[int, bytes]
NO_SERVICE_SUBS: ServiceSubs = (0, EMPTY_IDS_HASH)


def queue_id_hash(queue_id: bytes) -> bytes:
    """MD5 of one queue id (its contribution to an IdsHash)."""
    return hashlib.md5(queue_id, usedforsecurity=False).digest()


def ids_hash(queue_ids: Iterable[bytes]) -> bytes:
    """The IdsHash of a set of queue ids (each id counted once per occurrence)."""
    acc = 0
    md5 = hashlib.md5
    for qid in queue_ids:
        acc ^= int.from_bytes(md5(qid, usedforsecurity=False).digest(), "big")
    return acc.to_bytes(IDS_HASH_SIZE, "big")


def xor_hashes(a: bytes, b: bytes) -> bytes:
    """Combine two IdsHashes. Like the reference, the result is as long as the shorter one
    (hashes off the wire may have any length; the ones computed here are always 16 bytes)."""
    n = min(len(a), len(b))
    return (int.from_bytes(a[:n], "big") ^ int.from_bytes(b[:n], "big")).to_bytes(n, "big")


def add_service_subs(total: ServiceSubs, added: ServiceSubs) -> ServiceSubs:
    """``total`` with ``added`` queues associated: counts add, hashes XOR."""
    return total[0] + added[0], xor_hashes(total[1], added[1])


def subtract_service_subs(total: ServiceSubs, removed: ServiceSubs) -> ServiceSubs:
    """``total`` with ``removed`` queues gone. As in the reference, removing as many queues
    as there are, or more, gives the empty state (0 and the zero hash), never a negative
    count (the hashes are not compared for that)."""
    if total[0] > removed[0]:
        return total[0] - removed[0], xor_hashes(total[1], removed[1])
    return NO_SERVICE_SUBS
