#!/usr/bin/env bash
# Proves that chart-check.sh can fail: breaks copies of the charts on purpose, one way at a time,
# and expects the check to fail on each, for the reason given. The untouched copy must pass first,
# so that a failure can only come from the breakage.
#
#   scripts/chart-check-selftest.sh
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
PASSED=0
FAILED=0

# replace FILE OLD NEW: exactly one occurrence, so a chart edit cannot turn a case into a no-op.
replace() {
  python3 - "$@" <<'EOF'
import sys
path, old, new = sys.argv[1:]
text = open(path, encoding="utf-8").read()
if text.count(old) != 1:
    sys.exit(f"self-test: expected `{old}` exactly once in {path}, found {text.count(old)}")
open(path, "w", encoding="utf-8").write(text.replace(old, new))
EOF
}

# expect_failure NAME PATTERN FILE OLD NEW: PATTERN must appear in the failing check's output.
expect_failure() {
  local name="$1" pattern="$2" file="$3" charts="$WORK/$1/charts" log="$WORK/$1.log"
  mkdir -p "$WORK/$name"
  cp -r "$REPO/charts" "$charts"
  replace "$charts/$file" "$4" "$5"
  if "$REPO/scripts/chart-check.sh" --charts "$charts" >"$log" 2>&1; then
    echo "FAIL $name: the check passed on a broken chart"
    FAILED=$((FAILED + 1))
  elif ! grep -q -- "$pattern" "$log"; then
    echo "FAIL $name: the check failed, but its output does not mention \`$pattern\`:"
    sed 's/^/    /' "$log"
    FAILED=$((FAILED + 1))
  else
    echo "ok   $name: the check failed as it should:"
    { grep -F -- "$pattern" "$log" | head -n3; grep '^chart-check: .* failure' "$log"; } | sed 's/^/    /'
    PASSED=$((PASSED + 1))
  fi
}

echo "== control: the untouched charts pass"
if "$REPO/scripts/chart-check.sh" >"$WORK/control.log" 2>&1; then
  echo "ok   control"
else
  cat "$WORK/control.log"
  echo "self-test: the untouched charts fail the check; fix that first"
  exit 1
fi

echo "== broken charts fail"
expect_failure wrong-type-value "got string, want integer" \
  rolegate/values.yaml "  port: 50051" '  port: "50051"'

expect_failure typo-key "'imagePullPolcy' was unexpected" \
  rolegate/templates/_container.tpl "  imagePullPolicy:" "  imagePullPolcy:"

# limits/requests slide out of `resources` and land on the container itself.
expect_failure misindented-resources "'limits', 'requests' were unexpected" \
  rolegate/templates/_container.tpl \
  $'  resources:\n    {{- toYaml . | nindent 4 }}' $'  resources:\n  {{- toYaml . | nindent 2 }}'

# PyYAML and the API server keep the last value; only yamllint sees the first.
expect_failure duplicate-key 'duplication of key "type"' \
  rolegate/templates/service.yaml "  type: {{ .Values.service.type }}" \
  $'  type: {{ .Values.service.type }}\n  type: NodePort'

expect_failure servicemonitor-bad-interval "interval must match pattern" \
  rolegate/templates/servicemonitor.yaml "interval: {{ .interval }}" "interval: every-{{ .interval }}"

expect_failure servicemonitor-unknown-field "unknown field \`pth\`" \
  rolegate/templates/servicemonitor.yaml "      path: /metrics" "      pth: /metrics"

# Only the example host chart renders the sidecar templates.
expect_failure sidecar-typo "'mountPath' is a required property" \
  rolegate/templates/_sidecar.tpl "  mountPath: {{ dir .Values.grpc.socketPath }}" \
  "  mountPth: {{ dir .Values.grpc.socketPath }}"

# The cert-manager Certificate is checked against its CRD like the ServiceMonitor.
expect_failure certificate-unknown-field "unknown field \`renewbefore\`" \
  rolegate/templates/certificate.yaml "  renewBefore: {{ .renewBefore }}" "  renewbefore: {{ .renewBefore }}"

expect_failure networkpolicy-typo "'policyType' was unexpected" \
  rolegate/templates/networkpolicy.yaml "  policyTypes: [Ingress]" "  policyType: [Ingress]"

# Kubernetes' gRPC probes speak plaintext: the chart refuses them in front of a TLS listener.
expect_failure grpc-probe-over-tls "cannot reach a TLS listener" \
  rolegate/ci/standalone-mtls-values.yaml $'tls:\n  enabled: true' $'probes:\n  type: grpc\ntls:\n  enabled: true'

expect_failure broken-notes "NOTES.txt" \
  rolegate/templates/NOTES.txt ".svc:{{ .Values.grpc.port }}" ".svc:{{ .Values.grpc.nope.port }}"

expect_failure undocumented-value "\`otel.samplerArg\` is a value but the README does not list it" \
  rolegate/README.md $'| `otel.samplerArg` |' $'| `otel.samplerArgument` |'

echo
echo "self-test: $PASSED passed, $FAILED failed"
[[ $FAILED -eq 0 ]]
