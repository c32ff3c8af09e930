"""A cap on open connections, shared by every listener of one server.

Counted from accept (the TLS handshake included), so clients that never finish a
handshake use up the cap too and cannot exhaust file descriptors. Over the cap a new
connection is closed at once, before any TLS work; the warning is logged once per spell
of refusals, not once per connection.
"""

from __future__ import annotations

import logging

log = logging.getLogger("smpfast.transport")


class ConnectionLimit:
    """``maximum`` connections at once (None: no cap)."""

    def __init__(self, maximum: int | None) -> None:
        self.maximum = maximum
        self.active = 0
        self.refused = 0  # in total
        self.peak = 0  # most open at once since the owner last reset it
        self._refusing = False
        self._refused_in_spell = 0

    def acquire(self) -> bool:
        """Count a new connection in; False when it must be refused (then do not release)."""
        if self.maximum is not None and self.active >= self.maximum:
            self.refused += 1
            self._refused_in_spell += 1
            if not self._refusing:
                self._refusing = True
                log.warning("%d connections open (max_connections): refusing new ones", self.active)
            return False
        self.active += 1
        if self.active > self.peak:
            self.peak = self.active
        if self._refusing:
            self._refusing = False
            log.warning("accepting connections again (%d refused meanwhile)", self._refused_in_spell)
            self._refused_in_spell = 0
        return True

    def release(self) -> None:
        self.active -= 1
