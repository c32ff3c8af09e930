"""``smpfast load``: validate the options, raise the descriptor limit, run the scenario
under trio (or N worker processes, --workers), then report and turn the outcome into the
exit code (exitcodes.py)."""

from __future__ import annotations

import argparse
import sys
from typing import TextIO

import trio

from . import diagnose, environment, exitcodes, report, thresholds
from .config import LoadConfig, UsageError
from .control import Control, Interrupted
from .options import config_from_args
from .pool import Pool, raise_fd_limit
from .progress import Phases, Progress
from .scenarios import SCENARIOS
from .scenarios.base import Context, Result


class SetupFailed(Exception):
    """The run could not be set up: ``error`` was raised during ``phase``."""

    def __init__(self, phase: str, error: BaseException) -> None:
        super().__init__(str(error))
        self.phase = phase
        self.error = error


def connections_needed(cfg: LoadConfig) -> int:
    n = cfg.effective_connections()
    if cfg.scenario == "messaging":
        return 2 * min(n, cfg.pairs)
    if cfg.scenario == "fanout":
        return min(n, cfg.group) + 1
    return min(n, cfg.effective_queues()) + 8


async def execute(cfg: LoadConfig, progress: Progress,
                  control: Control | None = None) -> tuple[Result, dict, list[dict]]:
    """Run the scenario; returns its result, the total traffic and the set-up timings.
    Raises SetupFailed, UsageError, or Interrupted (SIGINT before the traffic began)."""
    control = control or Control()
    phases = Phases(progress)
    pool = Pool(cfg.address, max_version=cfg.max_version, timeout=cfg.connect_timeout,
                parallel=cfg.connect_parallel, socks=cfg.socks5)
    error: BaseException | None = None
    result = None
    async with trio.open_nursery() as nursery:
        nursery.start_soon(phases.show_setup)
        try:
            with trio.CancelScope() as scope:
                control.setup_scope = scope
                result = await SCENARIOS[cfg.scenario](Context(cfg, pool, nursery, progress, phases, control))
            if scope.cancelled_caught:
                error = Interrupted(phases.name)
        except (UsageError, Interrupted) as e:
            error = e
        except Exception as e:  # raised below as itself, not inside an ExceptionGroup
            error = SetupFailed(phases.name, e)
        finally:
            control.setup_scope = None
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
        diagnose.check_address(cfg.address)
    except UsageError as e:
        print(f"smpfast load: error: {e}", file=sys.stderr)
        return exitcodes.USAGE_OR_SETUP
    return run_config(cfg)


def run_config(cfg: LoadConfig) -> int:
    if cfg.workers > 1:
        from .workers import run_workers

        return run_workers(cfg)
    try:
        raise_fd_limit(connections_needed(cfg))
    except OSError as e:
        print(f"smpfast load: error: {e}", file=sys.stderr)
        return exitcodes.USAGE_OR_SETUP
    try:
        code, _ = trio.run(run_load, cfg, None, None, None, True)
    except KeyboardInterrupt:  # before the signal handler was installed, or after it was removed
        print("smpfast load: interrupted", file=sys.stderr)
        return exitcodes.INTERRUPTED
    return code


async def run_load(cfg: LoadConfig, progress: Progress | None = None, out: TextIO | None = None,
                   control: Control | None = None, signals: bool = False) -> tuple[int, dict | None]:
    """A whole run inside the caller's trio loop: the scenario, the summary (to ``out``,
    default stdout, or stderr with ``--json -``), the JSON and .hgrm files. Returns the
    exit code and the report (None when the run could not start). ``signals``: SIGINT
    interrupts the run (main thread only)."""
    control = control or Control()
    async with trio.open_nursery() as nursery:
        if signals:
            await nursery.start(control.watch_signals)
        try:
            return await _run_load(cfg, progress, out, control)
        finally:
            nursery.cancel_scope.cancel()


def _error(message: str) -> None:
    print(f"smpfast load: error: {message}", file=sys.stderr)


async def _run_load(cfg: LoadConfig, progress: Progress | None, out: TextIO | None,
                    control: Control) -> tuple[int, dict | None]:
    progress = progress or Progress.for_options(cfg.quiet)
    env = environment.collect()
    started = report.now_iso()
    try:
        result, traffic_total, setup = await execute(cfg, progress, control)
    except UsageError as e:
        _error(str(e))
        return exitcodes.USAGE_OR_SETUP, None
    except SetupFailed as e:
        _error("cannot run the load: " + diagnose.explain(
            e.error, cfg.address, phase=e.phase, connect_timeout=cfg.connect_timeout, max_version=cfg.max_version))
        return exitcodes.USAGE_OR_SETUP, None
    except Interrupted as e:
        env["loadavg_end"] = environment.loadavg()
        doc = report.build(cfg, env, None, None, [], started, report.now_iso(), interrupted_during=e.phase)
        finish(cfg, doc, out)
        return doc["exit_code"], doc
    env["loadavg_end"] = environment.loadavg()
    interrupted = bool(result.details.get("interrupted"))
    results = report.results_section(cfg, result, traffic_total, setup, interrupted)
    checks = thresholds.check(cfg.thresholds, results)
    doc = report.build(cfg, env, result, results, checks, started, report.now_iso())
    finish(cfg, doc, out)
    return doc["exit_code"], doc


def finish(cfg: LoadConfig, doc: dict, out: TextIO | None) -> None:
    """Print the summary and write the requested files."""
    if out is None:
        out = sys.stderr if cfg.json_path == "-" else sys.stdout
    report.summary(doc, out)
    try:
        if cfg.json_path:
            report.write_json(cfg.json_path, doc)
        if cfg.hgrm_path and doc["results"] is not None:
            report.write_hgrm(cfg.hgrm_path, doc)
    except OSError as e:
        _error(f"cannot write the report: {e}")



def run_merge(args: argparse.Namespace) -> int:
    """``smpfast load merge A.json B.json ...``: print and write the merged report; its
    exit code is the merged run's."""
    from .merge import MergeError, merge_reports, read_report

    try:
        docs = [read_report(p) for p in args.reports]
        doc = merge_reports(docs, args.mode, spectrum=args.latency_spectrum, sources=list(args.reports))
    except MergeError as e:
        _error(str(e))
        return exitcodes.USAGE_OR_SETUP
    out = sys.stderr if args.json == "-" else sys.stdout
    print(f"merged {len(docs)} reports ({doc['merge_mode']}): " + ", ".join(args.reports), file=out)
    report.summary(doc, out)
    try:
        if args.json:
            report.write_json(args.json, doc)
        if args.hgrm:
            report.write_hgrm(args.hgrm, doc)
    except OSError as e:
        _error(f"cannot write the report: {e}")
        return exitcodes.USAGE_OR_SETUP
    return doc["exit_code"]
