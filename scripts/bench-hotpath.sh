#!/usr/bin/env bash
# What one call costs the server, counted rather than timed, so the figures hold on a busy
# machine: allocations per call (a counting allocator in rolegate-hotpath) and, when valgrind is
# installed, instructions per Check (callgrind), for rolegate — decision log at its default and
# off, shadow evaluation of every call and of a tenth — and the empty server, on the benchmark
# tenant's Check and CheckBatch (10 items) workloads. BENCH_SERVERS='rolegate rolegate-shadow-100pct'
# measures only the servers so named.
#
#   scripts/bench-hotpath.sh           release build; a few minutes with callgrind on 2 cores
#   scripts/bench-hotpath.sh --quick   debug build, few calls, no callgrind: proves it works
#
# Instructions per call are the server threads' (every thread but the client's, which callgrind
# numbers 1) over CALLS calls minus the same over CALLS/5 calls, divided by the difference: start-up
# and loading the policies cancel out. Results: bench-out/hotpath/results.jsonl and a table.
set -euo pipefail
cd "$(dirname "$0")/.."

QUICK=0
case "${1:-}" in
  --quick) QUICK=1 ;;
  "") ;;
  *) echo "usage: scripts/bench-hotpath.sh [--quick]" >&2; exit 2 ;;
esac
die() { echo "bench-hotpath: $*" >&2; exit 1; }

MEMBERS="${BENCH_MEMBERS:-5000}"
if ((QUICK)); then
  PROFILE=debug CALLS=500 CG_CALLS=0
  cargo build --quiet --locked -p rolegate-bench --bins
else
  PROFILE=release CALLS="${BENCH_CALLS:-20000}" CG_CALLS="${BENCH_CALLGRIND_CALLS:-3000}"
  [[ -n ${BENCH_NO_BUILD:-} ]] || cargo build --quiet --locked --release -p rolegate-bench --bins
fi
BIN="${CARGO_TARGET_DIR:-target}/$PROFILE"
OUT="$PWD/bench-out/hotpath"
rm -rf "$OUT" && mkdir -p "$OUT"
RESULTS="$OUT/results.jsonl"

"$BIN/rolegate-loadgen" tenant --members "$MEMBERS" --out "$OUT/policies" 2>/dev/null
for w in check batch10; do
  "$BIN/rolegate-loadgen" body --all --workload "$w" --members "$MEMBERS" --out "$OUT/$w.frames"
done
path_of() { case "$1" in check) echo /rolegate.v1.Authorizer/Check ;; *) echo /rolegate.v1.Authorizer/CheckBatch ;; esac; }

# SERVER: name and flags of each server measured. The shadow rows compare every call (or a
# tenth) with a candidate that is a copy of the live policy, so every comparison matches and
# nothing is logged: the cost of queuing, deciding again and comparing.
SERVERS=("rolegate|--target rolegate" "rolegate-log-off|--target rolegate --decision-log off"
  "rolegate-shadow-100pct|--target rolegate --shadow-policies $OUT/policies"
  "rolegate-shadow-10pct|--target rolegate --shadow-policies $OUT/policies --shadow-sample 0.1"
  "baseline|--target baseline")
if [[ -n ${BENCH_SERVERS:-} ]]; then
  kept=()
  for s in "${SERVERS[@]}"; do
    for want in $BENCH_SERVERS; do [[ ${s%%|*} == "$want" ]] && kept+=("$s"); done
  done
  ((${#kept[@]})) || die "BENCH_SERVERS names none of: ${SERVERS[*]%%|*}"
  SERVERS=("${kept[@]}")
fi

hotpath() {
  local w="$1" name="$2" calls="$3"
  shift 3
  # shellcheck disable=SC2068
  "$BIN/rolegate-hotpath" --policies "$OUT/policies" --bodies "$OUT/$w.frames" --path "$(path_of "$w")" \
    --calls "$calls" --warmup 1000 --name "$name" "$@"
}

echo "bench-hotpath: allocations per call ($CALLS calls each)"
for w in check batch10; do
  for s in "${SERVERS[@]}"; do
    name="${s%%|*}" flags="${s#*|}"
    # shellcheck disable=SC2086
    hotpath "$w" "$name" "$CALLS" $flags 2>"$OUT/$name-$w.log" | sed "s/^{/{\"workload\":\"$w\",/" >>"$RESULTS" \
      || { cat "$OUT/$name-$w.log" >&2; die "$name $w failed"; }
    tail -n1 "$RESULTS" | sed 's/^/  /'
  done
done

# Sums the `summary:` (or `totals:`) line of every callgrind file of a run but the client's (thread 1).
server_instructions() {
  local prefix="$1" total=0 f n
  for f in "$prefix"-*; do
    [[ $f == *-01 ]] && continue
    n="$(sed -n 's/^summary: *\([0-9]*\).*/\1/p; s/^totals: *\([0-9]*\).*/\1/p' "$f" | head -n1)"
    total=$((total + ${n:-0}))
  done
  echo "$total"
}

if ((CG_CALLS > 0)) && command -v valgrind >/dev/null; then
  echo "bench-hotpath: instructions per call (callgrind, $CG_CALLS calls minus $((CG_CALLS / 5)))"
  for w in check; do
    for s in "${SERVERS[@]}"; do
      name="${s%%|*}" flags="${s#*|}"
      counts=()
      for calls in "$CG_CALLS" "$((CG_CALLS / 5))"; do
        prefix="$OUT/callgrind.$name.$w.$calls"
        # shellcheck disable=SC2086
        valgrind --tool=callgrind --separate-threads=yes --callgrind-out-file="$prefix.%p" \
          "$BIN/rolegate-hotpath" --policies "$OUT/policies" --bodies "$OUT/$w.frames" --path "$(path_of "$w")" \
          --calls "$calls" --warmup 1000 --name "$name" $flags >/dev/null 2>"$OUT/callgrind-$name-$w-$calls.log" \
          || { tail "$OUT/callgrind-$name-$w-$calls.log" >&2; die "callgrind $name $w failed"; }
        counts+=("$(server_instructions "$(ls "$prefix".*-01 | sed 's/-01$//')")")
      done
      per_call=$(((counts[0] - counts[1]) / (CG_CALLS - CG_CALLS / 5)))
      printf '{"kind":"instructions","workload":"%s","target":"%s","instructions_per_call":%d}\n' "$w" "$name" "$per_call" \
        | tee -a "$RESULTS" | sed 's/^/  /'
    done
  done
fi

echo
echo "| workload | server | allocations per call | bytes allocated per call | instructions per call (server threads) |"
echo "|---|---|---:|---:|---:|"
for w in check batch10; do
  for s in "${SERVERS[@]}"; do
    name="${s%%|*}"
    awk -v w="$w" -v t="$name" '
      function field(line, key,   m) { if (match(line, "\"" key "\":[0-9.]+")) { m = substr(line, RSTART, RLENGTH); sub(/.*:/, "", m); return m } return "" }
      index($0, "\"workload\":\"" w "\"") && index($0, "\"target\":\"" t "\"") {
        if (index($0, "\"kind\":\"hotpath\"")) { a = field($0, "allocs_per_call"); b = field($0, "alloc_bytes_per_call") }
        if (index($0, "\"kind\":\"instructions\"")) { i = field($0, "instructions_per_call") }
      }
      END { printf "| %s | %s | %.1f | %.0f | %s |\n", w, t, a, b, (i == "" ? "–" : i) }' "$RESULTS"
  done
done | tee "$OUT/table.md"
