# Shared by framing.pyx and sodium.pyx: which arguments take the compiled fast path.

from cpython.bytes cimport PyBytes_CheckExact, PyBytes_FromStringAndSize
from cpython.bytearray cimport PyByteArray_CheckExact, PyByteArray_AS_STRING, PyByteArray_GET_SIZE
from cpython.long cimport PyLong_Check, PyLong_AsSsize_t
from cpython.memoryview cimport PyMemoryView_Check


cdef inline object as_bytes(object x):
    """``x`` as bytes when it is bytes, a bytearray or a flat memoryview of unsigned bytes.

    For these the pure twins compute exactly what they compute for the bytes copy (same
    ``len``, same items, same concatenation), so the compiled path may use the copy. Anything
    else (bytes subclasses, lists of ints, str, other buffer formats...) gives None: callers
    then hand the original arguments to the pure twin, so odd inputs get its results and
    errors by construction.
    """
    if PyBytes_CheckExact(x):
        return x
    if PyByteArray_CheckExact(x):
        return PyBytes_FromStringAndSize(PyByteArray_AS_STRING(x), PyByteArray_GET_SIZE(x))
    if PyMemoryView_Check(x):
        try:
            flat = x.ndim == 1 and x.format == "B" and x.c_contiguous
        except ValueError:  # released: the twin raises its own error
            return None
        if flat:
            return x.tobytes()
    return None


cdef inline bint as_ssize(object x, Py_ssize_t* out) except -1:
    """Store ``x`` in ``out`` when it is an int that fits a Py_ssize_t; False otherwise."""
    if not PyLong_Check(x):
        return False
    try:
        out[0] = PyLong_AsSsize_t(x)
    except OverflowError:
        return False
    return True
