"""TLS block transport: the reference's TLS profile and a connection that moves 16 KB blocks.

The interface the server, the client library and the tools build on (a contract):

Contexts (``tls``)
    ``server_context(certfile, keyfile, cafile=None, *, alpn=SERVER_ALPN) -> ssl.SSLContext``
        TLS 1.3 (TLS_CHACHA20_POLY1305_SHA256 only) or 1.2 (ECDHE-ECDSA-CHACHA20-POLY1305 only),
        groups X25519/X448, Ed25519/Ed448 signatures, no tickets, no renegotiation. The chain
        sent is [server cert, CA cert]: ``certfile`` holds both, or pass the CA in ``cafile``
        (the reference's server.crt + ca.crt). ALPN: the first of ``alpn`` the client offered.
        ``request_client_certs=True`` (the reference's accept_service_credentials) asks every
        client for a certificate: none is fine; a chain is validated as the reference does
        (``crypto.chains``) and a bad one refused in the handshake with the reference's alert.
    ``ClientCertificateContext(chain_der, private_key, alpn=CLIENT_ALPN)``: a one-connection
        client context presenting a service chain; ``.context``, and ``.requested`` after
        the handshake: whether the server asked for the certificate.
    ``client_context(alpn=CLIENT_ALPN) -> ssl.SSLContext``
        Same profile, no CA store, no hostname check, no SNI; ``alpn=None`` offers no ALPN
        (a reference server then offers only the legacy SMP version 6). Shared per ALPN
        list: do not mutate it.
    ``SMP_ALPN, HTTP11_ALPN, SERVER_ALPN, CLIENT_ALPN``; ``native_profile_available()``:
        whether the TLS 1.3 suite/group restriction (done via ctypes, see _openssl.py) works
        here; if not, contexts log a warning and keep OpenSSL's TLS 1.3 defaults.

Server identity (``identity``)
    ``key_hash(cert_der) -> bytes``: SHA-256 of a certificate's DER (the address fingerprint).
    ``verify_server_chain(chain_der, expected_key_hash)``: 2-4 certificates, SHA-256 of the
        second == key hash, each signed by the next, issuers CA:true, dates valid; else
        ``TLSIdentityError``.
    ``peer_chain_der(sslobj) -> list[bytes]``: the peer's chain, leaf first (public API on
        3.13+, the private one on 3.11/3.12).

Connections (``stream``)
    ``BlockConnection(stream, ssl_context, *, server_side)`` over a connected trio SocketStream:
        ``await handshake(timeout=60.0)``
        ``await receive_blocks() -> list[bytes]``: all complete 16384-byte blocks buffered
            (waits for at least one), in order; ``[]`` once the peer closed (then always []).
        ``await send_blocks(blocks)`` / ``await send(data)``: encrypt all, one send_all.
        ``await aclose()``: close_notify (best effort, <= 1 s), then close; idempotent.
        Properties after the handshake: ``alpn`` (str | None), ``tls_unique`` (bytes: the
        client Finished on both sides, 32 bytes with TLS 1.3 -- the SMP session id; None
        if unavailable: close the connection), ``tls_version``, ``cipher``, ``peer_chain_der``.
        Counters: ``blocks_in``, ``blocks_out``, ``app_bytes_out``, ``tls_bytes_in``,
        ``tls_bytes_out`` (raw socket bytes, handshake included).
        One task may receive while any number of tasks send (sends are serialised; each
        send_blocks call's blocks stay contiguous); never receive from two tasks at once.
    ``await open_block_connection(host, port, key_hash, *, alpn=CLIENT_ALPN,
            ssl_context=None, timeout=60.0) -> BlockConnection``: client connect + handshake +
        chain check; closes the socket on any failure.
    ``await serve_blocks(handler, port, ssl_context, *, host=None, handshake_timeout=60.0,
            backlog=1024, on_handshake_error=None, limit=None, task_status=...)``: accept
        loop; each connection's handshake runs in its own task, then ``await handler(conn)``;
        the connection is closed after. ``nursery.start(serve_blocks, ...)`` returns the
        listeners. ``limit``: a ``ConnectionLimit(maximum)`` (module ``limit``) shared by the
        listeners of one server; over it a new connection is closed before its TLS handshake.
    ``BLOCK_SIZE = 16384``, ``HANDSHAKE_TIMEOUT = 60.0``.

Errors (``errors``): ``TransportError`` (base of all), ``TransportClosed``,
``HandshakeTimeout``, ``TLSIdentityError``.

Throw-away certificate chains for tests live in ``smpfast.testing.throwaway_certs``.
"""

from .errors import HandshakeTimeout, TLSIdentityError, TransportClosed, TransportError
from .identity import key_hash, peer_chain_der, verify_server_chain
from .limit import ConnectionLimit
from .stream import (
    BLOCK_SIZE,
    HANDSHAKE_TIMEOUT,
    BlockConnection,
    open_block_connection,
    serve_blocks,
)
from .tls import (
    CLIENT_ALPN,
    ClientCertificateContext,
    HTTP11_ALPN,
    SERVER_ALPN,
    SMP_ALPN,
    client_context,
    native_profile_available,
    server_context,
)

__all__ = [
    "BLOCK_SIZE",
    "CLIENT_ALPN",
    "HANDSHAKE_TIMEOUT",
    "HTTP11_ALPN",
    "SERVER_ALPN",
    "SMP_ALPN",
    "BlockConnection",
    "ClientCertificateContext",
    "ConnectionLimit",
    "HandshakeTimeout",
    "TLSIdentityError",
    "TransportClosed",
    "TransportError",
    "client_context",
    "key_hash",
    "native_profile_available",
    "open_block_connection",
    "peer_chain_der",
    "serve_blocks",
    "server_context",
    "verify_server_chain",
]
