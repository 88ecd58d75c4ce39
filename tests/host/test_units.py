"""The host provider's pure parts: options, the bwrap and systemd-run command
lines, ``systemctl show`` parsing, the UID allocator (no bwrap needed)."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
from pydantic import ValidationError

from providers.host._bwrap import argv as bwrap_argv
from providers.host._options import HostPoolOptions, HostSettings, UidRange
from providers.host._sandbox import HostView, SandboxError, build, place_files, sandbox_env
from providers.host._systemd import (
    Credential,
    parse_show,
    status_of,
    systemd_run_argv,
    unit_name,
)
from providers.host._uids import UidAllocator, UidsExhausted, subid_overlaps
from scaler.provider import CredentialFile, InstanceStatus, LaunchSpec
from scaler.secrets import Secret
from tests.helm.test_examples import systemd_verify


class View(HostView):
    """The host's file system as these tests declare it (kind per path)."""

    def __init__(self, kinds: dict[str, str], which: dict[str, str] | None = None) -> None:
        self.kinds, self.found = kinds, which or {}

    def kind(self, path: str) -> str | None:
        return self.kinds.get(path)

    def readlink(self, path: str) -> str:
        return "usr/" + path.lstrip("/")

    def realpath(self, path: str) -> str:
        return path

    def which(self, name: str) -> str | None:
        return self.found.get(name)

    def executable(self, path: str) -> bool:
        return path in self.found.values()


def spec(**kw: object) -> LaunchSpec:
    base: dict[str, object] = {
        "name": "rs-metal-j1",
        "pool": "metal",
        "image": "",
        "command": ("act_runner", "daemon", "--config", "/data/config.yaml"),
        "env": {"RUNNER_NAME": "rs-metal-j1"},
        "files": (CredentialFile("/data/.runner", Secret("s3cret-runner-file")),),
        "max_lifetime": 3600.0,
    }
    return LaunchSpec(**{**base, **kw})  # type: ignore[arg-type]


# --- options ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "says"),
    [
        ({"read_write_paths": ["/"]}, "the whole host"),
        ({"read_only_paths": ["/usr/../etc"]}, "not a normalised path"),
        ({"read_only_paths": ["relative"]}, "not an absolute path"),
        ({"read_only_paths": ["/proc/sys"]}, "the sandbox's own"),
        ({"read_write_paths": ["/tmp"]}, "the sandbox's own"),
        ({"workdir": "/tmp/w"}, "inside a path the sandbox makes itself"),
        ({"workdir": "/etc/w"}, "overlaps the bound host path /etc"),
        ({"packages": ["bin/git"]}, "neither a command name nor an absolute path"),
        ({"limits": {"memory": "lots"}}, "memory"),
        ({"network": "bridge"}, "network"),
    ],
)
def test_pool_options_refuse_what_the_sandbox_cannot_do(options: dict[str, object], says: str) -> None:
    """Each bad pool option is refused with a message saying why."""
    with pytest.raises(ValidationError, match=says.replace("(", r"\(")):
        HostPoolOptions.model_validate(options)


def test_host_paths_inside_the_sandboxs_tmpfs_are_fine() -> None:
    """Binding into the private /tmp or /run is allowed; only their roots are the sandbox's."""
    opts = HostPoolOptions.model_validate({"read_only_paths": ["/usr", "/tmp/data"], "read_write_paths": ["/run/x"]})
    assert opts.bound() == ("/usr", "/tmp/data", "/run/x")


@pytest.mark.parametrize(
    ("settings", "says"),
    [
        ({"state_dir": "/var/lib/rs", "work_root": "/var/lib/rs/work"}, "work_root"),
        ({"uid_range": {"first": 1000}}, "first"),
        ({"uid_range": {"first": 0x7FFD0000, "count": 1 << 20}}, "foreign UID range"),
        ({"mode": "docker"}, "mode"),
    ],
)
def test_provider_settings_refuse_bad_values(settings: dict[str, object], says: str) -> None:
    """Nested or overlapping directories, low or overlong UID ranges, unknown modes are refused."""
    with pytest.raises(ValidationError, match=says):
        HostSettings.model_validate(settings)


# --- the bubblewrap command line ----------------------------------------------------------


def _sandbox(opts: HostPoolOptions, launch: LaunchSpec | None = None, view: View | None = None) -> list[str]:
    view = view or View({"/bin": "link", "/usr": "dir", "/etc": "dir", "/etc/ssh": "dir", "/etc/key": "file"})
    sb = build(launch or spec(), opts, work=Path("/w/rs-metal-j1/work"), store=Path("/w/rs-metal-j1/files"),
               view=view)
    return bwrap_argv(sb, bwrap="/usr/bin/bwrap", setpriv="/usr/bin/setpriv", uid=1879048200,
                      command=(launch or spec()).command, status_fd="9", view=view)


def _has_run(args: list[str], run: list[str]) -> bool:
    return any(args[i : i + len(run)] == run for i in range(len(args)))


def _mount_dests(args: list[str]) -> list[str]:
    """Destinations in the order bwrap mounts them."""
    out = []
    two = {"--ro-bind-try", "--bind", "--ro-bind", "--symlink"}
    for i, a in enumerate(args):
        if a in two:
            out.append(args[i + 2])
        elif a in ("--tmpfs", "--dir", "--proc", "--dev"):
            out.append(args[i + 1])
    return out


def test_bwrap_isolates_drops_and_ties_the_sandbox_to_its_supervisor() -> None:
    """New PID/IPC/UTS namespaces, die-with-parent, caps cut to the UID switch, setpriv to the fresh UID."""
    args = _sandbox(HostPoolOptions(read_only_paths=("/usr", "/bin", "/etc")))
    for flag in ("--die-with-parent", "--new-session", "--unshare-pid", "--unshare-ipc", "--unshare-uts"):
        assert flag in args
    assert "--unshare-net" not in args
    caps = [args[i + 1] for i, a in enumerate(args) if a == "--cap-add"]
    assert args[args.index("--cap-drop") + 1] == "ALL" and caps == ["CAP_SETUID", "CAP_SETGID", "CAP_SETPCAP"]
    tail = args[args.index("--") + 1 :]
    assert tail == [
        "/usr/bin/setpriv", "--reuid=1879048200", "--regid=1879048200", "--clear-groups", "--inh-caps=-all",
        "--bounding-set=-all", "--no-new-privs", "--", "env", "-C", "/home/runner", "--",
        "act_runner", "daemon", "--config", "/data/config.yaml",
    ]
    assert args[args.index("--json-status-fd") + 1] == "9"
    assert _has_run(args, ["--symlink", "usr/bin", "/bin"])


def test_bwrap_mounts_parents_first_and_hides_after_binding() -> None:
    """Every mount comes after its parent's; hidden paths go over the binds; parents it makes are 0755."""
    opts = HostPoolOptions(read_only_paths=("/usr", "/etc"), read_write_paths=("/srv/cache",),
                           inaccessible_paths=("/etc/ssh", "/etc/key", "/srv/absent"), network="none")
    args = _sandbox(opts)
    dests = _mount_dests(args)
    for i, d in enumerate(dests):
        parents = [p for p in dests[:i] if d.startswith(p.rstrip("/") + "/")]
        later = [p for p in dests[i + 1 :] if d.startswith(p.rstrip("/") + "/") and p != d]
        assert not later, (d, later, parents)
    assert _has_run(args, ["--perms", "0000", "--tmpfs", "/etc/ssh", "--remount-ro", "/etc/ssh"])
    assert _has_run(args, ["--ro-bind", "/dev/null", "/etc/key"])
    assert "/srv/absent" not in args  # not visible anyway
    assert args.index("/etc/ssh") > args.index("/etc") and "--unshare-net" in args
    assert _has_run(args, ["--perms", "0755", "--dir", "/data"])
    assert _has_run(args, ["--ro-bind", "/w/rs-metal-j1/files/0", "/data/.runner"])


def test_credential_files_go_where_the_sandbox_can_put_them() -> None:
    """Under the work dir: written there; on the sandbox's own root or tmpfs: bound; in a host path: refused."""
    opts = HostPoolOptions()
    files = (CredentialFile("/home/runner/.runner", Secret("a")), CredentialFile("/run/rs/jit", Secret("b")))
    placed = place_files(files, opts, Path("/w/work"), Path("/w/files"))
    assert [(str(p.host), p.bind) for p in placed] == [("/w/work/.runner", False), ("/w/files/1", True)]
    for bad in ("/etc/runner/.runner", "/usr", "/proc/x", "/etc/runner-scaler/x", "/data/../etc/x"):
        with pytest.raises(SandboxError):
            place_files((CredentialFile(bad, Secret("c")),), opts, Path("/w/work"), Path("/w/files"))


def test_packages_must_exist_and_be_visible() -> None:
    """A package is found on the host, must be inside a bound path, and its directory leads PATH."""
    view = View({}, {"git": "/usr/bin/git", "nix": "/opt/nix/bin/nix"})
    sb = build(spec(), HostPoolOptions(packages=("git",)), work=Path("/w"), store=Path("/f"), view=view)
    assert sb.env["PATH"].startswith("/usr/bin:")
    with pytest.raises(SandboxError, match="cannot see"):
        build(spec(), HostPoolOptions(packages=("nix",)), work=Path("/w"), store=Path("/f"), view=view)
    with pytest.raises(SandboxError, match="not an executable"):
        build(spec(), HostPoolOptions(packages=("make",)), work=Path("/w"), store=Path("/f"), view=view)


def test_the_sandbox_environment_is_built_from_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the launch's variables and the sandbox's own: nothing of the scaler's environment."""
    monkeypatch.setenv("RS_FORGE_TOKEN", "leak-me")
    env = sandbox_env(spec(), HostPoolOptions(), [])
    assert set(env) == {"HOME", "USER", "LOGNAME", "PATH", "TMPDIR", "LANG", "RUNNER_NAME"}
    assert "leak-me" not in env.values()


# --- systemd-run ----------------------------------------------------------------------------

UNIT = "runner-scaler-rs-metal-j1.service"
EXPECTED_SYSTEMD_RUN = [
    "/usr/bin/systemd-run",
    f"--unit={UNIT}",
    "--description=runner-scaler instance rs-metal-j1",
    "--service-type=exec",
    "--no-ask-password",
    "--quiet",
    "--property=DynamicUser=yes",
    "--property=ProtectSystem=strict",
    "--property=ProtectHome=yes",
    "--property=PrivateTmp=yes",
    "--property=PrivateDevices=yes",
    "--property=PrivateIPC=yes",
    "--property=NoNewPrivileges=yes",
    "--property=RestrictSUIDSGID=yes",
    "--property=ProtectKernelTunables=yes",
    "--property=ProtectKernelModules=yes",
    "--property=ProtectKernelLogs=yes",
    "--property=ProtectControlGroups=yes",
    "--property=ProtectClock=yes",
    "--property=ProtectHostname=yes",
    "--property=LockPersonality=yes",
    "--property=CapabilityBoundingSet=",
    "--property=KillMode=control-group",
    "--property=RemainAfterExit=yes",
    "--property=StateDirectory=runner-scaler-work/rs-metal-j1",
    "--property=WorkingDirectory=/var/lib/runner-scaler-work/rs-metal-j1",
    "--property=RuntimeMaxSec=3600",
    "--property=MemoryMax=4294967296",
    "--property=MemorySwapMax=0",
    "--property=CPUQuota=150%",
    "--property=TasksMax=512",
    "--property=LimitNOFILE=4096",
    "--property=LimitCORE=0",
    "--property=InaccessiblePaths=-/run/credentials",
    "--property=InaccessiblePaths=-/etc/runner-scaler",
    "--property=InaccessiblePaths=-/var/lib/runner-scaler",
    "--property=InaccessiblePaths=-/etc/ssh",
    "--property=ReadWritePaths=/nix/var/nix/daemon-socket",
    "--property=LoadCredential=rs-0:/var/lib/runner-scaler/host/instances/rs-metal-j1/credentials/0",
    f"--property=BindReadOnlyPaths=/run/credentials/{UNIT}/rs-0:/data/.runner",
    "--setenv=HOME=/var/lib/runner-scaler-work/rs-metal-j1",
    "--setenv=RUNNER_NAME=rs-metal-j1",
    "--",
    "act_runner",
    "daemon",
    "--config",
    "/data/config.yaml",
]
METAL = HostPoolOptions.model_validate({
    "read_write_paths": ["/nix/var/nix/daemon-socket"],
    "inaccessible_paths": ["/etc/ssh"],
    "limits": {"memory": "4GiB", "cpu": 1.5, "tasks": 512, "open_files": 4096},
})
CREDS = [Credential("/data/.runner", Path("/var/lib/runner-scaler/host/instances/rs-metal-j1/credentials/0"))]


def test_systemd_run_command_line_is_exactly_this() -> None:
    """The transient unit systemd mode would start: DynamicUser, the hardening, limits, RuntimeMaxSec=max_lifetime."""
    args = systemd_run_argv(spec(), METAL, systemd_run="/usr/bin/systemd-run", env={"RUNNER_NAME": "rs-metal-j1"},
                            creds=CREDS)
    assert args == EXPECTED_SYSTEMD_RUN


def test_systemd_analyze_accepts_every_property(tmp_path: Path) -> None:
    """Each --property, written as a [Service] directive of a unit, passes `systemd-analyze verify`."""
    runner = tmp_path / "act_runner"
    runner.write_text("#!/bin/sh\nexit 0\n")
    runner.chmod(0o755)
    launch = spec(command=(str(runner), "daemon"))
    args = systemd_run_argv(launch, METAL, systemd_run="systemd-run", env={"A": "b"}, creds=CREDS)
    props = [a.removeprefix("--property=") for a in args if a.startswith("--property=")]
    env = [a.removeprefix("--setenv=") for a in args if a.startswith("--setenv=")]
    unit = tmp_path / UNIT
    unit.write_text("\n".join(["[Unit]", "Description=x", "[Service]", "Type=exec", *props,
                               *[f'Environment="{e}"' for e in env], f"ExecStart={runner} daemon", ""]))
    systemd_verify(unit)


def test_systemd_mode_refuses_credentials_it_cannot_show() -> None:
    """A credential file under ProtectHome's or a hidden path cannot be placed in a unit."""
    from providers.host._systemd import check_credentials

    for path in ("/home/runner/.runner", "/root/x", "/etc/runner-scaler/x"):
        with pytest.raises(SandboxError):
            check_credentials(spec(files=(CredentialFile(path, Secret("x")),)), METAL)


@pytest.mark.parametrize(
    ("show", "expected"),
    [
        ("LoadState=not-found\nActiveState=inactive\n", None),
        ("LoadState=loaded\nActiveState=activating\nSubState=start\n", (InstanceStatus.STARTING, None, None)),
        ("LoadState=loaded\nActiveState=active\nSubState=running\nExecMainCode=0\n",
         (InstanceStatus.RUNNING, None, None)),
        ("LoadState=loaded\nActiveState=active\nSubState=exited\nResult=success\nExecMainCode=1\nExecMainStatus=0\n",
         (InstanceStatus.EXITED, 0, None)),
        ("LoadState=loaded\nActiveState=failed\nSubState=failed\nResult=exit-code\nExecMainCode=1\nExecMainStatus=3\n",
         (InstanceStatus.EXITED, 3, None)),
        ("LoadState=loaded\nActiveState=failed\nResult=timeout\nExecMainCode=2\nExecMainStatus=15\n",
         (InstanceStatus.FAILED, None, "max_lifetime")),
        ("LoadState=loaded\nActiveState=failed\nResult=oom-kill\nExecMainCode=2\nExecMainStatus=9\n",
         (InstanceStatus.FAILED, None, "OOMKilled")),
        ("LoadState=loaded\nActiveState=failed\nResult=signal\nExecMainCode=2\nExecMainStatus=9\n",
         (InstanceStatus.FAILED, None, "signal (code 2, status 9)")),
    ],
)
def test_systemctl_show_is_read_as_an_instance_status(
    show: str, expected: tuple[InstanceStatus, int | None, str | None] | None
) -> None:
    """systemctl show's properties (systemd.service(5); ExecMainCode is a CLD_* code) map to statuses."""
    assert status_of(parse_show(show)) == expected


def test_unit_names_carry_the_instance_name() -> None:
    assert unit_name("rs-a-j1") == "runner-scaler-rs-a-j1.service"


# --- the UID allocator ----------------------------------------------------------------------


def _alloc(tmp_path: Path, count: int = 8) -> UidAllocator:
    state = tmp_path / "state"
    state.mkdir(mode=0o700, exist_ok=True)
    return UidAllocator(state, UidRange(first=0x70200000, count=count))


def test_uids_are_never_reissued_until_the_range_wraps(tmp_path: Path) -> None:
    """In order, each once, across allocator objects (restarts); after a wrap only free ones again."""
    a = _alloc(tmp_path, count=4)
    got = [a.acquire(f"i{n}", "c") for n in range(3)]
    for lease in a.leases():
        a.release(lease)
    again = _alloc(tmp_path, count=4)  # a restart: the counter is on disk
    got.append(again.acquire("i3", "c"))
    assert got == [0x70200000, 0x70200001, 0x70200002, 0x70200003]
    wrapped = [again.acquire(f"i{n}", "c") for n in (4, 5, 6)]  # 0x70200003 is still i3's
    assert wrapped == [0x70200000, 0x70200001, 0x70200002]
    with pytest.raises(UidsExhausted):
        again.acquire("i7", "c")
    again.release(again.leases_of("i5")[0])
    assert again.acquire("i8", "c") == 0x70200001  # the only free one


def test_concurrent_allocators_never_share_a_uid(tmp_path: Path) -> None:
    """Threads on two allocator objects over one state directory get distinct UIDs (flock + O_EXCL)."""
    allocators = [_alloc(tmp_path, count=64), _alloc(tmp_path, count=64)]
    got: list[int] = []
    lock = threading.Lock()

    def take(i: int) -> None:
        uid = allocators[i % 2].acquire(f"t{i}", "c")
        with lock:
            got.append(uid)

    threads = [threading.Thread(target=take, args=(i,)) for i in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 40 and len(set(got)) == 40


def test_releasing_needs_the_lease_holder(tmp_path: Path) -> None:
    """A release naming another instance leaves the lease in place."""
    a = _alloc(tmp_path)
    uid = a.acquire("mine", "c")
    lease = a.leases_of("mine")[0]
    a.release(type(lease)(uid, "someone-else", "c"))
    assert a.leases_of("mine") == [lease]
    assert a.lease(uid + 100) is None  # outside the range: never a lease


def test_subordinate_id_ranges_that_meet_ours_are_found(tmp_path: Path) -> None:
    """/etc/subuid-style entries overlapping the range are reported; disjoint ones are not."""
    sub = tmp_path / "subuid"
    sub.write_text("alice:100000:65536\nbob:1879048100:200\nbad line\n")
    found = subid_overlaps(UidRange(), files=(str(sub),))
    assert found == [f"{sub}: bob:1879048100:200"]
    assert os.path.exists(sub)


# --- systemd mode, driven through recording stand-ins for systemd-run / systemctl ----------------

STUB = """#!/bin/sh
printf '%s\\n' "$0 $*" >> {log}
case "$1" in
  show) cat {show} ;;
esac
exit 0
"""


async def test_systemd_mode_runs_that_command_line_and_reads_the_unit_back(tmp_path: Path) -> None:
    """create runs exactly systemd_run_argv, get reads `systemctl show`, delete stops and resets the unit."""
    from providers.host import HostProvider
    from providers.host._systemd import show_argv
    from scaler.provider import LABEL_CONTROLLER, ProviderSettings

    log, show = tmp_path / "calls", tmp_path / "show"
    show.write_text("LoadState=loaded\nActiveState=active\nSubState=running\nExecMainCode=0\nUID=61999\n")
    for tool in ("systemd-run", "systemctl"):
        (tmp_path / tool).write_text(STUB.format(log=log, show=show))
        (tmp_path / tool).chmod(0o755)
    state = tmp_path / "state"
    options = {"mode": "systemd", "state_dir": str(state), "work_root": str(tmp_path / "work"),
               "systemd_run": str(tmp_path / "systemd-run"), "systemctl": str(tmp_path / "systemctl")}
    provider = HostProvider(ProviderSettings("host", "host", "rs", options))
    launch = spec(labels={LABEL_CONTROLLER: "rs"}, options=METAL.model_dump(mode="json"))
    info = await provider.create(launch)
    assert info.status is InstanceStatus.RUNNING
    creds = [Credential("/data/.runner", state / "instances" / launch.name / "credentials" / "0")]
    expected = systemd_run_argv(launch, METAL, systemd_run=str(tmp_path / "systemd-run"),
                                env=sandbox_env(launch, METAL, []), creds=creds)
    calls = log.read_text().splitlines()
    assert calls[0] == " ".join(expected)
    assert calls[1] == " ".join(show_argv(str(tmp_path / "systemctl"), launch.name))
    assert (state / "instances" / launch.name / "credentials" / "0").read_text() == "s3cret-runner-file"
    await provider.delete(launch.name)
    calls = log.read_text().splitlines()
    assert calls[-2:] == [f"{tmp_path}/systemctl stop {UNIT}", f"{tmp_path}/systemctl reset-failed {UNIT}"]
    assert not (state / "instances" / launch.name).exists() and await provider.list() == []
