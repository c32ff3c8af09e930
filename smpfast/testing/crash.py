"""Crash harness: does an acknowledged change survive ``kill -9``?

    python -m smpfast.testing.crash --rounds N [--seed S] [--json FILE]

A real ``smpfast start`` (LMDB store in a temporary directory, loopback, the configuration
``smpfast init`` writes: fsync durability, 2 ms group commit) serves a mixed workload from
several client pairs (a recipient and a sender connection each) using ``smpfast.client``:
NEW, KEY, SEND (in batches), SUB, ACK, OFF, DEL and NKEY. After a random moment of load
(seeded) the server is SIGKILLed and restarted; clients reconnect, subscribe again, and
re-issue KEY/OFF/NKEY that got no answer. Every command and delivery goes into a
``Ledger``. After the last round a drain restarts the server once more, probes what must be
refused (SEND to OFF'd, deleted and KEY'd queues), subscribes every queue, receives and
ACKs everything, checks the notifier ids, and ``ledger.check`` turns it all into counts of
violations (see ``ledger.VIOLATIONS``). Exit code: 0 no violation, 1 violations, 2 the
harness could not run.

With ``--workers N`` the server runs N worker processes (``[TRANSPORT] workers``); a kill -9
of the server then takes all of them (they die with the supervisor). ``--kill-workers`` kills
one worker at a time instead (chosen by the seed): the supervisor starts a new one, the other
workers go on; the harness drops all its connections at the kill (those on the other workers
too, their unanswered commands staying "maybe") and reconnects once every worker serves again.

Message expiry is out of play: bodies are minutes old at most, the TTL is days. Queues are
kept well below the server's quota.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import trio

from ..client import (
    ClientError,
    NotifierCreds,
    RecipientQueue,
    ResponseError,
    SMPClient,
    SMPError,
    UnexpectedResponse,
    decrypt_msg,
)
from ..crypto import CryptoError
from ..crypto.keys import Alg, PrivateKey, generate_private_key
from ..protocol import commands as C
from ..config import DEFAULT_STORE_DIR
from . import ledger as L
from .process import ServerProcess, free_port, init_data_dir

DEFAULT_PAIRS = 3
DEFAULT_DRIVERS = 2  # driver tasks per pair, each with its own queues
DEFAULT_MIN_LOAD = 0.05  # seconds of load before the kill, after every pair is ready
DEFAULT_MAX_LOAD = 0.8
QUEUES_PER_DRIVER = 3  # active queues a driver keeps (more are created as queues are OFF'd/DEL'd)
MAX_UNACKED = 48  # per queue, far below the server's quota (128)
MAX_FILLER = 200
CONNECT_TIMEOUT = 20.0
READY_TIMEOUT = 30.0  # reconnect + resubscribe of all pairs
SETTLE_TIMEOUT = 15.0  # tasks noticing the kill
DRAIN_TIMEOUT = 60.0

EXIT_OK, EXIT_VIOLATIONS, EXIT_HARNESS = 0, 1, 2


class HarnessError(Exception):
    """The harness could not do its job (the server would not start, died by itself ...)."""


def _error_text(reply: object) -> str:
    if isinstance(reply, C.Err):
        return str(reply.error)
    return f"unusable reply {reply!r}"


def _is_sub_ok(reply: object) -> bool:
    return isinstance(reply, (C.Ok, C.Sok))


@dataclass
class QueueHandle:
    """The harness's side of a queue: its keys and what it believes the server holds."""

    book: L.QueueBook
    queue: RecipientQueue
    sender_key: PrivateKey | None = None
    key: str | None = None  # None, "maybe" (KEY unanswered), "yes" (acknowledged)
    off: str | None = None
    deleted: str | None = None
    gone: bool = False  # the server said AUTH to a recipient command: leave it alone
    nkey_unanswered: bool = False
    notifiers: dict[bytes, NotifierCreds] = field(default_factory=dict)
    next_seq: int = 1
    unacked: int = 0  # messages in the queue, as far as we know

    @property
    def rid(self) -> bytes:
        return self.queue.rcv_id

    @property
    def present(self) -> bool:
        return not self.gone and self.deleted is None

    @property
    def sendable(self) -> bool:
        return self.present and self.off is None and self.key != "maybe" and self.unacked < MAX_UNACKED


def new_send(ledger: L.Ledger, h: QueueHandle, rng: random.Random, *, signed: bool,
             probe: bool = False) -> tuple[bytes, L.SendOp]:
    """The next body of ``h``'s queue, recorded as issued."""
    seq, h.next_seq = h.next_seq, h.next_seq + 1
    body = L.encode_body(h.book.index, seq, rng.randbytes(rng.randint(0, MAX_FILLER)))
    return body, ledger.issue_send(h.book, seq, body, signed=signed, probe=probe)


class Receiver:
    """Records each MSG of a connection and ACKs it, following the ACK's next MSG."""

    def __init__(self, ledger: L.Ledger, handles: dict[bytes, QueueHandle], rng: random.Random | None,
                 on_empty: Callable[[QueueHandle, str | None], None] | None = None) -> None:
        self.ledger = ledger
        self.handles = handles
        self.rng = rng  # None: ACK at once (the drain)
        self.on_empty = on_empty

    async def run(self, client: SMPClient, nursery: trio.Nursery) -> None:
        async for rid, message in client.events:
            handle = self.handles.get(rid)
            if handle is not None and isinstance(message, C.Msg):
                delivery = self._record(handle, message)
                nursery.start_soon(self._ack_chain, client, handle, delivery)

    def _record(self, handle: QueueHandle, msg: C.Msg) -> L.Delivery:
        try:
            rcv = decrypt_msg(handle.queue, msg)
        except CryptoError:
            return self.ledger.delivered(handle.book, msg.msg_id, None)
        return self.ledger.delivered(handle.book, msg.msg_id, rcv.body, quota=rcv.quota)

    async def _ack_chain(self, client: SMPClient, handle: QueueHandle, delivery: L.Delivery) -> None:
        ledger = self.ledger
        while True:
            if self.rng is not None and self.rng.random() < 0.25:
                await trio.sleep(self.rng.uniform(0, 0.004))
            op = ledger.issue_ack(handle.book, delivery)
            try:
                nxt = await client.ack(handle.queue, delivery.msg_id)
            except SMPError as e:
                ledger.reject(op, str(e.error))
                self._done(handle, f"ACK answered ERR {e.error}")
                return
            except (ResponseError, UnexpectedResponse) as e:
                ledger.reject(op, f"unusable reply: {e}")
                self._done(handle, "unusable ACK reply")
                return
            except ClientError:
                return  # the server is gone: the ACK stays "maybe"
            ledger.acknowledge(op)
            handle.unacked = max(0, handle.unacked - 1)
            if nxt is None:
                self._done(handle, None)
                return
            delivery = self._record(handle, nxt)

    def _done(self, handle: QueueHandle, problem: str | None) -> None:
        if self.on_empty is not None:
            self.on_empty(handle, problem)


class Countdown:
    """``event`` is set once ``done()`` was called ``n`` times."""

    def __init__(self, n: int) -> None:
        self.left = n
        self.event = trio.Event()
        if n <= 0:
            self.event.set()

    def done(self) -> None:
        self.left -= 1
        if self.left <= 0:
            self.event.set()


class Pair:
    """A recipient and a sender connection, shared by ``drivers`` Driver tasks. Each
    driver owns its queues and issues their commands in turn (so a queue's sends have one
    order), while the drivers and the ACKs of the recipient overlap on both connections."""

    def __init__(self, harness: "CrashHarness", index: int, drivers: int) -> None:
        self.harness = harness
        self.index = index
        self.drivers = [Driver(harness) for _ in range(drivers)]

    @property
    def ledger(self) -> L.Ledger:
        return self.harness.ledger

    @property
    def queues(self) -> list[QueueHandle]:
        return [h for d in self.drivers for h in d.queues]

    async def run_lifetime(self, lifetime: int, ready: Countdown) -> None:
        seed = self.harness.seed
        rngs = [random.Random(f"{seed}:{self.index}:{i}:{lifetime}") for i in range(len(self.drivers))]
        signalled = False

        def signal_ready() -> None:
            nonlocal signalled
            if not signalled:
                signalled = True
                ready.done()

        try:
            rcv, snd = await self.harness.connect(2)
        except ClientError:
            signal_ready()  # killed while connecting
            return
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(rcv.run)
                await nursery.start(snd.run)
                receiver = Receiver(self.ledger, self.harness.handles_by_rid, random.Random(f"{seed}:{self.index}:r:{lifetime}"))
                nursery.start_soon(receiver.run, rcv, nursery)
                try:
                    await self._resume(rcv)
                    signal_ready()
                    async with trio.open_nursery() as drivers:
                        for driver, rng in zip(self.drivers, rngs):
                            drivers.start_soon(driver.drive, rcv, snd, rng)
                except ClientError:
                    pass  # the kill
                finally:
                    signal_ready()
                    await rcv.aclose()
                    await snd.aclose()
        finally:
            await rcv.aclose()
            await snd.aclose()

    # ------------------------------------------------------------------ after a restart

    async def _resume(self, rcv: SMPClient) -> None:
        """SUB every queue (QUE tells how many messages wait), then re-issue what got no answer."""
        ledger = self.ledger
        live = [h for h in self.queues if not h.gone and h.deleted != "yes"]
        if live:
            ops = [ledger.issue("SUB", h.book) for h in live]
            requests = []
            for h in live:
                requests += [(h.rid, C.SUB, h.queue.rcv_auth_key), (h.rid, C.Que(), h.queue.rcv_auth_key)]
            replies = await rcv.batch(requests)
            for i, (h, op) in enumerate(zip(live, ops)):
                sub, info = replies[2 * i], replies[2 * i + 1]
                if _is_sub_ok(sub):
                    ledger.acknowledge(op)
                    if h.deleted == "maybe":
                        h.deleted = None  # the unanswered DEL did not happen
                    if isinstance(info, C.Info):
                        h.unacked = json.loads(info.info).get("qiSize", h.unacked)
                else:
                    ledger.reject(op, _error_text(sub))
                    h.gone = True
        for driver in self.drivers:
            for h in driver.queues:
                if not h.present:
                    continue
                if h.key == "maybe":
                    await driver.secure(rcv, h)
                if h.off == "maybe":
                    await driver.suspend(rcv, h)
                if h.nkey_unanswered:
                    await driver.enable_notifications(rcv, h)


class Driver:
    """One task's share of a pair's workload: the queues it created and every command on them."""

    def __init__(self, harness: "CrashHarness") -> None:
        self.harness = harness
        self.queues: list[QueueHandle] = []

    @property
    def ledger(self) -> L.Ledger:
        return self.harness.ledger

    # ------------------------------------------------------------------ the workload

    async def drive(self, rcv: SMPClient, snd: SMPClient, rng: random.Random) -> None:
        """Random commands until the kill closes the connections."""
        try:
            await self._drive(rcv, snd, rng)
        except ClientError:
            pass  # the kill: what awaited an answer stays "maybe"

    async def _drive(self, rcv: SMPClient, snd: SMPClient, rng: random.Random) -> None:
        while True:
            present = [h for h in self.queues if h.present]
            active = [h for h in present if h.off is None]
            sendable = [h for h in active if h.sendable]
            probes = [h for h in self.queues if h.off == "yes" or h.deleted == "yes" or h.key == "yes"]
            actions = {
                "new": 4.0 if len(active) < QUEUES_PER_DRIVER else 0.0,
                "send": 12.0 if sendable else 0.0,
                "key": 1.0 if any(h.key is None for h in active) else 0.0,
                "nkey": 0.6 if active else 0.0,
                "off": 0.15 if active else 0.0,
                "del": 0.2 if present else 0.0,
                "probe": 0.4 if probes else 0.0,
                "pause": 1.0,
            }
            action = rng.choices(list(actions), weights=list(actions.values()))[0]
            if action == "new":
                await self._create(rcv, rng.randint(1, 3))
            elif action == "send":
                await self._send_batch(snd, rng.sample(sendable, rng.randint(1, min(3, len(sendable)))), rng)
            elif action == "key":
                await self.secure(rcv, rng.choice([h for h in active if h.key is None]))
            elif action == "nkey":
                await self.enable_notifications(rcv, rng.choice(active))
            elif action == "off":
                await self.suspend(rcv, rng.choice(active))
            elif action == "del":
                await self.delete(rcv, rng.choice(present))
            elif action == "probe":
                await self._probe(snd, rng.choice(probes), rng)
            else:
                await trio.sleep(rng.uniform(0, 0.003))

    async def _create(self, rcv: SMPClient, n: int) -> None:
        ledger = self.ledger
        ops = [ledger.issue("NEW") for _ in range(n)]
        try:
            queues = await rcv.create_queues(n)  # subscribed on rcv
        except SMPError as e:
            for op in ops:
                ledger.reject(op, str(e.error))
            return
        for op, q in zip(ops, queues):
            handle = QueueHandle(ledger.new_queue(op, q.rcv_id), q)
            self.queues.append(handle)
            self.harness.add(handle)

    async def _send_batch(self, snd: SMPClient, handles: Sequence[QueueHandle], rng: random.Random) -> None:
        """A few SENDs to each of a few queues, each batch holding one SEND per queue: a
        server runs a block last to first, so two SENDs to one queue in one block would be
        stored in the reverse of the order they were issued in."""
        counts = {id(h): rng.randint(1, min(4, MAX_UNACKED - h.unacked)) for h in handles}
        for turn in range(max(counts.values(), default=0)):
            requests, ops = [], []
            for h in handles:
                if counts[id(h)] <= turn:
                    continue
                body, op = new_send(self.ledger, h, rng, signed=h.key == "yes")
                requests.append((h.queue.snd_id, C.Send(C.MsgFlags(False), body), h.sender_key if op.signed else None))
                ops.append((h, op))
                h.unacked += 1
            replies = await snd.batch(requests)
            for (h, op), reply in zip(ops, replies):
                if isinstance(reply, C.Ok):
                    self.ledger.acknowledge(op)
                else:
                    self.ledger.reject(op, _error_text(reply))
                    h.unacked -= 1

    async def _probe(self, snd: SMPClient, h: QueueHandle, rng: random.Random) -> None:
        """A SEND that must be refused: to an OFF'd or deleted queue, or unsigned to a KEY'd one."""
        signed = h.key == "yes" and (h.off == "yes" or h.deleted == "yes")
        body, op = new_send(self.ledger, h, rng, signed=signed, probe=True)
        [reply] = await snd.batch([(h.queue.snd_id, C.Send(C.MsgFlags(False), body), h.sender_key if signed else None)])
        if isinstance(reply, C.Ok):
            self.ledger.acknowledge(op)
            h.unacked += 1
        else:
            self.ledger.reject(op, _error_text(reply))

    async def _recipient_call(self, op: L.Op, h: QueueHandle, call) -> object | None:
        """Run a typed recipient call; None when the server refused it (recorded)."""
        try:
            result = await call
        except SMPError as e:
            self.ledger.reject(op, str(e.error))
            if e.code == "AUTH":
                h.gone = True
            return None
        except (ResponseError, UnexpectedResponse) as e:
            self.ledger.reject(op, f"unusable reply: {e}")
            return None
        return result if result is not None else True

    async def secure(self, rcv: SMPClient, h: QueueHandle) -> None:
        if h.sender_key is None:
            h.sender_key = generate_private_key(Alg.ED25519)
        h.key = "maybe"
        op = self.ledger.issue("KEY", h.book)
        if await self._recipient_call(op, h, rcv.secure(h.queue, h.sender_key)) is not None:
            self.ledger.acknowledge(op)
            h.key = "yes"

    async def suspend(self, rcv: SMPClient, h: QueueHandle) -> None:
        h.off = "maybe"
        op = self.ledger.issue("OFF", h.book)
        if await self._recipient_call(op, h, rcv.suspend(h.queue)) is not None:
            self.ledger.acknowledge(op)
            h.off = "yes"

    async def delete(self, rcv: SMPClient, h: QueueHandle) -> None:
        h.deleted = "maybe"
        op = self.ledger.issue("DEL", h.book)
        if await self._recipient_call(op, h, rcv.delete(h.queue)) is not None:
            self.ledger.acknowledge(op)
            h.deleted = "yes"

    async def enable_notifications(self, rcv: SMPClient, h: QueueHandle) -> None:
        h.nkey_unanswered = True
        op = self.ledger.issue("NKEY", h.book)
        creds = await self._recipient_call(op, h, rcv.enable_notifications(h.queue))
        if isinstance(creds, NotifierCreds):
            self.ledger.acknowledge(op, nid=creds.notifier_id)
            h.notifiers[creds.notifier_id] = creds
            h.nkey_unanswered = False


@dataclass
class CrashResult:
    summary: dict
    violations: dict[str, list[str]]
    ledger: L.Ledger

    @property
    def ok(self) -> bool:
        return self.summary["ok"]


class CrashHarness:
    def __init__(self, directory: Path, *, rounds: int, seed: int, pairs: int = DEFAULT_PAIRS,
                 drivers: int = DEFAULT_DRIVERS,
                 min_load: float = DEFAULT_MIN_LOAD, max_load: float = DEFAULT_MAX_LOAD,
                 progress: Callable[[str], None] | None = None,
                 before_drain: Callable[[Path, L.Ledger], None] | None = None,
                 workers: int = 1, kill_workers: bool = False) -> None:
        self.directory = Path(directory)
        self.workers = workers
        self.kill_workers = kill_workers and workers > 1
        # Called with the store directory while the server is down before the drain: lets a
        # test damage the store behind the server's back and see the checks catch it.
        self.before_drain = before_drain
        self.rounds = rounds
        self.seed = seed
        self.min_load = min_load
        self.max_load = max_load
        self.progress = progress or (lambda line: None)
        self.ledger = L.Ledger()
        self.pairs = [Pair(self, i, drivers) for i in range(pairs)]
        self.handles: list[QueueHandle] = []
        self.handles_by_rid: dict[bytes, QueueHandle] = {}
        self.rng = random.Random(seed)
        data = self.directory / "server"
        self.address = init_data_dir(data, free_port())
        self.server = ServerProcess(data, workers=workers)
        self.store_path = data / DEFAULT_STORE_DIR

    def add(self, handle: QueueHandle) -> None:
        self.handles.append(handle)
        self.handles_by_rid[handle.rid] = handle

    async def connect(self, n: int) -> list[SMPClient]:
        clients: list[SMPClient] = []
        try:
            for _ in range(n):
                clients.append(await SMPClient.connect(self.address, timeout=CONNECT_TIMEOUT))
        except BaseException:
            for c in clients:
                await c.aclose()
            raise
        return clients

    def _server_running(self) -> bool:
        return self.server.proc is not None and self.server.proc.poll() is None

    async def _start_server(self) -> None:
        self.ledger.start_lifetime()
        if self.kill_workers and self._server_running():
            # A worker was killed: wait until the supervisor's new one serves.
            try:
                await trio.to_thread.run_sync(self.server.wait_workers, READY_TIMEOUT)
            except TimeoutError as e:
                raise HarnessError(f"no worker replaced the killed one: {e}") from None
            return
        try:
            await trio.to_thread.run_sync(self.server.start)
        except (RuntimeError, TimeoutError) as e:
            raise HarnessError(f"the server did not start (lifetime {self.ledger.lifetime}): {e}") from None

    def _kill_server(self) -> None:
        if self.server.proc is None or self.server.proc.poll() is not None:
            raise HarnessError("the server exited by itself:\n" + self.server.log()[-4000:])
        if self.kill_workers:
            pids = self.server.worker_pids()
            if not pids:
                raise HarnessError("no live worker to kill:\n" + self.server.log()[-4000:])
            self.server.kill_worker(self.rng.choice(pids))
        else:
            self.server.kill()
        self.ledger.kills += 1

    # ------------------------------------------------------------------ rounds

    async def run(self) -> CrashResult:
        started = time.monotonic()
        try:
            for round_no in range(1, self.rounds + 1):
                await self._round(round_no)
            if self.before_drain is not None:
                self.before_drain(self.store_path, self.ledger)
            await self._drain()
        finally:
            self.server.kill()
        violations = L.check(self.ledger)
        summary = L.summary(
            self.ledger, violations, rounds=self.rounds, seed=self.seed, pairs=len(self.pairs),
            drivers_per_pair=len(self.pairs[0].drivers) if self.pairs else 0,
            load_seconds=[self.min_load, self.max_load], seconds=round(time.monotonic() - started, 1),
        )
        return CrashResult(summary, violations, self.ledger)

    async def _round(self, round_no: int) -> None:
        await self._start_server()
        lifetime = self.ledger.lifetime
        load = self.rng.uniform(self.min_load, self.max_load)
        ready = Countdown(len(self.pairs))
        async with trio.open_nursery() as nursery:
            for pair in self.pairs:
                nursery.start_soon(pair.run_lifetime, lifetime, ready)
            with trio.move_on_after(READY_TIMEOUT):
                await ready.event.wait()
            await trio.sleep(load)
            self._kill_server()
            if self.kill_workers:
                nursery.cancel_scope.cancel()  # the other workers' connections too
            # Every task notices the closed connections; bound it in case one does not.
            nursery.cancel_scope.deadline = trio.current_time() + SETTLE_TIMEOUT
        self.ledger.end_lifetime()
        counts = self.ledger.message_counts()
        self.progress(f"round {round_no}/{self.rounds}: killed after {load:.2f} s of load; "
                      f"{counts['sent_acknowledged']} messages acknowledged so far, "
                      f"{len(self.handles)} queues")

    # ------------------------------------------------------------------ the drain

    async def _drain(self) -> None:
        await self._start_server()
        ledger = self.ledger
        waiting: set[int] = set()
        emptied: set[int] = set()
        all_empty = trio.Event()

        def on_empty(h: QueueHandle, problem: str | None) -> None:
            if problem is not None:
                h.book.drain_problem = problem
            emptied.add(h.book.index)
            waiting.discard(h.book.index)
            if not waiting:
                all_empty.set()

        rcv, snd, ntf = await self.connect(3)
        async with trio.open_nursery() as nursery:
            for c in (rcv, snd, ntf):
                await nursery.start(c.run)
            nursery.start_soon(Receiver(ledger, self.handles_by_rid, None, on_empty).run, rcv, nursery)
            await self._drain_probes(snd)
            present = await self._drain_subscribe(rcv)
            waiting.update(i for i in present if present[i] > 0)
            waiting.difference_update(emptied)
            if waiting:
                with trio.move_on_after(DRAIN_TIMEOUT):
                    await all_empty.wait()
            for i in waiting:
                self.handles[i].book.drain_problem = f"messages still arriving after {DRAIN_TIMEOUT:.0f} s"
            await self._drain_notifiers(ntf, present)
            await self._drain_confirm_empty(rcv, present)
            for c in (rcv, snd, ntf):
                await c.aclose()
        code = await trio.to_thread.run_sync(self.server.stop)
        if code != 0:
            raise HarnessError(f"the server exited with {code} on SIGTERM after the drain")

    async def _drain_probes(self, snd: SMPClient) -> None:
        """SENDs that must be refused: to acknowledged-DEL'd and OFF'd queues, unsigned to KEY'd ones."""
        rng = random.Random(f"{self.seed}:drain")
        requests, ops = [], []
        for h in self.handles:
            book = h.book
            deleted = book.first_acknowledged("DEL") is not None
            off = book.first_acknowledged("OFF") is not None and book.first_issued("DEL") is None
            keyed = (book.first_acknowledged("KEY") is not None and book.first_issued("DEL") is None
                     and book.first_issued("OFF") is None)
            if not (deleted or off or keyed):
                continue
            signed = (deleted or off) and h.sender_key is not None
            body, op = new_send(self.ledger, h, rng, signed=signed, probe=True)
            requests.append((h.queue.snd_id, C.Send(C.MsgFlags(False), body), h.sender_key if signed else None))
            ops.append(op)
        replies = await snd.batch(requests)
        for op, reply in zip(ops, replies):
            if isinstance(reply, C.Ok):
                self.ledger.acknowledge(op)
            else:
                self.ledger.reject(op, _error_text(reply))

    async def _drain_subscribe(self, rcv: SMPClient) -> dict[int, int]:
        """SUB + QUE every queue; returns {queue index: messages waiting} of those present."""
        requests, ops = [], []
        for h in self.handles:
            op = self.ledger.issue("SUB", h.book)
            h.book.drain_sub = op
            ops.append(op)
            requests += [(h.rid, C.SUB, h.queue.rcv_auth_key), (h.rid, C.Que(), h.queue.rcv_auth_key)]
        replies = await rcv.batch(requests)
        present: dict[int, int] = {}
        for i, (h, op) in enumerate(zip(self.handles, ops)):
            sub, info = replies[2 * i], replies[2 * i + 1]
            if not _is_sub_ok(sub):
                self.ledger.reject(op, _error_text(sub))
                continue
            self.ledger.acknowledge(op)
            if isinstance(info, C.Info):
                present[h.book.index] = int(json.loads(info.info).get("qiSize", 0))
            else:
                h.book.drain_problem = f"QUE answered {_error_text(info)}"
        return present

    async def _drain_notifiers(self, ntf: SMPClient, present: dict[int, int]) -> None:
        """NSUB the last acknowledged notifier id of every queue that has one."""
        requests, ops = [], []
        for i in present:
            h = self.handles[i]
            nkeys = [o for o in h.book.ops if o.kind == "NKEY" and o.outcome in L.HAPPENED_OR_MAYBE]
            if not nkeys or nkeys[-1].outcome != L.ACKNOWLEDGED:
                continue
            creds = h.notifiers[nkeys[-1].nid]  # type: ignore[index]
            ops.append(self.ledger.issue("NSUB", h.book, nid=creds.notifier_id))
            requests.append((creds.notifier_id, C.Nsub(), creds.notifier_key))
        replies = await ntf.batch(requests)
        for op, reply in zip(ops, replies):
            if _is_sub_ok(reply):
                self.ledger.acknowledge(op)
            else:
                self.ledger.reject(op, _error_text(reply))

    async def _drain_confirm_empty(self, rcv: SMPClient, present: dict[int, int]) -> None:
        handles = [self.handles[i] for i in present]
        replies = await rcv.batch([(h.rid, C.Que(), h.queue.rcv_auth_key) for h in handles])
        for h, info in zip(handles, replies):
            if not isinstance(info, C.Info):
                h.book.drain_problem = h.book.drain_problem or f"QUE answered {_error_text(info)}"
                continue
            left = int(json.loads(info.info).get("qiSize", 0))
            if left:
                h.book.drain_problem = h.book.drain_problem or f"{left} messages left after the drain"


def run_crash(rounds: int, *, seed: int = 1, pairs: int = DEFAULT_PAIRS, drivers: int = DEFAULT_DRIVERS,
              min_load: float = DEFAULT_MIN_LOAD,
              max_load: float = DEFAULT_MAX_LOAD, directory: str | Path | None = None,
              progress: Callable[[str], None] | None = None,
              before_drain: Callable[[Path, L.Ledger], None] | None = None,
              workers: int = 1, kill_workers: bool = False) -> CrashResult:
    """Run the harness (its own trio loop) in ``directory`` (default: a temporary one,
    removed after); raises HarnessError when it cannot run."""
    if directory is None:
        with tempfile.TemporaryDirectory(prefix="smpfast-crash-") as tmp:
            return run_crash(rounds, seed=seed, pairs=pairs, drivers=drivers, min_load=min_load,
                             max_load=max_load, directory=tmp, progress=progress, before_drain=before_drain,
                             workers=workers, kill_workers=kill_workers)
    harness = CrashHarness(Path(directory), rounds=rounds, seed=seed, pairs=pairs, drivers=drivers,
                           min_load=min_load, max_load=max_load, progress=progress, before_drain=before_drain,
                           workers=workers, kill_workers=kill_workers)
    return trio.run(harness.run)


# --------------------------------------------------------------------------- command line


def format_summary(result: CrashResult) -> str:
    s = result.summary
    lines = [
        f"smpfast crash harness: {s['rounds']} rounds (seed {s['seed']}, {s['pairs']} pairs x "
        f"{s['drivers_per_pair']} drivers), "
        f"server killed {s['kills']} times, {s['seconds']} s",
        f"{'operation':<10}{'issued':>9}{'acknowledged':>14}{'maybe':>8}{'rejected':>10}",
    ]
    for kind, c in s["operations"].items():
        errors = ", ".join(f"{e} {n}" for e, n in c["errors"].items())
        lines.append(f"{kind:<10}{c['issued']:>9}{c['acknowledged']:>14}{c['maybe']:>8}{c['rejected']:>10}"
                     + (f"  ({errors})" if errors else ""))
    m = s["messages"]
    lines.append(
        f"messages: {m['sent_acknowledged']} sent acknowledged, {m['sent_maybe']} maybe, "
        f"{m['sent_rejected']} refused; {m['deliveries']} deliveries; {m['acks_acknowledged']} ACKs "
        f"acknowledged; {m['queues_acknowledged']} queues"
    )
    found = {k: n for k, n in s["violations"].items() if n}
    if not found:
        lines.append("violations: none")
    else:
        lines.append("VIOLATIONS: " + ", ".join(f"{k} {n}" for k, n in found.items()))
        for kind, examples in s["violation_examples"].items():
            lines.append(f"  {kind} ({L.VIOLATIONS[kind]}):")
            lines += [f"    {e}" for e in examples]
    return "\n".join(lines)


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0 or math.isinf(value):
        raise argparse.ArgumentTypeError("must be a positive number of seconds")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m smpfast.testing.crash",
        description="SIGKILL a real smpfast server under load, restart it, and check that nothing "
                    "acknowledged was lost or undone.",
    )
    p.add_argument("--rounds", type=_positive_int, required=True, help="kill/restart rounds")
    p.add_argument("--seed", type=int, default=1, help="seed of the kill moments and the workload (default 1)")
    p.add_argument("--json", metavar="FILE", help="write the summary as JSON")
    p.add_argument("--pairs", type=_positive_int, default=DEFAULT_PAIRS,
                   help=f"client pairs, a recipient and a sender connection each (default {DEFAULT_PAIRS})")
    p.add_argument("--drivers", type=_positive_int, default=DEFAULT_DRIVERS,
                   help=f"driver tasks per pair, each with its own queues (default {DEFAULT_DRIVERS})")
    p.add_argument("--max-load", type=_positive_float, default=DEFAULT_MAX_LOAD,
                   help=f"longest load before a kill, seconds (default {DEFAULT_MAX_LOAD})")
    p.add_argument("--dir", help="keep the server directory here (default: a temporary one)")
    p.add_argument("--workers", type=_positive_int, default=1,
                   help="worker processes of the server ([TRANSPORT] workers, default 1)")
    p.add_argument("--kill-workers", action="store_true",
                   help="with --workers > 1: kill one worker per round instead of the whole server")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress lines")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    progress = None if args.quiet else (lambda line: print(line, file=sys.stderr, flush=True))
    if args.dir:
        Path(args.dir).mkdir(parents=True, exist_ok=True)
        if any(Path(args.dir).iterdir()):
            print(f"error: --dir {args.dir} is not empty", file=sys.stderr)
            return EXIT_HARNESS
    try:
        result = run_crash(args.rounds, seed=args.seed, pairs=args.pairs, drivers=args.drivers,
                           min_load=min(DEFAULT_MIN_LOAD, args.max_load), max_load=args.max_load,
                           directory=args.dir, progress=progress, workers=args.workers,
                           kill_workers=args.kill_workers)
    except HarnessError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_HARNESS
    print(format_summary(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result.summary, indent=2) + "\n")
    return EXIT_OK if result.ok else EXIT_VIOLATIONS


if __name__ == "__main__":
    raise SystemExit(main())
