"""``subscribe``: create N queues (not subscribed), close the creating connections, then
the reconnect storm: C fresh connections open at once and, when all are up, each
re-subscribes its share of the queues in batches of B SUBs (B = 1: one SUB per
transmission, unbatched), ``concurrency`` batches in flight per connection.

Counts are per SUB (sent = subscribed + errors). Latencies: ``batch`` (a batch's SUBs
sent → all their replies; the primary one) and ``connect`` (TCP + TLS + SMP handshake of
the storm's connections). Throughput is SUB/s over the subscribe phase: from the first
batch sent to the last reply."""

from __future__ import annotations

import trio

from ...client import BadResponse, ClientClosed, ClientError, SMPClient
from ...protocol import commands as C
from .. import queues
from ..cpu import CpuMeter
from ..diagnose import short_cause
from ..engine import clock
from ..tracker import INTERRUPTED
from ..pool import traffic_delta
from ..progress import INTERVAL
from ..stats import Series, Stats
from ..config import SERVICES_MIN_VERSION, UsageError, spread
from .base import Context, Result, check_version, each, open_connections, server_info

LATENCIES = ("batch", "connect")
CREATORS = 8  # connections that create the queues (set-up, not measured)
_SUB_OK = (C.Ok, C.Sok)


async def run(ctx: Context) -> Result:
    cfg = ctx.cfg
    if cfg.mode == "services":
        return await run_services(ctx)
    n, B = cfg.effective_queues(), cfg.batch
    C_ = min(cfg.effective_connections(), n)
    stats = Stats(LATENCIES)

    # ---- set-up: create the queues on a few connections, then close them
    creators = await open_connections(ctx, min(CREATORS, C_), "set-up connections")
    check_version(cfg, creators[0])
    info = server_info(creators[0])
    shares = spread(n, len(creators))
    made: list[list] = [[] for _ in creators]
    ctx.phases.enter("create", n, "queues")

    async def create(i: int) -> None:
        made[i] = await queues.create(creators[i], shares[i], cfg.auth, subscribe=False, progress=ctx.phases.advance)

    await each([lambda i=i: create(i) for i in range(len(creators))])
    all_queues = [q for m in made for q in m]
    for c in creators:
        await c.aclose()

    # ---- the storm: connect C connections, then subscribe from all of them at once
    await ctx.control.ready()
    storm = Storm()
    ctx.control.attach(storm)
    meter = CpuMeter()
    before = ctx.pool.traffic()
    per_conn = spread(n, C_)
    starts = [sum(per_conn[:i]) for i in range(C_)]
    clients: list[SMPClient | None] = [None] * C_
    ctx.phases.enter("connect", C_, "connections")
    t_connect = clock()

    failed_connects: list[int] = []

    async def connect(i: int) -> None:
        try:
            clients[i] = await ctx.pool.connect_one(ctx.nursery, stats.latencies["connect"])
            clients[i].events.close()  # SUB replies are responses; no deliveries expected
        except ClientError as e:
            failed_connects.append(i)
            stats.failed(False, clock(), f"connect failed: {short_cause(e)}", per_conn[i])
            for _ in range(per_conn[i]):
                stats.sent(False, clock())
        finally:
            ctx.phases.advance()

    with storm.new_scope():
        async with trio.open_nursery() as nursery:
            for i in range(C_):
                nursery.start_soon(connect, i)
    connect_seconds = clock() - t_connect

    ctx.phases.enter("subscribe", n, "SUBs")
    t0 = clock()
    series = Series(stats, t0)
    batches = 0
    K = cfg.effective_concurrency()

    async def subscribe(i: int) -> None:
        c = clients[i]
        if c is None:
            return
        mine = all_queues[starts[i] : starts[i] + per_conn[i]]
        todo = iter(range(0, len(mine), B))
        lost = False

        async def worker() -> None:
            nonlocal batches, lost
            for j in todo:
                chunk = mine[j : j + B]
                t = clock()
                for _ in chunk:
                    stats.sent(False, t)
                if lost:  # the connection is gone: these SUBs cannot be sent
                    stats.failed(False, None, "connection closed", len(chunk))
                    continue
                try:
                    replies = await c.subscribe_many(chunk, check=False)
                except ClientClosed:
                    if not lost:
                        lost = True
                        stats.connections_lost += 1
                    stats.failed(False, clock(), "connection closed", len(chunk))
                    continue
                except trio.Cancelled:
                    stats.failed(False, None, INTERRUPTED, len(chunk))
                    raise
                now = clock()
                batches += 1
                ok = 0
                for reply in replies:
                    if isinstance(reply, _SUB_OK):
                        ok += 1
                    elif isinstance(reply, C.Err):
                        stats.failed(False, now, f"SUB ERR {reply.error}")
                    elif isinstance(reply, BadResponse):
                        stats.failed(False, now, f"SUB bad response {reply.error}")
                    else:
                        stats.failed(False, now, f"SUB unexpected {type(reply).__name__}")
                stats.received_many(ok, now, now - t)
                ctx.phases.advance(len(chunk))

        async with trio.open_nursery() as workers:
            for _ in range(K):
                workers.start_soon(worker)

    async def sampler() -> None:
        while True:
            await trio.sleep(INTERVAL)
            row = series.sample(clock(), "subscribe")
            ctx.progress.update(
                f"{ctx.phases.setup_line()} | {row['per_second']:.0f} SUB/s | err {stats.errors_total}"
            )

    with storm.new_scope():
        async with trio.open_nursery() as outer:
            outer.start_soon(sampler)
            await each([lambda i=i: subscribe(i) for i in range(C_)])
            outer.cancel_scope.cancel()
    ctx.control.attach(None)
    subscribe_seconds = (stats.last_measured or clock()) - t0
    series.sample(clock(), "subscribe")
    return Result(
        stats=stats,
        unit="subscriptions",
        latency="batch",
        elapsed=max(subscribe_seconds, 1e-9),
        traffic=traffic_delta(ctx.pool.traffic(), before),
        server=info,
        series=series.rows,
        details={
            "queues": n,
            "batch": B,
            "batches": batches,
            "connections": C_,
            "connections_failed": len(failed_connects),
            "connect_seconds": round(connect_seconds, 6),
            "subscribe_seconds": round(subscribe_seconds, 6),
            "storm_seconds": round(connect_seconds + subscribe_seconds, 6),
            "connections_lost": stats.connections_lost,
            "interrupted": storm.interrupted,
            "ended_early": storm.interrupted,
        },
        generator=meter.stop(),
    )


async def run_services(ctx: Context) -> Result:
    """``--mode services``: one messaging service (a throw-away certificate) creates the N
    queues in its session (NEW associates each), closes it, reconnects and subscribes them
    all with one SUBS carrying its count and IdsHash, until ALLS. One latency sample (SUBS
    sent → ALLS); SOKS must match the service's own count and hash."""
    from ...protocol.ids_hash import ids_hash
    from ...traffic.services import throwaway_service

    cfg = ctx.cfg
    n = cfg.effective_queues()
    stats = Stats(LATENCIES)
    service = throwaway_service()

    # ---- set-up: the service creates its queues (subscribed, so associated), then leaves
    ctx.phases.enter("connect", 1, "service connection")
    creator = await ctx.pool.connect_one(ctx.nursery, service=service)
    ctx.phases.advance()
    check_version(cfg, creator)
    if creator.service is None:
        raise UsageError(f"--mode services needs a server offering v{SERVICES_MIN_VERSION}+ that takes "
                         f"service certificates (negotiated v{creator.version})")
    info = server_info(creator)
    ctx.phases.enter("create", n, "queues")
    made = await queues.create(creator, n, cfg.auth, subscribe=True, progress=ctx.phases.advance)
    expected = (n, ids_hash(q.rcv_id for q in made))
    await creator.aclose()

    # ---- the reconnect: one service connection, one SUBS
    await ctx.control.ready()
    storm = Storm()
    ctx.control.attach(storm)
    meter = CpuMeter()
    before = ctx.pool.traffic()
    ctx.phases.enter("connect", 1, "service connection")
    t_connect = clock()
    client: SMPClient | None = None
    try:
        with storm.new_scope():
            client = await ctx.pool.connect_one(ctx.nursery, stats.latencies["connect"], service=service)
    except ClientError as e:
        stats.failed(False, clock(), f"connect failed: {short_cause(e)}", n)
    connect_seconds = clock() - t_connect
    ctx.phases.advance()
    ctx.phases.enter("subscribe", n, "queues")
    t0 = clock()
    series = Series(stats, t0)
    got: tuple[int, bytes] | None = None
    delivered = 0
    for _ in range(n):
        stats.sent(False, t0)
    if client is not None:
        with storm.new_scope():
            try:
                got = await client.service_subscribe_all(*expected)
                while not isinstance((ev := await client.next_event()).message, C.Alls):
                    if isinstance(ev.message, C.Msg):
                        delivered += 1
            except ClientClosed:
                stats.connections_lost += 1
                stats.failed(False, clock(), "connection closed", n)
            except ClientError as e:
                stats.failed(False, clock(), f"SUBS failed: {short_cause(e)}", n)
            except trio.Cancelled:
                stats.failed(False, None, INTERRUPTED, n)
                raise
    now = clock()
    if got is not None:
        if got == expected:
            stats.received_many(n, now, now - t0)
        else:
            stats.failed(False, now, "SOKS count or hash differs from the service's", n)
        ctx.phases.advance(n)
    ctx.control.attach(None)
    subscribe_seconds = (stats.last_measured or now) - t0
    series.sample(clock(), "subscribe")
    return Result(
        stats=stats,
        unit="subscriptions",
        latency="batch",
        elapsed=max(subscribe_seconds, 1e-9),
        traffic=traffic_delta(ctx.pool.traffic(), before),
        server=info,
        series=series.rows,
        details={
            "mode": "services",
            "queues": n,
            "soks_count": None if got is None else got[0],
            "hash_matches": got == expected,
            "messages_delivered": delivered,
            "connections": 1,
            "connections_failed": 0 if client is not None else 1,
            "connect_seconds": round(connect_seconds, 6),
            "subscribe_seconds": round(subscribe_seconds, 6),
            "storm_seconds": round(connect_seconds + subscribe_seconds, 6),
            "connections_lost": stats.connections_lost,
            "interrupted": storm.interrupted,
            "ended_early": storm.interrupted,
        },
        generator=meter.stop(),
    )


class Storm:
    """The subscribe phase as the run control sees it: an interrupt cancels the SUBs in
    flight (counted as interrupted); those not sent yet are not counted."""

    def __init__(self) -> None:
        self.scope: trio.CancelScope | None = None
        self.interrupted = False

    def new_scope(self) -> trio.CancelScope:
        """The scope of the next step (connect, then subscribe)."""
        self.scope = trio.CancelScope()
        if self.interrupted:
            self.scope.cancel()
        return self.scope

    def interrupt(self, count: int) -> None:
        self.interrupted = True
        if self.scope is not None:
            self.scope.cancel()
