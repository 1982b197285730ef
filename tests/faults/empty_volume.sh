#!/usr/bin/env bash
# Fault scenario (issue 7 a): an instance restarted on an EMPTY state
# directory (a pod rescheduled onto a node with a new volume). One instance
# consumes a rate-limited load; MOVES times it is stopped (SIGTERM) at a
# random moment, its state directory is deleted, and it is started again:
# every task is rebuilt from the state changelog before it processes input.
# A last run drains the input.
# Pass: tally-verify finds no mismatch and no copy (nothing missing, nothing
# changed), no state gap is logged, and every restart restored records
# from the changelog.
# usage: empty_volume.sh BIN_DIR SRC_DIR [CLICKS] [PARTITIONS] [MOVES] [RATE]
# FAULTS_FULL=1: 200k clicks, 32 partitions (the mock keeps about 5 MiB of
# each changelog partition; the state must fit it).
BIN_DIR=$1
SRC_DIR=$2
source "$SRC_DIR/tests/faults/lib.sh"
CLICKS=${3:-$(faults_size 12000 200000)}
PARTITIONS=${4:-$(faults_size 4 32)}
MOVES=${5:-2}
RATE=${6:-$(faults_size 600 4000)}
RANDOM=${SEED:-7}

start_devbroker_ctl "$PARTITIONS"
start_load "$CLICKS" "$RATE" --bad-share 0.02

ups=()
bad_exits=0
restored=()
for ((k = 1; k <= MOVES; k++)); do
  start_instance p1
  up=$(wait_up p1 60) || true
  ups+=("$up")
  delay_ms=$((1500 + RANDOM % 3000))
  sleep "$(awk -v d="$delay_ms" 'BEGIN{printf "%.3f", d/1000}')"
  kill -TERM "$INSTANCE_PID"
  rc=0
  wait "$INSTANCE_PID" || rc=$?
  [ "$rc" = 0 ] || bad_exits=$((bad_exits + 1))
  rm -rf "$WORK/state-p1"
  echo "move #$k: SIGTERM ${delay_ms} ms after up, state-p1 deleted" >>"$WORK/injections.txt"
  note "move #$k: run $(cat "$WORK/p1.run") exit $rc; state directory deleted"
done
wait_load

start_instance p1 --set processing.stop_when_idle=2s
up=$(wait_up p1 60) || true
ups+=("$up")
final_rc=0
wait "$INSTANCE_PID" || final_rc=$?
note "final run $(cat "$WORK/p1.run"): up after $up, drained, exit $final_rc"

for ((r = 2; r <= MOVES + 1; r++)); do
  restored+=("$(grep -o 'restored [0-9]* changelog records' "$WORK/p1.$r.log" |
      awk '{s += $2} END {print s + 0}')")
done

summaries_of p1
rc=0
verify_faults --max-copies 0 "${SUMMARY_FLAGS[@]}" || rc=$?
print_summary "empty volume: $CLICKS clicks, $PARTITIONS partitions, $MOVES moves to an empty state dir at ${RATE} msg/s" \
    "runs not exiting 0 on SIGTERM: $bad_exits, final run rc=$final_rc" \
    "changelog records restored by each run after a move: ${restored[*]}" \
    "time to up after each start: ${ups[*]}" \
    "$(grep '^tally-verify: processor' "$WORK/verify.txt" || true)"
if [ "$bad_exits" != 0 ] || [ "$final_rc" != 0 ]; then
  echo "FAIL: $bad_exits runs did not exit 0 on SIGTERM (final rc=$final_rc)"
  exit 1
fi
for n in "${restored[@]}"; do
  if [ "$n" = 0 ]; then
    echo "FAIL: a run after a move restored nothing from the changelog"
    exit 1
  fi
done
if [ "${V_GAPS:-1}" != 0 ]; then
  echo "FAIL: ${V_GAPS:-?} state gaps logged (the state should have been restored)"
  exit 1
fi
if [ "$rc" != 0 ]; then
  echo "FAIL: tally-verify: ${V_MISMATCHES:-?} mismatches, ${V_COPIES:-?} copies (none allowed)"
  exit 1
fi
echo "PASS"
