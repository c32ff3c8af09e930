"""Listening sockets for a configured bind address, IPv4 and IPv6 alike.

``bind = ::`` means every interface of both families, as an operator expects: trio's
IPv6 listeners are IPv6-only (``IPV6_V6ONLY``), so ``::`` gets a second listener on
``0.0.0.0`` on the same port. On a machine where IPv6 is disabled the ``::`` listener is
dropped with one warning and the server listens on ``0.0.0.0`` alone. Any other address
(``0.0.0.0``, a specific one) is bound as given.

``reuse_port``: every socket is bound with ``SO_REUSEPORT``, so that several worker
processes listen on the same port and the kernel spreads new connections between them.
"""

from __future__ import annotations

import errno
import logging
import socket

import trio

log = logging.getLogger("smpfast.transport")

ALL_INTERFACES = "::"
# What a machine without working IPv6 answers when asked for an IPv6 socket or address.
_NO_IPV6 = (errno.EAFNOSUPPORT, errno.EADDRNOTAVAIL, errno.EPROTONOSUPPORT)


async def open_listeners(port: int, host: str | None, backlog: int = 1024,
                         reuse_port: bool = False) -> list[trio.SocketListener]:
    """Listeners on ``host``:``port`` (port 0: one ephemeral port for all of them).
    ``host`` None or ``::``: IPv6 and IPv4 on all interfaces, IPv4 only if IPv6 is off."""
    def open_on(p: int, h: str):
        if reuse_port:
            return _reuse_port_listeners(p, h, backlog)
        return trio.open_tcp_listeners(p, host=h, backlog=backlog)

    if host not in (None, ALL_INTERFACES):
        return await open_on(port, host)
    try:
        v6 = await open_on(port, ALL_INTERFACES)
    except OSError as e:
        if e.errno not in _NO_IPV6:
            raise
        log.warning("IPv6 is not available on this machine (%s): listening on 0.0.0.0 port %d "
                    "(IPv4) only", e.strerror or e, port)
        return await open_on(port, "0.0.0.0")
    bound = v6[0].socket.getsockname()[1]
    try:
        v4 = await open_on(bound, "0.0.0.0")
    except BaseException:
        for listener in v6:
            await listener.aclose()
        raise
    return v6 + v4


async def _reuse_port_listeners(port: int, host: str, backlog: int) -> list[trio.SocketListener]:
    """trio.open_tcp_listeners with SO_REUSEPORT set before bind (it has no option for it)."""
    infos = await trio.socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    listeners = []
    try:
        for family, type_, proto, _, address in infos[:1]:
            sock = trio.socket.socket(family, type_, proto)
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                if family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                await sock.bind(address)
                sock.listen(backlog)
            except BaseException:
                sock.close()
                raise
            listeners.append(trio.SocketListener(sock))
    except BaseException:
        for listener in listeners:
            await listener.aclose()
        raise
    return listeners


def reserve_port(port: int, host: str | None) -> socket.socket:
    """A bound (not listening) ``SO_REUSEPORT`` socket on ``host``:``port``: it holds an
    ephemeral port (port 0) for the workers that will listen on it, and takes no connections."""
    family = socket.AF_INET6 if host in (None, ALL_INTERFACES) or ":" in host else socket.AF_INET
    address = "::" if host in (None, ALL_INTERFACES) else host
    try:
        sock = socket.socket(family, socket.SOCK_STREAM)
    except OSError as e:
        if family != socket.AF_INET6 or e.errno not in _NO_IPV6:
            raise
        family, address = socket.AF_INET, "0.0.0.0"
        sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((address, port))
    except BaseException:
        sock.close()
        raise
    return sock
