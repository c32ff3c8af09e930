"""SMP relay protocol versions (the numbers the handshake negotiates).

There is no version 13: the reference went from 12 to 14 and gates nothing on 13.
Versions 19 and 20 are those of simplexmq 7.x (docs/protocol-v19-v20.md).
"""

from __future__ import annotations

MIN_VERSION = 6
SUB_MODE = 6
AUTH_CMDS = 7  # server hello carries a signed session key; session id implied; X25519 auth
SENDING_PROXY = 8  # PRXY/PFWD/RFWD; SEND body limit 16064
SND_AUTH_KEY = 9  # SKEY; NEW/IDS carry sndSecure
DELETED_EVENT = 10  # DELD (END below)
ENCRYPTED_BLOCK = 11  # block encryption; SEND body limit 16048
BLOCKED_ENTITY = 12  # ERR BLOCKED (ERR AUTH below)
PROXY_SERVER_HANDSHAKE = 14  # client hello: proxyServer flag
SHORT_LINKS = 15  # NEW QueueReqData, IDS queue mode + link id, LSET/LKEY/LGET/LDEL
SERVICE_CERTS = 16  # service signatures, SOK, IDS serviceId
NEW_NTF_CREDS = 17  # NEW/IDS notifier credentials
CLIENT_NOTICES = 18  # ERR BLOCKED notice
RCV_SERVICE = 19  # SUBS/NSUBS carry count + IdsHash, SOKS/ENDS the hash; messaging services
NAMES = 20  # RSLV/RNAME name resolution, ERR NAME; proxied range pinned to 20
MAX_VERSION = 20  # the highest version the codecs speak
# The highest version all of whose features this server implements: what it announces, the
# range of the reference's current servers (simplexmq 7.x).
SERVER_MAX_VERSION = 20

ALL_VERSIONS = tuple(v for v in range(MIN_VERSION, MAX_VERSION + 1) if v != 13)

BLOCK_SIZE = 16384
ENCRYPTED_BLOCK_PAD = BLOCK_SIZE - 16  # plaintext padded to 16368 inside block encryption
BATCH_BUDGET = BLOCK_SIZE - 19  # pad length + count + block-encryption tag
MAX_BATCH = 255
SERVICE_SIG_LENGTH = 64


def max_message_length(version: int) -> int:
    """Largest SEND body the reference accepts at ``version``."""
    if version >= ENCRYPTED_BLOCK:
        return 16048
    if version >= SENDING_PROXY:
        return 16064
    return 16088


def implied_session(version: int) -> bool:
    """From v7 the session id is not sent in transmissions, but it is still authorized."""
    return version >= AUTH_CMDS


def service_auth(version: int) -> bool:
    """From v16 a non-empty authorization is followed by a Maybe service signature."""
    return version >= SERVICE_CERTS


def service_subs_hash(version: int) -> bool:
    """From v19 SUBS/NSUBS carry a count and IdsHash, and SOKS/ENDS the hash after the count."""
    return version >= RCV_SERVICE


def proxied_max_version(server_max: int) -> int:
    """The top of the range a proxy returns in PKEY (the reference's proxiedSMPRelayVersion)
    for a server whose current version is ``server_max``: one below it, so that relays
    cannot tell clients' versions apart, except from v20, where forwarded RSLV needs 20
    itself (6.5.5: 18 -> 17; 7.0.0.0-.2: 19 -> 18; 7.0.0.3: 20 -> 20)."""
    return server_max if server_max >= NAMES else server_max - 1


class VersionRange:
    """An inclusive range ``min..max`` of versions; encoded as two Word16."""

    __slots__ = ("min", "max")

    def __init__(self, min_version: int, max_version: int) -> None:
        if min_version > max_version:
            raise ValueError("version range with min > max")
        self.min = min_version
        self.max = max_version

    def __contains__(self, version: int) -> bool:
        return self.min <= version <= self.max

    def __eq__(self, other: object) -> bool:
        return isinstance(other, VersionRange) and (self.min, self.max) == (other.min, other.max)

    def __hash__(self) -> int:
        return hash((self.min, self.max))

    def __repr__(self) -> str:
        return f"VersionRange({self.min}, {self.max})"

    def intersect(self, other: "VersionRange") -> "VersionRange | None":
        lo, hi = max(self.min, other.min), min(self.max, other.max)
        return VersionRange(lo, hi) if lo <= hi else None
