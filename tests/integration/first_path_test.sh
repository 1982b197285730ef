#!/usr/bin/env bash
# End to end over loopback Kafka: devbroker + loadgen + tally + verify.
# Every input message is accounted for: each malformed one is on `rejected`
# with the reason the load generator put in it, nothing valid is rejected,
# and the processor consumed exactly what was produced.
# usage: first_path_test.sh BIN_DIR SRC_DIR [MESSAGES] [FORMAT]
BIN_DIR=$1
SRC_DIR=$2
CLICKS=${3:-40000}
FORMAT=${4:-json}
source "$SRC_DIR/tests/integration/lib.sh"

start_devbroker 8
"$BIN_DIR/tally-loadgen" --bootstrap-servers "$BOOTSTRAP" --clicks "$CLICKS" --seed 42 \
    --bad-share 0.05 --format "$FORMAT" --truth "$WORK/truth.jsonl" 2>"$WORK/loadgen.log"

run_tally run1 --set processing.stop_when_idle=2s \
    --set "formats.clicks=$FORMAT" --set "formats.conversions=$FORMAT"
cat "$WORK/run1.summary.json"

"$BIN_DIR/tally-verify" --bootstrap-servers "$BOOTSTRAP" --truth "$WORK/truth.jsonl" \
    --input-format "$FORMAT" --processor-summary "$WORK/run1.summary.json"

# A second run in the same consumer group must find every offset committed:
# nothing is consumed twice after a clean exit.
run_tally run2 --set processing.stop_when_idle=1s \
    --set "formats.clicks=$FORMAT" --set "formats.conversions=$FORMAT"
again=$(json_field "$WORK/run2.summary.json" clicks_in)
again_conv=$(json_field "$WORK/run2.summary.json" conversions_in)
if [ "$again" != 0 ] || [ "$again_conv" != 0 ]; then
  echo "second run re-consumed $again clicks and $again_conv conversions" >&2
  exit 1
fi
echo "PASS"
