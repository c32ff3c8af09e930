"""``--plot FILE.png``: bytes on the wire per command against the batch size.

matplotlib is an optional extra (``pip install 'smpfast[plot]'``), imported only here.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from . import ANNOTATED_N, PHASES
from .measure import Measurement

_TITLES = {
    "subscribe": "subscribe (SUB → OK)",
    "send": "send (SEND → OK)",
    "receive": "receive (MSG, ACK → OK)",
}


# One colour per version (colour-blind safe, Okabe-Ito), one marker per mode: batched
# filled circles, unbatched hollow squares. Markers shrink with the version's place, so
# versions whose points coincide stay visible as nested markers.
_COLOURS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442")
_MODES = {"batched": dict(marker="o", linestyle="-", fill=True),
          "unbatched": dict(marker="s", linestyle="--", fill=False)}


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


def _per_command(m: Measurement) -> float:
    return (m.up.tls_bytes + m.down.tls_bytes) / m.n


def _annotate(ax, index: dict, versions: list[int], phase: str) -> None:
    """Vertical marks at N = 90 and 135 and, in a box, each version's reduction there
    (unbatched / batched TLS bytes), in the version's colour."""
    lines: list[tuple[str, str]] = []
    for n in ANNOTATED_N:
        ratios = []
        for vi, version in enumerate(versions):
            unb, bat = index.get((version, n, phase, "unbatched")), index.get((version, n, phase, "batched"))
            if unb is None or bat is None or not (bat.up.tls_bytes + bat.down.tls_bytes):
                continue
            ratio = (unb.up.tls_bytes + unb.down.tls_bytes) / (bat.up.tls_bytes + bat.down.tls_bytes)
            ratios.append((f"  v{version}: ×{ratio:.1f}", _COLOURS[vi % len(_COLOURS)]))
        if ratios:
            ax.axvline(n, color="grey", linestyle="-.", linewidth=0.8, alpha=0.6)
            lines.append((f"N = {n}, unbatched / batched:", "black"))
            lines.extend(ratios)
    for i, (text, colour) in enumerate(lines):
        ax.text(0.5, 0.86 - 0.055 * i, text, transform=ax.transAxes, fontsize=8.5, color=colour,
                bbox=dict(facecolor="white", edgecolor="none", alpha=0.8, pad=0.5))


def plot(measurements: Sequence[Measurement], path: str | Path) -> None:
    """One panel per phase: TLS bytes (both directions) per command against N, log-log;
    a colour per version, a marker per mode; the reduction (unbatched / batched) written
    next to the batched points at N = 90 and N = 135; the dotted line is one 16 KB block."""
    plt = _pyplot()
    phases = [p for p in PHASES if any(m.phase == p for m in measurements)]
    versions = sorted({m.version for m in measurements})
    index = {(m.version, m.n, m.phase, m.mode): m for m in measurements}
    fig, axes = plt.subplots(1, len(phases), figsize=(5.6 * len(phases), 5.0), squeeze=False)
    for ax, phase in zip(axes[0], phases):
        for vi, version in enumerate(versions):
            colour = _COLOURS[vi % len(_COLOURS)]
            size = max(11 - 3 * vi, 4)
            for mode, style in _MODES.items():
                pts = sorted((m.n, _per_command(m)) for m in measurements
                             if m.phase == phase and m.version == version and m.mode == mode and m.n)
                if not pts:
                    continue
                ax.plot([p[0] for p in pts], [p[1] for p in pts], linestyle=style["linestyle"],
                        marker=style["marker"], markersize=size, color=colour, linewidth=1.4,
                        markerfacecolor=colour if style["fill"] else "none", markeredgewidth=1.5,
                        label=f"v{version} {mode}")
        ax.axhline(16384, color="grey", linestyle=":", linewidth=1, label="one 16 KB block")
        _annotate(ax, index, versions, phase)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(_TITLES.get(phase, phase))
        ax.set_xlabel("commands per batch (N)")
        ax.set_ylabel("TLS bytes per command, both directions")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("SMP traffic per command: batched (filled circles) vs unbatched (hollow squares); "
                 f"reduction at N = {' and '.join(map(str, ANNOTATED_N))}")
    fig.tight_layout()
    fig.savefig(str(path), format="png", dpi=100)
    plt.close(fig)
