#!/usr/bin/env bash
# Two builds side by side: each build's rolegate (decision log at its default) and its own empty
# server take short max `Check` runs in rotating order, round after round, all four servers on the
# server CPU and the load generator on the other, as in scripts/bench.sh's paired rounds. Prints
# each server's CPU per decision per round, then the medians and each build's ratio to its own
# empty server. For changes that touch every call (a build profile, the allocator, the guard)
# where one build's run a minute apart from the other's would measure the machine, not the code.
#
#   scripts/bench-ab.sh A_BIN_DIR B_BIN_DIR   two directories holding rolegate, rolegate-baseline
#                                             and rolegate-loadgen (copies of target/release)
#   scripts/bench-ab.sh --quick               target/debug against itself, one short round: proves
#                                             it works, judges nothing
#
# BENCH_AB_ROUNDS (8) rounds of BENCH_AB_DURATION (4) seconds after 0.5 s of warm-up, on the
# benchmark tenant (5,000 members, a pool of 4,096 requests). Judges nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
die() { echo "bench-ab: $*" >&2; exit 1; }

case "${1:-}" in
  --quick)
    cargo build --quiet --locked -p rolegate -p rolegate-bench --bins
    A=target/debug B=target/debug ROUNDS=1 DURATION=0.5 MEMBERS=500 POOL=512
    ;;
  "" | -*) die "usage: scripts/bench-ab.sh A_BIN_DIR B_BIN_DIR | --quick" ;;
  *)
    A="$1" B="${2:?usage: scripts/bench-ab.sh A_BIN_DIR B_BIN_DIR}"
    ROUNDS="${BENCH_AB_ROUNDS:-8}" DURATION="${BENCH_AB_DURATION:-4}" MEMBERS=5000 POOL=4096
    ;;
esac
# shellcheck source=scripts/bench/serve.sh
source scripts/bench/serve.sh
need_bins "$A" rolegate rolegate-baseline rolegate-loadgen
need_bins "$B" rolegate rolegate-baseline rolegate-loadgen
bench_cpus

OUT="$PWD/bench-out/ab"
rm -rf "$OUT" && mkdir -p "$OUT"
"$A/rolegate-loadgen" tenant --members "$MEMBERS" --out "$OUT/policies" 2>/dev/null

PIDS=()
trap 'kill "${PIDS[@]}" 2>/dev/null || true; wait 2>/dev/null || true' EXIT
NAMES=(rolegate-a baseline-a rolegate-b baseline-b)
declare -A ADDR PID
for name in "${NAMES[@]}"; do
  dir="$A"
  [[ $name == *-b ]] && dir="$B"
  if [[ $name == rolegate-* ]]; then
    taskset -c "$SERVER_CPUS" "$dir/rolegate" serve --policies "$OUT/policies" --listen 127.0.0.1:0 \
      >"$OUT/$name.decisions.jsonl" 2>"$OUT/$name.log" &
  else
    taskset -c "$SERVER_CPUS" "$dir/rolegate-baseline" --listen 127.0.0.1:0 >"$OUT/$name.log" 2>&1 &
  fi
  PID[$name]=$!
  PIDS+=("$!")
done
for name in "${NAMES[@]}"; do
  ADDR[$name]="$(listening "$OUT/$name.log" "${PID[$name]}")"
  [[ $name == rolegate-* ]] && serving "$OUT/$name.log" "${PID[$name]}"
done

RESULTS="$OUT/results.jsonl"
echo "bench-ab: A=$A B=$B, $ROUNDS rounds of $DURATION s (servers on CPU $SERVER_CPUS)"
for ((k = 0; k < ROUNDS; k++)); do
  for ((i = 0; i < ${#NAMES[@]}; i++)); do
    name="${NAMES[$(((i + k) % ${#NAMES[@]}))]}"
    target=rolegate
    [[ $name == baseline-* ]] && target=baseline
    taskset -c "$CLIENT_CPUS" "$A/rolegate-loadgen" run --addr "${ADDR[$name]}" --target "$target" --workload check \
      --members "$MEMBERS" --pool "$POOL" --duration "$DURATION" --warmup 0.5 --server-pid "${PID[$name]}" \
      --repeat "$k" --phase "$name" >>"$RESULTS" 2>"$OUT/last-run.txt" \
      || { cat "$OUT/last-run.txt" >&2; die "$name: the load generator failed"; }
  done
done

python3 - "$RESULTS" "${NAMES[@]}" <<'EOF'
import json, statistics, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
names = sys.argv[2:]
cpu = {n: {} for n in names}
for r in rows:
    v = r.get("server_cpu_us_per_decision")
    if v is None:
        sys.exit(f"bench-ab: a run of {r['phase']} has no server CPU time")
    cpu[r["phase"]][r["repeat"]] = v
rounds = sorted(cpu[names[0]])
print("| round | " + " | ".join(f"{n} µs" for n in names) + " | A × its limit | B × its limit | B ÷ A CPU |")
print("|---" * (len(names) + 4) + "|")
ra, rb, ba = [], [], []
for k in rounds:
    a, la, b, lb = (cpu[n][k] for n in names)
    ra.append(la / a); rb.append(lb / b); ba.append(b / a)
    print(f"| {k + 1} | {a:.3f} | {la:.3f} | {b:.3f} | {lb:.3f} | {la / a:.3f} | {lb / b:.3f} | {b / a:.3f} |")
med = statistics.median
print(f"| median | {med(cpu[names[0]].values()):.3f} | {med(cpu[names[1]].values()):.3f} | "
      f"{med(cpu[names[2]].values()):.3f} | {med(cpu[names[3]].values()):.3f} | {med(ra):.3f} | {med(rb):.3f} | {med(ba):.3f} |")
EOF
