"""Errors raised by the TLS block transport."""

from __future__ import annotations


class TransportError(Exception):
    """The connection failed: a TLS error, a socket error or a refused peer.

    Every failure of a BlockConnection is raised as this type (or a subclass), so a
    connection task needs one ``except TransportError`` to disconnect cleanly.
    """


class TransportClosed(TransportError):
    """The peer or this side closed the connection before the operation could finish."""


class HandshakeTimeout(TransportError):
    """The TLS handshake did not finish within its time limit."""


class TLSIdentityError(TransportError):
    """The server's certificate chain does not prove the expected identity (key hash)."""
