"""``--plot FILE.png``: bytes on the wire per command against the batch size.

matplotlib is an optional extra (``pip install 'smpfast[plot]'``), imported only here.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from . import PHASES
from .measure import Measurement

_TITLES = {
    "subscribe": "subscribe (SUB → OK)",
    "send": "send (SEND → OK)",
    "receive": "receive (MSG, ACK → OK)",
}


_MARKERS = ("o", "s", "^", "D", "v", "x")


class PlotUnavailable(Exception):
    """matplotlib is not installed."""


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise PlotUnavailable(
            "--plot needs matplotlib, which is not installed: pip install 'smpfast[plot]' "
            "(or pip install matplotlib)"
        ) from None
    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt

    return plt


def plot(measurements: Sequence[Measurement], path: str | Path) -> None:
    """One panel per phase: TLS bytes (both directions) per command, log-log, batched
    (solid) and unbatched (dashed) per version; the dotted line is one 16 KB block."""
    plt = _pyplot()
    phases = [p for p in PHASES if any(m.phase == p for m in measurements)]
    versions = sorted({m.version for m in measurements})
    fig, axes = plt.subplots(1, len(phases), figsize=(5.2 * len(phases), 4.6), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, phase in zip(axes[0], phases):
        for vi, version in enumerate(versions):
            for mode, style in (("batched", "-"), ("unbatched", "--")):
                pts = sorted((m.n, (m.up.tls_bytes + m.down.tls_bytes) / m.n) for m in measurements
                             if m.phase == phase and m.version == version and m.mode == mode and m.n)
                if not pts:
                    continue
                # Distinct, hollow markers per version: versions that coincide stay visible.
                ax.plot([p[0] for p in pts], [p[1] for p in pts], style, marker=_MARKERS[vi % len(_MARKERS)],
                        markersize=9 - 2 * (vi % 3), markerfacecolor="none",
                        color=colors[vi % len(colors)], label=f"v{version} {mode}")
        ax.axhline(16384, color="grey", linestyle=":", linewidth=1, label="one 16 KB block")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(_TITLES.get(phase, phase))
        ax.set_xlabel("commands per batch (N)")
        ax.set_ylabel("TLS bytes per command, both directions")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("SMP traffic per command: batched vs unbatched")
    fig.tight_layout()
    fig.savefig(str(path), format="png", dpi=100)
    plt.close(fig)
