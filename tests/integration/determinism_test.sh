#!/usr/bin/env bash
# The determinism guarantee (README, Semantics) end to end: one input, with
# clicks out of event-time order within processing.max_click_lateness, quiet
# stretches longer than the pending grace and a conversions topic that lags
# the clicks, is processed twice by independent runs (own group, state
# directory, changelog and output topics) that read it very differently —
# small fetches and batches against large ones. Both must be EXACT MATCH for
# tally-verify's oracle, and their sorted output topics must be identical
# byte for byte. A second run of the first in its group finds everything
# committed (in user_id mode this test stands in for the pipeline test).
#
# Flood bursts are left out of this input: WHICH click of a burst exceeds
# the per-IP limit depends on how the partitions interleave (the count is
# exact; README, Semantics), so the outputs of two runs could differ there.
# usage: determinism_test.sh BIN_DIR SRC_DIR CLICKS KEY_MODE PARTITIONS
BIN_DIR=$1
SRC_DIR=$2
CLICKS=${3:-20000}
KEY_MODE=${4:-user_id}
PARTITIONS=${5:-4}
source "$SRC_DIR/tests/integration/lib.sh"

start_devbroker "$PARTITIONS" --topics \
    clicks,conversions,commissions,rejected,unattributed,det-a-changelog,det-b-changelog,b-commissions,b-rejected,b-unattributed
# 25 s of disorder against the shipped 30 s bound; a quiet stretch of
# 15 min (longer than the 10 min grace) about every 2000 clicks; the
# conversions come 20 min of click time after their event time.
"$BIN_DIR/tally-loadgen" --bootstrap-servers "$BOOTSTRAP" --clicks "$CLICKS" --seed 8 \
    --key-mode "$KEY_MODE" --flood-share 0 --click-disorder-ms 25000 \
    --quiet-gap-share 0.0005 --quiet-gap-ms 900000 --conversion-lag-ms 1200000 \
    --truth "$WORK/truth.jsonl" 2>"$WORK/loadgen.log"
tail -n 1 "$WORK/loadgen.log" >&2

common=(--set "processing.attribution_key=$KEY_MODE" --set processing.stop_when_idle=2s
        --set fraud.flood_lateness=24h --set fraud.flood_table_slots=8388608)
# Run a: tiny fetches and batches, so the topics interleave finely.
run_tally run_a "${common[@]}" --set group_id=det-a --set instance_id=det-a \
    --set "state.dir=$WORK/state-a" --set topics.changelog=det-a-changelog \
    --set processing.batch_max_messages=37 --set consumer.fetch.wait.max.ms=5 \
    --set consumer.max.partition.fetch.bytes=4096
# Run b: large fetches and batches, other topics.
run_tally run_b "${common[@]}" --set group_id=det-b --set instance_id=det-b \
    --set "state.dir=$WORK/state-b" --set topics.changelog=det-b-changelog \
    --set topics.commissions=b-commissions --set topics.rejected=b-rejected \
    --set topics.unattributed=b-unattributed \
    --set processing.batch_max_messages=20000 --set consumer.fetch.max.bytes=52428800

# Run a again in its own group and state directory: everything was committed,
# nothing is consumed or emitted twice after a clean exit.
run_tally run_a2 "${common[@]}" --set group_id=det-a --set instance_id=det-a \
    --set "state.dir=$WORK/state-a" --set topics.changelog=det-a-changelog \
    --set processing.stop_when_idle=1s
expect_nothing_consumed "$WORK/run_a2.summary.json" "second run of a"

verify_pipeline "$WORK/run_a.summary.json" --attribution-key "$KEY_MODE" \
    --dump-outputs "$WORK/outputs_a.txt"
grep -q "EXACT MATCH" "$WORK/verify.txt"
verify_pipeline "$WORK/run_b.summary.json" --attribution-key "$KEY_MODE" \
    --commissions-topic b-commissions --rejected-topic b-rejected \
    --unattributed-topic b-unattributed --dump-outputs "$WORK/outputs_b.txt"
grep -q "EXACT MATCH" "$WORK/verify.txt"

for run in a b; do
  echo "run $run: $(grep -c . "$WORK/outputs_$run.txt") output records," \
       "late clicks $(json_field "$WORK/run_$run.summary.json" late_clicks)," \
       "batches $(json_field "$WORK/run_$run.summary.json" batches)" >&2
done
if ! cmp -s "$WORK/outputs_a.txt" "$WORK/outputs_b.txt"; then
  echo "the two runs' sorted outputs differ:" >&2
  diff "$WORK/outputs_a.txt" "$WORK/outputs_b.txt" | head -n 20 >&2
  exit 1
fi
[ "$(grep -c . "$WORK/outputs_a.txt")" -gt 500 ] || { echo "too few outputs to compare" >&2; exit 1; }
echo "PASS: identical sorted outputs ($(grep -c . "$WORK/outputs_a.txt") records)"
