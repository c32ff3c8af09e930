"""Give freed heap memory back to the operating system after many connections close.

Two things keep a server's resident size at its peak after a flood of connections: each
closed connection leaves objects in reference cycles (the connection and its broker
client point at each other) that wait for a full garbage collection, and glibc's malloc
keeps freed chunks of its heap (OpenSSL state, 256 KB reads) for reuse. So a release
collects the cycles, then calls glibc's ``malloc_trim(0)``; where there is no such call
(musl, macOS, Windows) only the collection is done.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import sys
from typing import Callable

# Trim once the open connections are this many fewer than their peak since the last
# trim (a flood ended, not the everyday coming and going)...
TRIM_MIN_DROP = 64
# ...checked this often (seconds); a trim walks the heap, so never per connection.
TRIM_CHECK_INTERVAL = 5.0


def _load_malloc_trim() -> Callable[[int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.gnu_get_libc_version  # only glibc has malloc_trim
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


_malloc_trim = _load_malloc_trim()


def can_trim_heap() -> bool:
    """Whether the allocator can return free heap pages (glibc's ``malloc_trim``)."""
    return _malloc_trim is not None


def release_free_memory() -> bool:
    """Collect cyclic garbage, then return free heap pages to the OS (glibc
    ``malloc_trim(0)``); True if the allocator released any, False if none or where it
    has no such call."""
    gc.collect()
    if _malloc_trim is None:
        return False
    return bool(_malloc_trim(0))


def trim_due(peak: int, active: int) -> bool:
    """Whether a trim is worth its cost: at least TRIM_MIN_DROP connections, and a quarter
    of the peak, closed since the last one."""
    dropped = peak - active
    return dropped >= TRIM_MIN_DROP and dropped * 4 >= peak
