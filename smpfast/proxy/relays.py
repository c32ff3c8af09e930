"""The SMP proxy's outbound links: one SMP session per destination relay, shared by every
client of the proxy (the reference's proxy agent, ``SMPClientAgent``), driven over trio.

- ``await pool.connect(server)`` returns the relay's link, opening it when there is none
  (or the last one closed): TLS to the first reachable host, through SOCKS5 for ``.onion``
  hosts (or all, ``socks_mode = always``), then the SMP handshake with the v14 proxy flag
  (range 6..20; v10 at most towards relays below v14; no block encryption) and a client
  key, whose DH secret keys the RFWD/RRES layer. Concurrent callers for one relay wait for
  the same attempt (at most ``connect_timeout``, then PROXY BROKER TIMEOUT, as the
  reference's waiting callers). A failed attempt's error is kept ``persist_error_interval``
  seconds: callers in that window get it without a new attempt, as the reference.
- ``pool.lookup(session_id)`` finds a live link by its session id (PFWD's entity id).
- ``await pool.forward(link, corr_id, pfwd)`` sends the RFWD and returns the EncResponse
  for PRES.

Every failure is a ``RelayError`` whose ``error`` is what the reference's proxy answers
(``smpProxyError``): PROXY BROKER NETWORK (TCP, SOCKS, TLS, a wrong fingerprint, the
connect timeout), PROXY BROKER TIMEOUT (no answer in time), PROXY BROKER HOST (no host may
be tried), PROXY BROKER TRANSPORT <e> (the SMP handshake), PROXY PROTOCOL <e> (the relay
answered ERR), PROXY BROKER RESPONSE/UNEXPECTED, CRYPTO (RRES does not open).

Outbound limits (smpfast's, the reference has none): at most ``max_relays`` links and
``max_connecting`` attempts at once; a link is closed after ``ping_count`` unanswered
PINGs sent every ``ping_interval`` seconds (the reference: 600 s, 3).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import trio

from ..client import SMPClient
from ..client.errors import ClientClosed, ConnectError, HandshakeError, ResponseError
from ..client.types import BadResponse
from ..protocol import commands as C
from ..protocol import errors as E
from ..protocol import versions as V
from ..protocol.address import SMPServer, format_server
from ..protocol.commands import CertChainPubKey
from ..protocol.errors import ErrorType
from ..protocol.proxy import ProxyLayerError, forward_command, forwarded_response
from ..protocol.versions import VersionRange
from ..transport.socks import SocksProxy

log = logging.getLogger("smpfast.proxy")

#: The proxy's range towards relays (supportedProxyClientSMPRelayVRange).
PROXY_CLIENT_VRANGE = VersionRange(V.MIN_VERSION, V.MAX_VERSION)


class RelayError(Exception):
    """The relay could not be used; ``error`` is the proxy's answer to its client."""

    def __init__(self, error: ErrorType, detail: str = "") -> None:
        super().__init__(f"{error}{': ' + detail if detail else ''}")
        self.error = error
        self.detail = detail


def _broker(code: str, detail=None) -> ErrorType:
    return E.proxy_broker(E.BrokerError(code, detail))


NETWORK = _broker("NETWORK", E.NetworkError("FAILED"))
TIMEOUT = _broker("TIMEOUT")
HOST = _broker("HOST")

# The client library's handshake codes → the reference's TransportError.
_HANDSHAKE_CODES = {
    "VERSION": E.TransportError("VERSION"),
    "SESSION": E.TransportError("SESSION"),
    "HANDSHAKE PARSE": E.TransportError("HANDSHAKE", "PARSE"),
    "HANDSHAKE BAD_AUTH": E.TransportError("HANDSHAKE", "BAD_AUTH"),
    "HANDSHAKE IDENTITY": E.TransportError("HANDSHAKE", "IDENTITY"),
}


def connect_error(e: ConnectError) -> ErrorType:
    """smpProxyError of a failed connect."""
    if isinstance(e, HandshakeError):
        t = _HANDSHAKE_CODES.get(e.code)
        # A relay closing the connection mid-handshake is a network failure.
        return NETWORK if t is None else _broker("TRANSPORT", t)
    if e.code == "HOST":
        return HOST
    return NETWORK  # TCP, SOCKS, TLS, identity and the connect timeout (NETimeoutError)


@dataclass(frozen=True, slots=True)
class RelayPoolConfig:
    socks: SocksProxy | None = None  # [PROXY] socks_proxy
    socks_mode: str = "onion"  # [PROXY] socks_mode: always | onion
    host_mode: str = "public"  # [PROXY] host_mode: public | onion
    required_host_mode: bool = False  # [PROXY] required_host_mode
    own_server_domains: tuple[str, ...] = ()  # [PROXY] own_server_domains (statistics)
    connect_timeout: float = 45.0  # the reference's background tcpConnectTimeout
    request_timeout: float = 30.0  # the reference's background tcpTimeout
    persist_error_interval: float = 30.0
    max_relays: int = 10_000
    max_connecting: int = 256
    ping_interval: float = 600.0
    ping_count: int = 3
    vrange: VersionRange = PROXY_CLIENT_VRANGE


@dataclass(eq=False)
class RelayLink:
    """One live SMP session from the proxy to a relay."""

    server: SMPServer
    client: SMPClient
    own: bool  # one of the operator's own relays (own_server_domains)

    @property
    def session_id(self) -> bytes:
        return self.client.session_id

    @property
    def version(self) -> int:
        return self.client.version

    @property
    def server_vrange(self) -> VersionRange:
        return self.client.server_vrange

    @property
    def cert_key(self) -> CertChainPubKey | None:
        return self.client.server_cert_key

    @property
    def closed(self) -> bool:
        return self.client.closed


@dataclass(eq=False)
class _Attempt:
    done: trio.Event = field(default_factory=trio.Event)
    link: RelayLink | None = None
    error: RelayError | None = None
    until: float = 0.0  # how long the error persists (trio clock)


def is_own_server(server: SMPServer, domains: tuple[str, ...]) -> bool:
    """The reference's isOwnServer: the first host is one of, or under, the domains."""
    host = server.hosts[0]
    return any(host == d or host.endswith("." + d) for d in domains)


class RelayPool:
    """See the module docstring. Run it with ``async with RelayPool(config) as pool``."""

    def __init__(self, config: RelayPoolConfig = RelayPoolConfig()) -> None:
        self.config = config
        self._attempts: dict[SMPServer, _Attempt] = {}
        self._sessions: dict[bytes, RelayLink] = {}
        self._connecting = trio.CapacityLimiter(config.max_connecting)
        self._nursery: trio.Nursery | None = None
        self._nursery_cm = None
        # counters (the reference's pRelays / pMsgFwds groups are the broker's)
        self.connects = 0
        self.connect_errors = 0
        self.forwards = 0
        self.closed_links = 0

    async def __aenter__(self) -> RelayPool:
        self._nursery_cm = trio.open_nursery()
        self._nursery = await self._nursery_cm.__aenter__()
        return self

    async def __aexit__(self, *exc_info: object) -> bool:
        # The links' tasks never raise: the body's exception passes through as itself.
        await self.aclose()
        cm, self._nursery_cm = self._nursery_cm, None
        assert cm is not None
        await cm.__aexit__(None, None, None)
        return False

    async def aclose(self) -> None:
        links = list(self._sessions.values())
        self._sessions.clear()
        self._attempts.clear()
        for link in links:
            await link.client.aclose()
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()

    # ------------------------------------------------------------------ links

    @property
    def links(self) -> list[RelayLink]:
        return [link for link in self._sessions.values() if not link.closed]

    def is_own(self, server: SMPServer) -> bool:
        return is_own_server(server, self.config.own_server_domains)

    def lookup(self, session_id: bytes) -> RelayLink | None:
        link = self._sessions.get(session_id)
        return None if link is None or link.closed else link

    def connected(self, server: SMPServer) -> RelayLink | RelayError | None:
        """A live link to ``server``, its persisted error, or None (the reference's
        getConnectedSMPServerClient: None means connect)."""
        a = self._attempts.get(server)
        if a is None or not a.done.is_set():
            return None
        if a.link is not None and not a.link.closed:
            return a.link
        if a.error is not None and trio.current_time() < a.until:
            return a.error
        del self._attempts[server]
        return None

    async def connect(self, server: SMPServer) -> RelayLink:
        """The relay's link (see the module docstring); RelayError on failure."""
        while True:
            now = self.connected(server)
            if isinstance(now, RelayLink):
                return now
            if isinstance(now, RelayError):
                raise now
            a = self._attempts.get(server)
            if a is None:
                break
            # another caller is connecting: wait for it, as long as a connect may take
            with trio.move_on_after(self.config.connect_timeout):
                await a.done.wait()
            if not a.done.is_set():
                raise RelayError(TIMEOUT, f"waiting for the connection to {server}")
            if a.link is None and a.error is not None:
                raise a.error
        a = self._attempts[server] = _Attempt()
        try:
            a.link = await self._open(server)
        except RelayError as e:
            a.error = e
            a.until = trio.current_time() + self.config.persist_error_interval
            self.connect_errors += 1
            log.warning("error connecting to relay %s: %s", format_server(server), e)
            raise
        finally:
            a.done.set()
        return a.link

    async def _open(self, server: SMPServer) -> RelayLink:
        cfg = self.config
        if len(self.links) >= cfg.max_relays:
            raise RelayError(NETWORK, f"outbound limit of {cfg.max_relays} relay connections reached")
        assert self._nursery is not None, "use `async with RelayPool(...)`"
        async with self._connecting:
            try:
                client = await SMPClient.connect(
                    server,
                    min_version=cfg.vrange.min,
                    max_version=cfg.vrange.max,
                    timeout=cfg.connect_timeout,
                    socks=cfg.socks,
                    socks_mode=cfg.socks_mode,
                    host_mode=cfg.host_mode,
                    proxy_server=True,
                )
            except ConnectError as e:
                raise RelayError(connect_error(e), str(e)) from None
        client.events.close()  # a proxy subscribes nothing: discard whatever comes
        link = RelayLink(server, client, is_own_server(server, cfg.own_server_domains))
        await self._nursery.start(client.run)
        self._sessions[link.session_id] = link
        self._nursery.start_soon(self._watch, link)
        self.connects += 1
        log.info("connected to relay %s (v%d%s)", format_server(server), link.version,
                 " via SOCKS" if client.via_socks else "")
        return link

    async def _watch(self, link: RelayLink) -> None:
        """Ping the link; forget it when it closes (the next PRXY reconnects)."""
        cfg = self.config
        failures = 0
        with trio.CancelScope() as scope:
            async def closed() -> None:
                await link.client.wait_closed()
                scope.cancel()

            async with trio.open_nursery() as n:
                n.start_soon(closed)
                while True:
                    await trio.sleep(cfg.ping_interval)
                    try:
                        with trio.fail_after(cfg.request_timeout):
                            await link.client.ping()
                        failures = 0
                    except Exception:  # TooSlowError, ClientClosed, an unexpected answer
                        failures += 1
                        if failures >= cfg.ping_count:
                            log.warning("relay %s: %d PINGs unanswered, closing", format_server(link.server), failures)
                            await link.client.aclose()
        self.closed_links += 1
        if self._sessions.get(link.session_id) is link:
            del self._sessions[link.session_id]
        a = self._attempts.get(link.server)
        if a is not None and a.link is link:
            del self._attempts[link.server]
        log.info("disconnected from relay %s: %s", format_server(link.server), link.client.close_reason)

    # ------------------------------------------------------------------ forwarding

    async def forward(self, link: RelayLink, corr_id: bytes, pfwd: C.Pfwd) -> bytes:
        """RFWD → RRES for one client PFWD: the EncResponse to return in PRES."""
        key = link.client.session_box_key
        if key is None:  # the handshake gave no session key (below v7)
            raise RelayError(_broker("TRANSPORT", E.TransportError("NO_AUTH")))
        nonce, rfwd = forward_command(key, corr_id, pfwd)
        self.forwards += 1
        try:
            with trio.fail_after(self.config.request_timeout):
                reply = await link.client.request(b"", rfwd, corr_id=nonce)
        except trio.TooSlowError:
            raise RelayError(TIMEOUT, f"no RRES from {format_server(link.server)}") from None
        except ClientClosed as e:
            raise RelayError(NETWORK, str(e)) from None
        except ResponseError as e:
            raise RelayError(_broker("RESPONSE", str(e.error)), str(e)) from None
        if isinstance(reply, C.Rres):
            try:
                return forwarded_response(key, nonce, reply)
            except ProxyLayerError as e:
                raise RelayError(e.error, str(e)) from None
        if isinstance(reply, C.Err):
            raise RelayError(E.proxy_protocol(reply.error))
        if isinstance(reply, BadResponse):  # defensive: request() raises ResponseError for these
            raise RelayError(_broker("RESPONSE", str(reply.error)))
        raise RelayError(_broker("UNEXPECTED", reply.encode(link.version)[:32].decode("latin-1")))

