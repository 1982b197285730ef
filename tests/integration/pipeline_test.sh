#!/usr/bin/env bash
# The pipeline end to end over loopback Kafka: devbroker + loadgen + tally +
# verify. tally-verify simulates what a correct processor must output from
# the very input messages on the broker (decode, dedup, fraud, attribution,
# pending, status changes, money) and compares commissions, rejected and
# unattributed exactly; every input message must be accounted for. A second
# run in the same consumer group and state directory must find everything
# committed: nothing is consumed or emitted twice after a clean exit.
# usage: pipeline_test.sh BIN_DIR SRC_DIR CLICKS FORMAT KEY_MODE PARTITIONS
BIN_DIR=$1
SRC_DIR=$2
CLICKS=${3:-40000}
FORMAT=${4:-json}
KEY_MODE=${5:-click_id}
PARTITIONS=${6:-8}
source "$SRC_DIR/tests/integration/lib.sh"

start_devbroker "$PARTITIONS"
"$BIN_DIR/tally-loadgen" --bootstrap-servers "$BOOTSTRAP" --clicks "$CLICKS" --seed 42 \
    --bad-share 0.02 --format "$FORMAT" --key-mode "$KEY_MODE" \
    --truth "$WORK/truth.jsonl" 2>"$WORK/loadgen.log"
tail -n 1 "$WORK/loadgen.log" >&2

# The whole run is produced before tally starts, so its partitions are
# consumed far apart in event time (the load covers hours): the flood
# counters must keep every window of the run live to stay exact.
common=(--set "formats.clicks=$FORMAT" --set "formats.conversions=$FORMAT"
        --set "processing.attribution_key=$KEY_MODE"
        --set fraud.flood_lateness=24h --set fraud.flood_table_slots=8388608)
run_tally run1 --set processing.stop_when_idle=2s "${common[@]}"
cat "$WORK/run1.summary.json"

verify_pipeline "$WORK/run1.summary.json" --input-format "$FORMAT" --attribution-key "$KEY_MODE"
# FORMAT is the inputs'; the outputs keep formats.output's default, json.
expect_output_contract commissions tally.v1.Commission conversion_ts json
expect_output_contract rejected tally.v1.Rejected rejected_at json
expect_output_contract unattributed tally.v1.Unattributed ts json

run_tally run2 --set processing.stop_when_idle=1s "${common[@]}"
expect_nothing_consumed "$WORK/run2.summary.json" "second run"
echo "PASS"
