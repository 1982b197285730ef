#!/usr/bin/env bash
# Runs every libFuzzer target of a fuzz build tree for FUZZ_SECONDS each.
#   fuzz/run.sh <build-dir>          (normally via `make fuzz` / `make fuzz-smoke`)
# Environment: FUZZ_SECONDS (default 20) per target; FUZZ_TARGETS to run a
# subset (space-separated names); FUZZ_ARGS extra libFuzzer flags.
#
# Each target starts from a COPY of fuzz/corpus/<target>/ in a temporary
# directory (the repository is never written to); crashes, leaks and
# timeouts are saved under <build-dir>/fuzz-artifacts/. Prints one line per
# target; exits 1 if any target found a problem.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
if [ $# -ne 1 ]; then
  echo "usage: $0 <build-dir>" >&2
  exit 2
fi
BUILD=$(cd "$1" && pwd) || exit 2
SECONDS_PER_TARGET=${FUZZ_SECONDS:-20}
TARGETS=${FUZZ_TARGETS:-"fuzz_decode_click_json fuzz_decode_conversion_json fuzz_decode_click_protobuf fuzz_decode_conversion_protobuf fuzz_decode_outputs"}
ARTIFACTS="$BUILD/fuzz-artifacts"
mkdir -p "$ARTIFACTS"
WORK=$(mktemp -d -t tally-fuzz.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1:symbolize=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}

failed=0
for t in $TARGETS; do
  bin="$BUILD/bin/$t"
  if [ ! -x "$bin" ]; then
    printf '%-34s MISSING (%s not built)\n' "$t" "$bin"
    failed=1
    continue
  fi
  corpus="$WORK/$t"
  mkdir -p "$corpus"
  if [ -d "$ROOT/fuzz/corpus/$t" ]; then cp -r "$ROOT/fuzz/corpus/$t/." "$corpus/"; fi
  seeds=$(find "$corpus" -type f | wc -l)
  log="$WORK/$t.log"
  # shellcheck disable=SC2086
  "$bin" -max_total_time="$SECONDS_PER_TARGET" -rss_limit_mb=2048 -max_len=70000 -timeout=25 \
      -print_final_stats=1 -artifact_prefix="$ARTIFACTS/$t-" ${FUZZ_ARGS:-} "$corpus" >"$log" 2>&1
  rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *\([0-9]*\).*/\1/p' "$log" | tail -1)
  [ -n "$execs" ] || execs=$(sed -n 's/^Done \([0-9]*\) runs.*/\1/p' "$log" | tail -1)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
  units=$(find "$corpus" -type f | wc -l)
  if [ $rc -eq 0 ]; then
    printf '%-34s ok      %10s execs in %ss, cov %s, corpus %d -> %d\n' \
      "$t" "${execs:-?}" "$SECONDS_PER_TARGET" "${cov:-?}" "$seeds" "$units"
  else
    failed=1
    printf '%-34s FAILED  %10s execs, exit %d; artifacts in %s, log follows\n' \
      "$t" "${execs:-?}" "$rc" "$ARTIFACTS"
    cp "$log" "$ARTIFACTS/$t.log"
    grep -E 'ERROR|SUMMARY|violation|runtime error|Test unit written|^    #[0-9]+ ' "$log" | head -40 | sed 's/^/    /'
  fi
done
exit $failed
