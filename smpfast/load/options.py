"""``smpfast load`` command-line options → LoadConfig. Imports nothing heavy, so that
``smpfast --help`` stays fast."""

from __future__ import annotations

import argparse
import sys

from . import exitcodes
from .config import (
    AUTH_ALGS,
    DEFAULT_DURATION,
    DEFAULT_SUBSCRIBE_CONNECTIONS,
    DEFAULT_SUBSCRIBE_QUEUES,
    OPEN_LOOP_CONCURRENCY,
    SCENARIOS,
    STAGE_TARGETS,
    SUBSCRIBE_MODES,
    LoadConfig,
    Thresholds,
    Warmup,
    parse_seconds,
    parse_warmup,
)
from .stages import parse_stages

HELP = "generate load on any SMP server over the wire protocol (CI thresholds via exit code)"

DESCRIPTION = """\
Drive an SMP server (smpfast or the reference smp-server) through the wire protocol and
report throughput, HdrHistogram latency percentiles, errors, blocks and bytes.

scenarios:
  messaging  P sender->recipient pairs over Q queues; every message is received, checked
             and acknowledged. Latency: intended send time -> MSG checked at the recipient.
  subscribe  create N queues, then re-subscribe them from C new connections in batches
             of B (B=1: unbatched): the reconnect storm. Throughput in SUB/s.
             --mode services: one messaging service (v19) creates the N queues, reconnects
             and subscribes them all with one SUBS (until ALLS); queues/s.
  fanout     one sender sends each message to the queues of a group of G members.

load models:
  closed loop (default)  each sender keeps --concurrency sends in flight; a send is in
                         flight until its recipient(s) received it.
  open loop (--rate R)   R messages/s in total on a fixed schedule, whatever the server
                         does; latency counts from the intended send time (coordinated
                         omission correction, as wrk2).
  stages (--stages)      the rate (default) or the concurrency (--stage-target concurrency)
                         ramps linearly from stage to stage, as k6's stages.

A run that ends early, loses connections or loses messages fails (exit code 3) unless
--allow-errors. Ctrl-C stops sending, writes the partial report and exits 130.

merge reports (several runs, or several machines):
  smpfast load merge A.json B.json [--json OUT.json] [--hgrm OUT.hgrm] [--latency-spectrum]"""


def _type(parse, what: str):
    def convert(text: str):
        try:
            return parse(text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(f"invalid {what}: {e}") from None

    return convert


def _usage_exit(parser: argparse.ArgumentParser):
    # argparse exits 2 on usage errors; 2 means "threshold breached" here.
    def error(message: str):
        parser.print_usage(sys.stderr)
        parser.exit(exitcodes.USAGE_OR_SETUP, f"{parser.prog}: error: {message}\n")

    return error


MERGE_DESCRIPTION = """\
Merge smpfast load JSON reports into one: the latency histograms are added exactly
(HdrHistogram), so the merged percentiles are those of all the samples together; counts,
errors and traffic add up. Reports whose runs overlap in time (generators started together)
add their throughput; runs one after another divide all messages by the total elapsed
time (--mode). Thresholds, failures and the exit code are decided again on the merged
results, with the first report's options."""


def merge_parser(prog: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=MERGE_DESCRIPTION,
                                epilog=exitcodes.HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.error = _usage_exit(p)  # type: ignore[method-assign]
    p.add_argument("reports", nargs="+", metavar="REPORT.json", help="smpfast load --json reports")
    p.add_argument("--mode", choices=("auto", "concurrent", "sequential"), default="auto",
                   help="auto (default): concurrent when the runs overlap in time, else sequential")
    p.add_argument("--json", metavar="FILE", help="write the merged report to FILE (- for stdout)")
    p.add_argument("--hgrm", metavar="FILE", help="write the merged primary latency's .hgrm to FILE")
    p.add_argument("--latency-spectrum", action="store_true", help="print the merged percentile spectrum")
    return p


def _run_merge(args: argparse.Namespace) -> int:
    from .main import run_merge  # lazily: keeps `smpfast --help` fast

    return run_merge(args)


def _strict(parser: argparse.ArgumentParser):
    # The top-level parser would report unknown options itself, with exit code 2.
    parse_known = parser.parse_known_args

    def parse_known_args(args=None, namespace=None):
        if args and args[0] == "merge":  # `smpfast load merge ...` (no address is "merge")
            namespace = merge_parser(f"{parser.prog} merge").parse_args(args[1:], namespace)
            namespace._run = _run_merge
            return namespace, []
        namespace, extras = parse_known(args, namespace)
        if extras:
            parser.error(f"unrecognized arguments: {' '.join(extras)}")
        return namespace, []

    return parse_known_args


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = DESCRIPTION
    p.epilog = exitcodes.HELP + "\n\nJSON report schema and examples: docs/load.md"
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.error = _usage_exit(p)  # type: ignore[method-assign]
    p.parse_known_args = _strict(p)  # type: ignore[method-assign]

    p.add_argument("address", metavar="ADDRESS", help="server address smp://FINGERPRINT[:PASSWORD]@HOST[:PORT]")
    p.add_argument("--scenario", "-s", choices=SCENARIOS, default="messaging", help="default: messaging")

    g = p.add_argument_group("connection")
    g.add_argument("--auth", choices=AUTH_ALGS, default="ed25519",
                   help="queue key type: recipient and sender keys (default ed25519, as the SimpleX apps)")
    g.add_argument("--max-version", type=int, metavar="N", help="cap the negotiated SMP version")
    g.add_argument("--connections", "-c", type=int, metavar="N",
                   help="messaging: connections per side (default: one per pair); fanout: member "
                   f"connections (default: one per member); subscribe: default {DEFAULT_SUBSCRIBE_CONNECTIONS}")
    g.add_argument("--connect-timeout", type=_type(parse_seconds, "duration"), default=30.0, metavar="T",
                   help="bound of one connect + handshake (default 30s)")
    g.add_argument("--connect-parallel", type=int, default=64, metavar="N",
                   help="handshakes in progress at once (default 64)")

    g.add_argument("--proxied", nargs="?", const="", metavar="PROXY",
                   help="private message routing: senders send every message through the SMP proxy "
                   "at PROXY (default: ADDRESS itself, in both roles) to the relay at ADDRESS")
    g.add_argument("--socks5", metavar="HOST:PORT",
                   help="connect through this SOCKS5 proxy, such as Tor (127.0.0.1:9050); "
                   "needed for a .onion address; [user:pass@]HOST:PORT, HOST an IP address")
    g = p.add_argument_group("workload")
    g.add_argument("--pairs", "-p", type=int, default=1, metavar="P", help="messaging: sender->recipient pairs (default 1)")
    g.add_argument("--queues", type=int, metavar="Q",
                   help=f"messaging: queues, at least P (default P); subscribe: queues (default {DEFAULT_SUBSCRIBE_QUEUES})")
    g.add_argument("--group", "-g", type=int, default=10, metavar="G", help="fanout: group members (default 10)")
    g.add_argument("--batch", "-b", type=int, default=135, metavar="B", help="subscribe: SUBs per batch (default 135; 1 = unbatched)")
    g.add_argument("--mode", choices=SUBSCRIBE_MODES, default="queues",
                   help="subscribe: queues (default: C connections re-subscribe in batches of B SUBs) or "
                   "services (one messaging service, v19: creates the queues, reconnects and "
                   "subscribes them all with one SUBS, until ALLS)")
    g.add_argument("--size", type=int, default=1024, metavar="BYTES", help="message body size (default 1024)")
    g.add_argument("--concurrency", type=int, metavar="K",
                   help="closed loop: sends in flight per sender (default 1); open loop: SENDs awaiting "
                   f"OK per sender (default {OPEN_LOOP_CONCURRENCY}); subscribe: batches in flight per connection (default 1)")
    g.add_argument("--rate", type=float, metavar="R", help="open loop: messages per second in total (fanout: whole fanouts)")
    g.add_argument("--duration", "-d", type=_type(parse_seconds, "duration"), metavar="T",
                   help=f"measured time after the warm-up, e.g. 20s, 2m (default {DEFAULT_DURATION:g}s)")
    g.add_argument("--messages", "-n", type=int, metavar="N", help="measured sends instead of a duration (fanout: whole fanouts)")
    g.add_argument("--warmup", "-w", type=_type(parse_warmup, "warm-up"), default=Warmup(), metavar="W",
                   help="excluded from the results: seconds (5, 5s, 500ms) or sends (1000msgs); default none")
    g.add_argument("--drain-timeout", type=_type(parse_seconds, "duration"), default=10.0, metavar="T",
                   help="wait this long for messages in flight after sending stops; they are lost after (default 10s)")
    g.add_argument("--stages", type=_type(parse_stages, "stages"), default=(), metavar="T:N,...",
                   help="a target over time, e.g. 10s:100,30s:1000,10s:0: each stage ramps linearly from the "
                   "previous target (0 at first) to N over T; replaces --rate/--duration/--messages")
    g.add_argument("--stage-target", choices=STAGE_TARGETS, default="rate",
                   help="what --stages sets: rate (open loop, messages/s in total; default) or "
                   "concurrency (closed loop, sends in flight in total)")
    g.add_argument("--workers", type=int, default=1, metavar="N",
                   help="generator processes, each with its own event loop and its share of the pairs, "
                   "queues, connections, rate and messages (fanout: a group each); default 1")

    g = p.add_argument_group("thresholds (breach: exit code 2)")
    g.add_argument("--max-p99", type=float, metavar="MS",
                   help="p99 latency in ms (messaging: end to end; fanout: per delivery; subscribe: per batch)")
    g.add_argument("--min-throughput", type=float, metavar="N", help="messages/s (fanout: deliveries/s; subscribe: SUB/s)")
    g.add_argument("--max-errors", type=int, metavar="N", help="errors of the measured part, of any type")
    g.add_argument("--allow-errors", action="store_true",
                   help="report failures (lost connections or messages, an early end) without failing "
                   "on them (exit code 0 instead of 3; thresholds still apply)")

    g = p.add_argument_group("output")
    g.add_argument("--json", metavar="FILE", help="write the versioned JSON report to FILE (- for stdout)")
    g.add_argument("--hgrm", metavar="FILE",
                   help="write the primary latency's HdrHistogram percentile distribution (.hgrm, ms) to FILE")
    g.add_argument("--latency-spectrum", action="store_true",
                   help="print the full percentile spectrum of the primary latency (as wrk2 --latency) "
                   "and put it in the JSON")
    g.add_argument("--quiet", action="store_true", help="no progress display (the summary is still printed)")


def config_from_args(args: argparse.Namespace) -> LoadConfig:
    duration = args.duration
    if args.scenario != "subscribe" and duration is None and args.messages is None and not args.stages:
        duration = DEFAULT_DURATION
    return LoadConfig(
        address=args.address,
        scenario=args.scenario,
        auth=args.auth,
        max_version=args.max_version,
        connections=args.connections,
        size=args.size,
        pairs=args.pairs,
        queues=args.queues,
        concurrency=args.concurrency,
        rate=args.rate,
        duration=duration,
        messages=args.messages,
        warmup=args.warmup,
        drain_timeout=args.drain_timeout,
        group=args.group,
        batch=args.batch,
        connect_timeout=args.connect_timeout,
        connect_parallel=args.connect_parallel,
        thresholds=Thresholds(args.max_p99, args.min_throughput, args.max_errors),
        stages=args.stages,
        stage_target=args.stage_target,
        workers=args.workers,
        allow_errors=args.allow_errors,
        latency_spectrum=args.latency_spectrum,
        hgrm_path=args.hgrm,
        json_path=args.json,
        quiet=args.quiet,
        socks5=args.socks5,
        proxy=None if args.proxied is None else (args.proxied or args.address),
        mode=args.mode,
    )
