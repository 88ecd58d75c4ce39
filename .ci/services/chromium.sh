# shellcheck shell=bash
# Debian's chromium for the browser tests (marker `browser`).
#
# Playwright (the Python package from pyproject's test extra) drives it with
# executable_path, so no tool ever downloads a browser of its own. DejaVu
# fonts make the screenshots readable.
#
# Usage (from .ci/run):
#   source .ci/services/chromium.sh; chromium_install; chromium_start
# chromium_install is idempotent (a working chromium and the fonts are kept);
# chromium_start exports RUNNER_SCALER_TEST_CHROMIUM, which tests/browser reads
# (and fails loudly without), and RUNNER_SCALER_ARTIFACTS, where the tests
# keep their screenshots. The tests start and stop their own browsers.

CHROMIUM_BIN="${CHROMIUM_BIN:-/usr/bin/chromium}"

_chromium_log() { echo "chromium.sh: $*" >&2; }

_chromium_ok() {
  [ -x "$CHROMIUM_BIN" ] && "$CHROMIUM_BIN" --headless --no-sandbox --disable-gpu --version >/dev/null 2>&1
}

_chromium_fonts_ok() {
  [ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ]
}

chromium_install() {
  if _chromium_ok && _chromium_fonts_ok; then
    _chromium_log "using $("$CHROMIUM_BIN" --version 2>/dev/null)"
    return 0
  fi
  local try
  for try in 1 2 3; do
    # Waits for the dpkg lock rather than failing when another install holds it.
    if DEBIAN_FRONTEND=noninteractive apt-get install -y -q -o DPkg::Lock::Timeout=300 \
      chromium fonts-dejavu-core >/dev/null; then
      break
    fi
    _chromium_log "apt-get install chromium failed (try $try); retrying"
    sleep 10
  done
  if ! _chromium_ok; then
    _chromium_log "chromium is not installed or does not run: $CHROMIUM_BIN"
    return 1
  fi
  _chromium_log "installed $("$CHROMIUM_BIN" --version 2>/dev/null)"
}

chromium_start() {
  if ! _chromium_ok; then
    _chromium_log "chromium is not installed; run chromium_install first"
    return 1
  fi
  export RUNNER_SCALER_TEST_CHROMIUM="$CHROMIUM_BIN"
  export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
  export RUNNER_SCALER_ARTIFACTS="${RUNNER_SCALER_ARTIFACTS:-$PWD/artifacts}"
  mkdir -p "$RUNNER_SCALER_ARTIFACTS"
}

chromium_stop() {
  :
}
