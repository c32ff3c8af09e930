"""Which hosts of an address are tried, in what order, and which through SOCKS."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smpfast.transport.hosts import NoUsableHost, Route, routes

O1, O2 = "a" * 56 + ".onion", "b" * 56 + ".onion"


def test_public_first_and_onion_only_through_socks() -> None:
    hosts = (O1, "smp.example.com", "192.0.2.1")
    assert routes(hosts, socks=False) == [Route("smp.example.com", False), Route("192.0.2.1", False)]
    assert routes(hosts, socks=True, socks_mode="onion") == [
        Route("smp.example.com", False), Route("192.0.2.1", False), Route(O1, True)]
    assert routes(hosts, socks=True, socks_mode="always") == [
        Route("smp.example.com", True), Route("192.0.2.1", True), Route(O1, True)]


def test_host_mode_onion_prefers_onion_only_with_socks() -> None:
    hosts = ("smp.example.com", O1)
    assert routes(hosts, socks=True, socks_mode="onion", host_mode="onion") == [
        Route(O1, True), Route("smp.example.com", False)]
    assert routes(hosts, socks=False, host_mode="onion") == [Route("smp.example.com", False)]


def test_required_host_mode_and_unusable_addresses() -> None:
    with pytest.raises(NoUsableHost, match="SOCKS"):
        routes((O1, O2), socks=False)
    with pytest.raises(NoUsableHost, match="no public host"):
        routes((O1,), socks=True, required_host_mode=True)
    assert routes(("h", O1), socks=True, required_host_mode=True) == [Route("h", True)]
    with pytest.raises(ValueError):
        routes(("h",), socks=True, socks_mode="sometimes")


@given(st.lists(st.sampled_from(["h1", "h2", "10.0.0.1", O1, O2]), min_size=1, max_size=5, unique=True),
       st.booleans(), st.sampled_from(["always", "onion"]), st.sampled_from(["public", "onion"]))
def test_every_route_is_a_host_and_onion_never_direct(hosts, socks, socks_mode, host_mode) -> None:
    try:
        out = routes(hosts, socks=socks, socks_mode=socks_mode, host_mode=host_mode)
    except NoUsableHost:
        assert not socks and all(h.endswith(".onion") for h in hosts)
        return
    assert sorted(r.host for r in out) == sorted(h for h in hosts if socks or not h.endswith(".onion"))
    assert all(r.via_socks for r in out if r.host.endswith(".onion"))
    assert all(r.via_socks == (socks and socks_mode == "always") for r in out if not r.host.endswith(".onion"))
