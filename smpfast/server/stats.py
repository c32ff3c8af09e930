"""Server statistics: the reference server's counters, its daily CSV line and a log summary.

The broker keeps counters in ``Broker.stats`` under the reference's names (``qCreated``,
``msgSent``, ...: its ``ServerStats`` fields), as totals since start.  Gauges (stored queues,
messages, ...) are read from the store when needed.  The daily file writes, like the
reference's ``smp-server-stats.daily.log``, one line per day: counters since the previous
line, then gauges, in the reference's column order (``CSV_COLUMNS``).  Columns for what
smpfast does not do or keep (proxying, most service counters and the service gauges,
active-queue periods) are written as 0.
"""

from __future__ import annotations

import datetime
import os
from pathlib import Path
from typing import Callable, Mapping

STATS_FILE = "smp-server-stats.daily.log"  # the reference's name, in the server directory

# Every counter the broker increments (a subset of the reference's ServerStats).
COUNTERS = (
    "qCreated", "qSecured", "qDeletedAll", "qDeletedNew", "qDeletedSecured", "qBlocked",
    "qSub", "qSubAuth", "qSubDuplicate", "qSubProhibited", "qSubEnd",
    "ntfCreated", "ntfNewCreated", "ntfDeleted", "ntfSub", "ntfSubAuth", "ntfSubDuplicate",
    "msgSent", "msgSentAuth", "msgSentQuota", "msgSentLarge", "msgSentBlock", "msgSentNtf",
    "msgRecv", "msgRecvGet", "msgGet", "msgGetNoMsg", "msgGetAuth", "msgGetDuplicate", "msgGetProhibited",
    "msgExpired", "msgNtfs", "msgNtfExpired",
    "ntfServices.assocNew", "ntfServices.assocDuplicate", "ntfServices.assocUpdated",
    "ntfServices.assocRemoved", "ntfServices.subCount", "ntfServices.subQueues",
)
# Read at the moment of writing, not reset (the reference's qCount/msgCount/ntfCount and
# its entity counts queueCount/notifierCount; smpfast has one source for each pair).
GAUGES = ("qCount", "msgCount", "ntfCount", "queueCount", "notifierCount")

_PROXY = tuple(
    f"{group}.{field}"
    for group in ("pRelays", "pRelaysOwn", "pMsgFwds", "pMsgFwdsOwn")
    for field in ("requests", "successes", "errorsConnect", "errorsCompat", "errorsOther")
)
_SERVICE = tuple(
    f"{group}.{field}"
    for group in ("rcvServices", "ntfServices")
    for field in ("assocNew", "assocDuplicate", "assocUpdated", "assocRemoved", "subCount",
                  "subDuplicate", "subQueues", "subEnd")
)
# The reference's logServerStats order. "-" marks its own always-0 columns.
CSV_COLUMNS: tuple[str, ...] = (
    "fromTime", "qCreated", "qSecured", "qDeletedAll", "msgSent", "msgRecv",
    "dayMsgQueues", "weekMsgQueues", "monthMsgQueues",
    "msgSentNtf", "msgRecvNtf", "dayCountNtf", "weekCountNtf", "monthCountNtf",
    "qCount", "msgCount", "msgExpired", "qDeletedNew", "qDeletedSecured",
    *_PROXY,
    "pMsgFwdsRecv", "qSub", "qSubAuth", "qSubDuplicate", "qSubProhibited",
    "msgSentAuth", "msgSentQuota", "msgSentLarge", "msgNtfs", "msgNtfNoSub", "msgNtfLost",
    "-qSubNoMsg", "msgRecvGet", "msgGet", "msgGetNoMsg", "msgGetAuth", "msgGetDuplicate",
    "msgGetProhibited", "-daySubQueues", "-weekSubQueues", "-monthSubQueues",
    "queueCount", "ntfCreated", "ntfDeleted", "ntfSub", "ntfSubAuth", "ntfSubDuplicate",
    "notifierCount", "qDeletedAllB", "qSubAllB", "qSubEnd", "qSubEndB", "ntfDeletedB",
    "ntfSubB", "msgNtfsB", "msgNtfExpired", "ntfCount",
    "rcvServiceCount", "ntfServiceCount", "rcvServiceQueuesCount", "ntfServiceQueuesCount",
    *_SERVICE,
)


def csv_line(from_day: datetime.date, values: Mapping[str, int]) -> str:
    """One line of the daily file: the period's first day, then every column (0 if absent)."""
    return ",".join([from_day.isoformat(), *(str(values.get(c, 0)) for c in CSV_COLUMNS[1:])])


def _utc_day(t: float) -> datetime.date:
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).date()


class StatsLog:
    """Appends the daily line; counters are the change since the previous line."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        counters: Mapping[str, int],
        gauges: Callable[[], Mapping[str, int]],
        started_at: float,
    ) -> None:
        self.path = Path(path)
        self._counters = counters  # the broker's live totals
        self._gauges = gauges
        self._last: dict[str, int] = {}
        self._from = started_at

    def write(self, now: float) -> str:
        totals = dict(self._counters)
        values = {name: totals[name] - self._last.get(name, 0) for name in totals}
        values.update(self._gauges())
        line = csv_line(_utc_day(self._from), values)
        with open(self.path, "a", encoding="ascii") as f:
            f.write(line + "\n")
        self._last, self._from = totals, now
        return line


def seconds_until(now: float, start_of_day: float, interval: float) -> float:
    """Seconds from ``now`` to the next time ``start_of_day`` seconds after 00:00 UTC plus a
    multiple of ``interval`` (the reference writes at 00:00 UTC every 86400 s)."""
    midnight = now - now % 86400
    t = midnight + start_of_day
    while t <= now:
        t += interval
    return t - now


def summary(counters: Mapping[str, int], gauges: Mapping[str, int], clients: int) -> str:
    """The periodic log line: totals since start and current sizes, no ids or addresses."""
    c = counters.get
    return (
        f"stats: clients={clients} queues={gauges.get('qCount', 0)} "
        f"messages={gauges.get('msgCount', 0)} notifiers={gauges.get('notifierCount', 0)}; "
        f"since start: qCreated={c('qCreated', 0)} qSecured={c('qSecured', 0)} "
        f"qDeleted={c('qDeletedAll', 0)} qSub={c('qSub', 0)} msgSent={c('msgSent', 0)} "
        f"msgRecv={c('msgRecv', 0)} msgExpired={c('msgExpired', 0)} "
        f"msgSentQuota={c('msgSentQuota', 0)} msgNtfs={c('msgNtfs', 0)}"
    )
