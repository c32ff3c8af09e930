"""A trio client for SMP relays (tests, the load generator and benchmarks use it).

The API below is a contract; change it only with the people who use it.

Connecting
    ``client = await SMPClient.connect(address, *, max_version=None, min_version=6,
            alpn=["smp/1"], timeout=30.0, block_encryption=True, event_buffer=inf,
            service=None, socks=None, socks_mode="always", host_mode="public", proxy_server=False)``
        ``address``: ``"smp://<fingerprint>[:<password>]@<host>[,<host>...][:<port>]"``
        (default port 5223) or an ``SMPServer``. Hosts are tried until one connects,
        public ones first (``host_mode="onion"``: ``.onion`` ones first when ``socks``
        is set); ``.onion`` hosts only through ``socks``, a SOCKS5 proxy such as Tor
        (``"[user:pass@|@]IP[:port]"`` or a ``transport.socks.SocksProxy``; without
        ``@`` connections are isolated by credentials), used for every host
        (``socks_mode="always"``) or only for ``.onion`` ones ("onion").
        ``proxy_server``: the v14 handshake flag an SMP proxy sets towards relays. TLS pins the CA
        fingerprint; the server hello's session id must equal tls-unique; its signed X25519
        session key (v7+) must verify with the TLS leaf certificate and its chain must
        prove the fingerprint. Version = max of (server range) ∩ [min_version,
        max_version or 18]; ``alpn=None`` offers no ALPN, so a server offers only v6. At
        v7+ a fresh X25519 client key is sent (at v11+ only if ``block_encryption``, which
        then encrypts every block). ``timeout`` bounds TCP + TLS + SMP handshake.
        ``service``: a ``ServiceCredentials(role, chain_der, leaf_key)`` (a ServiceRole,
        DER certificates leaf first, the leaf's Ed25519/Ed448 key): the chain is sent as
        the TLS client certificate and, at v16+ when the server asked for it, presented in
        the hello with a fresh Ed25519 session key; the server's third block gives
        ``client.service`` (a ``ServiceIdentity``: service_id, role, cert_hash, key). NEW,
        SUB and NSUB are then authorized twice (queue key over cert_hash || t_for_auth,
        service key over t_for_auth). HANDSHAKE BAD_AUTH / BAD_SERVICE raise HandshakeError.
        Raises ConnectError (``.code`` NETWORK, TIMEOUT or HOST; HandshakeError for SMP
        handshake failures, ``.code`` as the reference's transport error).
        The returned client's reader is not running yet; run it with either
    ``async with client:`` -- the reader runs in a nursery owned by the block; on exit
        the connection is closed. Exceptions from the body pass through unchanged.
    ``async with smpfast.client.connect(address, **same_kwargs) as client:`` -- both steps.
    ``await nursery.start(client.run)`` ... ``await client.aclose()`` -- for tools holding
        many clients in one nursery. ``run()`` returns when the connection closes and
        never raises; ``client.close_reason`` says why.

Properties
    ``version``, ``session_id`` (tls-unique), ``server_vrange``, ``server`` (SMPServer),
    ``basic_auth``, ``server_session_key`` (raw X25519 or None), ``block_encryption``,
    ``service`` (ServiceIdentity of a service session, else None),
    ``host`` (the host reached), ``via_socks``, ``session_box_key`` (box key of the
    handshake DH: the RFWD/RRES layer of a proxy link; None without a client key),
    ``connection`` (the BlockConnection), ``closed``, ``close_reason``.
    Traffic: ``blocks_in``, ``blocks_out``, ``tls_bytes_in``, ``tls_bytes_out`` (the TLS
    connection's counters, hello blocks included); SMP level (hello blocks excluded):
    ``transmissions_sent``, ``transmissions_received``, ``blocks_sent``,
    ``blocks_received``, ``events_received``, ``events_dropped``, ``bad_transmissions``,
    ``unmatched_responses``.

Raw requests (every request gets a fresh 24-byte random corrId, unless ``corr_id``/
``corr_ids`` give the corrIds, distinct and not pending: RFWD uses its nonce as corrId)
    ``await client.request(entity_id, command, key=None, *, corr_id=None) -> Response``
        ``command``: a ``smpfast.protocol.commands`` Command (or its encoded bytes);
        ``key``: the authorizing ``smpfast.crypto.keys.PrivateKey`` -- Ed25519/Ed448 sign
        ``t_for_auth``, X25519 makes the 80-byte authenticator with the server session key
        (v7+, else UnsupportedByVersion). Returns the response, ``Err`` included (not
        raised). Raises ResponseError when the matching server transmission was
        unusable.
    ``await client.batch([(entity_id, command, key), ...], *, corr_ids=None) -> list[Response | BadResponse]``
        All transmissions packed into as few blocks as possible (at most 255 and 16365
        bytes per block, padded to 16368 under block encryption), sent with one write;
        replies in request order, whatever order the server answered in. Nothing is
        raised for ERR or unusable replies (``BadResponse(error)``). The server runs a
        block's commands last to first, so commands whose order matters on one queue
        go in separate batches.
    Both raise ClientClosed if the connection is or becomes closed (all pending requests
    fail then), TransmissionTooLarge for a transmission over 16363 bytes. Cancelling a
    request is safe (a late response then becomes an event).

Events (server transmissions that answer no pending request)
    ``client.events``: a trio MemoryReceiveChannel of ``Event(entity_id, message)``
    (a NamedTuple: ``async for entity_id, msg in client.events``): MSG deliveries, NMSG,
    END, DELD, ERR with empty corrId, responses whose corrId is unknown (e.g. after a
    cancelled request) and ``BadResponse`` for unusable transmissions. It ends when the
    connection closes (buffered events stay readable). Unbounded by default; with a
    bounded ``event_buffer`` the reader waits for room (responses of the same blocks are
    routed first). Close ``client.events`` to discard events.
    ``await client.next_event(timeout=None) -> Event``: trio.TooSlowError on timeout,
    ClientClosed when closed and drained.

Typed calls (one request each; ERR raises ``SMPError(error)``, a wrong response type
UnexpectedResponse, an unusable one ResponseError)
    ``create_queue(auth_alg='ed25519'|'x25519'|'ed448', subscribe=True, basic_auth=None,
        sender_can_secure=False, ntf=False) -> RecipientQueue``
    ``create_queues(n, ...same...) -> list[RecipientQueue]`` (one batch)
    ``subscribe(q) -> service id | None`` (of SOK); ``subscribe_many(queues, check=True)
        -> list[reply]`` (one batch)
    ``secure(q, sender_key)`` (KEY; DER, PublicKey or PrivateKey)
    ``sender_secure(snd_id, sender_key)`` (SKEY, v9+)
    ``send(snd_id, body, sender_key=None, notification=False)``
    ``get(q) -> Msg | None``; ``ack(q, msg_id) -> Msg | None`` (the next message or None)
    ``suspend(q)`` (OFF); ``delete(q)`` (DEL); ``queue_info(q) -> dict`` (QUE)
    ``enable_notifications(q, auth_alg='ed25519') -> NotifierCreds`` (NKEY; also sets
        ``q.notifier``); ``enable_notifications_many(queues)``;
        ``disable_notifications(q)`` (NDEL); ``notifications_subscribe(creds)`` or
        ``notifications_subscribe(nid, ntf_key)`` (NSUB; -> service id | None)
    ``service_subscribe_notifications() -> int`` (NSUBS, signed by the service key: the
        count of SOKS); ``service_subscribe() -> int`` (SUBS); both UnsupportedByVersion
        outside a service session
    ``ping()``
    ``resolve(name) -> NameRecord`` (v20: RSLV → RNAME; ``name`` a str or
        ``protocol.names.SimplexDomain``; ERR NAME ... raises SMPError; below v20
        UnsupportedByVersion, as the reference's client)
    SUB/NSUB accept OK (v<16) and SOK (v16+).

Private message routing (v8+: this server as an SMP proxy)
    ``proxy_relay(relay_address, basic_auth=None) -> ProxiedRelay`` (PRXY → PKEY, checked
        against the relay's fingerprint; ``protocol.proxy.ProxiedRelay``: session_id,
        version, server_key)
    ``proxied(relay, entity_id, command, key=None) -> Response`` (PFWD → PRES: the relay's
        answer, Err included; the proxy's ERR PROXY ... raises SMPError)
    ``proxied_send(relay, snd_id, body, sender_key=None, notification=False)``,
    ``proxied_sender_secure(relay, snd_id, sender_key)``
    ``proxied_resolve(relay, name) -> NameRecord`` (RSLV forwarded to the relay; needs the
        relay's proxied version 20, else UnsupportedByVersion; the relay's ERR NAME raises
        SMPError)

Values (``types``)
    ``RecipientQueue(rcv_id, snd_id, rcv_auth_key, rcv_dh_key, srv_dh_key, box_key,
        queue_mode, link_id, service_id, notifier)``
    ``NotifierCreds(notifier_id, notifier_key, ntf_dh_key, srv_ntf_dh_key, box_key)``
    ``decrypt_msg(q_or_box_key, msg) -> RcvMessage(ts, notification, body, quota)`` and
    ``decrypt_nmsg(creds_or_box_key, nmsg) -> NtfMeta(msg_id, ts)`` (also as
    ``SMPClient.decrypt_msg`` / ``decrypt_nmsg``); CryptoError when they fail.

Errors (``errors``): ClientError > ConnectError > HandshakeError; ClientClosed; SMPError;
ResponseError; UnexpectedResponse; TransmissionTooLarge; UnsupportedByVersion.
"""

from .base import ClientBase, Request
from .client import SMPClient, connect
from .errors import (
    ClientClosed,
    ClientError,
    ConnectError,
    HandshakeError,
    ResponseError,
    SMPError,
    TransmissionTooLarge,
    UnexpectedResponse,
    UnsupportedByVersion,
)
from ..protocol.commands import ServiceRole
from ..protocol.session import ServiceCredentials, ServiceIdentity
from .session import DEFAULT_PORT, Session, open_session, parse_address
from .types import BadResponse, Event, NotifierCreds, RecipientQueue, Reply, decrypt_msg, decrypt_nmsg

__all__ = [
    "ServiceCredentials",
    "ServiceIdentity",
    "ServiceRole",
    "DEFAULT_PORT",
    "BadResponse",
    "ClientBase",
    "ClientClosed",
    "ClientError",
    "ConnectError",
    "Event",
    "HandshakeError",
    "NotifierCreds",
    "RecipientQueue",
    "Reply",
    "Request",
    "ResponseError",
    "SMPClient",
    "SMPError",
    "Session",
    "TransmissionTooLarge",
    "UnexpectedResponse",
    "UnsupportedByVersion",
    "connect",
    "decrypt_msg",
    "decrypt_nmsg",
    "open_session",
    "parse_address",
]
