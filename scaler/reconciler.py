"""The reconciler: the one writer of the store.

Each pass drains the inbox into the store, asks the planner for actions and
starts launches (mint a credential → ``provider.create``) as bounded
background tasks whose results come back as events.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import structlog

from scaler import events as ev
from scaler import metrics
from scaler.clock import Clock
from scaler.config import Config, PoolConfig
from scaler.domain.instance import Instance, InstanceState
from scaler.domain.job import Job, JobState
from scaler.errors import ForgeOutcomeUnknown, PermanentError, TemporaryError, is_temporary
from scaler.forges._limit import call_kind
from scaler.forges.base import ForgeAdapter, RunnerLaunch
from scaler.loops import Inbox, TaskSet
from scaler.naming import instance_name
from scaler.planner import Plan, PoolIndex, place_new, plan
from scaler.provider import (
    LABEL_CONTROLLER,
    LABEL_CREATED_AT,
    LABEL_JOB_BOUND,
    LABEL_JOB_ID,
    LABEL_POOL,
    LABEL_RUNNER_ID,
    LABEL_RUNNER_NAME,
    InstanceInfo,
    InstanceStatus,
    LaunchSpec,
    Provider,
)
from scaler.runner_lookup import RunnerListings
from scaler.secrets import forget_secret_value
from scaler.store import Snapshot, Store
from scaler.warm import WarmPools

log = structlog.get_logger("scaler.reconciler")
S = InstanceState
_STILL_STARTING = frozenset({InstanceStatus.STARTING, InstanceStatus.RUNNING})
# The shortest time between two full plans that events (not the timer) ask for.
FULL_PLAN_GAP = 0.05
# Events applied between two yields to the event loop.
DRAIN_SLICE = 64


@dataclass
class Reconciler:
    config: Config
    store: Store
    forges: Mapping[str, ForgeAdapter]
    providers: Mapping[str, Provider]
    clock: Clock
    inbox: Inbox
    on_pass: object = None
    on_plan: Callable[[Plan], None] | None = None  # told of every plan (the UI's journal)

    def __post_init__(self) -> None:
        self.index = PoolIndex(self.config)
        self.launches = TaskSet("launch")
        self._inflight: set[str] = set()
        # Minted credentials not yet used by a successful create, kept so a
        # retried create reuses them instead of minting a second runner.
        self._minted: dict[str, RunnerLaunch] = {}
        # Credential values of live instances, forgotten by the log redactor
        # once the instance is torn down (its runner is deregistered by then).
        self._credentials: dict[str, list[str]] = {}
        # Names whose last mint had no answer -> when it failed (see _mint_once).
        self._unknown_mints: dict[str, float] = {}
        self.listings = RunnerListings(self.clock)
        self._mint_sem = asyncio.Semaphore(self.config.limits.mint_concurrency)
        self._provider_sem = {p.name: asyncio.Semaphore(p.concurrency) for p in self.config.providers}
        self.last_plan = Plan()
        self._last_full = float("-inf")
        self._full_pending = False
        self._gap_wake: asyncio.TimerHandle | None = None
        self.planned_full = 0  # full plans made (the collector runs after each)
        self.store.on_job_started = self._job_started
        self.warm = WarmPools(self.config, self.index)
        if self.warm.active:
            self.store.on_job_seen = self.warm.observe_job
            self.store.on_booted = self.warm.observe_boot

    # --- one pass -----------------------------------------------------------

    async def run_once(self, *, full: bool = False) -> Plan:
        """One pass. Between full plans (every ``reconcile_interval`` at
        least, and after any event that may change supply or capacity) only
        newly queued jobs are placed; ``full`` forces a full plan.

        Full plans are O(queued jobs + instances) and a storm brings an event
        every few hundred microseconds, so a full plan an event asks for comes
        at most every ``FULL_PLAN_GAP`` (the events between are applied at once,
        their new jobs placed at once; only re-planning waits)."""
        started = time.perf_counter()
        now = self.clock.now()
        needs_full = full or now - self._last_full >= self.config.timing.reconcile_interval
        new_jobs: list[Job] = []
        for i, event in enumerate(self.inbox.drain()):
            if self._collect_new(event, new_jobs):
                self._full_pending = True
            self.store.apply(event, now)
            if isinstance(event, ev.Created | ev.LaunchFailed):
                # Only now does the store show the launch's outcome: until
                # then the instance still looks pending, and a dispatch in a
                # pass that drained before the outcome was posted (the drain
                # yields to the loop) launched — and minted — it again.
                self._inflight.discard(event.name)
            if isinstance(event, ev.TornDown):
                self._unknown_mints.pop(event.name, None)
                for value in self._credentials.pop(event.name, ()):
                    forget_secret_value(value)
            if i % DRAIN_SLICE == DRAIN_SLICE - 1:
                await asyncio.sleep(0)  # thousands of events: let HTTP answer in between
        if self.store.expire(now):  # forgotten jobs may have held supply
            self._full_pending = True
        if self._full_pending and not needs_full:
            wait = self._last_full + FULL_PLAN_GAP - now
            needs_full = wait <= 0
            if not needs_full and self._gap_wake is None:
                self._gap_wake = asyncio.get_running_loop().call_later(wait, self._end_gap)
        result = None if needs_full else place_new(self.last_plan, new_jobs)
        incremental = result is not None
        if result is None:
            result = plan(self.snapshot(now), self.index)
            self._last_full = now
            self._full_pending = False
            self.planned_full += 1
        if self.on_plan is not None:
            self.on_plan(result)
        added = self._apply(result, now)
        self._dispatch(added if incremental else None, now)
        self.last_plan = result
        metrics.RECONCILE.observe(time.perf_counter() - started)
        return result

    def snapshot(self, now: float) -> Snapshot:
        """The store's snapshot, with the warm pools' targets."""
        snap = self.store.snapshot(now)
        if self.warm.active:
            snap = dataclasses.replace(snap, warm=self.warm.target_idle(now))
        return snap

    @property
    def full_plan_due(self) -> float | None:
        """When the full plan an event asked for falls due (it waits out
        FULL_PLAN_GAP after the last one), or None when none is pending; a
        replay on a virtual clock (scaler.sim) wakes the reconciler then."""
        return self._last_full + FULL_PLAN_GAP if self._full_pending else None

    def _end_gap(self) -> None:
        self._gap_wake = None
        self.inbox.wake.set()

    def _collect_new(self, event: ev.Event, new_jobs: list[Job]) -> bool:
        """Add the job this event newly queues to ``new_jobs``; True when the
        event may change supply or capacity, which needs a full plan.
        Launch progress (minted, created and running) changes neither."""
        if isinstance(event, ev.JobReported):
            job = event.job
            if job.state is JobState.QUEUED and job.key not in self.store.jobs:
                new_jobs.append(job)
                return False
            return True
        if isinstance(event, ev.Minted):
            # A job-bound credential (Forgejo) turns free supply the last plan
            # may have given to another job into supply for its own job only.
            return event.bound_to_job
        return not (isinstance(event, ev.Created) and event.info.status in _STILL_STARTING)

    def _apply(self, result: Plan, now: float) -> list[Instance]:
        for fail in result.fails:
            log.warning("instance failed", instance=fail.name, reason=fail.reason)
            self.store.move(fail.name, S.FAILED, now, last_error=fail.reason)
        for retire in result.retires:
            log.info("instance retired", instance=retire.name, reason=retire.reason)
            self.store.update(retire.name, retire_reason=retire.reason, force=retire.force)
        added = []
        for create in result.creates:
            pool = self.index.pools[create.pool]
            name = instance_name(self.config.controller_id, pool.name, create.job, self._taken)
            inst = Instance(
                name=name,
                pool=pool.name,
                provider=pool.provider,
                state=S.PENDING,
                created_at=now,
                updated_at=now,
                job_id=create.job.id if create.job else None,
            )
            self.store.add_pending(inst)
            added.append(inst)
        return added

    def _taken(self, name: str) -> bool:
        return name in self.store.instances or name in self.store.tombstones

    def _dispatch(self, added: list[Instance] | None, now: float) -> None:
        """Launch the instances just added, or (None) every pending one that
        is due: retries wait for a full pass, at most ``reconcile_interval``."""
        candidates = added if added is not None else list(self.store.instances.values())
        for inst in candidates:
            if inst.state is S.PENDING and inst.not_before <= now and inst.name not in self._inflight:
                self._inflight.add(inst.name)
                self.launches.spawn(self._launch(inst))

    # --- launching ----------------------------------------------------------

    async def _launch(self, inst: Instance) -> None:
        pool = self.index.pools[inst.pool]
        posted = False
        try:
            launch = self._minted.get(inst.name)
            if launch is None:
                with call_kind("mint"):
                    launch = await self._mint_once(pool, inst)
                self._minted[inst.name] = launch
                self._credentials[inst.name] = [f.content.reveal() for f in launch.files]
                self.inbox.post(ev.Minted(inst.name, launch.runner_id, launch.bound_to_job))
            info = await self._create(pool, inst, launch)
            self._minted.pop(inst.name, None)
            self.inbox.post(ev.Created(inst.name, info))
            posted = True
        except Exception as exc:
            minted = inst.name in self._minted
            if not is_temporary(exc) or inst.attempts + 1 >= self.config.limits.max_attempts:
                self._minted.pop(inst.name, None)
            retry_after = exc.retry_after if isinstance(exc, TemporaryError) else None
            level = "warning" if is_temporary(exc) else "error"
            getattr(log, level)("launch failed", instance=inst.name, pool=pool.name, error=str(exc))
            self.inbox.post(ev.LaunchFailed(inst.name, _describe(exc), is_temporary(exc), retry_after, minted))
            posted = True
        finally:
            if not posted:  # cancelled: no outcome will come to end it
                self._inflight.discard(inst.name)

    async def _mint_once(self, pool: PoolConfig, inst: Instance) -> RunnerLaunch:
        """Mint, idempotent by name: after a mint whose outcome is unknown (no
        answer; GitHub's "already exists"), the runner the forge may have made
        under this name is looked up and deleted first — its credential was in
        the lost answer, so no instance can use it — and only then is a new
        one minted. An instance never has two live credentials."""
        forge = self.forges[pool.forge]
        since = self._unknown_mints.get(inst.name)
        if since is not None:
            listing = await self.listings.since(forge, since)
            for stray in listing.named(inst.name):
                log.warning("deleting the runner of a mint whose answer was lost", instance=inst.name,
                            runner_id=stray.id)
                await forge.deregister(stray.id)
            del self._unknown_mints[inst.name]
        try:
            return await self._mint(pool, inst)
        except ForgeOutcomeUnknown:
            self._unknown_mints[inst.name] = self.clock.now()
            raise

    async def _mint(self, pool: PoolConfig, inst: Instance) -> RunnerLaunch:
        forge = self.forges[pool.forge]
        job = self._job_for(pool, inst)
        started = time.perf_counter()
        result = "error"
        try:
            async with self._mint_sem:
                launch = await forge.mint(pool, inst.name, job)
            result = "ok"
            return launch
        finally:
            metrics.FORGE_OP.labels(pool.forge, "mint", result).observe(time.perf_counter() - started)

    def _job_for(self, pool: PoolConfig, inst: Instance) -> Job | None:
        if inst.job_id is None:
            return None
        job = self.store.jobs.get((pool.forge, inst.job_id))
        return job if job is not None and job.state is JobState.QUEUED else None

    async def _create(self, pool: PoolConfig, inst: Instance, launch: RunnerLaunch) -> InstanceInfo:
        provider = self.providers[pool.provider]
        timeout = self.config.provider(pool.provider).create_timeout
        spec = LaunchSpec(
            name=inst.name,
            pool=pool.name,
            image=pool.image or launch.image,
            command=launch.command,
            env=dict(launch.env),
            files=launch.files,
            labels=self._stamps(inst, launch),
            options=dict(pool.provider_options),
            max_lifetime=pool.max_lifetime,
        )
        started = time.perf_counter()
        result = "error"
        try:
            # asyncio.timeout, not wait_for: no extra task, so a fast create
            # holds its concurrency slot for no extra loop iterations.
            async with self._provider_sem[pool.provider], asyncio.timeout(timeout):
                info = await provider.create(spec)
            result = "ok"
            return info
        except TimeoutError:
            raise _CreateTimeout(f"provider {pool.provider}: create did not finish within {timeout:g}s") from None
        finally:
            metrics.PROVIDER_OP.labels(pool.provider, "create", result).observe(time.perf_counter() - started)

    def _stamps(self, inst: Instance, launch: RunnerLaunch) -> dict[str, str]:
        stamps = {
            LABEL_CONTROLLER: self.config.controller_id,
            LABEL_POOL: inst.pool,
            LABEL_RUNNER_NAME: launch.runner_name,
            LABEL_CREATED_AT: f"{inst.created_at:.3f}",
        }
        if launch.runner_id is not None:
            stamps[LABEL_RUNNER_ID] = str(launch.runner_id)
        if inst.job_id is not None:
            stamps[LABEL_JOB_ID] = str(inst.job_id)
            if launch.bound_to_job:
                stamps[LABEL_JOB_BOUND] = "true"
        return stamps

    def _job_started(self, job: Job, inst: Instance | None) -> None:
        if job.queued_at is None or job.started_at is None:
            return
        pool = inst.pool if inst is not None else self._first_pool(job)
        if pool is not None:
            wait = max(0.0, job.started_at - job.queued_at)
            metrics.JOB_WAIT.labels(pool).observe(wait)
            self.warm.observe_wait(pool, wait)

    def _first_pool(self, job: Job) -> str | None:
        candidates = self.index.candidates(job)
        return candidates[0].name if candidates else None

    async def close(self) -> None:
        if self._gap_wake is not None:
            self._gap_wake.cancel()
        await self.launches.cancel()
        await self.listings.close()


class _CreateTimeout(TemporaryError):
    pass


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TemporaryError | PermanentError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"
