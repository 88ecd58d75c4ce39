"""The fake forge's state (repositories, jobs, runners, hooks) and what every
part of it shares: the forge kind and version, the clock, the id counter.

Job statuses are Gitea's and Forgejo's own (``models/actions/status.go``):
blocked → waiting (ready for a runner) → running → success / failure /
cancelled / skipped. Each forge's renderers turn them into what it sends.
"""

from __future__ import annotations

import itertools
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from scaler.forges._common import parse_version

if TYPE_CHECKING:
    from scaler.testing.fake_forge_server.index import WorldIndex

ADMIN_TOKEN = "fake-admin-token-0123456789"  # noqa: S105 - a test fixture value
ZERO_TIME = "0001-01-01T00:00:00Z"  # Go's zero time.Time, as the forges write it
DONE = ("success", "failure", "cancelled", "skipped")
DEFAULT_VERSIONS = {"gitea": "1.25.0", "forgejo": "15.0.0+gitea-1.22.0", "github": ""}


def iso(t: float | None) -> str | None:
    return None if t is None else datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def go_time(t: float | None) -> str:
    """A Go ``time.Time`` in JSON: never absent, the zero time when unset."""
    return iso(t) or ZERO_TIME


@dataclass
class Repo:
    id: int
    full_name: str
    owner_is_org: bool = True

    @property
    def owner(self) -> str:
        return self.full_name.split("/", 1)[0]

    @property
    def name(self) -> str:
        return self.full_name.split("/", 1)[1]


@dataclass
class FJob:
    """A workflow job (one attempt)."""

    id: int
    run_id: int
    repo: Repo
    labels: tuple[str, ...]
    name: str = "build"
    status: str = "waiting"
    handle: str = field(default_factory=lambda: str(uuid.uuid4()))
    runner_id: int | None = None
    runner_name: str | None = None
    task_id: int | None = None
    created_at: float = field(default_factory=time.time)
    started_at: float | None = None
    completed_at: float | None = None
    attempt: int = 1

    @property
    def done(self) -> bool:
        return self.status in DONE

    def __setattr__(self, name: str, value: Any) -> None:
        # Whoever moves a job (the world, or a test setting ``status`` by
        # hand), the world's status index follows (``index.py``).
        before = self.__dict__.get(name)
        object.__setattr__(self, name, value)
        index = self.__dict__.get("_index")
        if index is not None and name == "status" and before != value:
            index.status_changed(self, before)


@dataclass
class FRunner:
    id: int
    name: str
    uuid: str
    token: str
    labels: tuple[str, ...] = ()
    ephemeral: bool = False
    online: bool = False
    busy: bool = False
    job_id: int | None = None
    version: str = ""
    description: str = ""
    jit: str | None = None
    had_task: bool = False  # an ephemeral runner gets one task, ever


@dataclass
class Hook:
    id: int
    url: str
    events: list[str]
    secret: str
    content_type: str = "json"
    active: bool = True
    type: str = "gitea"
    system: bool = False
    created_at: float = field(default_factory=time.time)


@dataclass
class SentDelivery:
    url: str
    headers: dict[str, str]
    body: bytes
    status: int | None = None


class ForgeBase:
    """State and version facts every part of the fake forge reads."""

    kind: str
    version: str
    token: str
    clock: Callable[[], float]
    repos: dict[str, Repo]
    jobs: dict[int, FJob]
    runners: dict[int, FRunner]
    hooks: dict[int, Hook]
    scope_tokens: dict[str, str]  # scope -> its current registration token
    requests: list[tuple[str, str]]
    tasks_version: int
    ix: WorldIndex
    port: int
    app_id: int | None
    installation_id: int

    def _init_state(self, kind: str, version: str | None, clock: Callable[[], float]) -> None:
        if kind not in DEFAULT_VERSIONS:
            raise ValueError(f"unknown forge kind {kind!r}")
        self.kind = kind
        self.version = version if version is not None else DEFAULT_VERSIONS[kind]
        self.clock = clock
        self._ids = itertools.count(100)
        self.repos, self.jobs, self.runners, self.hooks = {}, {}, {}, {}
        self.scope_tokens = {}
        self.requests = []
        self.tasks_version = 0
        from scaler.testing.fake_forge_server.index import WorldIndex

        self.ix = WorldIndex()

    def next_id(self) -> int:
        return next(self._ids)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # --- versions (what each release has; tests/forges/shapes/*.json) ---------

    @property
    def version_tuple(self) -> tuple[int, int, int]:
        return parse_version(self.version) or (0, 0, 0)

    def at_least(self, *version: int) -> bool:
        return self.version_tuple >= tuple(version)

    @property
    def lists_jobs(self) -> bool:
        """Gitea ``GET …/actions/jobs`` from 1.25; Forgejo ``…/runners/jobs`` always."""
        return self.kind != "gitea" or self.at_least(1, 25)

    @property
    def registration_tokens(self) -> list[str]:
        """Every registration token handed out (one per scope, reused)."""
        return list(self.scope_tokens.values())


__all__ = [
    "ADMIN_TOKEN",
    "DONE",
    "ZERO_TIME",
    "FJob",
    "FRunner",
    "ForgeBase",
    "Hook",
    "Repo",
    "SentDelivery",
    "go_time",
    "iso",
]
