#!/usr/bin/env bash
# Telemetry overhead: rolegate's max Check throughput with tracing off, at 1% and 100% sampling
# (spans exported to a local OTLP sink), with the decision log on, and with shadow evaluation
# of 10% and 100% of calls, interleaved and repeated in
# one run. Prints one table with each setting's throughput relative to "all off".
#
#   scripts/bench-telemetry.sh            release build, BENCH_REPEATS (3) x BENCH_DURATION (8 s)
#
# rolegate runs pinned to the last core, the load generator and the OTLP sink to core 0.
set -euo pipefail
cd "$(dirname "$0")/.."

REPEATS="${BENCH_REPEATS:-3}" DURATION="${BENCH_DURATION:-8}" WARMUP="${BENCH_WARMUP:-2}" MEMBERS="${BENCH_MEMBERS:-5000}"
NPROC="$(nproc)"
SERVER_CPUS="${BENCH_SERVER_CPUS:-$((NPROC > 1 ? NPROC - 1 : 0))}"
CLIENT_CPUS="${BENCH_CLIENT_CPUS:-0}"
OUT="$PWD/bench-out/telemetry"
rm -rf "$OUT" && mkdir -p "$OUT"
die() { echo "bench-telemetry: $*" >&2; exit 1; }
# shellcheck source=scripts/bench/serve.sh
source scripts/bench/serve.sh

echo "bench-telemetry: building (release)"
cargo build --quiet --locked --release --workspace --bins --examples
BIN="${CARGO_TARGET_DIR:-target}/release"
"$BIN/rolegate-loadgen" tenant --members "$MEMBERS" --out "$OUT/policies"

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

taskset -c "$CLIENT_CPUS" "$BIN/examples/otlp_sink" 127.0.0.1:43170 >"$OUT/sink.log" 2>&1 &
pids+=($!)

# setting NAME: the environment and flags of each configuration.
setting() {
  case "$1" in
    off) echo "" ;;
    trace-1pct) echo "OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:43170 OTEL_TRACES_SAMPLER=traceidratio OTEL_TRACES_SAMPLER_ARG=0.01" ;;
    trace-100pct) echo "OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:43170 OTEL_TRACES_SAMPLER=always_on" ;;
    log-denies) echo "ROLEGATE_DECISION_LOG=$OUT/decisions.jsonl" ;;
    log-all) echo "ROLEGATE_DECISION_LOG=$OUT/decisions-all.jsonl ROLEGATE_DECISION_LOG_ALLOW_RATE=1" ;;
    # Shadow evaluation against a copy of the live policy: every compared call also runs the
    # candidate decision and the comparison (and matches, so nothing is logged).
    shadow-10pct) echo "ROLEGATE_SHADOW_POLICIES=$OUT/policies ROLEGATE_SHADOW_SAMPLE=0.1" ;;
    shadow-100pct) echo "ROLEGATE_SHADOW_POLICIES=$OUT/policies ROLEGATE_SHADOW_SAMPLE=1" ;;
  esac
}

run_one() {
  local name="$1" repeat="$2" log="$OUT/$1-$2.log"
  # shellcheck disable=SC2046
  env ROLEGATE_DECISION_LOG=off $(setting "$name") taskset -c "$SERVER_CPUS" "$BIN/rolegate" serve \
    --policies "$OUT/policies" --listen 127.0.0.1:0 >"$log" 2>&1 &
  local pid=$! addr
  addr="$(listening "$log" "$pid")" && serving "$log" "$pid" || die "rolegate did not start for $name"
  taskset -c "$CLIENT_CPUS" "$BIN/rolegate-loadgen" run --addr "$addr" --target "$name" --workload check \
    --members "$MEMBERS" --repeat "$repeat" --duration "$DURATION" --warmup "$WARMUP" >>"$OUT/results.jsonl" 2>/dev/null \
    || die "load generator failed for $name"
  kill "$pid"; wait "$pid" 2>/dev/null || true
}

SETTINGS=(off trace-1pct trace-100pct log-denies log-all shadow-10pct shadow-100pct)
for r in $(seq 1 "$REPEATS"); do
  for s in "${SETTINGS[@]}"; do
    echo "bench-telemetry: repeat $r: $s"
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
print(f"| setting | Check calls/s (median of {len(rows)//len(settings)}) | vs off | p99 µs at max load |")
print("|---|---|---|---|")
for s in settings:
    print(f"| {s} | {med[s]:.0f} | {med[s]/med['off']*100:.1f}% | {p99[s]:.0f} |")
print(f"errors: {errs}")
PY
tail -n1 "$OUT/sink.log" | sed 's/^/bench-telemetry: otlp sink: /'
