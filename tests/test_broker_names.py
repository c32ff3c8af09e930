"""RSLV in the broker (sans-IO, SMP v20): the reference 7.0.0.3's answers with and without a
resolver, at every version, in service sessions, and forwarded inside RFWD (the relay role),
with the rslv statistics (docs/protocol-v19-v20.md §4.2, §5)."""

from __future__ import annotations

import os

import pytest

from smpfast import _core as core
from smpfast.crypto import auth as cauth
from smpfast.crypto.keys import Alg, PrivateKey
from smpfast.protocol import commands as C
from smpfast.protocol import errors as E
from smpfast.protocol import proxy as P
from smpfast.protocol import versions as V
from smpfast.protocol.commands import ServiceRole
from smpfast.protocol.names import NameRecord, SimplexDomain, parse_domain
from smpfast.protocol.session import ServiceIdentity
from smpfast.server.broker import Broker, BrokerConfig
from smpfast.server.names import NAME_STATS, NameRequest
from smpfast.store import MemoryStore
from smpfast.testing.broker import BrokerHarness

V20 = V.NAMES
ALICE = NameRecord("Alice", nickname="al", simplex_contact=("https://simplex.chat/contact#abc",),
                   eth="0x" + "ab" * 20, owner="0x" + "01" * 20, resolver="0x" + "02" * 20)
NO_RESOLVER = C.Err(E.NAME_NO_RESOLVER)


class FakeRegistry:
    """What the shell's resolver would answer, recording the names asked."""

    def __init__(self) -> None:
        self.asked: list[SimplexDomain] = []
        self.answers = {"alice.simplex": ALICE, "broken.simplex": E.NameResolutionError("RESOLVER", "HTTP 502")}

    def __call__(self, domain: SimplexDomain):
        self.asked.append(domain)
        return self.answers.get(domain.full_name, E.NameResolutionError("NOT_FOUND"))


def world(names_enabled: bool):
    broker = Broker(MemoryStore(), BrokerConfig(names_enabled=names_enabled))
    registry = FakeRegistry()
    return broker, BrokerHarness(broker, resolve=registry), registry


class Client:
    def __init__(self, harness: BrokerHarness, version: int = V20, service: ServiceIdentity | None = None,
                 session_key: bytes | None = None) -> None:
        self.harness = harness
        self.version = version
        self.session_id = os.urandom(32)
        self.session_private = os.urandom(32)
        self.peer = harness.connect(version, self.session_id, self.session_private, service, session_key)

    def transmission(self, corr: bytes, body: bytes, entity: bytes = b"", auth: bytes = b"") -> bytes:
        return core.encode_transmission(auth, corr, entity, body, self.session_id, self.version >= 7,
                                        self.version >= V.SERVICE_CERTS, None)

    def block(self, *transmissions: bytes) -> list[tuple]:
        self.harness.process(self.peer, core.encode_batch(list(transmissions), 16384))
        return self.harness.answers(self.peer)

    def rslv(self, body: bytes, corr: bytes = b"c1", **kw) -> tuple:
        [answer] = self.block(self.transmission(corr, body, **kw))
        return answer


def stats(broker: Broker) -> dict[str, int]:
    return {name: broker.stats.get(name, 0) for name in NAME_STATS}


# ---------------------------------------------------------------- no resolver configured

@pytest.mark.parametrize("version", [6, 7, 8, 16, 18, V.RCV_SERVICE, V20])
def test_without_a_resolver_rslv_answers_no_resolver_at_any_version(version: int) -> None:
    """Not version-gated on the server: the reference parses and answers RSLV at any
    session version (its clients only send it from 20)."""
    broker, h, _ = world(False)
    c = Client(h, version)
    assert c.rslv(b"RSLV alice.simplex", b"corr-1") == (b"corr-1", b"", NO_RESOLVER)
    assert stats(broker) == {"rslvReqs": 1, "rslvSucc": 0, "rslvNotFound": 0, "rslvResolverErrs": 0,
                             "rslvDisabled": 1}


def test_no_resolver_answer_is_immediate_and_in_block_order() -> None:
    broker, h, _ = world(False)
    c = Client(h)
    effects = broker.process_block(c.peer, core.encode_batch([
        c.transmission(b"1", b"PING"), c.transmission(b"2", b"RSLV bob.testing"), c.transmission(b"3", b"PING")], 16384))
    assert not effects.proxied
    [(_, batch)] = effects.replies
    assert batch == [(b"1", b"", C.PONG), (b"2", b"", NO_RESOLVER), (b"3", b"", C.PONG)]


@pytest.mark.parametrize("body, error", [
    (b"RSLV", "CMD SYNTAX"),
    (b"RSLV ", "CMD SYNTAX"),
    (b"RSLV alice", "CMD SYNTAX"),  # no TLD
    (b"RSLV alice..simplex", "CMD SYNTAX"),
    (b"RSLV -alice.simplex", "CMD SYNTAX"),
    (b"RSLV al--ice.simplex", "CMD SYNTAX"),
    (b"RSLV al_ice.simplex", "CMD SYNTAX"),
    (b"RSLV " + b"a" * 64 + b".simplex", "CMD SYNTAX"),
    (b"RSLV " + b".".join([b"a" * 50] * 5) + b".simplex", "CMD SYNTAX"),  # 262 > 253 bytes
    (b"RSLV \xc3\xa9.simplex", "CMD SYNTAX"),
    (b"RSLV\talice.simplex", "CMD UNKNOWN"),  # the tag ends at a space only
    (b"RSLVX alice.simplex", "CMD UNKNOWN"),
])
def test_malformed_rslv(body: bytes, error: str) -> None:
    broker, h, registry = world(True)
    corr, entity, answer = Client(h).rslv(body, b"bad")
    assert (corr, isinstance(answer, C.Err), str(answer.error)) == (b"bad", True, error)
    assert registry.asked == [] and stats(broker)["rslvReqs"] == 0


def test_whatever_follows_the_name_is_ignored_and_case_folds() -> None:
    broker, h, registry = world(True)
    c = Client(h)
    assert c.rslv(b"RSLV Alice.SimpleX and more\x00bytes", b"x") == (b"x", b"", C.Rname(ALICE))
    assert registry.asked == [SimplexDomain(("alice", "simplex"))]


@pytest.mark.parametrize("kw", [{"entity": b"q" * 24}, {"auth": b"s" * 64}])
def test_rslv_takes_neither_entity_nor_authorization(kw: dict) -> None:
    broker, h, registry = world(True)
    corr, entity, answer = Client(h).rslv(b"RSLV alice.simplex", b"e", **kw)
    assert corr == b"e" and isinstance(answer, C.Err) and answer.error == E.CMD_HAS_AUTH
    assert registry.asked == []


def service(broker: Broker, role: ServiceRole) -> ServiceIdentity:
    service_id, _ = broker.get_create_service(role.value, (b"cert",), os.urandom(32))
    return ServiceIdentity(service_id, role, os.urandom(32), PrivateKey(Alg.ED25519, os.urandom(32)).public.raw)


@pytest.mark.parametrize("role, allowed", [(ServiceRole.MESSAGING, True), (ServiceRole.NOTIFIER, False),
                                           (ServiceRole.PROXY, False)])
def test_service_sessions_need_the_messaging_role(role: ServiceRole, allowed: bool) -> None:
    broker, h, _ = world(False)
    c = Client(h, service=service(broker, role))
    expected = NO_RESOLVER if allowed else C.Err(E.CMD_PROHIBITED)
    assert c.rslv(b"RSLV alice.simplex") == (b"c1", b"", expected)


# ---------------------------------------------------------------- with a resolver

def test_with_a_resolver_the_broker_hands_the_rslv_to_the_shell() -> None:
    broker, h, _ = world(True)
    c = Client(h)
    effects = broker.process_block(c.peer, core.encode_batch([
        c.transmission(b"1", b"PING"), c.transmission(b"2", b"RSLV alice.simplex")], 16384))
    [(_, batch)] = effects.replies
    assert batch == [(b"1", b"", C.PONG)]  # no answer for the RSLV yet
    assert effects.proxied == [NameRequest(c.peer.id, b"2", parse_domain("alice.simplex"))]
    assert stats(broker)["rslvReqs"] == 1 and stats(broker)["rslvDisabled"] == 0


@pytest.mark.parametrize("name, answer, counter", [
    (b"alice.simplex", C.Rname(ALICE), "rslvSucc"),
    (b"nobody.simplex", C.Err(E.NAME_NOT_FOUND), "rslvNotFound"),
    (b"broken.simplex", C.Err(E.name_resolver("HTTP 502")), "rslvResolverErrs"),
])
def test_resolution_answers_and_counters(name: bytes, answer: C.Response, counter: str) -> None:
    broker, h, _ = world(True)
    c = Client(h, V20)
    assert c.rslv(b"RSLV " + name, b"r") == (b"r", b"", answer)
    expected = dict.fromkeys(NAME_STATS, 0) | {"rslvReqs": 1, counter: 1}
    assert stats(broker) == expected


def test_resolution_answers_follow_the_block_answers() -> None:
    broker, h, _ = world(True)
    c = Client(h)
    answers = c.block(c.transmission(b"1", b"RSLV alice.simplex"), c.transmission(b"2", b"PING"),
                      c.transmission(b"3", b"RSLV nobody.simplex"))
    # Resolutions answer after the block's own answers, each when its resolver replies
    # (the reference forks them, so their order among themselves is not fixed).
    assert answers[0] == (b"2", b"", C.PONG)
    assert sorted(answers[1:]) == [(b"1", b"", C.Rname(ALICE)), (b"3", b"", C.Err(E.NAME_NOT_FOUND))]


# ---------------------------------------------------------------- forwarded (the relay role)

class Link:
    """A proxy's connection to the relay (the broker's peer) and one client behind it."""

    def __init__(self, h: BrokerHarness, version: int = V20, inner_version: int = V20,
                 service: ServiceIdentity | None = None) -> None:
        self.link_key = os.urandom(32)
        self.proxy = Client(h, version, service=service, session_key=self.link_key)
        relay_public = PrivateKey(Alg.X25519, self.proxy.session_private).public.raw
        self.relay = P.ProxiedRelay(self.proxy.session_id, inner_version, relay_public)

    def forward(self, command: C.Command | bytes, entity: bytes = b""):
        """The RFWD of the client's PFWD: (what opens its answer, the RFWD transmission)."""
        sent = P.proxied_command(self.relay, entity, command)
        rfwd_corr, rfwd = P.forward_command(self.link_key, sent.nonce, sent.pfwd)
        return sent, rfwd_corr, self.proxy.transmission(rfwd_corr, rfwd.encode(self.proxy.version))

    def open(self, sent, rfwd_corr: bytes, rres: C.Response):
        assert isinstance(rres, C.Rres), rres
        enc = P.forwarded_response(self.link_key, rfwd_corr, rres)
        return P.proxied_response(self.relay, sent, C.Pres(enc))


@pytest.mark.parametrize("inner_version", [8, 17, V20])
def test_forwarded_without_a_resolver_is_sealed_at_once(inner_version: int) -> None:
    broker, h, _ = world(False)
    link = Link(h, inner_version=inner_version)
    sent, rfwd_corr, t = link.forward(C.Rslv(parse_domain("alice.simplex")))
    effects = broker.process_block(link.proxy.peer, core.encode_batch([t], 16384))
    assert not effects.proxied
    [(_, [(corr, entity, rres)])] = effects.replies
    assert (corr, entity) == (rfwd_corr, b"")
    inner = link.open(sent, rfwd_corr, rres)
    assert (inner.corr_id, inner.entity_id, inner.response) == (sent.nonce, b"", NO_RESOLVER)
    assert broker.stats["pMsgFwdsRecv"] == 1 and stats(broker)["rslvDisabled"] == 1


@pytest.mark.parametrize("name, answer, counter", [
    ("alice.simplex", C.Rname(ALICE), "rslvSucc"),
    ("nobody.simplex", C.Err(E.NAME_NOT_FOUND), "rslvNotFound"),
    ("broken.simplex", C.Err(E.name_resolver("HTTP 502")), "rslvResolverErrs"),
])
def test_forwarded_with_a_resolver_answers_rres_when_resolved(name: str, answer: C.Response, counter: str) -> None:
    broker, h, _ = world(True)
    link = Link(h)
    sent, rfwd_corr, t = link.forward(C.Rslv(parse_domain(name)))
    effects = broker.process_block(link.proxy.peer, core.encode_batch([t], 16384))
    assert effects.replies == [] or all(not batch for _, batch in effects.replies)  # nothing yet
    [request] = effects.proxied
    assert isinstance(request, NameRequest) and request.corr_id == rfwd_corr and request.forwarded is not None
    assert broker.stats["pMsgFwdsRecv"] == 1
    h.apply(link.proxy.peer, effects)
    [(corr, entity, rres)] = h.answers(link.proxy.peer)
    assert (corr, entity) == (rfwd_corr, b"")  # the RFWD's corrId, no entity
    inner = link.open(sent, rfwd_corr, rres)
    assert (inner.corr_id, inner.entity_id, inner.response) == (sent.nonce, b"", answer)
    assert stats(broker) == dict.fromkeys(NAME_STATS, 0) | {"rslvReqs": 1, counter: 1}


def test_forwarded_rslv_with_an_entity_is_has_auth_inside() -> None:
    broker, h, registry = world(True)
    link = Link(h)
    sent, rfwd_corr, t = link.forward(C.Rslv(parse_domain("alice.simplex")), entity=b"q" * 24)
    [(corr, _, rres)] = link.proxy.block(t)
    inner = link.open(sent, rfwd_corr, rres)
    assert inner.error == E.CMD_HAS_AUTH or inner.response == C.Err(E.CMD_HAS_AUTH)
    assert registry.asked == []


def test_forwarded_malformed_name_is_syntax_inside() -> None:
    broker, h, registry = world(True)
    link = Link(h)
    sent, rfwd_corr, t = link.forward(b"RSLV not_a_name.simplex")
    [(corr, _, rres)] = link.proxy.block(t)
    inner = link.open(sent, rfwd_corr, rres)
    assert inner.error == E.CMD_SYNTAX or inner.response == C.Err(E.CMD_SYNTAX)
    assert registry.asked == []


def test_forwarded_rslv_over_a_proxy_service_link_is_resolved() -> None:
    """The reference verifies forwarded commands without the link's service: a proxy
    connected as a 'P' service still gets RSLV resolved (directly it would be PROHIBITED)."""
    broker, h, _ = world(True)
    link = Link(h, service=service(broker, ServiceRole.PROXY))
    sent, rfwd_corr, t = link.forward(C.Rslv(parse_domain("alice.simplex")))
    [(corr, _, rres)] = link.proxy.block(t)
    assert link.open(sent, rfwd_corr, rres).response == C.Rname(ALICE)


def test_prohibited_commands_still_prohibited_when_forwarded() -> None:
    broker, h, _ = world(True)
    link = Link(h)
    sent, rfwd_corr, t = link.forward(C.PING)
    [(corr, _, rres)] = link.proxy.block(t)
    assert link.open(sent, rfwd_corr, rres).response == C.Err(E.CMD_PROHIBITED)
