# shellcheck shell=bash
# A private libvirtd + virtlogd + QEMU (TCG) for the tests: no systemd, no network.
#
#   source .ci/services/libvirt.sh
#   libvirt_install        # apt packages, libvirt-python + pycdlib, cloud kernel, busybox initramfs
#   libvirt_start          # virtlogd + libvirtd started by hand, storage pool + base image, env exported
#   trap libvirt_stop EXIT # stops the daemons started above, by their recorded PIDs
#
# Both functions are idempotent (a daemon recorded in the state dir that still
# answers is reused; an installed package / built artefact is not rebuilt).
# The default network's autostart link is removed BEFORE libvirtd starts, so
# its private-range bridge is never created. Test domains get no NIC.
#
# State lives under $RUNNER_SCALER_LIBVIRT_DIR (default /tmp/rs-libvirt).
# Exported for the tests:
#   RUNNER_SCALER_TEST_LIBVIRT_URI        qemu:///system
#   RUNNER_SCALER_TEST_LIBVIRT_POOL       the dir storage pool (rs-test)
#   RUNNER_SCALER_TEST_LIBVIRT_BASE       base image volume name in that pool
#   RUNNER_SCALER_TEST_LIBVIRT_KERNEL     Debian cloud kernel (direct boot)
#   RUNNER_SCALER_TEST_LIBVIRT_INITRD     busybox initramfs (test guest)
#   RUNNER_SCALER_TEST_LIBVIRT_DIR        the state dir (serial logs under logs/)
#   RUNNER_SCALER_TEST_LIBVIRT_SCRIPT     this file (the restart test sources it)

_LIBVIRT_SH_PATH="${BASH_SOURCE[0]:-.ci/services/libvirt.sh}"
_LIBVIRT_SH_PATH="$(cd "$(dirname "$_LIBVIRT_SH_PATH")" && pwd)/$(basename "$_LIBVIRT_SH_PATH")"
: "${RUNNER_SCALER_LIBVIRT_DIR:=/tmp/rs-libvirt}"
: "${RUNNER_SCALER_LIBVIRT_POOL:=rs-test}"

_lv_log() { echo "[libvirt.sh] $*" >&2; }

_lv_paths() {
    _LV_DIR="$RUNNER_SCALER_LIBVIRT_DIR"
    _LV_KDIR="$_LV_DIR/kernel"
    _LV_KERNEL="$_LV_KDIR/vmlinuz"
    _LV_INITRD="$_LV_KDIR/initrd.gz"
    _LV_POOLDIR="$_LV_DIR/pool"
    _LV_LOGS="$_LV_DIR/logs"
    _LV_LIBVIRTD_PID="$_LV_DIR/libvirtd.pid"
    _LV_VIRTLOGD_PID="$_LV_DIR/virtlogd.pid"
}

libvirt_install() {
    _lv_paths
    local pkgs="libvirt-daemon-system libvirt-clients qemu-system-x86 qemu-utils libvirt-dev pkg-config busybox-static cpio"
    local missing="" p
    for p in $pkgs; do
        dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
    done
    if [ -n "$missing" ]; then
        _lv_log "apt-get install$missing"
        # shellcheck disable=SC2086
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $missing || return 1
    fi
    if ! python -c 'import libvirt, pycdlib' >/dev/null 2>&1; then
        python -m pip install --quiet libvirt-python pycdlib || return 1
    fi
    _libvirt_fetch_kernel || return 1
    _libvirt_build_initrd || return 1
}

_libvirt_fetch_kernel() {
    _lv_paths
    if [ -s "$_LV_KERNEL" ] && [ -d "$_LV_KDIR/modules" ]; then return 0; fi
    mkdir -p "$_LV_KDIR"
    local tmp pkg kver
    tmp="$(mktemp -d)"
    pkg="$(apt-cache depends linux-image-cloud-amd64 2>/dev/null | awk '/Depends: linux-image-/{print $2; exit}')"
    [ -n "$pkg" ] || { _lv_log "cannot resolve linux-image-cloud-amd64"; return 1; }
    _lv_log "downloading $pkg"
    (cd "$tmp" && apt-get download "$pkg" >/dev/null 2>&1) || { _lv_log "apt-get download $pkg failed"; return 1; }
    dpkg-deb -x "$tmp"/*.deb "$tmp/x" || return 1
    kver="$(ls "$tmp/x/lib/modules" | head -1)"
    cp "$tmp/x/boot/vmlinuz-$kver" "$_LV_KERNEL"
    rm -rf "$_LV_KDIR/modules"
    mkdir -p "$_LV_KDIR/modules"
    # what the test guest needs to see the seed: a virtio disk holding an iso9660 fs
    local m f
    for m in virtio virtio_ring virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci virtio_blk cdrom isofs; do
        f="$(find "$tmp/x/lib/modules/$kver" -name "$m.ko*" | head -1)"
        if [ -z "$f" ]; then continue; fi # built in
        case "$f" in
            *.xz) xz -dc "$f" >"$_LV_KDIR/modules/$m.ko" ;;
            *.zst) zstd -dqc "$f" >"$_LV_KDIR/modules/$m.ko" ;;
            *) cp "$f" "$_LV_KDIR/modules/$m.ko" ;;
        esac
        echo "$m" >>"$_LV_KDIR/modules/order"
    done
    rm -rf "$tmp"
    chmod -R a+rX "$_LV_KDIR"
}

# The test guest's /init: mount the cidata seed, install the credential files
# (printing each one's sha256 on the serial console), run the launcher, power off.
_libvirt_init_script() {
    cat <<'EOF'
#!/bin/sh
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /run /tmp /seed
# insmod does not resolve dependencies and their order changes between kernel
# builds (virtio needs virtio_ring since 6.1.0-4x): load in passes until done.
for pass in 1 2 3 4; do
  for m in $(cat /modules/order 2>/dev/null); do
    [ -d "/sys/module/$m" ] || insmod "/modules/$m.ko" 2>/dev/null
  done
done
for m in $(cat /modules/order 2>/dev/null); do
  [ -d "/sys/module/$m" ] || echo "RS-WARN module $m did not load"
done
echo "RS-BOOT $(uname -r)"
found=""
# up to 60 s: under TCG on a loaded 2-core machine the virtio disks can
# take several seconds to appear
i=0
while [ "$i" -lt 300 ]; do
  i=$((i + 1))
  for d in /dev/vd? /dev/sr? /dev/sd?; do
    [ -b "$d" ] || continue
    if mount -t iso9660 -o ro "$d" /seed 2>/dev/null; then
      if [ -f /seed/runner-scaler/manifest ]; then found="$d"; break 2; fi
      umount /seed
    fi
  done
  sleep 0.2
done
if [ -z "$found" ]; then
  echo "RS-ERROR no cidata seed found; block devices: $(ls /sys/block 2>/dev/null | tr '\n' ' ')"
  poweroff -f
fi
echo "RS-SEED $found"
# manifest lines: <index> <mode> <path>
while read -r idx mode path; do
  [ -n "$path" ] || continue
  mkdir -p "$(dirname "$path")"
  cp "/seed/runner-scaler/files/$idx" "$path"
  chmod "$mode" "$path"
  echo "RS-CRED $path $(sha256sum "$path" | cut -d' ' -f1) $(stat -c %a "$path")"
done < /seed/runner-scaler/manifest
sh /seed/runner-scaler/start.sh
rc=$?
echo "RS-EXIT $rc"
sync
poweroff -f
EOF
}

_libvirt_build_initrd() {
    _lv_paths
    local want
    want="$(_libvirt_init_script | sha256sum | cut -d' ' -f1)"
    if [ -s "$_LV_INITRD" ] && [ "$(cat "$_LV_KDIR/initrd.sum" 2>/dev/null)" = "$want" ]; then return 0; fi
    ldd /bin/busybox >/dev/null 2>&1 && { _lv_log "/bin/busybox is not static (install busybox-static)"; return 1; }
    local root applet
    root="$(mktemp -d)"
    mkdir -p "$root/bin" "$root/sbin" "$root/usr/bin" "$root/usr/sbin" "$root/proc" "$root/sys" "$root/dev" \
        "$root/run" "$root/tmp" "$root/etc" "$root/modules" "$root/seed"
    cp /bin/busybox "$root/bin/busybox"
    for applet in $(/bin/busybox --list); do
        [ "$applet" = busybox ] || ln -sf /bin/busybox "$root/bin/$applet"
    done
    cp "$_LV_KDIR"/modules/* "$root/modules/" 2>/dev/null || true
    _libvirt_init_script >"$root/init"
    chmod 0755 "$root/init"
    (cd "$root" && find . | cpio -o -H newc --quiet | gzip -1) >"$_LV_INITRD.tmp" || return 1
    mv "$_LV_INITRD.tmp" "$_LV_INITRD"
    echo "$want" >"$_LV_KDIR/initrd.sum"
    chmod a+r "$_LV_INITRD"
    rm -rf "$root"
}

_lv_alive() { # pidfile name
    local pid
    [ -f "$1" ] || return 1
    pid="$(cat "$1" 2>/dev/null)"
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && grep -q "$2" "/proc/$pid/cmdline" 2>/dev/null
}

_lv_virsh() { virsh -q -c qemu:///system "$@"; }

_libvirt_wait_ready() {
    local i
    for i in $(seq 1 150); do
        if _lv_virsh version >/dev/null 2>&1; then return 0; fi
        if ! _lv_alive "$_LV_LIBVIRTD_PID" libvirtd && [ "$i" -gt 25 ]; then break; fi
        sleep 0.2
    done
    _lv_log "libvirtd did not answer; last log lines:"
    tail -n 30 "$_LV_DIR/libvirtd.log" >&2 || true
    return 1
}

# An interrupted run can leave a pidfile that names a dead (or reused) PID, or
# a daemon of ours still running whose pidfile is gone. Both are settled here:
# a daemon started with our --pid-file path is adopted (it holds the sockets a
# fresh one would fail to bind), anything else stale is removed.
_lv_settle_pidfile() { # pidfile name
    local pid
    _lv_alive "$1" "$2" && return 0
    rm -f "$1"
    pid="$(pgrep -o -f -- "$2 .*--pid-file $1" 2>/dev/null || true)"
    if [ -n "$pid" ]; then
        _lv_log "adopting $2 pid $pid left by an earlier run"
        echo "$pid" >"$1"
    fi
}

_lv_start_daemon() { # pidfile name log [env...] -- started with setsid, checked afterwards
    local pidfile="$1" name="$2" out="$3" i
    shift 3
    _lv_settle_pidfile "$pidfile" "$name"
    _lv_alive "$pidfile" "$name" && return 0
    _lv_log "starting $name"
    env "$@" setsid "$name" --daemon --pid-file "$pidfile" </dev/null >>"$out" 2>&1 || {
        _lv_log "$name did not start; last lines of $out:"
        tail -n 20 "$out" >&2
        return 1
    }
    for i in $(seq 1 50); do
        _lv_alive "$pidfile" "$name" && return 0
        sleep 0.1
    done
    _lv_log "$name exited after starting; last lines of $out:"
    tail -n 20 "$out" >&2
    return 1
}

libvirt_start_daemons() {
    _lv_paths
    mkdir -p "$_LV_DIR" /run/libvirt
    # Never let libvirtd create the default network's bridge.
    rm -f /etc/libvirt/qemu/networks/autostart/default.xml
    _lv_start_daemon "$_LV_VIRTLOGD_PID" virtlogd "$_LV_DIR/virtlogd.log" || return 1
    _lv_start_daemon "$_LV_LIBVIRTD_PID" libvirtd "$_LV_DIR/libvirtd.out" \
        LIBVIRT_LOG_OUTPUTS="3:file:$_LV_DIR/libvirtd.log" || return 1
    _libvirt_wait_ready
}

_lv_pool_running() { _lv_virsh pool-info "$1" 2>/dev/null | grep -q 'State:.*running'; }

# A pool marked autostart by an earlier run is started by libvirtd itself,
# asynchronously after it answers: "not running" can turn into "already
# active" between our check and our pool-start. Autostart is switched off
# (this script starts the pool) and a failed start is re-checked, not fatal.
_lv_pool_up() { # pool
    local i
    _lv_virsh pool-autostart --disable "$1" >/dev/null 2>&1 || true
    local out
    for i in $(seq 1 25); do
        _lv_pool_running "$1" && return 0
        out="$(_lv_virsh pool-start "$1" 2>&1)" && return 0
        # started by libvirtd itself (autostart or restored state) meanwhile
        case "$out" in *"already active"*) return 0 ;; esac
        sleep 0.2
    done
    _lv_pool_running "$1" && return 0
    _lv_log "storage pool $1 does not start:"
    _lv_virsh pool-start "$1" >&2 || true
    return 1
}

libvirt_start() {
    _lv_paths
    mkdir -p "$_LV_DIR" "$_LV_POOLDIR" "$_LV_LOGS"
    # qemu runs as libvirt-qemu: it must reach the pool, kernel and the log dir
    chmod 0755 "$_LV_DIR" "$_LV_POOLDIR"
    chmod 0777 "$_LV_LOGS"
    [ -s "$_LV_KERNEL" ] && [ -s "$_LV_INITRD" ] || { _lv_log "run libvirt_install first"; return 1; }
    # Debian's udev rule makes /dev/kvm root:kvm 0660. Without udev it may be
    # root-only: then libvirt sees KVM as "enabled when probed, not usable now"
    # and re-probes QEMU's capabilities on every call (~45 s per domain start).
    if [ -c /dev/kvm ] && getent group kvm >/dev/null 2>&1; then
        chgrp kvm /dev/kvm 2>/dev/null && chmod 0660 /dev/kvm 2>/dev/null || true
    fi
    libvirt_start_daemons || return 1
    local pool="$RUNNER_SCALER_LIBVIRT_POOL"
    if ! _lv_virsh pool-info "$pool" >/dev/null 2>&1; then
        _lv_virsh pool-define-as "$pool" dir --target "$_LV_POOLDIR" >/dev/null || return 1
    fi
    _lv_pool_up "$pool" || return 1
    _lv_virsh pool-refresh "$pool" >/dev/null
    if ! _lv_virsh vol-info --pool "$pool" base.qcow2 >/dev/null 2>&1; then
        _lv_virsh vol-create-as "$pool" base.qcow2 64M --format qcow2 >/dev/null || return 1
    fi
    export RUNNER_SCALER_LIBVIRT_DIR
    export RUNNER_SCALER_TEST_LIBVIRT_URI="qemu:///system"
    export RUNNER_SCALER_TEST_LIBVIRT_POOL="$pool"
    export RUNNER_SCALER_TEST_LIBVIRT_BASE="base.qcow2"
    export RUNNER_SCALER_TEST_LIBVIRT_KERNEL="$_LV_KERNEL"
    export RUNNER_SCALER_TEST_LIBVIRT_INITRD="$_LV_INITRD"
    export RUNNER_SCALER_TEST_LIBVIRT_DIR="$_LV_DIR"
    export RUNNER_SCALER_TEST_LIBVIRT_SCRIPT="$_LIBVIRT_SH_PATH"
    _lv_log "libvirtd up (pid $(cat "$_LV_LIBVIRTD_PID")), pool $pool at $_LV_POOLDIR"
}

_lv_kill_pidfile() { # pidfile name
    local pid i
    [ -f "$1" ] || return 0
    pid="$(cat "$1" 2>/dev/null)"
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && grep -q "$2" "/proc/$pid/cmdline" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for i in $(seq 1 100); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
    fi
    rm -f "$1"
}

# Stop libvirtd only (the restart test): running domains survive, as in production.
libvirt_stop_libvirtd() {
    _lv_paths
    _lv_kill_pidfile "$_LV_LIBVIRTD_PID" libvirtd
}

libvirt_stop() {
    _lv_paths
    # transient test domains left behind: destroy them while libvirtd still answers
    if _lv_alive "$_LV_LIBVIRTD_PID" libvirtd; then
        local d
        for d in $(_lv_virsh list --name 2>/dev/null); do
            case "$d" in rs-*|contract-*|bench-*) _lv_virsh destroy "$d" >/dev/null 2>&1 || true ;; esac
        done
    fi
    _lv_kill_pidfile "$_LV_LIBVIRTD_PID" libvirtd
    _lv_kill_pidfile "$_LV_VIRTLOGD_PID" virtlogd
    return 0
}
