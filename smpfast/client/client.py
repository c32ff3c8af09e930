"""SMPClient: connecting, and one typed method per SMP command."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from contextlib import asynccontextmanager
from typing import AsyncIterator

from ..crypto.keys import Alg, PrivateKey, PublicKey, as_public_key, dh_box_key, generate_private_key, x25519_raw
from ..protocol import commands as C
from ..protocol import versions as V
from ..protocol.address import QueueMode, SMPServer
from ..protocol.commands import Response
from ..protocol.ids_hash import EMPTY_IDS_HASH
from ..protocol.names import NameRecord, SimplexDomain, parse_domain
from ..protocol.session import ServiceCredentials
from ..transport import CLIENT_ALPN
from ..transport.socks import SocksProxy
from .base import ClientBase, Request
from .errors import ResponseError, SMPError, UnexpectedResponse, UnsupportedByVersion
from ..crypto import CryptoError
from ..protocol import errors as E
from ..protocol.proxy import ProxiedRelay, ProxyLayerError, proxied_command, proxied_response, relay_from_pkey
from .session import CONNECT_TIMEOUT, open_session, parse_address
from .types import BadResponse, NotifierCreds, RecipientQueue, Reply, decrypt_msg, decrypt_nmsg
from .types import auth_alg as _alg

_DEFAULT_ALPN = list(CLIENT_ALPN)


def _check(reply: Reply, *expected: type[Response]) -> Response:
    """The reply if it is one of ``expected``; SMPError for ERR; else an error."""
    if isinstance(reply, expected):
        return reply
    if isinstance(reply, C.Err):
        raise SMPError(reply.error)
    if isinstance(reply, BadResponse):
        raise ResponseError(reply.error)
    raise UnexpectedResponse("/".join(t.TAG.decode() for t in expected), reply)


# SUB/NSUB answer OK below v16 and SOK from v16.
_SUB_OK = (C.Ok, C.Sok)


class SMPClient(ClientBase):
    """An SMP client session. Create with ``await SMPClient.connect(...)`` and run it
    with ``async with client:`` (or ``await nursery.start(client.run)``)."""

    @classmethod
    async def connect(
        cls,
        address: str | SMPServer,
        *,
        max_version: int | None = None,
        min_version: int = V.MIN_VERSION,
        alpn: list[str] | None = _DEFAULT_ALPN,
        timeout: float | None = CONNECT_TIMEOUT,
        block_encryption: bool = True,
        event_buffer: float = math.inf,
        service: ServiceCredentials | None = None,
        socks: SocksProxy | str | None = None,
        socks_mode: str = "always",
        host_mode: str = "public",
        proxy_server: bool = False,
    ) -> SMPClient:
        """TLS + SMP handshake; the returned client's reader is not running yet. With
        ``service`` (role, TLS certificate chain, leaf key) the client presents that
        certificate and, at v16+ when the server asked for it, runs a service session:
        ``client.service`` then holds the service id the server gave."""
        session = await open_session(
            address,
            min_version=min_version,
            max_version=max_version,
            alpn=alpn,
            timeout=timeout,
            block_encryption=block_encryption,
            service=service,
            socks=socks,
            socks_mode=socks_mode,
            host_mode=host_mode,
            proxy_server=proxy_server,
        )
        return cls(session, event_buffer=event_buffer)

    decrypt_msg = staticmethod(decrypt_msg)
    decrypt_nmsg = staticmethod(decrypt_nmsg)

    async def _call(self, entity_id: bytes, command: C.Command, key: PrivateKey | None,
                    *expected: type[Response]) -> Response:
        [reply] = await self.batch([(entity_id, command, key)])
        return _check(reply, *expected)

    # ------------------------------------------------------------------ queues

    def _new_request(
        self,
        auth_alg_name: str | Alg,
        subscribe: bool,
        basic_auth: bytes | str | None,
        sender_can_secure: bool,
        ntf: bool,
    ) -> tuple[C.New, PrivateKey, PrivateKey, tuple[PrivateKey, PrivateKey] | None]:
        alg = _alg(auth_alg_name)
        if alg is Alg.X25519 and self.version < V.AUTH_CMDS:
            raise UnsupportedByVersion("X25519 recipient keys need v7+")
        if sender_can_secure and self.version < V.SND_AUTH_KEY:
            raise UnsupportedByVersion("sender_can_secure (messaging queue mode) needs v9+")
        rcv_key = generate_private_key(alg)
        dh_key = generate_private_key(Alg.X25519)
        if basic_auth is None:
            basic_auth = self.basic_auth
        elif isinstance(basic_auth, str):
            basic_auth = basic_auth.encode("latin-1")
        # Without sender_can_secure: 'F' (contact) at v9-14, no queue request from v15.
        queue_req = C.QueueReqData(QueueMode.MESSAGING) if sender_can_secure else None
        ntf_keys = ntf_creds = None
        if ntf and self.version >= V.NEW_NTF_CREDS:
            ntf_keys = (generate_private_key(Alg.ED25519), generate_private_key(Alg.X25519))
            ntf_creds = C.NewNtfCreds(ntf_keys[0].public.der, ntf_keys[1].public.der)
        cmd = C.New(rcv_key.public.der, dh_key.public.der, basic_auth, subscribe, queue_req, ntf_creds)
        return cmd, rcv_key, dh_key, ntf_keys

    @staticmethod
    def _queue_from_ids(ids: C.Ids, rcv_key: PrivateKey, dh_key: PrivateKey,
                        ntf_keys: tuple[PrivateKey, PrivateKey] | None) -> RecipientQueue:
        box = dh_box_key(x25519_raw(ids.srv_dh_key), dh_key.raw)
        q = RecipientQueue(ids.rcv_id, ids.snd_id, rcv_key, dh_key, ids.srv_dh_key, box,
                           ids.queue_mode, ids.link_id, ids.service_id)
        if ntf_keys is not None and ids.ntf_creds is not None:
            q.notifier = NotifierCreds.from_nid(ids.ntf_creds.notifier_id, ids.ntf_creds.dh_key, *ntf_keys)
        return q

    async def create_queue(
        self,
        auth_alg: str | Alg = "ed25519",
        subscribe: bool = True,
        basic_auth: bytes | str | None = None,
        sender_can_secure: bool = False,
        ntf: bool = False,
    ) -> RecipientQueue:
        """NEW: fresh recipient auth key (``auth_alg``) and X25519 DH key. ``subscribe``
        False sends subMode 'C' (create only; use GET or SUB later). ``basic_auth``
        defaults to the address password. ``sender_can_secure`` (v9+) asks for a
        messaging-mode queue (SKEY allowed). ``ntf``: notifier credentials in NEW at v17+,
        else a following NKEY."""
        cmd, rcv_key, dh_key, ntf_keys = self._new_request(auth_alg, subscribe, basic_auth, sender_can_secure, ntf)
        ids = await self._call(b"", cmd, rcv_key, C.Ids)
        q = self._queue_from_ids(ids, rcv_key, dh_key, ntf_keys)  # type: ignore[arg-type]
        if ntf and q.notifier is None:
            await self.enable_notifications(q)
        return q

    async def create_queues(
        self,
        n: int,
        auth_alg: str | Alg = "ed25519",
        subscribe: bool = True,
        basic_auth: bytes | str | None = None,
        sender_can_secure: bool = False,
        ntf: bool = False,
    ) -> list[RecipientQueue]:
        """``n`` NEWs in one ``batch`` (then one batch of NKEYs if ``ntf`` below v17).
        Raises SMPError for the first ERR (queues created before it stay on the server)."""
        reqs = [self._new_request(auth_alg, subscribe, basic_auth, sender_can_secure, ntf) for _ in range(n)]
        replies = await self.batch([(b"", cmd, rk) for cmd, rk, _, _ in reqs])
        queues = [
            self._queue_from_ids(_check(reply, C.Ids), rk, dk, nk)  # type: ignore[arg-type]
            for reply, (_, rk, dk, nk) in zip(replies, reqs)
        ]
        if ntf:
            await self.enable_notifications_many([q for q in queues if q.notifier is None])
        return queues

    async def subscribe(self, q: RecipientQueue) -> bytes | None:
        """SUB. A message in the queue then arrives as an MSG event. Returns the service
        id of SOK (a service session at v16+), else None."""
        return _sok_service(await self._call(q.rcv_id, C.SUB, q.rcv_auth_key, *_SUB_OK))

    async def subscribe_many(self, queues: Iterable[RecipientQueue], *, check: bool = True) -> list[Reply]:
        """SUB for every queue in one ``batch``; returns the replies (OK/SOK or Err);
        with ``check`` raises SMPError for the first ERR."""
        replies = await self.batch([(q.rcv_id, C.SUB, q.rcv_auth_key) for q in queues])
        if check:
            for reply in replies:
                _check(reply, *_SUB_OK)
        return replies

    async def secure(self, q: RecipientQueue, sender_key: bytes | PublicKey | PrivateKey) -> None:
        """KEY: the recipient sets the sender's key (SPKI DER, PublicKey or its PrivateKey)."""
        await self._call(q.rcv_id, C.Key(_public_der(sender_key)), q.rcv_auth_key, C.Ok)

    async def sender_secure(self, snd_id: bytes, sender_key: PrivateKey) -> None:
        """SKEY (v9+): the sender secures a messaging-mode queue with its own key."""
        if self.version < V.SND_AUTH_KEY:
            raise UnsupportedByVersion("SKEY needs v9+")
        await self._call(snd_id, C.Skey(sender_key.public.der), sender_key, C.Ok)

    async def send(self, snd_id: bytes, body: bytes, sender_key: PrivateKey | None = None,
                   notification: bool = False) -> None:
        """SEND (unauthorized before the queue is secured, then signed by ``sender_key``)."""
        cmd = C.Send(C.MsgFlags(notification), bytes(body))
        await self._call(snd_id, cmd, sender_key, C.Ok)

    async def get(self, q: RecipientQueue) -> C.Msg | None:
        """GET: the head message, or None if the queue is empty (OK)."""
        reply = await self._call(q.rcv_id, C.Get(), q.rcv_auth_key, C.Msg, C.Ok)
        return reply if isinstance(reply, C.Msg) else None  # type: ignore[return-value]

    async def ack(self, q: RecipientQueue, msg_id: bytes) -> C.Msg | None:
        """ACK: None (OK), or the next message (MSG answering this ACK)."""
        reply = await self._call(q.rcv_id, C.Ack(msg_id), q.rcv_auth_key, C.Msg, C.Ok)
        return reply if isinstance(reply, C.Msg) else None  # type: ignore[return-value]

    async def suspend(self, q: RecipientQueue) -> None:
        """OFF: senders get ERR AUTH from now on."""
        await self._call(q.rcv_id, C.Off(), q.rcv_auth_key, C.Ok)

    async def delete(self, q: RecipientQueue) -> None:
        """DEL: the queue, its messages and its notifier are removed."""
        await self._call(q.rcv_id, C.Del(), q.rcv_auth_key, C.Ok)

    async def queue_info(self, q: RecipientQueue) -> dict:
        """QUE: the server's QueueInfo JSON, parsed."""
        reply = await self._call(q.rcv_id, C.Que(), q.rcv_auth_key, C.Info)
        return json.loads(reply.info)  # type: ignore[attr-defined]

    # ------------------------------------------------------------------ notifications

    def _nkey_request(self, q: RecipientQueue, alg: Alg) -> tuple[Request, PrivateKey, PrivateKey]:
        ntf_key = generate_private_key(alg)
        dh_key = generate_private_key(Alg.X25519)
        return (q.rcv_id, C.Nkey(ntf_key.public.der, dh_key.public.der), q.rcv_auth_key), ntf_key, dh_key

    async def enable_notifications(self, q: RecipientQueue, auth_alg: str | Alg = "ed25519") -> NotifierCreds:
        """NKEY → NID: a fresh notifier key and DH key; also stored in ``q.notifier``."""
        [creds] = await self.enable_notifications_many([q], auth_alg)
        return creds

    async def enable_notifications_many(self, queues: Sequence[RecipientQueue],
                                        auth_alg: str | Alg = "ed25519") -> list[NotifierCreds]:
        """NKEY for every queue in one batch; raises SMPError for the first ERR."""
        alg = _alg(auth_alg)
        if alg is Alg.X25519 and self.version < V.AUTH_CMDS:
            raise UnsupportedByVersion("X25519 notifier keys need v7+")
        reqs = [self._nkey_request(q, alg) for q in queues]
        replies = await self.batch([r for r, _, _ in reqs])
        out = []
        for q, reply, (_, nk, dk) in zip(queues, replies, reqs):
            nid = _check(reply, C.Nid)
            q.notifier = NotifierCreds.from_nid(nid.notifier_id, nid.srv_ntf_dh_key, nk, dk)  # type: ignore[attr-defined]
            out.append(q.notifier)
        return out

    async def disable_notifications(self, q: RecipientQueue) -> None:
        """NDEL: the notifier is deleted (its subscriber gets DELD/END)."""
        await self._call(q.rcv_id, C.Ndel(), q.rcv_auth_key, C.Ok)
        q.notifier = None

    async def notifications_subscribe(self, nid: bytes | NotifierCreds, ntf_key: PrivateKey | None = None) -> bytes | None:
        """NSUB: NMSG events for the notifier then arrive on this connection. In a
        notifier service session this associates the notifier with the service (returns
        the service id of SOK; None otherwise)."""
        if isinstance(nid, NotifierCreds):
            nid, ntf_key = nid.notifier_id, ntf_key or nid.notifier_key
        if ntf_key is None:
            raise ValueError("notifications_subscribe needs the notifier key")
        return _sok_service(await self._call(nid, C.Nsub(), ntf_key, *_SUB_OK))

    # ------------------------------------------------------------------ services (v16+)

    def _service_command(self, command: C.Command) -> tuple[bytes, C.Command, PrivateKey]:
        if self.service is None:
            raise UnsupportedByVersion("not a service session (v16+ with a service certificate)")
        return self.service.service_id, command, PrivateKey(Alg.ED25519, self.service.key)

    async def service_subscribe_notifications(self) -> int:
        """NSUBS: subscribe every notifier associated with this (notifier) service; NMSG
        events for all of them then arrive here. Returns the count of SOKS."""
        reply = await self._call(*self._service_command(C.Nsubs()), C.Soks)
        return reply.count  # type: ignore[attr-defined]

    async def service_subscribe(self) -> int:
        """SUBS: subscribe every queue associated with this (messaging) service; returns
        the count of SOKS. The waiting messages of those queues then arrive as MSG events
        (entity: the recipient id), followed by one ALLS event (v19)."""
        return (await self.service_subscribe_all())[0]

    async def service_subscribe_all(self, count: int = -1, ids_hash: bytes = EMPTY_IDS_HASH) -> tuple[int, bytes]:
        """SUBS carrying what this service believes it has associated (``count`` and the
        IdsHash of the recipient ids; from v19, else sent as the bare tag): the server's
        (count, IdsHash) from SOKS (the hash is all zeros below v19)."""
        reply = await self._call(*self._service_command(C.Subs(count, ids_hash)), C.Soks)
        return reply.count, reply.ids_hash  # type: ignore[attr-defined]

    async def service_subscribe_notifications_all(self, count: int = -1,
                                                  ids_hash: bytes = EMPTY_IDS_HASH) -> tuple[int, bytes]:
        """NSUBS with an expected (count, IdsHash of notifier ids): the server's (count,
        IdsHash) from SOKS."""
        reply = await self._call(*self._service_command(C.Nsubs(count, ids_hash)), C.Soks)
        return reply.count, reply.ids_hash  # type: ignore[attr-defined]

    async def ping(self) -> None:
        """PING → PONG."""
        await self._call(b"", C.PING, None, C.Pong)

    async def resolve(self, name: str | SimplexDomain) -> NameRecord:
        """RSLV → RNAME (v20): the record of ``name``. ERR NAME (NO_RESOLVER, NOT_FOUND,
        RESOLVER ...) raises SMPError; a malformed name raises ParseError before sending."""
        if self.version < V.NAMES:
            raise UnsupportedByVersion("RSLV needs v20+")
        reply = await self._call(b"", C.Rslv(_domain(name)), None, C.Rname)
        return reply.record  # type: ignore[attr-defined]

    # ------------------------------------------------------------------ private routing

    async def proxy_relay(self, relay: str | SMPServer, basic_auth: bytes | str | None = None) -> ProxiedRelay:
        """PRXY (v8+): this server, as an SMP proxy, opens (or reuses) its session with
        ``relay`` and returns it (PKEY, checked against the relay's fingerprint).
        ``basic_auth`` defaults to this server's address password (a proxy with a
        create_password requires it). Raises SMPError (ERR PROXY ...)."""
        if self.version < V.SENDING_PROXY:
            raise UnsupportedByVersion("PRXY needs v8+")
        server = relay if isinstance(relay, SMPServer) else parse_address(relay)[0]
        if basic_auth is None:
            basic_auth = self.basic_auth
        elif isinstance(basic_auth, str):
            basic_auth = basic_auth.encode("latin-1")
        pkey = await self._call(b"", C.Prxy(server, basic_auth), None, C.Pkey)
        try:
            return relay_from_pkey(pkey, server.key_hash, basic_auth=basic_auth)  # type: ignore[arg-type]
        except ProxyLayerError as e:
            raise SMPError(e.error) from None

    async def proxied(self, relay: ProxiedRelay, entity_id: bytes, command: C.Command,
                      key: PrivateKey | None = None) -> Response:
        """PFWD → PRES: ``command`` for ``entity_id`` at the relay, through this proxy; the
        relay's answer (``Err`` included) is returned. The proxy's own ERR (PROXY ...)
        raises SMPError; a PRES that does not open raises ResponseError(CRYPTO)."""
        sent = proxied_command(relay, entity_id, command, key)
        reply = await self.request(relay.session_id, sent.pfwd, corr_id=sent.nonce)
        pres = _check(reply, C.Pres)
        try:
            answer = proxied_response(relay, sent, pres)  # type: ignore[arg-type]
        except CryptoError:
            raise ResponseError(E.CRYPTO) from None
        except ProxyLayerError as e:
            raise ResponseError(e.error) from None
        if answer.error is not None:
            raise ResponseError(answer.error)
        return answer.response  # type: ignore[return-value]

    async def proxied_send(self, relay: ProxiedRelay, snd_id: bytes, body: bytes,
                           sender_key: PrivateKey | None = None, notification: bool = False) -> None:
        """SEND through this proxy (private message routing); ERR from the relay raises SMPError."""
        answer = await self.proxied(relay, snd_id, C.Send(C.MsgFlags(notification), bytes(body)), sender_key)
        _check(answer, C.Ok)

    async def proxied_sender_secure(self, relay: ProxiedRelay, snd_id: bytes, sender_key: PrivateKey) -> None:
        """SKEY through this proxy."""
        _check(await self.proxied(relay, snd_id, C.Skey(sender_key.public.der), sender_key), C.Ok)

    async def proxied_resolve(self, relay: ProxiedRelay, name: str | SimplexDomain) -> NameRecord:
        """RSLV forwarded through this proxy to ``relay`` (the reference's client needs the
        proxied version to be 20 or more). The relay's ERR NAME raises SMPError."""
        if relay.version < V.NAMES:
            raise UnsupportedByVersion("a forwarded RSLV needs the relay's proxied version 20+")
        answer = await self.proxied(relay, b"", C.Rslv(_domain(name)))
        return _check(answer, C.Rname).record  # type: ignore[attr-defined]


def _domain(name: str | SimplexDomain) -> SimplexDomain:
    return name if isinstance(name, SimplexDomain) else parse_domain(name)


def _sok_service(reply: Response) -> bytes | None:
    return reply.service_id if isinstance(reply, C.Sok) else None


def _public_der(key: bytes | PublicKey | PrivateKey) -> bytes:
    if isinstance(key, PrivateKey):
        return key.public.der
    return as_public_key(key).der


@asynccontextmanager
async def connect(address: str | SMPServer, **kwargs) -> AsyncIterator[SMPClient]:
    """``async with connect(address, ...) as client:`` = SMPClient.connect + ``async with``."""
    client = await SMPClient.connect(address, **kwargs)
    async with client:
        yield client
