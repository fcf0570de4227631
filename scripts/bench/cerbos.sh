# Cerbos as the peer of the server benchmark. Sourced by scripts/bench.sh, which sets OUT (the
# ignored output folder), RUN (this run's folder), LOADGEN and SERVER_CPUS.
#
# The Cerbos server binary and Cerbos' client packages come from npm at the versions pinned in
# scripts/bench/cerbos/package-lock.json, installed with --ignore-scripts into $OUT/cerbos. The
# policies in scripts/bench/cerbos/policies express the benchmark tenant's decisions; before any
# timing, cerbos_verify asks both servers the same sample and stops the benchmark on any difference.

CERBOS_SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/cerbos"
CERBOS_HOME="$OUT/cerbos"
CERBOS_BIN="$CERBOS_HOME/node_modules/@cerbos/cerbos-linux-x64/cerbos-linux-x64"

cerbos_die() { echo "bench: cerbos: $*" >&2; exit 1; }

# Installs the pinned packages unless the same lock file was installed before.
cerbos_install() {
  command -v node >/dev/null && command -v npm >/dev/null || cerbos_die "node and npm are needed (Node.js 20 or later)"
  local major
  major="$(node -p 'process.versions.node.split(".")[0]')"
  (( major >= 20 )) || cerbos_die "Node.js $(node --version) is too old; Cerbos' client packages need 20 or later"
  mkdir -p "$CERBOS_HOME"
  cp "$CERBOS_SRC/cerbos.mjs" "$CERBOS_HOME/"
  if [[ -x "$CERBOS_BIN" ]] && cmp -s "$CERBOS_SRC/package-lock.json" "$CERBOS_HOME/package-lock.json"; then
    return
  fi
  echo "bench: installing Cerbos and its client packages into $CERBOS_HOME"
  cp "$CERBOS_SRC/package.json" "$CERBOS_SRC/package-lock.json" "$CERBOS_HOME/"
  (cd "$CERBOS_HOME" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >/dev/null) \
    || cerbos_die "npm ci failed in $CERBOS_HOME"
  chmod +x "$CERBOS_BIN"
}

# A TCP port on loopback that nothing listens on now.
free_port() {
  local p
  for _ in $(seq 200); do
    p=$((20000 + RANDOM % 20000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      echo "$p"
      return
    fi
  done
  cerbos_die "no free port found"
}

# Starts Cerbos on loopback, pinned to SERVER_CPUS, audit and telemetry off; sets CERBOS_ADDR and
# CERBOS_PID.
cerbos_start() {
  local dir="$RUN/cerbos" grpc http debug
  rm -rf "$dir" && mkdir -p "$dir"
  cp -r "$CERBOS_SRC/policies" "$dir/policies"
  "$CERBOS_BIN" compile "$dir/policies" >"$dir/compile.log" 2>&1 || { cat "$dir/compile.log" >&2; cerbos_die "the policies do not compile"; }
  grpc="$(free_port)" http="$(free_port)" debug="$(free_port)"
  # batch100 sends 100 resources in one request; Cerbos accepts 50 unless told otherwise.
  cat >"$dir/config.yaml" <<EOF
server:
  grpcListenAddr: "127.0.0.1:$grpc"
  httpListenAddr: "127.0.0.1:$http"
  requestLimits:
    maxResourcesPerRequest: 100
storage:
  driver: disk
  disk:
    directory: "$dir/policies"
    watchForChanges: false
audit:
  enabled: false
telemetry:
  disabled: true
EOF
  CERBOS_NO_TELEMETRY=1 taskset -c "$SERVER_CPUS" "$CERBOS_BIN" server --config="$dir/config.yaml" --log-level=warn \
    --debug-listen-addr="127.0.0.1:$debug" >"$dir/server.log" 2>&1 &
  CERBOS_PID=$!
  CERBOS_ADDR="127.0.0.1:$grpc"
  for _ in $(seq 100); do
    if "$CERBOS_BIN" healthcheck --host-port="$CERBOS_ADDR" --no-tls >/dev/null 2>&1; then
      return
    fi
    kill -0 "$CERBOS_PID" 2>/dev/null || { cat "$dir/server.log" >&2; cerbos_die "the server exited"; }
    sleep 0.1
  done
  cerbos_die "the server did not become healthy on $CERBOS_ADDR"
}

# Asks rolegate (at $1) and Cerbos the same sample of every workload; fails on any difference.
cerbos_verify() {
  local rolegate="$1" w count
  for w in check batch10 batch100; do
    case "$w" in check) count="${CERBOS_SAMPLE:-1000}" ;; batch10) count=100 ;; *) count=20 ;; esac
    "$LOADGEN" sample --addr "$rolegate" --workload "$w" --count "$count" "${DESK_ARGS[@]}" >"$RUN/cerbos/sample-$w.jsonl"
    echo -n "bench: $w: "
    (cd "$CERBOS_HOME" && node cerbos.mjs verify "$CERBOS_ADDR" "$RUN/cerbos/sample-$w.jsonl") \
      || cerbos_die "Cerbos and rolegate disagree on $w (above); no timing was done"
  done
}

# Encodes the pool of every workload as Cerbos request bodies: $RUN/cerbos/<workload>.frames.
cerbos_encode() {
  local w
  for w in check batch10 batch100; do
    "$LOADGEN" cerbos-requests --workload "$w" "${DESK_ARGS[@]}" >"$RUN/cerbos/$w.jsonl"
    (cd "$CERBOS_HOME" && node cerbos.mjs encode "$RUN/cerbos/$w.jsonl" "$RUN/cerbos/$w.frames" 2>/dev/null) \
      || cerbos_die "could not encode the $w requests"
  done
}
