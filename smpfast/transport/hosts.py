"""Which of a server's hosts to try, and which through SOCKS (sans-IO).

An address may name several hosts (``smp://fp@host,xxxx.onion:port``). The reference
picks one host by its host mode (``chooseTransportHost``): ``public`` prefers the first
public host, ``onion`` prefers the first ``.onion`` host when a SOCKS proxy is set; with
``required_host_mode`` a server without a host of that kind is an error (PROXY BROKER
HOST), otherwise it falls back to the first host. smpfast tries the hosts in that order of
preference until one connects (the first reachable), and never tries a ``.onion`` host
without a SOCKS proxy: only Tor can reach it. ``socks_mode`` says which hosts go through
the proxy: ``always`` all, ``onion`` only ``.onion`` hosts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

SOCKS_MODES = ("always", "onion")
HOST_MODES = ("public", "onion")


class NoUsableHost(Exception):
    """No host of the address may be tried (the reference's PCEIncompatibleHost: HOST)."""


def is_onion(host: str) -> bool:
    return host.lower().endswith(".onion")


@dataclass(frozen=True, slots=True)
class Route:
    host: str
    via_socks: bool


def routes(
    hosts: Sequence[str],
    *,
    socks: bool,
    socks_mode: str = "always",
    host_mode: str = "public",
    required_host_mode: bool = False,
) -> list[Route]:
    """The hosts to try, in order, each with whether it goes through SOCKS."""
    if socks_mode not in SOCKS_MODES:
        raise ValueError(f"socks_mode must be one of {', '.join(SOCKS_MODES)}, not {socks_mode!r}")
    if host_mode not in HOST_MODES:
        raise ValueError(f"host_mode must be one of {', '.join(HOST_MODES)}, not {host_mode!r}")
    onion = [h for h in hosts if is_onion(h)]
    public = [h for h in hosts if not is_onion(h)]
    prefer_onion = host_mode == "onion" and socks
    preferred, others = (onion, public) if prefer_onion else (public, onion)
    if required_host_mode:
        if not preferred:
            kind = "onion" if prefer_onion else "public"
            raise NoUsableHost(f"no {kind} host in {','.join(hosts)} (required_host_mode)")
        others = []
    ordered = preferred + others
    out = [Route(h, socks and (socks_mode == "always" or is_onion(h))) for h in ordered if socks or not is_onion(h)]
    if not out:
        raise NoUsableHost(f"only .onion hosts in {','.join(hosts)}: they need a SOCKS proxy (such as Tor)")
    return out
