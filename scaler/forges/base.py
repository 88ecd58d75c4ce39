"""The forge adapter protocol (Gitea, Forgejo, GitHub, and the fake).

An adapter turns deliveries into job reports, lists queued jobs and runners,
mints per-runner credentials and deregisters runners. It raises the core's
:class:`ForgeTemporaryError` / :class:`ForgePermanentError`,
:class:`SignatureError` / :class:`MalformedDelivery` and
:class:`RunnerBusyError`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from scaler.domain.job import Job
from scaler.provider import CredentialFile, Finding

if TYPE_CHECKING:
    from scaler.config import ForgeConfig, PoolConfig


@dataclass(frozen=True, slots=True)
class Delivery:
    """A verified, parsed delivery.

    ``job`` is ``None`` for deliveries the scaler deliberately ignores (ping,
    other events, job states no runner is needed for); ``ignored`` says why.
    """

    delivery_id: str | None
    event: str
    action: str | None
    job: Job | None
    ignored: str | None = None


@dataclass(frozen=True, slots=True)
class RunnerInfo:
    """A runner as the forge lists it."""

    id: int
    name: str
    online: bool
    busy: bool
    labels: tuple[str, ...] = ()
    ephemeral: bool = False


@dataclass(frozen=True, slots=True)
class RunnerLaunch:
    """What a forge needs the instance to run: a provider-neutral launch.

    The core adds the instance name, pool, provider options and stamps to make
    a :class:`scaler.provider.LaunchSpec`. ``files`` carry the per-runner
    credential; ``env`` must never hold a credential.
    """

    runner_id: int | None
    runner_name: str
    image: str
    command: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)
    files: tuple[CredentialFile, ...] = ()
    # The runner can only ever run the job it was minted for (Forgejo handle):
    # the planner must not count it as supply for any other job.
    bound_to_job: bool = False


@runtime_checkable
class ForgeAdapter(Protocol):
    name: str  # the config's forge name (also the webhook path segment)
    kind: str  # "gitea" | "forgejo" | "github" | "fake"
    # The forge deletes an ephemeral runner's record itself once its job is
    # over, so the collector need not (one call less per job); a record that
    # lingers anyway is an orphan the resync's runner listing finds.
    drops_used_runners: bool

    def verify(self, headers: Mapping[str, str], body: bytes) -> None:
        """Raise SignatureError unless the delivery is signed with a configured
        secret. ``headers`` keys are lower-case."""
        ...

    def parse(self, headers: Mapping[str, str], body: bytes) -> Delivery:
        """Raise MalformedDelivery for anything the forge could not have sent."""
        ...

    async def list_queued_jobs(self) -> list[Job] | None:
        """Jobs waiting for a runner; ``None`` when the forge cannot list them
        (then only webhooks and ``min_idle`` create demand)."""
        ...

    async def list_runners(self) -> list[RunnerInfo]: ...

    async def get_runner(self, runner_id: int) -> RunnerInfo | None: ...

    async def mint(self, pool: PoolConfig, runner_name: str, job: Job | None) -> RunnerLaunch:
        """Create a per-runner credential (registered ephemeral) and the launch.

        Never retried blindly: a mint whose answer was lost is found again
        through ``list_runners`` by name."""
        ...

    async def deregister(self, runner_id: int) -> None:
        """Remove a runner; missing is success; busy raises RunnerBusyError."""
        ...

    async def delete_runner(self, runner_id: int) -> None:
        """Remove the runner of an instance that is over (its job completed, it
        exited, failed or vanished), without asking first whether it is busy:
        one call instead of two. Missing is success; a refusal because the
        forge still thinks it busy raises RunnerBusyError."""
        ...

    async def check(self) -> list[Finding]: ...

    async def aclose(self) -> None: ...


class ForgeFactory(Protocol):
    def __call__(self, config: ForgeConfig) -> ForgeAdapter: ...
