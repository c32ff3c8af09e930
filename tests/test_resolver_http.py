"""The names server's HTTP resolver client against a real local resolver on 127.0.0.1
(smpfast.testing.resolver): the reference's request, status mapping, size and time limits,
no redirects, the Authorization header, the health probe (docs/protocol-v19-v20.md §5)."""

from __future__ import annotations

import socket

import pytest
import trio

from smpfast.protocol import errors as E
from smpfast.protocol.names import NameRecord, parse_domain
from smpfast.server.resolver import HttpResolver, ResolverSettings
from smpfast.testing.resolver import LocalResolver, Reply

ALICE = NameRecord("Alice", website="https://alice.example", simplex_contact=("https://smp.example/a#k", "b"),
                   btc="bc1qxyz", owner="0x" + "aa" * 20, resolver="0x" + "bb" * 20)
TIMEOUT = 0.5


def settings(lr: LocalResolver, **kw) -> ResolverSettings:
    kw.setdefault("timeout", TIMEOUT)
    kw.setdefault("max_response_bytes", 16000)
    return ResolverSettings(kw.pop("endpoint", lr.endpoint), **kw)


def resolve_all(lr: LocalResolver, names: list[str], **kw) -> list:
    async def main():
        resolver = HttpResolver(settings(lr, **kw))
        try:
            return [await resolver.resolve(parse_domain(n)) for n in names]
        finally:
            await resolver.aclose()

    return trio.run(main)


def resolve(lr: LocalResolver, name: str, **kw):
    [result] = resolve_all(lr, [name], **kw)
    return result


def resolver_error(text: str) -> E.NameResolutionError:
    return E.NameResolutionError("RESOLVER", text)


def test_found_record_and_the_request_sent() -> None:
    with LocalResolver({"alice.simplex": ALICE}) as lr:
        assert resolve(lr, "Alice.SIMPLEX") == ALICE
        [req] = lr.resolve_requests()
    assert req.path == "/resolve/alice.simplex"
    assert req.headers["accept"] == "application/json"
    assert req.headers["accept-encoding"] == "identity"
    assert "authorization" not in req.headers  # only when configured


@pytest.mark.parametrize("status, expected", [
    (404, E.NameResolutionError("NOT_FOUND")),
    (400, E.NameResolutionError("NOT_FOUND")),
    (500, resolver_error("HTTP 500")),
    (502, resolver_error("HTTP 502")),
    (401, resolver_error("HTTP 401")),
    (418, resolver_error("HTTP 418")),
])
def test_status_mapping(status: int, expected) -> None:
    with LocalResolver({"x.simplex": Reply(status, b'{"error":"x"}')}) as lr:
        assert resolve(lr, "x.simplex") == expected


def test_unregistered_name_is_not_found() -> None:
    with LocalResolver({}) as lr:
        assert resolve(lr, "nobody.testing") == E.NameResolutionError("NOT_FOUND")


def test_body_limit_is_exact() -> None:
    limit = 1024
    exact = ALICE.to_json()
    exact = exact[:-1] + b" " * (limit - len(exact)) + b"}"  # JSON whitespace pads it to the limit
    assert len(exact) == limit
    with LocalResolver({"fits.simplex": Reply(200, exact), "over.simplex": Reply(200, exact + b" "),
                        "huge.simplex": Reply(200, b"{" + b" " * 5_000_000 + b"}")}) as lr:
        results = resolve_all(lr, ["fits.simplex", "over.simplex", "huge.simplex"], max_response_bytes=limit)
    assert results == [ALICE, resolver_error("response too large"), resolver_error("response too large")]


@pytest.mark.parametrize("body", [
    b"{nope", b"", b"[]", b'{"name":"a"}', b'{"name":null,"nickname":"","website":"","location":"",'
    b'"simplexContact":[],"simplexChannel":[],"owner":"","resolver":""}', ALICE.to_json() + b"x",
])
def test_bad_json_is_invalid_response(body: bytes) -> None:
    with LocalResolver({"bad.simplex": Reply(200, body)}) as lr:
        assert resolve(lr, "bad.simplex") == resolver_error("invalid response")


def test_slow_body_hits_the_overall_timeout() -> None:
    """Each byte comes well within the HTTP read timeout; the whole takes longer."""
    with LocalResolver({"drip.simplex": Reply(200, ALICE.to_json(), trickle=0.05)}) as lr:
        assert resolve(lr, "drip.simplex") == resolver_error("timeout")


def test_slow_headers_time_out() -> None:
    """No response within the timeout: the overall limit or the HTTP one fires (the
    reference has the same race: "timeout" or "transport failure")."""
    with LocalResolver({"slow.simplex": Reply(200, ALICE.to_json(), delay=3 * TIMEOUT)}) as lr:
        result = resolve(lr, "slow.simplex")
    assert result in (resolver_error("timeout"), resolver_error("transport failure"))


def test_connection_refused_is_transport_failure() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: connections are refused
        with LocalResolver() as lr:
            assert resolve(lr, "a.simplex", endpoint=f"http://127.0.0.1:{port}") == resolver_error("transport failure")


def test_redirects_are_not_followed() -> None:
    with LocalResolver({"alice.simplex": ALICE}) as lr:
        lr.records["moved.simplex"] = Reply(302, b"", headers={"Location": lr.endpoint + "/resolve/alice.simplex"})
        assert resolve(lr, "moved.simplex") == resolver_error("invalid response")
        assert [r.path for r in lr.resolve_requests()] == ["/resolve/moved.simplex"]


def test_authorization_header_is_sent_and_checked() -> None:
    with LocalResolver({"alice.simplex": ALICE}, authorization="Bearer s3cret") as lr:
        assert resolve(lr, "alice.simplex", authorization="Bearer s3cret") == ALICE
        assert resolve(lr, "alice.simplex", authorization="Bearer wrong") == resolver_error("HTTP 401")
        assert resolve(lr, "alice.simplex") == resolver_error("HTTP 401")
        assert [r.headers.get("authorization") for r in lr.resolve_requests()] == [
            "Bearer s3cret", "Bearer wrong", None]


def test_endpoint_path_prefix_is_kept() -> None:
    with LocalResolver({"alice.simplex": ALICE}) as lr:
        assert resolve(lr, "alice.simplex", endpoint=lr.endpoint + "/api") == E.NameResolutionError("NOT_FOUND")
        assert lr.requests[-1].path == "/api/resolve/alice.simplex"


def test_connections_are_kept_alive() -> None:
    with LocalResolver({"alice.simplex": ALICE}) as lr:
        assert resolve_all(lr, ["alice.simplex"] * 5) == [ALICE] * 5
    # one kept-alive TCP connection carried all five
    assert len(lr.requests) == 5 and len({r.client_port for r in lr.requests}) == 1


def probe(endpoint: str, **kw) -> str | None:
    async def main():
        resolver = HttpResolver(ResolverSettings(endpoint, kw.pop("timeout", TIMEOUT), 16000, **kw))
        try:
            return await resolver.probe()
        finally:
            await resolver.aclose()

    return trio.run(main)


def test_health_probe() -> None:
    with LocalResolver() as lr:
        assert probe(lr.endpoint) is None
        assert lr.requests[-1].path == "/health"
    with LocalResolver(health=Reply(503, b"starting")) as lr:
        assert probe(lr.endpoint) == "HTTP 503"
    with LocalResolver(health=Reply(200, b"ok", delay=3 * TIMEOUT)) as lr:
        assert probe(lr.endpoint) in ("timeout", "transport failure")
    with LocalResolver(authorization="Bearer t") as lr:
        assert probe(lr.endpoint) == "HTTP 401"
        assert probe(lr.endpoint, authorization="Bearer t") is None
