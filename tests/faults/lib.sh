# shellcheck shell=bash
# Shared helpers for the fault scenarios (tests/faults/*.sh): the real
# binaries over tally-devbroker, with the devbroker's control channel, several
# named tally instances (each its own state dir and instance_id, all from the
# shipped deploy/config/tally.yaml), a supervisor that restarts any instance
# that exits (as Kubernetes would), readiness polling and metric scraping.
# Builds on tests/integration/lib.sh (WORK, PIDS, the cleanup trap that stops
# everything and prints the logs of a failed run).
# Expects BIN_DIR and SRC_DIR; uses curl.
source "$SRC_DIR/tests/integration/lib.sh"

command -v curl >/dev/null || { echo "faults: curl is needed (make setup installs it)" >&2; exit 2; }

# The scenario's own deadline (ctest's TIMEOUT must cover the full sizes):
# past it the script fails with the logs. A loop of short sleeps, so that
# nothing outlives the script holding ctest's output pipe.
FAULTS_DEADLINE=${FAULTS_DEADLINE:-$([ "${FAULTS_FULL:-0}" = 1 ] && echo 1500 || echo 240)}
trap 'echo "faults: watchdog: the scenario ran past FAULTS_DEADLINE=${FAULTS_DEADLINE}s" >&2; exit 124' USR1
(
  for ((i = 0; i < FAULTS_DEADLINE; i++)); do
    sleep 1
    kill -0 $$ 2>/dev/null || exit 0
  done
  kill -USR1 $$ 2>/dev/null
) >/dev/null 2>&1 &

T0=$(date +%s.%N)
elapsed() { awk -v a="$T0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}'; }
# note TEXT: a timestamped line on stderr and in the injection log that the
# summary prints back.
note() {
  echo "[$(elapsed)s] $*" >&2
  echo "[$(elapsed)s] $*" >>"$WORK/injections.txt"
}
: >"$WORK/injections.txt"

# wait_for SECONDS COMMAND...: polls COMMAND every 0.1 s; 1 on timeout.
wait_for() {
  local limit=$1
  shift
  local end=$(($(date +%s) + limit))
  until "$@"; do
    [ "$(date +%s)" -ge "$end" ] && return 1
    sleep 0.1
  done
}

# start_devbroker_ctl PARTITIONS -> BOOTSTRAP, CONTROL_PORT, DEVBROKER_PID
start_devbroker_ctl() {
  local partitions=$1
  DEVBROKER_PARTITIONS=$partitions
  rm -f "$WORK/bootstrap" "$WORK/control_port"
  "$BIN_DIR/tally-devbroker" --partitions "$partitions" --bootstrap-file "$WORK/bootstrap" \
      --control-port-file "$WORK/control_port" \
      >"$WORK/devbroker.out" 2>>"$WORK/devbroker.log" &
  DEVBROKER_PID=$!
  PIDS+=("$DEVBROKER_PID")
  wait_for 10 test -s "$WORK/bootstrap" || { echo "devbroker did not start" >&2; return 1; }
  BOOTSTRAP=$(cat "$WORK/bootstrap")
  CONTROL_PORT=$(cat "$WORK/control_port")
  note "devbroker up at $BOOTSTRAP ($partitions partitions per topic), control port $CONTROL_PORT"
}

# broker_ctl COMMAND...: one control command; prints the answer; 1 unless "ok".
broker_ctl() {
  local answer
  exec 9<>"/dev/tcp/127.0.0.1/$CONTROL_PORT" || return 1
  echo "$*" >&9
  IFS= read -r -t 10 answer <&9 || answer="error: no answer"
  exec 9>&-
  echo "$answer"
  [[ $answer == ok* ]]
}

# inject COMMAND...: broker_ctl that must succeed, noted in the summary.
inject() {
  local answer
  answer=$(broker_ctl "$@") || { note "control '$*' failed: $answer"; return 1; }
  note "injected: $* -> $answer"
}

# start_load CLICKS RATE [loadgen flags...] -> LOADGEN_PID; truth in $WORK/truth.jsonl.
# RATE 0 produces as fast as possible.
start_load() {
  local clicks=$1 rate=$2
  shift 2
  "$BIN_DIR/tally-loadgen" --bootstrap-servers "$BOOTSTRAP" --clicks "$clicks" --seed "${SEED:-11}" \
      --rate "$rate" --truth "$WORK/truth.jsonl" "$@" 2>"$WORK/loadgen.log" &
  LOADGEN_PID=$!
  PIDS+=("$LOADGEN_PID")
  note "load: $clicks clicks at ${rate} msg/s (0 = unlimited) $*"
}
wait_load() {
  wait "$LOADGEN_PID" || { echo "tally-loadgen failed" >&2; return 1; }
  note "load done: $(tail -n 1 "$WORK/loadgen.log")"
}

# The processor's command line: the shipped configuration with loopback
# overrides, this instance's own state dir and instance_id, then extras.
instance_command() {
  local name=$1
  shift
  INSTANCE_CMD=("$BIN_DIR/tally" --config "$SRC_DIR/deploy/config/tally.yaml"
      --set "kafka.bootstrap.servers=$BOOTSTRAP"
      --set "metrics.listen=127.0.0.1:0"
      --set "state.dir=$WORK/state-$name"
      --set "instance_id=$name"
      --set "consumer.session.timeout.ms=6000"
      --set "fraud.bot_user_agents_file=$SRC_DIR/deploy/config/bot_user_agents.txt"
      --set "fraud.ip_blocklist_file=$SRC_DIR/deploy/config/ip_blocklist.txt"
      --set "offers.file=$SRC_DIR/deploy/config/offers.yaml"
      --set fraud.flood_lateness=24h --set fraud.flood_table_slots=8388608
      "${TALLY_EXTRA[@]}" "$@")
}
TALLY_EXTRA=()

# Every run of an instance gets its own log and summary:
# $WORK/<name>.<run>.log / .summary.json; $WORK/<name>.run holds the current
# run number, $WORK/<name>.pid the current tally pid.
next_run() {
  local name=$1 n=0
  [ -f "$WORK/$name.run" ] && n=$(cat "$WORK/$name.run")
  n=$((n + 1))
  echo "$n" >"$WORK/$name.run"
  echo "$n"
}
run_log() { echo "$WORK/$1.$(cat "$WORK/$1.run").log"; }

# start_instance NAME [--set ...]: one run in the background (no supervisor).
start_instance() {
  local name=$1
  shift
  local run
  run=$(next_run "$name")
  instance_command "$name" "$@"
  "${INSTANCE_CMD[@]}" >"$WORK/$name.$run.summary.json" 2>"$WORK/$name.$run.log" &
  echo $! >"$WORK/$name.pid"
  PIDS+=("$!")
  INSTANCE_PID=$!
}

# supervise NAME [--set ...]: runs the instance under a supervisor loop in the
# background (SUPERVISOR_PID) that restarts it 1 s after any exit, records
# "<elapsed> <rc>" per exit in $WORK/NAME.exits, and on SIGTERM stops the
# instance (SIGTERM) and itself. stop_supervisor NAME does that and waits.
supervise() {
  local name=$1
  shift
  : >"$WORK/$name.exits"
  (
    child=""
    stopping=0
    trap 'stopping=1; [ -n "$child" ] && kill -TERM "$child" 2>/dev/null' TERM
    while [ "$stopping" = 0 ]; do
      run=$(next_run "$name")
      instance_command "$name" "$@"
      "${INSTANCE_CMD[@]}" >"$WORK/$name.$run.summary.json" 2>"$WORK/$name.$run.log" &
      child=$!
      echo "$child" >"$WORK/$name.pid"
      rc=0
      # wait returns early (>128) when the TERM trap fires; wait again for
      # the child's own status (bash keeps it even once reaped).
      wait "$child" || rc=$?
      if [ "$stopping" = 1 ]; then
        rc=0
        wait "$child" || rc=$?
      fi
      if [ "$stopping" = 1 ]; then
        echo "$(elapsed) $rc stop" >>"$WORK/$name.exits.final"
        break
      fi
      echo "$(elapsed) $rc" >>"$WORK/$name.exits"
      echo "[$(elapsed)s] supervisor: $name run $run exited $rc; restarting in 1 s" >&2
      sleep 1
    done
  ) &
  SUPERVISOR_PID=$!
  echo "$SUPERVISOR_PID" >"$WORK/$name.supervisor"
  PIDS+=("$SUPERVISOR_PID")
  wait_for 10 test -f "$WORK/$name.pid"
}
stop_supervisor() {
  local name=$1 pid
  pid=$(cat "$WORK/$name.supervisor")
  kill -TERM "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
# stop_supervisors NAME...: SIGTERM to all at once, then wait for each (a
# rolling stop would move every partition through every survivor).
stop_supervisors() {
  local n pids=()
  for n in "$@"; do
    pids+=("$(cat "$WORK/$n.supervisor")")
    kill -TERM "${pids[-1]}" 2>/dev/null || true
  done
  for n in "${pids[@]}"; do wait "$n" 2>/dev/null || true; done
}
exits_of() { [ -f "$WORK/$1.exits" ] && wc -l <"$WORK/$1.exits" || echo 0; }

# metrics_port NAME [TIMEOUT]: the current run's metrics port, from its log.
metrics_port() {
  local name=$1 limit=${2:-30} log port=""
  local end=$(($(date +%s) + limit))
  while :; do
    log=$(run_log "$name")
    port=$(grep -o 'metrics on port [0-9]*' "$log" 2>/dev/null | head -n1 | awk '{print $4}')
    [ -n "$port" ] && break
    [ "$(date +%s)" -ge "$end" ] && return 1
    sleep 0.1
  done
  echo "$port"
}

# http_status NAME PATH: the HTTP status code of the current run's endpoint
# (000 when nothing answers).
http_status() {
  local port
  port=$(metrics_port "$1" 1) || { echo 000; return 0; }
  curl -s -o /dev/null -m 2 -w '%{http_code}' "http://127.0.0.1:$port$2" || true
}

# wait_ready NAME TIMEOUT: polls /readyz until 200; echoes the seconds it
# took (or "never (last HTTP <code>)") and returns 1 on timeout.
wait_ready() {
  local name=$1 limit=$2 start code
  start=$(date +%s.%N)
  local end=$(($(date +%s) + limit))
  while :; do
    code=$(http_status "$name" /readyz)
    if [ "$code" = 200 ]; then
      awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1fs", b-a}'
      return 0
    fi
    if [ "$(date +%s)" -ge "$end" ]; then
      echo "never (last HTTP $code)"
      return 1
    fi
    sleep 0.2
  done
}

# scrape NAME METRIC: the sum of every sample of METRIC (any labels) on the
# current run's /metrics; empty when unreachable.
scrape() {
  local port
  port=$(metrics_port "$1" 1) || return 0
  curl -s -m 2 "http://127.0.0.1:$port/metrics" |
      awk -v m="$2" '($1 == m || index($1, m "{") == 1) {s += $NF; n++} END {if (n) printf "%.0f\n", s}'
}

# wait_drained SECONDS_QUIET LIMIT NAME...: after the load is done, waits
# until no instance has consumed anything for SECONDS_QUIET seconds (the sum
# of tally_input_messages_total over the instances is unchanged) while the
# named instances together own every input partition and restore nothing, at
# most LIMIT seconds. The mock broker offers no consumer-lag query, and
# restarted instances reset their counters, hence "quiet" rather than "equal
# to". Ownership matters: a static member that leaves (SIGTERM) keeps its
# partitions until its session times out, so its share of the input is
# quiet, not drained, until a live instance is assigned it.
wait_drained() {
  local quiet=$1 limit=$2
  shift 2
  local last="" same=0 total n v assigned restoring
  local want=$((2 * ${DEVBROKER_PARTITIONS:-0}))
  local end=$(($(date +%s) + limit))
  while [ "$(date +%s)" -lt "$end" ]; do
    total="" assigned=0 restoring=0
    for n in "$@"; do
      total="$total/$(scrape "$n" tally_input_messages_total)"
      v=$(scrape "$n" tally_assigned_partitions)
      assigned=$((assigned + ${v:-0}))
      v=$(scrape "$n" tally_restoring_tasks)
      restoring=$((restoring + ${v:-0}))
    done
    total="$total assigned=$assigned restoring=$restoring"
    if [ "$total" = "$last" ] && { [ "$want" = 0 ] || [ "$assigned" = "$want" ]; } &&
        [ "$restoring" = 0 ]; then
      same=$((same + 1))
      [ "$same" -ge "$quiet" ] && return 0
    else
      same=0
      last=$total
    fi
    sleep 1
  done
  return 1
}

# verify_faults [tally-verify flags...]: the oracle over everything on the
# topics, with every processor log given (for state gaps); output in
# $WORK/verify.txt, RESULT fields in V_MISMATCHES, V_GAPPED, V_COPIES,
# V_COMMISSIONS, V_GAPS, V_VERDICT. Returns tally-verify's exit code.
verify_faults() {
  local logs=() f rc=0
  for f in "$WORK"/*.[0-9]*.log; do [ -f "$f" ] && logs+=(--processor-log "$f"); done
  "$BIN_DIR/tally-verify" --bootstrap-servers "$BOOTSTRAP" --truth "$WORK/truth.jsonl" \
      --offers-file "$SRC_DIR/deploy/config/offers.yaml" \
      --bot-user-agents-file "$SRC_DIR/deploy/config/bot_user_agents.txt" \
      --ip-blocklist-file "$SRC_DIR/deploy/config/ip_blocklist.txt" \
      --timeout-seconds "$(faults_size 180 900)" \
      "${logs[@]}" "$@" >"$WORK/verify.txt" 2>"$WORK/verify.err" || rc=$?
  grep -c '^MISMATCH' "$WORK/verify.err" >/dev/null 2>&1 && head -n 10 "$WORK/verify.err" >&2
  cat "$WORK/verify.txt"
  local result
  result=$(grep '^tally-verify: RESULT' "$WORK/verify.txt" | tail -n1)
  V_MISMATCHES=$(sed -n 's/.* mismatches=\([0-9]*\).*/\1/p' <<<"$result")
  V_GAPPED=$(sed -n 's/.* gapped_mismatches=\([0-9]*\).*/\1/p' <<<"$result")
  V_COPIES=$(sed -n 's/.* copies=\([0-9]*\).*/\1/p' <<<"$result")
  V_COMMISSIONS=$(sed -n 's/.* commissions=\([0-9]*\).*/\1/p' <<<"$result")
  V_GAPS=$(sed -n 's/.* state_gaps=\([0-9]*\).*/\1/p' <<<"$result")
  V_VERDICT=$(sed -n 's/.* verdict=\([A-Z_]*\).*/\1/p' <<<"$result")
  return $rc
}

# summaries_of NAME...: --processor-summary flags for every non-empty summary.
summaries_of() {
  local n f
  SUMMARY_FLAGS=()
  for n in "$@"; do
    for f in "$WORK/$n".*.summary.json; do
      [ -s "$f" ] && SUMMARY_FLAGS+=(--processor-summary "$f")
    done
  done
  return 0
}

# print_summary TITLE LINES...: the scenario's closing report on stdout,
# also kept in run/faults/<scenario>.txt (ctest shows a passing test's
# output only with -V; `make faults` users want the figures either way).
print_summary() {
  local out
  out="$SRC_DIR/run/faults/$(basename "$0" .sh).txt"
  mkdir -p "$(dirname "$out")" 2>/dev/null || true
  print_summary_lines "$@" | tee "$out" 2>/dev/null || print_summary_lines "$@"
}
print_summary_lines() {
  echo "==== $1"
  shift
  echo "-- injected:"
  sed 's/^/   /' "$WORK/injections.txt"
  local line
  for line in "$@"; do echo "-- $line"; done
  echo "-- tally-verify: commissions=${V_COMMISSIONS:-?} copies=${V_COPIES:-?}" \
       "mismatches=${V_MISMATCHES:-?} (on tasks with a state gap: ${V_GAPPED:-?})" \
       "state_gaps=${V_GAPS:-?} verdict=${V_VERDICT:-?}"
  grep -E '^tally-verify: (identical copies|state gaps|mismatches per task)' "$WORK/verify.txt" \
      2>/dev/null | sed 's/^/   /' || true
}

# faults_size SHORT FULL: FULL when FAULTS_FULL=1.
faults_size() { if [ "${FAULTS_FULL:-0}" = 1 ]; then echo "$2"; else echo "$1"; fi; }

# Replaces the integration cleanup: stops everything (newest first: the
# supervisors stop their instances before the broker goes), prints the
# logs of a failed run, and keeps $WORK when FAULTS_KEEP=1.
cleanup() {
  local rc=$?
  local i
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
    kill -TERM "${PIDS[$i]}" 2>/dev/null || true
  done
  for pid in "${PIDS[@]:-}"; do
    [ -n "$pid" ] && wait "$pid" 2>/dev/null || true
  done
  if [ $rc -ne 0 ]; then
    echo "--- scenario failed (rc=$rc); logs from $WORK:" >&2
    for f in "$WORK"/devbroker.log "$WORK"/loadgen.log "$WORK"/verify.err; do
      [ -f "$f" ] || continue
      echo "=== $f (last 10 lines)" >&2
      tail -n 10 "$f" >&2
    done
    # Processor logs end with the human summary; their warnings say more.
    for f in "$WORK"/*.[0-9]*.log; do
      [ -f "$f" ] || continue
      echo "=== $f (first 5 WARN/ERROR lines)" >&2
      grep -E ' (WARN|ERROR|FATAL) ' "$f" | head -n 5 | cut -c1-300 >&2 || true
    done
  fi
  if [ "${FAULTS_KEEP:-0}" = 1 ]; then
    echo "files kept in $WORK" >&2
  else
    rm -rf "$WORK"
  fi
  exit $rc
}

# wait_up NAME TIMEOUT: like wait_ready, but a processor without /readyz
# (HTTP 404: an older build) counts as up once it logs its assignment, so the
# scenarios still run against it; echoes e.g. "2.3s" or "4.1s (no /readyz:
# assignment logged)".
wait_up() {
  local name=$1 limit=$2 start code
  start=$(date +%s.%N)
  local end=$(($(date +%s) + limit))
  while :; do
    code=$(http_status "$name" /readyz)
    if [ "$code" = 200 ]; then
      awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1fs", b-a}'
      return 0
    fi
    if [ "$code" = 404 ] && grep -q 'assigned [0-9]* partitions' "$(run_log "$name")" 2>/dev/null; then
      awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1fs (no /readyz: assignment logged)", b-a}'
      return 0
    fi
    if [ "$(date +%s)" -ge "$end" ]; then
      echo "never (last HTTP $code)"
      return 1
    fi
    sleep 0.2
  done
}
