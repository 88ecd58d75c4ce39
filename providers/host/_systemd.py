"""systemd mode: one transient unit per runner (``systemd-run``).

systemd cannot run on the machines these tests run on (PID 1 is not
systemd): what is tested is the exact command line built here, that every
``--property`` is a directive ``systemd-analyze verify`` accepts, and the
parsing of ``systemctl show`` output. Property names and semantics:
systemd.exec(5), systemd.resource-control(5), systemd.service(5),
systemd-run(1); ``ExecMainCode`` is a ``CLD_*`` code of waitid(2).

* ``DynamicUser=yes``: a UID allocated by systemd (61184-65519) for the
  unit's life, with ``RemoveIPC=`` and a private ``/tmp`` implied;
* ``ProtectSystem=strict``, ``ProtectHome=yes``, ``PrivateTmp=yes``,
  ``NoNewPrivileges=yes``, ``InaccessiblePaths=`` for the pool's hidden paths
  and ``ReadWritePaths=`` for its read-write ones; the host is otherwise
  visible read-only (unlike bubblewrap, which shows only what is listed);
* ``MemoryMax=`` (+ ``MemorySwapMax=0``), ``CPUQuota=``, ``TasksMax=``,
  ``Limit*=`` and ``RuntimeMaxSec=`` = the pool's ``max_lifetime``;
* ``KillMode=control-group``: stopping the unit kills its whole cgroup,
  daemonized children included; ``RemainAfterExit=yes`` keeps the unit (and
  its exit status) until ``delete`` stops it;
* credentials: ``LoadCredential=`` copies each file into the unit's
  credentials directory, ``BindReadOnlyPaths=`` shows it at its path;
* the work dir is ``StateDirectory=runner-scaler-work/<name>``, removed by
  ``delete`` after the stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from providers.host._options import HostPoolOptions, under
from providers.host._sandbox import SandboxError
from scaler.provider import InstanceStatus, LaunchSpec

WORK_PARENT = "runner-scaler-work"
STATE_ROOT = Path("/var/lib")
PROTECTED_HOME = ("/home", "/root", "/run/user")
DYNAMIC_UIDS = range(61184, 65520)
SHOW = ("LoadState", "ActiveState", "SubState", "Result", "ExecMainCode", "ExecMainStatus", "UID")
CLD_EXITED = 1


def unit_name(name: str) -> str:
    return f"runner-scaler-{name}.service"


def work_dir(name: str) -> str:
    return str(STATE_ROOT / WORK_PARENT / name)


@dataclass(frozen=True, slots=True)
class Credential:
    dest: str  # the path inside the unit
    host: Path  # where the provider wrote it (root-only), loaded by systemd


def _hardening(name: str) -> list[str]:
    return [
        "DynamicUser=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "PrivateDevices=yes",
        "PrivateIPC=yes",
        "NoNewPrivileges=yes",
        "RestrictSUIDSGID=yes",
        "ProtectKernelTunables=yes",
        "ProtectKernelModules=yes",
        "ProtectKernelLogs=yes",
        "ProtectControlGroups=yes",
        "ProtectClock=yes",
        "ProtectHostname=yes",
        "LockPersonality=yes",
        "CapabilityBoundingSet=",
        "KillMode=control-group",
        "RemainAfterExit=yes",
        f"StateDirectory={WORK_PARENT}/{name}",
        f"WorkingDirectory={work_dir(name)}",
    ]


def _limits(opts: HostPoolOptions, max_lifetime: float | None) -> list[str]:
    out = []
    lim = opts.limits
    if max_lifetime is not None:
        out.append(f"RuntimeMaxSec={max(1, math.ceil(max_lifetime))}")
    if lim.memory is not None:
        out += [f"MemoryMax={int(lim.memory)}", "MemorySwapMax=0"]
    if lim.cpu is not None:
        out.append(f"CPUQuota={max(1, round(lim.cpu * 100))}%")
    if lim.tasks is not None:
        out.append(f"TasksMax={lim.tasks}")
    if lim.open_files is not None:
        out.append(f"LimitNOFILE={lim.open_files}")
    if lim.file_size is not None:
        out.append(f"LimitFSIZE={int(lim.file_size)}")
    out.append("LimitCORE=0")
    return out


def _paths(opts: HostPoolOptions, name: str, creds: list[Credential]) -> list[str]:
    out = [f"InaccessiblePaths=-{p}" for p in opts.hidden()]
    out += [f"ReadWritePaths={p}" for p in opts.read_write_paths]
    if opts.network == "none":
        out.append("PrivateNetwork=yes")
    for i, c in enumerate(creds):
        out.append(f"LoadCredential=rs-{i}:{c.host}")
        out.append(f"BindReadOnlyPaths=/run/credentials/{unit_name(name)}/rs-{i}:{c.dest}")
    return out


def check_credentials(spec: LaunchSpec, opts: HostPoolOptions) -> None:
    for f in spec.files:
        blocked = [p for p in (*PROTECTED_HOME, *opts.hidden(), "/proc", "/dev") if under(f.path, p)]
        if blocked:
            raise SandboxError(f"credential file {f.path}: inside {blocked[0]}, which the unit cannot see")


def systemd_run_argv(
    spec: LaunchSpec, opts: HostPoolOptions, *, systemd_run: str, env: Mapping[str, str], creds: list[Credential]
) -> list[str]:
    """The exact ``systemd-run`` command line for one runner."""
    props = [*_hardening(spec.name), *_limits(opts, spec.max_lifetime), *_paths(opts, spec.name, creds)]
    unit_env = {**env, "HOME": work_dir(spec.name)}
    return [
        systemd_run,
        f"--unit={unit_name(spec.name)}",
        f"--description=runner-scaler instance {spec.name}",
        "--service-type=exec",
        "--no-ask-password",
        "--quiet",
        *[f"--property={p}" for p in props],
        *[f"--setenv={k}={v}" for k, v in sorted(unit_env.items())],
        "--",
        *spec.command,
    ]


def show_argv(systemctl: str, name: str) -> list[str]:
    return [systemctl, "show", f"--property={','.join(SHOW)}", unit_name(name)]


def parse_show(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            out[key.strip()] = value.strip()
    return out


def status_of(props: Mapping[str, str]) -> tuple[InstanceStatus, int | None, str | None] | None:
    """(status, exit code, reason) from ``systemctl show``; None: no such unit."""
    if props.get("LoadState") in (None, "not-found"):
        return None
    active, sub, result = props.get("ActiveState", ""), props.get("SubState", ""), props.get("Result", "")
    if active in ("activating", "reloading") or (active == "inactive" and props.get("ExecMainCode", "0") == "0"):
        return InstanceStatus.STARTING, None, None
    if active in ("active", "deactivating") and sub != "exited":
        return InstanceStatus.RUNNING, None, None
    if active == "failed" and result in ("timeout", "oom-kill"):
        return InstanceStatus.FAILED, None, "max_lifetime" if result == "timeout" else "OOMKilled"
    code, status = props.get("ExecMainCode", ""), props.get("ExecMainStatus", "")
    if code == str(CLD_EXITED) and status.isdigit():
        return InstanceStatus.EXITED, int(status), None
    return InstanceStatus.FAILED, None, f"{result or 'ended'} (code {code}, status {status})"


def dynamic_uid(props: Mapping[str, str]) -> int | None:
    value = props.get("UID", "")
    uid = int(value) if value.isdigit() else None
    return uid if uid in DYNAMIC_UIDS else None


async def run(argv: list[str], timeout: float) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        async with asyncio.timeout(timeout):
            out, err = await proc.communicate()
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        raise
    return proc.returncode or 0, out.decode("utf-8", "replace"), err.decode("utf-8", "replace")
