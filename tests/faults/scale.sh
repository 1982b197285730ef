#!/usr/bin/env bash
# Fault scenario (c): scaling. Three instances start together from the
# shipped configuration (deploy/config/tally.yaml), each with its own state
# dir and instance_id, each under a supervisor that restarts it whenever it
# exits (as Kubernetes would) and counts the exits. During a rate-limited
# load a fourth instance joins (once the three are up) and later leaves
# (SIGTERM). After the load, once no instance has consumed anything for a
# few seconds, every instance is stopped with SIGTERM.
# Pass: no instance exits by itself (the supervisors restarted nothing),
# tally-verify finds no mismatch and no copy, no state gap is logged (a task
# that moves is restored from the changelog), and the instances' summaries
# add up to the input. (Before the changelog and exactly-once, moves were
# state gaps and a refused offset commit at a revocation repeated a batch;
# tally-verify's --allow-gap-mismatches / --allow-revocation-copies, still
# available for at_least_once runs, are not used.)
# The load has no click floods: flood counters are per instance (README), so
# a flood spread over instances is counted per instance by design.
# usage: scale.sh BIN_DIR SRC_DIR [CLICKS] [PARTITIONS] [RATE]
# FAULTS_FULL=1: 400k clicks, 32 partitions (the mock keeps about 5 MiB a partition).
BIN_DIR=$1
SRC_DIR=$2
source "$SRC_DIR/tests/faults/lib.sh"
CLICKS=${3:-$(faults_size 20000 400000)}
PARTITIONS=${4:-$(faults_size 8 32)}
RATE=${5:-$(faults_size 500 2500)}

start_devbroker_ctl "$PARTITIONS"
for n in p1 p2 p3; do supervise "$n"; done
note "started p1 p2 p3 together, each under a supervisor"
start_load "$CLICKS" "$RATE" --flood-share 0 --bad-share 0.02
for n in p1 p2 p3; do
  up=$(wait_up "$n" 60) || true
  note "$n up after $up (since start)"
done

# Roughly a third of the load in: the fourth joins; two thirds: it leaves.
messages=$((CLICKS * 11 / 10))
third=$((messages / RATE / 3))
sleep "$third"
supervise p4
note "p4 joins"
up=$(wait_up p4 60) || true
note "p4 up after $up"
sleep "$third"
gaps_counted=$(scrape p4 tally_state_gaps_total)
gaps_counted=${gaps_counted:-0}
stop_supervisor p4
note "p4 leaves (SIGTERM): exit $(awk '{print $2}' "$WORK/p4.exits.final" 2>/dev/null || echo '?')"
wait_load
if wait_drained 6 180 p1 p2 p3; then
  note "drained: no input consumed for 6 s"
else
  note "not drained within 180 s"
fi
# tally_state_gaps_total of the live instances (a restarted instance starts
# again from 0, so this can be below the number of logged lines).
for n in p1 p2 p3; do
  c=$(scrape "$n" tally_state_gaps_total)
  gaps_counted=$((gaps_counted + ${c:-0}))
done
stop_supervisors p1 p2 p3
exits=0
for n in p1 p2 p3 p4; do exits=$((exits + $(exits_of "$n"))); done
stop_rcs=$(cat "$WORK"/p[1-4].exits.final 2>/dev/null | awk '{printf "%s ", $2}')
restart_log=$(cat "$WORK"/p[1-4].exits 2>/dev/null | tr '\n' ';')

summaries_of p1 p2 p3 p4
rc=0
verify_faults --max-copies 0 "${SUMMARY_FLAGS[@]}" || rc=$?
print_summary "scale: 3 instances + a 4th joining and leaving; $CLICKS clicks, $PARTITIONS partitions at ${RATE} msg/s" \
    "instance exits restarted by the supervisors: $exits ${restart_log:+(elapsed rc: $restart_log)}" \
    "exit codes after the final SIGTERM: $stop_rcs" \
    "tally_state_gaps_total (p4 before it left + p1-p3 at the end): $gaps_counted" \
    "state gaps logged per instance run: $(for f in "$WORK"/p*.[0-9]*.log; do printf '%s=%s ' "$(basename "$f" .log)" "$(grep -c 'state gap: ' "$f" || true)"; done)" \
    "$(grep '^tally-verify: processor' "$WORK/verify.txt" || true)"
fail=0
if [ "$exits" != 0 ]; then
  echo "FAIL: instances exited $exits times (the supervisors restarted them)"
  fail=1
fi
if [ "${V_GAPS:-1}" != 0 ]; then
  echo "FAIL: ${V_GAPS:-?} state gaps logged (moved tasks are restored from the changelog)"
  fail=1
fi
if [ "$rc" != 0 ]; then
  echo "FAIL: tally-verify: ${V_MISMATCHES:-?} mismatches, ${V_COPIES:-?} copies (none allowed)"
  fail=1
fi
[ "$fail" = 0 ] || exit 1
echo "PASS (0 mismatches, 0 copies, 0 state gaps)"
