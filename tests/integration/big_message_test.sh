#!/usr/bin/env bash
# Regression for issue 6: one input message of about 750 KB or more used to
# stop the pipeline for good (its `rejected` record, the whole message in
# base64, exceeded the producer's message.max.bytes; tally exited 1, and again
# on every restart). Now a rejected record keeps a bounded prefix with the
# size and SHA-256 of the whole message.
#
# Among normal load-generator traffic: one 900 KB click before it, a burst of
# 20 messages of the largest size the broker takes after it. Tally runs with
# the shipped config and must exit 0; each big message must be on `rejected`
# as payload_too_large, truncated, with its exact size and SHA-256; and
# tally-verify must report an exact match.
# usage: big_message_test.sh BIN_DIR SRC_DIR
BIN_DIR=$1
SRC_DIR=$2
PARTITIONS=8
source "$SRC_DIR/tests/integration/lib.sh"

# The largest value the producer (librdkafka message.max.bytes = 1000000,
# minus the key and record framing) and the mock broker accept.
MAX_VALUE_BYTES=999000
FIRST_VALUE_BYTES=900000
BURST=20

start_devbroker "$PARTITIONS"

# make_big N INDEX FILE: a click with an unknown member that pads it to N bytes.
make_big() {
  local n=$1 index=$2 file=$3
  local prefix
  prefix=$(printf '{"click_id":"big-%02d","ts":1767225605948,"affiliate_id":"aff-1","offer_id":"off-1","user_id":"u-%02d","ip":"10.0.0.1","pad":"' "$index" "$index")
  local letters=abcdefghijklmnopqrstuvwxyz
  { printf "%s" "$prefix"; head -c $((n - ${#prefix} - 2)) /dev/zero | tr '\0' "${letters:index%26:1}"
    printf '"}'; } >"$file"
  [ "$(stat -c %s "$file")" -eq "$n" ]
}

# produce_big INDEX SIZE: one message, key big-INDEX, partition INDEX % PARTITIONS.
produce_big() {
  local index=$1 size=$2
  local file="$WORK/big-$(printf %02d "$index").json"
  make_big "$size" "$index" "$file"
  kcat -P -b "$BOOTSTRAP" -t clicks -p $((index % PARTITIONS)) -k "$(printf big-%02d "$index")" \
      -X message.max.bytes=1000000 "$file" 2>>"$WORK/kcat.log"
  echo "injected big-$(printf %02d "$index"): $size bytes to clicks/$((index % PARTITIONS)), sha256 $(sha256sum "$file" | cut -d' ' -f1)"
}

produce_big 0 "$FIRST_VALUE_BYTES"
"$BIN_DIR/tally-loadgen" --bootstrap-servers "$BOOTSTRAP" --clicks 3000 --seed 7 \
    --bad-share 0.02 --format json --key-mode click_id \
    --truth "$WORK/truth.jsonl" 2>"$WORK/loadgen.log"
tail -n 1 "$WORK/loadgen.log" >&2
for i in $(seq 1 "$BURST"); do produce_big "$i" "$MAX_VALUE_BYTES"; done

# Where the big messages landed (key, partition, offset, size), for the
# ground truth that tally-verify checks every input message against.
kcat -C -b "$BOOTSTRAP" -t clicks -e -q -f '%k %p %o %S\n' 2>>"$WORK/kcat.log" \
    | grep '^big-' >"$WORK/big.txt" || true
if [ "$(wc -l <"$WORK/big.txt")" -ne $((BURST + 1)) ]; then
  echo "expected $((BURST + 1)) big messages on clicks, found:" >&2
  cat "$WORK/big.txt" >&2
  exit 1
fi
while read -r key partition offset size; do
  printf '{"topic":"clicks","partition":%d,"offset":%d,"kind":"click","id":"%s","decode":"payload_too_large"}\n' \
      "$partition" "$offset" "$key" >>"$WORK/truth.jsonl"
done <"$WORK/big.txt"

set +e
run_tally big --set processing.stop_when_idle=2s
rc=$?
set -e
cat "$WORK/big.summary.json"
if [ $rc -ne 0 ]; then
  echo "tally exited $rc, expected 0" >&2
  exit 1
fi

# Every big message on `rejected`: payload_too_large, truncated, its size and
# SHA-256.
kcat -C -b "$BOOTSTRAP" -t rejected -e -q -f '%s\n' 2>>"$WORK/kcat.log" >"$WORK/rejected.jsonl"
field() {  # field RECORD NAME -> the raw JSON value of a top-level member
  grep -o "\"$2\":\(\"[^\"]*\"\|[a-z0-9-]*\)" <<<"$1" | head -n1 | cut -d: -f2- | tr -d '"'
}
bad=0
while read -r key partition offset size; do
  file="$WORK/$key.json"
  record=$(grep -F "\"source_topic\":\"clicks\",\"source_partition\":$partition,\"source_offset\":$offset," \
      "$WORK/rejected.jsonl" || true)
  if [ -z "$record" ]; then
    echo "FAIL: $key (clicks/$partition@$offset) is not on rejected" >&2
    bad=1
    continue
  fi
  reason=$(field "$record" reason)
  truncated=$(field "$record" original_value_truncated)
  got_size=$(field "$record" original_value_size)
  got_sha=$(field "$record" original_value_sha256)
  want_sha=$(sha256sum "$file" | cut -d' ' -f1)
  want_size=$(stat -c %s "$file")
  echo "found $key: clicks/$partition@$offset reason=$reason truncated=$truncated size=$got_size sha256=$got_sha record=${#record} bytes"
  if [ "$reason" != payload_too_large ] || [ "$truncated" != true ] ||
     [ "$got_size" != "$want_size" ] || [ "$got_sha" != "$want_sha" ]; then
    echo "FAIL: $key: wanted payload_too_large truncated=true size=$want_size sha256=$want_sha" >&2
    bad=1
  fi
done <"$WORK/big.txt"
[ $bad -eq 0 ] || exit 1

verify_pipeline "$WORK/big.summary.json" --input-format json --attribution-key click_id
echo "PASS"
