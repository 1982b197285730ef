#!/usr/bin/env bash
# `make bench`: the hot-path micro-benchmarks (Google Benchmark) and the
# end-to-end harness. Results go to run/bench/. Figures are medians of
# REPS runs; the end-to-end rate of tally is reported as a ratio against a
# bare consume->produce pipe (tally-pipe-baseline) measured in the same run
# on the same broker, because absolute rates on a shared 2-core machine
# mean little.
#
# Environment: BUILD (default build), REPS (default 3), E2E_CLICKS (default
# 200000), PARTITIONS (default 16), MICRO=0 to skip micro-benchmarks, E2E=0
# to skip the end-to-end harness, BENCH_FILTER (Google Benchmark filter).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN="$ROOT/${BUILD:-build}/bin"
OUT="$ROOT/run/bench"
REPS=${REPS:-3}
E2E_CLICKS=${E2E_CLICKS:-200000}
PARTITIONS=${PARTITIONS:-16}
mkdir -p "$OUT"

median() { sort -g | awk '{a[NR]=$1} END {if (NR==0) print "n/a"; else if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }

if [ "${MICRO:-1}" = 1 ]; then
  for b in "$BIN"/*_bench; do
    [ -x "$b" ] || continue
    name=$(basename "$b")
    echo "== $name (median of $REPS)"
    "$b" --benchmark_repetitions="$REPS" --benchmark_report_aggregates_only=true \
         --benchmark_filter="${BENCH_FILTER:-.}" \
         --benchmark_out="$OUT/$name.json" --benchmark_out_format=json 2>&1 |
      grep -E '^(Benchmark|-|.*_median)' | tee "$OUT/$name.txt"
  done
fi

if [ "${E2E:-1}" = 1 ]; then
  echo "== end to end: $E2E_CLICKS clicks, $PARTITIONS partitions, $REPS runs"
  : >"$OUT/e2e.tsv"
  for rep in $(seq 1 "$REPS"); do
    work=$(mktemp -d -t tally-bench.XXXXXX)
    "$BIN/tally-devbroker" --partitions "$PARTITIONS" --bootstrap-file "$work/bootstrap" \
        >/dev/null 2>"$work/devbroker.log" &
    broker=$!
    for _ in $(seq 1 100); do [ -s "$work/bootstrap" ] && break; sleep 0.1; done
    bs=$(cat "$work/bootstrap")
    "$BIN/tally-loadgen" --bootstrap-servers "$bs" --clicks "$E2E_CLICKS" --seed "$rep" \
        --truth "$work/truth.jsonl" 2>"$work/loadgen.log"
    "$BIN/tally-pipe-baseline" --bootstrap_servers="$bs" --output_topic=unattributed \
        >"$work/baseline.json" 2>"$work/baseline.log"
    "$BIN/tally" --config "$ROOT/deploy/config/tally.yaml" --set "kafka.bootstrap.servers=$bs" \
        --set consumer.session.timeout.ms=6000 --set metrics.listen=127.0.0.1:0 \
        --set "state.dir=$work/state" --set processing.stop_when_idle=2s \
        --set "fraud.bot_user_agents_file=$ROOT/deploy/config/bot_user_agents.txt" \
        --set "fraud.ip_blocklist_file=$ROOT/deploy/config/ip_blocklist.txt" \
        --set "offers.file=$ROOT/deploy/config/offers.yaml" \
        >"$work/tally.json" 2>"$work/tally.log"
    kill -TERM "$broker"; wait "$broker" || true
    b_msgs=$(grep -o '"messages":[0-9]*' "$work/baseline.json" | cut -d: -f2)
    b_secs=$(grep -o '"busy_seconds":[0-9.e+-]*' "$work/baseline.json" | cut -d: -f2)
    t_msgs=$(( $(grep -o '"clicks_in":[0-9]*' "$work/tally.json" | cut -d: -f2) + \
               $(grep -o '"conversions_in":[0-9]*' "$work/tally.json" | cut -d: -f2) ))
    t_secs=$(grep -o '"busy_seconds":[0-9.e+-]*' "$work/tally.json" | cut -d: -f2)
    awk -v bm="$b_msgs" -v bs="$b_secs" -v tm="$t_msgs" -v ts="$t_secs" 'BEGIN {
      br = bm / bs; tr = tm / ts; printf "%d\t%.0f\t%d\t%.0f\t%.3f\n", bm, br, tm, tr, tr / br }' \
      | tee -a "$OUT/e2e.tsv"
    rm -rf "$work"
  done
  echo "   columns: baseline_msgs baseline_msgs_per_s tally_msgs tally_msgs_per_s ratio"
  echo "   median baseline rate: $(cut -f2 "$OUT/e2e.tsv" | median) msg/s"
  echo "   median tally rate:    $(cut -f4 "$OUT/e2e.tsv" | median) msg/s"
  echo "   median ratio tally/baseline: $(cut -f5 "$OUT/e2e.tsv" | median)"
fi
