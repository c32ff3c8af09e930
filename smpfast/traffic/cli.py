"""``smpfast traffic [ADDRESS]``: arguments and the run (registered in smpfast/cli.py).

Only argparse is imported at module level: ``smpfast --help`` builds every parser.
"""

from __future__ import annotations

import argparse
import json
import sys

from ..usage import CliError
from . import DEFAULT_MESSAGE_SIZE, DEFAULT_SWEEP, DEFAULT_VERSIONS, IN_PROCESS_MAX_VERSION

# The measurements --mode chooses (the services module's constants, without importing it).
MODES = ("batching", "services")
SERVICES_MIN_VERSION = 19
DEFAULT_SERVICES_SWEEP = (100, 1000, 10000)
MAX_SERVICES_N = 1_000_000

MAX_N = 255 * 8  # a sanity bound: the sweep is about batch sizes, not load


def _int_list(text: str) -> list[int]:
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values:
        raise argparse.ArgumentTypeError("empty list")
    return values


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = (
        "Measure SMP's traffic reduction from batching: blocks, SMP bytes and TLS bytes on the "
        "wire for N subscriptions and N messages, batched (one write of up to 255 commands "
        "per 16 KB block) against unbatched (one request at a time). Without ADDRESS an "
        "in-process smpfast server on 127.0.0.1 (MemoryStore, offering up to "
        f"v{IN_PROCESS_MAX_VERSION}) is started and stopped. The first line is the verdict on "
        "SimpleX v3.1's claim (90 subscriptions: one block instead of 90), at every version "
        "measured, v18 (block encryption) included."
    )
    p.add_argument("address", nargs="?", metavar="ADDRESS",
                   help="server address smp://<fingerprint>[:<password>]@<host>[:<port>] "
                   "(default: an in-process server on loopback)")
    p.add_argument("--mode", choices=MODES, default="batching",
                   help="batching (default): batched against unbatched commands; services: a "
                   "messaging service (v19) re-subscribing N associated queues with one SUBS "
                   "against N SUBs in batches")
    p.add_argument("--sweep", type=_int_list, default=None, metavar="N,N,...",
                   help="the batch sizes N to measure, one row each (default: %s; the verdict "
                   "needs 90); --mode services: the numbers of queues (default: %s)"
                   % (",".join(map(str, DEFAULT_SWEEP)), ",".join(map(str, DEFAULT_SERVICES_SWEEP))))
    p.add_argument("--versions", type=_int_list, default=None, metavar="V,V,...",
                   help="SMP versions to measure; 6 connects without ALPN like a pre-v7 client "
                   "(default: %s, those the server offers; its highest if it has no 18)"
                   % ",".join(map(str, DEFAULT_VERSIONS)))
    p.add_argument("--server-max-version", type=int, default=None, metavar="V",
                   help="without ADDRESS: the highest version the in-process server offers "
                   f"(default: {IN_PROCESS_MAX_VERSION}; --mode services: {SERVICES_MIN_VERSION})")
    p.add_argument("--details", action="store_true",
                   help="print the full table: both directions, blocks, SMP bytes and TLS bytes")
    p.add_argument("--message-size", type=int, default=DEFAULT_MESSAGE_SIZE, metavar="BYTES",
                   help=f"SEND body size (default: {DEFAULT_MESSAGE_SIZE}); a MSG delivery is "
                   "always ~16 KB (padded), so only SEND and ACK traffic can shrink")
    p.add_argument("--json", metavar="FILE", help="write the measurements and reductions as JSON")
    p.add_argument("--plot", metavar="FILE.png",
                   help="draw bytes per command against batch size (needs matplotlib: smpfast[plot])")
    p.add_argument("--private-routing", type=int, default=20, metavar="M",
                   help="then send M messages directly and M through the server as an SMP proxy "
                   "(private message routing) and print the cost per message (default: 20; 0: skip; "
                   "needs a server offering v8+)")
    p.add_argument("--socks5", metavar="HOST:PORT",
                   help="connect to ADDRESS through this SOCKS5 proxy, such as Tor (127.0.0.1:9050); "
                   "needed for a .onion address")
    p.add_argument("--timeout", type=float, default=60.0, metavar="SECONDS",
                   help="bound of each row (default: 60)")


def _validate(args: argparse.Namespace) -> None:
    from smpfast.protocol.versions import ALL_VERSIONS

    services = args.mode == "services"
    if args.sweep is None:
        args.sweep = list(DEFAULT_SERVICES_SWEEP if services else DEFAULT_SWEEP)
    if args.server_max_version is None:
        args.server_max_version = SERVICES_MIN_VERSION if services else IN_PROCESS_MAX_VERSION
    top = MAX_SERVICES_N if services else MAX_N
    if any(n < 1 or n > top for n in args.sweep):
        raise CliError(f"--sweep: every N must be in 1..{top}")
    if services:
        if args.versions is not None and any(v < SERVICES_MIN_VERSION for v in args.versions):
            raise CliError(f"--mode services: messaging services exist from v{SERVICES_MIN_VERSION} (--versions)")
        if args.server_max_version < SERVICES_MIN_VERSION and not args.address:
            raise CliError(f"--mode services needs --server-max-version {SERVICES_MIN_VERSION} or more")
    if args.versions is not None and any(v not in ALL_VERSIONS for v in args.versions):
        raise CliError(f"--versions: known versions are {','.join(map(str, ALL_VERSIONS))}")
    if args.server_max_version not in ALL_VERSIONS or args.server_max_version < 7:
        raise CliError(f"--server-max-version: 7..{max(ALL_VERSIONS)}")
    if not 0 <= args.private_routing <= 10000:
        raise CliError("--private-routing: 0..10000 messages")
    if not 1 <= args.message_size <= 16048:
        raise CliError("--message-size: 1..16048 bytes (the v11+ SEND limit)")
    if args.socks5 is not None:
        if not args.address:
            raise CliError("--socks5 needs an ADDRESS (the in-process server is reached directly)")
        from smpfast.transport.socks import parse_socks_proxy

        try:
            parse_socks_proxy(args.socks5)
        except ValueError as e:
            raise CliError(f"--socks5: {e}") from None
    if args.plot:
        from .plot import PlotUnavailable, _pyplot

        try:
            _pyplot()  # fail before measuring, not after
        except PlotUnavailable as e:
            raise CliError(str(e)) from None


def default_versions(vmin: int, vmax: int) -> list[int]:
    """DEFAULT_VERSIONS that the server offers; its highest when that is not among them."""
    out = [v for v in DEFAULT_VERSIONS if vmin <= v <= vmax]
    if vmax not in out:
        out.append(vmax)
    return sorted(set(out))


def run(args: argparse.Namespace) -> int:
    _validate(args)
    if args.mode == "services":
        return run_services(args)
    if args.address:
        from smpfast.load.config import UsageError
        from smpfast.load.diagnose import check_address

        try:
            check_address(args.address)
        except UsageError as e:
            raise CliError(f"traffic: {e}") from None

    import trio

    from smpfast.client import ClientError, SMPError, parse_address
    from smpfast.protocol.address import format_server
    from .local import local_server
    from .measure import SOCKS5, TrafficError, measure_sweep, server_versions
    from .report import detailed_table, document, table, verdict_lines

    def progress(version: int, n: int) -> None:
        if sys.stderr.isatty():
            print(f"  v{version} N={n} done", file=sys.stderr, flush=True)

    from .routing import measure_private_routing, routing_lines

    servers: list = []
    routing: list = []

    async def main() -> tuple[dict, list]:
        SOCKS5.set(args.socks5)

        async def measure(address: str, kind: str) -> tuple[dict, list]:
            vmin, vmax = await server_versions(address)
            versions = args.versions or default_versions(vmin, vmax)
            missing = [v for v in versions if not (vmin <= v <= vmax or v == 6)]
            if missing:
                raise TrafficError(f"the server offers v{vmin}-v{vmax}, not "
                                   + ", ".join(f"v{v}" for v in missing) + " (--versions)")
            with trio.fail_after(args.timeout * len(versions) * len(args.sweep)):
                results = await measure_sweep(address, versions, args.sweep, args.message_size,
                                              args.timeout, progress)
            srv, _ = parse_address(address)
            doc = document(results, address=format_server(srv), server=kind,
                           server_versions=(vmin, vmax), versions=versions, sweep=args.sweep,
                           message_size=args.message_size)
            if args.private_routing and vmax >= 8:
                links = (lambda: servers[0].relays.links) if servers else None
                try:
                    with trio.fail_after(args.timeout):
                        cost = await measure_private_routing(address, args.private_routing, args.message_size,
                                                             links)
                except SMPError as e:
                    # The server, as a proxy, cannot reach itself at this address (e.g. a
                    # .onion one without its own SOCKS proxy): the direct figures stand.
                    routing.append(f"private routing not measured: the server as an SMP proxy answered "
                                   f"{e} (--private-routing 0 skips it)")
                    doc["private_routing"] = None
                else:
                    routing.append(cost)
                    doc["private_routing"] = cost.to_json()
            return doc, results

        if args.address:
            return await measure(args.address, "external")
        async with local_server(args.server_max_version, on_server=servers.append) as address:
            return await measure(address, "in-process")

    try:
        doc, results = trio.run(main)
    except ClientError as e:
        if not args.address:
            raise CliError(f"traffic: {e}") from None
        from smpfast.load.diagnose import explain  # the load generator's cause-and-fix lines

        phase = "create" if isinstance(e, SMPError) else "connect"
        raise CliError("traffic: " + explain(e, args.address, phase=phase)) from None
    except (TrafficError, ValueError) as e:
        raise CliError(f"traffic: {e}") from None
    except trio.TooSlowError:
        raise CliError("traffic: the measurement took longer than --timeout allows") from None
    for line in verdict_lines(results, doc["verdict"]):
        print(line)
    where = "in-process smpfast server, MemoryStore" if doc["server"] == "in-process" else "external server"
    print(f"\nsmpfast traffic: {doc['address']} ({where}, offers v{doc['server_versions'][0]}"
          f"-v{doc['server_versions'][1]}); versions measured: {', '.join(f'v{v}' for v in doc['versions'])}")
    print(f"SEND bodies {doc['message_size']} B; SMP bytes = blocks x 16384; TLS bytes = bytes on the "
          "socket; reduction = unbatched / batched\n")
    print(detailed_table(results) if args.details else table(results))
    for cost in routing:
        print()
        for line in [cost] if isinstance(cost, str) else routing_lines(cost):
            print(line)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(doc, f, indent=1)
            f.write("\n")
        print(f"JSON written to {args.json}")
    if args.plot:
        from .plot import plot

        plot(results, args.plot)
        print(f"plot written to {args.plot}")
    return 0


def run_services(args: argparse.Namespace) -> int:
    """``--mode services``: one SUBS against N batched SUBs of a messaging service."""
    import trio

    from smpfast.client import ClientError, parse_address
    from smpfast.protocol.address import format_server
    from .local import local_server
    from .measure import SOCKS5, TrafficError, server_versions
    from .services import measure_services, services_document, services_table

    def progress(version: int, n: int) -> None:
        if sys.stderr.isatty():
            print(f"  v{version} N={n} done", file=sys.stderr, flush=True)

    async def main() -> tuple[dict, list]:
        SOCKS5.set(args.socks5)

        async def measure(address: str, kind: str) -> tuple[dict, list]:
            vmin, vmax = await server_versions(address)
            versions = args.versions or [vmax]
            if vmax < SERVICES_MIN_VERSION or any(not vmin <= v <= vmax for v in versions):
                raise TrafficError(f"the server offers v{vmin}-v{vmax}; messaging services need "
                                   f"v{SERVICES_MIN_VERSION}+ (--versions)")
            rows = await measure_services(address, versions, args.sweep, args.timeout, progress)
            srv, _ = parse_address(address)
            doc = services_document(rows, address=format_server(srv), server=kind,
                                    server_versions=[vmin, vmax], versions=versions, sweep=args.sweep)
            return doc, rows

        if args.address:
            return await measure(args.address, "external")
        async with local_server(args.server_max_version) as address:
            return await measure(address, "in-process")

    try:
        doc, rows = trio.run(main)
    except ClientError as e:
        raise CliError(f"traffic: {e}") from None
    except (TrafficError, ValueError) as e:
        raise CliError(f"traffic: {e}") from None
    except trio.TooSlowError:
        raise CliError("traffic: a subscription took longer than --timeout allows") from None
    where = "in-process smpfast server, MemoryStore" if doc["server"] == "in-process" else "external server"
    print(f"smpfast traffic --mode services: {doc['address']} ({where}, offers v{doc['server_versions'][0]}"
          f"-v{doc['server_versions'][1]})")
    print("a messaging service re-subscribes N associated queues: N SUBs in one batch against one SUBS "
          "(until ALLS); SMP bytes = blocks x 16384; reduction = batched / SUBS\n")
    print(services_table(rows))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(doc, f, indent=1)
            f.write("\n")
        print(f"JSON written to {args.json}")
    return 0 if all(r.hash_matches for r in rows) else 1
