"""Validated settings of a host provider and of each pool that uses it."""

from __future__ import annotations

import posixpath
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ByteSize, ConfigDict, Field, ValidationError, model_validator

# systemd's UID ranges (docs/UIDS-GIDS.md): 0x70000000… is unused by systemd
# (DynamicUser is 61184-65519, nspawn containers 524288-1879048191, the
# "foreign" range starts at 0x7FFE0000), and far from /etc/subuid's usual
# 100000 + 65536·n. 65,536 UIDs before the counter wraps.
DEFAULT_UID_FIRST = 0x70000000
DEFAULT_UID_COUNT = 65536
MAX_UID = 0x7FFDFFFF  # below systemd's foreign range and the signed-int trouble zone

# Always hidden from the sandbox, whatever the pool lists: every unit's
# systemd credentials (the scaler's own among them) and the places the
# examples keep the scaler's config, credentials and state.
ALWAYS_HIDDEN = ("/run/credentials", "/etc/runner-scaler", "/var/lib/runner-scaler")
# Mount points the sandbox sets up itself: its own /proc and /dev (nothing
# of the host's may go inside), and empty tmpfs (host paths may be bound
# inside them, but not over them).
KERNEL_FS = ("/proc", "/dev")
TMPFS = ("/tmp", "/var/tmp", "/run")
RESERVED = (*KERNEL_FS, *TMPFS)


def _abs_path(value: str) -> str:
    if not value.startswith("/") or "\0" in value or "\n" in value:
        raise ValueError(f"{value!r} is not an absolute path")
    if value.strip("/") == "":
        raise ValueError("'/' is the whole host; list the directories the job needs")
    norm = posixpath.normpath(value)
    if norm != value.rstrip("/") or ".." in value.split("/"):
        raise ValueError(f"{value!r} is not a normalised path (write {norm!r})")
    return norm


AbsPath = Annotated[str, AfterValidator(_abs_path)]


def under(path: str, top: str) -> bool:
    """Whether ``path`` is ``top`` or inside it (both normalised)."""
    return path == top or path.startswith(top.rstrip("/") + "/")


def problems(exc: ValidationError, prefix: str) -> list[str]:
    """``prefix.path: reason`` for each error (a model-level one names its key first)."""
    out = []
    for e in exc.errors(include_url=False):
        loc = ".".join(str(p) for p in e["loc"])
        msg = e["msg"].removeprefix("Value error, ")
        out.append(f"{prefix}.{loc}: {msg}" if loc else f"{prefix}.{msg}")
    return out


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class UidRange(_Model):
    """The UIDs (and equal GIDs) given to sandboxes, one per runner."""

    first: int = Field(default=DEFAULT_UID_FIRST, ge=65536, le=MAX_UID)
    count: int = Field(default=DEFAULT_UID_COUNT, ge=1, le=1 << 24)

    @property
    def last(self) -> int:
        return self.first + self.count - 1

    @model_validator(mode="after")
    def _fits(self) -> UidRange:
        if self.last > MAX_UID:
            raise ValueError(f"count: the range must end by {MAX_UID} (systemd's foreign UID range starts above)")
        return self

    def __contains__(self, uid: object) -> bool:
        return isinstance(uid, int) and self.first <= uid <= self.last


class HostSettings(_Model):
    """``providers[].options`` of a ``type: host`` provider."""

    # auto: a transient systemd unit where systemd is PID 1, bubblewrap elsewhere.
    mode: Literal["auto", "bubblewrap", "systemd"] = "auto"
    state_dir: AbsPath = "/var/lib/runner-scaler/host"
    work_root: AbsPath = "/var/lib/runner-scaler/host-work"
    uid_range: UidRange = UidRange()
    bwrap: str = "bwrap"
    setpriv: str = "setpriv"
    systemd_run: str = "systemd-run"
    systemctl: str = "systemctl"
    # cgroup v1 parent (a path inside each hierarchy) for the sandboxes'
    # cgroups; default: the scaler's own cgroup, so its limits still apply.
    cgroup_parent: str | None = None
    start_timeout: float = Field(default=30.0, gt=0)
    kill_timeout: float = Field(default=10.0, gt=0)  # for every process of the UID to be gone
    log_max_bytes: ByteSize = Field(default=ByteSize(8 << 20), ge=0)  # runner output kept per instance
    list_interval: float = Field(default=2.0, gt=0)  # watch() polls at this rate

    @model_validator(mode="after")
    def _dirs(self) -> HostSettings:
        a, b = self.state_dir, self.work_root
        if under(a, b) or under(b, a):
            raise ValueError("work_root: must not be inside state_dir, nor state_dir inside it")
        if self.cgroup_parent is not None and (".." in self.cgroup_parent.split("/") or "\0" in self.cgroup_parent):
            raise ValueError("cgroup_parent: a path inside the cgroup hierarchy, without '..'")
        return self

    @property
    def state_path(self) -> Path:
        return Path(self.state_dir)

    @property
    def work_path(self) -> Path:
        return Path(self.work_root)


class Limits(_Model):
    """What the sandbox may use. See the README for how each is enforced."""

    memory: ByteSize | None = None  # cgroup memory (bwrap: v1 memory.limit_in_bytes; systemd: MemoryMax)
    cpu: float | None = Field(default=None, gt=0, le=1024)  # cores (CFS quota; systemd: CPUQuota)
    tasks: int | None = Field(default=None, ge=1)  # processes + threads (pids.max + RLIMIT_NPROC; TasksMax)
    open_files: int | None = Field(default=None, ge=16)  # RLIMIT_NOFILE
    file_size: ByteSize | None = None  # RLIMIT_FSIZE: largest file the job may write


class HostPoolOptions(_Model):
    """``pools[].provider_options`` of a pool on a host provider."""

    # bubblewrap: nothing of the host is visible but these (read-only) and the
    # read-write paths; systemd: ProtectSystem=strict shows the host read-only.
    read_only_paths: tuple[AbsPath, ...] = ("/usr", "/bin", "/sbin", "/lib", "/lib64", "/etc")
    read_write_paths: tuple[AbsPath, ...] = ()  # e.g. the Nix daemon socket
    inaccessible_paths: tuple[AbsPath, ...] = ()  # never visible (plus ALWAYS_HIDDEN)
    # Commands the job may use: a name found on the scaler's PATH or an
    # absolute path (e.g. a Nix store path); each must be visible inside, and
    # its directory goes on the sandbox's PATH.
    packages: tuple[str, ...] = ()
    workdir: AbsPath = "/home/runner"  # the private work directory (also HOME)
    network: Literal["host", "none"] = "host"  # none: a network namespace with loopback only
    limits: Limits = Limits()
    # Remove what the runner's UID left under read_write_paths at teardown.
    sweep_read_write_paths: bool = True
    # Accept ``owner/*`` (and other name patterns) in the pool's repositories.
    allow_owner_wildcards: bool = False

    @model_validator(mode="after")
    def _consistent(self) -> HostPoolOptions:
        for key, paths in (("read_only_paths", self.read_only_paths), ("read_write_paths", self.read_write_paths)):
            for p in paths:
                if any(under(p, r) for r in KERNEL_FS) or p in TMPFS:
                    raise ValueError(f"{key}: {p} is the sandbox's own (/proc, /dev, /tmp, /var/tmp and /run are)")
        if any(under(self.workdir, r) for r in RESERVED):
            raise ValueError(f"workdir: {self.workdir} is inside a path the sandbox makes itself")
        for p in (*self.read_only_paths, *self.read_write_paths):
            if under(self.workdir, p) or under(p, self.workdir):
                raise ValueError(f"workdir: {self.workdir} overlaps the bound host path {p}")
        for pkg in self.packages:
            if not pkg or "\0" in pkg or ("/" in pkg and not pkg.startswith("/")):
                raise ValueError(f"packages: {pkg!r} is neither a command name nor an absolute path")
        return self

    def hidden(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys((*ALWAYS_HIDDEN, *self.inaccessible_paths)))

    def bound(self) -> tuple[str, ...]:
        return (*self.read_only_paths, *self.read_write_paths)
