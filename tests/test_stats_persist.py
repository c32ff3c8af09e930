"""Statistics kept across restarts (the reference's smp-server-stats.log), the Prometheus text
file ([STORE_LOG] prometheus_interval, the reference's smp-server-metrics.txt), the
active-queue period counts, and [LOG] level/format: units, then `smpfast start` end to end."""

from __future__ import annotations

import base64
import datetime
import json
import time
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

import smpfast.client as sc
from smpfast.server.metrics import METRICS_FILE, _FAMILIES, metrics_text
from smpfast.server.stats import (
    CSV_COLUMNS,
    STATS_BACKUP_FILE,
    ActiveQueues,
    PeriodSets,
    StatsBackup,
    StatsBackupError,
    StatsLog,
    decode_backup,
    encode_backup,
    format_utc,
    parse_utc,
    queue_hash,
)
from smpfast.testing.process import ServerProcess, free_port, init_data_dir

T0 = datetime.datetime(2026, 3, 2, 13, 14, 15, 250000, tzinfo=datetime.timezone.utc).timestamp()  # a Monday

# A backup in the reference's layout (ServerStatsData's StrEncoding), every section present.
REFERENCE_BACKUP = """\
fromTime=2026-03-02T13:14:15.25Z
qCreated=5
qSecured=4
qDeletedAll=2
qDeletedNew=1
qDeletedSecured=1
qDeletedAllB=1
qBlocked=0
qCount=3
qSub=7
qSubAllB=2
qSubAuth=1
qSubDuplicate=0
qSubProhibited=0
qSubEnd=1
qSubEndB=0
ntfCreated=1
ntfNewCreated=0
ntfDeleted=0
ntfDeletedB=0
ntfSub=2
ntfSubB=1
ntfSubAuth=0
ntfSubDuplicate=0
msgSent=11
msgSentAuth=1
msgSentQuota=0
msgSentLarge=0
msgSentBlock=0
msgRecv=9
msgRecvGet=2
msgGet=3
msgGetNoMsg=1
msgGetAuth=0
msgGetDuplicate=0
msgGetProhibited=0
msgExpired=4
msgSentNtf=2
msgRecvNtf=1
msgNtfs=2
msgNtfsB=1
msgNtfNoSub=0
msgNtfLost=0
msgNtfExpired=0
activeQueues:
dayHashes=-5,17
weekHashes=-5,17,99
monthHashes=-5,17,99,1000
activeQueuesNtf:
dayHashes=
weekHashes=17
monthHashes=17
pRelays:
requests=3
successes=3
errorsConnect=0
errorsCompat=0
errorsOther=0
pRelaysOwn:
requests=0
successes=0
errorsConnect=0
errorsCompat=0
errorsOther=0
pMsgFwds:
requests=0
successes=0
errorsConnect=0
errorsCompat=0
errorsOther=0
pMsgFwdsOwn:
requests=0
successes=0
errorsConnect=0
errorsCompat=0
errorsOther=0
pMsgFwdsRecv=0
rcvServices:
assocNew=0
assocDuplicate=0
assocUpdated=0
assocRemoved=0
subCount=0
subDuplicate=0
subQueues=0
subEnd=0
ntfServices:
assocNew=0
assocDuplicate=0
assocUpdated=0
assocRemoved=0
subCount=0
subDuplicate=0
subQueues=0
subEnd=0
"""


def test_reference_backup_reads_and_writes_back_identically() -> None:
    backup = decode_backup(REFERENCE_BACKUP)
    assert backup.from_time == pytest.approx(T0)
    assert backup.counters["qCreated"] == 5 and backup.counters["msgSent"] == 11
    assert backup.counters["msgRecvNtf"] == 1 and backup.counters["qCount"] == 3
    assert "requests" not in backup.counters  # proxy sections: nothing smpfast counts
    assert backup.active == PeriodSets({-5, 17}, {-5, 17, 99}, {-5, 17, 99, 1000})
    assert backup.active_ntf == PeriodSets(set(), {17}, {17})
    # smpfast keeps no proxy counts, so they come back as 0; everything else is identical.
    expected = REFERENCE_BACKUP.replace("requests=3\nsuccesses=3", "requests=0\nsuccesses=0")
    # a 6.5.5 backup has no rslvStats section; it is written as 7.x does, with zeros
    expected += "rslvStats:\nreqs=0\nsucc=0\nnotFound=0\nresolverErrs=0\ndisabled=0\n"
    assert encode_backup(backup) == expected


def test_v20_backup_keeps_the_name_resolution_counts() -> None:
    """7.x appends `rslvStats:` with five counters (reqs, succ, notFound, resolverErrs, disabled)."""
    text = REFERENCE_BACKUP.replace("requests=3\nsuccesses=3", "requests=0\nsuccesses=0") + (
        "rslvStats:\nreqs=9\nsucc=4\nnotFound=2\nresolverErrs=1\ndisabled=2\n")
    backup = decode_backup(text)
    assert {k: backup.counters[k] for k in ("rslvReqs", "rslvSucc", "rslvNotFound", "rslvResolverErrs",
                                            "rslvDisabled")} == {
        "rslvReqs": 9, "rslvSucc": 4, "rslvNotFound": 2, "rslvResolverErrs": 1, "rslvDisabled": 2}
    assert "reqs" not in backup.counters
    assert encode_backup(backup) == text


def test_older_backup_layouts() -> None:
    """qDeleted= before the split; dayMsgQueues= sets; day= sets of base64 ids."""
    rid = b"\x01" * 24
    ids = base64.urlsafe_b64encode(rid).decode()
    old = (
        "fromTime=2026-03-02T13:14:15Z\nqCreated=1\nqSecured=0\nqDeleted=2\nmsgSent=3\nmsgRecv=1\n"
        "dayMsgQueues=4,5\nweekMsgQueues=4\nmonthMsgQueues=\n"
        f"activeQueuesNtf:\nday={ids}\nweek={ids}\nmonth=\n"
    )
    backup = decode_backup(old)
    assert backup.counters == {"qCreated": 1, "qSecured": 0, "qDeletedAll": 2, "msgSent": 3, "msgRecv": 1}
    assert backup.active == PeriodSets({4, 5}, {4}, set())
    assert backup.active_ntf == PeriodSets({queue_hash(rid)}, {queue_hash(rid)}, set())


@pytest.mark.parametrize(
    "text, words",
    [("qCreated=1\n", "no fromTime"), ("fromTime=yesterday\n", "bad time"),
     ("fromTime=2026-03-02T13:14:15Z\nqCreated=many\n", "qCreated: not a number"),
     ("fromTime=2026-03-02T13:14:15Z\ngarbage\n", "expected key=value")],
)
def test_bad_backup(text: str, words: str) -> None:
    with pytest.raises(StatsBackupError, match=words):
        decode_backup(text)


def test_utc_times() -> None:
    assert format_utc(T0) == "2026-03-02T13:14:15.25Z"
    assert parse_utc("2026-03-02T13:14:15.250000000000Z") == pytest.approx(T0)
    assert format_utc(parse_utc("2026-03-02T00:00:00Z")) == "2026-03-02T00:00:00Z"


def test_period_counts_shown_as_the_reference() -> None:
    """The day's count every day; the week's on Mondays, the month's on the 1st (else
    empty), each emptied once shown."""
    active = ActiveQueues()
    active.record(b"a" * 24)
    active.record(b"b" * 24, notification=True)
    active.record(b"a" * 24)
    assert active.gauges() == {"dayMsgQueues": 2, "weekMsgQueues": 2, "monthMsgQueues": 2,
                               "dayCountNtf": 1, "weekCountNtf": 1, "monthCountNtf": 1}
    tuesday = datetime.date(2026, 3, 3)
    assert active.take_columns(tuesday) == {"dayMsgQueues": "2", "weekMsgQueues": "", "monthMsgQueues": "",
                                            "dayCountNtf": "1", "weekCountNtf": "", "monthCountNtf": ""}
    assert active.gauges()["dayMsgQueues"] == 0 and active.gauges()["weekMsgQueues"] == 2
    monday_the_first = datetime.date(2026, 6, 1)
    assert active.take_columns(monday_the_first)["weekMsgQueues"] == "2"
    assert active.gauges() == dict.fromkeys(active.gauges(), 0)


def test_daily_line_has_the_period_columns(tmp_path: Path) -> None:
    counters = {"msgSent": 2}
    active = ActiveQueues()
    active.record(b"q" * 24)
    log = StatsLog(tmp_path / "daily.log", counters, lambda: {"qCount": 1}, T0, active)
    monday = datetime.datetime(2026, 3, 9, tzinfo=datetime.timezone.utc).timestamp()
    row = dict(zip(CSV_COLUMNS, log.write(monday).split(",")))
    assert row["fromTime"] == "2026-03-02" and row["msgSent"] == "2"
    assert (row["dayMsgQueues"], row["weekMsgQueues"], row["monthMsgQueues"]) == ("1", "1", "")


def test_metrics_text_file_format() -> None:
    values = {"qCreated": 3, "qDeletedAll": 1, "qCount": 2, "dayMsgQueues": 5, "clients": 1}
    text = metrics_text(values, T0, T0 - 60)
    assert text.startswith("# Recorded at: 2026-03-02T13:14:15.25Z\n# Stats from: 2026-03-02T13:13:15.25Z\n\n")
    stamp = int(T0 * 1000)
    assert f"simplex_smp_queues_created 3 {stamp}\n# qCreated\n" in text
    assert f'simplex_smp_queues_deleted{{type="all"}} 1 {stamp}\n' in text
    assert "# TYPE simplex_smp_queues_created counter\n" in text  # typed as the reference, unlike /metrics
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): (s.value, s.timestamp)
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    assert samples[("simplex_smp_queues_daily", ())] == (5, pytest.approx(T0, abs=0.001))
    assert samples[("simplex_smp_queues_total1", ())][0] == 2
    assert samples[("simplex_smp_clients_total", ())][0] == 1
    # One family per name of the shared table, nothing else.
    assert {f.name for f in text_string_to_metric_families(text)} == {name for name, *_ in _FAMILIES}


# --- end to end -------------------------------------------------------------------------------


def _edit(ini: Path, *pairs: tuple[str, str]) -> None:
    text = ini.read_text()
    for old, new in pairs:
        assert old in text, old
        text = text.replace(old, new, 1)
    ini.write_text(text)


def _metrics(path: Path, newer_than: float) -> dict[str, float]:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if path.exists() and path.stat().st_mtime > newer_than:
            text = path.read_text()
            # By family name: the parser renames a counter's samples to <name>_total.
            return {
                family.name + "".join(f"{{{k}={v}}}" for k, v in sorted(s.labels.items())): s.value
                for family in text_string_to_metric_families(text)
                for s in family.samples
            }
        time.sleep(0.1)
    raise AssertionError(f"{path} not written")


async def _send_and_receive(address: str, n: int) -> None:
    async with sc.connect(address) as client:
        q = await client.create_queue(subscribe=False)
        for i in range(n):
            await client.send(q.snd_id, b"m%d" % i)
            msg = await client.get(q)
            assert msg is not None and await client.ack(q, msg.msg_id) is None


@pytest.fixture
def stats_dir(tmp_path: Path) -> Path:
    d = tmp_path / "srv"
    init_data_dir(d, free_port())
    _edit(d / "smpfast.ini", ("log_stats = off", "log_stats = on"),
          ("# prometheus_interval = 60", "prometheus_interval = 1"))
    return d


def test_counters_survive_a_restart_and_the_metrics_file_shows_them(stats_dir: Path, trio_run) -> None:
    metrics, backup = stats_dir / METRICS_FILE, stats_dir / STATS_BACKUP_FILE
    with ServerProcess(stats_dir) as server:
        trio_run(_send_and_receive, server.address, 2)
        done = time.time()
        first = _metrics(metrics, done)
        assert first["simplex_smp_queues_created"] == 1
        assert first["simplex_smp_messages_sent"] == 2 and first["simplex_smp_messages_received"] == 2
        assert first["simplex_smp_queues_total1"] == 1
    assert "statistics saved to" in server.log()
    saved = decode_backup(backup.read_text())
    assert saved.counters["qCreated"] == 1 and saved.counters["msgSent"] == 2 and saved.counters["msgRecv"] == 2
    assert saved.counters["qCount"] == 1  # sizes too, as the reference writes them

    with ServerProcess(stats_dir) as server:
        assert not backup.exists() and (stats_dir / (STATS_BACKUP_FILE + ".bak")).exists()
        trio_run(_send_and_receive, server.address, 1)
        done = time.time()
        second = _metrics(metrics, done)
    assert "statistics restored from" in server.log()
    assert second["simplex_smp_queues_created"] == 2  # 1 before the restart + 1 after
    assert second["simplex_smp_messages_sent"] == 3
    assert second["simplex_smp_queues_total1"] == 2  # read from the store, never restored
    header = metrics.read_text().splitlines()[1]
    assert header == f"# Stats from: {format_utc(saved.from_time)}"  # the saved period goes on
    assert decode_backup(backup.read_text()).counters["msgSent"] == 3


def test_active_queue_counts_after_a_workload(stats_dir: Path, trio_run) -> None:
    with ServerProcess(stats_dir) as server:
        trio_run(_send_and_receive, server.address, 2)
        values = _metrics(stats_dir / METRICS_FILE, time.time())
    assert values["simplex_smp_queues_daily"] == 1


def test_unreadable_stats_backup_stops_start_up(stats_dir: Path) -> None:
    import subprocess

    from smpfast.testing.process import smpfast_command

    (stats_dir / STATS_BACKUP_FILE).write_text("qCreated=1\n")
    proc = subprocess.run(smpfast_command("start", "--dir", str(stats_dir)), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.splitlines() == [
        f"smpfast: error: cannot read the saved statistics {stats_dir.absolute() / STATS_BACKUP_FILE}: "
        "no fromTime line; move it away to start with new counts"
    ]


def test_log_format_json_and_level(tmp_path: Path) -> None:
    d = tmp_path / "srv"
    init_data_dir(d, free_port())
    _edit(d / "smpfast.ini", ("format = text", "format = json"))
    with ServerProcess(d) as server:
        pass
    lines = [line for line in server.log().splitlines() if not line.startswith("Server address: ")]
    entries = [json.loads(line) for line in lines]  # every log line is one JSON object
    assert {"time", "level", "logger", "message"} <= set(entries[0])
    assert any(e["level"] == "info" and e["message"].startswith("smpfast serving on 127.0.0.1") for e in entries)

    _edit(d / "smpfast.ini", ("format = json", "format = text"), ("level = info", "level = warn"))
    with ServerProcess(d) as server:
        pass
    assert [line for line in server.log().splitlines() if " INFO " in line] == []
    assert server.log().splitlines()[0].startswith("Server address: ")
