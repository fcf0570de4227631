#!/usr/bin/env bash
# Figures of the PostgreSQL source for BENCHMARKS.md (crates/bench/benches/postgres.rs) on a private
# PostgreSQL started by scripts/pg.sh and removed afterwards. Arguments pick parts:
#   scripts/bench-pg.sh [apply] [latency] [fanout] [nats] [ondemand]   (nats: needs nats-server)
set -euo pipefail
cd "$(dirname "$0")/.."
export ROLEGATE_PG_PORT=${ROLEGATE_PG_PORT:-54339}
scripts/pg.sh start >/dev/null
trap 'scripts/pg.sh clean' EXIT
eval "$(scripts/pg.sh env)"
echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')"
cargo build --locked --release --bin rolegate
export ROLEGATE_BIN=$PWD/target/release/rolegate
cargo bench --locked -p rolegate-bench --bench postgres -- "$@"
