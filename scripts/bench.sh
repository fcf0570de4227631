#!/usr/bin/env bash
# Server benchmark: rolegate vs the empty gRPC server (the limit) vs Cerbos, on this machine, in
# one run, over TCP and the Unix socket, printed as one table with every figure beside its ratios
# to the limit and to Cerbos (BENCHMARKS.md explains every number).
#
#   scripts/bench.sh           full run, release build, ~15 minutes on 2 cores
#   scripts/bench.sh --quick   seconds per step, debug build: proves the harness works end to end;
#                              fails on any failed call or disagreement, never on timings
#
# The servers run pinned to BENCH_SERVER_CPUS (default: the last core), the load generators
# (rolegate-loadgen, h2load) to BENCH_CLIENT_CPUS (default: core 0). Results: bench-out/run/.
# Knobs (environment): BENCH_REPEATS, BENCH_DURATION, BENCH_WARMUP (seconds), BENCH_MEMBERS,
# BENCH_RATE_CHECK, BENCH_RATE_BATCH10, BENCH_RATE_BATCH100 (calls/s of the latency runs),
# BENCH_CAP_ROUNDS, BENCH_CAP_DURATION (the paired Check capacity rounds, below).
set -euo pipefail
cd "$(dirname "$0")/.."

QUICK=0
case "${1:-}" in
  --quick) QUICK=1 ;;
  "") ;;
  *) echo "usage: scripts/bench.sh [--quick]" >&2; exit 2 ;;
esac

die() { echo "bench: $*" >&2; exit 1; }

NPROC="$(nproc)"
SERVER_CPUS="${BENCH_SERVER_CPUS:-$((NPROC > 1 ? NPROC - 1 : 0))}"
CLIENT_CPUS="${BENCH_CLIENT_CPUS:-0}"
if ((QUICK)); then
  PROFILE=debug REPEATS=1 DURATION=1 WARMUP=0.5 MEMBERS=500 POOL=512 CAP_ROUNDS=2 CAP_DURATION=0.5
else
  PROFILE=release REPEATS="${BENCH_REPEATS:-3}" DURATION="${BENCH_DURATION:-10}" WARMUP="${BENCH_WARMUP:-2}"
  MEMBERS="${BENCH_MEMBERS:-5000}" POOL=4096 CAP_ROUNDS="${BENCH_CAP_ROUNDS:-10}" CAP_DURATION="${BENCH_CAP_DURATION:-4}"
fi
RATE_CHECK="${BENCH_RATE_CHECK:-1000}" RATE_BATCH10="${BENCH_RATE_BATCH10:-200}" RATE_BATCH100="${BENCH_RATE_BATCH100:-25}"
DESK_ARGS=(--members "$MEMBERS" --pool "$POOL")

OUT="$PWD/bench-out"
RUN="$OUT/run"
RESULTS="$RUN/results.jsonl"

# --- tools --------------------------------------------------------------------------------------
command -v taskset >/dev/null || die "taskset (util-linux) is needed"
if ! command -v h2load >/dev/null; then
  [[ $EUID -eq 0 ]] && command -v apt-get >/dev/null || die "h2load is needed: install Debian's nghttp2-client"
  echo "bench: installing h2load (nghttp2-client)"
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nghttp2-client; } >/dev/null \
    || die "could not install nghttp2-client"
fi

echo "bench: building ($PROFILE)"
if [[ $PROFILE == release ]]; then
  cargo build --quiet --locked --release --workspace --bins
else
  cargo build --quiet --locked --workspace --bins
fi
BIN="${CARGO_TARGET_DIR:-target}/$PROFILE"
LOADGEN="$BIN/rolegate-loadgen"

rm -rf "$RUN" && mkdir -p "$RUN"
# shellcheck source=scripts/bench/cerbos.sh
source scripts/bench/cerbos.sh
cerbos_install

# --- servers ------------------------------------------------------------------------------------
PIDS=()
stop_all() {
  local pid
  for pid in "${PIDS[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  wait 2>/dev/null || true
}
trap stop_all EXIT

# shellcheck source=scripts/bench/serve.sh
source scripts/bench/serve.sh

POLICIES="$RUN/policies"
"$LOADGEN" tenant "${DESK_ARGS[@]:0:2}" --out "$POLICIES" 2>/dev/null
"$LOADGEN" tenant "${DESK_ARGS[@]:0:2}" --out "$RUN/variant-1" --variant 1 2>/dev/null
cp "$POLICIES/meiqia-service-desk.yaml" "$RUN/variant-0.yaml"
cp "$RUN/variant-1/meiqia-service-desk.yaml" "$RUN/variant-1.yaml"

# rolegate with its decision log off, as Cerbos runs with its audit log off; a 20 ms debounce makes
# every rewrite of the reload phase (every 100 ms) a reload. A second rolegate keeps the default
# decision log (every deny as a JSON line on stdout, here a file) to show what the log costs.
# It also listens on a Unix socket, a sidecar's usual path (rows `rolegate-unix`), beside an empty
# server on its own Unix socket (`baseline-unix`).
ROLEGATE_SOCK="$RUN/rolegate.sock" BASELINE_SOCK="$RUN/baseline.sock"
taskset -c "$SERVER_CPUS" "$BIN/rolegate" serve --policies "$POLICIES" --listen 127.0.0.1:0 --listen "unix:$ROLEGATE_SOCK" \
  --reload-debounce 20ms --decision-log off >"$RUN/rolegate.log" 2>&1 &
ROLEGATE_PID=$!
PIDS+=("$ROLEGATE_PID")
# The twin reads its own copy of the policies: the reload step rewrites the measured server's
# directory, and a second server reloading it on the same core would be a load no sidecar has.
cp -r "$POLICIES" "$RUN/policies-decision-log"
taskset -c "$SERVER_CPUS" "$BIN/rolegate" serve --policies "$RUN/policies-decision-log" --listen 127.0.0.1:0 \
  >"$RUN/decision-log.jsonl" 2>"$RUN/rolegate-decision-log.log" &
ROLEGATE_LOG_PID=$!
PIDS+=("$ROLEGATE_LOG_PID")
taskset -c "$SERVER_CPUS" "$BIN/rolegate-baseline" --listen 127.0.0.1:0 >"$RUN/baseline.log" 2>&1 &
BASELINE_PID=$!
PIDS+=("$BASELINE_PID")
taskset -c "$SERVER_CPUS" "$BIN/rolegate-baseline" --listen "unix:$BASELINE_SOCK" >"$RUN/baseline-unix.log" 2>&1 &
BASELINE_UNIX_PID=$!
PIDS+=("$BASELINE_UNIX_PID")
ROLEGATE_ADDR="$(listening "$RUN/rolegate.log" "$ROLEGATE_PID")"
ROLEGATE_LOG_ADDR="$(listening "$RUN/rolegate-decision-log.log" "$ROLEGATE_LOG_PID")"
BASELINE_ADDR="$(listening "$RUN/baseline.log" "$BASELINE_PID")"
serving "$RUN/rolegate.log" "$ROLEGATE_PID"
serving "$RUN/rolegate-decision-log.log" "$ROLEGATE_LOG_PID"
for sock in "$ROLEGATE_SOCK" "$BASELINE_SOCK"; do
  for _ in $(seq 200); do [[ -S $sock ]] && break; sleep 0.05; done
  [[ -S $sock ]] || die "no Unix socket at $sock"
done
cerbos_start
PIDS+=("$CERBOS_PID")
echo "bench: rolegate $ROLEGATE_ADDR, baseline $BASELINE_ADDR, cerbos $CERBOS_ADDR (servers on CPU $SERVER_CPUS)"

# --- same decisions first -----------------------------------------------------------------------
cerbos_verify "$ROLEGATE_ADDR"
cerbos_encode

cpu_model="$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1)"
printf '{"kind":"machine","nproc":%s,"cpu":"%s","server_cpus":"%s","client_cpus":"%s","repeats":"%s","commit":"%s","quick":%s}\n' \
  "$NPROC" "${cpu_model:-unknown}" "$SERVER_CPUS" "$CLIENT_CPUS" "$REPEATS" \
  "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" "$QUICK" >"$RESULTS"

# --- load ---------------------------------------------------------------------------------------
addr_of() {
  case "$1" in
    rolegate) echo "$ROLEGATE_ADDR" ;;
    rolegate-decision-log) echo "$ROLEGATE_LOG_ADDR" ;;
    rolegate-unix) echo "unix:$ROLEGATE_SOCK" ;;
    baseline) echo "$BASELINE_ADDR" ;;
    baseline-unix) echo "unix:$BASELINE_SOCK" ;;
    cerbos) echo "$CERBOS_ADDR" ;;
  esac
}
# The server process behind a target: the load generator reports its CPU time per decision.
pid_of() {
  case "$1" in
    rolegate | rolegate-unix) echo "$ROLEGATE_PID" ;;
    rolegate-decision-log) echo "$ROLEGATE_LOG_PID" ;;
    baseline) echo "$BASELINE_PID" ;;
    baseline-unix) echo "$BASELINE_UNIX_PID" ;;
    cerbos) echo "$CERBOS_PID" ;;
  esac
}
rate_of() { case "$1" in check) echo "$RATE_CHECK" ;; batch10) echo "$RATE_BATCH10" ;; batch100) echo "$RATE_BATCH100" ;; esac; }

# load TARGET WORKLOAD REPEAT PHASE [run flags...]: one run, its JSON line appended to the results.
load() {
  local target="$1" workload="$2" repeat="$3" phase="$4"
  shift 4
  local extra=()
  [[ $target == cerbos ]] && extra=(--cerbos-bodies "$RUN/cerbos/$workload.frames")
  taskset -c "$CLIENT_CPUS" "$LOADGEN" run --addr "$(addr_of "$target")" --target "$target" --workload "$workload" \
    "${DESK_ARGS[@]}" --repeat "$repeat" --phase "$phase" --server-pid "$(pid_of "$target")" "${extra[@]}" "$@" \
    >>"$RESULTS" 2>"$RUN/last-run.txt" \
    || { cat "$RUN/last-run.txt" >&2; die "$target $workload: the load generator failed"; }
  sed 's/^/  /' "$RUN/last-run.txt"
}

echo "bench: warm-up"
for target in rolegate baseline cerbos; do
  for workload in check batch10 batch100; do
    load "$target" "$workload" 0 warmup --duration "$WARMUP" --warmup 0 >/dev/null
  done
done
for target in rolegate-decision-log rolegate-unix baseline-unix; do
  load "$target" check 0 warmup --duration "$WARMUP" --warmup 0 >/dev/null
done
sed -i '/"phase":"warmup"/d' "$RESULTS"

for ((r = 0; r < REPEATS; r++)); do
  echo "bench: repetition $((r + 1))/$REPEATS"
  for workload in check batch10 batch100; do
    TARGETS=(rolegate baseline cerbos)
    [[ $workload == check ]] && TARGETS+=(rolegate-decision-log rolegate-unix baseline-unix)
    # Rotate the order each repetition so no server always runs first (or right after Cerbos).
    for ((i = 0; i < ${#TARGETS[@]}; i++)); do
      target="${TARGETS[$(((i + r) % ${#TARGETS[@]}))]}"
      load "$target" "$workload" "$r" steady --duration "$DURATION" --warmup "$WARMUP"
      load "$target" "$workload" "$r" steady --duration "$DURATION" --warmup "$WARMUP" --rate "$(rate_of "$workload")" \
        --connections 2
    done
  done
done

# --- Check capacity, in paired rounds -------------------------------------------------------------
# The capacity targets weigh rolegate against the empty server on a shared machine whose speed
# drifts by ±10% from one second to the next. Besides the repetitions above (where two servers'
# max runs can be a minute apart), short max runs of rolegate, its decision-log twin and the empty
# server follow each other CAP_ROUNDS times, in rotating order: each round is one close pair per
# comparison, and the targets take the median of the rounds' ratios.
echo "bench: Check capacity, $CAP_ROUNDS paired rounds of $CAP_DURATION s"
CAP_TARGETS=(rolegate baseline rolegate-decision-log)
for ((k = 0; k < CAP_ROUNDS; k++)); do
  for ((i = 0; i < ${#CAP_TARGETS[@]}; i++)); do
    load "${CAP_TARGETS[$(((i + k) % ${#CAP_TARGETS[@]}))]}" check "$k" capacity --duration "$CAP_DURATION" --warmup 0.5
  done
done

# --- CheckBatch on all cores ----------------------------------------------------------------------
# The batch target is stated for the whole machine: a second rolegate and empty server, unpinned,
# with the load generator sharing the same cores.
echo "bench: CheckBatch on all $NPROC cores"
ALL_CPUS="0-$((NPROC - 1))"
taskset -c "$ALL_CPUS" "$BIN/rolegate" serve --policies "$POLICIES" --listen 127.0.0.1:0 --decision-log off \
  >"$RUN/rolegate-all.log" 2>&1 &
ROLEGATE_ALL_PID=$!
PIDS+=("$ROLEGATE_ALL_PID")
taskset -c "$ALL_CPUS" "$BIN/rolegate-baseline" --listen 127.0.0.1:0 >"$RUN/baseline-all.log" 2>&1 &
BASELINE_ALL_PID=$!
PIDS+=("$BASELINE_ALL_PID")
ALL_PID_rolegate=$ROLEGATE_ALL_PID ALL_PID_baseline=$BASELINE_ALL_PID
ALL_ADDR_rolegate="$(listening "$RUN/rolegate-all.log" "$ROLEGATE_ALL_PID")"
ALL_ADDR_baseline="$(listening "$RUN/baseline-all.log" "$BASELINE_ALL_PID")"
serving "$RUN/rolegate-all.log" "$ROLEGATE_ALL_PID"
for ((r = 0; r < REPEATS; r++)); do
  for workload in batch10 batch100; do
    for target in rolegate baseline; do
      addr="ALL_ADDR_$target"
      pid="ALL_PID_$target"
      taskset -c "$ALL_CPUS" "$LOADGEN" run --addr "${!addr}" --target "$target" --workload "$workload" "${DESK_ARGS[@]}" \
        --server-pid "${!pid}" --repeat "$r" --phase allcores --duration "$DURATION" --warmup "$WARMUP" >>"$RESULTS" 2>"$RUN/last-run.txt" \
        || { cat "$RUN/last-run.txt" >&2; die "$target $workload on all cores: the load generator failed"; }
      sed 's/^/  /' "$RUN/last-run.txt"
    done
  done
done
kill "$ROLEGATE_ALL_PID" "$BASELINE_ALL_PID"

# --- reload under load --------------------------------------------------------------------------
# Rewrites the tenant every 100 ms (alternating two variants that differ in a comment, the
# description and one member's description), by rename as an editor or a ConfigMap update does;
# stops by itself. The rewriter is one process (a shell loop spawning `cp` and `mv` would add its
# own CPU to the latency). A control run has the same rewriter replace a file outside the policy
# directory: what the rewriting costs the machine without any reload.
rewrite_for() {
  "$LOADGEN" rewrite --file "$1/meiqia-service-desk.yaml" --from "$RUN/variant-0.yaml" --from "$RUN/variant-1.yaml" \
    --every-ms 100 --seconds "$2" 2>>"$RUN/rewrite.log"
}
echo "bench: reload under load"
RELOAD_SECS="$(awk -v d="$DURATION" -v w="$WARMUP" 'BEGIN { printf "%.1f", d + w + 1 }')"
mkdir -p "$RUN/elsewhere"
for ((r = 0; r < REPEATS; r++)); do
  load rolegate check "$r" steady-reload --duration "$DURATION" --warmup "$WARMUP" --rate "$RATE_CHECK" --connections 2
  rewrite_for "$RUN/elsewhere" "$RELOAD_SECS" &
  rewriter=$!
  load rolegate check "$r" rewrite-elsewhere --duration "$DURATION" --warmup "$WARMUP" --rate "$RATE_CHECK" --connections 2
  wait "$rewriter"
  rewrite_for "$POLICIES" "$RELOAD_SECS" &
  rewriter=$!
  load rolegate check "$r" reload --duration "$DURATION" --warmup "$WARMUP" --rate "$RATE_CHECK" --connections 2
  wait "$rewriter"
done
sed 's/^/  /' "$RUN/rewrite.log"
grep -c "tenant loaded" "$RUN/rolegate.log" | sed 's/^/  rolegate reloads logged: /'
# Only the measured server may reload: the twin loaded its copy once, at start.
twin_loads="$(grep -c "tenant loaded" "$RUN/rolegate-decision-log.log" || true)"
[[ $twin_loads == 1 ]] || die "the decision-log twin logged $twin_loads tenant loads; it must not see the reload step's rewrites"

# --- h2load, an independent client --------------------------------------------------------------
echo "bench: h2load"
"$LOADGEN" body --workload check "${DESK_ARGS[@]}" --out "$RUN/rolegate-check.bin"
ms() { awk -v s="$1" 'BEGIN { printf "%dms", s * 1000 }'; }
h2() {
  local target="$1" path="$2" body="$3" out="$RUN/h2load-$1.txt"
  taskset -c "$CLIENT_CPUS" h2load -D "$(ms "$DURATION")" --warm-up-time "$(ms "$WARMUP")" -c 4 -m 16 \
    -H 'content-type: application/grpc' -H 'te: trailers' -d "$body" "http://$(addr_of "$target")$path" >"$out" 2>&1 \
    || { cat "$out" >&2; die "h2load failed against $target"; }
  awk -v t="$target" '
    function us(s) { if (s ~ /us$/) return s + 0; if (s ~ /ms$/) return s * 1000; if (s ~ /s$/) return s * 1000000; return s }
    /^finished in/ { rps = $4 }
    /^requests:/ { ok = $8; failed = $10 }
    /^time for request:/ { mean = us($6) }
    END { printf "{\"kind\":\"h2load\",\"target\":\"%s\",\"shape\":\"-c 4 -m 16\",\"rps\":%s,\"mean_us\":%s,\"succeeded\":%s,\"failed\":%s}\n", t, rps + 0, mean + 0, ok + 0, failed + 0 }
  ' "$out" >>"$RESULTS"
  tail -n1 "$RESULTS" | sed 's/^/  /'
}
h2 rolegate /rolegate.v1.Authorizer/Check "$RUN/rolegate-check.bin"
h2 baseline /rolegate.v1.Authorizer/Check "$RUN/rolegate-check.bin"
h2 cerbos /cerbos.svc.v1.CerbosService/CheckResources "$RUN/cerbos/check.frames.first"

# --- memory -------------------------------------------------------------------------------------
for target in rolegate rolegate-decision-log baseline cerbos; do
  case "$target" in rolegate) pid=$ROLEGATE_PID ;; rolegate-decision-log) pid=$ROLEGATE_LOG_PID ;; baseline) pid=$BASELINE_PID ;; cerbos) pid=$CERBOS_PID ;; esac
  awk -v t="$target" '/^VmRSS/ { rss = $2 } /^VmHWM/ { hwm = $2 }
    END { printf "{\"kind\":\"rss\",\"target\":\"%s\",\"rss_kib\":%d,\"hwm_kib\":%d}\n", t, rss, hwm }' \
    "/proc/$pid/status" >>"$RESULTS"
done

echo
"$LOADGEN" table "$RESULTS" | tee "$RUN/table.md"
if ((QUICK)); then
  "$LOADGEN" table --check "$RESULTS" >/dev/null || die "quick run: a run failed or is missing (see $RESULTS)"
  echo "bench: quick run complete: harness works end to end (timings of a quick debug run mean nothing)"
fi
