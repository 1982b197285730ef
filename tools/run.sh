#!/usr/bin/env bash
# `make run`: the main job on the embedded default. Starts tally-devbroker on
# loopback, produces synthetic traffic with tally-loadgen, runs the tally
# processor until it has drained its input, checks the outputs against the
# ground truth with tally-verify, and prints a summary. Everything it starts
# is stopped on exit; its files are in run/ (kept for inspection).
#
# Environment: BUILD (build dir, default build), CLICKS (default 200000),
# PARTITIONS (default 8), SEED (default 1), FORMAT (json|protobuf).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN="$ROOT/${BUILD:-build}/bin"
CLICKS=${CLICKS:-200000}
PARTITIONS=${PARTITIONS:-8}
SEED=${SEED:-1}
FORMAT=${FORMAT:-json}
OUT="$ROOT/run"
rm -rf "$OUT"
mkdir -p "$OUT"

BROKER_PID=""
cleanup() {
  [ -n "$BROKER_PID" ] && kill -TERM "$BROKER_PID" 2>/dev/null && wait "$BROKER_PID" 2>/dev/null
  true
}
trap cleanup EXIT

echo "== starting tally-devbroker ($PARTITIONS partitions per topic)"
"$BIN/tally-devbroker" --partitions "$PARTITIONS" --bootstrap-file "$OUT/bootstrap" \
    >"$OUT/devbroker.out" 2>"$OUT/devbroker.log" &
BROKER_PID=$!
for _ in $(seq 1 100); do [ -s "$OUT/bootstrap" ] && break; sleep 0.1; done
[ -s "$OUT/bootstrap" ] || { echo "tally-devbroker did not start; see $OUT/devbroker.log"; exit 1; }
BOOTSTRAP=$(cat "$OUT/bootstrap")
echo "   bootstrap.servers=$BOOTSTRAP"

echo "== producing $CLICKS clicks (+ conversions, duplicates, fraud, bad input) with tally-loadgen"
"$BIN/tally-loadgen" --bootstrap-servers "$BOOTSTRAP" --clicks "$CLICKS" --seed "$SEED" \
    --format "$FORMAT" --truth "$OUT/truth.jsonl" 2> >(tee "$OUT/loadgen.log" | tail -n 1 >&2)

echo "== running tally until its input is drained"
start=$(date +%s.%N)
"$BIN/tally" --config "$ROOT/deploy/config/tally.yaml" \
    --set "kafka.bootstrap.servers=$BOOTSTRAP" \
    --set "consumer.session.timeout.ms=6000" \
    --set "metrics.listen=127.0.0.1:0" \
    --set "state.dir=$OUT/state" \
    --set "formats.clicks=$FORMAT" --set "formats.conversions=$FORMAT" \
    --set "fraud.bot_user_agents_file=$ROOT/deploy/config/bot_user_agents.txt" \
    --set "fraud.ip_blocklist_file=$ROOT/deploy/config/ip_blocklist.txt" \
    --set "offers.file=$ROOT/deploy/config/offers.yaml" \
    --set fraud.flood_lateness=24h --set fraud.flood_table_slots=8388608 \
    --set "processing.stop_when_idle=2s" >"$OUT/summary.json" 2>"$OUT/tally.log"
end=$(date +%s.%N)

echo "== checking outputs against the ground truth with tally-verify"
verdict=0
"$BIN/tally-verify" --bootstrap-servers "$BOOTSTRAP" --truth "$OUT/truth.jsonl" \
    --input-format "$FORMAT" --processor-summary "$OUT/summary.json" \
    --offers-file "$ROOT/deploy/config/offers.yaml" \
    --bot-user-agents-file "$ROOT/deploy/config/bot_user_agents.txt" \
    --ip-blocklist-file "$ROOT/deploy/config/ip_blocklist.txt" | tee "$OUT/verify.txt" || verdict=$?

echo
echo "== summary"
# tally logs its exit summary as one line of key=value fields (log.format
# text, the default): one per line here.
grep -m1 ' main: summary ' "$OUT/tally.log" | sed 's/^.* main: summary //' | tr ' ' '\n' |
  awk -F= 'NF == 2 {printf "  %-30s %s\n", $1, $2}'
printf '  %-30s %s\n' wall_time "$(awk -v a="$start" -v b="$end" 'BEGIN{printf "%.1f s (incl. group join and idle detection)", b-a}')"
echo "files: $OUT"
exit $verdict
