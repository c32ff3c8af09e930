"""``messaging``: P sender→recipient pairs over Q queues (queue j belongs to pair
j mod P; pair p sends round-robin over its queues). Senders and recipients each use
``connections`` connections (pair p on connection p mod N of each side). Every message is
decrypted, checked (payload module) and acknowledged by its recipient.

Latencies: ``end_to_end`` (intended send time → MSG checked at the recipient; the
primary one), ``service`` (actual send time → MSG), ``send_ok`` (SEND → its OK).

Proxied (``--proxied [PROXY]``): the senders connect to the proxy server instead (the relay
itself when no PROXY is given: one server in both roles), ask it once per connection for
a session with the relay (PRXY) and send every message through it (PFWD: private message
routing); ``send_ok`` is then PFWD → its PRES."""

from __future__ import annotations

from ...client import ClientClosed, ClientError, SMPError
from .. import payload, queues
from ..engine import Claim, Engine, Stream, clock, ns
from ..pool import traffic_delta
from ..receiver import Receiver
from ..stats import Stats
from ..tracker import Send, Tracker
from .base import Context, Result, check_version, each, open_connections, server_info, stage_results

LATENCIES = ("end_to_end", "service", "send_ok")


def on_message_handler(stats: Stats, tracker: Tracker, size: int, key_of):
    """The recipient's check of one body: ``key_of(queue_ref, stamp)`` gives the tracker
    key, or None when the message cannot belong to that queue."""

    def on_message(q: queues.QueueRef, body: bytes, now: float) -> None:
        try:
            stamp = payload.decode(body, size)
            corrupt = None
        except payload.PayloadError as e:
            if e.stamp is None:  # not attributable: the message will count as lost
                stats.other(f"corrupt body ({e.kind})")
                return
            stamp, corrupt = e.stamp, f"corrupt body ({e.kind})"
        key = key_of(q, stamp)
        if key is None:
            stats.other("message on the wrong queue")
            return
        send = tracker.take(key)
        if send is None:
            stats.other("duplicate or unexpected message")
            return
        if corrupt is not None:
            tracker.resolve(send, now, corrupt)
            return
        tracker.resolve(send, now, None, now - stamp.intended_ns / 1e9, service=now - stamp.sent_ns / 1e9)

    return on_message


def send_error(e: Exception) -> str:
    if isinstance(e, SMPError):
        return f"SEND ERR {e.error}"
    return f"SEND {type(e).__name__}"


async def run(ctx: Context) -> Result:
    cfg = ctx.cfg
    P, Q = cfg.pairs, cfg.effective_queues()
    N = min(cfg.effective_connections(), P)
    stats = Stats(LATENCIES, cfg.size, len(cfg.stages))
    tracker = Tracker(stats)

    recipients = await open_connections(ctx, N, "recipient connections")
    check_version(cfg, recipients[0])
    senders = await open_connections(ctx, N, "sender connections", address=cfg.proxy)
    for c in senders:
        c.events.close()  # senders only get responses; late ones are discarded
    relays: dict[int, object] = {}
    if cfg.proxy is not None:
        ctx.phases.enter("proxy", N, "relay sessions")

        async def relay_session(i: int) -> None:
            relays[id(senders[i])] = await senders[i].proxy_relay(cfg.address)
            ctx.phases.advance(1)

        await each([lambda i=i: relay_session(i) for i in range(N)])

    owners: list[list[int]] = [[] for _ in range(N)]
    for j in range(Q):
        owners[(j % P) % N].append(j % P)
    refs: list[list[queues.QueueRef]] = [[] for _ in range(N)]
    ctx.phases.enter("create", Q, "queues")

    async def create(i: int) -> None:
        made = await queues.create(recipients[i], len(owners[i]), cfg.auth, subscribe=True,
                                   progress=ctx.phases.advance)
        refs[i] = queues.refs(made, cfg.auth, owners[i])

    await each([lambda i=i: create(i) for i in range(N)])
    ctx.phases.enter("secure", Q, "queues")
    await each([lambda i=i: queues.secure(recipients[i], refs[i], ctx.phases.advance) for i in range(N)])

    K = cfg.effective_concurrency()
    streams = [Stream(p, senders[p % N], [], K) for p in range(P)]
    for conn_refs in refs:
        for q in conn_refs:
            streams[q.owner].queues.append(q)

    def key_of(q: queues.QueueRef, stamp: payload.Stamp):
        return (stamp.stream, stamp.seq) if stamp.stream == q.owner else None

    closed_loop = not cfg.open_loop

    async def send(s: Stream, c: Claim) -> bool:
        q = s.queues[c.seq % len(s.queues)]
        t = clock()
        body = payload.encode(s.index, c.seq, ns(c.intended), ns(t), cfg.size)
        key = (s.index, c.seq)
        tracker.expect(key, Send(c.intended, t, c.warm, 1, s.slots.release if closed_loop else None, c.stage))
        try:
            if relays:
                await s.client.proxied_send(relays[id(s.client)], q.snd_id, body, q.sender_key)  # type: ignore[arg-type]
            else:
                await s.client.send(q.snd_id, body, q.sender_key)
        except ClientClosed:
            stats.connection_lost("sender connection closed")
            return False  # the message may still arrive: it stays in flight
        except ClientError as e:
            tracker.fail(key, clock(), send_error(e))
        else:
            stats.record("send_ok", clock() - t, c.warm)
        return True

    engine = Engine(cfg, stats, tracker, streams, send, 1, ctx.phases, ctx.progress, control=ctx.control)
    on_message = on_message_handler(stats, tracker, cfg.size, key_of)
    receivers = [Receiver(c, {q.rcv_id: q for q in r}, on_message, stats) for c, r in zip(recipients, refs)]
    for r in receivers:
        r.on_closed = lambda: engine.abort("recipient connection closed")
        ctx.nursery.start_soon(r.run)

    await ctx.control.ready()
    before = ctx.pool.traffic()
    await engine.run()
    for r in receivers:
        r.stopping = True
    traffic = traffic_delta(ctx.pool.traffic(), before)
    return Result(
        stats=stats,
        unit="messages",
        latency="end_to_end",
        elapsed=stats.elapsed(engine.measure_start),
        traffic=traffic,
        server=server_info(recipients[0]),
        series=engine.series.rows if engine.series else [],
        details={**engine.details(), "queues_per_pair": Q / P, "proxied": cfg.proxy is not None},
        generator=engine.cpu,
        stages=stage_results(cfg, stats),
        messages_sent=stats.measured.sent,
    )
