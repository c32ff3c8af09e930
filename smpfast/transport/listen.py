"""Listening sockets for a configured bind address, IPv4 and IPv6 alike.

``bind = ::`` means every interface of both families, as an operator expects: trio's
IPv6 listeners are IPv6-only (``IPV6_V6ONLY``), so ``::`` gets a second listener on
``0.0.0.0`` on the same port. On a machine where IPv6 is disabled the ``::`` listener is
dropped with one warning and the server listens on ``0.0.0.0`` alone. Any other address
(``0.0.0.0``, a specific one) is bound as given.
"""

from __future__ import annotations

import errno
import logging

import trio

log = logging.getLogger("smpfast.transport")

ALL_INTERFACES = "::"
# What a machine without working IPv6 answers when asked for an IPv6 socket or address.
_NO_IPV6 = (errno.EAFNOSUPPORT, errno.EADDRNOTAVAIL, errno.EPROTONOSUPPORT)


async def open_listeners(port: int, host: str | None, backlog: int = 1024) -> list[trio.SocketListener]:
    """Listeners on ``host``:``port`` (port 0: one ephemeral port for all of them).
    ``host`` None or ``::``: IPv6 and IPv4 on all interfaces, IPv4 only if IPv6 is off."""
    if host not in (None, ALL_INTERFACES):
        return await trio.open_tcp_listeners(port, host=host, backlog=backlog)
    try:
        v6 = await trio.open_tcp_listeners(port, host=ALL_INTERFACES, backlog=backlog)
    except OSError as e:
        if e.errno not in _NO_IPV6:
            raise
        log.warning("IPv6 is not available on this machine (%s): listening on 0.0.0.0 port %d "
                    "(IPv4) only", e.strerror or e, port)
        return await trio.open_tcp_listeners(port, host="0.0.0.0", backlog=backlog)
    bound = v6[0].socket.getsockname()[1]
    try:
        v4 = await trio.open_tcp_listeners(bound, host="0.0.0.0", backlog=backlog)
    except BaseException:
        for listener in v6:
            await listener.aclose()
        raise
    return v6 + v4
