"""smpfast.load building blocks without a server: bodies, options, counting, thresholds,
histograms, progress output."""

from __future__ import annotations

import io

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from smpfast.load import exitcodes, payload, thresholds
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
