"""smpfast.load building blocks without a server: bodies, options, counting, thresholds,
histograms, progress output."""

from __future__ import annotations

import io

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from smpfast.load import diagnose, exitcodes, failures, payload, report, thresholds
from smpfast.load.config import (
    MIN_BODY_SIZE,
    LoadConfig,
    Thresholds,
    UsageError,
    Warmup,
    parse_seconds,
    parse_warmup,
)
from smpfast.load.histogram import PERCENTILES, Latency
from smpfast.load.progress import Progress
from smpfast.load.stages import Schedule, Stage, parse_stages
from smpfast.load.stats import Series, Stats
from smpfast.load.tracker import LOST, Send, Tracker

ADDR = "smp://q0nSMfsauvapypG-U61b_pDZGrfaj1DdXJnzzLMTZ2E=@127.0.0.1:5223"


# ------------------------------------------------------------------ payload


def test_header_size_is_the_configured_minimum():
    assert payload.HEADER_SIZE == MIN_BODY_SIZE


@given(st.integers(0, 2**32 - 1), st.integers(0, 2**64 - 1), st.integers(-(2**63), 2**63 - 1),
       st.integers(-(2**63), 2**63 - 1), st.integers(payload.HEADER_SIZE, 16384))
def test_payload_round_trip(stream, seq, intended, sent, size):
    body = payload.encode(stream, seq, intended, sent, size)
    assert len(body) == size
    assert payload.decode(body, size) == payload.Stamp(stream, seq, intended, sent)


@given(st.integers(0, 2**20), st.integers(payload.HEADER_SIZE, 2048), st.data())
def test_payload_any_flipped_byte_is_detected(seq, size, data):
    body = bytearray(payload.encode(3, seq, 10, 20, size))
    i = data.draw(st.integers(0, size - 1))
    body[i] ^= data.draw(st.integers(1, 255))
    with pytest.raises(payload.PayloadError) as e:
        payload.decode(bytes(body), size)
    if i >= payload.HEADER_SIZE:  # header intact: the message is still known
        assert e.value.kind == "pattern" and e.value.stamp.seq == seq
    else:
        assert e.value.kind == "header" and e.value.stamp is None


@given(st.binary(max_size=200))
def test_payload_garbage_raises_only_payload_error(data):
    try:
        payload.decode(data)
    except payload.PayloadError:
        pass


def test_payload_swapped_bodies_and_sizes():
    a = payload.encode(1, 7, 0, 0, 100)
    b = payload.encode(1, 8, 0, 0, 100)
    # b's header with a's pattern: another message's body
    with pytest.raises(payload.PayloadError) as e:
        payload.decode(b[: payload.HEADER_SIZE] + a[payload.HEADER_SIZE :])
    assert e.value.kind == "pattern"
    with pytest.raises(payload.PayloadError) as e:
        payload.decode(a, 101)
    assert e.value.kind == "size" and e.value.stamp is not None
    with pytest.raises(payload.PayloadError):
        payload.decode(a[:10])
    with pytest.raises(ValueError):
        payload.encode(0, 0, 0, 0, payload.HEADER_SIZE - 1)


# ------------------------------------------------------------------ options


@pytest.mark.parametrize("text, seconds", [("20", 20.0), ("20s", 20.0), ("500ms", 0.5), ("2m", 120.0), ("1.5", 1.5)])
def test_parse_seconds(text, seconds):
    assert parse_seconds(text) == seconds


@pytest.mark.parametrize("text", ["", "s", "-1", "1x", "1 2"])
def test_parse_seconds_rejects(text):
    with pytest.raises(ValueError):
        parse_seconds(text)


def test_parse_warmup():
    assert parse_warmup("5") == Warmup(seconds=5.0)
    assert parse_warmup("500ms") == Warmup(seconds=0.5)
    assert parse_warmup("1000msgs") == Warmup(messages=1000)
    assert parse_warmup("10 messages") == Warmup(messages=10)
    assert parse_warmup("0") == Warmup() and not Warmup().enabled


@pytest.mark.parametrize("kwargs, message", [
    (dict(scenario="nope"), "scenario"),
    (dict(auth="x25519", max_version=6), "x25519"),
    (dict(max_version=5), "max-version"),
    (dict(pairs=0), "--pairs"),
    (dict(pairs=4, queues=3), "--queues"),
    (dict(duration=1.0, messages=5), "not both"),
    (dict(size=10), "--size"),
    (dict(size=20000), "--size"),
    (dict(rate=0.0), "--rate"),
    (dict(scenario="subscribe", rate=10.0), "subscribe"),
    (dict(scenario="subscribe", warmup=Warmup(seconds=1)), "warm-up"),
    (dict(connections=0), "--connections"),
])
def test_config_validation(kwargs, message):
    with pytest.raises(UsageError, match=message):
        LoadConfig(ADDR, **kwargs).validate()


def test_config_defaults_and_redaction():
    cfg = LoadConfig("smp://abc:secret@host:5223", pairs=3)
    cfg.validate()
    assert cfg.effective_queues() == 3 and cfg.effective_connections() == 3
    assert cfg.effective_concurrency() == 1 and cfg.model == "closed"
    assert "secret" not in cfg.redacted_address() and cfg.redacted_address() == "smp://abc:***@host:5223"
    assert LoadConfig(ADDR).redacted_address() == ADDR
    assert LoadConfig(ADDR, rate=5.0).effective_concurrency() > 1
    assert LoadConfig(ADDR, scenario="fanout", group=7).effective_queues() == 7


# ------------------------------------------------------------------ counting


def test_tracker_counts_add_up_with_failures_and_losses():
    async def main():
        stats = Stats(("latency",), 100)
        tracker = Tracker(stats)
        completed = []
        sends = []
        for seq in range(10):
            s = Send(0.0, 0.0, warm=seq < 2, deliveries=1, done=lambda s, now: completed.append(s))
            sends.append(s)
            stats.sent(s.warm, 0.0)
            tracker.expect((0, seq), s)
        for seq in range(6):
            tracker.resolve(tracker.take((0, seq)), 1.0, None, 0.5)
        tracker.fail((0, 6), 1.0, "SEND ERR QUOTA")
        assert tracker.take((0, 99)) is None  # a duplicate
        assert len(tracker) == 3
        with trio.move_on_after(0.01) as scope:
            await tracker.wait_empty()
        assert scope.cancelled_caught
        assert tracker.lose_all() == 3
        await tracker.wait_empty()
        m, w = stats.measured, stats.warmup
        assert (w.sent, w.received, w.errors) == (2, 2, 0)
        assert (m.sent, m.received, m.errors) == (8, 4, 4)
        assert m.sent == m.received + m.errors
        assert dict(m.errors_by_type) == {"SEND ERR QUOTA": 1, LOST: 3}
        assert len(completed) == 10
        assert stats.primary.count == 4  # warm-up latencies are not in the results
        assert stats.elapsed() == pytest.approx(1.0)  # losses do not stretch the window

    trio.run(main)


def test_group_send_completes_after_all_deliveries():
    stats = Stats(("delivery", "fanout"))
    tracker = Tracker(stats)
    done = []
    s = Send(0.0, 0.0, False, 3, done=lambda s, now: done.append((s.failed, now)))
    for m in range(3):
        stats.sent(False, 0.0)
        tracker.expect((0, m), s)
    tracker.resolve(tracker.take((0, 0)), 1.0, None, 1.0)
    tracker.fail((0, 1), 1.5, "SEND ERR AUTH")
    assert not done
    tracker.resolve(tracker.take((0, 2)), 2.0, None, 2.0)
    assert done == [(1, 2.0)]
    assert (stats.measured.sent, stats.measured.received, stats.measured.errors) == (3, 2, 1)


def test_series_rows_are_deltas():
    stats = Stats(("latency",), 1000)
    series = Series(stats, 0.0)
    for _ in range(5):
        stats.sent(False, 0.0)
    for _ in range(4):
        stats.received(False, 0.5, 0.002)
    stats.other("x")
    row = series.sample(1.0, "measure")
    assert (row["sent"], row["received"], row["errors"]) == (5, 4, 1)
    assert row["per_second"] == 4.0 and row["mb_per_second"] == 0.004
    assert row["p99_ms"] == pytest.approx(2.0, rel=0.01)
    row = series.sample(2.0, "drain")
    assert (row["sent"], row["received"], row["errors"], row["p99_ms"]) == (0, 0, 0, None)


def test_latency_histogram_summary():
    h = Latency()
    assert h.summary()["p99"] is None
    for ms in range(1, 101):
        h.record(ms / 1000)
    s = h.summary()
    assert s["count"] == 100 and s["min"] == pytest.approx(1.0) and s["max"] == pytest.approx(100.0, rel=1e-3)
    assert s["p50"] == pytest.approx(50.0, rel=1e-2) and s["p99"] == pytest.approx(99.0, rel=1e-2)
    h.record(10_000_000)  # beyond the range: clamped, not an error
    h.record(0)


# ------------------------------------------------------------------ thresholds


def _results(p99, per_second, errors, other=0):
    return {"latency_ms": {"p99": p99}, "throughput": {"per_second": per_second},
            "counts": {"errors": errors}, "other_errors": other}


def test_thresholds():
    limits = Thresholds(max_p99_ms=5.0, min_throughput=100.0, max_errors=0)
    checks = thresholds.check(limits, _results(4.0, 150.0, 0))
    assert [c["passed"] for c in checks] == [True, True, True]
    checks = thresholds.check(limits, _results(6.0, 50.0, 0, other=1))
    assert [c["passed"] for c in checks] == [False, False, False]
    assert thresholds.check(Thresholds(max_p99_ms=1.0), _results(None, 0.0, 0))[0]["passed"] is False
    assert thresholds.check(Thresholds(), _results(1.0, 1.0, 1)) == []
    assert (exitcodes.OK, exitcodes.USAGE_OR_SETUP, exitcodes.THRESHOLD) == (0, 1, 2)


# ------------------------------------------------------------------ progress


def test_progress_modes():
    out = io.StringIO()
    p = Progress(out)  # StringIO is not a terminal: plain lines
    assert p.mode == "plain"
    p.update("one")
    p.update("two")
    p.message("done")
    assert out.getvalue() == "one\ntwo\ndone\n"

    out = io.StringIO()
    p = Progress(out, "tty")
    p.update("one")
    p.update("two")
    p.message("done")
    assert out.getvalue().startswith("\r\x1b[Kone\r\x1b[Ktwo")
    assert out.getvalue().endswith("done\n")

    out = io.StringIO()
    p = Progress.for_options(True, out)
    p.update("x")
    p.message("y")
    assert out.getvalue() == ""


@settings(max_examples=25, deadline=None)  # hdrh's own mean/stddev are slow
@given(st.lists(st.integers(1, 10**9), min_size=1, max_size=300))
def test_latency_summary_matches_hdrh(values_us):
    h = Latency()
    for v in values_us:
        h.record(v / 1e6)
    s = h.summary()
    H = h.hist
    assert s["count"] == len(values_us)
    assert s["mean"] == pytest.approx(round(H.get_mean_value() / 1000, 3), abs=0.0011)
    assert s["stddev"] == pytest.approx(round(H.get_stddev() / 1000, 3), abs=0.0011)
    for name, p in PERCENTILES.items():
        assert s[name] == H.get_value_at_percentile(p) / 1000
    assert s["max"] == H.get_max_value() / 1000 and s["min"] == H.get_min_value() / 1000


# ------------------------------------------------------------------ histograms: encoding, merging, spectrum


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(1, 3_600_000_000), max_size=400), st.data())
def test_merged_histograms_equal_one_histogram_of_all_samples(values_us, data):
    """Split the samples over up to four generators, encode each histogram as a report
    does, decode and add: the result is the histogram of all the samples, bucket by bucket."""
    parts = data.draw(st.integers(1, 4))
    owner = data.draw(st.lists(st.integers(0, parts - 1), min_size=len(values_us), max_size=len(values_us)))
    hists = [Latency() for _ in range(parts)]
    everything = Latency()
    for v, o in zip(values_us, owner):
        hists[o].record(v / 1e6)
        everything.record(v / 1e6)
    merged = Latency()
    for h in hists:
        text = h.encode()
        assert text.startswith("HIST")
        merged.add(Latency.decode(text))
    assert merged.same_counts(everything)
    assert merged.summary() == everything.summary()
    assert merged.spectrum() == everything.spectrum()


def test_decode_rejects_what_is_not_a_histogram():
    with pytest.raises(ValueError, match="HdrHistogram"):
        Latency.decode("HISTFAAAAnot really")
    with pytest.raises(ValueError):
        Latency.decode("hello")


def test_spectrum_and_hgrm_file():
    h = Latency()
    for ms in range(1, 1001):
        h.record(ms / 1000)
    rows = h.spectrum()
    assert rows[0]["percentile"] == 0 and rows[-1]["percentile"] == 1.0 and rows[-1]["count"] == 1000
    assert all(a["value_ms"] <= b["value_ms"] and a["count"] <= b["count"] for a, b in zip(rows, rows[1:]))
    assert len(rows) > 40  # the full spectrum, not a few percentiles
    out = io.StringIO()
    h.write_hgrm(out)
    text = out.getvalue().splitlines()
    assert text[0].split() == ["Value", "Percentile", "TotalCount", "1/(1-Percentile)"]
    assert text[2].split()[:3] == ["1.000", "0.000000000000", "1"]
    assert text[-3].startswith("#[Mean    =") and "StdDeviation" in text[-3]
    mean = float(text[-3].split("=")[1].split(",")[0])
    assert mean == pytest.approx(500.5, rel=0.01)  # in ms, as the values
    assert text[-2].split() == ["#[Max", "=", f"{h.summary()['max']:.3f},", "Total", "count", "=", "1000]"]


# ------------------------------------------------------------------ stages


def test_parse_stages():
    assert parse_stages("10s:100,30s:1000,10s:0") == (Stage(10.0, 100.0), Stage(30.0, 1000.0), Stage(10.0, 0.0))
    assert parse_stages("500ms:5, 1m:2.5") == (Stage(0.5, 5.0), Stage(60.0, 2.5))
    for bad in ("", "10s", "10s:", "x:10", "0s:10", "10s:-1", "10s:1,,"):
        with pytest.raises(ValueError):
            parse_stages(bad)


def test_schedule_counts_are_exact():
    s = Schedule(parse_stages("10s:100,30s:1000,10s:0"))
    # ramp 0->100 over 10 s: 500; ramp 100->1000 over 30 s: 16500; ramp 1000->0 over 10 s: 5000
    assert [s.planned(j) for j in range(3)] == [500, 16500, 5000] and s.messages == 22000
    assert s.target_at(5) == 50 and s.target_at(25) == 550 and s.target_at(45) == 500
    assert s.time_of(0) == (0.0, 0) and s.time_of(500) == (10.0, 1) and s.time_of(22000) is None


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([0.25, 0.5, 1.0, 3.0]), st.integers(0, 400)), min_size=1, max_size=5))
def test_schedule_places_every_message_in_its_stage(stages):
    s = Schedule(tuple(Stage(d, float(t)) for d, t in stages))
    times = [s.time_of(k) for k in range(s.messages)]
    assert s.time_of(s.messages) is None
    assert sum(s.planned(j) for j in range(len(stages))) == s.messages
    per_stage = [0] * len(stages)
    for t, j in times:
        per_stage[j] += 1
        assert s.starts[j] - 1e-9 <= t <= s.starts[j] + stages[j][0] + 1e-9
    assert per_stage == [s.planned(j) for j in range(len(stages))]
    assert all(a[0] <= b[0] + 1e-9 for a, b in zip(times, times[1:]))  # sends in order


@pytest.mark.parametrize("kwargs, message", [
    (dict(stages=parse_stages("1s:10"), rate=5.0), "--stages"),
    (dict(stages=parse_stages("1s:10"), duration=5.0), "--stages"),
    (dict(stages=parse_stages("1s:10"), warmup=Warmup(seconds=1)), "warm-up"),
    (dict(stages=parse_stages("1s:0"), ), "nothing would be sent"),
    (dict(stages=parse_stages("1s:3"), stage_target="concurrency", concurrency=2), "--concurrency"),
    (dict(scenario="subscribe", stages=parse_stages("1s:3")), "subscribe"),
    (dict(workers=0), "--workers"),
    (dict(workers=3, pairs=2), "--pairs is 2"),
    (dict(workers=2, pairs=2, messages=1), "--messages is 1"),
])
def test_stage_and_worker_validation(kwargs, message):
    with pytest.raises(UsageError, match=message):
        LoadConfig(ADDR, **kwargs).validate()


def test_stage_models_and_concurrency():
    open_cfg = LoadConfig(ADDR, pairs=2, stages=parse_stages("1s:10,1s:0"))
    open_cfg.validate()
    assert open_cfg.open_loop and open_cfg.planned_seconds() == 2.0
    closed = LoadConfig(ADDR, pairs=3, stages=parse_stages("1s:7,1s:2"), stage_target="concurrency")
    closed.validate()
    assert not closed.open_loop and closed.effective_concurrency() == 3  # ceil(7 / 3 senders)
    assert closed.to_json()["stages"] == "1s:7,1s:2" and closed.to_json()["stage_target"] == "concurrency"


# ------------------------------------------------------------------ workers' shares


def test_worker_shares_add_up_to_the_run():
    cfg = LoadConfig(ADDR, pairs=5, queues=11, connections=3, rate=100.0, messages=101,
                     warmup=Warmup(messages=7), stages=(), workers=3)
    cfg.validate()
    shares = [cfg.share(i, 3) for i in range(3)]
    assert [s.pairs for s in shares] == [2, 2, 1] and sum(s.queues for s in shares) == 11
    assert all(s.queues >= s.pairs for s in shares) and sum(s.connections for s in shares) == 3
    assert sum(s.messages for s in shares) == 101 and sum(s.warmup.messages for s in shares) == 7
    assert sum(s.rate for s in shares) == pytest.approx(100.0)
    assert all(s.workers == 1 and s.json_path is None and s.quiet for s in shares)
    for s in shares:
        s.validate()
        assert LoadConfig.from_wire(s.to_wire()) == s  # what a worker process rebuilds
    staged = LoadConfig(ADDR, pairs=2, stages=parse_stages("1s:90,2s:30"), workers=2).share(1, 2)
    assert staged.stages == (Stage(1.0, 45.0), Stage(2.0, 15.0))
    fan = LoadConfig(ADDR, scenario="fanout", group=6, messages=10, workers=2).share(0, 2)
    assert fan.group == 6 and fan.messages == 5  # each worker: its own group of G
    sub = LoadConfig(ADDR, scenario="subscribe", queues=1000, connections=10, workers=4).share(3, 4)
    assert (sub.queues, sub.connections) == (250, 2)


# ------------------------------------------------------------------ failures, verdict, formatting


def _run_results(**scenario):
    return {"scenario": {"lost": 0, "unsent": 0, "gave_up": False, "ended_early": False,
                         "connections_lost": 0, **scenario},
            "integrity_errors": scenario.pop("integrity", 0), "interrupted": False,
            "warmup": {"errors_by_type": {}}}


def test_failures_name_what_went_wrong():
    assert failures.evaluate(_run_results()) == []
    got = failures.evaluate(_run_results(lost=4, connections_lost=4, ended_early=True, planned_seconds=8.0,
                                         sending_seconds=2.7, abort_reason="recipient connection closed"))
    assert [(f["kind"], f["count"]) for f in got] == [("connections_lost", 4), ("messages_lost", 4), ("ended_early", 1)]
    assert got[2]["message"] == "sending stopped after 2.7 s of the planned 8 s (recipient connection closed)"
    got = failures.evaluate({**_run_results(unsent=3, gave_up=True), "integrity_errors": 1})
    assert [f["kind"] for f in got] == ["messages_unsent", "corrupt_messages", "no_progress"]
    assert set(failures.KINDS) >= {f["kind"] for f in got}


def test_verdict_precedence():
    bad = _run_results(lost=1)
    ok_checks, breached = [{"passed": True}], [{"passed": False}]
    assert report.verdict(False, _run_results(), ok_checks, False)[:2] == (0, "passed")
    assert report.verdict(False, _run_results(), breached, False)[:2] == (2, "thresholds_breached")
    assert report.verdict(False, bad, breached, False)[:2] == (exitcodes.RUN_FAILED, "failed")
    assert report.verdict(True, bad, ok_checks, False)[:2] == (0, "passed")  # --allow-errors
    code, outcome, found = report.verdict(True, bad, breached, True)
    assert (code, outcome) == (130, "interrupted") and found[0]["kind"] == "messages_lost"
    assert exitcodes.RUN_FAILED == 3 and exitcodes.INTERRUPTED == 130


@pytest.mark.parametrize("value, text", [(1e6, "1,000,000"), (1e12, "1,000,000,000,000"), (0.5, "0.5"),
                                         (1234.5678, "1,234.6"), (12.5, "12.5"), (50, "50"), (None, "-")])
def test_numbers_read_as_numbers(value, text):
    assert report.number(value) == text


# ------------------------------------------------------------------ addresses


@pytest.mark.parametrize("address, says", [
    ("smp://nothex@127.0.0.1:5223", "the fingerprint 'nothex' in the address is not a server fingerprint"),
    ("smp://not!hex@127.0.0.1:5223", "the fingerprint 'not!hex'"),
    ("smp://@127.0.0.1:5223", "the fingerprint ''"),
    ("127.0.0.1:5223", "must look like smp://FINGERPRINT[:PASSWORD]@HOST[:PORT]"),
    ("smp://q0nSMfsauvapypG-U61b_pDZGrfaj1DdXJnzzLMTZ2E=:@127.0.0.1", "password"),
])
def test_bad_addresses_are_echoed_as_typed(address, says):
    with pytest.raises(UsageError) as e:
        diagnose.check_address(address)
    assert says in str(e.value)
    assert "nothew" not in str(e.value)  # never a re-encoding of the user's text


def test_good_addresses_pass():
    diagnose.check_address(ADDR)
    diagnose.check_address("smp://q0nSMfsauvapypG-U61b_pDZGrfaj1DdXJnzzLMTZ2E:pass@a.example,b.example:443")
