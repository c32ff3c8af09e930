"""One client connection: the SMP handshake, then a reader and a writer task.

The reader hands every block to the broker (synchronously, so a block's commands are
atomic with respect to other connections) and applies the effects it returns: the replies
go into this connection's outbox, the pushes for other connections to the delivery (which
puts them into theirs). The writer owns the outbox of answer batches, in order: it sends the
longest prefix of batches whose commit generations are settled (durable, or failed: then the
broker turns them into errors), packing each batch into as few blocks as fit (never two
batches in one block, as the reference) and writing them with one send; a batch whose
generation is not yet durable waits, and so does everything after it.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import trio

from ..protocol import commands as C
from ..protocol import errors as E
from ..protocol import versions as V
from ..protocol.names import DETAIL_INTERNAL
from ..protocol.session import Established, ServerSession, ServiceRequested
from ..transport import BlockConnection, TransportError
from .broker import Broker, Peer, ServiceRefused, encode_answers
from .committer import CommitFailed, GroupCommitter
from .delivery import Answer, Batch, Effects, LocalDelivery, ProxyRequest, ServiceWalk
from .names import NameRequest

if TYPE_CHECKING:
    from ..proxy.service import ProxyService
    from .resolver import HttpResolver

log = logging.getLogger(__name__)

SMP_HANDSHAKE_TIMEOUT = 120.0
# Blocks with at least this many signatures to check verify them on a worker thread: a
# thread hand-off costs ~50-100 µs, one Ed25519 verification ~50 µs.
THREAD_VERIFY_MIN = 8
# The writer packs at most this many answer batches per send, so that one connection's
# full outbox (e.g. 128 ERR BLOCK batches) does not hold the event loop for milliseconds.
WRITE_BATCHES = 32
# A connection whose client does not read its answers stops being read once this many
# answer batches wait in its outbox (the reference bounds its send queue at 128 too).
OUTBOX_LIMIT = 128
# Fairness: a reader yields to the other connections once it has spent this long on
# blocks since it last yielded. A block is never split (its commands stay atomic), so a
# 255-command block (~1 ms) is one slice by itself.
READ_SLICE = 0.0005
# Proxied commands of one client in flight at once (the reference's client_concurrency).
DEFAULT_PROXY_CONCURRENCY = 32
# A messaging service's delivery after SUBS walks this many of its queues per step (about
# 1 ms of store reads), then lets the other connections run.
SERVICE_WALK_PAGE = 128
# Name resolutions of one client in flight at once, counted together with its proxied
# commands (the reference's resolver_concurrency): higher, because the forwarded RSLVs of
# many clients share one proxy's connection.
DEFAULT_RESOLVER_CONCURRENCY = 1000


class ForkedCommands:
    """The commands of one connection running off its reader (the reference's procThreads):
    one count, each kind of command with its own limit on it."""

    def __init__(self) -> None:
        self.running = 0
        self._released = trio.Event()

    async def acquire(self, limit: int) -> None:
        """Wait until fewer than ``limit`` run, then count one more."""
        while self.running >= limit:
            await self._released.wait()
        self.running += 1

    def release(self) -> None:
        self.running -= 1
        released, self._released = self._released, trio.Event()
        released.set()


@dataclass(frozen=True, slots=True)
class Identity:
    """What every connection's handshake needs from the server's credentials."""

    key_hash: bytes  # SHA-256 of the CA certificate: the address fingerprint
    chain_der: tuple[bytes, ...]  # [server certificate, CA certificate]
    private_key: object  # the TLS (online) private key, signs session keys
    min_version: int = V.MIN_VERSION
    max_version: int = V.SERVER_MAX_VERSION


class Connection:
    """The trio shell of one client connection over its sans-IO ServerSession."""

    def __init__(
        self,
        conn: BlockConnection,
        broker: Broker,
        committer: GroupCommitter,
        identity: Identity,
        handshake_timeout: float = SMP_HANDSHAKE_TIMEOUT,
        outbox_limit: int = OUTBOX_LIMIT,
        verify_limiter: trio.CapacityLimiter | None = None,
        read_slice: float = READ_SLICE,
        delivery: LocalDelivery | None = None,
        proxy: "ProxyService | None" = None,
        proxy_concurrency: int = DEFAULT_PROXY_CONCURRENCY,
        resolver: "HttpResolver | None" = None,
        resolver_concurrency: int = DEFAULT_RESOLVER_CONCURRENCY,
    ) -> None:
        self.conn = conn
        self.broker = broker
        # Where this connection's outbox is registered for other connections' pushes.
        self.delivery: LocalDelivery = delivery if delivery is not None else broker.delivery
        self.committer = committer
        self.identity = identity
        self.handshake_timeout = handshake_timeout
        self.outbox_limit = outbox_limit
        # Shared by all connections: worker threads verifying large batches never take
        # every core from the event loop.
        self.verify_limiter = verify_limiter
        self.read_slice = read_slice
        self.peer: Peer | None = None  # the broker's record, once the handshake is done
        self.session: ServerSession | None = None
        self.outbox: list[Batch] = []  # answer batches in order, each with its generation
        self.last_received = 0.0
        self.last_sent = 0.0
        self._wakeup = trio.Event()
        self._drained = trio.Event()
        # The proxy role: PRXY/PFWD are answered by tasks (they wait for relays), at most
        # ``proxy_concurrency`` at once; the reader waits for a free slot, as the reference.
        # RSLV with a resolver too, at most ``resolver_concurrency`` on the same count.
        self.proxy = proxy
        self.proxy_concurrency = proxy_concurrency
        self.resolver = resolver
        self.resolver_concurrency = resolver_concurrency
        self._forked = ForkedCommands()
        self._nursery: trio.Nursery | None = None

    def put(self, generation: int, answers: list[Answer]) -> None:
        """Queue a batch for the writer (the delivery's ``Outbox``)."""
        self.outbox.append((generation, answers))
        self._wakeup.set()

    def _apply(self, effects: Effects) -> None:
        if effects.replies:
            self.outbox.extend(effects.replies)
            self._wakeup.set()
        if effects.pushes:
            self.delivery.route(effects.pushes)

    async def run(self) -> None:
        try:
            pending = await self._handshake()
        except TransportError:
            return  # the client broke the connection (garbage, reset): a normal end
        if pending is None:
            return
        peer = self.peer
        assert peer is not None
        self.delivery.attach(peer.id, self)
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(self._writer, nursery.cancel_scope)
                await self._reader(pending)
                nursery.cancel_scope.cancel()
        finally:
            self.delivery.detach(peer.id)
            self.broker.disconnect(peer)

    # ------------------------------------------------------------------ handshake

    async def _handshake(self) -> list[bytes] | None:
        """Run the sans-IO ServerSession's handshake; returns blocks that arrived after the
        client hello, or None when the connection must close (the reference sends nothing
        then, except the third block refusing a service)."""
        session_id = self.conn.tls_unique
        if session_id is None:
            return None
        ident = self.identity
        max_version = ident.max_version if self.conn.alpn is not None else V.MIN_VERSION
        session = ServerSession(
            session_id,
            ident.key_hash,
            ident.chain_der,
            ident.private_key,
            V.VersionRange(ident.min_version, max_version),
            os.urandom(32),
            deadline=trio.current_time() + self.handshake_timeout,
            peer_chain=self.conn.peer_chain_der,
        )
        session.start()
        await self.conn.send(session.data_to_send())
        with trio.move_on_at(session.deadline):
            blocks = await self.conn.receive_blocks()
            if not blocks:
                return None
            [event] = session.receive_block(blocks[0])
            if isinstance(event, ServiceRequested):
                [event] = await self._service(session, event)
            out = session.data_to_send()  # the third block of a service, if any
            if out:
                await self.conn.send(out)
            if not isinstance(event, Established):
                return None
            self.session = session
            self.peer = self.broker.connect(session.version, session_id, session.server_session_private,
                                            service=session.service, session_key=session.session_box_key)
            return blocks[1:]
        return None

    async def _service(self, session: ServerSession, request: ServiceRequested) -> list:
        """Find or create the service record (committed before its id is sent)."""
        try:
            service_id, generation = self.broker.get_create_service(request.role.value, request.chain,
                                                                    request.cert_hash)
            await self.committer.wait_durable(generation)
        except (ServiceRefused, CommitFailed) as e:
            log.debug("service refused: %s", e)
            return session.reject_service(str(e))
        return session.accept_service(service_id)

    # ------------------------------------------------------------------ reading

    async def _reader(self, pending: list[bytes]) -> None:
        peer = self.peer
        assert peer is not None
        clock = self.broker.clock
        # Inactivity counts from the handshake (the reference starts both clocks when the
        # client is created), not from the epoch: a silent new client is not idle for ages.
        self.last_received = self.last_sent = clock()
        outbox = self.outbox
        outbox_limit = self.outbox_limit
        blocks = pending
        while True:
            slice_end = time.perf_counter() + self.read_slice
            self.last_received = clock()
            for block in blocks:
                if len(outbox) >= outbox_limit:
                    while len(outbox) >= outbox_limit:
                        await self._drained.wait()  # backpressure: the client is not reading
                    slice_end = time.perf_counter() + self.read_slice
                elif time.perf_counter() >= slice_end:
                    # Fairness: one read can hold 16 blocks of 255 commands each; let the
                    # other connections run between blocks, not only between reads.
                    await trio.lowlevel.checkpoint()
                    slice_end = time.perf_counter() + self.read_slice
                await self._process_block(peer, block)
            await trio.lowlevel.checkpoint()
            try:
                blocks = await self.conn.receive_blocks()
            except TransportError:
                return
            if not blocks:
                return

    async def _process_block(self, peer: Peer, block: bytes) -> None:
        broker = self.broker
        [received] = self.session.receive_block(block)  # decrypted when v11 encryption is on
        prepared = broker.prepare_block(peer, received.plaintext)
        if len(prepared.requests) >= THREAD_VERIFY_MIN:
            # A large batch verifies on a worker thread (the core releases the GIL), so the
            # event loop serves other connections meanwhile; the shared limiter keeps such
            # threads from crowding the loop off the CPU.
            results = await trio.to_thread.run_sync(
                peer.verifier.verify_batch, prepared.requests, limiter=self.verify_limiter
            )
            effects = broker.finish_block(peer, prepared, results, reload=True)
        else:
            effects = broker.finish_block(peer, prepared, peer.verifier.verify_batch(prepared.requests))
        self._apply(effects)
        for walk in effects.walks:
            assert self._nursery is not None
            self._nursery.start_soon(self._walk_service, walk)
        for request in effects.proxied:
            assert self._nursery is not None
            if isinstance(request, NameRequest):
                await self._forked.acquire(self.resolver_concurrency)
                self._nursery.start_soon(self._answer_name, request)
            else:
                await self._forked.acquire(self.proxy_concurrency)
                self._nursery.start_soon(self._answer_proxied, request)

    async def _walk_service(self, walk: ServiceWalk) -> None:
        """Deliver a messaging service's waiting messages after its SUBS, a page of queues
        at a time, each step only while the outbox has room (a service that does not read
        is not sent 100k MSGs into memory) and yielding between steps."""
        peer = self.peer
        assert peer is not None
        outbox = self.outbox
        limit = self.outbox_limit
        while not walk.done:
            while len(outbox) >= limit:
                await self._drained.wait()
            self._apply(self.broker.walk_service(peer, walk, SERVICE_WALK_PAGE, limit - len(outbox)))
            await trio.lowlevel.checkpoint()

    async def _answer_proxied(self, request: ProxyRequest) -> None:
        """Answer a PRXY/PFWD once its relay has (the reference's forkProxiedCmd)."""
        try:
            if self.proxy is None:
                answer = C.Err(E.INTERNAL)
            else:
                answer = await self.proxy.answer(request.corr_id, request.entity_id, request.command)
        except Exception:
            log.exception("proxied command failed")
            answer = C.Err(E.INTERNAL)
        finally:
            self._forked.release()
        # Nothing of this server's state is shown: it waits for nothing but earlier answers.
        self.put(self.broker.durability.current(), [(request.corr_id, request.entity_id, answer)])

    async def _answer_name(self, request: NameRequest) -> None:
        """Answer an RSLV (direct, or forwarded: RRES) once the resolver has."""
        try:
            if self.resolver is None:  # the broker hands none over without one; answer anyway
                result = E.NameResolutionError("RESOLVER", DETAIL_INTERNAL)
            else:
                result = await self.resolver.resolve(request.domain)
        finally:
            self._forked.release()
        stat, answer = request.answer(result)
        self.broker.count(stat)
        self.put(self.broker.durability.current(), [answer])

    # ------------------------------------------------------------------ writing

    def _answers(self, peer: Peer, generation: int, answers: list[Answer]) -> list[bytes]:
        if not self.committer.failed(generation):
            return encode_answers(peer, answers)
        replacement, effects = self.broker.answers_after_failed_commit(peer, answers)
        self._apply(effects)  # a withdrawn MSG's queue head, delivered again
        return encode_answers(peer, replacement)

    async def _writer(self, cancel_scope: trio.CancelScope) -> None:
        peer = self.peer
        assert peer is not None
        committer = self.committer
        broker = self.broker
        outbox = self.outbox
        session = self.session
        while True:
            await self._wakeup.wait()
            self._wakeup = trio.Event()
            while outbox:
                head = outbox[0][0]
                if not committer.settled(head):
                    try:
                        await committer.wait_durable(head)
                    except CommitFailed:
                        pass  # settled: answered below with errors
                # Answers leave in order, each only once the generation it shows is durable:
                # send the settled prefix; later batches wait for their own commits.
                ready = 0
                for generation, _ in outbox:
                    if ready == WRITE_BATCHES or not committer.settled(generation):
                        break
                    ready += 1
                batches = outbox[:ready]
                del outbox[:ready]
                drained, self._drained = self._drained, trio.Event()
                drained.set()
                session.send_batches(self._answers(peer, generation, answers) for generation, answers in batches)
                out = session.data_to_send()
                try:
                    await self.conn.send(out)
                except TransportError:
                    cancel_scope.cancel()
                    return
                self.last_sent = broker.clock()
