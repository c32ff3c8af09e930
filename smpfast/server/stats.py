"""Server statistics: the reference server's counters, its daily CSV line and a log summary.

The broker keeps counters in ``Broker.stats`` under the reference's names (``qCreated``,
``msgSent``, ...: its ``ServerStats`` fields), as totals since start.  Gauges (stored queues,
messages, ...) are read from the store when needed.  The daily file writes, like the
reference's ``smp-server-stats.daily.log``, one line per day: counters since the previous
line, then gauges, in the reference's column order (``CSV_COLUMNS``).  Columns for what
smpfast does not do or keep (proxying, most service counters and the service gauges)
are written as 0.

Active queues (``ActiveQueues``, the reference's ``PeriodStats``): the queues that got or
delivered a message in the current day, week (from Monday) and month, kept as sets of
64-bit hashes of recipient ids; the daily line shows the day's count, the week's on Mondays
and the month's on the 1st (else empty), each set emptied when shown.

With the daily file on, the counters since its last line are saved to ``STATS_BACKUP_FILE``
when the server stops and read back (then renamed ``.bak``) when it starts, in the
reference's ``smp-server-stats.log`` format, so a restart loses no counts.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Mapping

from .names import NAME_STATS

STATS_FILE = "smp-server-stats.daily.log"  # the reference's name, in the server directory
STATS_BACKUP_FILE = "smp-server-stats.log"  # the reference's serverStatsBackupFile

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
    "rcvServices.assocNew", "rcvServices.assocDuplicate", "rcvServices.assocUpdated",
    "rcvServices.assocRemoved", "rcvServices.subCount", "rcvServices.subQueues", "rcvServicesSubMsg",
    *NAME_STATS,
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
    *NAME_STATS,  # v20: rslvReqs, rslvSucc, rslvNotFound, rslvResolverErrs, rslvDisabled
)


# The daily line's active-queue columns: (all, notification) x (day, week, month).
PERIOD_COLUMNS = (("dayMsgQueues", "weekMsgQueues", "monthMsgQueues"),
                  ("dayCountNtf", "weekCountNtf", "monthCountNtf"))


def csv_line(from_day: datetime.date, values: Mapping[str, int | str]) -> str:
    """One line of the daily file: the period's first day, then every column (0 if absent)."""
    return ",".join([from_day.isoformat(), *(str(values.get(c, 0)) for c in CSV_COLUMNS[1:])])


def queue_hash(recipient_id: bytes) -> int:
    """A recipient id's entry in the period sets: its first 8 bytes as a signed 64-bit int
    (ids are random; the reference keeps Haskell ``hash`` values of the same width)."""
    return int.from_bytes(recipient_id[:8], "little", signed=True)


@dataclass
class PeriodSets:
    """Ids seen this day, week and month (the reference's PeriodStatsData)."""

    day: set[int] = field(default_factory=set)
    week: set[int] = field(default_factory=set)
    month: set[int] = field(default_factory=set)

    def add(self, h: int) -> None:
        self.day.add(h)
        self.week.add(h)
        self.month.add(h)

    def counts(self) -> tuple[int, int, int]:
        return len(self.day), len(self.week), len(self.month)

    def take_counts(self, day: datetime.date) -> tuple[str, str, str]:
        """The daily line's columns for the day that just ended at 00:00 UTC of ``day``:
        the day's count, the week's on a Monday, the month's on the 1st (else ""); the
        sets shown are emptied (the reference's periodStatCounts)."""
        shown = [str(len(self.day))]
        self.day = set()
        if day.isoweekday() == 1:
            shown.append(str(len(self.week)))
            self.week = set()
        else:
            shown.append("")
        if day.day == 1:
            shown.append(str(len(self.month)))
            self.month = set()
        else:
            shown.append("")
        return shown[0], shown[1], shown[2]


class ActiveQueues:
    """Queues with a message sent or delivered (all, and with the notification flag), per
    day, week and month. The broker calls ``record`` where the reference calls
    updatePeriodStats: after a stored SEND and an ACK that removed a message."""

    def __init__(self) -> None:
        self.all = PeriodSets()
        self.ntf = PeriodSets()

    def record(self, recipient_id: bytes, notification: bool = False) -> None:
        h = queue_hash(recipient_id)
        self.all.add(h)
        if notification:
            self.ntf.add(h)

    def merge(self, hashes: Iterable[int], ntf_hashes: Iterable[int]) -> None:
        """Queues another worker saw active (``forward`` there)."""
        for h in hashes:
            self.all.add(h)
        for h in ntf_hashes:
            self.ntf.add(h)

    def gauges(self) -> dict[str, int]:
        """Current set sizes under the daily line's column names (for /metrics)."""
        out: dict[str, int] = {}
        for names, sets in zip(PERIOD_COLUMNS, (self.all, self.ntf)):
            out.update(zip(names, sets.counts()))
        return out

    def take_columns(self, day: datetime.date) -> dict[str, str]:
        out: dict[str, str] = {}
        for names, sets in zip(PERIOD_COLUMNS, (self.all, self.ntf)):
            out.update(zip(names, sets.take_counts(day)))
        return out


class ForwardedActiveQueues(ActiveQueues):
    """The active queues of one worker of several that does not answer for all: each queue
    active here goes to ``forward`` once a UTC day (to the sets of the worker that does);
    the day sets only remember what was forwarded today."""

    def __init__(self, forward: Callable[[list[int], list[int]], None],
                 clock: Callable[[], float] = time.time) -> None:
        super().__init__()
        self._forward = forward
        self._clock = clock
        self._day = -1

    def record(self, recipient_id: bytes, notification: bool = False) -> None:
        h = queue_hash(recipient_id)
        day = int(self._clock() // 86400)
        if day != self._day:  # a new UTC day: the other worker's day sets started again
            self._day = day
            self.all.day = set()
            self.ntf.day = set()
        new = h not in self.all.day
        new_ntf = notification and h not in self.ntf.day
        if new or new_ntf:
            self.all.day.add(h)
            if notification:
                self.ntf.day.add(h)
            self._forward([h], [h] if notification else [])


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
        active: ActiveQueues | None = None,
    ) -> None:
        self.path = Path(path)
        self._counters = counters  # the broker's live totals
        self._gauges = gauges
        self.active = active or ActiveQueues()
        self._last: dict[str, int] = {}
        self.from_time = started_at  # start of the period the next line covers

    def since_last_line(self) -> dict[str, int]:
        """Counters since the previous line (what the next line and the backup hold)."""
        return {name: n - self._last.get(name, 0) for name, n in self._counters.items()}

    def restore(self, backup: "StatsBackup") -> None:
        """Continue a period saved by a previous run: its counts were added to the live
        counters, so the next line is the period's whole count."""
        self.from_time = backup.from_time
        self.active.all, self.active.ntf = backup.active, backup.active_ntf

    def write(self, now: float) -> str:
        totals = dict(self._counters)
        values: dict[str, int | str] = dict(self.since_last_line())
        values.update(self._gauges())
        values.update(self.active.take_columns(_utc_day(now)))
        line = csv_line(_utc_day(self.from_time), values)
        with open(self.path, "a", encoding="ascii") as f:
            f.write(line + "\n")
        self._last, self.from_time = totals, now
        return line


# --- the backup file (smp-server-stats.log) ---------------------------------------------------

# The reference's ServerStatsData fields in its file order; "activeQueues:" etc. are section
# lines followed by their own key=value lines.
BACKUP_COUNTERS = (
    "qCreated", "qSecured", "qDeletedAll", "qDeletedNew", "qDeletedSecured", "qDeletedAllB",
    "qBlocked", "qCount", "qSub", "qSubAllB", "qSubAuth", "qSubDuplicate", "qSubProhibited",
    "qSubEnd", "qSubEndB", "ntfCreated", "ntfNewCreated", "ntfDeleted", "ntfDeletedB", "ntfSub",
    "ntfSubB", "ntfSubAuth", "ntfSubDuplicate", "msgSent", "msgSentAuth", "msgSentQuota",
    "msgSentLarge", "msgSentBlock", "msgRecv", "msgRecvGet", "msgGet", "msgGetNoMsg",
    "msgGetAuth", "msgGetDuplicate", "msgGetProhibited", "msgExpired", "msgSentNtf",
    "msgRecvNtf", "msgNtfs", "msgNtfsB", "msgNtfNoSub", "msgNtfLost", "msgNtfExpired",
)
_PROXY_FIELDS = ("requests", "successes", "errorsConnect", "errorsCompat", "errorsOther")
_SERVICE_FIELDS = ("assocNew", "assocDuplicate", "assocUpdated", "assocRemoved", "subCount",
                   "subDuplicate", "subQueues", "subEnd")
# The backup's "rslvStats:" section: its keys for the NAME_STATS counters, in order.
_NAME_FIELDS = dict(zip(("reqs", "succ", "notFound", "resolverErrs", "disabled"), NAME_STATS))


class StatsBackupError(ValueError):
    """The backup file cannot be read (the reference refuses to start then, too)."""


@dataclass
class StatsBackup:
    from_time: float  # POSIX seconds, UTC
    counters: dict[str, int]
    active: PeriodSets = field(default_factory=PeriodSets)
    active_ntf: PeriodSets = field(default_factory=PeriodSets)


def format_utc(t: float) -> str:
    """ISO 8601 UTC with microseconds, as the reference's iso8601Show of a UTCTime."""
    d = datetime.datetime.fromtimestamp(t, datetime.timezone.utc)
    text = d.strftime("%Y-%m-%dT%H:%M:%S")
    if d.microsecond:
        text += f".{d.microsecond:06d}".rstrip("0")
    return text + "Z"


_UTC_RE = re.compile(r"(\d{4}-\d{2}-\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,12}))?Z")


def parse_utc(text: str) -> float:
    m = _UTC_RE.fullmatch(text)
    if not m:
        raise StatsBackupError(f"bad time {text!r}")
    day = datetime.date.fromisoformat(m.group(1))
    d = datetime.datetime(day.year, day.month, day.day, int(m.group(2)), int(m.group(3)),
                          int(m.group(4)), tzinfo=datetime.timezone.utc)
    fraction = m.group(5) or ""
    return d.timestamp() + (int(fraction) / 10 ** len(fraction) if fraction else 0.0)


def _int_set(values: Iterable[int]) -> str:
    return ",".join(str(v) for v in sorted(values))


def encode_backup(backup: StatsBackup) -> str:
    c = backup.counters.get
    lines = [f"fromTime={format_utc(backup.from_time)}"]
    lines += [f"{name}={c(name, 0)}" for name in BACKUP_COUNTERS]
    for section, sets in (("activeQueues", backup.active), ("activeQueuesNtf", backup.active_ntf)):
        lines += [f"{section}:", f"dayHashes={_int_set(sets.day)}",
                  f"weekHashes={_int_set(sets.week)}", f"monthHashes={_int_set(sets.month)}"]
    for section in ("pRelays", "pRelaysOwn", "pMsgFwds", "pMsgFwdsOwn"):
        lines += [f"{section}:", *(f"{name}=0" for name in _PROXY_FIELDS)]
    lines.append("pMsgFwdsRecv=0")
    for section in ("rcvServices", "ntfServices"):
        lines += [f"{section}:", *(f"{name}=0" for name in _SERVICE_FIELDS)]
    lines += ["rslvStats:", *(f"{key}={c(name, 0)}" for key, name in _NAME_FIELDS.items())]
    return "\n".join(lines) + "\n"


def _parse_int(key: str, value: str) -> int:
    if not re.fullmatch(r"-?[0-9]+", value):
        raise StatsBackupError(f"{key}: not a number: {value!r}")
    return int(value)


def _parse_set(key: str, value: str) -> set[int]:
    """A set of hashes, or (older files: day=/week=/month=) of base64url ids to hash."""
    if not value:
        return set()
    if key.endswith("Hashes"):
        return {_parse_int(key, v) for v in value.split(",")}
    try:
        return {queue_hash(base64.urlsafe_b64decode(v)) for v in value.split(",")}
    except (ValueError, binascii.Error):
        raise StatsBackupError(f"{key}: bad id list") from None


def decode_backup(text: str) -> StatsBackup:
    """Read a backup in the reference's format (its older layouts too); sections smpfast
    has nothing for (proxy, services) are skipped."""
    from_time: float | None = None
    counters: dict[str, int] = {}
    sets = {"activeQueues": PeriodSets(), "activeQueuesNtf": PeriodSets()}
    section: str | None = None
    for n, line in enumerate(text.splitlines(), 1):
        if not line:
            continue
        if line.endswith(":") and "=" not in line:
            section = line[:-1]
            continue
        key, sep, value = line.partition("=")
        if not sep:
            raise StatsBackupError(f"line {n}: expected key=value, got {line!r}")
        period = key.removesuffix("Hashes")
        if section in sets and period in ("day", "week", "month"):
            setattr(sets[section], period, _parse_set(key, value))
            continue
        if period in ("dayMsgQueues", "weekMsgQueues", "monthMsgQueues"):  # oldest layout
            name = {"dayMsgQueues": "day", "weekMsgQueues": "week", "monthMsgQueues": "month"}[period]
            setattr(sets["activeQueues"], name, _parse_set(name + "Hashes", value))
            continue
        if section == "rslvStats" and key in _NAME_FIELDS:
            counters[_NAME_FIELDS[key]] = _parse_int(key, value)
        elif key == "fromTime":
            from_time = parse_utc(value)
        elif key in _PROXY_FIELDS or key in _SERVICE_FIELDS:
            continue  # proxy and service sections: smpfast keeps no such counts
        else:
            counters["qDeletedAll" if key == "qDeleted" else key] = _parse_int(key, value)
    if from_time is None:
        raise StatsBackupError("no fromTime line")
    return StatsBackup(from_time, counters, sets["activeQueues"], sets["activeQueuesNtf"])


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
