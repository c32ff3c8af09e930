"""Turning measurements into reductions, the printed table and the JSON document."""

from __future__ import annotations

from collections.abc import Sequence

from . import BLOCK_SIZE, CLAIM_N, PHASES
from .measure import Direction, Measurement

def _ratio(unbatched: int, batched: int) -> float | None:
    return round(unbatched / batched, 2) if batched else None


def _directions(m: Measurement) -> dict[str, Direction]:
    total = Direction(m.up.blocks + m.down.blocks, m.up.transmissions + m.down.transmissions,
                      m.up.tls_bytes + m.down.tls_bytes)
    return {"client_to_server": m.up, "server_to_client": m.down, "total": total}


def pairs(measurements: Sequence[Measurement]) -> list[tuple[Measurement, Measurement]]:
    """(unbatched, batched) per (version, N, phase), in measurement order."""
    index = {(m.version, m.n, m.phase, m.mode): m for m in measurements}
    keys: list[tuple[int, int, str]] = []
    for m in measurements:
        k = (m.version, m.n, m.phase)
        if k not in keys:
            keys.append(k)
    return [(index[(*k, "unbatched")], index[(*k, "batched")]) for k in keys
            if (*k, "unbatched") in index and (*k, "batched") in index]


def reductions(measurements: Sequence[Measurement]) -> list[dict]:
    out = []
    for unb, bat in pairs(measurements):
        entry: dict = {"version": unb.version, "n": unb.n, "phase": unb.phase}
        du, db = _directions(unb), _directions(bat)
        for name in du:
            entry[name] = {
                "blocks": _ratio(du[name].blocks, db[name].blocks),
                "smp_bytes": _ratio(du[name].smp_bytes, db[name].smp_bytes),
                "tls_bytes": _ratio(du[name].tls_bytes, db[name].tls_bytes),
            }
        out.append(entry)
    return out


def claim(measurements: Sequence[Measurement]) -> list[dict]:
    """The SimpleX v3.1 claim per version: 90 SUBs take 90 blocks (~1.5 MB) unbatched and
    one 16 KB block batched (client to server)."""
    out = []
    for unb, bat in pairs(measurements):
        if unb.phase != "subscribe" or unb.n != CLAIM_N:
            continue
        out.append({
            "version": unb.version,
            "n": CLAIM_N,
            "unbatched_blocks": unb.up.blocks,
            "batched_blocks": bat.up.blocks,
            "unbatched_smp_bytes": unb.up.smp_bytes,
            "batched_smp_bytes": bat.up.smp_bytes,
            "unbatched_tls_bytes": unb.up.tls_bytes,
            "batched_tls_bytes": bat.up.tls_bytes,
            "holds": unb.up.blocks == CLAIM_N and bat.up.blocks == 1,
        })
    return out


def document(measurements: Sequence[Measurement], *, address: str, server: str,
             server_versions: tuple[int, int], versions: Sequence[int], sweep: Sequence[int],
             message_size: int) -> dict:
    return {
        "tool": "smpfast traffic",
        "address": address,
        "server": server,
        "server_versions": list(server_versions),
        "block_size": BLOCK_SIZE,
        "message_size": message_size,
        "sweep": list(sweep),
        "versions": list(versions),
        "measurements": [m.as_dict() for m in measurements],
        "reductions": reductions(measurements),
        "claim": claim(measurements),
    }


def _x(ratio: float | None) -> str:
    return "-" if ratio is None else f"×{ratio:.1f}"


def table(measurements: Sequence[Measurement]) -> str:
    """One section per version; one line per (N, phase, direction)."""
    lines: list[str] = []
    header = (f"{'N':>5}  {'phase':<9} {'dir':<3}  {'blocks unb':>10} {'bat':>5} {'ratio':>7}  "
              f"{'SMP bytes unb':>13} {'bat':>10}  {'TLS bytes unb':>13} {'bat':>10} {'ratio':>7}")
    by_version: dict[int, list[tuple[Measurement, Measurement]]] = {}
    for unb, bat in pairs(measurements):
        by_version.setdefault(unb.version, []).append((unb, bat))
    for version, rows in by_version.items():
        alpn = "no ALPN" if version == 6 else "ALPN smp/1"
        lines.append(f"SMP v{version} ({alpn})")
        lines.append(header)
        rows.sort(key=lambda p: (p[0].n, PHASES.index(p[0].phase)))
        last_n = None
        for unb, bat in rows:
            for attr, label in (("up", "c→s"), ("down", "s→c")):
                u, b = getattr(unb, attr), getattr(bat, attr)
                first = attr == "up"
                n = f"{unb.n:>5}" if first and unb.n != last_n else " " * 5
                phase = unb.phase if first else ""
                lines.append(
                    f"{n}  {phase:<9} {label:<3}  {u.blocks:>10} {b.blocks:>5} {_x(_ratio(u.blocks, b.blocks)):>7}  "
                    f"{u.smp_bytes:>13,} {b.smp_bytes:>10,}  {u.tls_bytes:>13,} {b.tls_bytes:>10,} "
                    f"{_x(_ratio(u.tls_bytes, b.tls_bytes)):>7}"
                )
            last_n = unb.n
        lines.append("")
    for c in claim(measurements):
        verdict = "holds" if c["holds"] else "does NOT hold"
        lines.append(
            f"v3.1 claim at v{c['version']}: {c['n']} SUBs took {c['unbatched_blocks']} blocks "
            f"({c['unbatched_smp_bytes']:,} B SMP, {c['unbatched_tls_bytes']:,} B TLS) unbatched, "
            f"{c['batched_blocks']} block(s) ({c['batched_smp_bytes']:,} B SMP, "
            f"{c['batched_tls_bytes']:,} B TLS) batched: {verdict}"
        )
    return "\n".join(lines).rstrip() + "\n"
