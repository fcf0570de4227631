#!/usr/bin/env bash
# Two builds side by side under reloads: each build's rolegate serves `Check` at a fixed rate while
# its policy directory is left alone, then while the benchmark tenant's document is rewritten every
# 100 ms (as scripts/bench.sh's reload step does), build after build, pair after pair, the server
# on the server CPU and the load generator on the other. Prints each pair's p99s and their ratio,
# then each build's median ratio. For changes to the reload path, whose effect on the tail is
# smaller than the spread between two full benchmark runs.
#
#   scripts/bench-reload-ab.sh A_BIN_DIR B_BIN_DIR   two directories holding rolegate and
#                                                    rolegate-loadgen (copies of target/release)
#   scripts/bench-reload-ab.sh --quick               target/debug against itself, one short pair:
#                                                    proves it works, judges nothing
#
# BENCH_RELOAD_PAIRS (6) pairs per build of BENCH_RELOAD_DURATION (6) seconds after 1 s of warm-up,
# at BENCH_RELOAD_RATE (1000) calls/s on 2 connections, on the benchmark tenant (5,000 members).
# Judges nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
die() { echo "bench-reload-ab: $*" >&2; exit 1; }

case "${1:-}" in
  --quick)
    cargo build --quiet --locked -p rolegate -p rolegate-bench --bins
    A=target/debug B=target/debug PAIRS=1 DURATION=1 WARMUP=0.5 MEMBERS=500 POOL=512 RATE=200
    ;;
  "" | -*) die "usage: scripts/bench-reload-ab.sh A_BIN_DIR B_BIN_DIR | --quick" ;;
  *)
    A="$1" B="${2:?usage: scripts/bench-reload-ab.sh A_BIN_DIR B_BIN_DIR}"
    PAIRS="${BENCH_RELOAD_PAIRS:-6}" DURATION="${BENCH_RELOAD_DURATION:-6}" WARMUP=1 MEMBERS=5000 POOL=4096
    RATE="${BENCH_RELOAD_RATE:-1000}"
    ;;
esac
# shellcheck source=scripts/bench/serve.sh
source scripts/bench/serve.sh
need_bins "$A" rolegate rolegate-loadgen
need_bins "$B" rolegate rolegate-loadgen
bench_cpus

OUT="$PWD/bench-out/reload-ab"
rm -rf "$OUT" && mkdir -p "$OUT"
DOC=meiqia-service-desk.yaml
"$A/rolegate-loadgen" tenant --members "$MEMBERS" --out "$OUT/variant-0" 2>/dev/null
"$A/rolegate-loadgen" tenant --members "$MEMBERS" --out "$OUT/variant-1" --variant 1 2>/dev/null

PIDS=()
trap 'kill "${PIDS[@]}" 2>/dev/null || true; wait 2>/dev/null || true' EXIT
declare -A ADDR PID
for name in a b; do
  dir="$A"
  [[ $name == b ]] && dir="$B"
  cp -r "$OUT/variant-0" "$OUT/policies-$name"
  taskset -c "$SERVER_CPUS" "$dir/rolegate" serve --policies "$OUT/policies-$name" --listen 127.0.0.1:0 \
    --reload-debounce 20ms --decision-log off >"$OUT/$name.log" 2>&1 &
  PID[$name]=$!
  PIDS+=("$!")
  ADDR[$name]="$(listening "$OUT/$name.log" "${PID[$name]}")"
  serving "$OUT/$name.log" "${PID[$name]}"
done

RESULTS="$OUT/results.jsonl"
load() {
  local name="$1" pair="$2" phase="$3"
  taskset -c "$CLIENT_CPUS" "$A/rolegate-loadgen" run --addr "${ADDR[$name]}" --target "rolegate-$name" \
    --workload check --members "$MEMBERS" --pool "$POOL" --duration "$DURATION" --warmup "$WARMUP" --rate "$RATE" \
    --connections 2 --server-pid "${PID[$name]}" --repeat "$pair" --phase "$phase" >>"$RESULTS" 2>"$OUT/last-run.txt" \
    || { cat "$OUT/last-run.txt" >&2; die "rolegate-$name: the load generator failed"; }
}
SECONDS_REWRITING="$(awk -v d="$DURATION" -v w="$WARMUP" 'BEGIN { printf "%.1f", d + w + 1 }')"
echo "bench-reload-ab: A=$A B=$B, $PAIRS pairs of $DURATION s at $RATE calls/s (server on CPU $SERVER_CPUS)"
for ((k = 0; k < PAIRS; k++)); do
  for name in a b; do
    load "$name" "$k" steady
    "$A/rolegate-loadgen" rewrite --file "$OUT/policies-$name/$DOC" --from "$OUT/variant-0/$DOC" \
      --from "$OUT/variant-1/$DOC" --every-ms 100 --seconds "$SECONDS_REWRITING" 2>>"$OUT/rewrite.log" &
    rewriter=$!
    load "$name" "$k" reload
    wait "$rewriter"
  done
done

python3 - "$RESULTS" <<'EOF'
import json, statistics, sys
p99 = {}
for line in open(sys.argv[1]):
    r = json.loads(line)
    if r["errors"]:
        sys.exit(f"bench-reload-ab: {r['target']} {r['phase']} had {r['errors']} errors: {r['first_error']}")
    p99[(r["target"][-1], r["repeat"], r["phase"])] = r["latency_us"]["p99"]
pairs = sorted({k for _, k, _ in p99})
print("| pair | A steady p99 µs | A reloading | A ratio | B steady p99 µs | B reloading | B ratio |")
print("|---" * 7 + "|")
ratios = {"a": [], "b": []}
for k in pairs:
    cells = []
    for n in "ab":
        s, r = p99[(n, k, "steady")], p99[(n, k, "reload")]
        ratios[n].append(r / s)
        cells += [f"{s:.0f}", f"{r:.0f}", f"{r / s:.2f}"]
    print(f"| {k + 1} | " + " | ".join(cells) + " |")
med = statistics.median
print(f"| median | | | {med(ratios['a']):.2f} | | | {med(ratios['b']):.2f} |")
EOF
