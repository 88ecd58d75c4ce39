"""The store: the reconciler's in-memory picture of jobs, instances and runners.

Only the reconciler calls :meth:`Store.apply`. Everything here can be rebuilt
from the forge and the providers (DESIGN, "Soft state"). Reports may arrive
late, twice or out of order, so every change goes through the transition
table and an impossible move is dropped, never forced.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

import structlog

from scaler import events as ev
from scaler.config import Config, PoolConfig
from scaler.domain.boot_failures import BootFailures
from scaler.domain.instance import (
    COLLECTABLE,
    NOT_YET_BUSY,
    TOOK_JOB_GRACE,
    TOOK_JOB_HOLD_RESYNCS,
    Instance,
    InstanceState,
)
from scaler.domain.job import Job, JobState
from scaler.forges.base import RunnerInfo
from scaler.naming import stem
from scaler.provider import (
    LABEL_CREATED_AT,
    LABEL_JOB_BOUND,
    LABEL_JOB_ID,
    LABEL_POOL,
    LABEL_RUNNER_ID,
    InstanceInfo,
    InstanceStatus,
)

log = structlog.get_logger("scaler.store")
S = InstanceState
_COLLECTOR_ACTS_ON = COLLECTABLE | {S.DELETING}

# A provider whose creates keep failing is skipped (its jobs fall back to
# lower-priority pools) for a while.
UNHEALTHY_AFTER_FAILURES = 3
# Expiry scans every job; once every few seconds is plenty.
EXPIRY_EVERY = 5.0
_BOOTING = frozenset({S.CREATING, S.STARTING})
# The exit status with which a forge's one-job runner says it reached the
# forge and found no task (forgejo-runner one-job: poll.ErrNoTaskReceived,
# ``scaler.forges.forgejo.ONE_JOB_NO_TASK_EXIT``): not a crash.
_NO_TASK_EXIT = {"forgejo": 2}
_ONLINE = frozenset({S.IDLE, S.BUSY})


@dataclass(slots=True)
class ProviderHealth:
    synced: bool = False  # first list() done: until then we must not create
    failures: int = 0
    unhealthy_until: float = 0.0


@dataclass(frozen=True, slots=True)
class Claim:
    """A job taken by an instance that was torn down before any report named
    it. Runners finish jobs faster than some forges deliver their reports, so
    the guess (``Instance.took_job_at``) outlives the instance, and ends the
    same way: a report naming the runner, a later queue listing, or the grace."""

    pool: str
    took_at: float
    job_id: int | None = None  # a job-bound instance's own job


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What the planner sees: plain values, no references into the store."""

    now: float
    queued: tuple[Job, ...]
    instances: tuple[Instance, ...]
    unavailable_providers: frozenset[str]
    claims: tuple[Claim, ...] = ()
    # Idle runners each warm pool should hold (scaler.warm), computed outside
    # the planner from the arrivals seen; pools without ``warm`` are absent.
    warm: Mapping[str, int] = field(default_factory=dict)
    # Pools in crash-loop backoff (scaler.domain.boot_failures), with until when.
    crash_loops: Mapping[str, float] = field(default_factory=dict)
    # Per forge: took-a-job guesses (``Instance.took_job_at``, claims) made
    # before this still stand for a queued job; forges not named: the grace.
    took_after: Mapping[str, float] = field(default_factory=dict)


JobStartedHook = Callable[[Job, "Instance | None"], None]
JobSeenHook = Callable[[Job, float], None]
BootedHook = Callable[[str, float], None]


class StoreObserver(Protocol):
    """Told of every job and instance change (the UI's journal); must not
    write the store."""

    def job_changed(self, old: Job | None, new: Job) -> None: ...

    def job_forgotten(self, job: Job) -> None: ...

    def instance_changed(self, old: Instance | None, new: Instance) -> None: ...


@dataclass
class Store:
    config: Config
    jobs: dict[tuple[str, int], Job] = field(default_factory=dict)
    # When each still-queued job was last reported, to tell a job that
    # vanished from the forge's queue listing from one that just arrived.
    queued_seen: dict[tuple[str, int], float] = field(default_factory=dict)
    instances: dict[str, Instance] = field(default_factory=dict)
    tombstones: dict[str, float] = field(default_factory=dict)
    runners: dict[str, dict[str, RunnerInfo]] = field(default_factory=dict)
    providers: dict[str, ProviderHealth] = field(default_factory=dict)
    forge_lists_jobs: dict[str, bool] = field(default_factory=dict)
    on_job_started: JobStartedHook | None = None
    observer: StoreObserver | None = None
    # Keys of the in-progress jobs, so a pass never scans every job (finished
    # ones are kept for ``tombstone_ttl`` and outnumber the live ones).
    in_progress: dict[tuple[str, int], None] = field(default_factory=dict)
    claims: dict[str, Claim] = field(default_factory=dict)  # by runner name
    # Learning hooks (scaler.warm): a job reported for the first time, with
    # when it was seen; a runner online (idle or busy) for the first time,
    # with its pool and the seconds since it was planned.
    on_job_seen: JobSeenHook | None = None
    on_booted: BootedHook | None = None
    # Names of the instances the collector may have to act on (done, failed,
    # being deleted, retired), so its pass never walks every instance: in a
    # storm it runs after every full plan.
    collectable: dict[str, None] = field(default_factory=dict)
    runner_listings: int = 0  # runner listings applied (the orphan collector looks again after each)

    def __post_init__(self) -> None:
        self.pools: Mapping[str, PoolConfig] = {p.name: p for p in self.config.pools}
        self._forge_of_pool = {p.name: p.forge for p in self.config.pools}
        types = {f.name: f.type for f in self.config.forges}
        self._forge_type = {p.name: types.get(p.forge, "") for p in self.config.pools}
        self._stems = tuple(stem(self.config.controller_id, p.name) + "-" for p in self.config.pools)
        for p in self.config.providers:
            self.providers.setdefault(p.name, ProviderHealth())
        self._last_expiry = float("-inf")
        limits = self.config.limits
        self.boot_failures = BootFailures(limits.backoff_initial, limits.backoff_max)

    # --- reading -----------------------------------------------------------

    def snapshot(self, now: float) -> Snapshot:
        unavailable = frozenset(name for name, h in self.providers.items() if not h.synced or h.unhealthy_until > now)
        took_after = self.took_after(now)
        if self.claims:
            grace = now - TOOK_JOB_GRACE
            self.claims = {
                n: c
                for n, c in self.claims.items()
                if c.took_at > took_after.get(self._forge_of_pool.get(c.pool, ""), grace)
            }
        claims = tuple(self.claims.values())
        instances = tuple(self.instances.values())
        return Snapshot(
            now, self.queued_jobs(), instances, unavailable, claims,
            took_after=took_after, crash_loops=self.boot_failures.held(now),
        )

    def took_after(self, now: float) -> dict[str, float]:
        """Per forge, the oldest took-a-job guess that still stands: the grace,
        or for a forge whose queue listings end guesses, until one does."""
        hold = max(TOOK_JOB_GRACE, TOOK_JOB_HOLD_RESYNCS * self.config.timing.resync_interval)
        return {
            f.name: now - (hold if self.forge_lists_jobs.get(f.name) else TOOK_JOB_GRACE) for f in self.config.forges
        }

    def queued_jobs(self) -> tuple[Job, ...]:
        # ``queued_seen`` holds exactly the queued jobs' keys, in arrival order.
        return tuple(j for k in self.queued_seen if (j := self.jobs.get(k)) is not None and j.state is JobState.QUEUED)

    def in_progress_jobs(self) -> Iterable[Job]:
        return (j for k in self.in_progress if (j := self.jobs.get(k)) is not None and j.state is JobState.IN_PROGRESS)

    def instances_of_forge(self, forge: str) -> Iterable[Instance]:
        return (i for i in self.instances.values() if self._forge_of_pool.get(i.pool) == forge)

    def is_ours(self, runner_name: str) -> bool:
        """Whether a forge runner name was made by this controller for a pool."""
        return runner_name.startswith(self._stems)

    # --- writing (reconciler only) -----------------------------------------

    def _filed(self, inst: Instance) -> None:
        self.instances[inst.name] = inst
        if inst.state in _COLLECTOR_ACTS_ON or inst.retire_reason is not None:
            self.collectable[inst.name] = None
        else:
            self.collectable.pop(inst.name, None)

    def add_pending(self, inst: Instance) -> None:
        self._filed(inst)
        self.tombstones.pop(inst.name, None)
        if self.observer is not None:
            self.observer.instance_changed(None, inst)

    def apply(self, event: ev.Event, now: float) -> None:
        handler = _HANDLERS[type(event)]
        handler(self, event, now)

    def move(
        self, name: str, state: InstanceState, now: float, *, came_online: bool = False, **changes: object
    ) -> Instance | None:
        """Move an instance to ``state`` (dropped when the life cycle forbids
        it). ``came_online``: its runner reached the forge even though no one
        saw it online (forgejo-runner's "no task" exit), so it is no crash."""
        inst = self.instances.get(name)
        if inst is None:
            return None
        if not inst.can_go(state):
            log.debug("transition dropped", instance=name, src=str(inst.state), dst=str(state))
            return None
        new = inst.to(state, now, **changes)
        if inst.state in _BOOTING and state is not inst.state:
            self._boot_ended(inst, new, now, came_online)
        if state is S.DELETED:
            del self.instances[name]
            self.collectable.pop(name, None)
            self.tombstones[name] = now
            if inst.took_job_at is not None:
                self.claims[name] = Claim(inst.pool, inst.took_job_at, inst.job_id if inst.bound else None)
        else:
            self._filed(new)
        if self.observer is not None:
            self.observer.instance_changed(inst, new)
        return new

    def _boot_ended(self, inst: Instance, new: Instance, now: float, came_online: bool) -> None:
        """A booting instance came online, or ended without ever being online
        (crash-loop backoff); a create that never reached the provider is the
        provider's failure (``ProviderHealth``), not the pool's."""
        if came_online:
            self.boot_failures.online(inst.pool)
            return
        if new.state in _ONLINE:
            self.boot_failures.online(inst.pool)
            if self.on_booted is not None:
                self.on_booted(inst.pool, now - inst.created_at)
            return
        wasted = new.state in (S.DONE, S.FAILED) and inst.provisioned and not new.had_task
        if wasted and self.boot_failures.ended_before_online(inst.pool, now, new.last_error):
            ends, until, _ = self.boot_failures.streak(inst.pool)
            log.warning("pool in crash-loop backoff", pool=inst.pool, ended_before_online=ends,
                        seconds=round(until - now, 1), last_error=new.last_error)

    def update(self, name: str, **changes: object) -> None:
        inst = self.instances.get(name)
        if inst is not None:
            new = dataclasses.replace(inst, **changes)  # type: ignore[arg-type]
            self._filed(new)
            if self.observer is not None:
                self.observer.instance_changed(inst, new)

    def expire(self, now: float) -> bool:
        """Forget what can no longer matter, so memory stays bounded: finished
        jobs and deleted names past the tombstone TTL, running jobs whose end
        was never reported (past every pool's max_lifetime), and queued jobs of
        forges that cannot list jobs (nothing else would ever remove them).
        True when it forgot any job."""
        if now - self._last_expiry < EXPIRY_EVERY:
            return False
        self._last_expiry = now
        ttl = self.config.timing.tombstone_ttl
        longest = max((p.max_lifetime for p in self.config.pools), default=0.0) + ttl
        stale = [k for k, j in self.jobs.items() if self._stale(j, now, ttl, longest)]
        for key in stale:
            self._forget_job(key)
        for name in [n for n, t in self.tombstones.items() if t < now - ttl]:
            del self.tombstones[name]
        return bool(stale)

    def _forget_job(self, key: tuple[str, int]) -> None:
        job = self.jobs.pop(key, None)
        self.queued_seen.pop(key, None)
        self.in_progress.pop(key, None)
        if job is not None and self.observer is not None:
            self.observer.job_forgotten(job)

    def _stale(self, job: Job, now: float, ttl: float, longest: float) -> bool:
        if job.state is JobState.COMPLETED:
            return (job.completed_at or 0.0) < now - ttl
        if job.state is JobState.IN_PROGRESS:
            return (job.started_at or 0.0) < now - longest
        lists = self.forge_lists_jobs.get(job.forge, True)
        return not lists and self.queued_seen.get(job.key, now) < now - ttl

    # --- event handlers ----------------------------------------------------

    def _job(self, e: ev.JobReported, now: float) -> None:
        self._merge_job(e.job, now, e.received_at)

    def _merge_job(self, job: Job, now: float, seen_at: float) -> None:
        old = self.jobs.get(job.key)
        if old is None and self.on_job_seen is not None:
            self.on_job_seen(job, seen_at)
        new = job if old is None else old.merge(job)
        if new.state is JobState.QUEUED and new.queued_at is None:
            new = dataclasses.replace(new, queued_at=seen_at)
        if new.state is JobState.IN_PROGRESS and new.started_at is None:
            new = dataclasses.replace(new, started_at=now)
        if new.state is JobState.COMPLETED and new.completed_at is None:
            new = dataclasses.replace(new, completed_at=now)
        self.jobs[job.key] = new
        if new.state is JobState.QUEUED:
            self.queued_seen[job.key] = seen_at
        else:
            self.queued_seen.pop(job.key, None)
        if new.state is JobState.IN_PROGRESS:
            self.in_progress[job.key] = None
        else:
            self.in_progress.pop(job.key, None)
        if self.observer is not None and (old is None or old.state is not new.state):
            self.observer.job_changed(old, new)
        self._job_to_instance(old, new, now)

    def _job_to_instance(self, old: Job | None, new: Job, now: float) -> None:
        if new.runner_name and new.state is not JobState.QUEUED:
            self.claims.pop(new.runner_name, None)
        inst = self.instances.get(new.runner_name) if new.runner_name else None
        started = new.state is not JobState.QUEUED and (old is None or old.state is JobState.QUEUED)
        if started and self.on_job_started is not None:
            self.on_job_started(new, inst)
        if inst is None:
            return
        if new.state is JobState.IN_PROGRESS:
            self.move(inst.name, S.BUSY, now, job_id=new.id, took_job_at=None)
        elif new.state is JobState.COMPLETED:
            self.move(inst.name, S.DONE, now, job_id=new.id, took_job_at=None, had_task=True)

    def _forge_synced(self, e: ev.ForgeSynced, now: float) -> None:
        self.runner_listings += 1
        # A runner whose instance was torn down (deregistered) after this
        # listing began is stale here, not an orphan to deregister again.
        self.runners[e.forge] = {
            r.name: r for r in e.runners if self.tombstones.get(r.name, float("-inf")) < e.started_at
        }
        if not e.jobs_unknown:
            self.forge_lists_jobs[e.forge] = e.queued is not None
        queue_from = e.queue_listed_from
        if e.queued is not None:
            listed = {j.key for j in e.queued}
            for key, seen in list(self.queued_seen.items()):
                # Gone from the queue and not reported since the listing began:
                # taken by a runner or cancelled. Reports will say which.
                if key[0] == e.forge and key not in listed and seen < queue_from:
                    self._forget_job(key)
            for job in e.queued:
                self._merge_job(job, now, now)
            for name, claim in list(self.claims.items()):
                if self._forge_of_pool.get(claim.pool) == e.forge and claim.took_at < queue_from:
                    del self.claims[name]  # as for live instances, below
        for inst in list(self.instances_of_forge(e.forge)):
            if e.queued is not None and inst.took_job_at is not None and inst.took_job_at < queue_from:
                # A queue listing begun after the instance took its job no
                # longer holds that job: the planner need not assume it taken.
                self.update(inst.name, took_job_at=None)
            self._runner_to_instance(inst, self.runners[e.forge].get(inst.name), e, now)

    def _runner_to_instance(self, inst: Instance, runner: RunnerInfo | None, e: ev.ForgeSynced, now: float) -> None:
        listed_at = e.started_at
        if runner is not None:
            if inst.runner_id is None:
                self.update(inst.name, runner_id=runner.id)
            if runner.busy and e.queued is not None:
                # The queue was listed after the runners (``Resync``): it no
                # longer holds the job this runner took.
                self.move(inst.name, S.BUSY, now, took_job_at=None)
            elif runner.busy:
                self.move(inst.name, S.BUSY, now)
            elif runner.online and inst.state in (S.CREATING, S.STARTING):
                self.move(inst.name, S.IDLE, now)
        elif inst.state in (S.IDLE, S.BUSY) and inst.updated_at < listed_at:
            # An ephemeral runner the forge removed after its job: nothing
            # left to deregister.
            self.move(inst.name, S.DONE, now, had_task=True)

    def _provider_synced(self, e: ev.ProviderSynced, now: float) -> None:
        health = self.providers.setdefault(e.provider, ProviderHealth())
        health.synced = True
        seen = set()
        for info in e.instances:
            seen.add(info.name)
            self._observe(e.provider, info, now, listed_at=e.started_at)
        for inst in list(self.instances.values()):
            if (
                inst.provider == e.provider
                and inst.provisioned
                and inst.name not in seen
                and inst.state in (S.STARTING, S.IDLE, S.BUSY)
                and inst.updated_at < e.started_at
            ):
                self.move(inst.name, S.DONE, now, last_error="vanished from provider")

    def _provider_sync_failed(self, e: ev.ProviderSyncFailed, now: float) -> None:
        log.warning("provider list failed", provider=e.provider, error=e.error)

    def _observed(self, e: ev.InstanceObserved, now: float) -> None:
        self._observe(e.provider, e.info, now)

    def _observe(self, provider: str, info: InstanceInfo, now: float, listed_at: float | None = None) -> None:
        inst = self.instances.get(info.name)
        if inst is None:
            if not self._stale_after_teardown(info, listed_at):
                self._adopt(provider, info, now)
            return
        if info.status is InstanceStatus.EXITED:
            changes: dict[str, object] = {"last_error": f"exit code {info.exit_code}" if info.exit_code else None}
            if info.exit_code and inst.state in NOT_YET_BUSY:
                changes["took_job_at"] = None  # killed or crashed before anyone saw it busy: no job taken
            elif not info.exit_code and inst.state in NOT_YET_BUSY:
                changes["had_task"] = True  # an ephemeral runner exits cleanly after its one job
            no_task = info.exit_code == _NO_TASK_EXIT.get(self._forge_type.get(inst.pool, ""))
            self.move(inst.name, S.DONE, now, came_online=no_task, **changes)
        elif info.status is InstanceStatus.FAILED:
            self.move(inst.name, S.FAILED, now, last_error=info.reason or "failed on provider")
        elif inst.state is S.CREATING:
            self.move(inst.name, S.STARTING, now, provisioned=True)

    def _stale_after_teardown(self, info: InstanceInfo, listed_at: float | None) -> bool:
        """A report about an instance already torn down (its delete succeeded):
        any watch event that arrived late (a container's start, seen after
        its delete, came back as an "adopted" instance whose runner was then
        deregistered a second time), or a listing begun before the delete.
        A re-created name has no tombstone (``add_pending``), and an instance
        that really survived its delete is in a listing begun after it."""
        gone_at = self.tombstones.get(info.name)
        if gone_at is None:
            return False
        return listed_at is None or listed_at < gone_at

    def _adopt(self, provider: str, info: InstanceInfo, now: float) -> None:
        """An instance of ours the store does not know: after a restart, or a
        create whose answer was lost. Deleted names come back as DONE so the
        collector removes them again."""
        labels = info.labels
        created = _float(labels.get(LABEL_CREATED_AT)) or info.created_at or now
        runner_id = _int(labels.get(LABEL_RUNNER_ID))
        state = {InstanceStatus.EXITED: S.DONE, InstanceStatus.FAILED: S.FAILED}.get(info.status, S.STARTING)
        if self.tombstones.pop(info.name, None) is not None or labels.get(LABEL_POOL) not in self.pools:
            state = S.DONE if state is S.STARTING else state
        inst = Instance(
            name=info.name,
            pool=labels.get(LABEL_POOL, "?"),
            provider=provider,
            state=state,
            created_at=created,
            updated_at=now,
            runner_id=runner_id,
            job_id=_int(labels.get(LABEL_JOB_ID)),
            bound=labels.get(LABEL_JOB_BOUND) == "true",
            provisioned=True,
            last_error=info.reason,
        )
        self._filed(inst)
        if self.observer is not None:
            self.observer.instance_changed(None, inst)
        log.info("instance adopted", instance=info.name, pool=inst.pool, state=str(state))

    def _minted(self, e: ev.Minted, now: float) -> None:
        self.move(e.name, S.CREATING, now, runner_id=e.runner_id, bound=e.bound_to_job)

    def _created(self, e: ev.Created, now: float) -> None:
        inst = self.instances.get(e.name)
        if inst is None:
            return
        self.providers.setdefault(inst.provider, ProviderHealth()).failures = 0
        self.update(e.name, provisioned=True, last_error=None)
        if inst.state is S.PENDING:  # a retried create reuses its credential: no Minted event
            self.move(e.name, S.CREATING, now)
        if self.instances[e.name].state is S.CREATING:
            self.move(e.name, S.STARTING, now)
        self._observe(inst.provider, e.info, now)

    def _launch_failed(self, e: ev.LaunchFailed, now: float) -> None:
        inst = self.instances.get(e.name)
        if inst is None:
            return
        limits = self.config.limits
        attempts = inst.attempts + 1
        if e.temporary:
            health = self.providers.setdefault(inst.provider, ProviderHealth())
            health.failures += 1
            if health.failures >= UNHEALTHY_AFTER_FAILURES:
                health.unhealthy_until = now + backoff(health.failures, limits.backoff_initial, limits.backoff_max)
        if e.temporary and attempts < limits.max_attempts:
            delay = e.retry_after or backoff(attempts, limits.backoff_initial, limits.backoff_max)
            if inst.state is S.CREATING:
                self.move(e.name, S.PENDING, now)
            self.update(e.name, attempts=attempts, not_before=now + delay, last_error=e.error)
        else:
            self.move(e.name, S.FAILED, now, attempts=attempts, last_error=e.error)

    def _teardown_started(self, e: ev.TeardownStarted, now: float) -> None:
        self.move(e.name, S.DELETING, now)

    def _teardown_blocked(self, e: ev.TeardownBlocked, now: float) -> None:
        self.move(e.name, S.BUSY, now, retire_reason=None)

    def _teardown_failed(self, e: ev.TeardownFailed, now: float) -> None:
        inst = self.instances.get(e.name)
        if inst is not None:
            limits = self.config.limits
            delay = backoff(inst.attempts + 1, limits.backoff_initial, limits.backoff_max)
            self.update(e.name, attempts=inst.attempts + 1, not_before=now + delay, last_error=e.error)

    def _torn_down(self, e: ev.TornDown, now: float) -> None:
        inst = self.instances.get(e.name)
        if inst is not None and inst.state is not S.DELETING:
            self.move(e.name, S.DELETING, now)
        self.move(e.name, S.DELETED, now)
        if inst is not None and e.name not in self.instances:
            # Its runner was deregistered: forget the listed record too, or
            # the orphan collector deregisters it a second time.
            self.runners.get(self._forge_of_pool.get(inst.pool, ""), {}).pop(e.name, None)


def backoff(attempt: int, initial: float, maximum: float) -> float:
    return float(min(maximum, initial * (2 ** max(0, attempt - 1))))


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value else None
    except ValueError:
        return None


def _float(value: str | None) -> float | None:
    try:
        return float(value) if value else None
    except ValueError:
        return None


_HANDLERS: dict[type, Callable[[Store, object, float], None]] = {
    ev.JobReported: Store._job,  # type: ignore[dict-item]
    ev.ForgeSynced: Store._forge_synced,  # type: ignore[dict-item]
    ev.ProviderSynced: Store._provider_synced,  # type: ignore[dict-item]
    ev.ProviderSyncFailed: Store._provider_sync_failed,  # type: ignore[dict-item]
    ev.InstanceObserved: Store._observed,  # type: ignore[dict-item]
    ev.Minted: Store._minted,  # type: ignore[dict-item]
    ev.Created: Store._created,  # type: ignore[dict-item]
    ev.LaunchFailed: Store._launch_failed,  # type: ignore[dict-item]
    ev.TeardownStarted: Store._teardown_started,  # type: ignore[dict-item]
    ev.TeardownBlocked: Store._teardown_blocked,  # type: ignore[dict-item]
    ev.TeardownFailed: Store._teardown_failed,  # type: ignore[dict-item]
    ev.TornDown: Store._torn_down,  # type: ignore[dict-item]
}

__all__ = ["NOT_YET_BUSY", "ProviderHealth", "Snapshot", "Store", "backoff"]
