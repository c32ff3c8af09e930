"""The per-byte and per-signature work of smpfast, compiled with Cython.

Every public function exists twice with the same signature: in the Cython modules
``framing`` and ``sodium`` and in their pure-Python twins ``_framing_py`` and
``_sodium_py``. This package exports the compiled ones when both extensions import and
``SMPFAST_PURE`` is not set to a true value; otherwise the twins, with one warning when
the extensions are missing. ``COMPILED`` says which is in use.
"""

from __future__ import annotations

import os
import warnings

from . import _framing_py, _sodium_py
from ._errors import CryptoError, FramingError

FRAMING_API = (
    "pad", "unpad", "encode_batch", "encode_transmission", "split_block", "group_transmissions",
)
SODIUM_API = (
    "hsalsa20_key", "x25519", "box_beforenm", "box_seal", "box_seal_padded", "box_open",
    "box_open_padded", "ed25519_verify", "authenticator_verify", "verify_batch",
    "sbc_step", "sbc_seal", "sbc_open",
)
STATUS_API = ("T_OK", "T_BAD", "T_BAD_AUTH", "T_BAD_SESSION")


def _want_pure() -> bool:
    return os.environ.get("SMPFAST_PURE", "").strip().lower() not in ("", "0", "false", "no")


def _load_compiled():
    try:
        from . import framing, sodium  # type: ignore[attr-defined]
    except ImportError as exc:
        warnings.warn(
            f"smpfast: Cython core not available ({exc}); using the pure-Python core",
            RuntimeWarning,
            stacklevel=3,
        )
        return None
    return framing, sodium


_compiled = None if _want_pure() else _load_compiled()
COMPILED: bool = _compiled is not None
_framing, _sodium = _compiled if _compiled is not None else (_framing_py, _sodium_py)

for _name in FRAMING_API + STATUS_API:
    globals()[_name] = getattr(_framing, _name)
for _name in SODIUM_API:
    globals()[_name] = getattr(_sodium, _name)

PURE = {name: getattr(_framing_py, name) for name in FRAMING_API}
PURE.update({name: getattr(_sodium_py, name) for name in SODIUM_API})

__all__ = ["COMPILED", "PURE", "CryptoError", "FramingError", *FRAMING_API, *SODIUM_API, *STATUS_API]
