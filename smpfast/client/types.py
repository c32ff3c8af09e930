"""Values the client returns: queues, notifier credentials, events, unusable responses,
and the decryption helpers for MSG and NMSG."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple, Union

from ..crypto import message as cmsg
from ..crypto.keys import Alg, PrivateKey, dh_box_key, x25519_raw
from ..protocol.address import QueueMode
from ..protocol.commands import Msg, Nmsg, Response
from ..protocol.errors import ErrorType

AUTH_ALGS = {"ed25519": Alg.ED25519, "x25519": Alg.X25519, "ed448": Alg.ED448}


def auth_alg(name: str | Alg) -> Alg:
    """'ed25519' | 'x25519' | 'ed448' (or an Alg) → Alg; ValueError otherwise."""
    if isinstance(name, Alg):
        alg = name
    else:
        alg = AUTH_ALGS.get(str(name).lower())  # type: ignore[assignment]
    if alg not in AUTH_ALGS.values():
        raise ValueError(f"unsupported authorization key algorithm {name!r}")
    return alg


@dataclass(frozen=True, slots=True)
class BadResponse:
    """A server transmission the client could not accept (the reference client's
    response error): ``error`` is the client-side ErrorType, e.g. CMD SYNTAX (bad
    parameters), CMD UNKNOWN (unknown tag), BLOCK (unsplittable or undecryptable block),
    SESSION (v6 session id mismatch), CMD NO_ENTITY/HAS_AUTH (entity rule)."""

    error: ErrorType


Reply = Union[Response, BadResponse]


class Event(NamedTuple):
    """A server transmission that answers no pending request: deliveries and
    notifications with empty corrId (MSG, NMSG, END, DELD, ERR ...), and responses whose
    corrId is not (or no longer) pending. Unpacks as ``entity_id, message``."""

    entity_id: bytes
    message: Reply


@dataclass(slots=True)
class NotifierCreds:
    """A queue's notifier (NKEY → NID): ``notifier_key`` authorizes NSUB, ``box_key``
    decrypts NMSG metadata (``decrypt_nmsg``)."""

    notifier_id: bytes
    notifier_key: PrivateKey
    ntf_dh_key: PrivateKey = field(repr=False)  # our X25519 half of the NMSG encryption
    srv_ntf_dh_key: bytes = field(repr=False)  # the server's X25519 SPKI DER from NID
    box_key: bytes = field(repr=False)

    @classmethod
    def from_nid(cls, notifier_id: bytes, srv_dh_der: bytes, notifier_key: PrivateKey,
                 ntf_dh_key: PrivateKey) -> NotifierCreds:
        box = dh_box_key(x25519_raw(srv_dh_der), ntf_dh_key.raw)
        return cls(notifier_id, notifier_key, ntf_dh_key, srv_dh_der, box)


@dataclass(slots=True)
class RecipientQueue:
    """A queue created with NEW. ``rcv_auth_key`` authorizes recipient commands;
    ``box_key`` (from ``rcv_dh_key`` and ``srv_dh_key``) decrypts MSG bodies
    (``decrypt_msg``). ``queue_mode`` (v9+), ``link_id`` (v15+), ``service_id`` (v16+)
    are as IDS returned them; ``notifier`` is set by NEW with ntf (v17+) or
    ``enable_notifications``."""

    rcv_id: bytes
    snd_id: bytes
    rcv_auth_key: PrivateKey
    rcv_dh_key: PrivateKey = field(repr=False)
    srv_dh_key: bytes = field(repr=False)
    box_key: bytes = field(repr=False)
    queue_mode: QueueMode | None = None
    link_id: bytes | None = None
    service_id: bytes | None = None
    notifier: NotifierCreds | None = None


def decrypt_msg(queue: RecipientQueue | bytes, msg: Msg) -> cmsg.RcvMessage:
    """Decrypt a MSG body with the queue's box key (or a box key given directly):
    ``RcvMessage(ts, notification, body, quota)``. Raises CryptoError."""
    box = queue.box_key if isinstance(queue, RecipientQueue) else queue
    return cmsg.decrypt_msg(box, msg.msg_id, msg.body)


def decrypt_nmsg(creds: NotifierCreds | bytes, nmsg: Nmsg) -> cmsg.NtfMeta:
    """Decrypt NMSG metadata: ``NtfMeta(msg_id, ts)``. Raises CryptoError."""
    box = creds.box_key if isinstance(creds, NotifierCreds) else creds
    return cmsg.decrypt_ntf_meta(box, nmsg.nonce, nmsg.enc_meta)
