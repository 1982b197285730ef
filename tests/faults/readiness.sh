#!/usr/bin/env bash
# Fault scenario (f): readiness follows the broker. One instance (under a
# supervisor) consumes a slow load; once /readyz answers 200 every broker is
# taken down (tally-devbroker control: broker-down -1) for DOWN seconds, then
# brought back. /readyz and /healthz are sampled every 0.2 s throughout.
# Pass: /readyz turns 503 while the broker is down (within DOWN s) and
# 200 again after it is back (within 60 s); the instance never exits; and
# after the load tally-verify finds no mismatch (copies are counted: an
# outage longer than the session timeout may cost a rebalance and a replay).
# usage: readiness.sh BIN_DIR SRC_DIR [CLICKS] [PARTITIONS] [RATE] [DOWN_S]
BIN_DIR=$1
SRC_DIR=$2
source "$SRC_DIR/tests/faults/lib.sh"
CLICKS=${3:-$(faults_size 5000 100000)}
PARTITIONS=${4:-$(faults_size 4 16)}
RATE=${5:-$(faults_size 300 2000)}
DOWN=${6:-$(faults_size 8 20)}

start_devbroker_ctl "$PARTITIONS"
supervise p1
start_load "$CLICKS" "$RATE" --bad-share 0.02
ready_before=$(wait_up p1 60) || true
note "p1 ready after $ready_before (HTTP $(http_status p1 /readyz)); /healthz $(http_status p1 /healthz)"
sleep 2

inject broker-down -1
t_down=$(date +%s.%N)
flip_down="" health_down="" ready_down=""
while awk -v a="$t_down" -v b="$(date +%s.%N)" -v d="$DOWN" 'BEGIN{exit !(b-a < d)}'; do
  code=$(http_status p1 /readyz)
  ready_down="$ready_down$code "
  health_down="$health_down$(http_status p1 /healthz) "
  if [ -z "$flip_down" ] && [ "$code" = 503 ]; then
    flip_down=$(awk -v a="$t_down" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}')
    note "/readyz -> $code ${flip_down}s after broker-down"
  fi
  sleep 0.2
done
inject broker-up -1
t_up=$(date +%s.%N)
flip_up=""
end=$(($(date +%s) + 60))
while [ "$(date +%s)" -lt "$end" ]; do
  code=$(http_status p1 /readyz)
  [ "$code" = 404 ] && { note "/readyz answers 404: this build has no readiness endpoint"; break; }
  if [ "$code" = 200 ]; then
    flip_up=$(awk -v a="$t_up" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}')
    note "/readyz -> 200 ${flip_up}s after broker-up"
    break
  fi
  sleep 0.2
done
# "200 200 503 503" -> "200 x2, 503 x2": the codes in order, runs counted.
runs() { tr ' ' '\n' <<<"$1" | grep -v '^$' | uniq -c | awk '{printf "%s%s x%s", (NR>1?", ":""), $2, $1}'; }
health_summary=$(runs "$health_down")
note "while the broker was down, every 0.2 s: /readyz $(runs "$ready_down"); /healthz $health_summary"

wait_load
if wait_drained 5 120 p1; then note "drained"; else note "not drained within 120 s"; fi
exits=$(exits_of p1)
rc=0
verify_faults || rc=$?
stop_supervisor p1

print_summary "readiness: $CLICKS clicks, $PARTITIONS partitions at ${RATE} msg/s, broker down ${DOWN}s" \
    "/readyz before: ${ready_before}; 503 ${flip_down:+${flip_down}s after broker-down}${flip_down:-never while down}; 200 again ${flip_up:+${flip_up}s after broker-up}${flip_up:-never}" \
    "/healthz while down: $health_summary" \
    "processor exits: $exits"
fail=0
[ -n "$flip_down" ] || { echo "FAIL: /readyz never answered 503 while the broker was down"; fail=1; }
[ -n "$flip_up" ] || { echo "FAIL: /readyz did not return to 200 within 60 s of broker-up"; fail=1; }
[ "$exits" = 0 ] || { echo "FAIL: the instance exited $exits times"; fail=1; }
[ "$rc" = 0 ] || { echo "FAIL: tally-verify found ${V_MISMATCHES:-?} mismatches"; fail=1; }
[ "$fail" = 0 ] || exit 1
echo "PASS"
