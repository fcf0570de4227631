#!/usr/bin/env bash
# Lints, renders and strictly validates the rolegate chart and the example host chart, offline.
#
#   scripts/chart-check.sh [--charts DIR]
#
# DIR defaults to the repo's charts/ (chart-check-selftest.sh points it at broken copies). Tools
# are installed into .tools/ on the first run. Every values set is rendered with `helm template`
# (which also enforces values.schema.json and the charts' `fail` checks), then checked by yamllint
# for duplicate keys, by the strict Kubernetes schemas and, for the ServiceMonitor, by the
# Prometheus Operator CRD validators. The chart's README must list every value. A values file
# may declare what it must render with `# expect-kinds: A B` and the Kubernetes versions it
# targets with `# kube-versions: X Y`.
set -euo pipefail
shopt -s nullglob

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="$REPO/.tools"
CHECK="$REPO/scripts/chart-check"
CHARTS="$REPO/charts"
# The chart's oldest supported Kubernetes (native gRPC probes are GA there) and the newest schema.
DEFAULT_KUBE="1.27.0 1.37.0"
STANDALONE_KINDS="ConfigMap Deployment PodDisruptionBudget Service ServiceAccount"
# A host chart's own Deployment and Service, plus rolegate's policy ConfigMap.
EXAMPLE_KINDS="ConfigMap Deployment Service"

while [[ $# -gt 0 ]]; do
  case "$1" in
    --charts) CHARTS="$(cd "$2" && pwd)"; shift 2 ;;
    *) echo "usage: $0 [--charts DIR]" >&2; exit 2 ;;
  esac
done

source "$CHECK/tools.sh"
install_tools

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
# A copy, so that fetching the example's dependency writes nothing into the source tree.
cp -r "$CHARTS" "$WORK/charts"
mkdir "$WORK/out"
FAILED=()

fail() { echo "FAIL $1"; FAILED+=("$1"); }

header() { sed -n "s/^# $2: *//p" "$1" | head -n1; }

# check NAME CHART_DIR EXPECTED_KINDS KUBE_VERSIONS [helm values args...]
check() {
  local name="$1" chart="$2" kinds="$3" kube="$4" out="$WORK/out/$1.yaml" log="$WORK/out/$1.log"
  shift 4
  echo "== $name"
  if ! "$HELM" lint --strict "$chart" "$@" >"$log" 2>&1; then
    cat "$log"; fail "$name: helm lint --strict"
  fi
  if ! "$HELM" template "$name" "$chart" --namespace rolegate --kube-version "${kube%% *}" "$@" \
    >"$out" 2>"$log"; then
    cat "$log"; fail "$name: helm template"; return
  fi
  if [[ -n "$kinds" ]]; then
    local got
    got="$(sed -n 's/^kind: *//p' "$out" | sort -u | xargs)"
    [[ "$got" == "$(xargs -n1 <<<"$kinds" | sort -u | xargs)" ]] \
      || fail "$name: rendered kinds are [$got], expected [$kinds]"
  fi
  if ! "$TOOLS/venv/bin/yamllint" --no-warnings -f parsable -c "$CHECK/yamllint.yaml" "$out"; then
    fail "$name: yamllint"
  fi
  # helm template leaves NOTES.txt out, and an install would be the first to trip over it; so
  # render it wrapped in a YAML string.
  if [[ -f "$chart/templates/NOTES.txt" ]]; then
    rm -rf "$WORK/notes" && cp -r "$chart" "$WORK/notes"
    { echo '{{- define "chart-check.notes" }}'; cat "$chart/templates/NOTES.txt"
      echo '{{- end }}notes: {{ include "chart-check.notes" . | toJson }}'; } >"$WORK/notes/templates/notes.txt"
    if ! "$HELM" template "$name" "$WORK/notes" --namespace rolegate --kube-version "${kube%% *}" "$@" \
      --show-only templates/notes.txt >"$WORK/out/$name.notes" 2>"$log"; then
      cat "$log"; fail "$name: NOTES.txt"
    fi
  fi
  local versions=()
  for v in $kube; do versions+=(--kube "$v"); done
  if ! "$TOOLS/venv/bin/python" "$CHECK/validate.py" "${versions[@]}" \
    --crd-validator "$CHECK/validate-crd.cjs" "$out"; then
    fail "$name: schema validation"
  fi
}

# check_file NAME CHART_DIR VALUES_FILE: expectations come from the file's own header.
check_file() {
  local kube
  kube="$(header "$3" kube-versions)"
  check "$1" "$2" "$(header "$3" expect-kinds)" "${kube:-$DEFAULT_KUBE}" -f "$3"
}

rolegate="$WORK/charts/rolegate"
echo "== README values table"
"$TOOLS/venv/bin/python" "$CHECK/values-doc.py" "$rolegate/values.yaml" "$rolegate/values.schema.json" \
  "$rolegate/README.md" || fail "README.md does not match values.yaml"
check defaults "$rolegate" "$STANDALONE_KINDS" "$DEFAULT_KUBE"
check standalone "$rolegate" "$STANDALONE_KINDS" "$DEFAULT_KUBE" --set mode=standalone
check sidecar "$rolegate" "ConfigMap" "$DEFAULT_KUBE" --set mode=sidecar
for f in "$rolegate"/ci/*.yaml; do
  check_file "ci-$(basename "$f" .yaml)" "$rolegate" "$f"
done

for example in "$WORK"/charts/examples/*/; do
  name="example-$(basename "$example")"
  if ! "$HELM" dependency update "$example" >"$WORK/out/$name-deps.log" 2>&1; then
    cat "$WORK/out/$name-deps.log"; fail "$name: helm dependency update"; continue
  fi
  check "$name" "$example" "$EXAMPLE_KINDS" "$DEFAULT_KUBE"
  for f in "$example"ci/*.yaml; do
    check_file "$name-$(basename "$f" .yaml)" "$example" "$f"
  done
done

echo
if [[ ${#FAILED[@]} -gt 0 ]]; then
  echo "chart-check: ${#FAILED[@]} failure(s):"
  printf '  %s\n' "${FAILED[@]}"
  exit 1
fi
echo "chart-check: all values sets lint, render and validate"
