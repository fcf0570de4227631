#!/usr/bin/env bash
# The soak (crates/bench/src/bin/rolegate-soak.rs): a real `rolegate serve` at about half its
# maximum Check rate while its policies change every second, with the decision log writing every
# decision to a file. Every answer is compared with the local engine on the policy that produced
# it. Prints calls, errors, wrong answers, p99, RSS and open descriptors per window; fails on any
# error or wrong answer.
#
#   scripts/soak.sh --smoke                  # 60 s on the debug build (CI)
#   scripts/soak.sh --minutes 30             # the recorded run, on the release build
#   scripts/soak.sh --smoke --source pg      # the same against PostgreSQL rows
#   scripts/soak.sh --minutes 30 --source pg
#
# `--source dir` (the default) rewrites the policy directory every second, valid and broken
# documents in turn. `--source pg` serves a fresh database `rolegate_soak` on the server named by
# ROLEGATE_TEST_PG (or one started with scripts/pg.sh, left running) while a writer commits row
# changes every second: members suspended and restored, bindings added and removed.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() {
  echo "usage: $0 --smoke | --minutes N [--source dir|pg]" >&2
  exit 2
}

mode=${1:-}
case "$mode" in
  --smoke) shift ;;
  --minutes)
    minutes=${2:?usage: $0 --minutes N}
    shift 2
    ;;
  *) usage ;;
esac
source=dir
if [ "${1:-}" = --source ]; then
  source=${2:-}
  shift 2 || usage
fi
[ $# -eq 0 ] || usage
args=(--source "$source")
case "$source" in
  dir) ;;
  pg)
    if [ -z "${ROLEGATE_TEST_PG:-}" ]; then
      scripts/pg.sh start >/dev/null
      eval "$(scripts/pg.sh env)"
    fi
    args+=(--dsn "$ROLEGATE_TEST_PG")
    ;;
  *) usage ;;
esac

if [ "$mode" = --smoke ]; then
  cargo build --quiet --locked --bin rolegate -p rolegate -p rolegate-bench --bin rolegate-soak
  exec target/debug/rolegate-soak --rolegate target/debug/rolegate --seconds 60 --window 10 "${args[@]}"
fi
cargo build --quiet --locked --release --bin rolegate -p rolegate -p rolegate-bench --bin rolegate-soak
exec target/release/rolegate-soak --rolegate target/release/rolegate --seconds $((minutes * 60)) --window 60 "${args[@]}"
