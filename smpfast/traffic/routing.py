"""What private message routing costs on the wire: the same messages sent directly to the
relay, then through an SMP proxy (PFWD → RFWD → RRES → PRES), one at a time as an app
sends them. Measured at the sender's connection (both directions) and, when the proxy's
relay links are visible (the in-process server, proxy and relay in one), on the proxy's
link to the relay. The recipient's side (MSG, ACK) is the same either way."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

from ..client import connect
from ..crypto.keys import Alg, generate_private_key
from ..protocol import commands as C
from .measure import SOCKS5

Counters = tuple[int, int, int, int]  # blocks out, blocks in, TLS bytes out, TLS bytes in


def _counters(c) -> Counters:
    return c.blocks_out, c.blocks_in, c.tls_bytes_out, c.tls_bytes_in


def _per(before: Counters, after: Counters, n: int) -> dict[str, float]:
    d = [(a - b) / n for a, b in zip(after, before)]
    return {"blocks_up": d[0], "blocks_down": d[1], "tls_bytes_up": d[2], "tls_bytes_down": d[3]}


@dataclass
class RoutingCost:
    messages: int
    message_size: int
    version: int  # the sender's connection
    proxied_version: int  # the client↔relay version inside PFWD
    direct: dict[str, float]  # per message, sender ↔ relay
    proxied: dict[str, float]  # per message, sender ↔ proxy
    link: dict[str, float] | None  # per message, proxy ↔ relay (None: not visible)

    def to_json(self) -> dict:
        return asdict(self)


async def measure_private_routing(address: str, messages: int, message_size: int,
                                  links: Callable[[], Sequence] | None = None) -> RoutingCost:
    """``address`` is the relay and the proxy (one server in both roles); ``links()``
    gives the proxy's relay links when they can be read (in-process)."""
    body = os.urandom(message_size)
    socks = SOCKS5.get()
    async with connect(address, socks=socks) as recipient, connect(address, socks=socks) as sender:
        sender.events.close()
        q = await recipient.create_queue()
        key = generate_private_key(Alg.ED25519)
        await recipient.secure(q, key)

        async def delivered() -> None:
            entity, msg = await recipient.next_event(30)
            if entity != q.rcv_id or not isinstance(msg, C.Msg):
                raise RuntimeError(f"expected the message, got {msg!r}")
            await recipient.ack(q, msg.msg_id)

        before = _counters(sender)
        for _ in range(messages):
            await sender.send(q.snd_id, body, key)
            await delivered()
        direct = _per(before, _counters(sender), messages)
        relay = await sender.proxy_relay(address)
        link_before = [_counters(link.client) for link in links()] if links else None
        before = _counters(sender)
        for _ in range(messages):
            await sender.proxied_send(relay, q.snd_id, body, key)
            await delivered()
        proxied = _per(before, _counters(sender), messages)
        link = None
        if links is not None and link_before is not None:
            now = links()
            if len(now) == len(link_before) == 1:
                link = _per(link_before[0], _counters(now[0].client), messages)
        await recipient.delete(q)
        return RoutingCost(messages, message_size, sender.version, relay.version, direct, proxied, link)


def routing_lines(cost: RoutingCost) -> list[str]:
    def fmt(d: dict[str, float]) -> str:
        return (f"{d['blocks_up']:.2f} + {d['blocks_down']:.2f} blocks, "
                f"{d['tls_bytes_up'] + d['tls_bytes_down']:,.0f} TLS bytes")

    out = [f"private routing ({cost.messages} messages of {cost.message_size} B, v{cost.version} to the "
           f"server, v{cost.proxied_version} inside PFWD), per message, up + down (the recipient's MSG/ACK are the same either way):",
           f"  direct   sender<->relay: {fmt(cost.direct)}",
           f"  proxied  sender<->proxy: {fmt(cost.proxied)}"]
    if cost.link is not None:
        total_blocks = sum(cost.proxied[k] + cost.link[k] for k in ("blocks_up", "blocks_down"))
        total_bytes = sum(cost.proxied[k] + cost.link[k] for k in ("tls_bytes_up", "tls_bytes_down"))
        direct_blocks = cost.direct["blocks_up"] + cost.direct["blocks_down"]
        direct_bytes = cost.direct["tls_bytes_up"] + cost.direct["tls_bytes_down"]
        out.append(f"           proxy<->relay:  {fmt(cost.link)}")
        out.append(f"  proxied in total: {total_blocks:.2f} blocks, {total_bytes:,.0f} TLS bytes "
                   f"({total_blocks / direct_blocks:.2f}x the blocks, {total_bytes / direct_bytes:.2f}x the bytes of direct)")
    return out
