"""``fanout``: one sender, a group of G members each with its own queue (spread over
``connections`` member connections); every message goes to every member's queue, as a
group message reaches a relay: the same body, one SEND per member, all in one batch.

Counts are per delivery (G per message). Latencies: ``delivery`` (intended send time →
a member's MSG checked; the primary one), ``fanout`` (intended send time → the last
member's MSG, for messages every member received), ``service`` (actual send time →
MSG), ``send_ok`` (the batch of SENDs → all their replies). ``--rate`` is messages (whole
fanouts) per second; ``--messages`` counts fanouts; throughput counts deliveries."""

from __future__ import annotations

from ...client import BadResponse, ClientClosed
from ...protocol import commands as C
from .. import payload, queues
from ..engine import Claim, Engine, Stream, clock, ns
from ..pool import traffic_delta
from ..receiver import Receiver
from ..stats import Stats
from ..tracker import Send, Tracker
from ..config import spread
from .base import Context, Result, check_version, each, open_connections, server_info, stage_results
from .messaging import on_message_handler

LATENCIES = ("delivery", "fanout", "service", "send_ok")


async def run(ctx: Context) -> Result:
    cfg = ctx.cfg
    G = cfg.group
    N = min(cfg.effective_connections(), G)
    stats = Stats(LATENCIES, cfg.size, len(cfg.stages))
    tracker = Tracker(stats)

    members = await open_connections(ctx, N, "member connections")
    check_version(cfg, members[0])
    [sender] = await open_connections(ctx, 1, "sender connection")
    sender.events.close()

    counts = spread(G, N)
    first = [sum(counts[:i]) for i in range(N)]
    refs: list[list[queues.QueueRef]] = [[] for _ in range(N)]
    ctx.phases.enter("create", G, "queues")

    async def create(i: int) -> None:
        made = await queues.create(members[i], counts[i], cfg.auth, subscribe=True, progress=ctx.phases.advance)
        owners = list(range(first[i], first[i] + counts[i]))  # member numbers
        refs[i] = queues.refs(made, cfg.auth, owners, start=first[i])

    await each([lambda i=i: create(i) for i in range(N)])
    ctx.phases.enter("secure", G, "queues")
    await each([lambda i=i: queues.secure(members[i], refs[i], ctx.phases.advance) for i in range(N)])
    group = sorted((q for r in refs for q in r), key=lambda q: q.owner)

    complete = {"fanouts_complete": 0, "fanouts_partial": 0}
    closed_loop = not cfg.open_loop
    stream = Stream(0, sender, group, cfg.effective_concurrency())

    def fanout_done(send: Send, now: float) -> None:
        if send.failed:
            if not send.warm:
                complete["fanouts_partial"] += 1
        else:
            stats.record("fanout", now - send.intended, send.warm)
            if not send.warm:
                complete["fanouts_complete"] += 1
        if closed_loop:
            stream.slots.release()

    def key_of(q: queues.QueueRef, stamp: payload.Stamp):
        return (stamp.seq, q.owner) if stamp.stream == 0 else None

    async def send(s: Stream, c: Claim) -> bool:
        t = clock()
        body = payload.encode(0, c.seq, ns(c.intended), ns(t), cfg.size)
        record = Send(c.intended, t, c.warm, G, fanout_done, c.stage)
        for q in group:
            tracker.expect((c.seq, q.owner), record)
        cmd = C.Send(C.MsgFlags(False), body)
        try:
            replies = await s.client.batch([(q.snd_id, cmd, q.sender_key) for q in group])
        except ClientClosed:
            stats.connection_lost("sender connection closed")
            return False
        now = clock()
        stats.record("send_ok", now - t, c.warm)
        for q, reply in zip(group, replies):
            if isinstance(reply, C.Err):
                tracker.fail((c.seq, q.owner), now, f"SEND ERR {reply.error}")
            elif isinstance(reply, BadResponse):
                tracker.fail((c.seq, q.owner), now, f"SEND bad response {reply.error}")
            elif not isinstance(reply, C.Ok):
                tracker.fail((c.seq, q.owner), now, f"SEND unexpected {type(reply).__name__}")
        return True

    engine = Engine(cfg, stats, tracker, [stream], send, G, ctx.phases, ctx.progress, unit="delivery",
                    control=ctx.control)
    on_message = on_message_handler(stats, tracker, cfg.size, key_of)
    receivers = [Receiver(c, {q.rcv_id: q for q in r}, on_message, stats) for c, r in zip(members, refs)]
    for r in receivers:
        r.on_closed = lambda: engine.abort("member connection closed")
        ctx.nursery.start_soon(r.run)

    await ctx.control.ready()
    before = ctx.pool.traffic()
    await engine.run()
    for r in receivers:
        r.stopping = True
    m = stats.measured
    sends = m.sent // G
    return Result(
        stats=stats,
        unit="messages",
        latency="delivery",
        elapsed=stats.elapsed(engine.measure_start),
        traffic=traffic_delta(ctx.pool.traffic(), before),
        server=server_info(members[0]),
        series=engine.series.rows if engine.series else [],
        details={
            "group": G,
            "fanouts_sent": sends,
            **complete,
            "fanouts_per_second": round(complete["fanouts_complete"] / max(stats.elapsed(engine.measure_start), 1e-9), 2),
            **engine.details(),
        },
        generator=engine.cpu,
        stages=stage_results(cfg, stats),
        messages_sent=sends,
        deliveries_per_message=G,
    )
