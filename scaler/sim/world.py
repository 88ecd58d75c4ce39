"""The simulated world a replay runs the real core against.

* :class:`SimForge` (a :class:`~scaler.forges.base.ForgeAdapter`): the
  trace's jobs are queued at their arrival; a runner that comes online takes
  the oldest queued job it matches, an idle runner takes a new job at once
  (the longest idle first), and a job runs for its recorded duration.
* :class:`SimProvider` (a :class:`~scaler.provider.Provider`): an instance
  exists from ``create`` and its runner comes online after the start latency;
  creates and deletes are counted.
* :class:`World` holds both sides and the ground truth the report is made
  of: when each job arrived and was taken, and each instance's boot, busy
  and idle time. The core learns all of it only through the adapters, the
  job reports (as webhooks deliver them) and the provider's exit events.
"""

from __future__ import annotations

import builtins
import heapq
import itertools
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from scaler.config import Config, PoolConfig
from scaler.domain.job import Job, JobState
from scaler.domain.labels import GITHUB_IMPLICIT, labels_match
from scaler.errors import MalformedDelivery, RunnerBusyError, SignatureError
from scaler.forges.base import Delivery, RunnerInfo, RunnerLaunch
from scaler.provider import LABEL_POOL, Finding, InstanceInfo, InstanceStatus, LaunchSpec
from scaler.trace.format import TraceJob

# World events, ordered by (time, sequence).
ARRIVE, ONLINE, FINISH = "arrive", "online", "finish"


@dataclass(eq=False)
class SimJob:
    trace: TraceJob
    forge: str
    queued: bool = False
    pool: str | None = None  # the pool of the runner that took it
    runner: str | None = None
    taken_at: float | None = None
    done_at: float | None = None

    @property
    def arrival(self) -> float:
        return self.trace.queued_at

    def as_job(self, state: JobState) -> Job:
        t = self.trace
        return Job(
            forge=self.forge,
            id=t.job_id,
            repository=t.repository,
            labels=t.labels,
            state=state,
            runner_name=self.runner,
            queued_at=t.queued_at,
            started_at=self.taken_at,
            completed_at=self.done_at,
        )


@dataclass(eq=False)
class SimInstance:
    """An instance on the simulated provider, and its accounting."""

    name: str
    pool: str
    labels: dict[str, str]
    created_at: float
    online_at: float | None = None  # when its runner came online
    deleted_at: float | None = None
    exited_at: float | None = None
    job: SimJob | None = None  # running now
    ran: SimJob | None = None  # the one job it took (ephemeral)
    runner_id: int | None = None

    def info(self) -> InstanceInfo:
        status = InstanceStatus.EXITED if self.exited_at is not None else InstanceStatus.RUNNING
        code = 0 if self.exited_at is not None else None
        return InstanceInfo(self.name, status, dict(self.labels), self.created_at, exit_code=code)


@dataclass(eq=False)
class SimRunner:
    id: int
    name: str
    pool: PoolConfig
    online: bool = False
    job: SimJob | None = None


@dataclass
class Sample:
    """The world's state from ``t`` on (a step function for the plot)."""

    t: float
    queued: int
    booting: int
    idle: int
    busy: int


Report = Callable[[Job], None]


@dataclass
class World:
    config: Config
    forge_name: str
    latency: Callable[[], float]
    report: Report = field(default=lambda job: None)  # the core's inbox, as a webhook would feed it
    exited: Callable[[InstanceInfo], None] = field(default=lambda info: None)  # the provider's watch

    def __post_init__(self) -> None:
        forge_type = self.config.forge(self.forge_name).type
        self.implicit = GITHUB_IMPLICIT if forge_type == "github" else frozenset()
        self.pools = {p.name: p for p in self.config.pools}
        self.now = 0.0
        self.events: list[tuple[float, int, str, Any]] = []
        self._seq = itertools.count()
        self._ids = itertools.count(1)
        self.queue: dict[int, SimJob] = {}  # queued on the forge, arrival order
        self.runners: dict[int, SimRunner] = {}
        self.by_name: dict[str, SimRunner] = {}
        self.idle: dict[str, SimRunner] = {}  # online, no job: longest idle first
        self.instances: dict[str, SimInstance] = {}
        self.history: list[SimInstance] = []  # every instance ever created
        self.jobs: list[SimJob] = []
        self.version = 0  # bumped on every change a resync could see
        self.samples: list[Sample] = []
        self.deletes = 0
        self._match: dict[tuple[str, tuple[str, ...], str], bool] = {}

    # --- time ---------------------------------------------------------------

    def schedule(self, at: float, kind: str, what: Any) -> None:
        heapq.heappush(self.events, (at, next(self._seq), kind, what))

    def next_event(self) -> float | None:
        return self.events[0][0] if self.events else None

    def run_due(self, now: float) -> None:
        self.now = now
        while self.events and self.events[0][0] <= now:
            _, _, kind, what = heapq.heappop(self.events)
            if kind == ARRIVE:
                self._arrive(what)
            elif kind == ONLINE:
                self._online(what)
            else:
                self._finish(what)
        self._sample()

    def _sample(self) -> None:
        booting = sum(1 for i in self.instances.values() if i.online_at is None)
        busy = sum(1 for i in self.instances.values() if i.job is not None)
        s = Sample(self.now, len(self.queue), booting, len(self.idle), busy)
        last = self.samples[-1] if self.samples else None
        if last is not None and (last.queued, last.booting, last.idle, last.busy) == (s.queued, booting, s.idle, busy):
            return
        if last is not None and last.t == s.t:
            self.samples[-1] = s
        else:
            self.samples.append(s)

    # --- jobs -------------------------------------------------------------------

    def add_job(self, trace: TraceJob) -> None:
        job = SimJob(trace, self.forge_name)
        self.jobs.append(job)
        self.schedule(trace.queued_at, ARRIVE, job)

    def matches(self, pool: PoolConfig, job: SimJob) -> bool:
        key = (pool.name, job.trace.labels, job.trace.repository)
        hit = self._match.get(key)
        if hit is None:
            # A runner takes what its forge, labels and registration (scope) admit.
            hit = (
                pool.forge == job.forge
                and labels_match(job.trace.labels, pool.labels, implicit=self.implicit)
                and pool.allow_list.allows(job.trace.repository)
            )
            self._match[key] = hit
        return hit

    def servable(self, job: SimJob) -> bool:
        return any(self.matches(p, job) for p in self.pools.values())

    def queue_is_pending(self) -> bool:
        """Jobs still to arrive, or queued that some pool's runner could take."""
        return any(kind == ARRIVE for _, _, kind, _ in self.events) or any(
            self.servable(j) for j in self.queue.values()
        )

    def _arrive(self, job: SimJob) -> None:
        self.version += 1
        job.queued = True
        self.queue[job.trace.job_id] = job
        self.report(job.as_job(JobState.QUEUED))
        for runner in self.idle.values():
            if self.matches(runner.pool, job):
                self._take(runner, job)
                return

    def _take(self, runner: SimRunner, job: SimJob) -> None:
        self.idle.pop(runner.name, None)
        self.queue.pop(job.trace.job_id, None)
        runner.job = job
        job.queued, job.runner, job.pool, job.taken_at = False, runner.name, runner.pool.name, self.now
        inst = self.instances[runner.name]
        inst.job = inst.ran = job
        self.report(job.as_job(JobState.IN_PROGRESS))
        self.schedule(self.now + job.trace.duration, FINISH, inst)

    def _finish(self, inst: SimInstance) -> None:
        job = inst.job
        if job is None or inst.deleted_at is not None:
            return
        self.version += 1
        job.done_at = self.now
        inst.job, inst.exited_at = None, self.now
        self.report(job.as_job(JobState.COMPLETED))
        # Ephemeral: the runner is gone after its one job, the process exits.
        runner = self.by_name.get(inst.name)
        if runner is not None:
            self._drop_runner(runner)
        self.exited(inst.info())

    # --- runners --------------------------------------------------------------

    def register(self, pool: PoolConfig, name: str) -> SimRunner:
        self.version += 1
        old = self.by_name.get(name)
        if old is not None:
            return old
        runner = SimRunner(next(self._ids), name, pool)
        self.runners[runner.id] = runner
        self.by_name[name] = runner
        return runner

    def _drop_runner(self, runner: SimRunner) -> None:
        self.runners.pop(runner.id, None)
        self.by_name.pop(runner.name, None)
        self.idle.pop(runner.name, None)

    def _online(self, inst: SimInstance) -> None:
        if inst.deleted_at is not None or inst.online_at is not None:
            return
        self.version += 1
        inst.online_at = self.now
        runner = self.by_name.get(inst.name)
        if runner is None:  # deregistered while booting: the runner cannot connect
            return
        runner.online = True
        for job in self.queue.values():
            if self.matches(runner.pool, job):
                self._take(runner, job)
                return
        self.idle[runner.name] = runner

    def deregister(self, runner_id: int) -> None:
        runner = self.runners.get(runner_id)
        if runner is None:
            return
        if runner.job is not None:
            raise RunnerBusyError(f"runner {runner.name} is running a job")
        self.version += 1
        self._drop_runner(runner)

    # --- instances --------------------------------------------------------------

    def create(self, spec: LaunchSpec) -> SimInstance:
        inst = self.instances.get(spec.name)
        if inst is not None:
            return inst
        self.version += 1
        inst = SimInstance(spec.name, spec.labels.get(LABEL_POOL, spec.pool), dict(spec.labels), self.now)
        runner = self.by_name.get(spec.name)
        inst.runner_id = runner.id if runner else None
        self.instances[spec.name] = inst
        self.history.append(inst)
        self.schedule(self.now + max(0.0, self.latency()), ONLINE, inst)
        return inst

    def delete(self, name: str) -> None:
        inst = self.instances.pop(name, None)
        if inst is None:
            return
        self.version += 1
        self.deletes += 1
        inst.deleted_at = self.now
        if inst.job is not None:  # killed mid-job (max_lifetime): the forge fails the job
            job = inst.job
            job.done_at = self.now
            inst.job = None
            self.report(job.as_job(JobState.COMPLETED))
        runner = self.by_name.get(name)
        if runner is not None:
            self._drop_runner(runner)


class SimForge:
    """The forge adapter the core talks to in a replay."""

    kind = "sim"
    # The simulated forge keeps a runner until the collector deregisters it,
    # so a replay counts the same forge calls whatever forge it stands for.
    drops_used_runners = False

    def __init__(self, world: World) -> None:
        self.world = world
        self.name = world.forge_name

    def verify(self, headers: Mapping[str, str], body: bytes) -> None:
        raise SignatureError("the simulated forge sends no webhooks; jobs are reported directly")

    def parse(self, headers: Mapping[str, str], body: bytes) -> Delivery:
        raise MalformedDelivery("the simulated forge sends no webhooks")

    async def list_queued_jobs(self) -> list[Job] | None:
        return [j.as_job(JobState.QUEUED) for j in self.world.queue.values()]

    async def list_runners(self) -> list[RunnerInfo]:
        return [_runner_info(r) for r in self.world.runners.values()]

    async def get_runner(self, runner_id: int) -> RunnerInfo | None:
        r = self.world.runners.get(runner_id)
        return _runner_info(r) if r is not None else None

    async def mint(self, pool: PoolConfig, runner_name: str, job: Job | None) -> RunnerLaunch:
        runner = self.world.register(pool, runner_name)
        return RunnerLaunch(runner.id, runner_name, image="sim", command=("sim-runner",))

    async def deregister(self, runner_id: int) -> None:
        self.world.deregister(runner_id)

    async def delete_runner(self, runner_id: int) -> None:
        # The runner of an instance that is over: gone already after its one
        # job (ephemeral); a busy one is refused as the forge would.
        self.world.deregister(runner_id)

    async def check(self) -> list[Finding]:
        return [Finding("ok", f"forge {self.name}", "simulated forge")]

    async def aclose(self) -> None:
        return None


def _runner_info(r: SimRunner) -> RunnerInfo:
    return RunnerInfo(r.id, r.name, r.online, r.job is not None, r.pool.labels, ephemeral=True)


class SimProvider:
    """The provider the core talks to in a replay: one per configured provider."""

    settings_model: Any = None
    pool_options_model: Any = None

    def __init__(self, name: str, world: World) -> None:
        self.name = name
        self.world = world
        self.creates = 0

    async def create(self, launch: LaunchSpec) -> InstanceInfo:
        before = len(self.world.history)
        inst = self.world.create(launch)
        self.creates += len(self.world.history) - before
        return inst.info()

    async def delete(self, name: str) -> None:
        self.world.delete(name)

    async def get(self, name: str) -> InstanceInfo | None:
        inst = self.world.instances.get(name)
        return inst.info() if inst is not None else None

    async def list(self) -> builtins.list[InstanceInfo]:
        return [i.info() for i in self.world.instances.values() if self._mine(i)]

    def _mine(self, inst: SimInstance) -> bool:
        pool = self.world.pools.get(inst.pool)
        return pool is not None and pool.provider == self.name

    async def watch(self) -> AsyncIterator[InstanceInfo]:
        # Exits are reported by the world as they happen (see World.exited).
        for _ in ():
            yield _
        return

    async def check(self, pools: Mapping[str, Mapping[str, Any]]) -> builtins.list[Finding]:
        return [Finding("ok", f"provider {self.name}", "simulated provider")]

    async def close(self) -> None:
        return None
