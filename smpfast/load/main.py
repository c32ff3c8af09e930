"""``smpfast load``: validate the options, raise the descriptor limit, run the scenario
under trio, then report and turn the thresholds into the exit code."""

from __future__ import annotations

import argparse
import sys
from typing import TextIO

import trio

from ..client import ClientError
from . import environment, exitcodes, report, thresholds
from .config import LoadConfig, UsageError
from .options import config_from_args
from .pool import Pool, raise_fd_limit
from .progress import Phases, Progress
from .scenarios import SCENARIOS
from .scenarios.base import Context, Result, SetupError


def connections_needed(cfg: LoadConfig) -> int:
    n = cfg.effective_connections()
    if cfg.scenario == "messaging":
        return 2 * min(n, cfg.pairs)
    if cfg.scenario == "fanout":
        return min(n, cfg.group) + 1
    return min(n, cfg.effective_queues()) + 8


async def execute(cfg: LoadConfig, progress: Progress) -> tuple[Result, dict, list[dict]]:
    """Run the scenario; returns its result, the total traffic and the set-up timings."""
    phases = Phases(progress)
    pool = Pool(cfg.address, max_version=cfg.max_version, timeout=cfg.connect_timeout,
                parallel=cfg.connect_parallel)
    error: BaseException | None = None
    result = None
    async with trio.open_nursery() as nursery:
        nursery.start_soon(phases.show_setup)
        try:
            result = await SCENARIOS[cfg.scenario](Context(cfg, pool, nursery, progress, phases))
        except Exception as e:  # raised as itself below, not inside an ExceptionGroup
            error = e
        finally:
            phases.finish()
            with trio.CancelScope(shield=True):
                await pool.close_all()
            nursery.cancel_scope.cancel()
    progress.clear()
    if error is not None:
        raise error
    assert result is not None
    return result, pool.traffic(), phases.timings


def run(args: argparse.Namespace) -> int:
    """The ``smpfast load`` subcommand: returns the exit code (see exitcodes)."""
    try:
        cfg = config_from_args(args)
        cfg.validate()
    except UsageError as e:
        print(f"smpfast load: error: {e}", file=sys.stderr)
        return exitcodes.USAGE_OR_SETUP
    return run_config(cfg)


def run_config(cfg: LoadConfig) -> int:
    try:
        raise_fd_limit(connections_needed(cfg))
    except OSError as e:
        print(f"smpfast load: error: {e}", file=sys.stderr)
        return exitcodes.USAGE_OR_SETUP
    try:
        code, _ = trio.run(run_load, cfg)
    except KeyboardInterrupt:
        print("smpfast load: interrupted", file=sys.stderr)
        return exitcodes.INTERRUPTED
    return code


async def run_load(cfg: LoadConfig, progress: Progress | None = None,
                   out: TextIO | None = None) -> tuple[int, dict | None]:
    """A whole run inside the caller's trio loop: the scenario, the summary (to ``out``,
    default stdout, or stderr with ``--json -``), the JSON file. Returns the exit code and
    the report (None when the run could not start)."""
    progress = progress or Progress.for_options(cfg.quiet)
    env = environment.collect()
    started = report.now_iso()
    try:
        result, traffic_total, setup = await execute(cfg, progress)
    except UsageError as e:
        print(f"smpfast load: error: {e}", file=sys.stderr)
        return exitcodes.USAGE_OR_SETUP, None
    except (ClientError, SetupError, OSError, ValueError) as e:
        print(f"smpfast load: error: cannot run the load: {type(e).__name__}: {e}", file=sys.stderr)
        return exitcodes.USAGE_OR_SETUP, None
    env["loadavg_end"] = environment.loadavg()
    results = report.results_section(cfg, result, traffic_total, setup)
    checks = thresholds.check(cfg.thresholds, results)
    code = exitcodes.OK if all(c["passed"] for c in checks) else exitcodes.THRESHOLD
    doc = report.build(cfg, env, result, results, checks, code, started, report.now_iso())
    if out is None:
        out = sys.stderr if cfg.json_path == "-" else sys.stdout
    report.summary(doc, out)
    if cfg.json_path:
        report.write_json(cfg.json_path, doc)
    return code, doc
