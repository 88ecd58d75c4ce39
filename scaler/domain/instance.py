"""Runner instances and their life cycle, with legal transitions held as data."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class InstanceState(StrEnum):
    PENDING = "pending"  # planned; no credential, nothing on the provider yet
    CREATING = "creating"  # credential minted, provider.create under way
    STARTING = "starting"  # exists on the provider; runner not yet online
    IDLE = "idle"  # runner online, no job
    BUSY = "busy"  # runner is running a job
    DONE = "done"  # job over or instance exited; awaiting collection
    DELETING = "deleting"  # collector deregistering / deleting
    DELETED = "deleted"
    FAILED = "failed"  # gave up on it; the collector removes it


S = InstanceState

# The only legal moves. Everything not listed raises IllegalTransition, so a
# late or duplicated report can never resurrect a deleted instance.
TRANSITIONS: dict[InstanceState, frozenset[InstanceState]] = {
    S.PENDING: frozenset({S.CREATING, S.FAILED, S.DELETED}),
    S.CREATING: frozenset({S.PENDING, S.STARTING, S.IDLE, S.BUSY, S.DONE, S.FAILED}),
    S.STARTING: frozenset({S.IDLE, S.BUSY, S.DONE, S.FAILED, S.DELETING}),
    S.IDLE: frozenset({S.BUSY, S.DONE, S.FAILED, S.DELETING}),
    S.BUSY: frozenset({S.DONE, S.FAILED, S.DELETING}),
    S.DONE: frozenset({S.DELETING}),
    S.FAILED: frozenset({S.DELETING}),
    S.DELETING: frozenset({S.DELETED, S.BUSY}),
    S.DELETED: frozenset(),
}

# States in which the instance may still take a job (supply).
NOT_YET_BUSY = frozenset({S.PENDING, S.CREATING, S.STARTING, S.IDLE})
# Leaving NOT_YET_BUSY for one of these means a job was (probably) taken.
_TOOK_JOB = frozenset({S.BUSY, S.DONE})
# States that count against caps: anything that may exist on the provider.
LIVE = frozenset(set(InstanceState) - {S.DELETED})
# States the collector acts on.
COLLECTABLE = frozenset({S.DONE, S.FAILED})


class IllegalTransition(ValueError):
    def __init__(self, name: str, src: InstanceState, dst: InstanceState) -> None:
        super().__init__(f"instance {name}: illegal transition {src} -> {dst}")
        self.src, self.dst = src, dst


# How long an instance seen taking a job (busy, or exited) that no report has
# named yet stands for one queued job. The forge's in_progress report usually
# follows within a second; if it was lost, guessing wrong delays a later job by
# at most this long, while guessing the other way starts a runner nobody needs.
TOOK_JOB_GRACE = 10.0
# For a forge that lists its queue, the guess ends when a queue listing begun
# after it has been applied (that listing is the truth), or a report names the
# job; the grace would end it early whenever reports and listings run late (a
# storm), and start that second runner. This many resync intervals bound it in
# case listings keep failing.
TOOK_JOB_HOLD_RESYNCS = 3


@dataclass(frozen=True, slots=True)
class Instance:
    """One runner instance; immutable, every change makes a new value."""

    name: str
    pool: str
    provider: str
    state: InstanceState
    created_at: float
    updated_at: float
    runner_id: int | None = None
    job_id: int | None = None  # the job it was made for, if any
    bound: bool = False  # can only ever run job_id (Forgejo handle)
    attempts: int = 0
    not_before: float = 0.0  # back-off: no create attempt before this time
    last_error: str | None = None
    idle_since: float | None = None
    retire_reason: str | None = None
    force: bool = False  # retire even if busy (max_lifetime)
    provisioned: bool = False  # provider.create succeeded (or adopted)
    # When it was seen taking a job (busy, or exited) that no job report has
    # named yet. Until one does, or the forge's queue is listed again, one
    # queued job is taken to be running here: the runner usually claims its
    # job before the forge's in_progress webhook is applied.
    took_job_at: float | None = None
    # It ran a job on the forge (seen busy, a report named it, or it exited
    # cleanly after being seen): a forge that drops used ephemeral runners
    # has dropped, or will drop, its record.
    had_task: bool = False

    def to(self, state: InstanceState, now: float, **changes: Any) -> Instance:
        if state is not self.state and state not in TRANSITIONS[self.state]:
            raise IllegalTransition(self.name, self.state, state)
        if state is S.IDLE and self.state is not S.IDLE:
            changes.setdefault("idle_since", now)
        if state in _TOOK_JOB and self.state in NOT_YET_BUSY:
            changes.setdefault("took_job_at", now)
        if state is S.BUSY:
            changes.setdefault("had_task", True)
        return dataclasses.replace(self, state=state, updated_at=now, **changes)

    def can_go(self, state: InstanceState) -> bool:
        return state is self.state or state in TRANSITIONS[self.state]
