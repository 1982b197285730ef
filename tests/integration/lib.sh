# Shared helpers for the integration tests: start a real tally-devbroker on
# loopback, wait for it (bounded), and tear everything down on exit.
# Expects: BIN_DIR (where tally, tally-devbroker, tally-loadgen, tally-verify
# live) and SRC_DIR (repository root).

set -euo pipefail

WORK=$(mktemp -d -t tally-it.XXXXXX)
PIDS=()

cleanup() {
  local rc=$?
  # Newest first: processors stop before the broker they talk to.
  local i
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
    kill -TERM "${PIDS[$i]}" 2>/dev/null || true
  done
  for pid in "${PIDS[@]:-}"; do
    [ -n "$pid" ] && wait "$pid" 2>/dev/null || true
  done
  if [ $rc -ne 0 ]; then
    echo "--- test failed (rc=$rc); logs from $WORK:" >&2
    for f in "$WORK"/*.log; do
      [ -f "$f" ] || continue
      echo "=== $f (last 60 lines)" >&2
      tail -n 60 "$f" >&2
    done
  fi
  rm -rf "$WORK"
  exit $rc
}
trap cleanup EXIT

# start_devbroker PARTITIONS -> sets BOOTSTRAP
start_devbroker() {  # start_devbroker PARTITIONS [more tally-devbroker flags]
  local partitions=$1
  shift
  "$BIN_DIR/tally-devbroker" --partitions "$partitions" "$@" \
      --bootstrap-file "$WORK/bootstrap" >"$WORK/devbroker.out" 2>"$WORK/devbroker.log" &
  PIDS+=($!)
  for _ in $(seq 1 100); do
    [ -s "$WORK/bootstrap" ] && break
    sleep 0.1
  done
  [ -s "$WORK/bootstrap" ] || { echo "devbroker did not start" >&2; return 1; }
  BOOTSTRAP=$(cat "$WORK/bootstrap")
  echo "devbroker at $BOOTSTRAP" >&2
}

# The processor's command line for a dev-broker run: the shipped config with
# loopback overrides, then the caller's --set flags.
tally_command() {
  TALLY_CMD=("$BIN_DIR/tally" --config "$SRC_DIR/deploy/config/tally.yaml"
      --set "kafka.bootstrap.servers=$BOOTSTRAP"
      --set "metrics.listen=127.0.0.1:0"
      --set "state.dir=$WORK/state"
      --set "consumer.session.timeout.ms=6000"
      --set "fraud.bot_user_agents_file=$SRC_DIR/deploy/config/bot_user_agents.txt"
      --set "fraud.ip_blocklist_file=$SRC_DIR/deploy/config/ip_blocklist.txt"
      --set "offers.file=$SRC_DIR/deploy/config/offers.yaml"
      "$@")
}

# run_tally NAME [--set k=v ...] -> summary JSON in $WORK/NAME.summary.json
run_tally() {
  local name=$1
  shift
  tally_command "$@"
  # Bounded, so that a processor that never stops fails the test with its
  # logs (below) instead of running into ctest's timeout, which kills the
  # script before its cleanup can print anything.
  local rc=0
  timeout -s TERM -k 30 "${IT_RUN_TIMEOUT:-540}" \
      "${TALLY_CMD[@]}" >"$WORK/$name.summary.json" 2>"$WORK/$name.log" || rc=$?
  if [ "$rc" = 124 ]; then
    echo "$name did not stop within ${IT_RUN_TIMEOUT:-540} s" >&2
  fi
  return "$rc"
}

# start_tally NAME [--set k=v ...] -> runs in the background, TALLY_PID is
# the processor itself (not a subshell), so signals reach it.
start_tally() {
  local name=$1
  shift
  tally_command "$@"
  "${TALLY_CMD[@]}" >"$WORK/$name.summary.json" 2>"$WORK/$name.log" &
  TALLY_PID=$!
  PIDS+=("$TALLY_PID")
}

json_field() {  # json_field FILE KEY -> integer value of a top-level key
  grep -o "\"$2\":[0-9]*" "$1" | head -n1 | cut -d: -f2
}

# verify_pipeline SUMMARY [tally-verify flags...]: the oracle with the same
# rule files the processor was given.
verify_pipeline() {
  local summary=$1
  shift
  "$BIN_DIR/tally-verify" --bootstrap-servers "$BOOTSTRAP" --truth "$WORK/truth.jsonl" \
      --offers-file "$SRC_DIR/deploy/config/offers.yaml" \
      --bot-user-agents-file "$SRC_DIR/deploy/config/bot_user_agents.txt" \
      --ip-blocklist-file "$SRC_DIR/deploy/config/ip_blocklist.txt" \
      --processor-summary "$summary" "$@" | tee "$WORK/verify.txt"
}

# expect_output_contract TOPIC SCHEMA TS_MEMBER FORMAT: the first record of
# an output topic as a downstream consumer (kcat, read_committed) gets it
# from the broker: contract v1.1 headers naming its schema, and as its Kafka
# timestamp the event time it is about (JSON: the value's first TS_MEMBER).
expect_output_contract() {
  local topic=$1 schema=$2 member=$3 format=$4 content=application/json fmt record
  local ts headers value=""
  # One read, so that the value is the record's own. A protobuf value is
  # binary: not printed. JSON has no raw tab or newline (escaped).
  fmt='%T\t%h\n'
  [ "$format" = json ] && fmt='%T\t%h\t%s\n'
  [ "$format" = protobuf ] && content=application/x-protobuf
  record=$(timeout 30 kcat -C -b "$BOOTSTRAP" -t "$topic" -o beginning -c 1 -e -q -f "$fmt")
  IFS=$'\t' read -r ts headers value <<<"$record"
  local expected="tally.schema=$schema,tally.schema_version=1.1,content-type=$content"
  if [ "$headers" != "$expected" ]; then
    echo "$topic: headers '$headers', expected '$expected'" >&2
    exit 1
  fi
  [ "$format" = json ] || return 0
  local event
  event=$(grep -o "\"$member\":[0-9]*" <<<"$value" | head -n1 | cut -d: -f2)
  if [ -z "$event" ] || [ "$ts" != "$event" ]; then
    echo "$topic: record timestamp $ts, expected $member=$event of $value" >&2
    exit 1
  fi
  echo "$topic: v1.1 headers, record timestamp = $member ($ts)" >&2
}

# expect_nothing_consumed SUMMARY WHO: a run that found everything committed
# (a second run in the same group and state directory after a clean exit).
expect_nothing_consumed() {
  local field value
  for field in clicks_in conversions_in commissions_out; do
    value=$(json_field "$1" "$field")
    if [ "$value" != 0 ]; then
      echo "$2: $field=$value, expected 0 (everything was committed)" >&2
      exit 1
    fi
  done
}
