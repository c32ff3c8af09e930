"""Group commit: one store transaction for the writes of many connections.

Connections mutate the store synchronously inside its open write transaction; the store counts
its own uncommitted writes. An answer computed now depends on the *generation* ``current()``
names: the open transaction's if it holds writes (the answer may show them), else the last
one committed. The committer closes the transaction every ``interval`` seconds (sooner when
many writes wait), makes it durable with ``store.sync()`` on a worker thread (``offload.WorkerThread``), and releases
everyone who waited for that generation. Connection writers send an answer only once its
generation is durable, so an acknowledged change is always on disk.

A generation whose commit fails is *failed*: its waiters get ``CommitFailed`` (their answers
become errors) and ``current()`` never names it again, so one failure does not poison later
answers. A failed fsync is retried at every interval until it succeeds; its waiters wait.
Store failures are logged once per episode, with a line when the store works again.
"""

from __future__ import annotations

import bisect
import logging
import time

import trio

from ..store import Store
from .offload import WorkerThread

log = logging.getLogger(__name__)


class CommitFailed(Exception):
    """The generation a caller waited for was aborted: its writes are not stored."""


class StoreHealth:
    """Logs store failures once per episode (not once per failed write), and the recovery:
    an episode ends with a successful commit once no write failed for ``quiet`` seconds."""

    def __init__(self, quiet: float = 10.0, clock=time.monotonic) -> None:
        self.quiet = quiet
        self.clock = clock
        self.failing = False
        self.failures = 0  # failed writes and commits in the current episode
        self._last_failure = 0.0

    def failed(self, what: str, error: BaseException) -> None:
        self.failures += 1
        self._last_failure = self.clock()
        if not self.failing:
            self.failing = True
            log.error("%s failed: %s; writes are refused until the store has room again", what, error)

    def committed(self) -> None:
        if self.failing and self.clock() - self._last_failure >= self.quiet:
            log.warning("the store accepts writes again (%d writes refused meanwhile)", self.failures)
            self.failing = False
            self.failures = 0


class _Generations:
    """A set of generation numbers kept as sorted disjoint ranges: failures come in runs
    (a full disk fails every commit until it has room), so this stays small."""

    def __init__(self) -> None:
        self._starts: list[int] = []
        self._ends: list[int] = []  # inclusive

    def __bool__(self) -> bool:
        return bool(self._starts)

    def add(self, generation: int) -> None:
        if self._ends and self._ends[-1] == generation - 1:
            self._ends[-1] = generation
        else:
            self._starts.append(generation)
            self._ends.append(generation)

    def __contains__(self, generation: int) -> bool:
        i = bisect.bisect_right(self._starts, generation) - 1
        return i >= 0 and generation <= self._ends[i]


class GroupCommitter:
    def __init__(self, store: Store, interval: float = 0.002, max_writes: int = 2000) -> None:
        self.store = store
        self.interval = interval
        self.max_writes = max_writes
        self._open = 1  # generation of the transaction now accepting writes
        self._committed = 0  # highest generation committed (visible; maybe not yet synced)
        self._durable = 0  # highest generation known to be on disk
        self._failed = _Generations()
        self._dirty = trio.Event()
        self._full = trio.Event()
        self._synced = trio.Event()
        self.health = StoreHealth()
        self.commits = 0
        self._sync_thread = WorkerThread("smpfast-sync")  # fsync off the event loop, cheaply
        self._on_settled: list[tuple[int, object]] = []  # (generation, callback) not yet called
        store.on_write = self._on_write
        store.on_abort = self._on_abort

    @property
    def durable(self) -> int:
        return self._durable

    def _on_write(self, count: int) -> None:
        if count == 1:
            self._dirty.set()
        elif count >= self.max_writes:
            self._full.set()

    def _on_abort(self) -> None:
        """The store discarded its uncommitted batch (an engine failure outside a write
        unit): whatever was answered from it must not be sent."""
        self._failed.add(self._open)
        self._open += 1
        self._release()

    def current(self) -> int:
        """The generation whose commit makes everything visible now durable."""
        return self._open if self.store.uncommitted_writes else self._committed

    def failed(self, generation: int) -> bool:
        return bool(self._failed) and generation in self._failed

    def settled(self, generation: int) -> bool:
        """True once ``generation`` is durable or failed: its answers may go out."""
        return generation <= self._durable or self.failed(generation)

    def store_failed(self, error: Exception) -> None:
        self.health.failed("a store write", error)
        self._dirty.set()  # the next flush may have maintenance to do (grow a full map)

    def call_when_settled(self, generation: int, callback) -> None:
        """Call ``callback()`` (on the event loop, synchronously) once ``generation`` is
        settled; the caller has checked it is not yet. One wake-up for a connection's
        writer instead of a task waiting on ``wait_durable``."""
        self._on_settled.append((generation, callback))

    async def wait_durable(self, generation: int) -> None:
        """Return once ``generation`` is durable; CommitFailed if it was aborted."""
        while True:
            if self.failed(generation):
                raise CommitFailed(generation)
            if self._durable >= generation:
                return
            await self._synced.wait()

    def _release(self) -> None:
        synced, self._synced = self._synced, trio.Event()
        synced.set()
        if self._on_settled:
            waiting, self._on_settled = self._on_settled, []
            for generation, callback in waiting:
                if self.settled(generation):
                    callback()
                else:
                    self._on_settled.append((generation, callback))

    async def run(self) -> None:
        while True:
            if self._committed > self._durable:
                await trio.sleep(self.interval)  # a failed fsync: try again
            else:
                await self._dirty.wait()
                with trio.move_on_after(self.interval):
                    await self._full.wait()
            await self.flush()

    async def flush(self) -> None:
        """Commit the open transaction now and wait until it is durable."""
        store = self.store
        self._dirty = trio.Event()
        self._full = trio.Event()
        if store.uncommitted_writes:
            generation = self._open
            self._open += 1
            try:
                store.commit()
            except Exception as e:
                self._failed.add(generation)
                self.health.failed("a store commit", e)
                store.maintain()
                self._release()
                return
            store.maintain()
            self._committed = generation
        elif store.needs_maintenance:
            store.commit()  # ends the read-only transaction, so that the map can grow
            store.maintain()
        if self._committed <= self._durable:
            return
        target = self._committed
        try:
            await self._sync_thread.run(store.sync)
        except Exception as e:
            self.health.failed("a store sync", e)
        else:
            self._durable = target
            self.commits += 1
            self.health.committed()
        self._release()
