"""Errors raised by the SMP client library (all are ``ClientError``)."""

from __future__ import annotations

from ..protocol.commands import Response
from ..protocol.errors import ErrorType


class ClientError(Exception):
    """Base of every error the client raises."""


class ConnectError(ClientError):
    """Connecting failed: TCP, TLS, the server identity (the original TransportError is
    the ``__cause__``) or the timeout. ``code``: "NETWORK" (TCP, SOCKS, TLS, identity),
    "TIMEOUT", "HOST" (no host of the address may be tried, e.g. only ``.onion`` hosts
    and no SOCKS proxy), or the handshake's code (HandshakeError)."""

    def __init__(self, message: str, code: str = "NETWORK") -> None:
        super().__init__(message)
        self.code = code


class HandshakeError(ConnectError):
    """The SMP handshake failed. ``code`` names it like the reference's TransportError:
    ``"VERSION"`` (no common version), ``"SESSION"`` (session id is not tls-unique),
    ``"HANDSHAKE PARSE"`` (unparsable server hello), ``"HANDSHAKE BAD_AUTH"`` (the signed
    session key or the handshake certificate chain does not verify), ``"HANDSHAKE
    CLOSED"`` (the server closed the connection during the handshake)."""

    def __init__(self, code: str, detail: str = "") -> None:
        super().__init__(f"{code}: {detail}" if detail else code, code)
        self.detail = detail


class ClientClosed(ClientError):
    """The connection is closed (by the server, a transport error or ``aclose``): raised by
    every pending and later request."""


class SMPError(ClientError):
    """The server answered ``ERR``: ``error`` is the ErrorType (``error.code`` e.g.
    "AUTH", "CMD"; ``str(error)`` e.g. "CMD PROHIBITED")."""

    def __init__(self, error: ErrorType) -> None:
        super().__init__(str(error))
        self.error = error

    @property
    def code(self) -> str:
        return self.error.code



class ResponseError(ClientError):
    """The server's transmission answering a request could not be accepted (unparsable,
    unknown tag, wrong entity rule): ``error`` is the client-side ErrorType (e.g. CMD
    SYNTAX, CMD UNKNOWN, SESSION, BLOCK)."""

    def __init__(self, error: ErrorType) -> None:
        super().__init__(f"bad server transmission: {error}")
        self.error = error


class UnexpectedResponse(ClientError):
    """A typed call got a well-formed response of the wrong kind (e.g. OK to NEW)."""

    def __init__(self, expected: str, response: Response) -> None:
        super().__init__(f"expected {expected}, got {response!r}")
        self.response = response


class TransmissionTooLarge(ClientError):
    """A transmission does not fit in one block (more than 16363 bytes): not sent."""


class UnsupportedByVersion(ClientError):
    """The call needs a higher negotiated version (e.g. SKEY below v9, X25519
    authorization below v7)."""
