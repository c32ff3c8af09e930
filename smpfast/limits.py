"""Process limits that a server or a load generator with many sockets needs raised."""

from __future__ import annotations

import resource


def raise_open_files_limit() -> int:
    """Raise RLIMIT_NOFILE's soft limit as far as the hard limit allows; returns the soft
    limit now in force (one file descriptor per connection)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return soft
