#!/usr/bin/env bash
# Fault scenario (a): kill -9 at random moments, restarts on the same state
# dir. One instance consumes a rate-limited load; KILLS times it is killed
# with SIGKILL a random 0.2-3 s after it is up (ready, or assigned on a build
# without /readyz), and restarted at once on the same state dir. After the
# load a last run drains the input (processing.stop_when_idle=2s).
# Pass: tally-verify finds no mismatch (lost, changed, wrongly decided);
# identical copies (replays, which at-least-once allows) are counted; no
# run exits by itself.
# usage: kill9.sh BIN_DIR SRC_DIR [CLICKS] [PARTITIONS] [KILLS] [RATE]
# Defaults are short (make test); FAULTS_FULL=1: 400k clicks, 32 partitions (the mock keeps about 5 MiB a partition),
# 12 kills.
BIN_DIR=$1
SRC_DIR=$2
source "$SRC_DIR/tests/faults/lib.sh"
CLICKS=${3:-$(faults_size 15000 400000)}
PARTITIONS=${4:-$(faults_size 4 32)}
KILLS=${5:-$(faults_size 3 12)}
RATE=${6:-$(faults_size 800 3500)}
RANDOM=${SEED:-11}

start_devbroker_ctl "$PARTITIONS"
start_load "$CLICKS" "$RATE" --bad-share 0.02

restarts=()
self_exits=0
for ((k = 1; k <= KILLS; k++)); do
  start_instance p1
  up=$(wait_up p1 30) || true
  if ! kill -0 "$INSTANCE_PID" 2>/dev/null; then
    rc=0; wait "$INSTANCE_PID" || rc=$?
    self_exits=$((self_exits + 1))
    note "run $(cat "$WORK/p1.run") exited by itself with $rc before kill #$k"
    continue
  fi
  delay_ms=$((200 + RANDOM % 2800))
  sleep "$(awk -v d="$delay_ms" 'BEGIN{printf "%.3f", d/1000}')"
  if ! kill -0 "$INSTANCE_PID" 2>/dev/null; then
    rc=0; wait "$INSTANCE_PID" || rc=$?
    self_exits=$((self_exits + 1))
    note "run $(cat "$WORK/p1.run") exited by itself with $rc before kill #$k"
    continue
  fi
  consumed=$(scrape p1 tally_input_messages_total)
  kill -KILL "$INSTANCE_PID"
  wait "$INSTANCE_PID" 2>/dev/null || true
  note "kill -9 #$k: run $(cat "$WORK/p1.run"), up after $up, killed ${delay_ms} ms later (it had consumed ${consumed:-?} messages)"
  restarts+=("$up")
done
wait_load

# The last run drains everything and exits on its own.
start_instance p1 --set processing.stop_when_idle=2s
up=$(wait_up p1 30) || true
note "final run $(cat "$WORK/p1.run"): up after $up, draining"
final_rc=0
wait "$INSTANCE_PID" || final_rc=$?
note "final run exited $final_rc"

rc=0
verify_faults || rc=$?
print_summary "kill -9 scenario: $CLICKS clicks, $PARTITIONS partitions, $KILLS kills at ${RATE} msg/s" \
    "kills: $KILLS (SIGKILL), restarts on the same state dir: $KILLS, runs that exited by themselves: $self_exits, final run rc=$final_rc" \
    "time to up after each restart: ${restarts[*]:-none}"
if [ "$final_rc" != 0 ] || [ "$self_exits" != 0 ]; then
  echo "FAIL: a run exited by itself (final rc=$final_rc, early exits $self_exits)"
  exit 1
fi
if [ "$rc" != 0 ] || [ "${V_MISMATCHES:-1}" != 0 ]; then
  echo "FAIL: tally-verify found ${V_MISMATCHES:-?} mismatches (rc=$rc)"
  exit 1
fi
echo "PASS (${V_COPIES} identical copies from replays)"
