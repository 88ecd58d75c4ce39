"""bubblewrap mode, start: from a launch spec to a supervised sandbox.

Order matters for a crash at any point: the identity record is written first
(without a UID), then the UID is leased, then everything else. So whatever
a crash leaves is found by ``list`` (as a failed, interrupted create) and
removed by ``delete``, and a UID lease never outlives its record.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from providers.host import _bwrap, _cgroups, _files
from providers.host._options import HostPoolOptions, HostSettings
from providers.host._sandbox import HostView, Placement, Sandbox, SandboxError, build, visible
from providers.host._state import Layout, Record
from providers.host._supervisor import STATUS_FD, Plan
from providers.host._uids import UidAllocator
from scaler.provider import LaunchSpec


@dataclass(frozen=True, slots=True)
class Tools:
    """Absolute paths of the binaries used, resolved once."""

    bwrap: str
    setpriv: str


class StartFailed(RuntimeError):
    """The sandbox did not start; ``permanent`` when retrying cannot help."""

    def __init__(self, message: str, *, permanent: bool) -> None:
        super().__init__(message)
        self.permanent = permanent


def write_record(layout: Layout, record: Record) -> None:
    _files.ensure_dir(layout.state_dir)
    _files.ensure_dir(layout.instances)
    _files.ensure_dir(layout.dir(record.name))
    _files.write_json(layout.record(record.name), record.model_dump(mode="json"))


def _write_files(placements: tuple[Placement, ...], uid: int) -> None:
    for pl in placements:
        pl.host.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(pl.host, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            os.fchown(fh.fileno(), uid, uid)
            os.fchmod(fh.fileno(), pl.file.mode & 0o777)
            fh.write(pl.file.content.encode())


def _make_dirs(layout: Layout, name: str, uid: int) -> None:
    _files.ensure_dir(layout.work_root)
    base = layout.work_base(name)
    base.mkdir(mode=0o700, exist_ok=True)
    _files.trusted_dir(base)
    for d in (layout.work(name), layout.files(name)):
        d.mkdir(mode=0o700)
        os.chown(d, uid, uid)


def _chown_parents(placements: tuple[Placement, ...], top: Path, uid: int) -> None:
    """Directories made for credential files inside the work dir belong to the sandbox."""
    for pl in placements:
        d = pl.host.parent
        while d != top and top in d.parents:
            os.chown(d, uid, uid)
            d = d.parent


def rlimits(opts: HostPoolOptions) -> dict[str, tuple[int, int]]:
    lim = opts.limits
    out: dict[str, tuple[int, int]] = {"CORE": (0, 0)}  # no core dumps (they would hold the credential)
    if lim.tasks is not None:
        out["NPROC"] = (lim.tasks, lim.tasks)  # per UID, and the UID is this sandbox's alone
    if lim.open_files is not None:
        out["NOFILE"] = (lim.open_files, lim.open_files)
    if lim.file_size is not None:
        out["FSIZE"] = (int(lim.file_size), int(lim.file_size))
    return out


class Launcher:
    def __init__(self, settings: HostSettings, layout: Layout, uids: UidAllocator, tools: Tools) -> None:
        self.settings, self.layout, self.uids, self.tools = settings, layout, uids, tools
        self.view = HostView()
        self.cgroups = _cgroups.hierarchies()

    def sandbox(self, spec: LaunchSpec, opts: HostPoolOptions) -> Sandbox:
        """Everything that can be refused, refused before anything is made."""
        sb = build(spec, opts, work=self.layout.work(spec.name), store=self.layout.files(spec.name), view=self.view)
        if not visible(self.tools.setpriv, opts):
            raise SandboxError(f"setpriv ({self.tools.setpriv}) must be inside read_only_paths: it drops to the UID")
        _cgroups.require(opts.limits, self.cgroups)
        return sb

    def record(self, spec: LaunchSpec, opts: HostPoolOptions, controller: str, provider: str) -> Record:
        now = time.time()
        return Record(
            name=spec.name,
            controller=controller,
            provider=provider,
            mode="bubblewrap",
            labels=dict(spec.labels),
            uid=None,
            created_at=now,
            deadline=now + spec.max_lifetime if spec.max_lifetime else None,
            sweep=tuple(opts.read_write_paths) if opts.sweep_read_write_paths else (),
        )

    async def start(self, spec: LaunchSpec, opts: HostPoolOptions, record: Record) -> Record:
        sb = self.sandbox(spec, opts)
        write_record(self.layout, record)
        uid = await asyncio.to_thread(self.uids.acquire, spec.name, record.controller)
        record = record.model_copy(update={"uid": uid})
        write_record(self.layout, record)
        dirs = _cgroups.create(spec.name, opts.limits, self.settings.cgroup_parent, self.cgroups)
        record = record.model_copy(update={"cgroups": tuple(str(d) for d in dirs.values())})
        write_record(self.layout, record)
        _make_dirs(self.layout, spec.name, uid)
        _write_files(sb.placements, uid)
        _chown_parents(sb.placements, self.layout.work(spec.name), uid)
        plan = self._plan(spec, opts, sb, uid, record, dirs)
        _files.write_json(self.layout.plan(spec.name), asdict(plan))
        await self._spawn(spec.name)
        return record

    def _plan(
        self, spec: LaunchSpec, opts: HostPoolOptions, sb: Sandbox, uid: int, record: Record, dirs: dict[str, Path]
    ) -> Plan:
        argv = _bwrap.argv(
            sb, bwrap=self.tools.bwrap, setpriv=self.tools.setpriv, uid=uid, command=spec.command,
            status_fd=STATUS_FD, view=self.view,
        )
        memory = dirs.get("memory")
        return Plan(
            name=spec.name,
            argv=argv,
            env=sb.env,
            deadline=record.deadline,
            cgroup_procs=[str(d / "cgroup.procs") for d in dirs.values()],
            oom_control=str(memory / "memory.oom_control") if memory else None,
            rlimits=rlimits(opts),
            log_max_bytes=int(self.settings.log_max_bytes),
            start_timeout=self.settings.start_timeout,
        )

    async def _spawn(self, name: str) -> None:
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"}
        if "PYTHONPATH" in os.environ:
            env["PYTHONPATH"] = os.environ["PYTHONPATH"]
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "providers.host", "supervise", str(self.layout.dir(name)),
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            start_new_session=True, env=env, cwd="/",
        )
        try:
            async with asyncio.timeout(self.settings.start_timeout + 10):
                out, err = await proc.communicate()
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise StartFailed(f"the supervisor did not answer within {self.settings.start_timeout:g}s",
                              permanent=False) from None
        try:
            word = json.loads(out.decode("utf-8", "replace").splitlines()[0])
        except (ValueError, IndexError):
            raise StartFailed(f"the supervisor failed: {err.decode('utf-8', 'replace')[-500:]}",
                              permanent=False) from None
        error = str(word.get("error", ""))
        if not word.get("ok") and ("setup failed" in error or "supervisor failed" in error):
            raise StartFailed(error, permanent="setup failed" in error)
