"""Whether a completed run can be trusted: the failures that make it fail by default
(exit code 3, or 0 with --allow-errors), each with a count and one line saying what
happened. Errors the server answered (ERR QUOTA, ERR AUTH to a SEND...) are not failures:
the server did its job; ``--max-errors`` limits them.

Kinds (the report's ``failures[].kind``):
  connections_lost   a connection the run needed closed (server died, network, kicked)
  connections_failed a subscribe storm connection could not be opened
  messages_lost      sent but never received (still missing after the drain)
  messages_unsent    open loop: scheduled, but the run could not start their SEND in time
  corrupt_messages   a delivery that was wrong: corrupt, on the wrong queue, a duplicate,
                     undecryptable
  no_progress        nothing moved for --drain-timeout seconds with deliveries outstanding
  ended_early        sending stopped before the planned end (--duration, --messages, --stages)
"""

from __future__ import annotations

KINDS = ("connections_lost", "connections_failed", "messages_lost", "messages_unsent",
         "corrupt_messages", "no_progress", "ended_early")


def _plural(n: int, word: str, plural: str | None = None) -> str:
    return f"{n} {word if n == 1 else plural or word + 's'}"


def evaluate(results: dict) -> list[dict]:
    """The failures of a run from its report's ``results`` section (merged reports too).
    Each is ``{kind, count, message}``."""
    d = results["scenario"]
    out: list[dict] = []

    def add(kind: str, count: int, message: str) -> None:
        if count:
            out.append({"kind": kind, "count": int(count), "message": message})

    lost_conns = d.get("connections_lost", 0)
    add("connections_lost", lost_conns,
        f"{_plural(lost_conns, 'connection')} closed during the run (server stopped or restarted, "
        "network failure, or the server dropped the client)")
    failed = d.get("connections_failed", 0)
    add("connections_failed", failed, f"{_plural(failed, 'storm connection')} could not be opened")
    lost = d.get("lost", 0)  # warm-up messages included
    add("messages_lost", lost, f"{_plural(lost, 'message')} sent but never received")
    unsent = d.get("unsent", 0)
    add("messages_unsent", unsent,
        f"{_plural(unsent, 'scheduled send')} could not start in time (the generator or the server fell behind)")
    corrupt = results.get("integrity_errors", 0)
    add("corrupt_messages", corrupt,
        f"{_plural(corrupt, 'delivery', 'deliveries')} failed the checks (corrupt, misrouted, duplicated or undecryptable)")
    if d.get("gave_up"):
        add("no_progress", 1, "nothing moved for --drain-timeout seconds while deliveries were outstanding")
    if d.get("ended_early") and not results.get("interrupted"):
        add("ended_early", 1, _ended_early_message(d))
    return out


def _ended_early_message(d: dict) -> str:
    planned, done = d.get("planned_seconds"), d.get("sending_seconds")
    why = f" ({d['abort_reason']})" if d.get("abort_reason") else ""
    if planned is not None and done is not None:
        return f"sending stopped after {done:.1f} s of the planned {planned:g} s{why}"
    return f"sending stopped before the planned end{why}"
