"""RSLV between the broker and the connection shell (sans-IO; SMP v20, docs/protocol-v19-v20.md §5).

With a resolver configured the broker answers no RSLV itself: it hands a ``NameRequest`` to
the connection shell (in ``Effects.proxied``, with the forked proxy commands, because the
reference counts both on one per-connection limit), which asks the resolver and then turns
the outcome into the answer to send with ``NameRequest.answer``:

- a direct RSLV: ``RNAME`` or ``ERR NAME ...`` with the RSLV's corrId and no entity;
- a forwarded one (inside RFWD): that inner answer, with the inner corrId and entity, sealed
  into the ``RRES`` that answers the RFWD (the RFWD's corrId, no entity); a failure to seal
  answers the RFWD with a plain ``ERR``.

Statistics use the reference's names (``rslvReqs`` etc., smpfast.server.stats).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..protocol import commands as C
from ..protocol import errors as E
from ..protocol.names import NameRecord, SimplexDomain
from ..protocol.proxy import Forwarded, ProxyLayerError, seal_forwarded
from .delivery import Answer, ConnId

# The reference's NameResolverStats fields (the daily line's last five columns).
STAT_REQUESTS = "rslvReqs"  # every RSLV (direct or forwarded) that reached execution
STAT_SUCCESS = "rslvSucc"
STAT_NOT_FOUND = "rslvNotFound"
STAT_RESOLVER_ERRORS = "rslvResolverErrs"
STAT_DISABLED = "rslvDisabled"  # answered NAME NO_RESOLVER: no resolver configured
NAME_STATS = (STAT_REQUESTS, STAT_SUCCESS, STAT_NOT_FOUND, STAT_RESOLVER_ERRORS, STAT_DISABLED)

Resolution = NameRecord | E.NameResolutionError  # what a resolver returns for a name


@dataclass(frozen=True, slots=True)
class ForwardedName:
    """What sealing the answer of a forwarded RSLV needs: the relay session of the proxy's
    connection and the opened RFWD with the inner transmission's corrId and entity."""

    session_key: bytes
    session_id: bytes
    fwd: Forwarded
    inner_corr_id: bytes
    inner_entity_id: bytes


@dataclass(frozen=True, slots=True)
class NameRequest:
    """An RSLV for the shell to resolve and answer on connection ``conn`` with ``corr_id``
    (the RSLV's, or the RFWD's when ``forwarded``)."""

    conn: ConnId
    corr_id: bytes
    domain: SimplexDomain
    forwarded: ForwardedName | None = None

    def answer(self, result: Resolution) -> tuple[str, Answer]:
        """The statistics counter the outcome counts in and the answer to send."""
        response = resolution_response(result)
        stat = resolution_stat(result)
        fw = self.forwarded
        if fw is None:
            return stat, (self.corr_id, b"", response)
        try:
            sealed: C.Response = seal_forwarded(fw.session_key, fw.session_id, fw.fwd, fw.inner_corr_id,
                                                fw.inner_entity_id, response)
        except ProxyLayerError as e:
            sealed = C.Err(e.error)
        return stat, (self.corr_id, b"", sealed)

    def __repr__(self) -> str:
        return f"NameRequest({self.conn}, {self.corr_id.hex()[:12]}, {self.domain}, forwarded={self.forwarded is not None})"


def resolution_response(result: Resolution) -> C.Response:
    """RNAME for a record, ERR NAME for a resolver's error."""
    if isinstance(result, NameRecord):
        return C.Rname(result)
    return C.Err(E.ErrorType("NAME", result))


def resolution_stat(result: Resolution) -> str:
    if isinstance(result, NameRecord):
        return STAT_SUCCESS
    return STAT_NOT_FOUND if result.code == "NOT_FOUND" else STAT_RESOLVER_ERRORS
