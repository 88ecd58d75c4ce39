"""Planner properties: a Hypothesis state machine over the real store and
planner, plus a few pinned cases."""

from __future__ import annotations

from collections import Counter
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from scaler import events as ev
from scaler.config import parse_config
from scaler.domain.instance import TOOK_JOB_HOLD_RESYNCS, Instance, InstanceState
from scaler.domain.job import Job, JobState
from scaler.forges.base import RunnerInfo
from scaler.planner import TOOK_JOB_GRACE, PoolIndex, place_new, plan
from scaler.provider import LABEL_POOL, LABEL_RUNNER_ID, InstanceInfo, InstanceStatus
from scaler.store import Store
from tests.conftest import base_config

S = InstanceState
REPOS = ["acme/app", "acme/lib", "evil/app"]
LABELS = [("ubuntu-latest",), ("gpu",), ("ubuntu-latest", "gpu"), ("arm",)]


def config_data() -> dict[str, Any]:
    data = base_config()
    pool = data["pools"][0]
    data["providers"] = [{"name": "mem", "type": "memory", "max_instances": 6}, {"name": "mem2", "type": "memory"}]
    data["pools"] = [
        dict(pool, name="cpu", labels=["ubuntu-latest:docker://node:20"], max=4, min_idle=1, priority=5),
        dict(pool, name="cpu-spill", labels=["ubuntu-latest"], max=3, provider="mem2"),
        dict(pool, name="gpu", labels=["ubuntu-latest", "gpu"], max=2, repositories=["acme/app"]),
    ]
    data["limits"] = {"max_instances": 8}
    return data


class PlannerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.config = parse_config(config_data())
        self.index = PoolIndex(self.config)
        self.store = Store(self.config)
        for p in self.config.providers:
            self.store.providers[p.name].synced = True
        self.now = 1000.0
        self.next_id = 1
        self.busy_deleted: list[str] = []

    def _apply(self, event: ev.Event) -> None:
        self.store.apply(event, self.now)

    @rule(repo=st.sampled_from(REPOS), labels=st.sampled_from(LABELS))
    def queue_job(self, repo: str, labels: tuple[str, ...]) -> None:
        job = Job("fake", self.next_id, repo, labels, JobState.QUEUED)
        self.next_id += 1
        self._apply(ev.JobReported(job, self.now))

    @rule()
    def plan_and_create(self) -> None:
        result = plan(self.store.snapshot(self.now), self.index)
        for retire in result.retires:
            inst = self.store.instances[retire.name]
            assert retire.force or inst.state is not S.BUSY, "retired a busy instance"
            self.store.update(retire.name, retire_reason=retire.reason, force=retire.force)
        for fail in result.fails:
            self.store.move(fail.name, S.FAILED, self.now)
        for i, create in enumerate(result.creates):
            pool = self.index.pools[create.pool]
            name = f"rs-{pool.name}-{self.next_id}-{i}"
            self.store.add_pending(
                Instance(
                    name,
                    pool.name,
                    pool.provider,
                    S.PENDING,
                    self.now,
                    self.now,
                    job_id=create.job.id if create.job else None,
                )
            )
            self._apply(ev.Minted(name, None))
            self._apply(ev.Created(name, InstanceInfo(name, InstanceStatus.RUNNING, {})))
        self.next_id += 1
        self._check_every_job_served_or_capped(result)
        self._check_demand_counts_each_job_once(result)

    def _check_demand_counts_each_job_once(self, result: Any) -> None:
        demand = result.demand()
        queued = self.store.snapshot(self.now).queued
        unservable = [j for j in queued if not self.index.candidates(j)]
        assert sum(demand.unservable.values()) == len(unservable)
        assert sum(demand.queued_in(p.name) for p in self.config.pools) == len(queued) - len(unservable)
        assert sum(demand.assigned.values()) == len(result.assigned)
        assigned = dict(result.assigned)
        held = Counter(
            self.index.candidates(j)[0].name for j in queued if self.index.candidates(j) and j.key not in assigned
        )
        for pool in self.config.pools:
            assert demand.held_back_in(pool.name) == held.get(pool.name, 0)
        # The reason given holds in the state the plan left (its creates are in the store now).
        live = [i for i in self.store.instances.values() if not (i.state is S.FAILED and not i.provisioned)]
        for (name, reason), _ in demand.held_back.items():
            pool = self.index.pools[name]
            cap = self.config.provider(pool.provider).max_instances
            in_provider = sum(1 for i in live if i.provider == pool.provider)
            assert {
                "max": sum(1 for i in live if i.pool == name) >= pool.max,
                "provider_cap": cap is not None and in_provider >= cap,
                "global_cap": len(live) >= self.config.limits.max_instances,
                "crash_loop": name in self.store.boot_failures.held(self.now),
            }[reason], (name, reason)
            assert demand.queued_in(pool.name) == demand.assigned.get(pool.name, 0) + demand.held_back_in(pool.name)

    def _check_every_job_served_or_capped(self, result: Any) -> None:
        assigned = {key for key, _ in result.assigned}
        live = [i for i in self.store.instances.values() if not (i.state is S.FAILED and not i.provisioned)]
        for job in self.store.snapshot(self.now).queued:
            if job.key in assigned:
                continue
            for pool in self.index.candidates(job):
                in_pool = sum(1 for i in live if i.pool == pool.name)
                provider_cap = self.config.provider(pool.provider).max_instances
                in_provider = sum(1 for i in live if i.provider == pool.provider)
                assert (
                    in_pool >= pool.max
                    or pool.name in self.store.boot_failures.held(self.now)  # crash-loop backoff
                    or len(live) >= self.config.limits.max_instances
                    or (provider_cap is not None and in_provider >= provider_cap)
                ), f"job {job.id} unserved while {pool.name} had room"

    def _instances(self, *states: InstanceState) -> list[Instance]:
        return sorted((i for i in self.store.instances.values() if i.state in states), key=lambda i: i.name)

    @precondition(lambda self: bool(self._instances(S.STARTING)))
    @rule(data=st.data())
    def runner_online(self, data: st.DataObject) -> None:
        inst = data.draw(st.sampled_from(self._instances(S.STARTING)))
        self.store.move(inst.name, S.IDLE, self.now)

    @precondition(lambda self: bool(self._instances(S.IDLE)) and bool(self.store.snapshot(0).queued))
    @rule(data=st.data())
    def runner_takes_job(self, data: st.DataObject) -> None:
        inst = data.draw(st.sampled_from(self._instances(S.IDLE)))
        pool = self.index.pools[inst.pool]
        jobs = [j for j in self.store.snapshot(self.now).queued if pool in self.index.candidates(j)]
        if not jobs:
            return
        job = data.draw(st.sampled_from(jobs))
        self._apply(
            ev.JobReported(
                Job("fake", job.id, job.repository, job.labels, JobState.IN_PROGRESS, runner_name=inst.name), self.now
            )
        )
        assert self.store.instances[inst.name].state is S.BUSY

    @precondition(lambda self: bool(self._instances(S.BUSY)))
    @rule(data=st.data())
    def job_completes(self, data: st.DataObject) -> None:
        inst = data.draw(st.sampled_from(self._instances(S.BUSY)))
        job = self.store.jobs[("fake", inst.job_id)] if inst.job_id is not None else None
        if job is None or job.runner_name != inst.name:
            return
        self._apply(
            ev.JobReported(
                Job("fake", job.id, job.repository, job.labels, JobState.COMPLETED, runner_name=inst.name), self.now
            )
        )
        # Collectable at once: gone after the next collector pass.
        assert self.store.instances[inst.name].state is S.DONE

    @rule()
    def collect(self) -> None:
        for inst in list(self.store.instances.values()):
            due = inst.state in (S.DONE, S.FAILED) or (
                inst.retire_reason is not None and (inst.state in (S.IDLE, S.STARTING) or inst.force)
            )
            if due:
                if inst.state is S.BUSY and not inst.force:
                    self.busy_deleted.append(inst.name)
                self._apply(ev.TeardownStarted(inst.name))
                self._apply(ev.TornDown(inst.name))

    @rule(seconds=st.sampled_from([1.0, 60.0, 400.0, 700.0, 30_000.0]))
    def time_passes(self, seconds: float) -> None:
        self.now += seconds

    @invariant()
    def caps_hold(self) -> None:
        live = [i for i in self.store.instances.values() if not (i.state is S.FAILED and not i.provisioned)]
        assert len(live) <= self.config.limits.max_instances
        for pool in self.config.pools:
            assert sum(1 for i in live if i.pool == pool.name) <= pool.max
        for p in self.config.providers:
            if p.max_instances is not None:
                assert sum(1 for i in live if i.provider == p.name) <= p.max_instances

    @invariant()
    def no_busy_deleted(self) -> None:
        assert self.busy_deleted == []

    @invariant()
    def disallowed_repo_never_on_gpu(self) -> None:
        for inst in self.store.instances.values():
            if inst.pool == "gpu" and inst.job_id is not None:
                job = self.store.jobs.get(("fake", inst.job_id))
                assert job is None or job.repository == "acme/app"


TestPlannerMachine = PlannerMachine.TestCase
TestPlannerMachine.settings = settings(
    max_examples=150, stateful_step_count=40, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


def test_priority_and_fallback() -> None:
    """Jobs go to the highest-priority pool first and spill over at its cap."""
    config = parse_config(config_data())
    store = Store(config)
    for h in store.providers.values():
        h.synced = True
    for i in range(6):
        store.apply(ev.JobReported(Job("fake", i, "acme/lib", ("ubuntu-latest",), JobState.QUEUED), 0.0), 0.0)
    result = plan(store.snapshot(0.0), PoolIndex(config))
    pools = [c.pool for c in result.creates]
    # cpu (priority 5) takes 4 (its max; its min_idle is then met by... nothing
    # spare), cpu-spill the other 2.
    assert pools.count("cpu") == 4 and pools.count("cpu-spill") == 2


def test_unavailable_provider_falls_back() -> None:
    """A pool whose provider is not synced (or failing) is skipped."""
    config = parse_config(config_data())
    store = Store(config)
    store.providers["mem2"].synced = True  # "mem" never listed
    store.apply(ev.JobReported(Job("fake", 1, "acme/lib", ("ubuntu-latest",), JobState.QUEUED), 0.0), 0.0)
    result = plan(store.snapshot(0.0), PoolIndex(config))
    assert [c.pool for c in result.creates] == ["cpu-spill"]


def test_no_pool_for_disallowed_repo() -> None:
    """A gpu job from a repository outside gpu's allow-list gets nothing."""
    config = parse_config(config_data())
    store = Store(config)
    for h in store.providers.values():
        h.synced = True
    store.apply(ev.JobReported(Job("fake", 1, "acme/lib", ("gpu",), JobState.QUEUED), 0.0), 0.0)
    result = plan(store.snapshot(0.0), PoolIndex(config))
    assert [c.pool for c in result.creates if c.job] == []
    assert result.assigned == ()


def test_job_bound_instance_serves_only_its_job() -> None:
    """A job-bound instance is not supply for other jobs, and is retired once
    its job leaves the queue."""
    config = parse_config(config_data())
    store = Store(config)
    for h in store.providers.values():
        h.synced = True
    store.apply(ev.JobReported(Job("fake", 1, "acme/lib", ("ubuntu-latest",), JobState.QUEUED), 0.0), 0.0)
    store.add_pending(Instance("rs-cpu-j1", "cpu", "mem", S.PENDING, 0.0, 0.0, job_id=1))
    store.apply(ev.Minted("rs-cpu-j1", 7, bound_to_job=True), 0.0)
    store.apply(ev.JobReported(Job("fake", 2, "acme/lib", ("ubuntu-latest",), JobState.QUEUED), 0.0), 0.0)
    result = plan(store.snapshot(0.0), PoolIndex(config))
    # Job 2 gets its own instance (plus one for min_idle); job 1 keeps its bound one.
    assert sorted((c.job.id if c.job else None) for c in result.creates if c.job) == [2]
    assert result.retires == ()
    # Job 1 is taken by some other runner: the bound instance is stranded.
    store.apply(
        ev.JobReported(Job("fake", 1, "acme/lib", ("ubuntu-latest",), JobState.IN_PROGRESS, runner_name="x"), 1.0), 1.0
    )
    result = plan(store.snapshot(1.0), PoolIndex(config))
    assert [(r.name, r.reason) for r in result.retires] == [("rs-cpu-j1", "its job is no longer queued")]


def _one_pool_store() -> tuple[Store, PoolIndex]:
    data = config_data()
    data["pools"] = [dict(data["pools"][0], min_idle=0)]
    config = parse_config(data)
    store = Store(config)
    for h in store.providers.values():
        h.synced = True
    return store, PoolIndex(config)


def test_runner_busy_before_its_report_is_not_a_reason_to_create() -> None:
    """An instance seen busy before the job's in_progress report stands for one queued job, for a grace period."""
    store, index = _one_pool_store()
    store.apply(ev.JobReported(Job("fake", 1, "acme/lib", ("ubuntu-latest",), JobState.QUEUED), 0.0), 0.0)
    store.add_pending(Instance("rs-cpu-1", "cpu", "mem", S.PENDING, 0.0, 0.0, job_id=1))
    store.apply(ev.Minted("rs-cpu-1", 7), 0.0)
    runner = RunnerInfo(7, "rs-cpu-1", online=True, busy=True)
    store.apply(ev.ForgeSynced("fake", None, [runner], 1.0), 1.0)
    assert store.instances["rs-cpu-1"].state is S.BUSY and store.instances["rs-cpu-1"].took_job_at == 1.0
    assert plan(store.snapshot(1.0), index).creates == ()
    # The report never came: the guess lapses and the job gets a runner.
    assert [c.job.id for c in plan(store.snapshot(1.0 + TOOK_JOB_GRACE + 0.1), index).creates if c.job] == [1]


def test_report_naming_the_runner_ends_the_guess() -> None:
    """Once a report names the instance's job, it no longer stands for another queued one."""
    store, index = _one_pool_store()
    for job_id in (1, 2):
        store.apply(ev.JobReported(Job("fake", job_id, "acme/lib", ("ubuntu-latest",), JobState.QUEUED), 0.0), 0.0)
    store.add_pending(Instance("rs-cpu-1", "cpu", "mem", S.PENDING, 0.0, 0.0, job_id=1))
    store.apply(ev.Minted("rs-cpu-1", 7), 0.0)
    store.apply(ev.ForgeSynced("fake", None, [RunnerInfo(7, "rs-cpu-1", online=True, busy=True)], 1.0), 1.0)
    store.apply(
        ev.JobReported(Job("fake", 1, "acme/lib", ("ubuntu-latest",), JobState.IN_PROGRESS, runner_name="rs-cpu-1"), 2),
        2.0,
    )
    assert store.instances["rs-cpu-1"].took_job_at is None
    assert [c.job.id for c in plan(store.snapshot(2.0), index).creates if c.job] == [2]


def test_a_later_queue_listing_ends_the_guess() -> None:
    """A queue listed after the instance took its job no longer holds that job, so the guess is dropped."""
    store, index = _one_pool_store()
    store.apply(ev.JobReported(Job("fake", 1, "acme/lib", ("ubuntu-latest",), JobState.QUEUED), 0.0), 0.0)
    store.add_pending(Instance("rs-cpu-1", "cpu", "mem", S.PENDING, 0.0, 0.0, job_id=1))
    store.apply(ev.Minted("rs-cpu-1", 7), 0.0)
    store.apply(ev.InstanceObserved("mem", InstanceInfo("rs-cpu-1", InstanceStatus.EXITED, {}, exit_code=0)), 1.0)
    assert store.instances["rs-cpu-1"].took_job_at == 1.0
    job2 = Job("fake", 2, "acme/lib", ("ubuntu-latest",), JobState.QUEUED)
    store.apply(ev.ForgeSynced("fake", [job2], [], 2.0), 2.0)
    assert store.instances["rs-cpu-1"].took_job_at is None
    assert [c.job.id for c in plan(store.snapshot(2.0), index).creates if c.job] == [2]


def test_busy_runner_in_a_sync_that_listed_the_queue_takes_nothing_from_it() -> None:
    """A runner found busy by the resync that listed the queue took a job the listing already left out."""
    store, index = _one_pool_store()
    store.add_pending(Instance("rs-cpu-1", "cpu", "mem", S.PENDING, 0.0, 0.0))
    store.apply(ev.Minted("rs-cpu-1", 7), 0.0)
    job2 = Job("fake", 2, "acme/lib", ("ubuntu-latest",), JobState.QUEUED)
    store.apply(ev.ForgeSynced("fake", [job2], [RunnerInfo(7, "rs-cpu-1", online=True, busy=True)], 1.0), 1.0)
    assert store.instances["rs-cpu-1"].state is S.BUSY and store.instances["rs-cpu-1"].took_job_at is None
    assert [c.job.id for c in plan(store.snapshot(1.0), index).creates if c.job] == [2]


def test_the_guess_outlives_the_torn_down_instance() -> None:
    """An instance that exited and was torn down before its job's report still stands for one queued job."""
    store, index = _one_pool_store()
    for job_id in (1, 2):
        store.apply(ev.JobReported(Job("fake", job_id, "acme/lib", ("ubuntu-latest",), JobState.QUEUED), 0.0), 0.0)
    for name, runner_id in (("rs-cpu-1", 7), ("rs-cpu-2", 8)):
        store.add_pending(Instance(name, "cpu", "mem", S.PENDING, 0.0, 0.0))
        store.apply(ev.Minted(name, runner_id), 0.0)
        store.apply(ev.InstanceObserved("mem", InstanceInfo(name, InstanceStatus.EXITED, {}, exit_code=0)), 1.0)
        store.apply(ev.TornDown(name), 1.5)
    assert store.instances == {}
    assert plan(store.snapshot(2.0), index).creates == ()
    # The report naming rs-cpu-1 ends its claim along with job 1's place in the queue.
    store.apply(
        ev.JobReported(Job("fake", 1, "acme/lib", ("ubuntu-latest",), JobState.IN_PROGRESS, runner_name="rs-cpu-1"), 3),
        3.0,
    )
    assert list(store.claims) == ["rs-cpu-2"]
    assert plan(store.snapshot(3.0), index).creates == ()
    # rs-cpu-2's report never comes: past the grace, job 2 gets a runner.
    assert [c.job.id for c in plan(store.snapshot(1.0 + TOOK_JOB_GRACE + 0.1), index).creates if c.job] == [2]
    assert store.claims == {}


def test_for_a_forge_that_lists_jobs_the_guess_holds_until_a_listing_begun_after_it() -> None:
    """Reports and listings late (a storm): the guess outlives the grace until a queue listing begun after it."""
    store, index = _one_pool_store()
    job1 = Job("fake", 1, "acme/lib", ("ubuntu-latest",), JobState.QUEUED)
    store.apply(ev.ForgeSynced("fake", [job1], [], 0.0), 0.0)  # this forge lists its queue
    store.add_pending(Instance("rs-cpu-1", "cpu", "mem", S.PENDING, 0.0, 0.0))
    store.apply(ev.Minted("rs-cpu-1", 7), 0.0)
    store.apply(ev.InstanceObserved("mem", InstanceInfo("rs-cpu-1", InstanceStatus.EXITED, {}, exit_code=0)), 1.0)
    store.apply(ev.TornDown("rs-cpu-1"), 1.5)
    late = 1.0 + TOOK_JOB_GRACE + 20
    assert plan(store.snapshot(late), index).creates == ()
    # A slow listing whose queue pages began before the exit still shows job 1 waiting: no second runner.
    store.apply(ev.ForgeSynced("fake", [job1], [], 0.5, queue_started_at=0.9), late)
    assert plan(store.snapshot(late), index).creates == () and list(store.claims) == ["rs-cpu-1"]
    # One begun after it is the truth: job 1 was taken.
    store.apply(ev.ForgeSynced("fake", [], [], late, queue_started_at=late + 1), late + 2)
    assert store.claims == {} and store.queued_jobs() == ()


def test_the_hold_is_bounded_when_listings_keep_failing() -> None:
    """No listing ever ends the guess: after a few resync intervals the job gets a runner."""
    store, index = _one_pool_store()
    job1 = Job("fake", 1, "acme/lib", ("ubuntu-latest",), JobState.QUEUED)
    store.apply(ev.ForgeSynced("fake", [job1], [], 0.0), 0.0)
    store.add_pending(Instance("rs-cpu-1", "cpu", "mem", S.PENDING, 0.0, 0.0))
    store.apply(ev.Minted("rs-cpu-1", 7), 0.0)
    busy = [RunnerInfo(7, "rs-cpu-1", online=True, busy=True)]
    store.apply(ev.ForgeSynced("fake", None, busy, 1.0, jobs_unknown=True), 1.0)  # the job listing failed
    hold = TOOK_JOB_HOLD_RESYNCS * store.config.timing.resync_interval
    assert plan(store.snapshot(1.0 + hold - 0.1), index).creates == ()
    assert [c.job.id for c in plan(store.snapshot(1.0 + hold + 0.1), index).creates if c.job] == [1]


def test_a_later_queue_listing_ends_a_torn_down_instance_claim() -> None:
    """A queue listed after a torn-down instance took its job is the truth: the claim is dropped."""
    store, index = _one_pool_store()
    store.add_pending(Instance("rs-cpu-1", "cpu", "mem", S.PENDING, 0.0, 0.0))
    store.apply(ev.Minted("rs-cpu-1", 7), 0.0)
    store.apply(ev.InstanceObserved("mem", InstanceInfo("rs-cpu-1", InstanceStatus.EXITED, {}, exit_code=0)), 1.0)
    store.apply(ev.TornDown("rs-cpu-1"), 1.5)
    assert list(store.claims) == ["rs-cpu-1"]
    job2 = Job("fake", 2, "acme/lib", ("ubuntu-latest",), JobState.QUEUED)
    store.apply(ev.ForgeSynced("fake", [job2], [], 2.0), 2.0)
    assert store.claims == {}
    assert [c.job.id for c in plan(store.snapshot(2.0), index).creates if c.job] == [2]


def test_an_instance_killed_before_it_was_busy_stands_for_no_job() -> None:
    """A non-zero exit of a not-yet-busy instance (killed, crashed) is no job taken: its job is served at once."""
    store, index = _one_pool_store()
    store.apply(ev.JobReported(Job("fake", 1, "acme/lib", ("ubuntu-latest",), JobState.QUEUED), 0.0), 0.0)
    store.add_pending(Instance("rs-cpu-1", "cpu", "mem", S.PENDING, 0.0, 0.0))
    store.apply(ev.Minted("rs-cpu-1", 7), 0.0)
    store.apply(ev.InstanceObserved("mem", InstanceInfo("rs-cpu-1", InstanceStatus.EXITED, {}, exit_code=137)), 1.0)
    assert store.instances["rs-cpu-1"].took_job_at is None
    store.apply(ev.TornDown("rs-cpu-1"), 1.5)
    assert store.claims == {}
    assert [c.job.id for c in plan(store.snapshot(2.0), index).creates if c.job] == [1]


def test_reports_older_than_a_teardown_do_not_bring_the_instance_back() -> None:
    """Late exit events and listings begun before the delete leave a torn-down instance gone; later listings do not."""
    store, _ = _one_pool_store()
    store.add_pending(Instance("rs-cpu-1", "cpu", "mem", S.PENDING, 0.0, 0.0))
    store.apply(ev.Minted("rs-cpu-1", 7), 0.0)
    exited = InstanceInfo("rs-cpu-1", InstanceStatus.EXITED, {LABEL_POOL: "cpu"}, exit_code=0)
    store.apply(ev.InstanceObserved("mem", exited), 1.0)
    store.apply(ev.TornDown("rs-cpu-1"), 2.0)
    assert store.instances == {}
    store.apply(ev.InstanceObserved("mem", exited), 2.5)
    # A start event delivered after the delete (docker's events stream, a busy loop) is old news too.
    running = InstanceInfo("rs-cpu-1", InstanceStatus.RUNNING, {LABEL_POOL: "cpu", LABEL_RUNNER_ID: "7"})
    store.apply(ev.InstanceObserved("mem", running), 2.55)
    store.apply(ev.ProviderSynced("mem", [exited], 1.9), 2.6)
    assert store.instances == {}
    # Listed after the delete, it is really there: adopted, to be deleted again.
    store.apply(ev.ProviderSynced("mem", [exited], 3.0), 3.1)
    assert store.instances["rs-cpu-1"].state is S.DONE


_JOBS = st.lists(st.tuples(st.sampled_from(REPOS), st.sampled_from(LABELS)), max_size=12)


def _queue(store: Store, specs: list[tuple[str, tuple[str, ...]]], first_id: int) -> list[Job]:
    jobs = [Job("fake", first_id + i, repo, labels, JobState.QUEUED) for i, (repo, labels) in enumerate(specs)]
    for job in jobs:
        store.apply(ev.JobReported(job, 0.0), 0.0)
    return jobs


@given(first=_JOBS, second=_JOBS, idle=st.lists(st.sampled_from(["cpu", "cpu-spill", "gpu"]), max_size=3))
@settings(max_examples=300, deadline=None)
def test_placing_new_jobs_on_the_last_plan_matches_a_full_plan(
    first: list[tuple[str, tuple[str, ...]]], second: list[tuple[str, tuple[str, ...]]], idle: list[str]
) -> None:
    """Newly queued jobs placed on top of the last plan get the same creates and pools as a full re-plan would give."""
    config = parse_config(config_data())
    index = PoolIndex(config)
    store = Store(config)
    for h in store.providers.values():
        h.synced = True
    for n, pool in enumerate(idle):
        store.add_pending(Instance(f"rs-idle-{n}", pool, index.pools[pool].provider, S.IDLE, 0.0, 0.0, idle_since=0.0))
    _queue(store, first, 1)
    last = plan(store.snapshot(0.0), index)
    for n, create in enumerate(last.creates):
        pool = index.pools[create.pool]
        job_id = create.job.id if create.job else None
        store.add_pending(Instance(f"rs-new-{n}", pool.name, pool.provider, S.PENDING, 0.0, 0.0, job_id=job_id))
    new = _queue(store, second, 100)
    incremental = place_new(last, new)
    full = plan(store.snapshot(0.0), index)
    assert incremental is not None
    assert sorted(c.pool for c in incremental.creates) == sorted(c.pool for c in full.creates)
    assert dict(incremental.assigned) == dict(full.assigned)
