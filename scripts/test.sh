#!/usr/bin/env bash
# The whole test suite, from a fresh clone: cargo tests (unit, differential, integration against
# real servers and a real PostgreSQL) and the bundled example policies' own tests. Installs what it
# needs by itself.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TERM_COLOR=never
# A full disk shows up as a linker crash (bus error) deep in the build: say how much there was.
echo "== free disk where the build goes: $(df -h --output=avail "${CARGO_TARGET_DIR:-.}" 2>/dev/null | tail -n1 | tr -d ' ')"

echo "== PostgreSQL for the source tests (scripts/pg.sh: private port and data directory)"
scripts/pg.sh start >/dev/null
trap 'scripts/pg.sh clean' EXIT
eval "$(scripts/pg.sh env)"
unset ROLEGATE_SKIP_PG   # the PostgreSQL tests always run here

echo "== nats-server for the NATS source tests (each test starts its own on a private port)"
if ! command -v nats-server >/dev/null && [ ! -x /usr/sbin/nats-server ]; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq nats-server >/dev/null
fi
unset ROLEGATE_SKIP_NATS   # the NATS tests always run here

echo "== Chromium and chromedriver for the console's browser test (Debian packages; ~35 s to install)"
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null
fi
export ROLEGATE_REQUIRE_BROWSER=1   # tests/console.rs fails instead of skipping without a browser

echo "== cargo test"
cargo test --workspace --all-targets --locked

echo "== rolegate validate examples && rolegate test examples"
cargo run --quiet --locked -- validate examples
cargo run --quiet --locked -- test examples

echo "== client matrix: Python grpcio and Node @grpc/grpc-js over TCP and a Unix socket"
scripts/clients.sh

echo "== soak smoke: 60 s at half the maximum Check rate, the policy rewritten every second"
scripts/soak.sh --smoke
echo "== soak smoke against PostgreSQL: 60 s, a writer committing row changes every second"
scripts/soak.sh --smoke --source pg

echo "== fuzz smoke: every cargo-fuzz target for 20 s from the committed corpus"
scripts/fuzz.sh 20

echo "== Helm chart: render every values set and validate strictly, then prove the check can fail"
scripts/chart-check.sh
scripts/chart-check-selftest.sh

echo "== server benchmark harness, quick mode: proves it works end to end, judges no timing"
scripts/bench.sh --quick

echo "== AuthZEN beside gRPC, quick mode: proves the harness works, judges no timing"
scripts/bench-authzen.sh --quick

echo "== two builds side by side, quick mode: one build against itself, judges no timing"
scripts/bench-ab.sh --quick

echo "== two builds under reloads, quick mode: one build against itself, judges no timing"
scripts/bench-reload-ab.sh --quick
