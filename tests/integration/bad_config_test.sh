#!/usr/bin/env bash
# Bad configuration fails at start-up with a message that names the key, and
# tally --check-config finds the same problems without starting (issue 9).
# usage: bad_config_test.sh BIN_DIR SRC_DIR
BIN_DIR=$1
SRC_DIR=$2
set -uo pipefail
fail=0
# No case may touch /var/lib/tally. The shipped config names its rule files
# relative to its own folder; the --check-config cases run from / to prove
# that they do not depend on the working directory.
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
# --check-config: exit 2 naming the key; from /, so relative rule-file names
# must resolve against the config file's folder.
expect_check_error() {  # expect_check_error NEEDLE ARGS...
  local needle=$1
  shift
  local out rc
  out=$(cd / && timeout 20 "$BIN_DIR/tally" --check-config "$cfg" "$@" 2>&1)
  rc=$?
  if [ $rc -ne 2 ] || ! grep -qF -- "$needle" <<<"$out" || grep -q 'configuration OK' <<<"$out"; then
    echo "FAIL: tally --check-config $cfg $* -> rc=$rc, wanted exit code 2 naming '$needle', got: $out" >&2
    fail=1
  fi
}
expect_check_error "processing.batch_max_messages" --set processing.batch_max_messages=0
expect_check_error "log.format" --set log.format=xml
expect_check_error "topics.clickz" --set topics.clickz=x
expect_check_error "offers.file" --set offers.file=/no/such/offers.yaml
expect_check_error "offers[0].model" --set "offers.file=$bad_offers"
expect_check_error "fraud.bot_user_agents_file" --set fraud.bot_user_agents_file=/no/such/bots.txt
expect_check_error "$bad_list:1" --set "fraud.ip_blocklist_file=$bad_list"
expect_check_error "dedup.horizon" --set dedup.horizon=1h
expect_check_error "state.write_buffer_bytes" --set state.block_cache_bytes=64MiB
expect_check_error "no.such.property" --set kafka.no.such.property=1
expect_check_error "session.timeout.ms" --set consumer.session.timeout.ms=soon
expect_check_error "linger.ms" --set producer.linger.ms=-5
expect_check_error "limits.max_rejected_original_bytes" --set limits.max_rejected_original_bytes=1MiB

# The shipped file passes, from /, quickly, with a broker address nothing
# listens on (start-up would wait for it), and creates no state directory.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' 2>/dev/null || echo 1)
never="$state/never-created"
ok_args=(--check-config "$cfg" --set "kafka.bootstrap.servers=127.0.0.1:$port" --set "state.dir=$never")
begin=$(date +%s)
out=$(cd / && timeout 20 "$BIN_DIR/tally" "${ok_args[@]}" 2>&1)
rc=$?
took=$(($(date +%s) - begin))
if [ $rc -ne 0 ] || [ "$out" != "configuration OK: $cfg" ]; then
  echo "FAIL: tally ${ok_args[*]} (from /) -> rc=$rc, wanted 0 and 'configuration OK: $cfg', got: $out" >&2
  fail=1
fi
if [ "$took" -gt 5 ]; then
  echo "FAIL: tally --check-config took ${took}s: it must not wait for a broker" >&2
  fail=1
fi
if [ -e "$never" ]; then
  echo "FAIL: tally --check-config created $never" >&2
  fail=1
fi
# The bare form beside --config, as deploy/check.sh runs it.
out=$(cd / && timeout 20 "$BIN_DIR/tally" --config "$cfg" --check-config 2>&1)
rc=$?
if [ $rc -ne 0 ] || [ "$out" != "configuration OK: $cfg" ]; then
  echo "FAIL: tally --config $cfg --check-config -> rc=$rc, got: $out" >&2
  fail=1
fi
# Where strace is installed, prove that no TCP connection is even tried.
if command -v strace >/dev/null 2>&1; then
  trace="$state/strace.txt"
  if ! (cd / && strace -f -qq -e trace=connect -o "$trace" "$BIN_DIR/tally" "${ok_args[@]}" >/dev/null 2>&1); then
    echo "note: strace could not trace tally here (ptrace refused?); the no-connection check relied on timing only"
  elif grep -E 'AF_INET6?' "$trace" >&2; then
    echo "FAIL: tally --check-config connected (above)" >&2
    fail=1
  fi
else
  echo "note: strace not installed; the no-connection check relied on timing only"
fi

[ $fail -eq 0 ] && echo PASS
exit $fail
