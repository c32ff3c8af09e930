"""A cap on open connections, shared by every listener of one server.

Counted from accept (the TLS handshake included), so clients that never finish a
handshake use up the cap too and cannot exhaust file descriptors. Over the cap a new
connection is closed at once, before any TLS work; the warning is logged once per spell
of refusals, not once per connection.

Worker processes share the cap through ``slots``: an array in shared memory with each
worker's open connections (its own slot written by it alone); a worker admits a connection
while their sum is below the cap. Two workers admitting at the same instant may both pass
at the cap (by at most one connection per worker).
"""

from __future__ import annotations

import logging

log = logging.getLogger("smpfast.transport")


class ConnectionLimit:
    """``maximum`` connections at once (None: no cap)."""

    def __init__(self, maximum: int | None, slots=None, slot: int = 0) -> None:
        self.maximum = maximum
        self.slots = slots  # the workers' counts in shared memory, or None (one process)
        self.slot = slot
        self.active = 0
        self.refused = 0  # in total
        self.peak = 0  # most open at once since the owner last reset it
        self._refusing = False
        self._refused_in_spell = 0

    def acquire(self) -> bool:
        """Count a new connection in; False when it must be refused (then do not release)."""
        if self.maximum is not None and self.total() >= self.maximum:
            self.refused += 1
            self._refused_in_spell += 1
            if not self._refusing:
                self._refusing = True
                log.warning("%d connections open (max_connections): refusing new ones", self.total())
            return False
        self.active += 1
        if self.slots is not None:
            self.slots[self.slot] = self.active
        if self.active > self.peak:
            self.peak = self.active
        if self._refusing:
            self._refusing = False
            log.warning("accepting connections again (%d refused meanwhile)", self._refused_in_spell)
            self._refused_in_spell = 0
        return True

    def release(self) -> None:
        self.active -= 1
        if self.slots is not None:
            self.slots[self.slot] = self.active

    def total(self) -> int:
        """Open connections of the whole server (every worker's)."""
        return self.active if self.slots is None else sum(self.slots)
