"""Turning measurements into reductions, the printed table and the JSON document."""

from __future__ import annotations

from collections.abc import Sequence

from ..protocol.versions import ENCRYPTED_BLOCK
from . import ANNOTATED_N, BLOCK_SIZE, CLAIM_N, PHASES, VERDICT_VERSION
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
        "verdict": verdict(measurements, server_versions, versions, server == "in-process"),
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


def _alpn(version: int) -> str:
    if version == 6:
        return "no ALPN"
    return "ALPN smp/1, block encryption" if version >= ENCRYPTED_BLOCK else "ALPN smp/1"


def verdict(measurements: Sequence[Measurement], server_versions: tuple[int, int],
            versions: Sequence[int], in_process: bool) -> dict:
    """The finding in one place: does the v3.1 claim hold, at which versions, and at v18?"""
    claims = claim(measurements)
    holds = [c["version"] for c in claims if c["holds"]]
    fails = [c["version"] for c in claims if not c["holds"]]
    v18 = next((c for c in claims if c["version"] == VERDICT_VERSION), None)
    if v18 is not None:
        v18_note = None
    elif server_versions[1] < VERDICT_VERSION:
        hint = " (start the in-process server with --server-max-version 18)" if in_process else ""
        v18_note = f"v{VERDICT_VERSION} not measured: the server offers v{server_versions[0]}-v{server_versions[1]} only{hint}"
    elif VERDICT_VERSION not in versions:
        v18_note = f"v{VERDICT_VERSION} not measured: not in --versions"
    else:
        v18_note = f"v{VERDICT_VERSION} not measured: N = {CLAIM_N} not in --sweep"
    return {"n": CLAIM_N, "measured": bool(claims), "holds": bool(claims) and not fails,
            "holds_at": holds, "fails_at": fails, "v18": v18, "v18_note": v18_note}


def _versions_text(vs: Sequence[int]) -> str:
    names = [f"v{v}" + (" (block encryption)" if v >= ENCRYPTED_BLOCK else "") for v in vs]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def verdict_lines(measurements: Sequence[Measurement], v: dict) -> list[str]:
    """The verdict line first, then one line per version with its figures."""
    claims = claim(measurements)
    if not claims:
        return [f"verdict: no verdict on SimpleX v3.1's claim: N = {CLAIM_N} is not in --sweep"]
    head = f"verdict: SimpleX v3.1's claim ({CLAIM_N} subscriptions: {CLAIM_N} blocks -> 1 block, ~1.5 MB -> 16 KB)"
    parts = []
    if v["holds_at"]:
        best = min(c["unbatched_tls_bytes"] / c["batched_tls_bytes"] for c in claims if c["holds"])
        parts.append(f"holds at {_versions_text(v['holds_at'])}: {CLAIM_N}× fewer blocks, "
                     f"{best:.1f}× fewer TLS bytes or better")
    if v["fails_at"]:
        parts.append(f"does NOT hold at {_versions_text(v['fails_at'])}")
    if v["v18_note"]:
        parts.append(v["v18_note"])
    lines = [head + " " + "; ".join(parts) + "."]
    for c in claims:
        verdict_word = "holds" if c["holds"] else "does NOT hold"
        lines.append(
            f"  v{c['version']:<2} ({_alpn(c['version'])}): {CLAIM_N} SUBs unbatched {c['unbatched_blocks']} blocks, "
            f"{c['unbatched_tls_bytes']:,} TLS bytes -> batched {c['batched_blocks']} "
            f"block{'' if c['batched_blocks'] == 1 else 's'}, {c['batched_tls_bytes']:,} TLS bytes: "
            f"{_x(_ratio(c['unbatched_blocks'], c['batched_blocks']))} blocks, "
            f"{_x(_ratio(c['unbatched_tls_bytes'], c['batched_tls_bytes']))} TLS bytes ({verdict_word})")
    for n in ANNOTATED_N:
        if n == CLAIM_N:
            continue
        subs = [(u, b) for u, b in pairs(measurements) if u.phase == "subscribe" and u.n == n]
        if subs:
            lines.append(f"  at N = {n}, subscriptions: " + ", ".join(
                f"{_x(_ratio(u.up.blocks, b.up.blocks))} blocks (v{u.version}: {u.up.blocks} -> {b.up.blocks})"
                for u, b in subs))
    return lines


def _cell(u: int, b: int) -> str:
    return f"{u:,} -> {b:,} ({_x(_ratio(u, b))})"


def table(measurements: Sequence[Measurement]) -> str:
    """One section per version, one line per N: client→server blocks unbatched → batched
    per phase, then the reduction of TLS bytes (both directions) per phase."""
    lines: list[str] = []
    by_version: dict[int, dict[int, dict[str, tuple[Measurement, Measurement]]]] = {}
    for unb, bat in pairs(measurements):
        by_version.setdefault(unb.version, {}).setdefault(unb.n, {})[unb.phase] = (unb, bat)
    for version, rows in by_version.items():
        lines.append(f"SMP v{version} ({_alpn(version)}): client->server blocks, unbatched -> batched "
                     "(reduction); TLS bytes both ways, reduction")
        lines.append(f"{'N':>5}  {'subscribe':<22} {'send':<22} {'receive (ACKs)':<22}  "
                     f"{'TLS: sub':>8} {'send':>7} {'receive':>7}")
        for n in sorted(rows):
            cells, tls = [], []
            for phase in PHASES:
                if phase not in rows[n]:
                    cells.append(f"{'-':<22}")
                    tls.append(f"{'-':>7}")
                    continue
                unb, bat = rows[n][phase]
                cells.append(f"{_cell(unb.up.blocks, bat.up.blocks):<22}")
                tls.append(_x(_ratio(unb.up.tls_bytes + unb.down.tls_bytes, bat.up.tls_bytes + bat.down.tls_bytes)))
            lines.append(f"{n:>5}  {' '.join(cells)}  {tls[0]:>8} {tls[1]:>7} {tls[2]:>7}")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def detailed_table(measurements: Sequence[Measurement]) -> str:
    """One section per version; one line per (N, phase, direction)."""
    lines: list[str] = []
    header = (f"{'N':>5}  {'phase':<9} {'dir':<3}  {'blocks unb':>10} {'bat':>5} {'ratio':>7}  "
              f"{'SMP bytes unb':>13} {'bat':>10}  {'TLS bytes unb':>13} {'bat':>10} {'ratio':>7}")
    by_version: dict[int, list[tuple[Measurement, Measurement]]] = {}
    for unb, bat in pairs(measurements):
        by_version.setdefault(unb.version, []).append((unb, bat))
    for version, rows in by_version.items():
        lines.append(f"SMP v{version} ({_alpn(version)})")
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
    return "\n".join(lines).rstrip() + "\n"
