# shellcheck shell=bash
# A private Docker Engine for the tests: no systemd, no bridge, no iptables.
#
#   source .ci/services/docker.sh
#   docker_install        # apt-get install -y docker.io busybox-static (apt-get update already ran)
#   docker_start          # dockerd on a private socket + data root, test image built, env exported
#   trap docker_stop EXIT # stops the dockerd started above, by its recorded PID
#
# Everything lives under $RUNNER_SCALER_DOCKER_DIR (default /tmp/rs-docker; keep
# it short, the containerd socket path must fit in 108 bytes). docker_start is
# idempotent: when the dockerd recorded there still answers, it is reused.
#
# Exported for the tests:
#   RUNNER_SCALER_TEST_DOCKER_HOST   unix:///…/docker.sock
#   RUNNER_SCALER_TEST_DOCKER_IMAGE  the busybox-static test image (tag)
#   RUNNER_SCALER_TEST_DOCKER_DIR    the state directory (pid file, logs)
#   RUNNER_SCALER_TEST_DOCKER_SCRIPT this file (the restart test sources it)
#   RUNNER_SCALER_DOCKER_DIR         same as above (so child shells agree)

_DOCKER_SH_PATH="${BASH_SOURCE[0]:-.ci/services/docker.sh}"
_DOCKER_SH_PATH="$(cd "$(dirname "$_DOCKER_SH_PATH")" && pwd)/$(basename "$_DOCKER_SH_PATH")"
: "${RUNNER_SCALER_DOCKER_DIR:=/tmp/rs-docker}"
: "${RUNNER_SCALER_DOCKER_IMAGE_TAG:=runner-scaler-test/busybox:latest}"

_docker_log() { echo "[docker.sh] $*" >&2; }

_docker_paths() {
    _D_DIR="$RUNNER_SCALER_DOCKER_DIR"
    _D_SOCK="$_D_DIR/docker.sock"
    _D_PID="$_D_DIR/dockerd.pid"
    _D_LOG="$_D_DIR/dockerd.log"
    _D_ROOT="$_D_DIR/root"
    _D_EXEC="$_D_DIR/x"
}

# The Debian docker CLI (matches the engine); any docker CLI works.
_docker_cli() {
    _docker_paths
    local cli
    if [ -x /usr/bin/docker ]; then cli=/usr/bin/docker; else cli=docker; fi
    DOCKER_CONFIG="$_D_DIR/cli" "$cli" -H "unix://$_D_SOCK" "$@"
}

_docker_ping() {
    _docker_paths
    [ -S "$_D_SOCK" ] || return 1
    curl -fsS --max-time 2 --unix-socket "$_D_SOCK" http://docker/_ping >/dev/null 2>&1 && return 0
    # curl may be missing; fall back to the CLI
    _docker_cli version --format '{{.Server.Version}}' >/dev/null 2>&1
}

_docker_alive_pid() {
    _docker_paths
    [ -f "$_D_PID" ] || return 1
    local pid
    pid="$(cat "$_D_PID" 2>/dev/null)"
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && grep -q dockerd "/proc/$pid/cmdline" 2>/dev/null
}

docker_install() {
    if command -v dockerd >/dev/null 2>&1 && [ -x /bin/busybox ] \
        && dpkg -s docker.io busybox-static >/dev/null 2>&1; then
        _docker_log "docker.io and busybox-static already installed"
        return 0
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y docker.io busybox-static
}


_docker_export_env() {
    _docker_paths
    export RUNNER_SCALER_DOCKER_DIR
    export RUNNER_SCALER_TEST_DOCKER_DIR="$_D_DIR"
    export RUNNER_SCALER_TEST_DOCKER_HOST="unix://$_D_SOCK"
    export RUNNER_SCALER_TEST_DOCKER_IMAGE="$RUNNER_SCALER_DOCKER_IMAGE_TAG"
    export RUNNER_SCALER_TEST_DOCKER_SCRIPT="$_DOCKER_SH_PATH"
}

_docker_wait_ping() {
    local i
    for i in $(seq 1 150); do
        if _docker_ping; then return 0; fi
        if ! _docker_alive_pid && ! kill -0 "${_D_LAUNCHED:-0}" 2>/dev/null; then
            _docker_log "dockerd exited during start-up; last log lines:"
            tail -n 30 "$_D_LOG" >&2 || true
            return 1
        fi
        sleep 0.2
    done
    _docker_log "dockerd did not answer _ping within 30s; last log lines:"
    tail -n 30 "$_D_LOG" >&2 || true
    return 1
}

# Build the test image from a busybox-static rootfs (plus the stand-in runner).
docker_build_test_image() {
    _docker_paths
    local repo rootfs applet want have old
    repo="$(cd "$(dirname "$_DOCKER_SH_PATH")/../.." && pwd)"
    # rebuilt only when busybox, the stand-in runner or this script changed
    local inputs=(/bin/busybox "$_DOCKER_SH_PATH")
    if [ -f "$repo/tests/standin/runner.sh" ]; then inputs+=("$repo/tests/standin/runner.sh"); fi
    want="$(cat "${inputs[@]}" | sha256sum | cut -c1-16)"
    have="$(_docker_cli image inspect --format '{{ index .Config.Labels "runner-scaler.test.content" }}' \
        "$RUNNER_SCALER_DOCKER_IMAGE_TAG" 2>/dev/null || true)"
    if [ "$have" = "$want" ]; then
        _docker_log "test image $RUNNER_SCALER_DOCKER_IMAGE_TAG up to date"
        return 0
    fi
    old="$(_docker_cli image inspect --format '{{.Id}}' "$RUNNER_SCALER_DOCKER_IMAGE_TAG" 2>/dev/null || true)"
    rootfs="$(mktemp -d "$_D_DIR/rootfs.XXXXXX")"
    mkdir -p "$rootfs/bin" "$rootfs/sbin" "$rootfs/usr/bin" "$rootfs/usr/sbin" "$rootfs/etc" \
        "$rootfs/tmp" "$rootfs/root" "$rootfs/opt/runner" "$rootfs/proc" "$rootfs/sys" "$rootfs/dev" \
        "$rootfs/home/runner"
    chmod 1777 "$rootfs/tmp"
    cp /bin/busybox "$rootfs/bin/busybox"
    for applet in $(/bin/busybox --list); do
        [ "$applet" = busybox ] || ln -sf /bin/busybox "$rootfs/bin/$applet"
    done
    printf 'root:x:0:0:root:/root:/bin/sh\nrunner:x:1000:1000:runner:/home/runner:/bin/sh\n' >"$rootfs/etc/passwd"
    printf 'root:x:0:\nrunner:x:1000:\n' >"$rootfs/etc/group"
    chown 1000:1000 "$rootfs/home/runner"
    if [ -f "$repo/tests/standin/runner.sh" ]; then
        cp "$repo/tests/standin/runner.sh" "$rootfs/opt/runner/runner.sh"
        chmod 0755 "$rootfs/opt/runner/runner.sh"
        ln -sf /opt/runner/runner.sh "$rootfs/usr/bin/runner"
    fi
    tar -C "$rootfs" -cf - . | _docker_cli import \
        --change 'CMD ["/bin/sh"]' --change 'ENV PATH=/usr/sbin:/usr/bin:/sbin:/bin' \
        --change "LABEL runner-scaler.test.content=$want" \
        - "$RUNNER_SCALER_DOCKER_IMAGE_TAG" >/dev/null
    rm -rf "$rootfs"
    if [ -n "$old" ]; then
        _docker_cli image rm "$old" >/dev/null 2>&1 || true  # the previous build (if no container uses it)
    fi
    _docker_log "test image $RUNNER_SCALER_DOCKER_IMAGE_TAG built"
}

docker_start() {
    _docker_paths
    mkdir -p "$_D_DIR" "$_D_ROOT" "$_D_EXEC" "$_D_DIR/cli"
    chmod 0711 "$_D_DIR"
    if _docker_alive_pid && _docker_ping; then
        _docker_log "dockerd already running (pid $(cat "$_D_PID")) on $_D_SOCK"
    else
        if _docker_alive_pid; then
            _docker_log "dockerd pid $(cat "$_D_PID") alive but not answering; waiting"
            _docker_wait_ping || return 1
        else
            rm -f "$_D_PID" "$_D_SOCK"
            # a managed containerd left behind by a dockerd that was SIGKILLed
            _docker_kill_pidfile "$_D_EXEC/containerd/containerd.pid" containerd
            _docker_sweep_shims
            _docker_log "starting dockerd (data root $_D_ROOT, socket $_D_SOCK)"
            # setsid: our own session, so the caller's job control / signals do not reach it
            setsid -w dockerd \
                --host "unix://$_D_SOCK" \
                --data-root "$_D_ROOT" \
                --exec-root "$_D_EXEC" \
                --pidfile "$_D_PID" \
                --bridge=none --iptables=false --ip6tables=false --ip-masq=false \
                --userland-proxy=false \
                --log-level warn \
                ${RUNNER_SCALER_DOCKER_STORAGE_DRIVER:+--storage-driver "$RUNNER_SCALER_DOCKER_STORAGE_DRIVER"} \
                >>"$_D_LOG" 2>&1 </dev/null &
            _D_LAUNCHED=$!
            _docker_wait_ping || return 1
        fi
        _docker_log "dockerd up (pid $(cat "$_D_PID"))"
    fi
    _docker_export_env
    docker_build_test_image || return 1
}

_docker_kill_pidfile() {
    local file="$1" what="$2" pid i
    [ -f "$file" ] || return 0
    pid="$(cat "$file" 2>/dev/null)"
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && grep -q "$what" "/proc/$pid/cmdline" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for i in $(seq 1 100); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.2
        done
        if kill -0 "$pid" 2>/dev/null; then
            _docker_log "$what pid $pid ignored SIGTERM for 20s; SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    rm -f "$file"
}

# containerd shims outlive dockerd/containerd by design (they are re-attached on
# the next start); after a stop, end the ones our private containerd started --
# matched on its socket path under our state directory, killed by PID, their
# containers first.
_docker_sweep_shims() {
    _docker_paths
    local addr="$_D_EXEC/containerd/containerd.sock" d pid child cmd n=0
    for d in /proc/[0-9]*; do
        pid="${d#/proc/}"
        cmd="$(tr '\0' ' ' <"$d/cmdline" 2>/dev/null || true)"
        if [[ "$cmd" == *containerd-shim*" -address $addr "* ]]; then
            for child in $(ps -o pid= --ppid "$pid" 2>/dev/null); do
                kill -KILL "$child" 2>/dev/null || true
            done
            kill -KILL "$pid" 2>/dev/null || true
            n=$((n + 1))
        fi
    done
    if [ "$n" -gt 0 ]; then _docker_log "ended $n leftover containerd shim(s)"; fi
    return 0
}

docker_stop() {
    _docker_paths
    if [ -f "$_D_PID" ]; then
        _docker_log "stopping dockerd (pid $(cat "$_D_PID" 2>/dev/null))"
    fi
    _docker_kill_pidfile "$_D_PID" dockerd
    _docker_kill_pidfile "$_D_EXEC/containerd/containerd.pid" containerd
    _docker_sweep_shims
    rm -f "$_D_SOCK"
    return 0
}

# Wipe the state directory (containers, images); not called by .ci/run.
docker_purge() {
    docker_stop
    _docker_paths
    # the data root may hold overlay mounts of stopped containers
    # the data and exec roots may hold mounts (overlays, netns) of dead containers
    awk -v d="$_D_DIR/" 'index($2, d) == 1 { print $2 }' /proc/mounts 2>/dev/null | sort -r \
        | while read -r m; do umount -l "$m" 2>/dev/null || true; done
    rm -rf "$_D_DIR"
}
