#!/usr/bin/env bash
# The client matrix: real gRPC clients in other languages, pinned and installed from their
# registries into target/clients, call a real `rolegate serve` on the example policies over TCP
# and over a Unix socket, with default channel options:
#
#   Python grpcio 1.85.0 (+ grpcio-tools, -health-checking, -reflection), from PyPI with pip
#   Node @grpc/grpc-js 1.14.3 + @grpc/proto-loader 0.8.0, from npm (tests/clients/package-lock.json)
#
# Each runs tests/clients/check.{py,js}: Check, CheckBatch, health, and a reflection listing and
# description like `grpcurl list` / `grpcurl describe`. A failure names client and transport.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
out=$root/target/clients
mkdir -p "$out"

echo "== clients: installing pinned grpcio and @grpc/grpc-js into target/clients"
if [ ! -x "$out/venv/bin/python" ]; then
  python3 -m venv "$out/venv"
fi
"$out/venv/bin/pip" install --quiet --disable-pip-version-check \
  grpcio==1.85.0 grpcio-tools==1.85.0 grpcio-health-checking==1.85.0 grpcio-reflection==1.85.0
mkdir -p "$out/node"
cp tests/clients/package.json tests/clients/package-lock.json "$out/node/"
(cd "$out/node" && npm ci --silent --no-audit --no-fund)

# Python stubs for the API, generated from the repository's proto.
rm -rf "$out/py-gen" && mkdir -p "$out/py-gen"
wkt=$("$out/venv/bin/python" -c 'import grpc_tools, os; print(os.path.join(os.path.dirname(grpc_tools.__file__), "_proto"))')
"$out/venv/bin/python" -m grpc_tools.protoc -I proto -I "$wkt" --python_out="$out/py-gen" \
  --grpc_python_out="$out/py-gen" proto/rolegate/v1/authorizer.proto
touch "$out/py-gen/rolegate/__init__.py" "$out/py-gen/rolegate/v1/__init__.py"

cargo build --quiet --locked --bin rolegate
run=$(mktemp -d)
sock=$run/rolegate.sock
log=$run/server.log
target/debug/rolegate serve --policies examples --listen 127.0.0.1:0 --listen "unix:$sock" >/dev/null 2>"$log" &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null; rm -rf "$run"' EXIT
for _ in $(seq 300); do
  grep -q "policy snapshot loaded" "$log" && break
  kill -0 $server 2>/dev/null || { cat "$log" >&2; echo "clients: the server did not start" >&2; exit 1; }
  sleep 0.1
done
tcp=$(sed -n 's/.*listening on \([0-9.]*:[0-9]*\).*/\1/p' "$log" | head -1)
[ -n "$tcp" ] || { cat "$log" >&2; echo "clients: no TCP address in the server log" >&2; exit 1; }

failed=()
for transport in "$tcp" "unix:$sock"; do
  echo "== clients: python grpcio on $transport"
  "$out/venv/bin/python" tests/clients/check.py "$transport" "$out/py-gen" ||
    failed+=("python grpcio on $transport")
  echo "== clients: node @grpc/grpc-js on $transport"
  NODE_PATH=$out/node/node_modules node tests/clients/check.js "$transport" "$root" ||
    failed+=("node @grpc/grpc-js on $transport")
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "clients: FAILED: ${failed[*]}" >&2
  echo "---- server log" >&2
  cat "$log" >&2
  exit 1
fi
echo "clients: all 4 client/transport pairs passed"
