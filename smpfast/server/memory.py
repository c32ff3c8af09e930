"""Give freed heap memory back to the operating system after many connections close.

CPython returns its own small-object arenas when they empty, but glibc's malloc keeps
freed chunks of its heap (TLS buffers, 256 KB reads) for reuse, so a server's resident
size stays at its peak after a flood of connections. ``malloc_trim(0)`` releases those
pages. Elsewhere (musl, macOS, Windows) there is no such call and this is a no-op.
"""

from __future__ import annotations

import ctypes
import ctypes.util
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


def can_release_memory() -> bool:
    """Whether ``release_free_memory`` does anything on this platform."""
    return _malloc_trim is not None


def release_free_memory() -> bool:
    """Return free heap pages to the OS (glibc ``malloc_trim(0)``); True if any was
    released, False if none or where the allocator has no such call."""
    if _malloc_trim is None:
        return False
    return bool(_malloc_trim(0))


def trim_due(peak: int, active: int) -> bool:
    """Whether a trim is worth its cost: at least TRIM_MIN_DROP connections, and a quarter
    of the peak, closed since the last one."""
    dropped = peak - active
    return dropped >= TRIM_MIN_DROP and dropped * 4 >= peak
