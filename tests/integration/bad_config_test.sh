#!/usr/bin/env bash
# Bad configuration fails at start-up with a message that names the key.
# usage: bad_config_test.sh BIN_DIR SRC_DIR
BIN_DIR=$1
SRC_DIR=$2
set -uo pipefail
fail=0
# The shipped config names its rule files relative to the repository root,
# and no case may touch /var/lib/tally.
cd "$SRC_DIR"
state=$(mktemp -d)
trap 'rm -rf "$state"' EXIT
export TALLY_STATE_DIR="$state"
expect_error() {  # expect_error NEEDLE ARGS...
  local needle=$1
  shift
  local out rc
  out=$("$BIN_DIR/tally" "$@" 2>&1 >/dev/null)
  rc=$?
  if [ $rc -eq 0 ] || ! grep -q -- "$needle" <<<"$out"; then
    echo "FAIL: tally $* -> rc=$rc, wanted an error naming '$needle', got: $out" >&2
    fail=1
  fi
}
cfg="$SRC_DIR/deploy/config/tally.yaml"
expect_error "processing.batch_max_messages" --config "$cfg" --set kafka.bootstrap.servers=127.0.0.1:1 --set processing.batch_max_messages=0
expect_error "topics.clickz" --config "$cfg" --set kafka.bootstrap.servers=127.0.0.1:1 --set topics.clickz=x
expect_error "formats.clicks" --config "$cfg" --set kafka.bootstrap.servers=127.0.0.1:1 --set formats.clicks=xml
expect_error "no-such-file.yaml" --config /no-such-file.yaml
expect_error "kafka.bootstrap.servers" --config "$cfg" --set kafka.bootstrap.servers=
expect_error "no.such.property" --config "$cfg" --set kafka.bootstrap.servers=127.0.0.1:1 --set kafka.no.such.property=1
export TALLY_TOPICS_CLIKS=x
expect_error "TALLY_TOPICS_CLIKS" --config "$cfg" --set kafka.bootstrap.servers=127.0.0.1:1
unset TALLY_TOPICS_CLIKS
base=(--config "$cfg" --set kafka.bootstrap.servers=127.0.0.1:1)
expect_error "offers.file" "${base[@]}" --set offers.file=/no/such/offers.yaml
bad_offers="$state/offers.yaml"
printf 'offers:\n  - id: off-1\n    model: lastclick\n' >"$bad_offers"
expect_error "offers\[0\].model" "${base[@]}" --set "offers.file=$bad_offers"
expect_error "fraud.ip_blocklist_file" "${base[@]}" --set fraud.ip_blocklist_file=/no/such/list.txt
bad_list="$state/blocklist.txt"
printf '10.0.0.0/33\n' >"$bad_list"
expect_error "$bad_list:1" "${base[@]}" --set "fraud.ip_blocklist_file=$bad_list"
# Output records must fit the producer's message.max.bytes (issue 6): exit
# code 2, and the message names both keys.
expect_config_error() {  # expect_config_error NEEDLE... -- ARGS...
  local needles=()
  while [ "$1" != "--" ]; do needles+=("$1"); shift; done
  shift
  local out rc needle
  out=$("$BIN_DIR/tally" "$@" 2>&1 >/dev/null)
  rc=$?
  for needle in "${needles[@]}"; do
    if [ $rc -ne 2 ] || ! grep -qF -- "$needle" <<<"$out"; then
      echo "FAIL: tally $* -> rc=$rc, wanted exit code 2 and '$needle', got: $out" >&2
      fail=1
    fi
  done
}
expect_config_error "limits.max_rejected_original_bytes" "producer.message.max.bytes" -- \
    "${base[@]}" --set limits.max_rejected_original_bytes=1MiB
expect_config_error "limits.max_rejected_original_bytes" "kafka.message.max.bytes=50000" -- \
    "${base[@]}" --set kafka.message.max.bytes=50000
expect_config_error "producer.message.max.bytes" -- \
    "${base[@]}" --set producer.message.max.bytes=lots
[ $fail -eq 0 ] && echo PASS
exit $fail
