#!/usr/bin/env bash
# Runs every cargo-fuzz target of fuzz/ (libFuzzer) for SECONDS each (default 30), from the
# committed seed corpus in fuzz/corpus; fails on any crash, leak or timeout, leaving the crashing
# input in fuzz/artifacts/TARGET/.
#
#   scripts/fuzz.sh             # 30 s per target
#   scripts/fuzz.sh 3600        # a long run: one hour per target
#   scripts/fuzz.sh 20 pg_rows  # some targets only
#
# cargo-fuzz needs nightly-only compiler flags (sanitizer coverage). The toolchain here is stable,
# so the build runs with RUSTC_BOOTSTRAP=1, which unlocks them on a stable compiler; with a
# nightly toolchain installed, `cargo +nightly fuzz` works the same. cargo-fuzz itself (pinned)
# is installed from crates.io into target/tools on first use. No sanitizer is compiled in
# (`-s none`): the code under test is safe Rust, and AddressSanitizer would triple the build
# time; panics, overflows (debug assertions are on) and libFuzzer's -rss_limit_mb are what fail.
# Per-target working corpora grow in target/fuzz-corpus; the committed seeds stay untouched.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-30}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(policy_bytes policy_structured check_request pg_rows)

tools=$PWD/target/tools
if [ ! -x "$tools/bin/cargo-fuzz" ]; then
  echo "== fuzz: installing cargo-fuzz 0.13.1 into target/tools"
  cargo install --quiet --locked cargo-fuzz@0.13.1 --root "$tools"
fi
export PATH=$tools/bin:$PATH RUSTC_BOOTSTRAP=1

echo "== fuzz: building ${targets[*]} (release, debug assertions, no sanitizer)"
start=$(date +%s)
# One cargo invocation builds every target; fuzz/ is its own workspace with its own target dir.
(cd fuzz && cargo fuzz build -s none --debug-assertions --codegen-units 16)
echo "fuzz: built in $(($(date +%s) - start)) s"

summary=()
for t in "${targets[@]}"; do
  work=target/fuzz-corpus/$t
  mkdir -p "$work" "fuzz/artifacts/$t"
  seeds=()
  [ -d "fuzz/corpus/$t" ] && seeds=("fuzz/corpus/$t")
  echo "== fuzz: $t for ${seconds} s"
  log=target/fuzz-corpus/$t.log
  if ! (cd fuzz && cargo fuzz run -s none --debug-assertions --codegen-units 16 "$t" "../$work" "${seeds[@]/#/../}" -- \
    -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1) >"$log" 2>&1; then
    tail -60 "$log" >&2
    echo "fuzz: $t FAILED; the input is in fuzz/artifacts/$t/" >&2
    exit 1
  fi
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
  ft=$(grep -o 'ft: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
  corpus=$(find "$work" -type f | wc -l)
  summary+=("$(printf '%-18s %6s s %12s execs  cov %6s  ft %6s  corpus %6s' "$t" "$seconds" "${runs:-?}" "${cov:-?}" "${ft:-?}" "$corpus")")
done
echo "== fuzz: no crash"
printf '%s\n' "${summary[@]}"
