"""The proxy role's answers (the reference's processProxiedCmd): what a PRXY or PFWD that
the broker handed over (``delivery.ProxyRequest``) is answered, using the relay links.

- PRXY → PKEY: the relay's session id, its range capped to 8..17 (the client's version
  stays hidden from the relay; 8..20 for a server whose own top version is 20) and its certificate chain with the signed session key, from
  the link's handshake. A link below v8 or without a range in 8..17: PROXY BROKER TRANSPORT
  VERSION; without a signed key: TRANSPORT NO_AUTH; no link: the pool's error.
- PFWD → PRES: forwarded over the link whose session id is the PFWD's entity; none:
  PROXY NO_SESSION; a link below v8: TRANSPORT VERSION.

It counts the reference's statistics (pRelays*, pMsgFwds*: requests, successes,
errorsConnect, errorsCompat, errorsOther; the *Own groups for own_server_domains).
"""

from __future__ import annotations

from collections.abc import Callable

from ..protocol import commands as C
from ..protocol import errors as E
from ..protocol import versions as V
from ..protocol.handshake import PROXIED_VRANGE, proxied_vrange
from ..protocol.proxy import pkey_error, relay_vrange
from .relays import RelayError, RelayLink, RelayPool

# errors of the reference's temporaryClientError: counted as errorsConnect
_TEMPORARY = ("NETWORK", "TIMEOUT")


def _temporary(e: E.ErrorType) -> bool:
    d = e.detail
    return e.code == "PROXY" and d.code == "BROKER" and d.detail.code in _TEMPORARY  # type: ignore[union-attr]


class ProxyService:
    def __init__(self, pool: RelayPool, count: Callable[[str, int], None] | None = None,
                 server_max: int = V.SERVER_MAX_VERSION) -> None:
        self.pool = pool
        self._count = count or (lambda name, n=1: None)
        # PKEY's cap: 8..17 as before unless this server's own top version is 20 or more,
        # where it follows the reference's proxiedSMPRelayVersion (8..20 at 20).
        self.cap = proxied_vrange(server_max) if server_max >= V.NAMES else PROXIED_VRANGE

    def _inc(self, group: str, own: bool, field: str) -> None:
        self._count(f"{group}.{field}", 1)
        if own:
            self._count(f"{group}Own.{field}", 1)

    async def answer(self, corr_id: bytes, entity_id: bytes, command: C.Command) -> C.Response:
        """The answer to a PRXY or PFWD (never raises for a relay's failure)."""
        if isinstance(command, C.Prxy):
            return await self._prxy(command)
        if isinstance(command, C.Pfwd):
            return await self._pfwd(corr_id, entity_id, command)
        return C.Err(E.INTERNAL)

    async def _prxy(self, cmd: C.Prxy) -> C.Response:
        pool = self.pool
        found = pool.connected(cmd.server)
        try:  # connect() raises a persisted error without a new attempt
            link = found if isinstance(found, RelayLink) else await pool.connect(cmd.server)
        except RelayError as e:
            own = pool.is_own(cmd.server)
            self._inc("pRelays", own, "requests")
            self._inc("pRelays", own, "errorsConnect" if _temporary(e.error) else "errorsOther")
            return C.Err(e.error)
        self._inc("pRelays", link.own, "requests")
        error = pkey_error(link.version, link.server_vrange, link.cert_key is not None, self.cap)
        if error is not None:
            self._inc("pRelays", link.own, "errorsCompat")
            return C.Err(error)
        self._inc("pRelays", link.own, "successes")
        return C.Pkey(link.session_id, relay_vrange(link.server_vrange, self.cap), link.cert_key)  # type: ignore[arg-type]

    async def _pfwd(self, corr_id: bytes, entity_id: bytes, cmd: C.Pfwd) -> C.Response:
        link = self.pool.lookup(entity_id)
        if link is None:
            self._inc("pMsgFwds", False, "requests")
            self._inc("pMsgFwds", False, "errorsConnect")
            return C.Err(E.PROXY_NO_SESSION)
        self._inc("pMsgFwds", link.own, "requests")
        if link.version < V.SENDING_PROXY:
            self._inc("pMsgFwds", link.own, "errorsCompat")
            return C.Err(E.proxy_broker(E.BrokerError("TRANSPORT", E.TransportError("VERSION"))))
        try:
            enc = await self.pool.forward(link, corr_id, cmd)
        except RelayError as e:
            # the reference counts a relay's ERR (PROXY PROTOCOL) as a success of the proxy
            protocol = e.error.code == "PROXY" and e.error.detail.code == "PROTOCOL"  # type: ignore[union-attr]
            self._inc("pMsgFwds", link.own, "successes" if protocol else "errorsOther")
            return C.Err(e.error)
        self._inc("pMsgFwds", link.own, "successes")
        return C.Pres(enc)
