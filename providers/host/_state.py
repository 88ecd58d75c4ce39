"""The provider's state directory: who each instance is, and what became of it.

Layout (every file written by this process, mode 0600, in 0700 directories)::

    <state_dir>/uids/<uid>                  lease: which instance holds the UID (_uids.py)
    <state_dir>/instances/<name>/instance.json  identity (stamps) — written at create
    <state_dir>/instances/<name>/plan.json      what the supervisor runs
    <state_dir>/instances/<name>/runtime.json   supervisor + bwrap identities (pid, start time, boot)
    <state_dir>/instances/<name>/result.json    exit code and reason, once it ended
    <state_dir>/instances/<name>/output.log     the runner's output (capped)
    <work_root>/<name>/work, …/files            the sandbox's work dir and credential files

Every record is validated when read (``_files.read_json`` + a strict model);
one that fails is never acted on beyond removing our own directories.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from providers.host import _files
from providers.host._proc import ProcessId

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
M = TypeVar("M", bound=BaseModel)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Record(_Strict):
    version: Literal[1] = 1
    name: str = Field(pattern=NAME.pattern)
    controller: str
    provider: str
    mode: Literal["bubblewrap", "systemd"]
    labels: dict[str, str]
    uid: int | None  # bubblewrap: the leased UID; systemd: DynamicUser's, unknown
    created_at: float
    deadline: float | None = None
    cgroups: tuple[str, ...] = ()
    sweep: tuple[str, ...] = ()  # read-write host paths to clear of the UID's files at teardown
    unit: str | None = None


class Ident(_Strict):
    pid: int = Field(gt=1)
    starttime: int = Field(ge=0)
    boot_id: str

    def process(self) -> ProcessId:
        return ProcessId(self.pid, self.starttime, self.boot_id)


class Runtime(_Strict):
    supervisor: Ident
    bwrap: Ident
    sandbox_pid: int | None = None  # pid 1 of the sandbox's PID namespace (as the host sees it)


class Result(_Strict):
    exit_code: int | None
    reason: str | None = None  # "OOMKilled", "max_lifetime", "setup failed: …"
    finished_at: float


class Layout:
    def __init__(self, state_dir: Path, work_root: Path) -> None:
        self.state_dir = state_dir
        self.instances = state_dir / "instances"
        self.work_root = work_root

    def dir(self, name: str) -> Path:
        return self.instances / checked(name)

    def record(self, name: str) -> Path:
        return self.dir(name) / "instance.json"

    def plan(self, name: str) -> Path:
        return self.dir(name) / "plan.json"

    def runtime(self, name: str) -> Path:
        return self.dir(name) / "runtime.json"

    def result(self, name: str) -> Path:
        return self.dir(name) / "result.json"

    def log(self, name: str) -> Path:
        return self.dir(name) / "output.log"

    def work_base(self, name: str) -> Path:
        return self.work_root / checked(name)

    def work(self, name: str) -> Path:
        return self.work_base(name) / "work"

    def files(self, name: str) -> Path:
        return self.work_base(name) / "files"

    def names(self) -> list[str]:
        try:
            return sorted(n.name for n in self.instances.iterdir() if NAME.match(n.name))
        except FileNotFoundError:
            return []


def checked(name: str) -> str:
    if not NAME.match(name):
        raise ValueError(f"instance name {name!r}: letters, digits, '_', '.', '-' (max 63)")
    return name


def load_record(layout: Layout, name: str) -> Record:
    """The validated identity of ``name``; FileNotFoundError, or Untrusted."""
    data = _files.read_json(layout.record(name))
    try:
        record = Record.model_validate(data)
    except ValidationError as exc:
        raise _files.Untrusted(f"{layout.record(name)}: {exc.error_count()} invalid field(s)") from None
    if record.name != name:
        raise _files.Untrusted(f"{layout.record(name)}: names {record.name!r}")
    return record


def load_runtime(layout: Layout, name: str) -> Runtime | None:
    return _load(Runtime, layout.runtime(name))


def load_result(layout: Layout, name: str) -> Result | None:
    return _load(Result, layout.result(name))


def _load(model: type[M], path: Path) -> M | None:
    try:
        return model.model_validate(_files.read_json(path))
    except (OSError, _files.Untrusted, ValidationError):
        return None
