#!/usr/bin/env bash
# The long fuzzing run: every target one after the other (never in parallel), at low
# priority, each for SECONDS, growing its corpus in WORKDIR/<target> from the committed
# seeds; then the line coverage of each target's modules over its final corpus.
#
#   fuzz/long_run.sh WORKDIR [SECONDS_PER_TARGET=600] [TARGET ...]
#
# RUNS=N stops each target after N inputs instead (SECONDS stays the upper bound), for
# a campaign of a fixed size: RUNS=10000000 fuzz/long_run.sh /tmp/fuzz 36000 core_twins
#
# Logs: WORKDIR/<target>.log (libFuzzer's, with -print_final_stats) and
# WORKDIR/<target>.coverage; a summary line per target at the end. A target that finds
# a bug stops early; its input is WORKDIR/<target>-crash-* (replay: python
# fuzz/<target>.py FILE). The grown corpora stay in WORKDIR: do not commit them.
set -uo pipefail
cd "$(dirname "$0")/.."
work=${1:?usage: fuzz/long_run.sh WORKDIR [SECONDS_PER_TARGET] [TARGET ...]}
seconds=${2:-600}
shift $(( $# < 2 ? $# : 2 ))
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(core_twins handshake_blocks command_codecs broker_memory)
python=${PYTHON:-.venv/bin/python}
mkdir -p "$work"

for t in "${targets[@]}"; do
    mkdir -p "$work/$t"
    echo "== $t: ${seconds}s" >&2
    nice -n 19 "$python" "fuzz/$t.py" -max_total_time="$seconds" -runs="${RUNS:--1}" -print_final_stats=1 \
        -artifact_prefix="$work/$t-" "$work/$t" "fuzz/corpus/$t" >"$work/$t.log" 2>&1
    echo "$t exit $?" >>"$work/$t.log"
    nice -n 19 "$python" fuzz/coverage_report.py "$t" "$work/$t" "fuzz/corpus/$t" \
        >"$work/$t.coverage" 2>/dev/null
done

for t in "${targets[@]}"; do
    log="$work/$t.log"
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
    last=$(grep -E '^#[0-9]+' "$log" | tail -1)
    cov=$(sed -n 's/.* cov: \([0-9]*\) ft: \([0-9]*\).*/cov \1 ft \2/p' <<<"$last")
    lines=$(sed -n 's/.*line coverage: //p' "$work/$t.coverage")
    status=$(tail -1 "$log")
    echo "$t: runs ${runs:-?} exec/s ${rate:-?} ${cov:-?} lines ${lines:-?} ($status)"
done
