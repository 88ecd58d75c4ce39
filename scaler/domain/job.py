"""Jobs as the forge reports them; state only moves forward."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from enum import StrEnum


class JobState(StrEnum):
    QUEUED = "queued"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"


_ORDER = {JobState.QUEUED: 0, JobState.IN_PROGRESS: 1, JobState.COMPLETED: 2}


@dataclass(frozen=True, slots=True)
class Job:
    """One workflow job on one forge.

    ``handle`` is Forgejo's job handle (binds a runner to this job);
    ``runner_name`` is known once a runner picked the job up.
    """

    forge: str
    id: int
    repository: str
    labels: tuple[str, ...]
    state: JobState
    run_id: int | None = None
    runner_name: str | None = None
    handle: str | None = None
    queued_at: float | None = None
    started_at: float | None = None
    completed_at: float | None = None

    @property
    def key(self) -> tuple[str, int]:
        return (self.forge, self.id)

    def merge(self, newer: Job) -> Job:
        """Combine two reports of this job; the state never moves backwards.

        Deliveries can arrive duplicated or out of order, so the result keeps
        the furthest state and any field one side knows and the other does not.
        """
        ahead = newer if _ORDER[newer.state] >= _ORDER[self.state] else self
        other = self if ahead is newer else newer
        return dataclasses.replace(
            ahead,
            labels=ahead.labels or other.labels,
            repository=ahead.repository or other.repository,
            run_id=ahead.run_id if ahead.run_id is not None else other.run_id,
            runner_name=ahead.runner_name or other.runner_name,
            handle=ahead.handle or other.handle,
            queued_at=_first(self.queued_at, newer.queued_at),
            started_at=_first(self.started_at, newer.started_at),
            completed_at=_first(self.completed_at, newer.completed_at),
        )


def _first(a: float | None, b: float | None) -> float | None:
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)
