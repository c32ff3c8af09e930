"""``smpfast traffic [ADDRESS]``: arguments and the run (registered in smpfast/cli.py).

Only argparse is imported at module level: ``smpfast --help`` builds every parser.
"""

from __future__ import annotations

import argparse
import json
import sys

from ..usage import CliError
from . import DEFAULT_MESSAGE_SIZE, DEFAULT_SWEEP

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
        "in-process smpfast server on 127.0.0.1 (MemoryStore) is started and stopped."
    )
    p.add_argument("address", nargs="?", metavar="ADDRESS",
                   help="server address smp://<fingerprint>[:<password>]@<host>[:<port>] "
                   "(default: an in-process server on loopback)")
    p.add_argument("--sweep", type=_int_list, default=list(DEFAULT_SWEEP), metavar="N,N,...",
                   help="queues per row (default: %s)" % ",".join(map(str, DEFAULT_SWEEP)))
    p.add_argument("--versions", type=_int_list, default=None, metavar="V,V,...",
                   help="SMP versions to measure; 6 connects without ALPN like a pre-v7 client "
                   "(default: every version the server offers, 6 up to its max)")
    p.add_argument("--message-size", type=int, default=DEFAULT_MESSAGE_SIZE, metavar="BYTES",
                   help=f"SEND body size (default: {DEFAULT_MESSAGE_SIZE}); a MSG delivery is "
                   "always ~16 KB (padded), so only SEND and ACK traffic can shrink")
    p.add_argument("--json", metavar="FILE", help="write the measurements and reductions as JSON")
    p.add_argument("--plot", metavar="FILE.png",
                   help="draw bytes per command against batch size (needs matplotlib: smpfast[plot])")
    p.add_argument("--timeout", type=float, default=60.0, metavar="SECONDS",
                   help="bound of each row (default: 60)")


def _validate(args: argparse.Namespace) -> None:
    from smpfast.protocol.versions import ALL_VERSIONS

    if any(n < 1 or n > MAX_N for n in args.sweep):
        raise CliError(f"--sweep: every N must be in 1..{MAX_N}")
    if args.versions is not None and any(v not in ALL_VERSIONS for v in args.versions):
        raise CliError(f"--versions: known versions are {','.join(map(str, ALL_VERSIONS))}")
    if not 1 <= args.message_size <= 16048:
        raise CliError("--message-size: 1..16048 bytes (the v11+ SEND limit)")
    if args.plot:
        from .plot import PlotUnavailable, _pyplot

        try:
            _pyplot()  # fail before measuring, not after
        except PlotUnavailable as e:
            raise CliError(str(e)) from None


def run(args: argparse.Namespace) -> int:
    _validate(args)

    import trio

    from smpfast.client import ClientError, parse_address
    from smpfast.protocol.address import format_server
    from smpfast.protocol.versions import ALL_VERSIONS

    from .local import local_server
    from .measure import TrafficError, measure_sweep, server_versions
    from .report import document, table

    def progress(version: int, n: int) -> None:
        if sys.stderr.isatty():
            print(f"  v{version} N={n} done", file=sys.stderr, flush=True)

    async def main() -> tuple[dict, list]:
        async def measure(address: str, kind: str) -> tuple[dict, list]:
            vmin, vmax = await server_versions(address)
            versions = args.versions or [v for v in ALL_VERSIONS if vmin <= v <= vmax]
            with trio.fail_after(args.timeout * len(versions) * len(args.sweep)):
                results = await measure_sweep(address, versions, args.sweep, args.message_size,
                                              args.timeout, progress)
            srv, _ = parse_address(address)
            return document(results, address=format_server(srv), server=kind,
                            server_versions=(vmin, vmax), versions=versions, sweep=args.sweep,
                            message_size=args.message_size), results

        if args.address:
            return await measure(args.address, "external")
        async with local_server() as address:
            return await measure(address, "in-process")

    try:
        doc, results = trio.run(main)
    except (ClientError, TrafficError, ValueError) as e:
        raise CliError(f"traffic: {e}") from None
    except trio.TooSlowError:
        raise CliError("traffic: the measurement took longer than --timeout allows") from None
    where = "in-process smpfast server, MemoryStore" if doc["server"] == "in-process" else "external server"
    print(f"smpfast traffic: {doc['address']} ({where}, offers v{doc['server_versions'][0]}"
          f"-v{doc['server_versions'][1]})")
    print(f"SEND bodies {doc['message_size']} B; SMP bytes = blocks × 16384; TLS bytes = bytes on the "
          "socket; ratio = unbatched / batched\n")
    print(table(results))
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
