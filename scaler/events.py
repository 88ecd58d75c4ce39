"""Events: the only way anything reaches the store.

Webhook handlers, the resync loop, provider watches and the reconciler's own
background tasks each post events; the reconciler applies them in order. This
is what keeps the store single-writer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from scaler.domain.job import Job
from scaler.forges.base import RunnerInfo
from scaler.provider import InstanceInfo


@dataclass(frozen=True, slots=True)
class JobReported:
    """A webhook (or a poll) told us about a job."""

    job: Job
    received_at: float
    delivery_id: str | None = None


@dataclass(frozen=True, slots=True)
class ForgeSynced:
    """A full read of one forge. ``queued`` is None when the forge cannot list jobs."""

    forge: str
    queued: Sequence[Job] | None
    runners: Sequence[RunnerInfo]
    started_at: float
    # The job poll was skipped or failed this pass: the queue is unknown, which
    # is not the same as a forge that cannot list jobs (queued=None).
    jobs_unknown: bool = False
    # When the queue listing began: after the runner listing ended (``Resync``
    # lists runners first), so a runner listed busy took a job the queue
    # listing no longer holds. None: at ``started_at``.
    queue_started_at: float | None = None

    @property
    def queue_listed_from(self) -> float:
        return self.started_at if self.queue_started_at is None else self.queue_started_at


@dataclass(frozen=True, slots=True)
class ProviderSynced:
    """A full ``list()`` of one provider, begun at ``started_at``."""

    provider: str
    instances: Sequence[InstanceInfo]
    started_at: float


@dataclass(frozen=True, slots=True)
class ProviderSyncFailed:
    provider: str
    error: str


@dataclass(frozen=True, slots=True)
class InstanceObserved:
    """A provider watch reported a change of one instance."""

    provider: str
    info: InstanceInfo


@dataclass(frozen=True, slots=True)
class Minted:
    name: str
    runner_id: int | None
    bound_to_job: bool = False


@dataclass(frozen=True, slots=True)
class Created:
    name: str
    info: InstanceInfo


@dataclass(frozen=True, slots=True)
class LaunchFailed:
    name: str
    error: str
    temporary: bool
    retry_after: float | None = None
    minted: bool = False  # a credential exists on the forge for this name


@dataclass(frozen=True, slots=True)
class TeardownStarted:
    name: str


@dataclass(frozen=True, slots=True)
class TeardownBlocked:
    """The forge reports the runner busy: it is not torn down."""

    name: str


@dataclass(frozen=True, slots=True)
class TeardownFailed:
    name: str
    error: str


@dataclass(frozen=True, slots=True)
class TornDown:
    name: str


Event = (
    JobReported
    | ForgeSynced
    | ProviderSynced
    | ProviderSyncFailed
    | InstanceObserved
    | Minted
    | Created
    | LaunchFailed
    | TeardownStarted
    | TeardownBlocked
    | TeardownFailed
    | TornDown
)
