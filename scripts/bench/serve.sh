# shellcheck shell=bash
# Waiting for a rolegate started in the background, by reading its log. Sourced by the benchmark
# scripts (bench.sh, bench-authzen.sh, bench-callers.sh, bench-telemetry.sh, bench-ab.sh,
# bench-reload-ab.sh), with the two checks the side-by-side scripts share.
#
# Each function takes the server's log file and pid, prints the server's log and fails as soon
# as the server exits, and gives up after 20 s. Under `set -e` a failure stops the script, also
# from inside `addr="$(listening ...)"`.

# _rolegate_wait LOG PID WHAT SED: waits until `sed -n SED LOG` prints something; prints its first line.
_rolegate_wait() {
  local log="$1" pid="$2" what="$3" script="$4" found
  for _ in $(seq 400); do
    found="$(sed -n "$script" "$log" 2>/dev/null | head -n1)"
    [[ -n $found ]] && { echo "$found"; return 0; }
    kill -0 "$pid" 2>/dev/null || { cat "$log" >&2; echo "${0##*/}: server exited before $what: $log" >&2; return 1; }
    sleep 0.05
  done
  echo "${0##*/}: no $what within 20 s: $log" >&2
  return 1
}

# listening LOG PID: prints the first TCP address the gRPC listener (not admin, not AuthZEN) binds.
listening() {
  _rolegate_wait "$1" "$2" "'listening on ADDR'" '/admin listening\|AuthZEN listening/d; s/.*listening on \([0-9][0-9.:]*\).*/\1/p'
}

# authzen_listening LOG PID: prints the AuthZEN listener's TCP address.
authzen_listening() {
  _rolegate_wait "$1" "$2" "'AuthZEN listening on ADDR'" 's/.*AuthZEN listening on \([0-9][0-9.:]*\).*/\1/p'
}

# serving LOG PID: waits until rolegate has loaded its policies (it answers UNAVAILABLE before).
serving() {
  _rolegate_wait "$1" "$2" "'snapshot loaded; serving'" '/snapshot loaded; serving/s/.*/serving/p' >/dev/null
}

# need_bins DIR BIN...: stops the script unless DIR holds each BIN, executable.
need_bins() {
  local dir="$1" bin
  shift
  for bin in "$@"; do
    [[ -x $dir/$bin ]] || { echo "${0##*/}: no $bin in $dir" >&2; exit 1; }
  done
}

# bench_cpus: sets SERVER_CPUS (the last core) and CLIENT_CPUS (core 0), unless
# BENCH_SERVER_CPUS and BENCH_CLIENT_CPUS say otherwise; stops the script without taskset.
bench_cpus() {
  command -v taskset >/dev/null || { echo "${0##*/}: taskset (util-linux) is needed" >&2; exit 1; }
  local nproc
  nproc="$(nproc)"
  SERVER_CPUS="${BENCH_SERVER_CPUS:-$((nproc > 1 ? nproc - 1 : 0))}" CLIENT_CPUS="${BENCH_CLIENT_CPUS:-0}"
}
