# shellcheck shell=bash
# bubblewrap for the host provider's real tests (tests/host, marker `host`).
#
#   source .ci/services/bubblewrap.sh
#   bubblewrap_install   # Debian's bubblewrap (+ util-linux's setpriv/ipcmk, perl, systemd-analyze)
#   bubblewrap_start     # proves a sandbox can be made here (root, namespaces); exports nothing else
#   bubblewrap_stop      # nothing runs between tests; reports sandbox processes a test left
#
# There is no daemon: each test's sandboxes are children of the provider's
# supervisors and end with their tests. All three functions are idempotent
# and safe after an interrupted run (install skips what is present; start
# only probes; stop only reads /proc).

_bw_log() { echo "bubblewrap.sh: $*" >&2; }

# the tests' UID range (tests/host/conftest.py: TEST_UID_FIRST, TEST_UID_COUNT)
_BW_TEST_UID_FIRST=$((0x70100000))
_BW_TEST_UID_COUNT=4096

_bw_apt_install() {
    local tries=0
    until DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" >/dev/null; do
        tries=$((tries + 1))
        if [ "$tries" -ge 5 ]; then
            _bw_log "apt-get install $* failed $tries times"
            return 1
        fi
        _bw_log "apt-get install $* failed (another apt running?); retrying in 10 s"
        sleep 10
    done
}

bubblewrap_install() {
    local missing="" cmd pkg
    for pair in bwrap:bubblewrap setpriv:util-linux ipcmk:util-linux perl:perl-base systemd-analyze:systemd; do
        cmd="${pair%%:*}" pkg="${pair#*:}"
        command -v "$cmd" >/dev/null 2>&1 || case " $missing " in *" $pkg "*) ;; *) missing="$missing $pkg" ;; esac
    done
    if [ -n "$missing" ]; then
        _bw_log "apt-get install$missing"
        # shellcheck disable=SC2086
        _bw_apt_install $missing || return 1
    fi
    _bw_log "$(bwrap --version)"
}

bubblewrap_start() {
    if [ "$(id -u)" != 0 ]; then
        _bw_log "the host provider's tests run as root (bwrap mounts and switches UIDs)"
        return 1
    fi
    local out
    if ! out="$(bwrap --unshare-pid --die-with-parent --ro-bind /usr /usr --symlink usr/bin /bin \
        --symlink usr/lib /lib --symlink usr/lib64 /lib64 -- /usr/bin/true 2>&1)"; then
        _bw_log "bwrap cannot make a sandbox here: $out"
        return 1
    fi
    _bw_log "bwrap makes sandboxes (PID 1 is $(cat /proc/1/comm); cgroups: $(stat -fc %T /sys/fs/cgroup))"
}

bubblewrap_stop() {
    local pid uid line left=0
    for pid in /proc/[0-9]*; do
        line="$(grep '^Uid:' "$pid/status" 2>/dev/null)" || continue
        uid="$(echo "$line" | awk '{print $2}')"
        if [ "$uid" -ge "$_BW_TEST_UID_FIRST" ] && [ "$uid" -lt $((_BW_TEST_UID_FIRST + _BW_TEST_UID_COUNT)) ]; then
            _bw_log "left behind: pid ${pid#/proc/} uid $uid: $(tr '\0' ' ' <"$pid/cmdline" | cut -c1-120)"
            left=$((left + 1))
        fi
    done
    [ "$left" -eq 0 ] || _bw_log "$left sandbox process(es) outlived their tests"
    return 0
}
