#!/usr/bin/env bash
# Fault scenario (b): SIGTERM restarts. One instance consumes a rate-limited
# load and is stopped with SIGTERM RESTARTS times, a random 0.5-3 s after it
# is up, each time restarted on the same state dir; a last run drains the
# input (processing.stop_when_idle=2s).
# Pass: every run exits 0 after SIGTERM (commit, leave the group), and
# tally-verify finds no mismatch and no copy (a clean stop never replays:
# --max-copies=0), with the runs' summaries adding up to the input exactly.
# usage: sigterm_restarts.sh BIN_DIR SRC_DIR [CLICKS] [PARTITIONS] [RESTARTS] [RATE]
# FAULTS_FULL=1: 400k clicks, 32 partitions (the mock keeps about 5 MiB a partition).
BIN_DIR=$1
SRC_DIR=$2
source "$SRC_DIR/tests/faults/lib.sh"
CLICKS=${3:-$(faults_size 15000 400000)}
PARTITIONS=${4:-$(faults_size 4 32)}
RESTARTS=${5:-5}
RATE=${6:-$(faults_size 450 5000)}
RANDOM=${SEED:-12}

start_devbroker_ctl "$PARTITIONS"
start_load "$CLICKS" "$RATE" --bad-share 0.02

ups=()
bad_exits=0
for ((k = 1; k <= RESTARTS; k++)); do
  start_instance p1
  up=$(wait_up p1 30) || true
  ups+=("$up")
  delay_ms=$((500 + RANDOM % 2500))
  sleep "$(awk -v d="$delay_ms" 'BEGIN{printf "%.3f", d/1000}')"
  if ! kill -0 "$INSTANCE_PID" 2>/dev/null; then
    rc=0; wait "$INSTANCE_PID" || rc=$?
    bad_exits=$((bad_exits + 1))
    note "run $(cat "$WORK/p1.run") exited by itself with $rc before SIGTERM #$k"
    continue
  fi
  t0=$(date +%s.%N)
  kill -TERM "$INSTANCE_PID"
  rc=0
  wait "$INSTANCE_PID" || rc=$?
  took=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}')
  [ "$rc" = 0 ] || bad_exits=$((bad_exits + 1))
  note "SIGTERM #$k: run $(cat "$WORK/p1.run"), up after $up, stopped ${delay_ms} ms later; exit $rc after ${took}s"
done
wait_load

start_instance p1 --set processing.stop_when_idle=2s
up=$(wait_up p1 30) || true
ups+=("$up")
final_rc=0
wait "$INSTANCE_PID" || final_rc=$?
note "final run $(cat "$WORK/p1.run"): up after $up, drained, exit $final_rc"

summaries_of p1
rc=0
verify_faults --max-copies 0 "${SUMMARY_FLAGS[@]}" || rc=$?
print_summary "SIGTERM restarts: $CLICKS clicks, $PARTITIONS partitions, $RESTARTS restarts at ${RATE} msg/s" \
    "SIGTERM restarts: $RESTARTS, runs not exiting 0: $bad_exits, final run rc=$final_rc" \
    "time to up after each start: ${ups[*]}" \
    "$(grep '^tally-verify: processor' "$WORK/verify.txt" || true)"
if [ "$bad_exits" != 0 ] || [ "$final_rc" != 0 ]; then
  echo "FAIL: $bad_exits runs did not exit 0 on SIGTERM (final rc=$final_rc)"
  exit 1
fi
if [ "$rc" != 0 ]; then
  echo "FAIL: tally-verify: ${V_MISMATCHES:-?} mismatches, ${V_COPIES:-?} copies (none allowed)"
  exit 1
fi
echo "PASS"
