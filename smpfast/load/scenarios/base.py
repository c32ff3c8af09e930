"""What every scenario gets (the context) and gives back (the result)."""

from __future__ import annotations

from dataclasses import dataclass, field

import trio

from ...client import SMPClient
from ...protocol import versions as V
from ..config import X25519_MIN_VERSION, LoadConfig, UsageError
from ..control import Control
from ..pool import Pool
from ..progress import Phases, Progress
from ..stats import Stats


@dataclass
class Context:
    cfg: LoadConfig
    pool: Pool
    nursery: trio.Nursery  # the client readers and receivers run here
    progress: Progress
    phases: Phases
    control: Control = field(default_factory=Control)


@dataclass
class Result:
    """``unit``: what throughput counts (``messages`` or ``subscriptions``);
    ``latency``: the name of the primary latency histogram in ``stats``."""

    stats: Stats
    unit: str
    latency: str
    elapsed: float
    traffic: dict[str, int]  # the measured window (deltas of the connections' counters)
    server: dict
    series: list[dict]
    details: dict = field(default_factory=dict)  # the scenario's own figures
    generator: dict | None = None  # cpu.usage over the traffic phase
    messages_sent: int | None = None  # messages (fanout: whole fanouts) sent, measured part
    deliveries_per_message: int = 1  # fanout: the group size
    stages: list[dict] | None = None  # per --stages stage (stage_results)


def stage_results(cfg: LoadConfig, stats: Stats) -> list[dict] | None:
    """Each stage's plan (and, open loop, its planned sends) with what happened in it."""
    schedule = cfg.schedule
    if schedule is None:
        return None
    unit = "messages/s" if cfg.open_loop else "sends in flight"
    out = []
    for entry, counts in zip(schedule.to_json(unit), stats.stages):
        entry["planned"] = schedule.planned(entry["index"]) if cfg.open_loop else None
        entry.update(counts.to_json())
        out.append(entry)
    return out


def server_info(c: SMPClient) -> dict:
    conn = c.connection
    return {
        "version": c.version,
        "server_versions": [c.server_vrange.min, c.server_vrange.max],
        "block_encryption": c.block_encryption,
        "alpn": getattr(conn, "alpn", None),
        "tls_version": getattr(conn, "tls_version", None),
    }


def check_version(cfg: LoadConfig, c: SMPClient) -> None:
    """Options the negotiated version cannot honour are usage errors."""
    if cfg.auth == "x25519" and c.version < X25519_MIN_VERSION:
        raise UsageError(f"--auth x25519 needs version {X25519_MIN_VERSION}+, the server negotiated {c.version}")
    if cfg.scenario != "subscribe" and cfg.size > V.max_message_length(c.version):
        raise UsageError(f"--size {cfg.size} is over the limit {V.max_message_length(c.version)} of version {c.version}")


async def open_connections(ctx: Context, n: int, what: str, address: str | None = None) -> list[SMPClient]:
    ctx.phases.enter("connect", n, what)
    clients = await ctx.pool.open(n, ctx.nursery, ctx.phases.advance, address=address)
    return clients


async def each(fns: list) -> None:
    """Run the zero-argument async functions concurrently; the first exception cancels
    the rest and is raised as itself (not wrapped in an ExceptionGroup)."""
    errors: list[BaseException] = []

    async with trio.open_nursery() as nursery:

        async def guarded(fn) -> None:
            try:
                await fn()
            except Exception as e:
                errors.append(e)
                nursery.cancel_scope.cancel()

        for fn in fns:
            nursery.start_soon(guarded, fn)
    if errors:
        raise errors[0]
