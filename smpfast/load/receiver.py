"""The recipient side of one connection: every MSG is decrypted, checked and handed to
the scenario, then acknowledged. One task reads the events; one task sends the ACKs
gathered meanwhile as one batch (an ACK may be answered by the queue's next MSG, which is
handled the same way). Two tasks per connection, none per queue."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import trio

from ..client import BadResponse, ClientClosed, SMPClient, decrypt_msg
from ..crypto import CryptoError
from ..protocol import commands as C
from .stats import Stats

#: ``on_message(queue_ref, body, now)``: a checked delivery. ``queue_ref`` is whatever the
#: scenario registered for the queue (it must have ``rcv_id``, ``box_key``, ``rcv_auth_key``).
OnMessage = Callable[[Any, bytes, float], None]


class Receiver:
    def __init__(self, client: SMPClient, queues: dict[bytes, Any], on_message: OnMessage, stats: Stats) -> None:
        self.client = client
        self.queues = queues
        self.on_message = on_message
        self.stats = stats
        self.stopping = False  # set before the run closes the connection on purpose
        self.on_closed: Callable[[], None] | None = None  # the connection closed unexpectedly
        self._acks: list[tuple] = []
        self._have_acks = trio.Event()

    async def run(self) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._acker)
            async for entity_id, message in self.client.events:
                self._handle(entity_id, message)
            if not self.stopping:
                self.stats.connection_lost("recipient connection closed")
                if self.on_closed is not None:
                    self.on_closed()
            nursery.cancel_scope.cancel()

    def _handle(self, entity_id: bytes, message: Any) -> None:
        if isinstance(message, C.Msg):
            q = self.queues.get(entity_id)
            if q is None:
                self.stats.other("MSG for an unknown queue")
                return
            self._deliver(q, message)
        elif isinstance(message, C.Err):
            self.stats.other(f"event ERR {message.error}")
        elif isinstance(message, (C.End, C.Deld)):
            self.stats.other(f"event {message.TAG.decode()}")
        elif isinstance(message, BadResponse):
            self.stats.other(f"bad transmission {message.error}")
        else:
            # e.g. a late response to a request cancelled at the end of the run
            self.stats.other(f"unexpected event {type(message).__name__}")

    def _deliver(self, q: Any, msg: C.Msg) -> None:
        try:
            rcv = decrypt_msg(q.box_key, msg)
        except CryptoError:
            self.stats.other("MSG decryption failed")
        else:
            if rcv.quota:
                # The server's marker after a SEND got ERR QUOTA (counted at that SEND).
                pass
            else:
                self.on_message(q, rcv.body, time.perf_counter())
        self._acks.append((q.rcv_id, C.Ack(msg.msg_id), q.rcv_auth_key))
        self._have_acks.set()

    async def _acker(self) -> None:
        client = self.client
        while True:
            await self._have_acks.wait()
            self._have_acks = trio.Event()
            acks, self._acks = self._acks, []
            try:
                replies = await client.batch(acks)
            except ClientClosed:
                return
            for (rcv_id, _, _), reply in zip(acks, replies):
                if isinstance(reply, C.Msg):  # the queue's next message
                    q = self.queues.get(rcv_id)
                    if q is not None:
                        self._deliver(q, reply)
                elif isinstance(reply, C.Err):
                    self.stats.other(f"ACK ERR {reply.error}")
                elif isinstance(reply, BadResponse):
                    self.stats.other(f"ACK bad response {reply.error}")
                elif not isinstance(reply, C.Ok):
                    self.stats.other(f"ACK unexpected {type(reply).__name__}")
