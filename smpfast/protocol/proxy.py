"""Proxied transmissions (private message routing, v8+), sans-IO, for all three parties.

- The sending client: ``relay_from_pkey`` checks PKEY and picks the proxied version;
  ``proxied_command`` builds the PFWD of one command for the relay; ``proxied_response``
  opens the PRES.
- The proxy: ``forward_command`` wraps a client's PFWD into the RFWD for the relay;
  ``forwarded_response`` unwraps the RRES into what PRES carries.
- The relay: ``open_forwarded`` opens an RFWD down to the decoded inner command (at the
  version it carries); ``seal_forwarded`` wraps the answer into the RRES.

The encryption layers are ``crypto.proxy``'s. Errors are ``ProxyLayerError`` carrying the
reference's error for that layer (see each function).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from cryptography import x509

from .. import _core as core
from ..crypto import proxy as cp
from ..crypto.auth import authorize, cb_nonce
from ..crypto.keys import Alg, PrivateKey, x25519_raw
from ..crypto.session_key import verify_session_key
from . import errors as E
from . import versions as V
from .commands import Command, FwdResponse, FwdTransmission, Pfwd, Pkey, Pres, Response, Rfwd, Rres
from .errors import ErrorType, ParseError
from .handshake import CLIENT_VRANGE, PROXIED_VRANGE
from .transmission import (
    ReceivedCommand,
    ReceivedResponse,
    decode_client_transmissions,
    decode_server_transmissions,
    encode_client_transmission,
    encode_server_transmission,
    t_for_auth,
)
from .versions import VersionRange

CORR_ID_LEN = 24


class ProxyLayerError(Exception):
    """A proxied layer failed; ``error`` is what the reference answers (or raises)."""

    def __init__(self, error: ErrorType, detail: str = "") -> None:
        super().__init__(f"{error}{': ' + detail if detail else ''}")
        self.error = error


def _batch_of_one(transmission: bytes) -> bytes:
    """The unpadded content of a batch holding one transmission."""
    if len(transmission) > 0xFFFF:
        raise ProxyLayerError(E.ErrorType("BLOCK"), "transmission too large")
    return b"\x01" + len(transmission).to_bytes(2, "big") + transmission


# ---------------------------------------------------------------- the sending client


@dataclass(frozen=True, slots=True)
class ProxiedRelay:
    """A relay session as a proxy's PKEY describes it."""

    session_id: bytes  # the proxy↔relay tls-unique: the entity id of PFWD
    version: int  # the client↔relay version of the inner transmissions
    server_key: bytes  # the relay's raw X25519 session key (signed by its TLS leaf)
    basic_auth: bytes | None = None  # the PRXY password, kept to ask again after NO_SESSION


def relay_from_pkey(
    pkey: Pkey,
    key_hash: bytes,
    client_vrange: VersionRange = CLIENT_VRANGE,
    basic_auth: bytes | None = None,
    verify_chain=None,
) -> ProxiedRelay:
    """Check a PKEY like the reference client (connectSMPProxiedRelay): a version in both
    ranges (else PROXY BROKER TRANSPORT VERSION), the chain proving ``key_hash`` and its
    leaf signing the session key (else PROXY BROKER TRANSPORT HANDSHAKE IDENTITY).
    ``verify_chain(chain, key_hash)`` raises for a chain that is not the relay's."""
    both = pkey.vrange.intersect(client_vrange)
    if both is None:
        raise ProxyLayerError(_transport("VERSION"), f"relay offers {pkey.vrange} through the proxy")
    if verify_chain is None:
        from ..transport.identity import verify_server_chain as verify_chain
    try:
        verify_chain(list(pkey.cert_key.chain), key_hash)
        leaf = x509.load_der_x509_certificate(pkey.cert_key.chain[0])
        key = verify_session_key(pkey.cert_key.signed_key, leaf)
    except Exception as e:
        raise ProxyLayerError(_transport("HANDSHAKE", "IDENTITY"), str(e)) from None
    return ProxiedRelay(pkey.session_id, both.max, key, basic_auth)


def _transport(code: str, handshake: str | None = None) -> ErrorType:
    return E.proxy_broker(E.BrokerError("TRANSPORT", E.TransportError(code, handshake)))


@dataclass(frozen=True, slots=True)
class ProxiedCommand:
    """A PFWD ready to send (its corrId is ``nonce``) and what opens its answer."""

    pfwd: Pfwd
    nonce: bytes
    cmd_key: bytes  # box key of the per-command X25519 key with the relay's session key


def proxied_command(
    relay: ProxiedRelay,
    entity_id: bytes,
    command: Command | bytes,
    key: PrivateKey | None = None,
    *,
    cmd_private: bytes | None = None,
    nonce: bytes | None = None,
) -> ProxiedCommand:
    """The PFWD carrying ``command`` for ``entity_id`` at the relay, authorized by ``key``
    for the relay session (its session id; X25519 authenticators with the relay's session
    key), encrypted with a fresh per-command key (``cmd_private``, raw, random unless
    given). ``nonce`` (random unless given) is both the PFWD's and the inner corrId."""
    v = relay.version
    nonce = os.urandom(CORR_ID_LEN) if nonce is None else bytes(nonce)
    cmd_private = os.urandom(32) if cmd_private is None else bytes(cmd_private)
    cmd = command if isinstance(command, bytes) else command.encode(v)
    auth = b""
    if key is not None:
        auth = authorize(key, t_for_auth(relay.session_id, nonce, entity_id, cmd), nonce, relay.server_key)
    inner = encode_client_transmission(v, relay.session_id, nonce, entity_id, cmd, auth)
    cmd_key = cp.box_key(relay.server_key, cmd_private)
    enc = cp.seal_command(cmd_key, nonce, _batch_of_one(inner))
    public = PrivateKey(Alg.X25519, cmd_private).public.der
    return ProxiedCommand(Pfwd(v, public, enc), nonce, cmd_key)


def proxied_response(relay: ProxiedRelay, sent: ProxiedCommand, pres: Pres) -> ReceivedResponse:
    """The relay's answer inside a PRES: CryptoError when it does not open; a batch of
    other than one transmission raises ProxyLayerError(BLOCK), as the reference client's
    TEBadBlock. An ``ERR`` is returned as the response, as any other."""
    padded = cp.open_response(sent.cmd_key, sent.nonce, pres.enc_response)
    received = decode_client_transmissions(padded, relay.version, relay.session_id)
    if len(received) != 1:
        raise ProxyLayerError(E.BLOCK, f"{len(received)} transmissions in a proxied response")
    return received[0]


# ---------------------------------------------------------------- the proxy


def forward_command(session_key: bytes, pfwd_corr_id: bytes, pfwd: Pfwd, nonce: bytes | None = None) -> tuple[bytes, Rfwd]:
    """(RFWD corrId, RFWD) forwarding a client's PFWD over the proxy link;
    ``session_key`` is the link's box key (``session_box_key`` of its ClientSession)."""
    nonce = os.urandom(CORR_ID_LEN) if nonce is None else bytes(nonce)
    fwd = FwdTransmission(pfwd_corr_id, pfwd.version, pfwd.dh_key, pfwd.enc_transmission)
    return nonce, Rfwd(cp.seal_forward(session_key, nonce, fwd.encode()))


def forwarded_response(session_key: bytes, nonce: bytes, rres: Rres) -> bytes:
    """The client's EncResponse from the relay's RRES (to return in PRES). Raises
    ProxyLayerError: CRYPTO when it does not open (the reference's PCECryptoError),
    PROXY BROKER RESPONSE BLOCK when its content does not parse."""
    try:
        plain = cp.open_forward_response(session_key, nonce, rres.enc_response)
    except core.CryptoError as e:
        raise ProxyLayerError(E.CRYPTO, str(e)) from None
    try:
        return FwdResponse.parse(plain).enc_response
    except ParseError as e:
        raise ProxyLayerError(E.proxy_broker(E.BrokerError("RESPONSE", "BLOCK")), str(e)) from None


# ---------------------------------------------------------------- the relay


@dataclass(slots=True)
class Forwarded:
    """An RFWD opened by the relay: the inner command to execute at ``version``."""

    rfwd_corr_id: bytes  # the proxy's nonce
    corr_id: bytes  # the client's nonce (the inner transmission's corrId)
    version: int
    cmd_key: bytes  # box key between the relay's session key and the client's command key
    command: ReceivedCommand


def open_forwarded(
    session_key: bytes | None,
    server_session_private: bytes | None,
    session_id: bytes,
    rfwd_corr_id: bytes,
    rfwd: Rfwd,
) -> Forwarded:
    """The relay's side (processForwardedCommand up to the command): ``session_key`` is the
    box key of the proxy's handshake key with the relay's session key (None when the proxy
    sent no key: PROXY BROKER TRANSPORT NO_AUTH, as ``server_session_private`` None).
    Raises ProxyLayerError: CRYPTO (a layer does not open), CMD SYNTAX (bad
    FwdTransmission), BLOCK (more than one inner transmission). The inner transmission's
    own errors (bad framing, syntax, credentials) are in the returned ``command``."""
    if session_key is None or server_session_private is None:
        raise ProxyLayerError(E.proxy_broker(E.BrokerError("TRANSPORT", E.TransportError("NO_AUTH"))))
    try:
        plain = cp.open_forward(session_key, cb_nonce(rfwd_corr_id), rfwd.enc_transmission)
    except core.CryptoError as e:
        raise ProxyLayerError(E.CRYPTO, str(e)) from None
    try:
        fwd = FwdTransmission.parse(plain)
    except ParseError as e:
        raise ProxyLayerError(E.CMD_SYNTAX, str(e)) from None
    try:
        cmd_key = cp.box_key(x25519_raw(fwd.dh_key), server_session_private)
        padded = cp.open_command(cmd_key, cb_nonce(fwd.corr_id), fwd.enc_transmission)
    except core.CryptoError as e:
        raise ProxyLayerError(E.CRYPTO, str(e)) from None
    received = decode_server_transmissions(padded, fwd.version, session_id)
    if len(received) != 1:
        raise ProxyLayerError(E.BLOCK, f"{len(received)} forwarded transmissions")
    return Forwarded(rfwd_corr_id, fwd.corr_id, fwd.version, cmd_key, received[0])


def seal_forwarded(session_key: bytes, session_id: bytes, fwd: Forwarded, corr_id: bytes,
                   entity_id: bytes, response: Response) -> Rres:
    """The RRES answering ``fwd`` with ``response`` (encoded at the forwarded version, for
    the relay session). ProxyLayerError(BLOCK) when it does not fit, as the reference."""
    t = encode_server_transmission(fwd.version, session_id, corr_id, entity_id, response.encode(fwd.version))
    try:
        r2c = cp.seal_response(fwd.cmd_key, cb_nonce(fwd.corr_id), _batch_of_one(t))
    except core.CryptoError as e:
        raise ProxyLayerError(E.BLOCK, str(e)) from None
    fr = FwdResponse(fwd.corr_id, r2c).encode()
    return Rres(cp.seal_forward_response(session_key, cb_nonce(fwd.rfwd_corr_id), fr))


def relay_vrange(server_vrange: VersionRange, cap: VersionRange = PROXIED_VRANGE) -> VersionRange | None:
    """The range a proxy returns in PKEY: the relay's range capped to ``cap`` (8..17 for a
    proxy whose own top is 18, hiding the client's version from the relay; 8..20 at 20:
    handshake.proxied_vrange), or None (PROXY BROKER TRANSPORT VERSION)."""
    return server_vrange.intersect(cap)


def pkey_error(version: int, server_vrange: VersionRange, has_key: bool,
               cap: VersionRange = PROXIED_VRANGE) -> ErrorType | None:
    """Why a connected relay session cannot be returned in PKEY (the reference's
    proxyResp): the link's version below 8 or no range in ``cap`` → TRANSPORT VERSION; no
    signed session key → TRANSPORT NO_AUTH; None when it can."""
    if relay_vrange(server_vrange, cap) is None or version < V.SENDING_PROXY:
        return _transport("VERSION")
    if not has_key:
        return _transport("NO_AUTH")
    return None


__all__ = (
    "CORR_ID_LEN", "Forwarded", "ProxiedCommand", "ProxiedRelay", "ProxyLayerError",
    "forward_command", "forwarded_response", "open_forwarded", "pkey_error", "proxied_command",
    "proxied_response", "relay_from_pkey", "relay_vrange", "seal_forwarded",
)
