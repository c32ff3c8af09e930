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


_ssl_offset_checked: bool | None = None


def _ssl_pointer(sslobj: object, lib: ctypes.CDLL) -> int:
    """The SSL* inside a CPython ``_ssl._SSLSocket`` (the ``_sslobj`` of an SSLSocket or
    SSLObject): its struct is ``PyObject_HEAD``, ``PyObject *Socket``, ``SSL *ssl``. The
    offset is accepted once SSL_get_SSL_CTX of the pointer read there gives the (already
    verified) SSL_CTX* of the object's context."""
    global _ssl_offset_checked
    offset = object.__basicsize__ + ctypes.sizeof(ctypes.c_void_p)
    if type(sslobj).__basicsize__ < offset + ctypes.sizeof(ctypes.c_void_p):
        raise OSError("unexpected _SSLSocket layout")
    ptr = ctypes.c_void_p.from_address(id(sslobj) + offset).value
    if not ptr:
        raise OSError("no SSL pointer found")
    if _ssl_offset_checked is None:
        lib.SSL_get_SSL_CTX.argtypes = [ctypes.c_void_p]
        lib.SSL_get_SSL_CTX.restype = ctypes.c_void_p
        for name in ("SSL_get_rbio", "SSL_get_wbio"):
            getattr(lib, name).argtypes = [ctypes.c_void_p]
            getattr(lib, name).restype = ctypes.c_void_p
        for name in ("BIO_number_read", "BIO_number_written"):
            getattr(lib, name).argtypes = [ctypes.c_void_p]
            getattr(lib, name).restype = ctypes.c_uint64
        _ssl_offset_checked = lib.SSL_get_SSL_CTX(ptr) == _ssl_ctx_pointer(sslobj.context, lib)
    if not _ssl_offset_checked:
        raise OSError("SSL pointer does not match the connection's context")
    return ptr


def socket_bytes(sslobj: object) -> tuple[int, int]:
    """(bytes read from, bytes written to) the socket of a connection OpenSSL runs on its
    socket (an SSLSocket's ``_sslobj``), handshake included. OSError if unavailable."""
    lib = _load()
    try:
        ptr = _ssl_pointer(sslobj, lib)
    except AttributeError as e:
        raise OSError(f"libssl BIO counters unavailable: {e}") from None
    return lib.BIO_number_read(lib.SSL_get_rbio(ptr)), lib.BIO_number_written(lib.SSL_get_wbio(ptr))


# ---- client certificates -------------------------------------------------------------------
#
# The reference's server asks every client for a certificate and validates a non-empty chain
# itself (a self-signed certificate against itself, a longer chain against its last
# certificate), refusing the handshake with an alert when it is not valid. Python's ``ssl``
# can only validate against a fixed CA store, so the server context gets an OpenSSL verify
# callback that judges the chain the client sent with ``judge`` instead.

_SSL_VERIFY_PEER = 1
# X509_V_ERR codes, used only for the alert OpenSSL sends for them (ssl_x509err2alert), to
# send the alert the reference's TLS library sends for each of its rejection reasons.
X509_V_ERR_CERT_HAS_EXPIRED = 10  # certificate_expired
X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY = 20  # unknown_ca
X509_V_ERR_INVALID_PURPOSE = 26  # unsupported_certificate
X509_V_ERR_CERT_REJECTED = 28  # bad_certificate
X509_V_ERR_SUBJECT_ISSUER_MISMATCH = 29  # not in OpenSSL's table: certificate_unknown

_VERIFY_CB = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int, ctypes.c_void_p)


def _load_verify_functions(lib: ctypes.CDLL) -> None:
    if getattr(lib, "_smpfast_verify_ready", False):
        return
    lib.SSL_CTX_set_verify.argtypes = [ctypes.c_void_p, ctypes.c_int, _VERIFY_CB]
    lib.SSL_CTX_set_verify.restype = None
    lib.X509_STORE_CTX_get0_untrusted.argtypes = [ctypes.c_void_p]
    lib.X509_STORE_CTX_get0_untrusted.restype = ctypes.c_void_p
    lib.X509_STORE_CTX_set_error.argtypes = [ctypes.c_void_p, ctypes.c_int]
    lib.X509_STORE_CTX_set_error.restype = None
    lib.OPENSSL_sk_num.argtypes = [ctypes.c_void_p]
    lib.OPENSSL_sk_num.restype = ctypes.c_int
    lib.OPENSSL_sk_value.argtypes = [ctypes.c_void_p, ctypes.c_int]
    lib.OPENSSL_sk_value.restype = ctypes.c_void_p
    lib.i2d_X509.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.POINTER(ctypes.c_ubyte))]
    lib.i2d_X509.restype = ctypes.c_int
    lib._smpfast_verify_ready = True


def _chain_of(lib: ctypes.CDLL, store_ctx: int) -> list[bytes]:
    """The certificates the peer sent, leaf first, as DER (OpenSSL's untrusted list)."""
    stack = lib.X509_STORE_CTX_get0_untrusted(store_ctx)
    if not stack:
        return []
    out = []
    for i in range(lib.OPENSSL_sk_num(stack)):
        cert = lib.OPENSSL_sk_value(stack, i)
        n = lib.i2d_X509(cert, None)
        if n <= 0:
            raise OSError("i2d_X509 failed")
        buf = (ctypes.c_ubyte * n)()
        p = ctypes.cast(buf, ctypes.POINTER(ctypes.c_ubyte))
        if lib.i2d_X509(cert, ctypes.byref(p)) != n:
            raise OSError("i2d_X509 failed")
        out.append(bytes(buf))
    return out


def request_client_certificates(ctx: ssl.SSLContext, judge, on_error=None) -> None:
    """Make the server ``ctx`` ask clients for a certificate (an empty answer is accepted)
    and accept a non-empty chain iff ``judge(chain_der)`` returns None; otherwise it returns
    one of the X509_V_ERR codes above, which sets the alert. ``judge`` runs inside OpenSSL's
    handshake (possibly more than once per handshake: its verdict is cached per chain).
    ``on_error(exception)`` hears about a failing judge (the chain is then refused)."""
    lib = _load()
    try:
        _load_verify_functions(lib)
    except AttributeError as e:
        raise OSError(f"libssl verify functions unavailable: {e}") from None
    ptr = _ssl_ctx_pointer(ctx, lib)
    last: list = [None, None]  # (chain, verdict) of the last judged chain

    @_VERIFY_CB
    def callback(_preverify_ok: int, store_ctx: int) -> int:
        try:
            chain = _chain_of(lib, store_ctx)
            if last[0] != chain:
                last[0], last[1] = chain, judge(chain)
            verdict = last[1]
        except Exception as e:  # never let an exception cross into OpenSSL
            if on_error is not None:
                try:
                    on_error(e)
                except Exception:
                    pass
            verdict = X509_V_ERR_SUBJECT_ISSUER_MISMATCH  # hs-tls: rejected, "other"
        if verdict is None:
            return 1
        lib.X509_STORE_CTX_set_error(store_ctx, verdict)
        return 0

    # Python's verify_mode setter keeps an installed callback; set the mode first.
    ctx.verify_mode = ssl.CERT_OPTIONAL
    lib.SSL_CTX_set_verify(ptr, _SSL_VERIFY_PEER, callback)
    ctx._smpfast_verify_callback = callback  # type: ignore[attr-defined]  # lives as long as ctx
    if ctx.verify_mode is not ssl.CERT_OPTIONAL:
        raise OSError("verify mode did not stay CERT_OPTIONAL")


_CERT_CB = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p)


def on_certificate_request(ctx: ssl.SSLContext, hook) -> None:
    """Call ``hook()`` when a server asks this client ``ctx`` for its certificate
    (OpenSSL's cert_cb runs on the client exactly then), so that a client knows whether its
    certificate was sent: the reference's client presents a service only then."""
    lib = _load()
    try:
        lib.SSL_CTX_set_cert_cb.argtypes = [ctypes.c_void_p, _CERT_CB, ctypes.c_void_p]
        lib.SSL_CTX_set_cert_cb.restype = None
    except AttributeError as e:
        raise OSError(f"libssl SSL_CTX_set_cert_cb unavailable: {e}") from None
    ptr = _ssl_ctx_pointer(ctx, lib)

    @_CERT_CB
    def callback(_ssl: int, _arg: int) -> int:
        try:
            hook()
        except Exception:
            pass
        return 1

    lib.SSL_CTX_set_cert_cb(ptr, callback, None)
    ctx._smpfast_cert_callback = callback  # type: ignore[attr-defined]  # lives as long as ctx
