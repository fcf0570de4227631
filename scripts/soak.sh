#!/usr/bin/env bash
# The soak (crates/bench/src/bin/rolegate-soak.rs): a real `rolegate serve` at about half its
# maximum Check rate while its policy directory is rewritten every second, valid and broken
# documents in turn, with the decision log writing every decision to a file. Every answer is
# compared with the local engine on the document that produced it. Prints calls, errors, wrong
# answers, p99, RSS and open descriptors per window; fails on any error or wrong answer.
#
#   scripts/soak.sh --smoke       # 60 s on the debug build (CI)
#   scripts/soak.sh --minutes 30  # the recorded run, on the release build
set -euo pipefail
cd "$(dirname "$0")/.."

case "${1:-}" in
  --smoke)
    cargo build --quiet --locked --bin rolegate -p rolegate -p rolegate-bench --bin rolegate-soak
    exec target/debug/rolegate-soak --rolegate target/debug/rolegate --seconds 60 --window 10
    ;;
  --minutes)
    minutes=${2:?usage: $0 --minutes N}
    cargo build --quiet --locked --release --bin rolegate -p rolegate -p rolegate-bench --bin rolegate-soak
    exec target/release/rolegate-soak --rolegate target/release/rolegate --seconds $((minutes * 60)) --window 60
    ;;
  *)
    echo "usage: $0 --smoke | --minutes N" >&2
    exit 2
    ;;
esac
