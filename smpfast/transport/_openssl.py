"""TLS settings Python 3.11's ``ssl`` has no API for, applied to an SSLContext via ctypes.

The reference's TLS profile needs the TLS 1.3 cipher suite list, the key-exchange group list
and the signature-algorithm list. Python's ``ssl`` exposes none of them (suites from 3.13 on
not either), so we call libssl on the context's ``SSL_CTX*``. CPython's ``PySSLContext``
struct starts with ``PyObject_HEAD`` followed by ``SSL_CTX *ctx``; the pointer read there is
accepted only after ``SSL_CTX_get_options`` on it agrees with ``ctx.options`` for two
different option values, and every setting is checked afterwards where it can be observed.
Anything unexpected disables this path (callers then log a warning and keep OpenSSL's
defaults, which still negotiate ChaCha20 with the reference's clients: they offer nothing else).
"""

from __future__ import annotations

import ctypes
import ssl
import sys

# OpenSSL 3 SSL_CTX_ctrl commands behind the SSL_CTX_set1_groups_list / _sigalgs_list macros.
_SSL_CTRL_SET_GROUPS_LIST = 92
_SSL_CTRL_SET_SIGALGS_LIST = 98

_lib: ctypes.CDLL | None = None
_lib_error: str | None = None


def _load() -> ctypes.CDLL:
    """libssl as linked into CPython's _ssl module (the same copy ``ssl`` uses)."""
    global _lib, _lib_error
    if _lib is not None:
        return _lib
    if _lib_error is not None:
        raise OSError(_lib_error)
    try:
        if sys.implementation.name != "cpython":
            raise OSError("not CPython")
        import _ssl

        lib = ctypes.CDLL(_ssl.__file__)  # dlsym on this handle also searches libssl
        lib.SSL_CTX_get_options.argtypes = [ctypes.c_void_p]
        lib.SSL_CTX_get_options.restype = ctypes.c_uint64
        lib.SSL_CTX_set_ciphersuites.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        lib.SSL_CTX_set_ciphersuites.restype = ctypes.c_int
        lib.SSL_CTX_ctrl.argtypes = [
            ctypes.c_void_p, ctypes.c_int, ctypes.c_long, ctypes.c_void_p
        ]
        lib.SSL_CTX_ctrl.restype = ctypes.c_long
    except (OSError, AttributeError, ImportError) as e:
        _lib_error = f"libssl functions unavailable: {e}"
        raise OSError(_lib_error) from None
    _lib = lib
    return lib


def _ssl_ctx_pointer(ctx: ssl.SSLContext, lib: ctypes.CDLL) -> int:
    """The SSL_CTX* inside ``ctx``, verified against the options Python reports."""
    if type(ctx).__basicsize__ < object.__basicsize__ + ctypes.sizeof(ctypes.c_void_p):
        raise OSError("unexpected SSLContext layout")
    ptr = ctypes.c_void_p.from_address(id(ctx) + object.__basicsize__).value
    if not ptr:
        raise OSError("no SSL_CTX pointer found")
    saved = ctx.options
    try:
        for opts in (saved | ssl.OP_NO_COMPRESSION, saved & ~ssl.OP_NO_COMPRESSION):
            ctx.options = opts
            if lib.SSL_CTX_get_options(ptr) != int(ctx.options):
                raise OSError("SSL_CTX pointer does not match the context's options")
    finally:
        ctx.options = saved
    return ptr


def set_tls_lists(ctx: ssl.SSLContext, *, ciphersuites: str, groups: str, sigalgs: str) -> None:
    """Set TLS 1.3 suites, groups and signature algorithms on ``ctx``; OSError if impossible."""
    lib = _load()
    ptr = _ssl_ctx_pointer(ctx, lib)
    if lib.SSL_CTX_set_ciphersuites(ptr, ciphersuites.encode()) != 1:
        raise OSError(f"SSL_CTX_set_ciphersuites({ciphersuites!r}) failed")
    lists = ((_SSL_CTRL_SET_GROUPS_LIST, groups), (_SSL_CTRL_SET_SIGALGS_LIST, sigalgs))
    for command, value in lists:
        if lib.SSL_CTX_ctrl(ptr, command, 0, ctypes.c_char_p(value.encode())) != 1:
            raise OSError(f"setting {value!r} (SSL_CTX_ctrl {command}) failed")
    wanted = set(ciphersuites.split(":"))
    got = {c["name"] for c in ctx.get_ciphers() if c.get("protocol") == "TLSv1.3"}
    if got != wanted:
        raise OSError(f"TLS 1.3 suites are {sorted(got)} after setting {sorted(wanted)}")
