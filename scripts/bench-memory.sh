#!/usr/bin/env bash
# Resident memory of a real `rolegate serve` holding one large tenant, from a policy directory and
# from PostgreSQL (BENCHMARKS.md, "Memory of a large tenant"):
#   - after the first load (VmRSS once serving), and the peak of that load (VmHWM);
#   - the peak while one member of the document is edited and reloaded (VmHWM reset before);
#   - the same tenant's compiled size, from `cargo bench --bench engine` (heap counted).
#
#   scripts/bench-memory.sh [MEMBERS]    # default 100000; BENCH_NO_BUILD=1 reuses target/release
#
# The PostgreSQL part runs on a private server from scripts/pg.sh (ROLEGATE_PG_PORT, default
# 54344), removed afterwards. Needs `rolegate-loadgen` for the benchmark tenant.
set -euo pipefail
cd "$(dirname "$0")/.."
MEMBERS=${1:-100000}
BIN=${BENCH_BIN_DIR:-${CARGO_TARGET_DIR:-target}/release}
if [[ ${BENCH_NO_BUILD:-0} != 1 ]]; then
  cargo build --quiet --locked --release -p rolegate -p rolegate-bench --bin rolegate --bin rolegate-loadgen
fi
OUT=$PWD/bench-out/memory
rm -rf "$OUT" && mkdir -p "$OUT"
PID=
cleanup() {
  [[ -n $PID ]] && kill "$PID" 2>/dev/null || true
  [[ ${PG_STARTED:-0} == 1 ]] && scripts/pg.sh clean >/dev/null 2>&1 || true
}
trap cleanup EXIT

"$BIN/rolegate-loadgen" tenant --members "$MEMBERS" --out "$OUT/policies" >/dev/null 2>&1
DOC="$OUT/policies/meiqia-service-desk.yaml"
echo "memory: $MEMBERS members, document of $(du -m "$DOC" | cut -f1) MB; $(nproc) CPUs, load $(cut -d' ' -f1 /proc/loadavg)"

kib() { awk -v k="$1" '/^'"$1"':/ { print $2 }' "/proc/$PID/status"; }
mib() { awk -v k="$1" 'BEGIN { printf "%.0f MiB (%.0f bytes per member)", k / 1024, k * 1024 / '"$MEMBERS"' }'; }
loaded() { grep -c "tenant loaded" "$OUT/serve.log" || true; }

# Starts `rolegate serve ARGS`, waits until it serves, prints its memory after the load.
serve() {
  local label=$1 start
  shift
  start=$(date +%s.%N)
  "$BIN/rolegate" serve --listen 127.0.0.1:0 --decision-log off "$@" >"$OUT/serve.log" 2>&1 &
  PID=$!
  until grep -q "snapshot loaded; serving" "$OUT/serve.log"; do
    kill -0 "$PID" 2>/dev/null || { cat "$OUT/serve.log" >&2; exit 1; }
    sleep 0.05
  done
  echo "  $label: serving after $(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f s", e - s }')"
  sleep 1
  echo "    resident after load: $(mib "$(kib VmRSS)"); peak of the load: $(mib "$(kib VmHWM)")"
}

# Resets the peak, runs CHANGE, waits for one more loaded tenant, prints the peak and after.
reload_peak() {
  local before
  before=$(loaded)
  echo 5 >"/proc/$PID/clear_refs"
  "$@"
  until (($(loaded) > before)); do sleep 0.05; done
  sleep 1
  echo "    peak during a one-member reload: $(mib "$(kib VmHWM)"); resident after it: $(mib "$(kib VmRSS)")"
}

edit_file() {
  sed '0,/  - id: agent-/s//  - {id: edited-agent}\n  - id: agent-/' "$DOC" >"$OUT/policies/.edit.tmp"
  mv -f "$OUT/policies/.edit.tmp" "$DOC"
}
serve "policy directory" --policies "$OUT/policies" --reload-debounce 20ms
reload_peak edit_file
kill "$PID" && wait "$PID" 2>/dev/null || true
PID=

export ROLEGATE_PG_PORT=${ROLEGATE_PG_PORT:-54344}
PG_STARTED=1
DSN=$(scripts/pg.sh start | tail -n1)
"$BIN/rolegate" migrate --dsn "$DSN" >/dev/null
"$BIN/rolegate" import "$OUT/policies" --to "$DSN" >/dev/null
edit_row() { psql -q "$DSN" -c "UPDATE rolegate.members SET status = 'disabled' WHERE tenant = 'meiqia-service-desk' AND id = 'edited-agent'" >/dev/null; }
serve "PostgreSQL" --source "$DSN"
reload_peak edit_row
