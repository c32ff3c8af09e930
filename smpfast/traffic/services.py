"""``smpfast traffic --mode services``: a messaging service (v19) getting its N queues back.

For every N of the sweep: one session of a throw-away messaging service creates N queues
(NEW in a service session associates each one with the service; set-up, not counted), then
two new sessions of the same service re-subscribe them, each measured as counter deltas:

``batched``   N SUBs in one ``batch`` (up to 255 per 16 KB block; each SUB carries the
              queue's signature and the service's), until the last SOK.
``services``  one SUBS carrying the count and IdsHash the service computed from its ids,
              until ALLS (the end of the delivery of waiting messages; there are none here):
              SOKS must carry the same count and hash.

The reduction is batched / services, per direction and in total, for blocks, SMP bytes,
TLS bytes and time. Versions below 19 have no messaging services (a messaging service
presents its certificate only from 19), so only 19+ is measured.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

import trio

from ..client import ClientError, SMPClient, connect
from ..client.types import RecipientQueue
from ..protocol import commands as C
from ..protocol.commands import ServiceRole
from ..protocol.ids_hash import ids_hash
from ..protocol.session import ServiceCredentials
from .measure import CONNECT_TIMEOUT, SOCKS5, Measurement, TrafficError, _expect, _Snapshot

SERVICES_MIN_VERSION = 19
DEFAULT_SERVICES_SWEEP = (100, 1000, 10000)
MAX_SERVICES_N = 1_000_000
SETUP_BATCH = 500  # NEWs per batch while creating the queues
_SUB_OK = (C.Ok, C.Sok)


def throwaway_service() -> ServiceCredentials:
    """A fresh self-signed messaging-service certificate: a new service each run."""
    from ..testing.throwaway_certs import make_service_chain

    chain = make_service_chain(1, name="smpfast traffic service")
    return ServiceCredentials(ServiceRole.MESSAGING, chain.chain, chain.leaf_key)


@asynccontextmanager
async def open_service(address: str, version: int, service: ServiceCredentials,
                       timeout: float = CONNECT_TIMEOUT) -> AsyncIterator[SMPClient]:
    async with connect(address, min_version=version, max_version=version, timeout=timeout,
                       socks=SOCKS5.get(), service=service) as c:
        if c.service is None:
            raise TrafficError(f"the server did not take the service certificate at v{version}")
        yield c


@dataclass(frozen=True, slots=True)
class ServicesRow:
    """One N: the two ways of subscribing, and whether SOKS matched the client's own count
    and hash."""

    batched: Measurement
    services: Measurement
    soks_count: int
    hash_matches: bool


async def create_associated(c: SMPClient, n: int, progress=None) -> list[RecipientQueue]:
    queues: list[RecipientQueue] = []
    while len(queues) < n:
        queues += await c.create_queues(min(SETUP_BATCH, n - len(queues)))
        if progress is not None:
            progress(len(queues))
    return queues


async def measure_services_row(address: str, version: int, n: int, timeout: float,
                               progress=None) -> ServicesRow:
    service = throwaway_service()
    async with open_service(address, version, service) as setup:
        queues = await create_associated(setup, n, progress)
        try:
            expected = (n, ids_hash(q.rcv_id for q in queues))
            async with open_service(address, version, service) as c:
                before = _Snapshot.of(c)
                with trio.fail_after(timeout):
                    _expect(await c.subscribe_many(queues, check=False), _SUB_OK, "SUB")
                batched = before.until(_Snapshot.of(c), version, n, "subscribe", "batched")
            async with open_service(address, version, service) as c:
                before = _Snapshot.of(c)
                with trio.fail_after(timeout):
                    got = await c.service_subscribe_all(*expected)
                    while True:
                        ev = await c.next_event()
                        if isinstance(ev.message, C.Alls):
                            break
                        if not isinstance(ev.message, (C.Msg, C.End, C.Ends)):
                            raise TrafficError(f"SUBS: unexpected event {ev.message!r}")
                services = before.until(_Snapshot.of(c), version, n, "subscribe", "services")
        finally:
            try:
                for i in range(0, len(queues), SETUP_BATCH):
                    await setup.batch([(q.rcv_id, C.Del(), q.rcv_auth_key) for q in queues[i:i + SETUP_BATCH]])
            except ClientError:
                pass  # best effort: a failing run must report its own error
    return ServicesRow(batched, services, got[0], got == expected)


async def measure_services(address: str, versions: Sequence[int], sweep: Sequence[int], timeout: float,
                           progress=None) -> list[ServicesRow]:
    rows = []
    for version in versions:
        for n in sweep:
            rows.append(await measure_services_row(address, version, n, timeout))
            if progress is not None:
                progress(version, n)
    return rows


def _ratio(a: float, b: float) -> float | None:
    return None if not b else round(a / b, 2)


def reductions(row: ServicesRow) -> dict:
    """batched / services for each figure (None where services is 0)."""
    b, s = row.batched, row.services
    out: dict = {}
    for name, bd, sd in (("client_to_server", b.up, s.up), ("server_to_client", b.down, s.down)):
        out[name] = {"blocks": _ratio(bd.blocks, sd.blocks), "smp_bytes": _ratio(bd.smp_bytes, sd.smp_bytes),
                     "tls_bytes": _ratio(bd.tls_bytes, sd.tls_bytes)}
    out["total"] = {
        "blocks": _ratio(b.up.blocks + b.down.blocks, s.up.blocks + s.down.blocks),
        "smp_bytes": _ratio(b.up.smp_bytes + b.down.smp_bytes, s.up.smp_bytes + s.down.smp_bytes),
        "tls_bytes": _ratio(b.up.tls_bytes + b.down.tls_bytes, s.up.tls_bytes + s.down.tls_bytes),
    }
    out["seconds"] = _ratio(b.seconds, s.seconds)
    return out


def services_document(rows: list[ServicesRow], **fields) -> dict:
    return {
        "tool": "smpfast traffic",
        "mode": "services",
        **fields,
        "measurements": [m.as_dict() for r in rows for m in (r.batched, r.services)],
        "rows": [{"version": r.services.version, "n": r.services.n, "soks_count": r.soks_count,
                  "hash_matches": r.hash_matches, "reduction": reductions(r)} for r in rows],
    }


def services_table(rows: list[ServicesRow]) -> str:
    head = (f"{'v':>3} {'N':>8}  {'how':<12} {'blocks up':>9} {'blocks down':>11} {'SMP MB':>8} "
            f"{'TLS MB':>8} {'seconds':>9}")
    lines = [head, "-" * len(head)]
    for r in rows:
        for label, m in (("batched SUB", r.batched), ("one SUBS", r.services)):
            smp = (m.up.smp_bytes + m.down.smp_bytes) / 1e6
            tls = (m.up.tls_bytes + m.down.tls_bytes) / 1e6
            lines.append(f"{m.version:>3} {m.n:>8}  {label:<12} {m.up.blocks:>9} {m.down.blocks:>11} "
                         f"{smp:>8.2f} {tls:>8.2f} {m.seconds:>9.3f}")
        red = reductions(r)
        hash_note = "SOKS count and hash match" if r.hash_matches else f"SOKS MISMATCH (count {r.soks_count})"
        lines.append(f"{'':>13}reduction: blocks x{red['total']['blocks']}, TLS bytes x{red['total']['tls_bytes']}, "
                     f"time x{red['seconds']}; {hash_note}")
    return "\n".join(lines)
