#!/usr/bin/env bash
# AuthZEN over HTTP/JSON beside gRPC Check, on the same server, workload and client (h2load):
# what JSON costs against protobuf. BENCHMARKS.md ("AuthZEN") records a run.
#
#   scripts/bench-authzen.sh           release build, 10 s per run, 3 runs of each, interleaved
#   scripts/bench-authzen.sh --quick   debug build, 1 s: proves the harness works, judges nothing
#
# One rolegate (decision log off, as in scripts/bench.sh) pinned to BENCH_SERVER_CPUS serves gRPC
# and AuthZEN; h2load, pinned to BENCH_CLIENT_CPUS, sends the benchmark tenant's first Check call
# as gRPC, as AuthZEN over h2c and as AuthZEN over HTTP/1.1. p50/p99 come from h2load's
# per-request log. Results: bench-out/authzen/results.txt.
set -euo pipefail
cd "$(dirname "$0")/.."

QUICK=0
[[ ${1:-} == --quick ]] && QUICK=1
die() { echo "bench-authzen: $*" >&2; exit 1; }
# shellcheck source=scripts/bench/serve.sh
source scripts/bench/serve.sh

NPROC="$(nproc)"
SERVER_CPUS="${BENCH_SERVER_CPUS:-$((NPROC > 1 ? NPROC - 1 : 0))}"
CLIENT_CPUS="${BENCH_CLIENT_CPUS:-0}"
if ((QUICK)); then PROFILE=debug REPEATS=1 DURATION=1 MEMBERS=500; else
  PROFILE=release REPEATS="${BENCH_REPEATS:-3}" DURATION="${BENCH_DURATION:-10}" MEMBERS="${BENCH_MEMBERS:-5000}"
fi

if ! command -v h2load >/dev/null; then
  [[ $EUID -eq 0 ]] && command -v apt-get >/dev/null || die "h2load is needed: install Debian's nghttp2-client"
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nghttp2-client; } >/dev/null \
    || die "could not install nghttp2-client"
fi
# BENCH_NO_BUILD=1 uses the binaries already built (rolegate and rolegate-loadgen).
if [[ -z ${BENCH_NO_BUILD:-} ]]; then
  if [[ $PROFILE == release ]]; then cargo build --quiet --locked --release -p rolegate --bin rolegate -p rolegate-bench --bin rolegate-loadgen
  else cargo build --quiet --locked -p rolegate --bin rolegate -p rolegate-bench --bin rolegate-loadgen; fi
fi
BIN="${CARGO_TARGET_DIR:-target}/$PROFILE"

OUT="$PWD/bench-out/authzen"
rm -rf "$OUT" && mkdir -p "$OUT"
"$BIN/rolegate-loadgen" tenant --members "$MEMBERS" --out "$OUT/policies" 2>/dev/null
TENANT="$("$BIN/rolegate-loadgen" body --workload check --members "$MEMBERS" --out "$OUT/check.bin" \
  --authzen-out "$OUT/check.json")"

taskset -c "$SERVER_CPUS" "$BIN/rolegate" serve --policies "$OUT/policies" --listen 127.0.0.1:0 \
  --authzen-listen 127.0.0.1:0 --decision-log off >"$OUT/rolegate.log" 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null || true; wait 2>/dev/null || true' EXIT
serving "$OUT/rolegate.log" "$PID" || die "rolegate did not load its policies"
GRPC="$(listening "$OUT/rolegate.log" "$PID")" || die "no gRPC listener"
HTTP="$(authzen_listening "$OUT/rolegate.log" "$PID")" || die "no AuthZEN listener"

# The same question both ways must get the same answer before anything is timed.
want="$(curl -s -X POST "http://$HTTP/tenants/$TENANT/access/v1/evaluation" -H 'content-type: application/json' \
  --data-binary @"$OUT/check.json")"
echo "bench-authzen: $TENANT over AuthZEN: $want"
[[ $want == *'"decision":'* ]] || die "AuthZEN did not answer: $want"

run() {
  local name="$1" r="$2"; shift 2
  local log="$OUT/$name-$r.log"
  taskset -c "$CLIENT_CPUS" h2load -D "${DURATION}s" -c 4 -m 16 --log-file "$log" "$@" >"$OUT/$name-$r.txt" 2>&1 \
    || { cat "$OUT/$name-$r.txt" >&2; die "h2load failed: $name"; }
  local rps failed
  rps="$(awk '/^finished in/ { print $4 + 0 }' "$OUT/$name-$r.txt")"
  failed="$(awk '/^requests:/ { print $10 + 0 }' "$OUT/$name-$r.txt")"
  ((failed == 0)) || die "$name: $failed requests failed"
  # The log: start time, status, duration in µs per request.
  local bad
  bad="$(awk '$2 != 200' "$log" | wc -l)"
  ((bad == 0)) || die "$name: $bad answers were not 200"
  awk '{ print $3 }' "$log" | sort -n >"$log.sorted"
  awk -v n="$name" -v rps="$rps" '{ d[NR] = $1 } END {
      printf "%-16s %10.0f req/s   p50 %7.0f us   p99 %7.0f us\n", n, rps, d[int(NR * 0.5)], d[int(NR * 0.99)] }' \
    "$log.sorted" | tee -a "$OUT/results.txt"
}
GRPC_ARGS=(-H 'content-type: application/grpc' -H 'te: trailers' -d "$OUT/check.bin" "http://$GRPC/rolegate.v1.Authorizer/Check")
JSON_ARGS=(-H 'content-type: application/json' -d "$OUT/check.json" "http://$HTTP/tenants/$TENANT/access/v1/evaluation")
for ((r = 0; r < REPEATS; r++)); do
  run grpc-check "$r" "${GRPC_ARGS[@]}"
  run authzen-h2c "$r" "${JSON_ARGS[@]}"
  run authzen-http1 "$r" --h1 "${JSON_ARGS[@]}"
done
awk '{ rps[$1] += $2; n[$1]++ } END { g = rps["grpc-check"] / n["grpc-check"];
  for (k in rps) printf "mean %-16s %10.0f req/s  = %.2f x gRPC Check\n", k, rps[k] / n[k], rps[k] / n[k] / g }' \
  "$OUT/results.txt" | sort | tee -a "$OUT/results.txt"
((QUICK)) && echo "bench-authzen: quick run complete (timings of a debug build mean nothing)"
exit 0
