"""Command authorization: client-side signing/authenticators, server-side batch checks.

The authorized bytes (``t_for_auth``) are ``shortString(sessionId) || shortString(corrId)
|| shortString(entityId) || command``. Callers pass whatever bytes are authorized: in a
service session (v16+), NEW, SUB and NSUB are authorized twice (the reference's
authTransmission): the queue key covers ``cert_hash || t_for_auth`` (``service_authorized``;
``cert_hash`` is the raw SHA-256 of the service's identity certificate, binding the
authorization to the service against a substitution inside TLS) and the service session's
Ed25519 key signs ``t_for_auth`` alone (``service_signature``), sent in the service
signature slot. SUBS and NSUBS are signed by the service key alone (no second signature).

- 64 bytes: Ed25519 signature, 114 bytes: Ed448 signature;
- 80 bytes: X25519 authenticator ``box(X25519(queue key, session key), cbNonce(corrId),
  SHA-512(authorized))``.

Timing-safety (Server.hs dummyVerifyCmd): when the queue is missing or the key type does not match
the authorization, the verifier still runs one verification of the supplied kind against
the reference's dummy keys, then answers False. A missing key also costs the parse of a
stored key (``_as_auth_key``); the store lookup's share is ``Store.cover_miss``.
"""

from __future__ import annotations

import base64
import hashlib
from collections import OrderedDict
from typing import Iterable, NamedTuple, Sequence, Union

import smpfast._core as core
from smpfast._core import CryptoError

from .keys import (
    AUTH_ALGS,
    Alg,
    KeyFormatError,
    PrivateKey,
    PublicKey,
    decode_public_key,
    dh_box_key,
    ed448_verify,
)

ED25519_SIG_LEN = 64
ED448_SIG_LEN = 114
AUTHENTICATOR_LEN = 80
NONCE_LEN = 24

# Server.hs dummyKeyEd25519 / dummyKeyEd448 / dummyKeyX25519 (standard base64 SPKI).
DUMMY_KEY_ED25519 = decode_public_key(base64.b64decode("MCowBQYDK2VwAyEA139Oqs4QgpqbAmB0o7rZf6T19ryl7E65k4AYe0kE3Qs="))
DUMMY_KEY_ED448 = decode_public_key(
    base64.b64decode("MEMwBQYDK2VxAzoA6ibQc9XpkSLtwrf7PLvp81qW/etiumckVFImCMRdftcG/XopbOSaq9qyLhrgJWKOLyNrQPNVvpMA")
)
DUMMY_KEY_X25519 = decode_public_key(base64.b64decode("MCowBQYDK2VuAyEA4JGSMYht18H4mas/jHeBwfcM7jLwNYJNOAhi2/g4RXg="))


def cb_nonce(data: bytes) -> bytes:
    """``C.cbNonce``: the bytes right-padded with zeros, or truncated, to 24 bytes."""
    data = bytes(data)
    n = len(data)
    if n == NONCE_LEN:
        return data
    if n > NONCE_LEN:
        return data[:NONCE_LEN]
    return data + bytes(NONCE_LEN - n)


def t_for_auth(session_id: bytes, corr_id: bytes, entity_id: bytes, command: bytes) -> bytes:
    """``shortString(sessionId) || shortString(corrId) || shortString(entityId) || command``."""
    for f in (session_id, corr_id, entity_id):
        if len(f) > 255:
            raise CryptoError("short string longer than 255 bytes")
    return b"".join(
        (bytes((len(session_id),)), session_id, bytes((len(corr_id),)), corr_id,
         bytes((len(entity_id),)), entity_id, command)
    )


def sender_id_for(corr_id: bytes) -> bytes:
    """Client-chosen sender ID of NEW with link data (v >= 15): SHA3-384(corrId)[0:24]
    (Server.hs createQueue; the code uses SHA3-384 although a comment says SHA3-256)."""
    return hashlib.sha3_384(bytes(corr_id)).digest()[:24]


# ---------------------------------------------------------------- client side


def sign(private: PrivateKey, authorized: bytes) -> bytes:
    """Ed25519 (64 bytes) or Ed448 (114 bytes) signature of the authorized bytes."""
    return private.sign(authorized)


def authenticator(private: PrivateKey | bytes, server_session_key: bytes, corr_id: bytes, authorized: bytes) -> bytes:
    """80-byte X25519 authenticator: box of SHA-512(authorized) with the DH of the queue
    private key and the server's per-connection session key (raw 32 bytes)."""
    raw = private.raw if isinstance(private, PrivateKey) else bytes(private)
    if isinstance(private, PrivateKey) and private.alg is not Alg.X25519:
        raise CryptoError("authenticators need an X25519 key")
    key = dh_box_key(bytes(server_session_key), raw)
    return core.box_seal(key, cb_nonce(corr_id), hashlib.sha512(authorized).digest())


def authorize(private: PrivateKey, authorized: bytes, corr_id: bytes, server_session_key: bytes | None) -> bytes:
    """The authorization field for a queue key of any type. X25519 keys need the server
    session key (v >= 7 handshake)."""
    if private.alg is Alg.X25519:
        if server_session_key is None:
            raise CryptoError("X25519 authorization needs the server session key (v >= 7)")
        return authenticator(private, server_session_key, corr_id, authorized)
    return private.sign(authorized)


def service_authorized(cert_hash: bytes, authorized: bytes) -> bytes:
    """What the queue key authorizes in a service session: ``cert_hash || t_for_auth``."""
    return bytes(cert_hash) + authorized


def service_signature(service_private: PrivateKey | bytes, authorized: bytes) -> bytes:
    """The 64-byte Ed25519 service signature of ``t_for_auth`` (service session key)."""
    key = service_private if isinstance(service_private, PrivateKey) else PrivateKey(Alg.ED25519, bytes(service_private))
    if key.alg is not Alg.ED25519:
        raise CryptoError("service signatures are Ed25519")
    return key.sign(authorized)


# ---------------------------------------------------------------- server side

KeyLike = Union[PublicKey, bytes, None]


class AuthRequest(NamedTuple):
    """One authorization to check.

    ``key``: the stored key (PublicKey or SPKI DER), a list/tuple of keys (any may verify,
    e.g. the recipient keys of a queue), or None when there is no key (queue missing).
    ``entity_id`` only tags the dummy-key cache entry (see ``AuthVerifier``)."""

    key: KeyLike | Sequence[KeyLike]
    auth: bytes
    authorized: bytes
    corr_id: bytes
    entity_id: bytes = b""


class AuthVerifier:
    """Per-connection verifier of command authorizations.

    ``session_private`` is the server's per-connection X25519 session private key (None
    below v7: authenticators then never verify, as in the reference). X25519 box keys
    (``box_beforenm``, ~44 µs) are kept in a small LRU keyed by the queue public key. A
    low-order stored key gives the all-zero DH secret, as in the reference (``x25519_dh``).

    Timing: the dummy X25519 path caches its box key under the request's entity id (or the
    mismatching stored key), so a probe of a missing queue or wrong key type costs what a
    probe of an existing X25519 queue costs, first use and later uses alike.
    """

    __slots__ = ("session_private", "_cache", "_cache_size")

    def __init__(self, session_private: bytes | None, cache_size: int = 64) -> None:
        self.session_private = None if session_private is None else bytes(session_private)
        self._cache: OrderedDict[bytes | tuple, bytes] = OrderedDict()
        self._cache_size = cache_size

    def box_key(self, public: bytes, tag: bytes | None = None) -> bytes:
        """Precomputed box key of ``public`` and the session key, via the LRU."""
        ck: bytes | tuple = public if tag is None else ("dummy", tag)  # never equal to a raw key
        cache = self._cache
        key = cache.get(ck)
        if key is None:
            key = dh_box_key(public, self.session_private)
            cache[ck] = key
            if len(cache) > self._cache_size:
                cache.popitem(last=False)
        else:
            cache.move_to_end(ck)
        return key

    def verify(self, key: KeyLike | Sequence[KeyLike], auth: bytes, authorized: bytes, corr_id: bytes,
               entity_id: bytes = b"") -> bool:
        return self.verify_batch((AuthRequest(key, auth, authorized, corr_id, entity_id),))[0]

    def verify_batch(self, requests: Iterable[AuthRequest | tuple]) -> list[bool]:
        """One boolean per request; Ed25519 and X25519 checks go to the core in one call."""
        checks = self.prepare(requests)
        return self.finish(checks, core.verify_batch(checks.core_requests) if checks.core_requests else [])

    def prepare(self, requests: Iterable[AuthRequest | tuple]) -> "PreparedChecks":
        """The Python half of ``verify_batch``: keys parsed, box keys looked up, Ed448
        checked; what is left is one ``core.verify_batch(checks.core_requests)``, which
        may run on any thread (it releases the GIL), its results given to ``finish``."""
        core_reqs: list[tuple] = []
        core_owner: list[int] = []  # request index per core request, -1 for dummies
        results: list[bool] = []
        signatures = 0
        for i, req in enumerate(requests):
            key, auth, authorized, corr_id = req[0], bytes(req[1]), req[2], req[3]
            entity_id = req[4] if len(req) > 4 else b""
            results.append(False)
            keys = key if isinstance(key, (list, tuple)) else (key,)
            if not keys:
                keys = (None,)
            alen = len(auth)
            for k in keys:
                pub = _as_auth_key(k, alen)
                if alen == ED25519_SIG_LEN:
                    real = pub is not None and pub.alg is Alg.ED25519
                    core_reqs.append(((pub if real else DUMMY_KEY_ED25519).raw, auth, authorized, None))
                    core_owner.append(i if real else -1)
                    signatures += 1
                elif alen == AUTHENTICATOR_LEN:
                    if self.session_private is None:
                        continue  # no server auth key on this session: False, no work
                    real = pub is not None and pub.alg is Alg.X25519
                    if real:
                        bk = self.box_key(pub.raw)
                    else:
                        bk = self.box_key(DUMMY_KEY_X25519.raw, entity_id if pub is None else pub.raw)
                    core_reqs.append((bk, auth, authorized, cb_nonce(corr_id)))
                    core_owner.append(i if real else -1)
                elif alen == ED448_SIG_LEN:
                    real = pub is not None and pub.alg is Alg.ED448
                    ok = ed448_verify((pub if real else DUMMY_KEY_ED448).raw, auth, authorized)
                    if real and ok:
                        results[i] = True
                # any other length (including none) is False with no work, as in the reference
        return PreparedChecks(core_reqs, core_owner, results, signatures)

    @staticmethod
    def finish(checks: "PreparedChecks", core_results: Sequence[bool]) -> list[bool]:
        """One boolean per request of ``prepare``, given the core's results."""
        results = checks.results
        for owner, ok in zip(checks.core_owner, core_results):
            if ok and owner >= 0:
                results[owner] = True
        return results


class PreparedChecks(NamedTuple):
    """``AuthVerifier.prepare``'s output: the core requests, the request each one answers
    (-1: a dummy), the results so far, and how many core requests are Ed25519 signatures
    (~50 µs each; an X25519 authenticator costs ~2 µs)."""

    core_requests: list
    core_owner: list
    results: list
    signatures: int


# A stored key is SPKI DER that verification parses first; with no stored key the dummy
# key's DER of the authorization's kind is parsed instead, so that both cost the same.
_DUMMY_DER_BY_AUTH_LEN = {
    ED25519_SIG_LEN: DUMMY_KEY_ED25519.der,
    AUTHENTICATOR_LEN: DUMMY_KEY_X25519.der,
    ED448_SIG_LEN: DUMMY_KEY_ED448.der,
}


def _as_auth_key(key: KeyLike, auth_len: int) -> PublicKey | None:
    """Stored keys as PublicKey; an undecodable stored key counts as no key. No key:
    None, after parsing the dummy DER for ``auth_len`` (see above)."""
    if key is None:
        dummy = _DUMMY_DER_BY_AUTH_LEN.get(auth_len)
        if dummy is not None:
            decode_public_key(dummy, AUTH_ALGS)
        return None
    if isinstance(key, PublicKey):
        return key
    try:
        return decode_public_key(key, AUTH_ALGS)
    except KeyFormatError:
        return None
