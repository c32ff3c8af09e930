# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Compiled twin of ``_framing_py``: padding, batches and transmission splitting.

Same functions, constants, results and errors as the pure twin (its docstring has the
layouts). Arguments of the usual types (bytes, bytearray, flat memoryviews, ints, bools,
lists/tuples of bytes) take the compiled path; anything else is handed to the pure twin
unchanged, so odd inputs get its exact results and errors.
"""

from cpython.bytes cimport (
    PyBytes_AS_STRING,
    PyBytes_CheckExact,
    PyBytes_FromStringAndSize,
    PyBytes_GET_SIZE,
)
from cpython.bool cimport PyBool_Check
from cpython.list cimport PyList_CheckExact
from cpython.long cimport PyLong_CheckExact
from cpython.tuple cimport PyTuple_CheckExact
from libc.string cimport memcmp, memcpy, memset

from ._bytes_like cimport as_bytes, as_ssize

from . import _framing_py as _py
from ._errors import FramingError

PAD_BYTE = 0x23  # '#'

T_OK = 0
T_BAD = 1
T_BAD_AUTH = 2
T_BAD_SESSION = 3

AUTH_LENGTHS = (0, 80, 64, 114)
SERVICE_SIG_LENGTH = 64

cdef unsigned char _PAD = PAD_BYTE
cdef object _T_OK = T_OK
cdef object _T_BAD_AUTH = T_BAD_AUTH
cdef object _T_BAD_SESSION = T_BAD_SESSION
# The result of an unparsable transmission; tuples are immutable, so one serves all.
cdef tuple _BAD = (T_BAD, b"", None, b"", b"", b"", b"")

# Sizes beyond this take the pure path in group_transmissions, so C sums cannot overflow.
cdef long long _MAX_GROUP_SIZE = 1LL << 40


cdef inline bytes _new_bytes(Py_ssize_t n):
    return PyBytes_FromStringAndSize(NULL, n)


cdef inline bytes _slice(const unsigned char* p, Py_ssize_t n):
    return PyBytes_FromStringAndSize(<const char*>p, n)


def pad(data, size):
    cdef Py_ssize_t n, sz
    cdef bytes b = as_bytes(data)
    if b is None or not as_ssize(size, &sz):
        return _py.pad(data, size)
    n = PyBytes_GET_SIZE(b)
    if n + 2 > sz or n > 65533:
        raise FramingError("message too large for padding")
    out = _new_bytes(sz)
    cdef unsigned char* p = <unsigned char*>PyBytes_AS_STRING(out)
    p[0] = <unsigned char>(n >> 8)
    p[1] = <unsigned char>(n & 0xFF)
    memcpy(p + 2, PyBytes_AS_STRING(b), n)
    memset(p + 2 + n, _PAD, sz - n - 2)
    return out


def unpad(block):
    cdef Py_ssize_t n, size
    cdef bytes b = as_bytes(block)
    if b is None:
        return _py.unpad(block)
    size = PyBytes_GET_SIZE(b)
    if size < 2:
        raise FramingError("padded buffer shorter than its length prefix")
    cdef const unsigned char* p = <const unsigned char*>PyBytes_AS_STRING(b)
    n = (p[0] << 8) | p[1]
    if n > size - 2:
        raise FramingError("pad length exceeds buffer")
    return _slice(p + 2, n)


def encode_batch(transmissions, size):
    """Batch ``transmissions`` and pad the batch to ``size`` bytes."""
    cdef Py_ssize_t count, i, tlen, total, sz
    if not (PyList_CheckExact(transmissions) or PyTuple_CheckExact(transmissions)):
        return _py.encode_batch(transmissions, size)
    if not as_ssize(size, &sz):
        return _py.encode_batch(transmissions, size)
    count = len(transmissions)
    if count == 0 or count > 255:
        raise FramingError("a batch holds 1 to 255 transmissions")
    seq = tuple(transmissions)  # a list could change under us while we write
    total = 1
    for i in range(count):
        t = seq[i]
        if not PyBytes_CheckExact(t):
            return _py.encode_batch(transmissions, size)
        tlen = PyBytes_GET_SIZE(t)
        if tlen > 65535:
            raise FramingError("transmission too large")
        total += 2 + tlen
    if total + 2 > sz or total > 65533:
        raise FramingError("message too large for padding")
    out = _new_bytes(sz)
    cdef unsigned char* p = <unsigned char*>PyBytes_AS_STRING(out)
    p[0] = <unsigned char>(total >> 8)
    p[1] = <unsigned char>(total & 0xFF)
    p[2] = <unsigned char>count
    cdef Py_ssize_t pos = 3
    for i in range(count):
        t = seq[i]
        tlen = PyBytes_GET_SIZE(t)
        p[pos] = <unsigned char>(tlen >> 8)
        p[pos + 1] = <unsigned char>(tlen & 0xFF)
        memcpy(p + pos + 2, PyBytes_AS_STRING(t), tlen)
        pos += 2 + tlen
    memset(p + pos, _PAD, sz - pos)
    return out


def encode_transmission(
    auth,
    corr_id,
    entity_id,
    command,
    session_id,
    implied_session,
    service_auth,
    service_sig=None,
):
    """Encode one transmission as it goes on the wire (without its batch length)."""
    cdef bytes a = as_bytes(auth)
    cdef bytes c = as_bytes(corr_id)
    cdef bytes e = as_bytes(entity_id)
    cdef bytes cmd = as_bytes(command)
    cdef bytes s = as_bytes(session_id)
    cdef bytes sig = None
    if service_sig is not None:
        sig = as_bytes(service_sig)
    if a is None or c is None or e is None or cmd is None or s is None or (
        sig is None and service_sig is not None
    ):
        return _py.encode_transmission(
            auth, corr_id, entity_id, command, session_id, implied_session, service_auth, service_sig
        )
    cdef Py_ssize_t alen = PyBytes_GET_SIZE(a)
    cdef Py_ssize_t clen = PyBytes_GET_SIZE(c)
    cdef Py_ssize_t elen = PyBytes_GET_SIZE(e)
    cdef Py_ssize_t slen = PyBytes_GET_SIZE(s)
    cdef Py_ssize_t cmdlen = PyBytes_GET_SIZE(cmd)
    if alen > 255 or clen > 255 or elen > 255 or slen > 255:
        raise FramingError("short string longer than 255 bytes")
    # Truth values are taken in the twin's order (an object's __bool__ may raise).
    cdef int slot = 0  # 0: no service-signature slot, 1: '0', 2: '1' + signature
    if service_auth and alen:
        if sig is None:
            slot = 1
        else:
            if PyBytes_GET_SIZE(sig) != SERVICE_SIG_LENGTH:
                raise FramingError("service signature must be 64 bytes")
            slot = 2
    cdef bint with_session = not implied_session
    cdef Py_ssize_t total = 1 + alen + 2 + clen + elen + cmdlen
    if slot == 1:
        total += 1
    elif slot == 2:
        total += 2 + SERVICE_SIG_LENGTH
    if with_session:
        total += 1 + slen
    out = _new_bytes(total)
    cdef unsigned char* p = <unsigned char*>PyBytes_AS_STRING(out)
    cdef Py_ssize_t pos = 0
    p[0] = <unsigned char>alen
    memcpy(p + 1, PyBytes_AS_STRING(a), alen)
    pos = 1 + alen
    if slot == 1:
        p[pos] = 0x30
        pos += 1
    elif slot == 2:
        p[pos] = 0x31
        p[pos + 1] = SERVICE_SIG_LENGTH
        memcpy(p + pos + 2, PyBytes_AS_STRING(sig), SERVICE_SIG_LENGTH)
        pos += 2 + SERVICE_SIG_LENGTH
    if with_session:
        p[pos] = <unsigned char>slen
        memcpy(p + pos + 1, PyBytes_AS_STRING(s), slen)
        pos += 1 + slen
    p[pos] = <unsigned char>clen
    memcpy(p + pos + 1, PyBytes_AS_STRING(c), clen)
    pos += 1 + clen
    p[pos] = <unsigned char>elen
    memcpy(p + pos + 1, PyBytes_AS_STRING(e), elen)
    pos += 1 + elen
    memcpy(p + pos, PyBytes_AS_STRING(cmd), cmdlen)
    return out


cdef object _split_one(
    const unsigned char* t, Py_ssize_t n, bytes prefix, bint implied_session, bint service_auth
):
    """One transmission of ``n`` bytes at ``t``: the twin's ``_split_one``."""
    cdef Py_ssize_t alen, pos, start, sess_pos = 0, sess_len = 0, corr_pos, corr_len
    cdef Py_ssize_t ent_pos, ent_len, sig_pos = -1
    cdef bint has_sess = False
    cdef unsigned char tag
    if n < 1:
        return _BAD
    alen = t[0]
    pos = 1 + alen
    if pos > n:
        return _BAD
    if service_auth and alen:
        if pos >= n:
            return _BAD
        tag = t[pos]
        pos += 1
        if tag == 0x31:  # '1'
            if pos >= n or t[pos] != SERVICE_SIG_LENGTH or pos + 1 + SERVICE_SIG_LENGTH > n:
                return _BAD
            sig_pos = pos + 1
            pos += 1 + SERVICE_SIG_LENGTH
        elif tag != 0x30:  # '0'
            return _BAD
    start = pos
    if not implied_session:
        if pos >= n or pos + 1 + t[pos] > n:
            return _BAD
        has_sess = True
        sess_pos = pos + 1
        sess_len = t[pos]
        pos += 1 + sess_len
    if pos >= n or pos + 1 + t[pos] > n:
        return _BAD
    corr_pos = pos + 1
    corr_len = t[pos]
    pos += 1 + corr_len
    if pos >= n or pos + 1 + t[pos] > n:
        return _BAD
    ent_pos = pos + 1
    ent_len = t[pos]
    pos += 1 + ent_len

    cdef Py_ssize_t plen = PyBytes_GET_SIZE(prefix)
    cdef const unsigned char* pp = <const unsigned char*>PyBytes_AS_STRING(prefix)
    if implied_session:
        t_for_auth = _new_bytes(plen + n - start)
        memcpy(PyBytes_AS_STRING(t_for_auth), pp, plen)
        memcpy(PyBytes_AS_STRING(t_for_auth) + plen, t + start, n - start)
    else:
        t_for_auth = _slice(t + start, n - start)

    if has_sess and (sess_len != plen - 1 or memcmp(t + sess_pos, pp + 1, sess_len) != 0):
        status = _T_BAD_SESSION
    elif alen != 0 and alen != 80 and alen != 64 and alen != 114:
        status = _T_BAD_AUTH
    else:
        status = _T_OK
    return (
        status,
        _slice(t + 1, alen),
        None if sig_pos < 0 else _slice(t + sig_pos, SERVICE_SIG_LENGTH),
        _slice(t + corr_pos, corr_len),
        _slice(t + ent_pos, ent_len),
        _slice(t + pos, n - pos),
        t_for_auth,
    )


cdef inline bint _plain_flag(object x):
    # bools and exact ints: their truth value cannot raise, so it may be taken once up front
    return PyBool_Check(x) or PyLong_CheckExact(x)


def split_block(block, session_id, implied_session, service_auth):
    """Unpad ``block``, parse its batch and split every transmission.

    Raises FramingError when the block itself is malformed (the reference answers one
    ``ERR BLOCK`` for the whole block); a malformed transmission only sets its status.
    """
    cdef bytes sess = as_bytes(session_id)
    if (
        sess is None
        or PyBytes_GET_SIZE(sess) > 255
        or not _plain_flag(implied_session)
        or not _plain_flag(service_auth)
    ):
        return _py.split_block(block, session_id, implied_session, service_auth)
    cdef bint implied = implied_session
    cdef bint service = service_auth
    cdef bytes b = block if PyBytes_CheckExact(block) else bytes(block)
    cdef Py_ssize_t size = PyBytes_GET_SIZE(b)
    cdef const unsigned char* p = <const unsigned char*>PyBytes_AS_STRING(b)
    if size < 2:
        raise FramingError("block shorter than its length prefix")
    cdef Py_ssize_t n = (p[0] << 8) | p[1]
    cdef Py_ssize_t end = 2 + n
    if end > size:
        raise FramingError("pad length exceeds block")
    if n < 1:
        raise FramingError("empty batch")
    cdef Py_ssize_t count = p[2]
    if count == 0:
        raise FramingError("batch count is zero")
    cdef Py_ssize_t slen = PyBytes_GET_SIZE(sess)
    cdef bytes prefix = _new_bytes(1 + slen)
    (<unsigned char*>PyBytes_AS_STRING(prefix))[0] = <unsigned char>slen
    memcpy(PyBytes_AS_STRING(prefix) + 1, PyBytes_AS_STRING(sess), slen)
    cdef Py_ssize_t pos = 3, tlen, i
    cdef list result = []
    for i in range(count):
        if pos + 2 > end:
            raise FramingError("truncated batch")
        tlen = (p[pos] << 8) | p[pos + 1]
        pos += 2
        if pos + tlen > end:
            raise FramingError("truncated transmission")
        result.append(_split_one(p + pos, tlen, prefix, implied, service))
        pos += tlen
    if pos != end:
        raise FramingError("trailing bytes after batch")
    return result


def group_transmissions(sizes, budget=16365, max_count=255):
    """Split transmissions of the given encoded ``sizes`` into consecutive blocks.

    Returns the number of transmissions in each block, in order; blocks are filled from the
    end, like the reference (see the twin's docstring).
    """
    cdef Py_ssize_t b, m, i, count, size
    cdef long long cost, used = 0, n = 0
    if not (PyList_CheckExact(sizes) or PyTuple_CheckExact(sizes)):
        return _py.group_transmissions(sizes, budget, max_count)
    if not as_ssize(budget, &b) or not as_ssize(max_count, &m):
        return _py.group_transmissions(sizes, budget, max_count)
    seq = tuple(sizes)
    count = len(seq)
    cdef list counts = []
    for i in range(count - 1, -1, -1):
        item = seq[i]
        if not PyLong_CheckExact(item) or not as_ssize(item, &size) or not (
            0 <= size <= _MAX_GROUP_SIZE
        ):
            return _py.group_transmissions(sizes, budget, max_count)
        cost = size + 2
        if cost > b:
            raise FramingError("transmission larger than a block")
        # used <= b always holds here, so b - used cannot overflow
        if cost <= b - used and n < m:
            used += cost
            n += 1
        else:
            counts.append(n)
            used = cost
            n = 1
    if n:
        counts.append(n)
    counts.reverse()
    return counts
