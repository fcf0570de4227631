#!/usr/bin/env bash
# The callers check's cost: rolegate's max Check throughput over a Unix socket without a callers
# file, and with one of 100 entries where the caller's (matched by uid) is the last and names the
# benchmark tenant among other patterns — so every call pays the body read, the tenant decode and
# the full scan. Interleaved and repeated in one run; prints one table relative to "no callers".
#
#   scripts/bench-callers.sh            release build, BENCH_REPEATS (3) x BENCH_DURATION (8 s)
#
# rolegate runs pinned to the last core, the load generator to core 0.
set -euo pipefail
cd "$(dirname "$0")/.."

REPEATS="${BENCH_REPEATS:-3}" DURATION="${BENCH_DURATION:-8}" WARMUP="${BENCH_WARMUP:-2}" MEMBERS="${BENCH_MEMBERS:-5000}"
NPROC="$(nproc)"
SERVER_CPUS="${BENCH_SERVER_CPUS:-$((NPROC > 1 ? NPROC - 1 : 0))}"
CLIENT_CPUS="${BENCH_CLIENT_CPUS:-0}"
OUT="$PWD/bench-out/callers"
rm -rf "$OUT" && mkdir -p "$OUT"
die() { echo "bench-callers: $*" >&2; exit 1; }
# shellcheck source=scripts/bench/serve.sh
source scripts/bench/serve.sh

echo "bench-callers: building (release)"
cargo build --quiet --locked --release -p rolegate -p rolegate-bench --bins
BIN="${CARGO_TARGET_DIR:-target}/release"
"$BIN/rolegate-loadgen" tenant --members "$MEMBERS" --out "$OUT/policies"
TENANT="$(sed -n 's/^tenant: *//p' "$OUT/policies"/*.yaml | head -n1)"
[[ -n $TENANT ]] || die "no benchmark tenant written"

{
  echo "callers:"
  for i in $(seq 1 99); do
    echo "  - {id: \"spiffe://cluster.local/ns/team-$i/sa/api\", tenants: [\"team-$i-*\"], apis: [check]}"
  done
  echo "  - {id: \"uid:$(id -u)\", tenants: [acme-*, globex, \"*-eu\", \"$TENANT\"], apis: [check, plan]}"
} >"$OUT/callers.yaml"

run_one() {
  local name="$1" repeat="$2" log="$OUT/$1-$2.log" sock="$OUT/rolegate.sock" extra=()
  [[ $name == callers ]] && extra=(--callers "$OUT/callers.yaml")
  ROLEGATE_DECISION_LOG=off taskset -c "$SERVER_CPUS" "$BIN/rolegate" serve --policies "$OUT/policies" \
    --listen "unix:$sock" "${extra[@]}" >"$log" 2>&1 &
  local pid=$!
  serving "$log" "$pid" || die "rolegate did not start for $name"
  taskset -c "$CLIENT_CPUS" "$BIN/rolegate-loadgen" run --addr "unix:$sock" --target "$name" --workload check \
    --members "$MEMBERS" --repeat "$repeat" --duration "$DURATION" --warmup "$WARMUP" >>"$OUT/results.jsonl" 2>/dev/null \
    || die "load generator failed for $name"
  kill "$pid"; wait "$pid" 2>/dev/null || true
}

SETTINGS=(none callers)
for r in $(seq 1 "$REPEATS"); do
  for s in "${SETTINGS[@]}"; do
    echo "bench-callers: repeat $r: $s"
    run_one "$s" "$r"
  done
done

python3 - "$OUT/results.jsonl" "${SETTINGS[@]}" <<'PY'
import json, sys, statistics
rows = [json.loads(l) for l in open(sys.argv[1])]
settings = sys.argv[2:]
med = {s: statistics.median([r["calls_per_s"] for r in rows if r["target"] == s]) for s in settings}
p99 = {s: statistics.median([r["latency_us"]["p99"] for r in rows if r["target"] == s]) for s in settings}
errs = sum(r["errors"] for r in rows)
print(f"| setting | Check calls/s (median of {len(rows)//len(settings)}) | vs none | p99 µs at max load |")
print("|---|---|---|---|")
for s in settings:
    print(f"| {s} | {med[s]:.0f} | {med[s]/med['none']*100:.1f}% | {p99[s]:.0f} |")
print(f"errors: {errs}")
PY
