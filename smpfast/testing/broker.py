"""The broker with in-memory connections, for sans-IO tests, fuzzing and benchmarks.

Each connected peer gets a list as its outbox: ``process`` runs a block through the broker
and applies the effects as the server's connection shell does (replies to the sender's
outbox, pushes routed by the ``LocalDelivery`` into the others'), so a test reads exactly
the batches the server would write, each with its commit generation. The PRXY/PFWD a block
hands over (``Effects.proxied``) are answered by ``proxy(request)`` when one is given (the
shell's relay links), as one batch each after the block's answers, else refused; its RSLVs
(``NameRequest``, with a resolver configured) by ``resolve(domain)`` (the shell's resolver
client), else with ERR NAME RESOLVER "resolver error". The service deliveries a SUBS starts
(``Effects.walks``) run to their end at once, unless ``auto_walk`` is off: then they wait
in ``walks`` for ``step_walks``.
"""

from __future__ import annotations

from ..server.broker import Broker, Peer
from collections.abc import Callable

from ..protocol import commands as C
from ..protocol import errors as E
from ..protocol.names import DETAIL_INTERNAL, SimplexDomain
from ..server.delivery import Answer, Batch, Effects, LocalDelivery, ProxyRequest, ServiceWalk
from ..server.names import NameRequest, Resolution


class ListOutbox(list):
    """An outbox that keeps every batch it is given."""

    def put(self, generation: int, answers: list[Answer]) -> None:
        self.append((generation, answers))


class BrokerHarness:
    """A broker whose connections are lists; ``broker.delivery`` must be a LocalDelivery."""

    def __init__(self, broker: Broker, proxy: Callable[[ProxyRequest], C.Response] | None = None,
                 resolve: Callable[[SimplexDomain], Resolution] | None = None) -> None:
        if not isinstance(broker.delivery, LocalDelivery):
            raise TypeError("BrokerHarness needs a broker with a LocalDelivery")
        self.broker = broker
        self.proxy = proxy
        self.resolve = resolve
        self.delivery: LocalDelivery = broker.delivery
        self.outboxes: dict[int, ListOutbox] = {}
        self.auto_walk = True
        self.walks: list[tuple[Peer, ServiceWalk]] = []
        self.peers: dict[int, Peer] = {}

    def connect(self, version: int, session_id: bytes, session_private: bytes | None, service=None,
                session_key: bytes | None = None) -> Peer:
        """``service``: the ServiceIdentity of a service session (v16+); ``session_key``: the
        handshake DH's box key (a proxy's link: RFWD)."""
        peer = self.broker.connect(version, session_id, session_private, service, session_key)
        box = self.outboxes[peer.id] = ListOutbox()
        self.peers[peer.id] = peer
        self.delivery.attach(peer.id, box)
        return peer

    def disconnect(self, peer: Peer) -> None:
        self.delivery.detach(peer.id)
        self.broker.disconnect(peer)

    def outbox(self, peer: Peer) -> ListOutbox:
        return self.outboxes[peer.id]

    def apply(self, peer: Peer | None, effects: Effects) -> None:
        if peer is not None:
            self.outboxes[peer.id].extend(effects.replies)
        elif effects.replies:
            raise ValueError("replies without a peer to send them to")
        self.delivery.route(effects.pushes)
        for request in effects.proxied:
            if isinstance(request, NameRequest):
                result = (E.NameResolutionError("RESOLVER", DETAIL_INTERNAL) if self.resolve is None
                          else self.resolve(request.domain))
                stat, reply = request.answer(result)
                self.broker.count(stat)
            else:
                answer = C.Err(E.INTERNAL) if self.proxy is None else self.proxy(request)
                reply = (request.corr_id, request.entity_id, answer)
            box = self.outboxes.get(request.conn)
            if box is not None:
                box.put(self.broker.durability.current(), [reply])
        for walk in effects.walks:
            self.walks.append((self.peers[walk.conn], walk))
        if self.auto_walk:
            while self.walks:
                self.step_walks()

    def step_walks(self, page: int = 128, budget: int = 128) -> None:
        """One step of every waiting service delivery (those that end are dropped)."""
        waiting, self.walks = self.walks, []
        for peer, walk in waiting:
            self.apply(peer, self.broker.walk_service(peer, walk, page, budget))
            if not walk.done:
                self.walks.append((peer, walk))

    def process(self, peer: Peer, block: bytes) -> None:
        """Process one block of ``peer`` and apply its effects."""
        self.apply(peer, self.broker.process_block(peer, block))

    def take(self, peer: Peer) -> list[Batch]:
        """The batches waiting in ``peer``'s outbox, emptying it."""
        box = self.outboxes[peer.id]
        out = list(box)
        box.clear()
        return out

    def answers(self, peer: Peer) -> list[Answer]:
        """Every answer waiting for ``peer``, flattened, emptying its outbox."""
        return [answer for _, batch in self.take(peer) for answer in batch]
