"""Group commit: one store transaction for the writes of many connections.

Connections mutate the store synchronously inside the store's open write transaction and
note the *generation* of that transaction. The committer closes the transaction every
``interval`` seconds (or sooner when many writes are waiting), makes it durable with
``store.sync()`` on a worker thread, and then releases everyone who waited for that
generation. Responses to state changes (OK, IDS, ...) are sent only after that, so an
acknowledged change is always on disk.
"""

from __future__ import annotations

import logging

import trio

log = logging.getLogger(__name__)


class CommitFailed(Exception):
    """The generation a caller waited for was aborted: its writes are not stored."""


class GroupCommitter:
    def __init__(self, store, interval: float = 0.002, max_writes: int = 2000) -> None:
        self.store = store
        self.interval = interval
        self.max_writes = max_writes
        self._open = 1  # generation of the transaction now accepting writes
        self._durable = 0  # highest generation known to be on disk
        self._committing = 0  # highest generation handed to the store's commit
        self._failed: set[int] = set()
        self._writes = 0
        self._dirty = trio.Event()
        self._full = trio.Event()
        self._synced = trio.Event()
        self.commits = 0

    @property
    def durable(self) -> int:
        return self._durable

    def wrote(self, count: int = 1) -> int:
        """Record writes in the open transaction; returns the generation to wait for."""
        self._writes += count
        self._dirty.set()
        if self._writes >= self.max_writes:
            self._full.set()
        return self._open

    def current(self) -> int:
        """The generation whose commit makes everything visible now durable."""
        return self._open if self._writes else max(self._durable, self._committing)

    def abort_open(self) -> None:
        """The open transaction failed (the store aborted it): fail its waiters."""
        self.store.abort()
        self._failed.add(self._open)
        self._open += 1
        self._writes = 0
        self._release()

    async def wait_durable(self, generation: int) -> None:
        while self._durable < generation and generation not in self._failed:
            await self._synced.wait()
        if generation in self._failed:
            raise CommitFailed(generation)

    def _release(self) -> None:
        synced, self._synced = self._synced, trio.Event()
        synced.set()

    async def run(self) -> None:
        while True:
            await self._dirty.wait()
            with trio.move_on_after(self.interval):
                await self._full.wait()
            await self.flush()

    async def flush(self) -> None:
        """Commit the open transaction now and wait until it is durable."""
        if not self._writes:
            self._dirty = trio.Event()
            return
        generation = self._open
        self._committing = generation
        self._open += 1
        self._writes = 0
        self._dirty = trio.Event()
        self._full = trio.Event()
        try:
            self.store.commit()
            await trio.to_thread.run_sync(self.store.sync)
        except Exception:
            log.exception("store commit failed; generation %d is lost", generation)
            self._failed.add(generation)
        else:
            self._durable = generation
            self.commits += 1
        self._release()
