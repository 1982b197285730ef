#!/usr/bin/env bash
# SIGTERM mid-stream (followed by more signals during the shutdown): tally
# stops consuming, flushes, commits and exits 0; a
# restarted instance continues from the committed offsets, so the two runs
# together consume every message exactly once (clean shutdown => no replay).
# usage: shutdown_test.sh BIN_DIR SRC_DIR
BIN_DIR=$1
SRC_DIR=$2
source "$SRC_DIR/tests/integration/lib.sh"

start_devbroker 4
"$BIN_DIR/tally-loadgen" --bootstrap-servers "$BOOTSTRAP" --clicks 60000 --seed 7 \
    --truth "$WORK/truth.jsonl" 2>"$WORK/loadgen.log"
produced=$(grep -c '"partition"' "$WORK/truth.jsonl")

# Slow consumption down (small batches) so SIGTERM lands mid-stream.
start_tally run1 --set processing.batch_max_messages=50
tally_pid=$TALLY_PID
for _ in $(seq 1 300); do
  grep -q "assigned" "$WORK/run1.log" 2>/dev/null && break
  sleep 0.1
done
sleep 1
# Signals during the shutdown itself (a second SIGTERM, a SIGHUP reload, a
# SIGINT) must not reach a processor or stage that is being torn down: the
# signal thread is joined before they are destroyed. A crash here shows as
# a non-zero exit (SIGSEGV/SIGABRT: 139/134).
kill -TERM "$tally_pid"
for sig in HUP TERM INT HUP TERM; do
  kill -"$sig" "$tally_pid" 2>/dev/null || break
  sleep 0.05
done
rc=0
wait "$tally_pid" || rc=$?
if [ "$rc" != 0 ]; then
  echo "tally exited $rc after SIGTERM and signals during shutdown (expected 0)" >&2
  exit 1
fi
first=$(( $(json_field "$WORK/run1.summary.json" clicks_in) + $(json_field "$WORK/run1.summary.json" conversions_in) ))
echo "run1 consumed $first of $produced before SIGTERM" >&2

IT_RUN_TIMEOUT=240 run_tally run2 --set processing.stop_when_idle=2s
second=$(( $(json_field "$WORK/run2.summary.json" clicks_in) + $(json_field "$WORK/run2.summary.json" conversions_in) ))
echo "run2 consumed $second" >&2
if [ $((first + second)) != "$produced" ]; then
  echo "runs consumed $first + $second = $((first + second)) messages, produced $produced" >&2
  exit 1
fi
echo "PASS"
