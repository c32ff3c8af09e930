"""The proxy side of the v18-proxy replay: the relay links of the proxy role, in memory.

The replay's one broker plays both recorded servers (A, the proxy; B, the relay: one
server in both roles). ``MemoryRelays`` has the interface of ``smpfast.proxy.relays.RelayPool``
that ``ProxyService`` uses; its only reachable relay is the transcript's server B (by port
and fingerprint, as PRXY names it), reached through a sans-IO ClientSession (proxy flag)
against a ServerSession of the same broker, with a throw-away certificate chain. Every
other relay is unreachable (PROXY BROKER NETWORK, as a closed port or another fingerprint
on loopback). RFWD blocks go through the broker like any block, so the relay's queue and
its subscriber see the forwarded commands.
"""

from __future__ import annotations

import hashlib
import os

from cryptography.hazmat.primitives import serialization

from smpfast import _core as core
from smpfast.protocol import commands as C
from smpfast.protocol import errors as E
from smpfast.protocol import versions as V
from smpfast.protocol.address import SMPServer
from smpfast.protocol.proxy import forward_command, forwarded_response, ProxyLayerError
from smpfast.protocol.session import ClientSession, ServerSession
from smpfast.protocol.transmission import decode_client_transmissions, encode_client_transmission
from smpfast.proxy.relays import NETWORK, RelayError
from smpfast.testing.broker import BrokerHarness
from smpfast.testing.throwaway_certs import make_cert, new_key
from smpfast.transport.identity import verify_server_chain


class MemoryClient:
    """What ProxyService and RelayPool.forward read of a link's client."""

    def __init__(self, session: ClientSession) -> None:
        self.session_box_key = session.session_box_key
        self.server_session_key = session.server_session_key
        self.via_socks = False
        self.closed = False


class MemoryLink:
    def __init__(self, server: SMPServer, client: ClientSession, peer) -> None:
        self.server = server
        self.session = client
        self.peer = peer
        self.client = MemoryClient(client)
        self.own = False
        self.closed = False

    @property
    def session_id(self) -> bytes:
        return self.session.session_id

    @property
    def version(self) -> int:
        return self.session.version

    @property
    def server_vrange(self) -> V.VersionRange:
        return self.session.server_vrange  # type: ignore[return-value]

    @property
    def cert_key(self):
        return self.session.server_cert_key


class MemoryRelays:
    def __init__(self, harness: BrokerHarness, relay_port: str, relay_key_hash: bytes) -> None:
        self.harness = harness
        self.relay = (relay_port, relay_key_hash)
        self.link: MemoryLink | None = None
        self.opened = 0

    def is_own(self, server: SMPServer) -> bool:
        return False

    def connected(self, server: SMPServer):
        return self.link if self.link is not None and self.link.server == server else None

    def lookup(self, session_id: bytes):
        return self.link if self.link is not None and self.link.session_id == session_id else None

    async def connect(self, server: SMPServer) -> MemoryLink:
        if (server.port, server.key_hash) != self.relay:
            raise RelayError(NETWORK, f"nothing listens at {server} in the replay")
        if self.link is None:
            self.link = self._open(server)
        return self.link

    def _open(self, server: SMPServer) -> MemoryLink:
        ca_key, leaf_key = new_key(), new_key()
        ca = make_cert(ca_key, "relay CA", ca=True)
        leaf = make_cert(leaf_key, "127.0.0.1", issuer_key=ca_key, issuer_cert=ca, ca=False)
        chain = [c.public_bytes(serialization.Encoding.DER) for c in (leaf, ca)]
        key_hash = hashlib.sha256(chain[1]).digest()
        session_id = os.urandom(32)
        relay = ServerSession(session_id, key_hash, chain, leaf_key, V.VersionRange(V.MIN_VERSION, V.MAX_VERSION),
                              os.urandom(32))
        relay.start()
        proxy = ClientSession(session_id, key_hash, V.VersionRange(V.MIN_VERSION, V.MAX_VERSION), verify_server_chain,
                              chain[0], os.urandom(32), proxy_server=True)
        proxy.receive_block(relay.data_to_send())
        relay.receive_block(proxy.data_to_send())
        peer = self.harness.connect(relay.version, session_id, relay.server_session_private,
                                    session_key=relay.session_box_key)
        self.opened += 1
        return MemoryLink(server, proxy, peer)

    async def forward(self, link: MemoryLink, corr_id: bytes, pfwd: C.Pfwd) -> bytes:
        key = link.client.session_box_key
        nonce, rfwd = forward_command(key, corr_id, pfwd)
        t = encode_client_transmission(link.version, link.session_id, nonce, b"", rfwd.encode(link.version))
        self.harness.process(link.peer, core.encode_batch([t], V.BLOCK_SIZE))
        answers = [a for a in self.harness.answers(link.peer) if a[0] == nonce]
        if len(answers) != 1:
            raise AssertionError(f"the relay answered the RFWD {len(answers)} times")
        # the answer as it crosses the link: encoded, then decoded by the proxy's side
        [(_c, entity, msg)] = answers
        from smpfast.protocol.transmission import encode_server_transmission

        wire = encode_server_transmission(link.version, link.session_id, nonce, entity, msg.encode(link.version))
        [r] = decode_client_transmissions(core.encode_batch([wire], V.BLOCK_SIZE), link.version, link.session_id)
        if isinstance(r.response, C.Err):
            raise RelayError(E.proxy_protocol(r.response.error))
        try:
            return forwarded_response(key, nonce, r.response)  # type: ignore[arg-type]
        except ProxyLayerError as e:
            raise RelayError(e.error) from None
