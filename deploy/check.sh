#!/usr/bin/env bash
# Deploy checks run by ctest (label `deploy`): alert rules are valid and
# behave as their unit tests say; the PrometheusRule is in sync with them;
# the Grafana dashboard is valid JSON; the Kustomize tree renders (when
# kubectl is available: it is not a Debian package, so it may be absent).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
promtool check rules "$here/prometheus/alerts.yaml"
(cd "$here/prometheus" && promtool test rules alerts_test.yaml)
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
"$here/generate-prometheusrule.sh" "$tmp"
if ! diff -u "$here/k8s/prometheusrule.yaml" "$tmp"; then
  echo "deploy/k8s/prometheusrule.yaml is stale: run deploy/generate-prometheusrule.sh" >&2
  exit 1
fi
for f in "$here"/grafana/*.json; do
  if command -v python3 >/dev/null 2>&1; then python3 -m json.tool "$f" >/dev/null; fi
done
if command -v kubectl >/dev/null 2>&1; then
  kubectl kustomize "$here" >"$tmp"
  grep -q "kind: StatefulSet" "$tmp"
  grep -q "app.kubernetes.io/name: tally" "$tmp"
  echo "kustomize: rendered $(grep -c '^kind:' "$tmp") objects"
else
  echo "kubectl not installed: skipped rendering deploy/"
fi
echo PASS
