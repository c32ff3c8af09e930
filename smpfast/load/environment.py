"""Where the run happened, for the report: interpreter, smpfast build, machine, load."""

from __future__ import annotations

import os
import platform
import resource

import smpfast


def loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def collect() -> dict:
    from smpfast import _core

    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:
        cpus = os.cpu_count() or 0
    return {
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "smpfast_version": smpfast.__version__,
        "compiled_core": bool(_core.COMPILED),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count() or 0,
        "cpus_usable": cpus,
        "loadavg_start": loadavg(),
        "loadavg_end": None,
        "nofile_limit": resource.getrlimit(resource.RLIMIT_NOFILE)[0],
    }
