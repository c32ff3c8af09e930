# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Compiled twin of ``_sodium_py``: libsodium called directly, batches without the GIL.

libsodium comes from PyPI alone: PyNaCl's extension ``nacl._sodium`` is libsodium linked
statically and exports its symbols, so they are resolved at import with dlopen/dlsym
(prototypes declared here, no headers needed). ``import nacl.bindings`` first runs
``sodium_init``. If anything is missing this module raises ImportError and
``smpfast._core`` falls back to the pure twin.

Arguments that are bytes, bytearrays or flat memoryviews take the compiled path; anything
else is handed to the pure twin unchanged, so odd inputs get its results and errors.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from cpython.pyport cimport PY_SSIZE_T_MAX
from libc.string cimport memcpy, memset

from ._bytes_like cimport as_bytes, as_ssize

import os

from . import _sodium_py as _py
from ._errors import CryptoError

ED25519_SIG = 64
X25519_AUTHENTICATOR = 80
NONCE_SIZE = 24
KEY_SIZE = 32
TAG_SIZE = 16

# Below this many bytes the GIL stays held: releasing it costs more than the work.
cdef enum:
    _NOGIL_MIN = 2048


cdef extern from "<dlfcn.h>" nogil:
    void* dlopen(const char* filename, int flags)
    void* dlsym(void* handle, const char* symbol)
    char* dlerror()
    int RTLD_NOW
    int RTLD_LOCAL


# libsodium's prototypes (sodium/*.h), declared here rather than included.
ctypedef int (*sodium_init_t)() noexcept nogil
ctypedef int (*sign_verify_detached_t)(
    const unsigned char* sig, const unsigned char* m, unsigned long long mlen,
    const unsigned char* pk) noexcept nogil
ctypedef int (*box_easy_afternm_t)(
    unsigned char* c, const unsigned char* m, unsigned long long mlen,
    const unsigned char* n, const unsigned char* k) noexcept nogil
ctypedef int (*box_open_easy_afternm_t)(
    unsigned char* m, const unsigned char* c, unsigned long long clen,
    const unsigned char* n, const unsigned char* k) noexcept nogil
ctypedef int (*box_beforenm_t)(
    unsigned char* k, const unsigned char* pk, const unsigned char* sk) noexcept nogil
ctypedef int (*scalarmult_t)(
    unsigned char* q, const unsigned char* n, const unsigned char* p) noexcept nogil
ctypedef int (*core_hsalsa20_t)(
    unsigned char* out, const unsigned char* inp, const unsigned char* k,
    const unsigned char* c) noexcept nogil
ctypedef int (*hash_sha512_t)(
    unsigned char* out, const unsigned char* inp, unsigned long long inlen) noexcept nogil
ctypedef int (*verify_64_t)(const unsigned char* x, const unsigned char* y) noexcept nogil
ctypedef size_t (*sha512_statebytes_t)() noexcept nogil
ctypedef int (*sha512_init_t)(void* state) noexcept nogil
ctypedef int (*sha512_update_t)(void* state, const unsigned char* inp, unsigned long long inlen) noexcept nogil
ctypedef int (*sha512_final_t)(void* state, unsigned char* out) noexcept nogil

cdef sign_verify_detached_t _sign_verify_detached = NULL
cdef box_easy_afternm_t _box_easy_afternm = NULL
cdef box_open_easy_afternm_t _box_open_easy_afternm = NULL
cdef box_beforenm_t _box_beforenm = NULL
cdef scalarmult_t _scalarmult = NULL
cdef core_hsalsa20_t _core_hsalsa20 = NULL
cdef hash_sha512_t _hash_sha512 = NULL
cdef verify_64_t _verify_64 = NULL
cdef sha512_init_t _sha512_init = NULL
cdef sha512_update_t _sha512_update = NULL
cdef sha512_final_t _sha512_final = NULL

# crypto_hash_sha512_state (208 bytes in libsodium) lives in a buffer of this many 8-byte
# words; the size is checked against libsodium's own at load.
cdef enum:
    _SHA512_STATE_WORDS = 64
    _NONCE_KEY = 56  # a block's nonce (24) followed by its box key (32)


cdef void* _symbol(void* handle, bytes name) except NULL:
    cdef void* p = dlsym(handle, PyBytes_AS_STRING(name))
    if p == NULL:
        raise ImportError(f"libsodium symbol {name.decode()} not found in PyNaCl's extension")
    return p


def _load_libsodium() -> str:
    """Resolve libsodium's functions from PyNaCl's extension; return its path."""
    global _sign_verify_detached, _box_easy_afternm, _box_open_easy_afternm, _box_beforenm
    global _scalarmult, _core_hsalsa20, _hash_sha512, _verify_64, _sha512_init, _sha512_update, _sha512_final
    try:
        import nacl.bindings  # noqa: F401  (runs sodium_init)
        import nacl._sodium
        path = nacl._sodium.__file__
        if not path:
            raise ImportError("nacl._sodium has no file")
        bpath = os.fsencode(path)
    except ImportError:
        raise
    except Exception as exc:  # a broken or unusual PyNaCl: fall back, do not crash
        raise ImportError(f"cannot locate PyNaCl's libsodium: {exc!r}") from exc
    cdef void* handle = dlopen(bpath, RTLD_NOW | RTLD_LOCAL)
    cdef const char* err
    if handle == NULL:
        err = dlerror()
        reason = (<bytes>err).decode(errors="replace") if err != NULL else "unknown error"
        raise ImportError(f"dlopen({path!r}) failed: {reason}")
    cdef sodium_init_t init = <sodium_init_t>_symbol(handle, b"sodium_init")
    if init() < 0:  # 1 = already initialised by PyNaCl, 0 = now initialised
        raise ImportError("sodium_init failed")
    _sign_verify_detached = <sign_verify_detached_t>_symbol(handle, b"crypto_sign_verify_detached")
    _box_easy_afternm = <box_easy_afternm_t>_symbol(handle, b"crypto_box_easy_afternm")
    _box_open_easy_afternm = <box_open_easy_afternm_t>_symbol(handle, b"crypto_box_open_easy_afternm")
    _box_beforenm = <box_beforenm_t>_symbol(handle, b"crypto_box_beforenm")
    _scalarmult = <scalarmult_t>_symbol(handle, b"crypto_scalarmult")
    _core_hsalsa20 = <core_hsalsa20_t>_symbol(handle, b"crypto_core_hsalsa20")
    _hash_sha512 = <hash_sha512_t>_symbol(handle, b"crypto_hash_sha512")
    _verify_64 = <verify_64_t>_symbol(handle, b"crypto_verify_64")
    cdef sha512_statebytes_t statebytes = <sha512_statebytes_t>_symbol(handle, b"crypto_hash_sha512_statebytes")
    if statebytes() > _SHA512_STATE_WORDS * 8:
        raise ImportError("libsodium's SHA-512 state is larger than expected")
    _sha512_init = <sha512_init_t>_symbol(handle, b"crypto_hash_sha512_init")
    _sha512_update = <sha512_update_t>_symbol(handle, b"crypto_hash_sha512_update")
    _sha512_final = <sha512_final_t>_symbol(handle, b"crypto_hash_sha512_final")
    return path


LIBSODIUM_PATH = _load_libsodium()


cdef inline const unsigned char* _ptr(bytes b):
    return <const unsigned char*>PyBytes_AS_STRING(b)


cdef inline unsigned char* _wptr(bytes b):
    return <unsigned char*>PyBytes_AS_STRING(b)


cdef bytes _hsalsa20(bytes k, bytes i):
    if PyBytes_GET_SIZE(k) != 32 or PyBytes_GET_SIZE(i) != 16:
        raise CryptoError("hsalsa20 takes a 32-byte key and 16-byte input")
    out = PyBytes_FromStringAndSize(NULL, 32)
    _core_hsalsa20(_wptr(out), _ptr(i), _ptr(k), NULL)
    return out


cdef bytes _ZERO16 = bytes(16)


def hsalsa20(key, inp):
    """The HSalsa20 core: Salsa20's 20 rounds without the feed-forward."""
    cdef bytes k = as_bytes(key)
    cdef bytes i = as_bytes(inp)
    if k is None or i is None:
        return _py.hsalsa20(key, inp)
    return _hsalsa20(k, i)


def hsalsa20_key(key):
    """``HSalsa20(key, 0^16)``: the precomputed key of the symmetric cryptoBox variant."""
    cdef bytes k = as_bytes(key)
    if k is None:
        return _py.hsalsa20_key(key)
    return _hsalsa20(k, _ZERO16)


cdef bytes _dh(bytes sk, bytes pk, bint precompute, str name):
    """X25519 of two 32-byte keys, or libsodium's box_beforenm (HSalsa20 of it) when
    ``precompute``; the GIL is released for the curve arithmetic."""
    if PyBytes_GET_SIZE(sk) != 32 or PyBytes_GET_SIZE(pk) != 32:
        raise CryptoError(f"{name} takes 32-byte keys")
    out = PyBytes_FromStringAndSize(NULL, 32)
    cdef unsigned char* q = _wptr(out)
    cdef const unsigned char* skp = _ptr(sk)
    cdef const unsigned char* pkp = _ptr(pk)
    cdef int rc
    with nogil:
        rc = _box_beforenm(q, pkp, skp) if precompute else _scalarmult(q, skp, pkp)
    if rc != 0:
        raise CryptoError("Unexpected library error")
    return out


def x25519(private, public):
    """Raw X25519 shared secret."""
    cdef bytes sk = as_bytes(private)
    cdef bytes pk = as_bytes(public)
    if sk is None or pk is None:
        return _py.x25519(private, public)
    return _dh(sk, pk, False, "x25519")


def box_beforenm(public, private):
    """``HSalsa20(X25519(private, public), 0^16)``: the precomputed key of the DH variant."""
    cdef bytes sk = as_bytes(private)
    cdef bytes pk = as_bytes(public)
    if sk is None or pk is None:
        return _py.box_beforenm(public, private)
    return _dh(sk, pk, True, "box_beforenm")


cdef inline int _check(bytes key, bytes nonce) except -1:
    if PyBytes_GET_SIZE(key) != KEY_SIZE or PyBytes_GET_SIZE(nonce) != NONCE_SIZE:
        raise CryptoError("box takes a 32-byte key and a 24-byte nonce")
    return 0


cdef int _seal(
    unsigned char* out, const unsigned char* m, Py_ssize_t mlen, bytes key, bytes nonce
) except -1:
    """Write ``tag(16) || ciphertext`` of the ``mlen`` bytes at ``m`` to ``out``.

    ``m`` may be ``out + 16``: libsodium encrypts in place when the two coincide.
    """
    cdef int rc
    cdef const unsigned char* np = _ptr(nonce)
    cdef const unsigned char* kp = _ptr(key)
    if mlen >= _NOGIL_MIN:
        with nogil:
            rc = _box_easy_afternm(out, m, mlen, np, kp)
    else:
        rc = _box_easy_afternm(out, m, mlen, np, kp)
    if rc != 0:
        raise CryptoError("Unexpected library error")
    return 0


def box_seal(key, nonce, plaintext):
    cdef bytes k = as_bytes(key)
    cdef bytes n = as_bytes(nonce)
    cdef bytes m = as_bytes(plaintext)
    if k is None or n is None or m is None:
        return _py.box_seal(key, nonce, plaintext)
    _check(k, n)
    cdef Py_ssize_t mlen = PyBytes_GET_SIZE(m)
    out = PyBytes_FromStringAndSize(NULL, mlen + 16)
    _seal(_wptr(out), _ptr(m), mlen, k, n)
    return out


def box_seal_padded(key, nonce, data, padded_size):
    """``box_seal(key, nonce, pad(data, padded_size))``; output is ``padded_size + 16`` bytes.

    The padding is written straight into the output buffer and encrypted in place.
    """
    cdef Py_ssize_t size, n
    cdef bytes k = as_bytes(key)
    cdef bytes nn = as_bytes(nonce)
    cdef bytes d = as_bytes(data)
    if (
        k is None or nn is None or d is None
        or not as_ssize(padded_size, &size)
        or size > PY_SSIZE_T_MAX - 16
    ):
        return _py.box_seal_padded(key, nonce, data, padded_size)
    _check(k, nn)
    n = PyBytes_GET_SIZE(d)
    if n + 2 > size or n > 65533:
        raise CryptoError("message too large for padding")
    out = PyBytes_FromStringAndSize(NULL, size + 16)
    cdef unsigned char* p = _wptr(out) + 16
    p[0] = <unsigned char>(n >> 8)
    p[1] = <unsigned char>(n & 0xFF)
    memcpy(p + 2, _ptr(d), n)
    memset(p + 2 + n, 0x23, size - n - 2)
    _seal(_wptr(out), p, size, k, nn)
    return out


cdef int _open(unsigned char* out, bytes c, bytes key, bytes nonce) except -1:
    """Decrypt ``c`` into ``out`` (``len(c) - 16`` bytes); CryptoError when it fails."""
    cdef int rc
    cdef Py_ssize_t clen = PyBytes_GET_SIZE(c)
    cdef const unsigned char* cp = _ptr(c)
    cdef const unsigned char* np = _ptr(nonce)
    cdef const unsigned char* kp = _ptr(key)
    if clen >= _NOGIL_MIN:
        with nogil:
            rc = _box_open_easy_afternm(out, cp, clen, np, kp)
    else:
        rc = _box_open_easy_afternm(out, cp, clen, np, kp)
    if rc != 0:
        raise CryptoError("box failed to authenticate")
    return 0


def box_open(key, nonce, ciphertext):
    cdef bytes k = as_bytes(key)
    cdef bytes n = as_bytes(nonce)
    cdef bytes c = as_bytes(ciphertext)
    cdef unsigned char empty[1]
    if k is None or n is None or c is None:
        return _py.box_open(key, nonce, ciphertext)
    _check(k, n)
    cdef Py_ssize_t clen = PyBytes_GET_SIZE(c)
    if clen < 16:
        raise CryptoError("ciphertext shorter than its tag")
    if clen == 16:  # b"" is a shared object: never write into it
        _open(empty, c, k, n)
        return b""
    out = PyBytes_FromStringAndSize(NULL, clen - 16)
    _open(_wptr(out), c, k, n)
    return out


def box_open_padded(key, nonce, ciphertext):
    """Decrypt into one buffer and return the unpadded part of it."""
    cdef bytes k = as_bytes(key)
    cdef bytes n = as_bytes(nonce)
    cdef bytes c = as_bytes(ciphertext)
    cdef unsigned char* buf
    cdef Py_ssize_t clen, mlen, dlen
    if k is None or n is None or c is None:
        return _py.box_open_padded(key, nonce, ciphertext)
    _check(k, n)
    clen = PyBytes_GET_SIZE(c)
    if clen < 16:
        raise CryptoError("ciphertext shorter than its tag")
    mlen = clen - 16
    buf = <unsigned char*>PyMem_Malloc(mlen + 1)
    if buf == NULL:
        raise MemoryError()
    try:
        _open(buf, c, k, n)
        if mlen < 2:
            raise CryptoError("padded buffer shorter than its length prefix")
        dlen = (buf[0] << 8) | buf[1]
        if dlen > mlen - 2:
            raise CryptoError("pad length exceeds buffer")
        return PyBytes_FromStringAndSize(<char*>buf + 2, dlen)
    finally:
        PyMem_Free(buf)


cdef inline bint _ed25519(bytes pk, bytes sig, bytes msg):
    cdef Py_ssize_t mlen = PyBytes_GET_SIZE(msg)
    cdef int rc
    if PyBytes_GET_SIZE(pk) != 32 or PyBytes_GET_SIZE(sig) != ED25519_SIG:
        return False
    cdef const unsigned char* sp = _ptr(sig)
    cdef const unsigned char* mp = _ptr(msg)
    cdef const unsigned char* kp = _ptr(pk)
    with nogil:
        rc = _sign_verify_detached(sp, mp, mlen, kp)
    return rc == 0


def ed25519_verify(public, signature, message):
    cdef bytes pk = as_bytes(public)
    cdef bytes sig = as_bytes(signature)
    cdef bytes msg = as_bytes(message)
    if pk is None or sig is None or msg is None:
        return _py.ed25519_verify(public, signature, message)
    return _ed25519(pk, sig, msg)


cdef int _authenticator_nogil(
    const unsigned char* key, const unsigned char* nonce, const unsigned char* auth,
    const unsigned char* msg, unsigned long long mlen,
) noexcept nogil:
    """1 when ``auth`` opens with key/nonce to SHA-512(msg) (compared in constant time)."""
    cdef unsigned char digest[64]
    cdef unsigned char expected[64]
    if _box_open_easy_afternm(digest, auth, 80, nonce, key) != 0:
        return 0
    _hash_sha512(expected, msg, mlen)
    return _verify_64(digest, expected) == 0


def authenticator_verify(key, nonce, authenticator, message):
    """Check an 80-byte X25519 authenticator: ``box(key, nonce, SHA-512(message))``."""
    cdef bytes k = as_bytes(key)
    cdef bytes n = as_bytes(nonce)
    cdef bytes a = as_bytes(authenticator)
    cdef bytes m = as_bytes(message)
    cdef int ok
    if k is None or n is None or a is None or m is None:
        return _py.authenticator_verify(key, nonce, authenticator, message)
    if (
        PyBytes_GET_SIZE(k) != KEY_SIZE
        or PyBytes_GET_SIZE(n) != NONCE_SIZE
        or PyBytes_GET_SIZE(a) != X25519_AUTHENTICATOR
    ):
        return False
    cdef Py_ssize_t mlen = PyBytes_GET_SIZE(m)
    cdef const unsigned char* kp = _ptr(k)
    cdef const unsigned char* np = _ptr(n)
    cdef const unsigned char* ap = _ptr(a)
    cdef const unsigned char* mp = _ptr(m)
    with nogil:
        ok = _authenticator_nogil(kp, np, ap, mp, mlen)
    return ok == 1


cdef enum _Kind:
    _DONE = 0  # result already known (False, or computed by the pure twin)
    _ED25519 = 1
    _X25519 = 2


cdef struct _Request:
    int kind
    int result
    const unsigned char* key
    const unsigned char* auth
    const unsigned char* msg
    unsigned long long mlen
    const unsigned char* nonce


def verify_batch(requests):
    """Verify many authorizations in one call, with the GIL released for all of them.

    Each request is ``(key, auth, message, nonce)``: a 64-byte ``auth`` is an Ed25519
    signature and ``key`` the raw 32-byte public key; an 80-byte ``auth`` is an X25519
    authenticator, ``key`` the precomputed box key and ``nonce`` 24 bytes. Anything else
    (Ed448 included, which libsodium lacks) verifies as False: route it elsewhere.
    """
    cdef list items = list(requests)
    cdef Py_ssize_t count = len(items), i, alen
    cdef list keep = []  # the bytes objects the C array points into stay alive
    cdef _Request* reqs
    cdef _Request* r
    cdef bytes k, a, m, n
    if count == 0:
        return []
    reqs = <_Request*>PyMem_Malloc(count * sizeof(_Request))
    if reqs == NULL:
        raise MemoryError()
    try:
        for i in range(count):
            key, auth, message, nonce = items[i]
            r = &reqs[i]
            r.kind = _DONE
            r.result = 0
            k = as_bytes(key)
            a = as_bytes(auth)
            m = as_bytes(message)
            n = None if nonce is None else as_bytes(nonce)
            if k is None or a is None or m is None or (n is None and nonce is not None):
                r.result = _py.verify_batch([(key, auth, message, nonce)])[0]
                continue
            alen = PyBytes_GET_SIZE(a)
            if alen == ED25519_SIG:
                if PyBytes_GET_SIZE(k) != 32:
                    continue
                r.kind = _ED25519
            elif alen == X25519_AUTHENTICATOR and n is not None:
                if PyBytes_GET_SIZE(k) != KEY_SIZE or PyBytes_GET_SIZE(n) != NONCE_SIZE:
                    continue
                r.kind = _X25519
                r.nonce = _ptr(n)
                keep.append(n)
            else:
                continue
            r.key = _ptr(k)
            r.auth = _ptr(a)
            r.msg = _ptr(m)
            r.mlen = PyBytes_GET_SIZE(m)
            keep.append(k)
            keep.append(a)
            keep.append(m)
        with nogil:
            for i in range(count):
                r = &reqs[i]
                if r.kind == _ED25519:
                    r.result = _sign_verify_detached(r.auth, r.msg, r.mlen, r.key) == 0
                elif r.kind == _X25519:
                    r.result = _authenticator_nogil(r.key, r.nonce, r.auth, r.msg, r.mlen)
        return [reqs[i].result == 1 for i in range(count)]
    finally:
        PyMem_Free(reqs)


# --- v11+ block encryption: the secret-box chain (one step per block and direction) ------

CHAIN_KEY_SIZE = 32
cdef bytes _STEP_T1 = b"SimpleXSbChain\x01"  # HKDF expand inputs of one step, fixed
cdef bytes _STEP_T2 = b"SimpleXSbChain\x02"


cdef struct _HmacKey:
    # SHA-512 states after absorbing ``key ^ ipad`` and ``key ^ opad``: a key used for
    # several messages pays for its pads once.
    unsigned long long inner[_SHA512_STATE_WORDS]
    unsigned long long outer[_SHA512_STATE_WORDS]


cdef void _hmac_key(_HmacKey* hk, const unsigned char* key, size_t klen) noexcept nogil:
    """HMAC-SHA512 key setup for a key of at most 128 bytes (libsodium's minimal build
    has SHA-512 but no HMAC)."""
    cdef unsigned char pad[128]
    cdef size_t i
    memset(pad, 0x36, 128)
    for i in range(klen):
        pad[i] ^= key[i]
    _sha512_init(hk.inner)
    _sha512_update(hk.inner, pad, 128)
    for i in range(128):
        pad[i] ^= 0x36 ^ 0x5C
    _sha512_init(hk.outer)
    _sha512_update(hk.outer, pad, 128)


cdef void _hmac(
    const _HmacKey* hk, const unsigned char* m1, size_t l1, const unsigned char* m2, size_t l2,
    unsigned char* out,
) noexcept nogil:
    """HMAC-SHA512 of ``m1 || m2``."""
    cdef unsigned long long state[_SHA512_STATE_WORDS]
    cdef unsigned char inner[64]
    memcpy(state, hk.inner, sizeof(state))
    _sha512_update(state, m1, l1)
    if l2:
        _sha512_update(state, m2, l2)
    _sha512_final(state, inner)
    memcpy(state, hk.outer, sizeof(state))
    _sha512_update(state, inner, 64)
    _sha512_final(state, out)


cdef _HmacKey _EMPTY_SALT  # HKDF's empty salt: HMAC keyed with zeros
_hmac_key(&_EMPTY_SALT, NULL, 0)


cdef void _sbc_step(
    const unsigned char* ck, unsigned char* next_ck, unsigned char* sb_key, unsigned char* nonce,
    const unsigned char* t1_info, const unsigned char* t2_info,
) noexcept nogil:
    """``HKDF-SHA512(salt="", ikm=ck, info="SimpleXSbChain", 88)`` split 32/32/24."""
    cdef unsigned char prk[64]
    cdef unsigned char t1[64]
    cdef unsigned char t2[64]
    cdef _HmacKey expand
    _hmac(&_EMPTY_SALT, ck, 32, NULL, 0, prk)
    _hmac_key(&expand, prk, 64)
    _hmac(&expand, t1_info, 15, NULL, 0, t1)
    _hmac(&expand, t1, 64, t2_info, 15, t2)
    memcpy(next_ck, t1, 32)
    memcpy(sb_key, t1 + 32, 32)
    memcpy(nonce, t2, 24)


cdef inline int _check_chain_key(bytes ck) except -1:
    if PyBytes_GET_SIZE(ck) != 32:
        raise CryptoError("chain key must be 32 bytes")
    return 0


def sbc_step(chain_key):
    """One step of the block-encryption chain: ``(next chain key, sbKey, nonce)``."""
    cdef bytes ck = as_bytes(chain_key)
    if ck is None:
        return _py.sbc_step(chain_key)
    _check_chain_key(ck)
    next_ck = PyBytes_FromStringAndSize(NULL, 32)
    sb_key = PyBytes_FromStringAndSize(NULL, 32)
    nonce = PyBytes_FromStringAndSize(NULL, 24)
    _sbc_step(_ptr(ck), _wptr(next_ck), _wptr(sb_key), _wptr(nonce), _ptr(_STEP_T1), _ptr(_STEP_T2))
    return next_ck, sb_key, nonce


cdef bytes _chain_box_key(bytes ck, unsigned char* nonce):
    """Advance the chain: returns the next chain key; the block's precomputed box key
    ``HSalsa20(sbKey, 0^16)`` goes to ``nonce + 24`` and its nonce to ``nonce``."""
    next_ck = PyBytes_FromStringAndSize(NULL, 32)
    cdef unsigned char sb_key[32]
    _sbc_step(_ptr(ck), _wptr(next_ck), sb_key, nonce, _ptr(_STEP_T1), _ptr(_STEP_T2))
    _core_hsalsa20(nonce + 24, _ptr(_ZERO16), sb_key, NULL)
    return next_ck


def sbc_seal(chain_key, padded):
    """Advance the chain and encrypt one block plaintext with that step's key:
    ``(next chain key, tag(16) || ciphertext)``."""
    cdef bytes ck = as_bytes(chain_key)
    cdef bytes m = as_bytes(padded)
    cdef unsigned char nonce_key[_NONCE_KEY]
    cdef int rc
    if ck is None or m is None:
        return _py.sbc_seal(chain_key, padded)
    _check_chain_key(ck)
    next_ck = _chain_box_key(ck, nonce_key)
    cdef Py_ssize_t mlen = PyBytes_GET_SIZE(m)
    out = PyBytes_FromStringAndSize(NULL, mlen + 16)
    cdef unsigned char* op = _wptr(out)
    cdef const unsigned char* mp = _ptr(m)
    if mlen >= _NOGIL_MIN:
        with nogil:
            rc = _box_easy_afternm(op, mp, mlen, nonce_key, nonce_key + 24)
    else:
        rc = _box_easy_afternm(op, mp, mlen, nonce_key, nonce_key + 24)
    if rc != 0:
        raise CryptoError("Unexpected library error")
    return next_ck, out


def sbc_open(chain_key, block):
    """Advance the chain and decrypt one block with that step's key: ``(next chain key,
    plaintext)``, the plaintext None when the block does not authenticate (the chain
    advances all the same)."""
    cdef bytes ck = as_bytes(chain_key)
    cdef bytes c = as_bytes(block)
    cdef unsigned char nonce_key[_NONCE_KEY]
    cdef int rc
    if ck is None or c is None:
        return _py.sbc_open(chain_key, block)
    _check_chain_key(ck)
    next_ck = _chain_box_key(ck, nonce_key)
    cdef Py_ssize_t clen = PyBytes_GET_SIZE(c)
    if clen < 16:
        return next_ck, None
    if clen == 16:  # never write into the shared b""
        return next_ck, (b"" if _open_ok(c, nonce_key) else None)
    out = PyBytes_FromStringAndSize(NULL, clen - 16)
    cdef unsigned char* op = _wptr(out)
    cdef const unsigned char* cp = _ptr(c)
    if clen >= _NOGIL_MIN:
        with nogil:
            rc = _box_open_easy_afternm(op, cp, clen, nonce_key, nonce_key + 24)
    else:
        rc = _box_open_easy_afternm(op, cp, clen, nonce_key, nonce_key + 24)
    return next_ck, (out if rc == 0 else None)


cdef bint _open_ok(bytes c, const unsigned char* nonce_key):
    """Whether a 16-byte box (empty plaintext) authenticates."""
    cdef unsigned char empty[1]
    return _box_open_easy_afternm(empty, _ptr(c), 16, nonce_key, nonce_key + 24) == 0
