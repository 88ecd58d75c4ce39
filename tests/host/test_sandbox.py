"""What a real bubblewrap sandbox lets a runner do, and what it leaves behind."""

from __future__ import annotations

import asyncio
import os
import pwd
import secrets
import subprocess
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from providers.host import HostProvider
from providers.host._proc import processes_of
from providers.host._state import load_record
from scaler.provider import CredentialFile, InstanceStatus
from scaler.secrets import Secret
from tests.contract.provider_contract import wait_for_status
from tests.host.conftest import CRED_PATH, TEST_UID_COUNT, TEST_UID_FIRST, HostEnv, MakeLaunch

pytestmark = pytest.mark.host


def _output(env: HostEnv, name: str) -> str:
    return (env.state / "instances" / name / "output.log").read_text(errors="replace")


def _uid(env: HostEnv, provider: HostProvider, name: str) -> int:
    uid = load_record(provider.layout, name).uid
    assert uid is not None
    return uid


async def _run(provider: HostProvider, make_launch: MakeLaunch, name: str, script: str, **kw: Any) -> str:
    """Run ``script`` in a sandbox to its end; the spec's name."""
    spec = make_launch(name, script=script, **kw)
    await provider.create(spec)
    info = await wait_for_status(provider, spec.name, {InstanceStatus.EXITED, InstanceStatus.FAILED}, 30)
    log = provider.layout.log(spec.name)
    assert info.status is InstanceStatus.EXITED, (info, log.read_text(errors="replace"))
    return spec.name


async def test_each_runner_runs_under_a_uid_no_other_instance_had(
    provider: HostProvider, provider_again: HostProvider, host_env: HostEnv, make_launch: MakeLaunch
) -> None:
    """Concurrent, sequential and post-restart runners each get a fresh, unnamed UID and GID."""
    script = "echo ids $(id -u) $(id -g) $(id -G)"
    seen: dict[str, tuple[int, int, str]] = {}

    def ids(name: str) -> None:
        line = next(x for x in _output(host_env, name).splitlines() if x.startswith("ids "))
        _, uid, gid, groups = line.split(" ", 3)
        seen[name] = (int(uid), int(gid), groups)

    first = await asyncio.gather(*[_run(provider, make_launch, f"uid-{i}", script) for i in range(3)])
    for name in first:
        ids(name)
        await provider.delete(name)
    for i in range(2):  # one after another, each deleted before the next starts
        name = await _run(provider, make_launch, f"uid-seq-{i}", script)
        ids(name)
        await provider.delete(name)
    ids(await _run(provider_again, make_launch, "uid-restart", script))  # as after a scaler restart
    uids = [u for u, _, _ in seen.values()]
    assert len(set(uids)) == len(uids), seen
    for uid, gid, groups in seen.values():
        assert TEST_UID_FIRST <= uid < TEST_UID_FIRST + TEST_UID_COUNT
        assert gid == uid and groups == str(uid), seen  # its own group, no supplementary ones
        with pytest.raises(KeyError):
            pwd.getpwuid(uid)
    assert os.stat(host_env.state / "uids" / str(uids[-1])).st_mode & 0o777 == 0o600


async def test_cannot_read_a_root_only_file_nor_any_listed_secret(
    provider: HostProvider, host_env: HostEnv, make_launch: MakeLaunch, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A planted 0400 root file is unreadable; listed secret files and directories are not there at all."""
    data = tmp_path / "hostdata"
    (data / "secrets.d").mkdir(parents=True)
    data.chmod(0o755)
    (data / "secrets.d").chmod(0o755)
    planted, listed, in_dir = data / "planted", data / "listed.key", data / "secrets.d" / "token"
    for path, text, mode in ((planted, "PLANTED-0400", 0o400), (listed, "LISTED-0644", 0o644),
                             (in_dir, "IN-DIR-0644", 0o644)):
        path.write_text(text)
        path.chmod(mode)
    monkeypatch.setenv("RS_SCALER_CANARY", "CANARY-FROM-THE-SCALER-ENV")
    script = (
        f"cat {planted}; echo planted=$?; cat {listed}; echo listed=$?; ls -A {data}/secrets.d; "
        f"cat {in_dir}; echo indir=$?; ls {host_env.state} {host_env.work}; echo state=$?; env"
    )
    options = {"read_only_extra": [str(data)], "inaccessible_paths": [str(listed), str(data / "secrets.d")]}
    name = await _run(provider, make_launch, "secrets", script, options=options)
    out = _output(host_env, name)
    for secret in ("PLANTED-0400", "LISTED-0644", "IN-DIR-0644", "CANARY-FROM-THE-SCALER-ENV"):
        assert secret not in out, out
    assert "Permission denied" in out and "planted=1" in out and "indir=1" in out and "state=2" in out, out
    assert planted.read_text() == "PLANTED-0400"  # the host's files are untouched
    assert "RUNNER_NAME=" in out and "HOME=/home/runner" in out


async def test_cannot_write_outside_its_work_dir(
    provider: HostProvider, host_env: HostEnv, make_launch: MakeLaunch, tmp_path: Path
) -> None:
    """Read-only host paths (even world-writable ones), unlisted host paths and the root refuse writes."""
    shared_ro = tmp_path / "shared-ro"
    unlisted = tmp_path / "unlisted"
    for d in (shared_ro, unlisted):
        d.mkdir()
        d.chmod(0o1777)
    marker = f"rs-host-marker-{secrets.token_hex(4)}"
    targets = ["/etc/" + marker, "/usr/" + marker, "/" + marker, "/home/" + marker,
               f"{shared_ro}/{marker}", f"{unlisted}/{marker}"]
    script = " ; ".join(f"(echo x > {t}) 2>/dev/null && echo WROTE {t}" for t in targets)
    script += f" ; mkdir -p {unlisted} 2>/dev/null && echo MADE ; echo ok > $HOME/ok && echo HOME-OK"
    script += f" ; echo tmp > /tmp/{marker} && echo TMP-OK"
    options = {"read_only_extra": [str(shared_ro)]}
    name = await _run(provider, make_launch, "writes", script, options=options)
    out = _output(host_env, name)
    assert "WROTE" not in out and "MADE" not in out, out
    assert "HOME-OK" in out and "TMP-OK" in out, out
    assert not _existing([*targets, f"/tmp/{marker}"])
    assert (host_env.work / name / "work" / "ok").read_text() == "ok\n"


async def test_a_daemonizing_child_dies_at_teardown(
    provider: HostProvider, host_env: HostEnv, make_launch: MakeLaunch
) -> None:
    """A child that double-forks into its own session and ignores signals is gone once delete returns."""
    daemon = "setsid sh -c 'trap \"\" HUP TERM INT; while :; do sleep 1; done' </dev/null >/dev/null 2>&1 &"
    spec = make_launch("daemon", script=f"{daemon} sleep 300")
    await provider.create(spec)
    uid = _uid(host_env, provider, spec.name)
    deadline = time.monotonic() + 10
    while len(processes_of(uid)) < 3 and time.monotonic() < deadline:  # runner sh + daemon sh + sleeps
        await asyncio.sleep(0.1)
    sessions = {os.getsid(p) for p in processes_of(uid)}
    assert len(sessions) >= 2, "the daemon did not leave the runner's session"
    await provider.delete(spec.name)
    assert processes_of(uid) == []


async def test_a_daemonized_child_dies_with_the_runner(
    provider: HostProvider, host_env: HostEnv, make_launch: MakeLaunch
) -> None:
    """When the runner exits by itself, what it daemonized dies with it, before any delete."""
    daemon = "setsid sh -c 'trap \"\" HUP TERM; while :; do sleep 1; done' </dev/null >/dev/null 2>&1 &"
    name = await _run(provider, make_launch, "daemon-exit", f"{daemon} sleep 1; exit 0")
    uid = _uid(host_env, provider, name)
    deadline = time.monotonic() + 5
    while processes_of(uid) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert processes_of(uid) == []


def _existing(paths: list[str]) -> list[str]:
    return [p for p in paths if os.path.lexists(p)]


def _ipc_of(uid: int) -> list[str]:
    """SysV IPC objects (shared memory, message queues) of ``uid`` in the host's namespace."""
    rows = []
    for table in ("/proc/sysvipc/shm", "/proc/sysvipc/msg"):
        rows += [line for line in Path(table).read_text().splitlines()[1:] if str(uid) in line.split()]
    return rows


def _find_owned(uid: int) -> list[str]:
    """Every path owned by ``uid`` on the root file system and /dev/shm."""
    out = []
    for top in ("/", "/dev/shm"):
        found = subprocess.run(["find", top, "-xdev", "-uid", str(uid)], capture_output=True, text=True,
                               timeout=240, check=False)
        out += found.stdout.split()
    return out


async def test_after_delete_nothing_owned_by_the_uid_is_left(
    provider: HostProvider, host_env: HostEnv, make_launch: MakeLaunch, tmp_path: Path
) -> None:
    """No process, file, directory or IPC object of the sandbox's UID survives delete; symlinks are not followed."""
    shared_rw = tmp_path / "shared-rw"
    shared_rw.mkdir()
    shared_rw.chmod(0o1777)
    keep = shared_rw / "operator-file"
    keep.write_text("keep me")
    victim = tmp_path / "victim"
    victim.write_text("not the sandbox's")
    script = (
        "mkdir -p $HOME/a/b/c && echo x > $HOME/a/b/c/f && ln -s /etc/passwd $HOME/link-etc; "
        f"ln -s {victim} $HOME/link-victim; ln -s {tmp_path} $HOME/link-dir; "
        f"mkdir {shared_rw}/mine && echo y > {shared_rw}/mine/f && echo z > {shared_rw}/loose; "
        "echo t > /tmp/t; ipcmk -M 4096 >/dev/null 2>&1; ipcmk -Q >/dev/null 2>&1; "
        "setsid sh -c 'sleep 300' </dev/null >/dev/null 2>&1 & sleep 300"
    )
    spec = make_launch("leftovers", script=script, options={"read_write_paths": [str(shared_rw)]})
    await provider.create(spec)
    uid = _uid(host_env, provider, spec.name)
    deadline = time.monotonic() + 10
    while not (shared_rw / "loose").exists() and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    assert (shared_rw / "mine" / "f").exists()
    await provider.delete(spec.name)
    assert processes_of(uid) == []
    assert await asyncio.to_thread(_find_owned, uid) == []
    assert _ipc_of(uid) == []
    assert keep.read_text() == "keep me" and victim.read_text() == "not the sandbox's"
    ours = [host_env.work / spec.name, host_env.state / "instances" / spec.name, host_env.state / "uids" / str(uid)]
    assert _existing(["/etc/passwd"]) and not _existing([str(p) for p in ours])


async def test_credential_files_are_the_sandboxs_own(
    provider: HostProvider, host_env: HostEnv, make_launch: MakeLaunch
) -> None:
    """Credential files appear at their paths, owned by the sandbox's UID with their mode, readable by it alone."""
    secret = f"runner-token-{secrets.token_hex(8)}"
    files = (
        CredentialFile(CRED_PATH, Secret(secret)),
        CredentialFile("/home/runner/.cfg/c.yaml", Secret("c: 1"), 0o640),
        CredentialFile("/run/runner-scaler/jitconfig", Secret("jit")),
    )
    script = ("stat -c '%u %a %n' /data/.runner /home/runner/.cfg/c.yaml /run/runner-scaler/jitconfig; "
              "[ \"$(cat /data/.runner)\" = \"$EXPECTED\" ] && echo MATCH")
    spec = replace(make_launch("creds", script=script, files=files), env={"EXPECTED": secret})
    await provider.create(spec)
    await wait_for_status(provider, spec.name, {InstanceStatus.EXITED}, 30)
    out = _output(host_env, spec.name)
    uid = _uid(host_env, provider, spec.name)
    assert f"{uid} 600 /data/.runner" in out and f"{uid} 640 /home/runner/.cfg/c.yaml" in out, out
    assert f"{uid} 600 /run/runner-scaler/jitconfig" in out and "MATCH" in out, out
    assert secret not in out


async def test_limits_are_enforced(provider: HostProvider, host_env: HostEnv, make_launch: MakeLaunch) -> None:
    """tasks caps processes (pids.max + RLIMIT_NPROC), memory OOM-kills inside the cgroup, cpu sets a CFS quota."""
    forks = ("perl -e 'my $n = 0; for (1 .. 40) { my $p = fork; last unless defined $p; "
             "if ($p == 0) { sleep 30; exit 0 } $n++ } print \"forked $n\\n\"'")
    limits = "grep -E '^Max (processes|core file size|open files)' /proc/self/limits"
    spec = make_launch("tasks", script=f"{forks} 2>/dev/null; {limits}",
                       options={"limits": {"tasks": 12, "open_files": 256}})
    await provider.create(spec)
    paths = {Path(c).parts[4]: Path(c) for c in load_record(provider.layout, spec.name).cgroups}
    await wait_for_status(provider, spec.name, {InstanceStatus.EXITED}, 60)
    out = _output(host_env, spec.name)
    forked = int(next(x for x in out.splitlines() if x.startswith("forked")).split()[1])
    assert 0 < forked < 12, out
    for limit, value in (("processes", "12"), ("core file size", "0"), ("open files", "256")):
        assert any(line.startswith(f"Max {limit}") and line.split()[-3:-1] == [value, value]
                   for line in out.splitlines()), (limit, out)
    assert set(paths) == {"pids"}
    await provider.delete(spec.name)
    assert not any(p.exists() for p in paths.values()), paths  # the cgroups go with the sandbox

    hog = make_launch("memory", script="perl -e '$x = \"a\" x (200 * 1024 * 1024); print \"survived\\n\"'",
                      options={"limits": {"memory": "64MiB"}})
    await provider.create(hog)
    info = await wait_for_status(provider, hog.name, {InstanceStatus.EXITED, InstanceStatus.FAILED}, 60)
    assert info.status is InstanceStatus.FAILED and info.reason == "OOMKilled", (info, _output(host_env, hog.name))
    assert "survived" not in _output(host_env, hog.name)


async def test_cpu_and_memory_limits_land_in_the_cgroups(
    provider: HostProvider, host_env: HostEnv, make_launch: MakeLaunch
) -> None:
    """The configured numbers are what the kernel holds, and the sandbox's processes are inside."""
    spec = make_launch("cg", script="sleep 30", options={"limits": {"cpu": 1.5, "memory": "96MiB", "tasks": 64}})
    await provider.create(spec)
    paths = {Path(c).parts[4]: Path(c) for c in load_record(provider.layout, spec.name).cgroups}
    assert (paths["memory"] / "memory.limit_in_bytes").read_text().strip() == str(96 << 20)
    assert (paths["cpu"] / "cpu.cfs_quota_us").read_text().strip() == "150000"
    assert (paths["pids"] / "pids.max").read_text().strip() == "64"
    uid = _uid(host_env, provider, spec.name)
    procs = set((paths["pids"] / "cgroup.procs").read_text().split())
    assert {str(p) for p in processes_of(uid)} <= procs
    await provider.delete(spec.name)
    assert not _existing([str(p) for d in paths.values() for p in (d, d.parent)])  # nor the shared parent


async def test_max_lifetime_ends_the_sandbox_without_the_scaler(
    provider: HostProvider, host_env: HostEnv, make_launch: MakeLaunch
) -> None:
    """The supervisor kills the sandbox at max_lifetime and says so."""
    spec = make_launch("lifetime", script="sleep 300", max_lifetime=1.5)
    await provider.create(spec)
    info = await wait_for_status(provider, spec.name, {InstanceStatus.FAILED, InstanceStatus.EXITED}, 20)
    assert info.status is InstanceStatus.FAILED and info.reason == "max_lifetime", info
    assert processes_of(_uid(host_env, provider, spec.name)) == []


async def test_network_none_leaves_only_loopback(
    provider: HostProvider, host_env: HostEnv, make_launch: MakeLaunch
) -> None:
    """With network: none the sandbox has its own network namespace holding just lo."""
    name = await _run(provider, make_launch, "net", "tail -n +3 /proc/net/dev | cut -d: -f1",
                      options={"network": "none"})
    interfaces = [x.strip() for x in _output(host_env, name).splitlines() if x.strip()]
    assert interfaces == ["lo"], interfaces


async def test_a_sandbox_that_cannot_start_is_reported_failed_with_the_reason(
    provider: HostProvider, host_env: HostEnv, make_launch: MakeLaunch, tmp_path: Path
) -> None:
    """A read-write path that does not exist fails the sandbox's set-up: FAILED, bwrap's reason, nothing left."""
    spec = make_launch("nostart", options={"read_write_paths": [str(tmp_path / "absent")]})
    await provider.create(spec)
    info = await wait_for_status(provider, spec.name, {InstanceStatus.FAILED, InstanceStatus.EXITED}, 20)
    assert info.status is InstanceStatus.FAILED, info
    assert info.reason is not None and "setup failed" in info.reason and "absent" in info.reason, info
    await provider.delete(spec.name)
    assert await provider.get(spec.name) is None
    assert not (host_env.work / spec.name).exists()
    assert sorted(os.listdir(host_env.state / "uids")) == [".lock", "next"]


async def test_a_launch_the_sandbox_cannot_hold_is_refused_before_anything_is_made(
    provider: HostProvider, host_env: HostEnv, make_launch: MakeLaunch
) -> None:
    """A credential file inside a read-only host path is a permanent error, and no UID is leased for it."""
    from scaler.errors import ProviderPermanentError

    spec = make_launch("nocreds", files=(CredentialFile("/etc/runner/.runner", Secret("x")),))
    with pytest.raises(ProviderPermanentError, match="/etc/runner/.runner: inside"):
        await provider.create(spec)
    assert await provider.get(spec.name) is None
    assert not (host_env.state / "uids").exists() or sorted(os.listdir(host_env.state / "uids")) == [".lock"]
