#!/usr/bin/env bash
# Fault scenario (issue 7 b): 1 -> 3 -> 1 instances during a run, then a
# rolling restart of 3 instances one by one, all from the shipped
# configuration (exactly-once, static membership), each instance with its
# own state dir and instance_id, under a rate-limited load. Tasks move to
# instances that never held them (restored from the changelog) and back
# (their local store restores only the tail).
# Pass: no instance exits with an error, tally-verify finds no mismatch and
# NO copy at all, no state gap is logged, and the summaries add up to the
# input exactly.
# usage: rescale.sh BIN_DIR SRC_DIR [CLICKS] [PARTITIONS] [RATE]
# FAULTS_FULL=1: 200k clicks, 32 partitions.
BIN_DIR=$1
SRC_DIR=$2
source "$SRC_DIR/tests/faults/lib.sh"
CLICKS=${3:-$(faults_size 24000 200000)}
PARTITIONS=${4:-$(faults_size 6 32)}
RATE=${5:-$(faults_size 400 1500)}

# One standby replica per task (processing.num_standbys=1): moved tasks
# that were standbys restore a tail only.
TALLY_EXTRA=(--set processing.num_standbys=1)
start_devbroker_ctl "$PARTITIONS"
start_load "$CLICKS" "$RATE" --flood-share 0 --bad-share 0.02

bad=0
# stop NAME: SIGTERM and wait; a non-zero exit is counted.
stop() {
  local pid rc=0
  pid=$(cat "$WORK/$1.pid")
  kill -TERM "$pid" 2>/dev/null || true
  wait "$pid" || rc=$?
  [ "$rc" = 0 ] || bad=$((bad + 1))
  note "$1 run $(cat "$WORK/$1.run") stopped (SIGTERM): exit $rc"
}
start() {
  start_instance "$1"
  local up
  up=$(wait_up "$1" 90) || true
  note "$1 run $(cat "$WORK/$1.run") up after $up"
}

start p1
sleep 4
note "scale out 1 -> 3"
start_instance p2
start_instance p3
for n in p2 p3; do
  up=$(wait_up "$n" 90) || true
  note "$n up after $up"
done
sleep 6
note "scale in 3 -> 1"
stop p2
stop p3
sleep 10
note "scale out 1 -> 3 again"
start_instance p2
start_instance p3
for n in p2 p3; do
  up=$(wait_up "$n" 90) || true
  note "$n up after $up"
done
sleep 4
note "rolling restart p1, p2, p3"
for n in p1 p2 p3; do
  stop "$n"
  start "$n"
  sleep 2
done
wait_load
if wait_drained 8 240 p1 p2 p3; then
  note "drained: no input consumed for 8 s"
else
  note "not drained within 240 s"
fi
for n in p1 p2 p3; do stop "$n"; done

summaries_of p1 p2 p3
rc=0
verify_faults --max-copies 0 "${SUMMARY_FLAGS[@]}" || rc=$?
print_summary "rescale: 1 -> 3 -> 1 -> 3 instances and a rolling restart of 3; $CLICKS clicks, $PARTITIONS partitions at ${RATE} msg/s" \
    "instance runs not exiting 0: $bad" \
    "restored changelog records per run: $(for f in "$WORK"/p*.[0-9]*.log; do printf '%s=%s ' "$(basename "$f" .log)" "$(grep -o 'restored [0-9]* changelog' "$f" | awk '{s+=$2} END {print s+0}')"; done)" \
    "$(grep '^tally-verify: processor' "$WORK/verify.txt" || true)"
fail=0
if [ "$bad" != 0 ]; then
  echo "FAIL: $bad instance runs did not exit 0"
  fail=1
fi
if [ "${V_GAPS:-1}" != 0 ]; then
  echo "FAIL: ${V_GAPS:-?} state gaps logged"
  fail=1
fi
if [ "$rc" != 0 ]; then
  echo "FAIL: tally-verify: ${V_MISMATCHES:-?} mismatches, ${V_COPIES:-?} copies (none allowed)"
  fail=1
fi
[ "$fail" = 0 ] || exit 1
echo "PASS"
