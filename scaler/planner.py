"""The planner: a pure function from a snapshot to actions.

Demand per pool = queued jobs assigned to it + the idle it keeps
(``min_idle``, or a warm pool's target from the snapshot if higher); supply =
its instances not yet busy. Beside the actions a plan says how the queue broke
down (:class:`Demand`: assigned, held back by ``max`` or a cap, unservable),
counted while placing, so it costs a dict increment per unplaced job.
Each queued job is assigned to exactly one pool: the highest-priority
matching pool that has a free instance or room to create one, falling back
to lower-priority pools when a pool is at a cap or its provider is
unavailable. Creates are bounded by the pool's ``max``, the global cap and
each provider's cap. No I/O, no clock: ``now`` is in the snapshot.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from scaler.config import Config, PoolConfig
from scaler.domain.instance import NOT_YET_BUSY, TOOK_JOB_GRACE, Instance, InstanceState
from scaler.domain.job import Job
from scaler.domain.labels import GITHUB_IMPLICIT, labels_match
from scaler.store import Snapshot

S = InstanceState


@dataclass(frozen=True, slots=True)
class Create:
    pool: str
    job: Job | None  # the job this instance is made for; None for min_idle


@dataclass(frozen=True, slots=True)
class Retire:
    """Tear down a live instance; ``force`` even when busy (max_lifetime)."""

    name: str
    reason: str
    force: bool = False


@dataclass(frozen=True, slots=True)
class Fail:
    name: str
    reason: str


@dataclass(frozen=True, slots=True)
class Plan:
    creates: tuple[Create, ...] = ()
    retires: tuple[Retire, ...] = ()
    fails: tuple[Fail, ...] = ()
    # job key -> pool: which pool each queued job was given to (None: no pool
    # can serve it). For the API and ``explain``.
    assigned: tuple[tuple[tuple[str, int], str], ...] = ()
    # The state the plan ended in, for :func:`place_new`; not part of its value.
    placement: Placement | None = field(default=None, compare=False, repr=False)

    def demand(self) -> Demand:
        """What the queue asked of each pool, as this plan saw it."""
        return self.placement.demand() if self.placement is not None else Demand({}, {}, {})


# Why a waiting job got no instance, for its highest-priority candidate pool.
HELD_REASONS = ("max", "global_cap", "provider_cap", "provider_unavailable", "crash_loop")


@dataclass(frozen=True, slots=True)
class Demand:
    """The queue's breakdown (the metrics and ``/api/v1/pools`` read it).

    Each waiting job is counted once: in the pool it was assigned to, or, when
    no matching pool had supply or room, as held back in the first of its
    candidates (the highest-priority pool, where it would go first) with that
    pool's reason. So a pool's demand (``queued``) is ``assigned`` plus its
    held-back jobs, and the pools' demands add up to the waiting jobs some pool
    can serve. Jobs no pool can ever serve (labels, allow-list) are counted per
    forge in ``unservable``."""

    assigned: dict[str, int]  # pool -> jobs given to it
    held_back: dict[tuple[str, str], int]  # (pool, reason) -> jobs
    unservable: dict[str, int]  # forge -> jobs

    def held_back_in(self, pool: str) -> int:
        return sum(self.held_back.get((pool, r), 0) for r in HELD_REASONS)

    def queued_in(self, pool: str) -> int:
        return self.assigned.get(pool, 0) + self.held_back_in(pool)


class PoolIndex:
    """Pools by forge, sorted by priority, and a cache of which pools match a
    (forge, repository, labels) combination — jobs repeat these a lot."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.pools = {p.name: p for p in config.pools}
        self._implicit = {f.name: GITHUB_IMPLICIT if f.type == "github" else frozenset() for f in config.forges}
        by_forge: dict[str, list[PoolConfig]] = defaultdict(list)
        for pool in config.pools:
            by_forge[pool.forge].append(pool)
        # Stable: equal priorities keep config order.
        self._by_forge = {f: sorted(ps, key=lambda p: -p.priority) for f, ps in by_forge.items()}
        self._cache: dict[tuple[str, str, tuple[str, ...]], tuple[PoolConfig, ...]] = {}

    def candidates(self, job: Job) -> tuple[PoolConfig, ...]:
        key = (job.forge, job.repository, job.labels)
        found = self._cache.get(key)
        if found is None:
            implicit = self._implicit.get(job.forge, frozenset())
            found = tuple(
                p
                for p in self._by_forge.get(job.forge, ())
                if p.allow_list.allows(job.repository) and labels_match(job.labels, p.labels, implicit=implicit)
            )
            if len(self._cache) > 100_000:  # bounded, like everything else
                self._cache.clear()
            self._cache[key] = found
        return found


@dataclass(slots=True)
class _PoolTally:
    # job id -> not-yet-busy instances that can only ever run that job
    # (Forgejo handles); they are supply for that job and nothing else.
    bound_free: dict[int, list[Instance]]
    free: int  # not-yet-busy instances that can take any matching job
    live: int  # instances that count against max
    # Instances seen taking a job no report has named (``took_job_at``):
    # each stands for one queued job already running, bound ones for theirs.
    took: int = 0
    took_bound: dict[int, int] = field(default_factory=dict)
    assigned: int = 0
    creates: int = 0

    def count_took(self, bound_job: int | None) -> None:
        if bound_job is not None:
            self.took_bound[bound_job] = self.took_bound.get(bound_job, 0) + 1
        else:
            self.took += 1


def _counts_against_caps(inst: Instance) -> bool:
    # A create that failed before anything existed on the provider holds no
    # capacity; everything else may still exist there.
    return not (inst.state is S.FAILED and not inst.provisioned)


class Placement:
    """Where queued jobs go, and the capacity left: the running state of one
    plan. Kept by the reconciler so a job that arrives next can be placed on
    top of it (:func:`place_new`) without re-placing every queued job."""

    def __init__(self, snapshot: Snapshot, index: PoolIndex) -> None:
        config = index.config
        self.index = index
        self.tallies, provider_live, total_live = _tally(snapshot, index)
        self.unavailable = snapshot.unavailable_providers
        self.crash_loops = {p for p, until in snapshot.crash_loops.items() if until > snapshot.now}
        self.global_room = config.limits.max_instances - total_live
        self.provider_room = {
            p.name: (p.max_instances if p.max_instances is not None else 1 << 30) - provider_live.get(p.name, 0)
            for p in config.providers
        }
        self.creates: list[Create] = []
        self.assigned: list[tuple[tuple[str, int], str]] = []
        self.held_back: dict[str, int] = {}  # first candidate pool -> jobs
        self.unservable: dict[str, int] = {}
        self.keep = keep_idle(snapshot, index)

    def _room(self, pool: PoolConfig, t: _PoolTally) -> bool:
        return (
            pool.provider not in self.unavailable
            and pool.name not in self.crash_loops
            and t.live + t.creates < pool.max
            and self.global_room > 0
            and self.provider_room.get(pool.provider, 0) > 0
        )

    def _no_room_reason(self, pool: PoolConfig, t: _PoolTally) -> str:
        if pool.provider in self.unavailable:
            return "provider_unavailable"
        if pool.name in self.crash_loops:
            return "crash_loop"
        if t.live + t.creates >= pool.max:
            return "max"
        if self.provider_room.get(pool.provider, 0) <= 0:
            return "provider_cap"
        return "global_cap"

    def _create(self, pool: PoolConfig, t: _PoolTally, job: Job | None) -> None:
        t.creates += 1
        self.global_room -= 1
        self.provider_room[pool.provider] -= 1
        self.creates.append(Create(pool.name, job))

    def place(self, job: Job) -> str | None:
        """Give the job to the first candidate pool with supply or room."""
        candidates = self.index.candidates(job)
        for pool in candidates:
            t = self.tallies[pool.name]
            if t.took_bound.get(job.id):
                t.took_bound[job.id] -= 1
            elif t.took > 0:
                t.took -= 1
            elif t.bound_free.get(job.id):
                t.bound_free[job.id].pop()
            elif t.free > 0:
                t.free -= 1
            elif self._room(pool, t):
                self._create(pool, t, job)
            else:
                continue
            t.assigned += 1
            self.assigned.append((job.key, pool.name))
            return pool.name
        # Inline, not a call: this runs for every job a full pool holds back.
        if candidates:
            first = candidates[0].name
            self.held_back[first] = self.held_back.get(first, 0) + 1
        else:
            self.unservable[job.forge] = self.unservable.get(job.forge, 0) + 1
        return None

    def demand(self) -> Demand:
        """The breakdown so far. Why a pool held jobs back is read once, at
        the end: each no-room condition only gets truer while placing (live
        and creates grow, rooms shrink, unavailability is fixed), so the
        reason at the end is the reason at each job's turn."""
        assigned = {name: t.assigned for name, t in self.tallies.items() if t.assigned}
        held = {
            (name, self._no_room_reason(self.index.pools[name], self.tallies[name])): n
            for name, n in self.held_back.items()
        }
        return Demand(assigned, held, dict(self.unservable))

    def top_up(self, pool: PoolConfig) -> None:
        """Create up to the idle the pool keeps (``min_idle`` or its warm target)."""
        t = self.tallies[pool.name]
        for _ in range(max(0, self.keep[pool.name] - t.free)):
            if not self._room(pool, t):
                break
            self._create(pool, t, None)
            t.free += 1  # free supply from now on, as it will be in the store


def keep_idle(snapshot: Snapshot, index: PoolIndex) -> dict[str, int]:
    """Free instances each pool keeps: ``min_idle``, or a warm pool's target
    (``snapshot.warm``) when higher; ``max`` and the caps still bound creates."""
    return {name: max(p.min_idle, snapshot.warm.get(name, 0)) for name, p in index.pools.items()}


def plan(snapshot: Snapshot, index: PoolIndex) -> Plan:
    placement = Placement(snapshot, index)
    for job in snapshot.queued:
        placement.place(job)
    for pool in index.config.pools:
        placement.top_up(pool)
    retires, fails = _expire(snapshot, index, placement.tallies, placement.keep)
    retires += _stranded(snapshot, placement.tallies)
    return Plan(tuple(placement.creates), tuple(retires), tuple(fails), tuple(placement.assigned), placement)


def place_new(last: Plan, jobs: Iterable[Job]) -> Plan | None:
    """Place newly queued jobs on top of the last plan, whose creates are
    already in the store: what a full plan would do with them, since queued
    jobs are placed in arrival order and these arrived last. Valid only while
    nothing else changed supply or capacity since (the caller's check); time
    based decisions (timeouts, idle retirement) wait for the next full plan.
    None when there is no last plan to build on."""
    placement = last.placement
    if placement is None:
        return None
    first = len(placement.creates)
    touched: dict[str, PoolConfig] = {}
    for job in jobs:
        name = placement.place(job)
        if name is not None:
            touched[name] = placement.index.pools[name]
    for pool in touched.values():
        placement.top_up(pool)
    new = tuple(placement.creates[first:])
    return Plan(new, (), (), tuple(placement.assigned), placement)


def _stranded(snapshot: Snapshot, tallies: dict[str, _PoolTally]) -> list[Retire]:
    """Job-bound instances that can never run: their job left the queue (taken
    by another runner, cancelled) or another bound instance got it. The
    collector still asks the forge first, so one that did take the job is
    left alone."""
    queued_ids = {j.id for j in snapshot.queued}
    out = [
        Retire(i.name, "its job is no longer queued")
        for i in snapshot.instances
        if i.bound and i.state in NOT_YET_BUSY and i.retire_reason is None and i.job_id not in queued_ids
    ]
    for t in tallies.values():
        out += [Retire(i.name, "another instance serves its job") for left in t.bound_free.values() for i in left]
    return out


def _tally(snapshot: Snapshot, index: PoolIndex) -> tuple[dict[str, _PoolTally], dict[str, int], int]:
    queued_ids = {j.id for j in snapshot.queued}
    grace = snapshot.now - TOOK_JOB_GRACE
    took_after = {name: snapshot.took_after.get(p.forge, grace) for name, p in index.pools.items()}
    tallies = {name: _PoolTally({}, 0, 0) for name in index.pools}
    provider_live: dict[str, int] = defaultdict(int)
    total = 0
    for inst in snapshot.instances:
        if not _counts_against_caps(inst):
            continue
        total += 1
        provider_live[inst.provider] += 1
        t = tallies.get(inst.pool)
        if t is None:
            continue
        t.live += 1
        if inst.took_job_at is not None and inst.took_job_at > took_after[inst.pool]:
            t.count_took(inst.job_id if inst.bound else None)
        if inst.state in NOT_YET_BUSY and inst.retire_reason is None:
            if not inst.bound:
                t.free += 1
            elif inst.job_id in queued_ids:
                t.bound_free.setdefault(inst.job_id, []).append(inst)
    for claim in snapshot.claims:  # the same guess, outliving a torn-down instance
        t = tallies.get(claim.pool)
        if t is not None and claim.took_at > took_after[claim.pool]:
            t.count_took(claim.job_id)
    return tallies, provider_live, total


def _expire(
    snapshot: Snapshot, index: PoolIndex, tallies: dict[str, _PoolTally], keep: dict[str, int]
) -> tuple[list[Retire], list[Fail]]:
    now = snapshot.now
    retires: list[Retire] = []
    fails: list[Fail] = []
    idle_by_pool: dict[str, list[Instance]] = defaultdict(list)
    for inst in snapshot.instances:
        pool = index.pools.get(inst.pool)
        if pool is None or inst.retire_reason is not None:
            continue
        age = now - inst.created_at
        if inst.state in (S.CREATING, S.STARTING) and age > pool.boot_timeout:
            fails.append(Fail(inst.name, f"runner not online after {pool.boot_timeout:g}s (boot timeout)"))
        elif inst.state in (S.STARTING, S.IDLE, S.BUSY) and age > pool.max_lifetime:
            retires.append(Retire(inst.name, f"max lifetime {pool.max_lifetime:g}s passed", force=True))
        elif inst.state is S.IDLE and not inst.bound:
            idle_by_pool[inst.pool].append(inst)
    for pool_name, idle in idle_by_pool.items():
        retires.extend(_surplus_idle(index.pools[pool_name], tallies[pool_name], idle, now, keep[pool_name]))
    return retires, fails


def _surplus_idle(pool: PoolConfig, t: _PoolTally, idle: Sequence[Instance], now: float, keep: int) -> Iterable[Retire]:
    # Free supply left after every queued job took its share; keep what the pool keeps.
    surplus = min(len(idle), t.free - keep)
    if surplus <= 0:
        return []
    expired = [i for i in idle if now - (i.idle_since or i.updated_at) >= pool.idle_timeout]
    expired.sort(key=lambda i: i.idle_since or i.updated_at)
    return [Retire(i.name, "idle timeout") for i in expired[:surplus]]


def next_decision_at(snapshot: Snapshot, index: PoolIndex) -> float:
    """The earliest time after ``snapshot.now`` from which :func:`plan` of this
    snapshot (the same jobs and instances, a later ``now``) may decide
    differently: a boot timeout, a max lifetime, an idle timeout or a
    took-a-job grace running out; ``inf`` when none is pending. It mirrors the
    time tests of :func:`_tally` and :func:`_expire` (a property test holds
    them together), so a replay (``scaler.sim``) can skip passes that would
    change nothing. Times already passed decided nothing new at ``now`` and
    do not later either: only events (or new warm targets) change the rest."""
    now = snapshot.now
    times: list[float] = []
    for inst in snapshot.instances:
        if inst.took_job_at is not None:
            times.append(inst.took_job_at + TOOK_JOB_GRACE)
        pool = index.pools.get(inst.pool)
        if pool is None or inst.retire_reason is not None:
            continue
        # ``age > timeout``: decided from the first instant after.
        if inst.state in (S.CREATING, S.STARTING):
            times.append(math.nextafter(inst.created_at + pool.boot_timeout, math.inf))
        if inst.state in (S.STARTING, S.IDLE, S.BUSY):
            times.append(math.nextafter(inst.created_at + pool.max_lifetime, math.inf))
        if inst.state is S.IDLE and not inst.bound:
            times.append((inst.idle_since or inst.updated_at) + pool.idle_timeout)
    times += [claim.took_at + TOOK_JOB_GRACE for claim in snapshot.claims]
    times += snapshot.crash_loops.values()
    return min((t for t in times if t > now), default=math.inf)
