"""cgroup v1 limits for a bubblewrap sandbox (no systemd to ask).

One cgroup per instance in each hierarchy a limit needs — ``memory``
(``memory.limit_in_bytes``, and ``memory.memsw.limit_in_bytes`` to the same
value where swap accounting exists: no swap beyond it), ``cpu`` (CFS quota
over a 100 ms period) and ``pids`` (``pids.max``) — below the scaler's own
cgroup (or ``cgroup_parent``), so limits set on the scaler still bound its
sandboxes. The supervisor joins them before it starts bwrap; the whole tree
inherits them. The directories are named ``…/runner-scaler-host/<name>``:
teardown removes only directories of that shape (``rmdir``, which the
kernel refuses while a task is inside).
"""

from __future__ import annotations

import contextlib
import errno
import os
import time
from dataclasses import dataclass
from pathlib import Path

from providers.host._options import Limits
from providers.host._sandbox import SandboxError

SUBDIR = "runner-scaler-host"
CFS_PERIOD_US = 100_000


@dataclass(frozen=True, slots=True)
class Hierarchy:
    controller: str
    mount: Path
    own: str  # this process's cgroup in it, e.g. /system.slice/runner-scaler.service


def hierarchies(mountinfo: str = "/proc/self/mountinfo", cgroup: str = "/proc/self/cgroup") -> dict[str, Hierarchy]:
    """The mounted cgroup v1 hierarchies, by controller."""
    mounts: dict[str, Path] = {}
    with contextlib.suppress(OSError):
        for line in Path(mountinfo).read_text(encoding="utf-8").splitlines():
            left, sep, right = line.partition(" - ")
            fields = right.split()
            if not sep or len(fields) < 3 or fields[0] != "cgroup":
                continue
            for opt in fields[2].split(","):
                mounts.setdefault(opt, Path(left.split()[4]))
    own: dict[str, str] = {}
    with contextlib.suppress(OSError):
        for line in Path(cgroup).read_text(encoding="utf-8").splitlines():
            _, controllers, path = line.split(":", 2)
            for c in controllers.split(","):
                own[c] = path
    return {c: Hierarchy(c, m, own.get(c, "/")) for c, m in mounts.items() if c in ("memory", "cpu", "pids")}


def needed(limits: Limits) -> list[str]:
    out = []
    if limits.memory is not None:
        out.append("memory")
    if limits.cpu is not None:
        out.append("cpu")
    if limits.tasks is not None:
        out.append("pids")
    return out


def _dir(h: Hierarchy, parent: str | None, name: str) -> Path:
    base = (parent if parent is not None else h.own).strip("/")
    return h.mount / base / SUBDIR / name if base else h.mount / SUBDIR / name


def require(limits: Limits, found: dict[str, Hierarchy]) -> None:
    """SandboxError naming the controllers the limits need and this host lacks."""
    absent = [c for c in needed(limits) if c not in found]
    if absent:
        raise SandboxError(
            f"limits: the cgroup v1 {', '.join(absent)} controller(s) are not mounted here "
            "(without systemd only cgroup v1 limits are enforced); drop those limits or use mode: systemd"
        )


def create(name: str, limits: Limits, parent: str | None, found: dict[str, Hierarchy]) -> dict[str, Path]:
    """Make and set the instance's cgroups (controller → directory)."""
    require(limits, found)
    made: dict[str, Path] = {}
    try:
        for c in needed(limits):
            d = _dir(found[c], parent, name)
            for attempt in range(3):  # a teardown may remove the shared parent in between
                try:
                    d.mkdir(parents=True, exist_ok=True)
                    break
                except FileNotFoundError:
                    if attempt == 2:
                        raise
            made[c] = d
            _set(c, d, limits)
    except OSError as exc:
        remove(list(made.values()), name)
        raise SandboxError(f"limits: cannot set up cgroup {exc.filename}: {exc.strerror}") from None
    return made


def _set(controller: str, d: Path, limits: Limits) -> None:
    if controller == "memory":
        assert limits.memory is not None
        (d / "memory.limit_in_bytes").write_text(str(int(limits.memory)))
        if (d / "memory.memsw.limit_in_bytes").exists():
            (d / "memory.memsw.limit_in_bytes").write_text(str(int(limits.memory)))
    elif controller == "cpu":
        assert limits.cpu is not None
        (d / "cpu.cfs_period_us").write_text(str(CFS_PERIOD_US))
        (d / "cpu.cfs_quota_us").write_text(str(max(1000, int(limits.cpu * CFS_PERIOD_US))))
    elif controller == "pids":
        (d / "pids.max").write_text(str(limits.tasks))


def ours(path: Path, name: str) -> bool:
    """Whether a recorded cgroup path has the shape only this provider makes."""
    p = Path(os.path.normpath(path))
    return (
        p.is_absolute()
        and str(p).startswith("/sys/fs/cgroup/")
        and p.name == name
        and p.parent.name == SUBDIR
        and ".." not in p.parts
    )


def remove(dirs: list[Path], name: str, *, wait: float = 5.0) -> list[str]:
    """rmdir each of the instance's cgroups (waiting while tasks drain); what remains."""
    left = []
    for d in dirs:
        if not ours(d, name):
            continue
        deadline = time.monotonic() + wait
        while True:
            try:
                d.rmdir()
                break
            except FileNotFoundError:
                break
            except OSError as exc:
                if exc.errno != errno.EBUSY or time.monotonic() > deadline:
                    left.append(f"{d}: {exc.strerror}")
                    break
                time.sleep(0.05)
        with contextlib.suppress(OSError):  # the shared parent, once its last child is gone
            d.parent.rmdir()
    return left
