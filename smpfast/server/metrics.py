"""Prometheus metrics with the reference's names: ``/metrics`` over HTTP, and the text file
the reference writes every ``[STORE_LOG] prometheus_interval`` seconds (``metrics_text``).

The metric families are built by prometheus-client (a collector reading the broker's
counters and the store's gauges at scrape time) and served by a tiny HTTP/1.0 handler in the
server's trio loop: a scrape reads a few dicts and LMDB entry counts, so it never blocks.
Names and labels are those of the reference's ``Server/Prometheus.hs`` (its text file), so
queries made for ``smp-server`` work unchanged; its counters are exposed untyped, because
prometheus-client would rename a counter to ``<name>_total``. The text file, like the
reference's ``smp-server-metrics.txt``, types them ``counter`` and stamps every sample with
the time of writing (milliseconds), each followed by a comment naming its counter.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Callable, Iterator, Mapping

import trio
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import CollectorRegistry, Metric

from ..transport.listen import open_listeners
from .stats import format_utc

log = logging.getLogger("smpfast.server.metrics")

DEFAULT_METRICS_BIND = "127.0.0.1"
METRICS_FILE = "smp-server-metrics.txt"  # the reference's name, in the server directory
MAX_REQUEST_BYTES = 8192
REQUEST_TIMEOUT = 10.0

# (name, type, help, [(labels, source)]); source is a counter or gauge name of stats.py.
_FAMILIES: tuple[tuple[str, str, str, tuple[tuple[dict[str, str], str], ...]], ...] = (
    ("simplex_smp_queues_created", "counter", "Created queues", (({}, "qCreated"),)),
    ("simplex_smp_queues_secured", "counter", "Secured queues", (({}, "qSecured"),)),
    ("simplex_smp_queues_deleted", "counter", "Deleted queues", (
        ({"type": "all"}, "qDeletedAll"), ({"type": "new"}, "qDeletedNew"),
        ({"type": "secured"}, "qDeletedSecured"))),
    ("simplex_smp_queues_blocked", "counter", "Blocked queues", (({}, "qBlocked"),)),
    ("simplex_smp_queues_total1", "gauge", "Total number of stored queues (first type of count).", (({}, "qCount"),)),
    ("simplex_smp_queues_total2", "gauge", "Total number of stored queues (second type of count).", (({}, "queueCount"),)),
    ("simplex_smp_queues_daily", "gauge", "Daily active queues.", (({}, "dayMsgQueues"),)),
    ("simplex_smp_queues_weekly", "gauge", "Weekly active queues.", (({}, "weekMsgQueues"),)),
    ("simplex_smp_queues_monthly", "gauge", "Monthly active queues.", (({}, "monthMsgQueues"),)),
    ("simplex_smp_queues_notify_daily", "gauge", "Daily active queues with notifications.", (({}, "dayCountNtf"),)),
    ("simplex_smp_queues_notify_weekly", "gauge", "Weekly active queues with notifications.", (({}, "weekCountNtf"),)),
    ("simplex_smp_queues_notify_monthly", "gauge", "Monthly active queues with notifications.", (({}, "monthCountNtf"),)),
    ("simplex_smp_subscribtion_successes", "counter", "Successful subscriptions.", (({}, "qSub"),)),
    ("simplex_smp_subscribtion_end", "counter", "Ended subscriptions.", (({}, "qSubEnd"),)),
    ("simplex_smp_subscribtion_errors", "counter", "Subscription errors.", (
        ({"type": "auth"}, "qSubAuth"), ({"type": "duplicate"}, "qSubDuplicate"),
        ({"type": "prohibited"}, "qSubProhibited"))),
    ("simplex_smp_messages_sent", "counter", "Sent messages.", (({}, "msgSent"),)),
    ("simplex_smp_messages_sent_errors", "counter", "Total number of messages errors by type.", (
        ({"type": "auth"}, "msgSentAuth"), ({"type": "quota"}, "msgSentQuota"),
        ({"type": "large"}, "msgSentLarge"), ({"type": "block"}, "msgSentBlock"))),
    ("simplex_smp_messages_received", "counter", "Received messages.", (({}, "msgRecv"),)),
    ("simplex_smp_messages_expired", "counter", "Expired messages.", (({}, "msgExpired"),)),
    ("simplex_smp_messages_total", "gauge", "Total number of messages stored.", (({}, "msgCount"),)),
    ("simplex_smp_messages_notify_sent", "counter", "Sent messages with notification flag.", (({}, "msgSentNtf"),)),
    ("simplex_smp_messages_notify_get_sent", "counter", "Messages delivered with GET.", (({}, "msgGet"),)),
    ("simplex_smp_messages_notify_get_received", "counter", "Messages acknowledged after GET.", (({}, "msgRecvGet"),)),
    ("simplex_smp_messages_notify_get_errors", "counter", "GET errors by type.", (
        ({"type": "nomsg"}, "msgGetNoMsg"), ({"type": "auth"}, "msgGetAuth"),
        ({"type": "duplicate"}, "msgGetDuplicate"),
        ({"type": "prohibited"}, "msgGetProhibited"))),
    ("simplex_smp_queues_notify_created", "counter", "Created queues with notification.", (({}, "ntfCreated"),)),
    ("simplex_smp_queues_notify_new_created", "counter", "Queues created with notification credentials.", (({}, "ntfNewCreated"),)),
    ("simplex_smp_queues_notify_deleted", "counter", "Deleted notifiers.", (({}, "ntfDeleted"),)),
    ("simplex_smp_queues_notify_total1", "gauge", "Notifications waiting for delivery.", (({}, "ntfCount"),)),
    ("simplex_smp_queues_notify_total2", "gauge", "Total number of notifiers.", (({}, "notifierCount"),)),
    ("simplex_smp_messages_ntf_successes", "counter", "Message notifications delivered to the notification server.", (({}, "msgNtfs"),)),
    ("simplex_smp_messages_ntf_errors", "counter", "Message notification errors by type.", (
        ({"type": "expired"}, "msgNtfExpired"),)),
    ("simplex_smp_subscription_ntf_requests", "counter", "Notification subscriptions.", (({}, "ntfSub"),)),
    ("simplex_smp_subscribtion_ntf_errors", "counter", "Notification subscription errors.", (
        ({"type": "auth"}, "ntfSubAuth"), ({"type": "duplicate"}, "ntfSubDuplicate"))),
    ("simplex_smp_clients_total", "gauge", "Connected clients.", (({}, "clients"),)),
    ("simplex_smp_names_reqs", "counter", "Total RSLV requests.", (({}, "rslvReqs"),)),
    ("simplex_smp_names_success", "counter", "Names resolved and returned.", (({}, "rslvSucc"),)),
    ("simplex_smp_names_not_found", "counter", "Names not registered (resolver answered 404 or 400).",
     (({}, "rslvNotFound"),)),
    ("simplex_smp_names_resolver_errs", "counter", "Resolver errors (HTTP status, transport, decoding, timeout).",
     (({}, "rslvResolverErrs"),)),
    ("simplex_smp_names_disabled", "counter", "RSLV answered NAME NO_RESOLVER (no resolver configured).",
     (({}, "rslvDisabled"),)),
)


class StatsCollector:
    """prometheus-client collector: ``values()`` gives counters, gauges and ``clients``."""

    def __init__(self, values: Callable[[], Mapping[str, int]]) -> None:
        self._values = values

    def collect(self) -> Iterator[Metric]:
        values = self._values()
        for name, typ, doc, samples in _FAMILIES:
            # prometheus-client renames counters to "<name>_total"; the reference's names have
            # no suffix, so its counters are exposed untyped under their exact names.
            family = Metric(name, f"{doc} ({typ})", typ if typ == "gauge" else "unknown")
            for labels, source in samples:
                family.add_sample(name, labels, float(values.get(source, 0)))
            yield family


def _labels(labels: Mapping[str, str]) -> str:
    return "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}" if labels else ""


def metrics_text(values: Mapping[str, int], now: float, stats_from: float) -> str:
    """The Prometheus text file: the same families as /metrics, as the reference writes it."""
    stamp = int(now * 1000)
    out = [f"# Recorded at: {format_utc(now)}", f"# Stats from: {format_utc(stats_from)}", ""]
    for name, typ, doc, samples in _FAMILIES:
        out += [f"# HELP {name} {doc}", f"# TYPE {name} {typ}"]
        for labels, source in samples:
            out += [f"{name}{_labels(labels)} {int(values.get(source, 0))} {stamp}", f"# {source}"]
        out.append("")
    return "\n".join(out) + "\n"


def write_metrics_file(path: str | os.PathLike[str], text: str) -> None:
    """Replace the file at once, so that a collector never reads half of it."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def make_registry(values: Callable[[], Mapping[str, int]]) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StatsCollector(values))  # type: ignore[arg-type]
    return registry


def _response(status: str, body: bytes, content_type: str = "text/plain; charset=utf-8") -> bytes:
    head = (
        f"HTTP/1.0 {status}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


async def _read_request_line(stream: trio.SocketStream) -> bytes | None:
    data = b""
    with trio.move_on_after(REQUEST_TIMEOUT):
        while b"\r\n\r\n" not in data and b"\n\n" not in data:
            chunk = await stream.receive_some(4096)
            if not chunk:
                break
            data += chunk
            if len(data) > MAX_REQUEST_BYTES:
                return None
    return data.split(b"\n", 1)[0].strip() if data else None


def metrics_handler(registry: CollectorRegistry, refresh=None) -> Callable[[trio.SocketStream], object]:
    """``refresh``: awaited before each answer (several workers: gather their counters)."""

    async def handle(stream: trio.SocketStream) -> None:
        try:
            line = await _read_request_line(stream)
            parts = line.split() if line else []
            if len(parts) < 2 or parts[0] not in (b"GET", b"HEAD"):
                reply = _response("400 Bad Request", b"GET /metrics\n")
            elif parts[1].split(b"?", 1)[0] != b"/metrics":
                reply = _response("404 Not Found", b"only /metrics is served\n")
            else:
                if refresh is not None:
                    await refresh()
                body = generate_latest(registry)
                reply = _response("200 OK", b"" if parts[0] == b"HEAD" else body, CONTENT_TYPE_LATEST)
            await stream.send_all(reply)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the scraper went away
        finally:
            with trio.CancelScope(shield=True):
                await stream.aclose()

    return handle


async def serve_metrics(
    registry: CollectorRegistry,
    port: int,
    host: str = DEFAULT_METRICS_BIND,
    refresh=None,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``/metrics`` on ``host``:``port`` until cancelled; ``started`` gets the port."""
    listeners = await open_listeners(port, host)
    bound = listeners[0].socket.getsockname()[1]
    log.info("Prometheus metrics on http://%s:%d/metrics", host if ":" not in host else f"[{host}]", bound)
    task_status.started(bound)
    await trio.serve_listeners(metrics_handler(registry, refresh), listeners)
