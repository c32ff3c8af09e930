"""The HTTP client of a names server's resolver (SMP v20, docs/protocol-v19-v20.md §5).

``GET <endpoint>/resolve/<name>`` answers a name's record as JSON (404/400: not registered);
``GET <endpoint>/health`` is probed once at start-up. Built on httpx (its ``AsyncClient``
runs on trio through anyio), with the reference's limits:

- one pooled client keeping up to 10 connections alive, redirects never followed;
- ``timeout`` both as the HTTP timeout (connect, each read and write, waiting for a pooled
  connection: an expiry is a transport failure) and as the limit on the whole resolution
  (``RESOLVER timeout``), whichever fires first;
- at most ``max_response_bytes`` of body read (one more byte means ``response too large``);
- ``Authorization`` sent only when configured; ``Accept-Encoding: identity`` so that the
  size limit is the size on the wire (nothing is decompressed);
- the environment's proxy, certificate and netrc settings are not used (``trust_env``
  off): the endpoint is exactly the configured one.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import httpx
import trio

from ..protocol import errors as E
from ..protocol.encoding import ParseError
from ..protocol.names import (
    DETAIL_INTERNAL,
    DETAIL_INVALID,
    DETAIL_TIMEOUT,
    DETAIL_TOO_LARGE,
    DETAIL_TRANSPORT,
    HEALTH_PATH,
    NameRecord,
    SimplexDomain,
    http_status_detail,
    resolve_path,
)
from .names import Resolution

log = logging.getLogger(__name__)

KEEPALIVE_CONNECTIONS = 10  # the reference's managerConnCount


@dataclass(frozen=True)
class ResolverSettings:
    endpoint: str  # absolute http(s) URL without a trailing "/", maybe with a path prefix
    timeout: float  # seconds
    max_response_bytes: int
    authorization: str | None = field(default=None, repr=False)  # the header's value; a secret


class _Failure(Exception):
    """A resolver request that failed: ``detail`` is the RESOLVER text, or None for NOT_FOUND."""

    def __init__(self, detail: str | None, status: int | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.status = status


class HttpResolver:
    """Resolves names for every connection of the server (one pooled HTTP client)."""

    def __init__(self, settings: ResolverSettings, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.settings = settings
        headers = {"Accept": "application/json", "Accept-Encoding": "identity"}
        if settings.authorization is not None:
            headers["Authorization"] = settings.authorization
        self._client = httpx.AsyncClient(
            headers=headers,
            timeout=httpx.Timeout(settings.timeout),
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=KEEPALIVE_CONNECTIONS),
            follow_redirects=False,
            trust_env=False,
            transport=transport,
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def resolve(self, domain: SimplexDomain) -> Resolution:
        """The record of ``domain``, or the NAME error to answer (never raises, except
        cancellation)."""
        try:
            with trio.move_on_after(self.settings.timeout) as scope:
                body = await self._get(resolve_path(domain))
            if scope.cancelled_caught:
                return E.NameResolutionError("RESOLVER", DETAIL_TIMEOUT)
        except _Failure as f:
            if f.detail is None:
                return E.NameResolutionError("NOT_FOUND")
            return E.NameResolutionError("RESOLVER", f.detail)
        except Exception:
            log.exception("[NAMES] resolver request failed")
            return E.NameResolutionError("RESOLVER", DETAIL_INTERNAL)
        try:
            return NameRecord.from_json(body)
        except ParseError:
            return E.NameResolutionError("RESOLVER", DETAIL_INVALID)

    async def probe(self) -> str | None:
        """GET /health once, bounded by the timeout: None when it answers below 400, else
        what went wrong (for the log)."""
        try:
            with trio.move_on_after(self.settings.timeout) as scope:
                await self._get(HEALTH_PATH)
            if scope.cancelled_caught:
                return DETAIL_TIMEOUT
        except _Failure as f:
            return f.detail or f"HTTP {f.status}"
        except Exception as e:  # a probe never stops the server
            return f"{type(e).__name__}: {e}"
        return None

    async def _get(self, path: str) -> bytes:
        """The body of a status below 400, at most max_response_bytes; _Failure otherwise."""
        limit = self.settings.max_response_bytes
        try:
            async with self._client.stream("GET", self.settings.endpoint + path) as response:
                if response.status_code >= 400:
                    raise _Failure(http_status_detail(response.status_code), response.status_code)
                body = bytearray()
                async for chunk in response.aiter_raw():
                    body += chunk
                    if len(body) > limit:
                        raise _Failure(DETAIL_TOO_LARGE)
                return bytes(body)
        except httpx.HTTPError as e:
            log.debug("[NAMES] resolver transport failure: %s", e)
            raise _Failure(DETAIL_TRANSPORT) from None
