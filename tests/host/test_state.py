"""The state directory under attack and after crashes: believed only when it
should be, never a reason to kill a process the provider did not start."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from providers.host import HostProvider
from providers.host._files import write_json
from providers.host._proc import ProcessId, identify, processes_of
from providers.host._provider import INTERRUPTED
from providers.host._state import load_record
from scaler.errors import ProviderPermanentError
from scaler.provider import LABEL_CONTROLLER, LABEL_POOL, InstanceStatus
from tests.contract.provider_contract import wait_for_status
from tests.host.conftest import REPO, TEST_UID_COUNT, TEST_UID_FIRST, HostEnv, MakeLaunch

pytestmark = pytest.mark.host


class Foreign:
    """A process the provider did not start (``sleep``), optionally under a UID."""

    def __init__(self, uid: int | None = None) -> None:
        prefix = ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--"] if uid is not None else []
        self.proc = subprocess.Popen([*prefix, "sleep", "300"])
        deadline = time.monotonic() + 5
        ident = identify(self.proc.pid)
        while (ident is None or (uid is not None and uid not in _uids(self.proc.pid))) and time.monotonic() < deadline:
            time.sleep(0.02)
            ident = identify(self.proc.pid)
        assert ident is not None
        self.ident: ProcessId = ident

    def alive(self) -> bool:
        return self.proc.poll() is None and identify(self.proc.pid) == self.ident

    def as_json(self, boot_id: str | None = None) -> dict[str, object]:
        return {"pid": self.ident.pid, "starttime": self.ident.starttime, "boot_id": boot_id or self.ident.boot_id}

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()


def _uids(pid: int) -> tuple[int, ...]:
    from providers.host._proc import uids

    return uids(pid)


@pytest.fixture
def foreign() -> Iterator[list[Foreign]]:
    started: list[Foreign] = []
    yield started
    for f in started:
        f.stop()


def _plant(env: HostEnv, name: str, *, controller: str | None = None, uid: int | None = None,
           created_at: float | None = None) -> Path:
    """An instance record as the provider writes it (mode 0600, in a 0700 directory)."""
    d = env.state / "instances" / name
    d.mkdir(parents=True, mode=0o700)
    env.state.chmod(0o700)
    (env.state / "instances").chmod(0o700)
    write_json(d / "instance.json", {
        "version": 1, "name": name, "controller": controller or env.controller, "provider": "host-test",
        "mode": "bubblewrap", "labels": {LABEL_CONTROLLER: controller or env.controller, LABEL_POOL: "host"},
        "uid": uid, "created_at": created_at or time.time() - 1000,
    })
    return d


async def test_a_forged_runtime_file_never_kills_a_process_it_did_not_start(
    provider: HostProvider, host_env: HostEnv, make_launch: MakeLaunch, foreign: list[Foreign]
) -> None:
    """runtime.json naming a foreign process (right PID and start time) gets it no signal; the sandbox still dies."""
    spec = make_launch("forged")
    await provider.create(spec)
    uid = load_record(provider.layout, spec.name).uid
    assert uid is not None
    victim = Foreign()
    foreign.append(victim)
    runtime = provider.layout.runtime(spec.name)
    write_json(runtime, {"supervisor": victim.as_json(), "bwrap": victim.as_json(), "sandbox_pid": victim.ident.pid})
    await provider.delete(spec.name)
    assert victim.alive()
    assert processes_of(uid) == []


async def test_a_record_from_before_a_reboot_is_not_believed(
    provider: HostProvider, host_env: HostEnv, foreign: list[Foreign]
) -> None:
    """A runtime from another boot names nothing alive: FAILED, and delete kills nothing."""
    victim = Foreign()
    foreign.append(victim)
    name = f"{host_env.controller}-stale"
    d = _plant(host_env, name)
    other_boot = "00000000-0000-0000-0000-000000000000"
    write_json(d / "runtime.json", {"supervisor": victim.as_json(other_boot), "bwrap": victim.as_json(other_boot)})
    info = await provider.get(name)
    assert info is not None and info.status is InstanceStatus.FAILED and "supervisor is gone" in str(info.reason)
    await provider.delete(name)
    assert victim.alive() and not d.exists()


async def test_killing_by_uid_trusts_only_the_lease(
    provider: HostProvider, host_env: HostEnv, foreign: list[Foreign]
) -> None:
    """A record naming another instance's UID, or a lease outside the range, gets no process killed."""
    in_range, out_of_range = TEST_UID_FIRST + 7, TEST_UID_FIRST + TEST_UID_COUNT + 7
    leased_elsewhere, outsider = Foreign(in_range), Foreign(out_of_range)
    foreign += [leased_elsewhere, outsider]
    name = f"{host_env.controller}-greedy"
    _plant(host_env, name, uid=in_range)
    uids_dir = host_env.state / "uids"
    uids_dir.mkdir(mode=0o700, exist_ok=True)
    write_json(uids_dir / str(in_range), {"instance": f"{host_env.controller}-someone-else", "controller": "x"})
    write_json(uids_dir / str(out_of_range), {"instance": name, "controller": host_env.controller})
    await provider.delete(name)
    assert leased_elsewhere.alive() and outsider.alive()
    assert (uids_dir / str(in_range)).exists()  # not its lease to release
    (uids_dir / str(in_range)).unlink()
    (uids_dir / str(out_of_range)).unlink()


async def test_state_files_others_could_change_are_ignored(provider: HostProvider, host_env: HostEnv) -> None:
    """Group-writable, foreign-owned, symlinked, oversized, malformed or misnamed records are never listed."""
    c = host_env.controller
    bad = {}
    for case in ("writable", "owner", "symlink", "big", "garbage", "misnamed"):
        bad[case] = _plant(host_env, f"{c}-{case}") / "instance.json"
    bad["writable"].chmod(0o620)
    os.chown(bad["owner"], 4242, 4242)
    target = host_env.root / "elsewhere.json"
    bad["symlink"].rename(target)
    bad["symlink"].symlink_to(target)
    bad["big"].write_text(json.dumps({"pad": "x" * 70_000}))
    bad["garbage"].write_text("{not json")
    data = json.loads(bad["misnamed"].read_text())
    write_json(bad["misnamed"], {**data, "name": f"{c}-writable"})
    assert await provider.list() == []
    for case in bad:
        assert await provider.get(f"{c}-{case}") is None
    findings = await provider.check({})
    warned = [f.message for f in findings if f.level == "warning" and "ignored instance record" in f.message]
    assert len(warned) == len(bad), findings


async def test_another_controllers_instance_is_left_alone(
    provider: HostProvider, host_env: HostEnv, make_launch: MakeLaunch
) -> None:
    """Two controllers share the state directory: neither lists, deletes nor re-creates the other's sandbox."""
    other = HostProvider(host_env.settings(controller="rs-other"))
    theirs = make_launch("theirs")
    spec = replace(theirs, labels={**theirs.labels, LABEL_CONTROLLER: "rs-other"})
    await other.create(spec)
    try:
        assert spec.name not in {i.name for i in await provider.list()}
        await provider.delete(spec.name)
        with pytest.raises(ProviderPermanentError, match="another controller's"):
            await provider.create(theirs)  # the same name: never adopted, never torn down
        info = await other.get(spec.name)
        assert info is not None and info.status is InstanceStatus.RUNNING
    finally:
        await other.delete(spec.name)


async def test_an_interrupted_create_is_found_and_finished(
    provider: HostProvider, host_env: HostEnv, make_launch: MakeLaunch
) -> None:
    """A create cut off after its record and UID lease is listed FAILED, and a new create of it starts afresh."""
    spec = make_launch("interrupted")
    uid = provider.uids.acquire(spec.name, host_env.controller)
    _plant(host_env, spec.name, uid=uid)
    info = await provider.get(spec.name)
    assert info is not None and info.status is InstanceStatus.FAILED and info.reason == INTERRUPTED
    again = await provider.create(spec)
    assert again.status is InstanceStatus.RUNNING
    new_uid = load_record(provider.layout, spec.name).uid
    assert new_uid != uid and [lease.uid for lease in provider.uids.leases()] == [new_uid]
    await provider.delete(spec.name)
    assert provider.uids.leases() == []


CRASHER = """
import asyncio, json, os, signal, sys
from providers.host import HostProvider
from scaler.provider import CredentialFile, LaunchSpec, ProviderSettings
from scaler.secrets import Secret

async def main():
    settings, specs = json.loads(sys.argv[1])
    provider = HostProvider(ProviderSettings(**settings))
    for s in specs:
        s["command"] = tuple(s["command"])
        s["files"] = tuple(CredentialFile(f["path"], Secret(f["content"])) for f in s["files"])
        await provider.create(LaunchSpec(**s))
    print("created", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)

asyncio.run(main())
"""


async def test_a_scaler_killed_with_sigkill_leaves_sandboxes_that_a_restart_finds_and_tears_down(
    host_env: HostEnv, make_launch: MakeLaunch, provider_again: HostProvider
) -> None:
    """The scaler's process dies hard; its sandboxes run on, are listed with their stamps, and delete ends them."""
    daemon = "setsid sh -c 'trap \"\" HUP TERM; sleep 300' </dev/null >/dev/null 2>&1 &"
    busy, done = make_launch("busy", script=f"{daemon} sleep 300"), make_launch("done", script="exit 0")
    settings = host_env.settings()
    payload = [
        {"name": settings.name, "type": settings.type, "controller_id": settings.controller_id,
         "options": dict(settings.options)},
        [{"name": s.name, "pool": s.pool, "image": "", "env": dict(s.env), "labels": dict(s.labels),
          "options": dict(s.options), "max_lifetime": s.max_lifetime, "command": list(s.command),
          "files": [{"path": f.path, "content": f.content.reveal()} for f in s.files]} for s in (busy, done)],
    ]
    crash = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CRASHER, json.dumps(payload), cwd=str(REPO), env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await crash.communicate()
    assert crash.returncode == -9 and b"created" in out
    listed = {i.name: i for i in await provider_again.list()}
    assert set(listed) == {busy.name, done.name}
    assert listed[busy.name].status is InstanceStatus.RUNNING
    assert dict(listed[busy.name].labels) == dict(busy.labels)
    await wait_for_status(provider_again, done.name, {InstanceStatus.EXITED}, 20)
    uid = load_record(provider_again.layout, busy.name).uid
    assert uid is not None and len(processes_of(uid)) >= 2
    for name in listed:
        await provider_again.delete(name)
    assert processes_of(uid) == [] and await provider_again.list() == []
