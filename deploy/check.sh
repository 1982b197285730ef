#!/usr/bin/env bash
# Deploy checks run by ctest (deploy.check, label `deploy`). Offline, and none
# of them can pass silently: a missing tool is a failure that says so.
#   1. alert rules: promtool check + rule tests; every alert has severity,
#      summary, runbook_url into a docs/runbook.md section, a firing and a
#      silent rule test;
#   2. deploy/base/prometheusrule.yaml is what deploy/generate-prometheusrule.sh
#      makes of deploy/prometheus/alerts.yaml;
#   3. the Grafana dashboards are valid JSON;
#   4. the Kustomize base and every overlay render (kubectl kustomize), every
#      built-in object validates against the Kubernetes OpenAPI schema
#      (npm kubernetes-models, strict: unknown fields fail), the custom
#      resources have their required fields, and the whole is what Tally
#      needs (deploy/validate/validate.mjs);
#   5. negative tests: a copy with `readinesProbe` misspelt, and one with
#      `containerPort: "ninety"`, must fail;
#   6. every rendered ConfigMap's configuration passes `tally --check-config`
#      with the pod's arguments and environment (no binary: failure), and a
#      broken dev overlay does not;
#   7. the Dockerfile: every FROM pinned, .dockerignore, non-root final stage
#      with a HEALTHCHECK and without the dev tools, runtime packages that
#      cover every shared library tally links.
# Environment: TALLY_BIN (default build/bin/tally), set by ctest.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
tally=${TALLY_BIN:-$root/build/bin/tally}
validate="$here/validate/validate.mjs"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

fail() { echo "deploy.check: FAIL: $*" >&2; exit 1; }
step() { echo "== $*"; }

step "tools"
command -v promtool >/dev/null 2>&1 || fail "promtool not found (Debian package prometheus: run make setup)"
command -v kubectl >/dev/null 2>&1 ||
  fail "kubectl not found: cannot render deploy/ with kubectl kustomize (install kubectl >= 1.27; Debian's kubernetes-client 1.20 is too old)"
command -v node >/dev/null 2>&1 || fail "node not found (run make setup)"
for pkg in kubernetes-models yaml; do
  [ -f "$here/validate/node_modules/$pkg/package.json" ] ||
    fail "npm package $pkg missing in deploy/validate/node_modules (run make setup)"
done
echo "promtool $(promtool --version 2>&1 | awk 'NR==1{print $3}'), kubectl $(kubectl version --client 2>/dev/null | awk '/Client/{print $3}'), node $(node --version)"

step "1. alert rules"
promtool check rules "$here/prometheus/alerts.yaml" "$here/prometheus/recording.yaml"
(cd "$here/prometheus" && promtool test rules alerts_test.yaml recording_test.yaml)
node "$validate" alerts "$here/prometheus/alerts.yaml" "$here/prometheus/alerts_test.yaml" "$root/docs/runbook.md"

step "2. generated PrometheusRule"
"$here/generate-prometheusrule.sh" "$tmp/prometheusrule.yaml"
if ! diff -u "$here/base/prometheusrule.yaml" "$tmp/prometheusrule.yaml"; then
  fail "deploy/base/prometheusrule.yaml is stale: run deploy/generate-prometheusrule.sh"
fi
echo "deploy/base/prometheusrule.yaml is up to date"

step "3. dashboards"
for f in "$here"/grafana/*.json; do
  node -e 'JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"))' "$f" || fail "$f is not valid JSON"
  echo "$(basename "$f"): valid JSON"
done

step "4. render and validate"
# Expectations per overlay: namespace, replicas, image pinned. An overlay not
# listed here is still rendered and validated.
declare -A expect=(
  [dev]="--namespace tally-dev --replicas 1"
  [prod]="--namespace tally --replicas 3 --pinned-image"
)
render_and_validate() {  # DIR NAME [options...]
  local dir=$1 name=$2
  shift 2
  kubectl kustomize "$dir" >"$tmp/$name.yaml" || fail "kubectl kustomize $dir failed"
  echo -n "$name: "
  node "$validate" manifests "$tmp/$name.yaml" --config "$here/config/tally.yaml" "$@" ||
    fail "$name: the rendered objects are not valid (above)"
}
render_and_validate "$here/base" base
overlays=0
for d in "$here"/overlays/*/; do
  name=$(basename "$d")
  # shellcheck disable=SC2086
  render_and_validate "$d" "$name" ${expect[$name]:-}
  overlays=$((overlays + 1))
done
for name in "${!expect[@]}"; do
  [ -f "$tmp/$name.yaml" ] || fail "overlay deploy/overlays/$name is missing"
done
echo "rendered and validated the base and $overlays overlays"

step "5. negative tests (must fail)"
negative() {  # NAME SED-EXPRESSION WORD: a broken copy of deploy/ must fail, naming WORD
  local name=$1 expr=$2 word=$3 copy="$tmp/neg-$1"
  mkdir -p "$copy"
  cp -r "$here/base" "$here/config" "$here/overlays" "$copy/"
  sed -i "$expr" "$copy/base/statefulset.yaml"
  cmp -s "$here/base/statefulset.yaml" "$copy/base/statefulset.yaml" && fail "negative test $name: the edit changed nothing"
  kubectl kustomize "$copy/overlays/prod" >"$copy/rendered.yaml" || fail "negative test $name: did not render"
  if node "$validate" manifests "$copy/rendered.yaml" --config "$copy/config/tally.yaml" >"$copy/out" 2>&1; then
    cat "$copy/out"
    fail "negative test $name: a broken StatefulSet passed validation"
  fi
  grep -q -- "$word" "$copy/out" || { cat "$copy/out"; fail "negative test $name: the failure does not name $word"; }
  echo "$name: rejected as expected: $(grep -m1 -- "$word" "$copy/out" | sed 's/^ *//')"
}
negative misspelt-probe 's/readinessProbe:/readinesProbe:/' readinesProbe
negative port-not-a-number 's/containerPort: 9464/containerPort: "ninety"/' containerPort
negative both 's/readinessProbe:/readinesProbe:/; s/containerPort: 9464/containerPort: "ninety"/' readinesProbe
grep -q containerPort "$tmp/neg-both/out" || fail "negative test both: containerPort not reported"
# An alert without its runbook section, and one without runbook_url, must fail.
sed '/^## TallyDown$/d' "$root/docs/runbook.md" >"$tmp/runbook-missing.md"
if node "$validate" alerts "$here/prometheus/alerts.yaml" "$here/prometheus/alerts_test.yaml" "$tmp/runbook-missing.md" >"$tmp/out" 2>&1 ||
  ! grep -q 'alert TallyDown: .*no section #tallydown' "$tmp/out"; then
  cat "$tmp/out"; fail "negative test: a missing runbook section passed"
fi
sed '0,/runbook_url:/{/runbook_url:/d}' "$here/prometheus/alerts.yaml" >"$tmp/alerts-no-url.yaml"
if node "$validate" alerts "$tmp/alerts-no-url.yaml" "$here/prometheus/alerts_test.yaml" "$root/docs/runbook.md" >"$tmp/out" 2>&1 ||
  ! grep -q 'annotations.runbook_url must be' "$tmp/out"; then
  cat "$tmp/out"; fail "negative test: an alert without runbook_url passed"
fi
echo "alerts: a missing runbook section and a missing runbook_url are rejected as expected"

step "6. tally --check-config on the ConfigMap"
# No skipping: a check that passes without its binary proves nothing.
[ -x "$tally" ] || fail "no tally binary at $tally (build first; ctest sets TALLY_BIN)"
"$tally" --help 2>&1 | grep -q -- '--check-config' || fail "$tally --help does not list --check-config"
# Every rendered ConfigMap's configuration, with the pod's arguments and
# environment, must pass; and the check must be able to fail (a dev overlay
# with its write buffer as large as its block cache is refused).
check_pod() {  # NAME RENDERED.yaml
  local name=$1 rendered=$2 out="$tmp/pod-$1"
  node "$validate" extract "$rendered" "$out" >/dev/null
  mapfile -t args <"$out/args"
  mapfile -t envs <"$out/env"
  env -i PATH="$PATH" "${envs[@]}" "$tally" --check-config "${args[@]}" >"$out/log" 2>&1
}
for name in base "${!expect[@]}"; do
  if ! check_pod "$name" "$tmp/$name.yaml"; then
    cat "$tmp/pod-$name/log"
    fail "$name: tally --check-config refused the ConfigMap's configuration with the pod's arguments and environment"
  fi
  grep -q '^configuration OK: ' "$tmp/pod-$name/log" || fail "$name: tally --check-config did not say configuration OK"
  echo "$name: tally --check-config accepted it"
done
sed '/name: TALLY_STATE_WRITE_BUFFER_BYTES/{n;s/value: .*/value: 64MiB/}' "$tmp/dev.yaml" >"$tmp/dev-bad.yaml"
cmp -s "$tmp/dev.yaml" "$tmp/dev-bad.yaml" && fail "negative check-config test: the edit changed nothing"
if check_pod dev-bad "$tmp/dev-bad.yaml"; then
  fail "negative check-config test: a 64MiB write buffer with a 64MiB block cache passed"
fi
grep -q 'state.write_buffer_bytes' "$tmp/pod-dev-bad/log" || { cat "$tmp/pod-dev-bad/log"; fail "negative check-config test: the failure does not name state.write_buffer_bytes"; }
echo "dev with a 64MiB write buffer: rejected as expected: $(head -n1 "$tmp/pod-dev-bad/log")"

step "7. Dockerfile"
dockerfile="$here/Dockerfile"
[ -f "$root/.dockerignore" ] || fail ".dockerignore missing at the repository root (the build context)"
for pattern in .git 'build*/' run/ '**/node_modules'; do
  grep -qxF -- "$pattern" "$root/.dockerignore" || fail ".dockerignore does not exclude $pattern"
done
stages=()
while read -r image as name; do
  if [ "${as,,}" = as ]; then stages+=("$name"); fi
  if [[ " ${stages[*]} " == *" $image "* && "$image" != "${name:-}" ]]; then continue; fi  # FROM an earlier stage
  [[ "$image" =~ @sha256:[0-9a-f]{64}$ || "$image" =~ :[0-9]+\.[0-9]+(\.[0-9]+)?(-[a-z]+)?$ ]] ||
    fail "Dockerfile: FROM $image is not pinned (exact point-release tag like debian:12.11-slim, or a digest)"
done < <(awk 'toupper($1)=="FROM"{print $2, $3, $4}' "$dockerfile")
[ ${#stages[@]} -ge 3 ] || fail "Dockerfile: expected build, dev and runtime stages"
printf '%s\n' "${stages[@]}" | grep -qx dev || fail "Dockerfile: no dev target"
last=$(awk 'toupper($1)=="FROM"{n=NR} END{print n}' "$dockerfile")
final=$(tail -n +"$last" "$dockerfile")
parent=$(awk 'toupper($1)=="FROM"{print $2}' <<<"$final")
parent_text=$(awk -v s="$parent" 'toupper($1)=="FROM"{on=($4==s)} on' "$dockerfile")
for word in tally-devbroker tally-loadgen tally-verify; do
  grep -q -- "$word" <<<"$final$parent_text" && fail "Dockerfile: the final stage ships $word (dev tools belong in the dev target)"
done
grep -q '/usr/local/bin/tally' <<<"$final" || fail "Dockerfile: the final stage does not copy tally"
user=$(awk 'toupper($1)=="USER"{u=$2} END{print u}' <<<"$parent_text$final")
[[ -n "$user" && "${user%%:*}" != 0 && "${user%%:*}" != root ]] || fail "Dockerfile: the final stage does not run as a non-root USER"
grep -q '^HEALTHCHECK' <<<"$parent_text$final" || fail "Dockerfile: no HEALTHCHECK in the final stage"
grep -q '/healthz' <<<"$(grep -A3 '^HEALTHCHECK' "$dockerfile")" || fail "Dockerfile: HEALTHCHECK does not use /healthz"
for word in 'make setup' 'make build'; do
  grep -q "$word" "$dockerfile" || fail "Dockerfile: the build stage must use make setup-packages and make build"
done
# Runtime packages: every shared library tally links must come from a package
# the runtime stage installs (readelf NEEDED -> path -> dpkg -S).
runtime_pkgs=$(awk -v s="$parent" 'toupper($1)=="FROM"{on=($4==s)} on' "$dockerfile" |
  sed -n '/apt-get install/,/rm -rf/p' | tr -s '\\[:blank:]' '\n' | grep -E '^lib[a-z0-9+.-]+$|^ca-certificates$' | sort -u)
if [ -x "$tally" ] && command -v readelf >/dev/null && command -v dpkg >/dev/null && readelf -h "$tally" >/dev/null 2>&1; then
  missing=""
  while read -r lib; do
    path=$(ldd "$tally" | awk -v l="$lib" '$1==l{print $3}')
    pkg=$(dpkg -S "$(readlink -f "$path")" 2>/dev/null | head -1 | cut -d: -f1) ||
      pkg=$(dpkg -S "$path" 2>/dev/null | head -1 | cut -d: -f1) || true
    [ -n "$pkg" ] || fail "Dockerfile check: no Debian package owns $lib ($path)"
    grep -qx -- "$pkg" <<<"$runtime_pkgs" || missing="$missing $pkg($lib)"
  done < <(readelf -d "$tally" | awk '/NEEDED/{gsub(/[][]/,"",$5); print $5}')
  [ -z "$missing" ] || fail "Dockerfile: the runtime stage does not install:$missing"
  echo "runtime packages cover every library tally links ($(wc -w <<<"$runtime_pkgs") packages)"
else
  echo "SKIPPED runtime library check: no ELF tally binary at $tally (or no readelf/dpkg)"
fi
echo "Dockerfile: pinned FROMs, .dockerignore, non-root $user, HEALTHCHECK, dev tools only in the dev target"

echo PASS
