"""The provider protocol: what the core asks of Kubernetes, Docker, libvirt, …

Implementations live in ``providers/`` and are found through the entry-point
group ``runner_scaler.providers``; the core never imports one by name. A
provider imports only this module, :mod:`scaler.errors` and
:mod:`scaler.secrets` from the core.

Contract (checked by ``tests/contract``, run against every provider):

* every call is idempotent: ``create`` of an existing name adopts it and
  returns its info; ``delete`` of a missing name succeeds;
* ``list`` returns only this controller's instances (found by the
  ``LABEL_CONTROLLER`` stamp), and everything needed to rebuild the core's
  state is in ``InstanceInfo.labels``;
* failures raise :class:`ProviderTemporaryError` (retry with back-off) or
  :class:`ProviderPermanentError` (give up on this instance).
"""

from __future__ import annotations

import builtins
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar, Protocol, runtime_checkable

from scaler.secrets import Secret

# Stamps written on every instance (labels, annotations or domain metadata).
LABEL_CONTROLLER = "runner-scaler.io/controller"
LABEL_POOL = "runner-scaler.io/pool"
LABEL_RUNNER_NAME = "runner-scaler.io/runner-name"
LABEL_RUNNER_ID = "runner-scaler.io/runner-id"
LABEL_CREATED_AT = "runner-scaler.io/created-at"
LABEL_JOB_ID = "runner-scaler.io/job-id"
LABEL_JOB_BOUND = "runner-scaler.io/job-bound"  # "true": the runner serves only LABEL_JOB_ID

ENTRY_POINT_GROUP = "runner_scaler.providers"


class InstanceStatus(StrEnum):
    """What the provider sees of an instance (not the core's life cycle)."""

    STARTING = "starting"  # created, not running yet (pulling, booting, scheduling)
    RUNNING = "running"
    EXITED = "exited"  # ended by itself (runner finished); see exit_code
    FAILED = "failed"  # cannot run (image missing, OOM, evicted); see reason


@dataclass(frozen=True, slots=True)
class CredentialFile:
    """A file put into the instance before the runner starts (mode 0600)."""

    path: str  # absolute path inside the instance
    content: Secret
    mode: int = 0o600


@dataclass(frozen=True, slots=True)
class LaunchSpec:
    """Everything a provider needs to start one runner instance."""

    name: str
    pool: str
    image: str
    command: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)
    files: tuple[CredentialFile, ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict)
    # The pool's provider-specific options (already validated by the provider's
    # ``pool_options`` model when the config was loaded).
    options: Mapping[str, Any] = field(default_factory=dict)
    # The pool's ``max_lifetime`` (seconds), for a provider that can enforce
    # it itself (a deadline that holds even while the scaler is down).
    max_lifetime: float | None = None


@dataclass(frozen=True, slots=True)
class InstanceInfo:
    name: str
    status: InstanceStatus
    labels: Mapping[str, str]
    created_at: float | None = None
    exit_code: int | None = None
    reason: str | None = None  # e.g. "OOMKilled", "ImagePullBackOff"
    host: str | None = None

    @property
    def pool(self) -> str | None:
        return self.labels.get(LABEL_POOL)


@dataclass(frozen=True, slots=True)
class Finding:
    """One line of ``runner-scaler check``."""

    level: str  # "ok" | "warning" | "error"
    subject: str  # e.g. "provider docker-a", "forge gitea"
    message: str

    def __str__(self) -> str:
        return f"{self.level.upper():7} {self.subject}: {self.message}"


@dataclass(frozen=True, slots=True)
class ProviderSettings:
    """The part of the config a provider is built from."""

    name: str
    type: str
    controller_id: str
    options: Mapping[str, Any]


@runtime_checkable
class Provider(Protocol):
    name: str

    async def create(self, launch: LaunchSpec) -> InstanceInfo: ...

    async def delete(self, name: str) -> None: ...

    async def get(self, name: str) -> InstanceInfo | None: ...

    async def list(self) -> list[InstanceInfo]: ...

    def watch(self) -> AsyncIterator[InstanceInfo]:
        """Changes as they happen (exits); may yield nothing. Polling via
        ``list`` remains the source of truth."""
        ...

    async def check(self, pools: Mapping[str, Mapping[str, Any]]) -> builtins.list[Finding]:
        """Probe reachability and permissions for these pools (name → options)
        without creating anything."""
        ...

    async def close(self) -> None: ...


class ProviderFactory(Protocol):
    """What the entry point names: a class (or callable) with these members.

    Optionally also ``validate_pool(pool, forge) -> list[str]`` (a static or
    class method): the pool's and its forge's config as plain data (what
    ``model_dump(mode="json")`` gives), returning problems as ``key: reason``
    relative to the pool (``repositories: …``). The plugin loader consults it
    for every pool on the provider, so ``serve``, ``check`` and
    ``build_providers`` refuse such a pool naming the key — a provider's rule
    about which pools it accepts (e.g. the host provider's trusted-repository
    allow-list) without a special case in the core.
    """

    # Pydantic models (or None) validating the provider's and each pool's options.
    settings_model: ClassVar[Any]
    pool_options_model: ClassVar[Any]

    def __call__(self, settings: ProviderSettings) -> Provider: ...
