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
  : >"$OUT/restore.tsv"
  for rep in $(seq 1 "$REPS"); do
    work=$(mktemp -d -t tally-bench.XXXXXX)
    "$BIN/tally-devbroker" --partitions "$PARTITIONS" --bootstrap-file "$work/bootstrap" \
        --topic-partitions "tally-alos-state-changelog=$PARTITIONS" \
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
    # The same input at least once (no transactions), own group and changelog.
    "$BIN/tally" --config "$ROOT/deploy/config/tally.yaml" --set "kafka.bootstrap.servers=$bs" \
        --set consumer.session.timeout.ms=6000 --set metrics.listen=127.0.0.1:0 \
        --set group_id=tally-alos --set topics.changelog=tally-alos-state-changelog \
        --set processing.guarantee=at_least_once \
        --set "state.dir=$work/state-alos" --set processing.stop_when_idle=2s \
        --set "fraud.bot_user_agents_file=$ROOT/deploy/config/bot_user_agents.txt" \
        --set "fraud.ip_blocklist_file=$ROOT/deploy/config/ip_blocklist.txt" \
        --set "offers.file=$ROOT/deploy/config/offers.yaml" \
        >"$work/tally-alos.json" 2>"$work/tally-alos.log"
    # Full restore of the exactly-once run's state on an empty volume (a new
    # instance in the same group; stop_when_idle ends it once restored).
    "$BIN/tally" --config "$ROOT/deploy/config/tally.yaml" --set "kafka.bootstrap.servers=$bs" \
        --set consumer.session.timeout.ms=6000 --set metrics.listen=127.0.0.1:0 \
        --set instance_id=bench-restore \
        --set "state.dir=$work/state-restore" --set processing.stop_when_idle=1s \
        --set "fraud.bot_user_agents_file=$ROOT/deploy/config/bot_user_agents.txt" \
        --set "fraud.ip_blocklist_file=$ROOT/deploy/config/ip_blocklist.txt" \
        --set "offers.file=$ROOT/deploy/config/offers.yaml" \
        >"$work/tally-restore.json" 2>"$work/tally-restore.log"
    kill -TERM "$broker"; wait "$broker" || true
    # "restored N changelog records (offsets a .. b) in S s (C s CPU)": the
    # restorer thread's wall time and its CPU time per partition.
    restore=$(grep -o 'restored [0-9]* changelog records ([^)]*) in [0-9.]* s ([0-9.]* s CPU)' \
        "$work/tally-restore.log" |
      awk '{r += $2; s += $(NF-4); c += substr($(NF-2), 2)} END {
        if (s > 0 && c > 0) printf "%d\t%.3f\t%.0f\t%.3f\t%.0f", r, s, r / s, c, r / c;
        else printf "%d\t0\t0\t0\t0", r}')
    echo "$restore" >>"$OUT/restore.tsv"
    b_msgs=$(grep -o '"messages":[0-9]*' "$work/baseline.json" | cut -d: -f2)
    b_secs=$(grep -o '"busy_seconds":[0-9.e+-]*' "$work/baseline.json" | cut -d: -f2)
    t_msgs=$(( $(grep -o '"clicks_in":[0-9]*' "$work/tally.json" | cut -d: -f2) + \
               $(grep -o '"conversions_in":[0-9]*' "$work/tally.json" | cut -d: -f2) ))
    t_secs=$(grep -o '"busy_seconds":[0-9.e+-]*' "$work/tally.json" | cut -d: -f2)
    a_msgs=$(( $(grep -o '"clicks_in":[0-9]*' "$work/tally-alos.json" | cut -d: -f2) + \
               $(grep -o '"conversions_in":[0-9]*' "$work/tally-alos.json" | cut -d: -f2) ))
    a_secs=$(grep -o '"busy_seconds":[0-9.e+-]*' "$work/tally-alos.json" | cut -d: -f2)
    awk -v bm="$b_msgs" -v bs="$b_secs" -v tm="$t_msgs" -v ts="$t_secs" -v am="$a_msgs" \
        -v as="$a_secs" 'BEGIN {
      br = bm / bs; tr = tm / ts; ar = am / as
      printf "%d\t%.0f\t%d\t%.0f\t%.3f\t%.0f\t%.3f\n", bm, br, tm, tr, tr / br, ar, tr / ar }' \
      | tee -a "$OUT/e2e.tsv"
    rm -rf "$work"
  done
  echo "   columns: baseline_msgs baseline_msgs_per_s tally_msgs tally_msgs_per_s ratio alos_msgs_per_s eos/alos"
  echo "   median baseline rate: $(cut -f2 "$OUT/e2e.tsv" | median) msg/s"
  echo "   median tally rate:    $(cut -f4 "$OUT/e2e.tsv" | median) msg/s (exactly_once)"
  echo "   median ratio tally/baseline: $(cut -f5 "$OUT/e2e.tsv" | median)"
  echo "   median at_least_once rate: $(cut -f6 "$OUT/e2e.tsv" | median) msg/s;" \
       "median ratio exactly_once/at_least_once: $(cut -f7 "$OUT/e2e.tsv" | median)"
  echo "   full restore on an empty volume (records, restore thread seconds, records/s, its CPU seconds, records per CPU second):"
  sed 's/^/     /' "$OUT/restore.tsv"
  echo "   median restore rate: $(cut -f3 "$OUT/restore.tsv" | median) records/s on the restore thread;" \
       "$(cut -f5 "$OUT/restore.tsv" | median) records per CPU second of it"
fi

# Restart after kill -9 on the same volume with RESTART_CLICKS clicks in
# state (target: ready in under 5 s), and the memory of an instance with
# RESTART_PARTITIONS open tasks against its configured cap (state.
# block_cache_bytes) while it processes a load on top of that state.
if [ "${RESTART:-1}" = 1 ]; then
  RESTART_CLICKS=${RESTART_CLICKS:-10000000}
  RESTART_PARTITIONS=${RESTART_PARTITIONS:-64}
  echo "== restart after kill -9: $RESTART_CLICKS clicks in state, $RESTART_PARTITIONS partitions, $REPS restarts"
  work=$(mktemp -d -t tally-restart.XXXXXX)
  "$BIN/tally-statefill" --dir "$work/state" --partitions "$RESTART_PARTITIONS" \
      --clicks "$RESTART_CLICKS" >"$work/fill.json"
  echo "   state written: $(cat "$work/fill.json") ($(du -sh "$work/state" | cut -f1) on disk)"
  "$BIN/tally-devbroker" --partitions "$RESTART_PARTITIONS" --bootstrap-file "$work/bootstrap" \
      >/dev/null 2>"$work/devbroker.log" &
  broker=$!
  for _ in $(seq 1 100); do [ -s "$work/bootstrap" ] && break; sleep 0.1; done
  bs=$(cat "$work/bootstrap")
  cap=$((256 * 1024 * 1024))
  start_tally() {  # start_tally LOG -> TALLY_PID, TALLY_PORT
    "$BIN/tally" --config "$ROOT/deploy/config/tally.yaml" --set "kafka.bootstrap.servers=$bs" \
        --set consumer.session.timeout.ms=6000 --set metrics.listen=127.0.0.1:0 \
        --set instance_id=bench-restart --set "state.dir=$work/state" \
        --set "state.block_cache_bytes=$cap" \
        --set "fraud.bot_user_agents_file=$ROOT/deploy/config/bot_user_agents.txt" \
        --set "fraud.ip_blocklist_file=$ROOT/deploy/config/ip_blocklist.txt" \
        --set "offers.file=$ROOT/deploy/config/offers.yaml" >/dev/null 2>"$1" &
    TALLY_PID=$!
    TALLY_PORT=""
    for _ in $(seq 1 100); do
      TALLY_PORT=$(sed -n 's/.*metrics on port \([0-9]*\).*/\1/p' "$1" | head -n1)
      [ -n "$TALLY_PORT" ] && break
      sleep 0.05
    done
  }
  wait_ready() {  # wait_ready -> seconds since $1 (date +%s.%N)
    for _ in $(seq 1 1200); do
      if [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$TALLY_PORT/readyz")" = 200 ]; then
        awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN{printf "%.2f", b-a}'
        return 0
      fi
      sleep 0.05
    done
    echo "never"
  }
  # A first run: the group learns this member; then kill -9 and restarts.
  start_tally "$work/first.log"
  wait_ready "$(date +%s.%N)" >/dev/null
  kill -9 "$TALLY_PID"; wait "$TALLY_PID" 2>/dev/null || true
  : >"$OUT/restart.tsv"
  for rep in $(seq 1 "$REPS"); do
    t0=$(date +%s.%N)
    start_tally "$work/restart-$rep.log"
    total=$(wait_ready "$t0")
    # Tally's own part: from the assignment (the group protocol's share is the
    # broker's; on the mock a rejoin waits about session.timeout.ms) to ready.
    assigned=$(grep -m1 'assigned [0-9]* partitions' "$work/restart-$rep.log" | cut -d' ' -f1)
    own=$(python3 - "$t0" "$assigned" "$total" <<'PY'
import sys, datetime
t0, assigned, total = float(sys.argv[1]), sys.argv[2], sys.argv[3]
try:
    a = datetime.datetime.strptime(assigned, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=datetime.timezone.utc).timestamp()
    print("%.2f" % (t0 + float(total) - a))
except Exception:
    print("n/a")
PY
)
    printf '%s\t%s\n' "$total" "$own" | tee -a "$OUT/restart.tsv"
    if [ "$rep" -lt "$REPS" ]; then kill -9 "$TALLY_PID"; wait "$TALLY_PID" 2>/dev/null || true; fi
  done
  echo "   columns: seconds from start to /readyz 200, seconds from the assignment to /readyz 200"
  echo "   median time to ready after kill -9: $(cut -f1 "$OUT/restart.tsv" | median) s" \
       "(from the assignment: $(cut -f2 "$OUT/restart.tsv" | median) s)"
  # Memory: the last instance processes a load over the 10M-click state.
  "$BIN/tally-loadgen" --bootstrap-servers "$bs" --clicks 100000 --seed 9 \
      --truth "$work/truth.jsonl" 2>"$work/loadgen.log"
  for _ in $(seq 1 600); do
    done_in=$(curl -s "http://127.0.0.1:$TALLY_PORT/metrics" | awk '/^tally_input_messages_total/ {s += $2} END {print s + 0}')
    [ "${done_in%.*}" -ge 100000 ] && break
    sleep 0.5
  done
  hwm=$(awk '/VmHWM/ {print $2}' "/proc/$TALLY_PID/status")
  rss=$(awk '/VmRSS/ {print $2}' "/proc/$TALLY_PID/status")
  # What RocksDB holds of the cap (blocks, indexes, filters, memtables).
  used=$(curl -s "http://127.0.0.1:$TALLY_PORT/metrics" | awk '/^tally_state_cache_usage_bytes/ {printf "%d", $2}')
  echo "   memory with $RESTART_PARTITIONS open tasks, $RESTART_CLICKS clicks in state, after 100k more:" \
       "peak RSS $((hwm / 1024)) MiB, RSS $((rss / 1024)) MiB; state (RocksDB) $(( ${used:-0} / 1048576 )) MiB" \
       "of its cap (block cache incl. memtables) $((cap / 1048576)) MiB; fixed tables: dedup $(( $(grep -o 'table_slots: [0-9]*' "$ROOT/deploy/config/tally.yaml" | head -n1 | awk '{print $2}') * 8 / 1048576 )) MiB" \
       "+ flood $(( $(grep -o 'flood_table_slots: [0-9]*' "$ROOT/deploy/config/tally.yaml" | awk '{print $2}') * 8 / 1048576 )) MiB" \
       | tee "$OUT/memory.txt"
  kill -TERM "$TALLY_PID"; wait "$TALLY_PID" 2>/dev/null || true
  kill -TERM "$broker"; wait "$broker" 2>/dev/null || true
  rm -rf "$work"
fi
