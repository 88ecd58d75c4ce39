# shellcheck shell=bash
# Real `promtool` and `prometheus` for the alert-rule tests (tests/alerts).
#
# Debian's `prometheus` package ships both. Its maintainer scripts try to start
# a system service; on a machine whose PID 1 is not systemd that start fails or
# is skipped, so the install runs with a policy-rc.d that forbids service
# starts, and nothing is left running: the tests start their own server on
# loopback (port 0 picked by the test) with a data dir under pytest's tmp.
#
# Usage (from .ci/run):
#   source .ci/services/prometheus.sh; prometheus_install; prometheus_start
# prometheus_install is idempotent (a working promtool is reused) and survives
# an interrupted earlier run (dpkg --configure -a first).
# prometheus_start exports RUNNER_SCALER_TEST_PROMTOOL and
# RUNNER_SCALER_TEST_PROMETHEUS, which tests/alerts reads (and fails loudly
# without).

_prom_log() { echo "prometheus.sh: $*" >&2; }

_prom_bins_ok() {
  command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1 &&
    promtool --version >/dev/null 2>&1 && prometheus --version >/dev/null 2>&1
}

prometheus_install() {
  if _prom_bins_ok; then
    _prom_log "using $(prometheus --version 2>&1 | head -n1)"
    return 0
  fi
  local policy=/usr/sbin/policy-rc.d had_policy=0 try
  [ -e "$policy" ] && had_policy=1
  if [ "$had_policy" -eq 0 ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 0755 "$policy"
  fi
  DEBIAN_FRONTEND=noninteractive dpkg --configure -a >/dev/null 2>&1 || true
  for try in 1 2 3; do
    if DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends prometheus >/dev/null; then
      break
    fi
    _prom_log "apt-get install prometheus failed (try $try); retrying shortly (another install may hold the lock)"
    sleep 10
  done
  [ "$had_policy" -eq 0 ] && rm -f "$policy"
  # Leave no packaged server running (none should start under the policy above;
  # stop one that an earlier, unguarded install left, by its pid file only).
  if [ -f /run/prometheus/prometheus.pid ]; then
    kill "$(cat /run/prometheus/prometheus.pid)" 2>/dev/null || true
  fi
  if ! _prom_bins_ok; then
    _prom_log "promtool/prometheus not usable after install"
    return 1
  fi
  _prom_log "installed $(prometheus --version 2>&1 | head -n1)"
}

prometheus_start() {
  if ! _prom_bins_ok; then
    _prom_log "prometheus is not installed; run prometheus_install first"
    return 1
  fi
  RUNNER_SCALER_TEST_PROMTOOL="$(command -v promtool)"
  RUNNER_SCALER_TEST_PROMETHEUS="$(command -v prometheus)"
  export RUNNER_SCALER_TEST_PROMTOOL RUNNER_SCALER_TEST_PROMETHEUS
}

prometheus_stop() {
  :
}
