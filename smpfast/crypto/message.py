"""Server-to-recipient message encryption (MSG) and NMSG metadata.

Keys here are *precomputed box keys*: ``box_beforenm(client DH pub, server priv)`` =
``HSalsa20(X25519 secret, 0^16)``. ``precompute(secret)`` converts a raw X25519 secret
(what the reference's store log holds as ``rcvDhSecret``) into one.

- MSG body: ``box(rcvDhKey, nonce=msgId, pad(rcvMsgBody, 16106))`` = 16122 bytes, where
  ``rcvMsgBody = Int64 ts || 'T'/'F' || ' ' || body`` or ``"QUOTA " || Int64 ts``.
- NMSG: ``box(ntfKey, random 24-byte nonce, pad(shortString(msgId) || Int64 ts, 128))``
  = 144 bytes.
"""

from __future__ import annotations

import os
import struct
from typing import NamedTuple

import nacl.bindings as nb

import smpfast._core as core
from smpfast._core import CryptoError, FramingError

from .auth import cb_nonce
from .keys import Alg, PublicKey, decode_dh_key, x25519_dh

RCV_MSG_PADDED = 16106  # MaxRcvMessageLen 16104 + 2
ENC_RCV_MSG_LEN = RCV_MSG_PADDED + 16  # 16122
NTF_META_PADDED = 128
ENC_NTF_META_LEN = NTF_META_PADDED + 16  # 144
QUOTA_TAG = b"QUOTA"

_I64 = struct.Struct(">q")


class RcvMessage(NamedTuple):
    """A decrypted MSG body: a message, or the quota marker (``quota`` True, empty body)."""

    ts: int
    notification: bool
    body: bytes
    quota: bool = False


class NtfMeta(NamedTuple):
    msg_id: bytes
    ts: int


class QueueDhKeys(NamedTuple):
    """Result of the server's per-queue DH at NEW/NKEY: the public key to return (IDS/NID)
    as SPKI DER, the raw X25519 secret, and the precomputed box key."""

    server_public_der: bytes
    secret: bytes
    box_key: bytes


def precompute(secret: bytes) -> bytes:
    """Box key of a raw X25519 shared secret: ``HSalsa20(secret, 0^16)``."""
    return core.hsalsa20_key(bytes(secret))


def new_queue_dh(client_dh_key: PublicKey | bytes) -> QueueDhKeys:
    """Fresh server X25519 key pair for one queue (rcvDh at NEW, ntfDh at NKEY); only the
    secret (or its box key) needs storing. Like the reference (crypton), a low-order client
    key is not an error: it gives the all-zero secret."""
    pub = client_dh_key if isinstance(client_dh_key, PublicKey) else decode_dh_key(client_dh_key)
    if pub.alg is not Alg.X25519:
        raise CryptoError("queue DH key must be X25519")
    priv = os.urandom(32)
    secret = x25519_dh(priv, pub.raw)  # all zeros for a low-order key, as the reference
    server_pub = nb.crypto_scalarmult_base(priv)
    return QueueDhKeys(PublicKey(Alg.X25519, server_pub).der, secret, precompute(secret))


# ---------------------------------------------------------------- MSG


def encode_rcv_msg_body(ts: int, notification: bool, body: bytes) -> bytes:
    """``Int64 ts || 'T'/'F' || ' ' || body`` (Protocol.hs encodeRcvMsgBody)."""
    return _I64.pack(ts) + (b"T " if notification else b"F ") + bytes(body)


def encode_rcv_msg_quota(ts: int) -> bytes:
    """The quota marker: ``"QUOTA " || Int64 ts``."""
    return QUOTA_TAG + b" " + _I64.pack(ts)


def parse_rcv_msg_body(data: bytes) -> RcvMessage:
    """Client side (clientRcvMsgBodyP): the quota marker, else ts, flags (a Bool and any
    extension bytes up to the space), a space, and the rest as the body."""
    data = bytes(data)
    if data.startswith(b"QUOTA ") and len(data) >= 14:
        return RcvMessage(_I64.unpack_from(data, 6)[0], False, b"", True)
    if len(data) < 10:
        raise CryptoError("message body too short")
    ts = _I64.unpack_from(data, 0)[0]
    flag = data[8]
    if flag not in (0x54, 0x46):
        raise CryptoError("bad message flags")
    sp = data.find(b" ", 9)
    if sp < 0:
        raise CryptoError("no space after message flags")
    return RcvMessage(ts, flag == 0x54, data[sp + 1 :])


def encrypt_rcv_msg(box_key: bytes, msg_id: bytes, rcv_msg_body: bytes) -> bytes:
    """The 16122-byte encrypted MSG body; ``rcv_msg_body`` from ``encode_rcv_msg_*``."""
    return core.box_seal_padded(box_key, cb_nonce(msg_id), rcv_msg_body, RCV_MSG_PADDED)


def encrypt_msg(box_key: bytes, msg_id: bytes, ts: int, notification: bool, body: bytes) -> bytes:
    return encrypt_rcv_msg(box_key, msg_id, encode_rcv_msg_body(ts, notification, body))


def decrypt_rcv_msg_body(box_key: bytes, msg_id: bytes, enc_body: bytes) -> bytes:
    """Client side: the unpadded rcvMsgBody."""
    return core.box_open_padded(box_key, cb_nonce(msg_id), enc_body)


def decrypt_msg(box_key: bytes, msg_id: bytes, enc_body: bytes) -> RcvMessage:
    """Client side: decrypt and parse an MSG body."""
    return parse_rcv_msg_body(decrypt_rcv_msg_body(box_key, msg_id, enc_body))


# ---------------------------------------------------------------- NMSG


def encode_ntf_meta(msg_id: bytes, ts: int) -> bytes:
    if len(msg_id) > 255:
        raise CryptoError("msgId longer than 255 bytes")
    return bytes((len(msg_id),)) + bytes(msg_id) + _I64.pack(ts)


def parse_ntf_meta(data: bytes) -> NtfMeta:
    """``shortString(msgId) || Int64 ts``; trailing bytes are ignored (reference Tail)."""
    data = bytes(data)
    if not data or len(data) < 1 + data[0] + 8:
        raise CryptoError("notification metadata too short")
    n = data[0]
    return NtfMeta(data[1 : 1 + n], _I64.unpack_from(data, 1 + n)[0])


def encrypt_ntf_meta(box_key: bytes, msg_id: bytes, ts: int, nonce: bytes | None = None) -> tuple[bytes, bytes]:
    """``(nonce, 144-byte encrypted metadata)``; the nonce is random unless given."""
    nonce = os.urandom(24) if nonce is None else bytes(nonce)
    return nonce, core.box_seal_padded(box_key, nonce, encode_ntf_meta(msg_id, ts), NTF_META_PADDED)


def decrypt_ntf_meta(box_key: bytes, nonce: bytes, enc_meta: bytes) -> NtfMeta:
    try:
        return parse_ntf_meta(core.box_open_padded(box_key, bytes(nonce), enc_meta))
    except FramingError as e:  # defensive: the core maps these to CryptoError already
        raise CryptoError(str(e)) from None
