"""The four encryption layers of private message routing (SMP v8+), sans-IO.

Three parties: the sending client C, the proxy P (an SMP server C is connected to) and the
destination relay R (P holds one SMP session with it). Every layer is NaCl ``crypto_box``
with a precomputed key (``HSalsa20(X25519 secret)``), tag first:

- **s2r** (C → R, inside PFWD): ``box(cmd_key, nonce, pad(batch of one, 16226))`` where
  ``cmd_key`` comes from a fresh per-command X25519 key and R's session key (from PKEY),
  and ``nonce`` is the PFWD corrId (= the inner transmission's corrId).
- **p2r** (P → R, inside RFWD): ``box(session_key, nonce_p, FwdTransmission)``, no padding;
  ``session_key`` is X25519(P's handshake key, R's session key) — the secret block
  encryption would use, unused for blocks on proxy links — and ``nonce_p`` the RFWD corrId.
- **r2c** (R → C, inside PRES): ``box(cmd_key, reverse(nonce), pad(batch of one, 16226))``.
- **r2p** (R → P, inside RRES): ``box(session_key, reverse(nonce_p), FwdResponse)``.

``reverse`` byte-reverses the 24-byte nonce (the reference's ``reverseNonce``; its
protocol document's "corrId + 1" is not what the code does).

Failures raise ``CryptoError`` (bad key, tag, padding or length).
"""

from __future__ import annotations

import smpfast._core as core
from smpfast._core import CryptoError, FramingError

from .keys import dh_box_key

#: The padded size of a proxied inner batch (paddedProxiedTLength) ...
PROXIED_PADDED = 16226
#: ... and of its encryption (EncTransmission / EncResponse): tag + padded batch.
PROXIED_ENCRYPTED = PROXIED_PADDED + 16
NONCE_SIZE = 24


def reverse_nonce(nonce: bytes) -> bytes:
    """The response nonce of a request nonce (byte reversal)."""
    if len(nonce) != NONCE_SIZE:
        raise CryptoError(f"nonce of {len(nonce)} bytes, not {NONCE_SIZE}")
    return bytes(nonce[::-1])


def box_key(public_raw: bytes, private_raw: bytes) -> bytes:
    """The precomputed box key of an X25519 pair (both raw 32 bytes)."""
    return dh_box_key(bytes(public_raw), bytes(private_raw))


def _checked_padding(padded: bytes) -> bytes:
    # The padding must be valid, as the reference's cbDecrypt checks; the padded batch is
    # kept whole because batch decoding unpads it again, as it does a received block.
    try:
        core.unpad(padded)
    except FramingError as e:
        raise CryptoError(str(e)) from None
    return padded


# ---- s2r / r2c: the client's layer, padded to 16226

def seal_command(cmd_key: bytes, nonce: bytes, batch: bytes) -> bytes:
    """s2r: the 16242-byte EncTransmission of an unpadded batch-of-one (count, length, t)."""
    return core.box_seal_padded(cmd_key, nonce, batch, PROXIED_PADDED)


def open_command(cmd_key: bytes, nonce: bytes, enc: bytes) -> bytes:
    """Relay side of s2r: the padded batch (as a received block is)."""
    return _checked_padding(core.box_open(cmd_key, nonce, enc))


def seal_response(cmd_key: bytes, nonce: bytes, batch: bytes) -> bytes:
    """r2c: the EncResponse of an unpadded batch-of-one, with the reversed nonce."""
    return core.box_seal_padded(cmd_key, reverse_nonce(nonce), batch, PROXIED_PADDED)


def open_response(cmd_key: bytes, nonce: bytes, enc: bytes) -> bytes:
    """Client side of r2c: the padded response batch (``nonce`` is the request's)."""
    return _checked_padding(core.box_open(cmd_key, reverse_nonce(nonce), enc))


# ---- p2r / r2p: the proxy link's layer, unpadded

def seal_forward(session_key: bytes, nonce: bytes, fwd_transmission: bytes) -> bytes:
    """p2r: the RFWD payload (``nonce`` = the RFWD corrId)."""
    return core.box_seal(session_key, nonce, fwd_transmission)


def open_forward(session_key: bytes, nonce: bytes, enc: bytes) -> bytes:
    return core.box_open(session_key, nonce, enc)


def seal_forward_response(session_key: bytes, nonce: bytes, fwd_response: bytes) -> bytes:
    """r2p: the RRES payload, with the RFWD corrId reversed."""
    return core.box_seal(session_key, reverse_nonce(nonce), fwd_response)


def open_forward_response(session_key: bytes, nonce: bytes, enc: bytes) -> bytes:
    return core.box_open(session_key, reverse_nonce(nonce), enc)
