"""The whole loop with an injected clock: webhook → create → job → teardown."""

from __future__ import annotations

from typing import Any

import pytest

from scaler.domain.instance import InstanceState
from scaler.errors import ForgeTemporaryError, ProviderPermanentError, ProviderTemporaryError
from scaler.testing import MemoryProvider
from tests.conftest import Harness, base_config, make_harness

S = InstanceState


async def test_queued_job_gets_an_instance_and_is_collected(harness: Harness) -> None:
    """A queued job creates one instance; completion deregisters then deletes it."""
    await harness.scaler.rebuild()
    job = harness.queue()
    await harness.scaler.settle()
    assert harness.provider.create_calls() == [f"rs-small-j{_b36(job)}"]
    await harness.sync()
    name = harness.instance_for(job)
    runner = harness.forge.runner_by_name(name)
    assert runner is not None and runner.online
    assert harness.states() == {name: "idle"}
    harness.run_job(job, name)
    await harness.scaler.settle()
    assert harness.scaler.store.instances == {}
    assert harness.provider.instances == {}
    assert harness.forge.runners == {}
    assert harness.forge.deregistered == [runner.id]


def _b36(n: int) -> str:
    from scaler.naming import base36

    return base36(n)


async def test_duplicate_delivery_creates_once(harness: Harness) -> None:
    """The same queued report twice still makes one instance."""
    await harness.scaler.rebuild()
    _, headers, body = harness.forge.queue_job("acme/app", ["ubuntu-latest"])
    harness.deliver(headers, body)
    harness.deliver(headers, body)
    await harness.scaler.settle()
    assert len(harness.provider.create_calls()) == 1


async def test_lost_webhook_found_by_resync(harness: Harness) -> None:
    """A job whose delivery was lost is found by polling and served."""
    await harness.scaler.rebuild()
    harness.forge.queue_job("acme/app", ["ubuntu-latest"])  # delivery dropped
    await harness.scaler.settle()
    assert harness.provider.create_calls() == []
    await harness.scaler.resync.run_once()
    await harness.scaler.settle()
    assert len(harness.provider.create_calls()) == 1


async def test_disallowed_repository_gets_nothing(harness: Harness) -> None:
    """A job from a repository outside the allow-list never gets an instance."""
    await harness.scaler.rebuild()
    harness.queue(repo="evil/app")
    await harness.scaler.settle()
    assert harness.provider.create_calls() == []


async def test_pool_max_is_respected(harness: Harness) -> None:
    """Ten jobs on a pool with max 5 make five instances, the rest later."""
    await harness.scaler.rebuild()
    jobs = [harness.queue() for _ in range(10)]
    await harness.scaler.settle()
    assert len(harness.provider.instances) == 5
    for job in jobs[:5]:
        harness.run_job(job, harness.instance_for(job))
    await harness.scaler.settle()
    # The five finished instances are gone and five more serve the rest.
    assert len(harness.provider.instances) == 5
    assert len(harness.provider.create_calls()) == 10


async def test_temporary_create_failure_backs_off_and_retries(harness: Harness) -> None:
    """A temporary create error retries after back-off with the same credential."""
    await harness.scaler.rebuild()
    harness.provider.fail_next_create(ProviderTemporaryError("engine busy"))
    job = harness.queue()
    await harness.scaler.settle()
    inst = harness.scaler.store.instances[harness.instance_for(job)]
    assert inst.state is S.PENDING and inst.attempts == 1 and inst.last_error == "engine busy"
    assert len(harness.forge.minted) == 1
    harness.clock.advance(harness.config.limits.backoff_initial + 0.1)
    await harness.sync()
    assert harness.scaler.store.instances[inst.name].state is S.IDLE
    assert len(harness.forge.minted) == 1  # not minted twice
    assert harness.provider.create_calls() == [inst.name, inst.name]


async def test_permanent_create_failure_frees_capacity(harness: Harness) -> None:
    """A permanent error fails the instance, deregisters its runner and a new one is made."""
    await harness.scaler.rebuild()
    harness.provider.fail_next_create(ProviderPermanentError("no such image"))
    job = harness.queue()
    await harness.scaler.settle()
    # The failed instance was collected; the job got a fresh instance.
    assert len(harness.provider.instances) == 1
    assert len(harness.forge.deregistered) == 1
    await harness.sync()
    assert harness.scaler.store.instances[harness.instance_for(job)].state is S.IDLE


async def test_hanging_create_times_out(harness: Harness) -> None:
    """A create that never returns is cut at create_timeout and retried."""
    data = base_config()
    data["providers"][0]["create_timeout"] = "50ms"
    h = make_harness(data)
    await h.scaler.rebuild()
    h.provider.hang_creates = True
    job = h.queue()
    await h.scaler.settle()
    inst = h.scaler.store.instances[h.instance_for(job)]
    assert inst.state is S.PENDING and "did not finish within" in (inst.last_error or "")
    h.provider.hang_creates = False
    h.clock.advance(60)
    await h.sync()
    assert h.scaler.store.instances[inst.name].state is S.IDLE


async def test_boot_timeout_fails_and_replaces() -> None:
    """A runner that never comes online is torn down after boot_timeout and replaced."""
    h = make_harness(auto_online=False)
    await h.scaler.rebuild()
    job = h.queue()
    await h.scaler.settle()
    first = h.instance_for(job)
    assert h.scaler.store.instances[first].state is S.STARTING
    h.clock.advance(h.config.pools[0].boot_timeout + 1)
    await h.scaler.settle()
    assert first not in h.provider.instances
    assert first in h.provider.deleted
    assert len(h.provider.instances) == 1  # a replacement for the still-queued job


async def test_busy_runner_survives_idle_timeout(harness: Harness) -> None:
    """An instance whose runner is busy is never retired for being idle."""
    await harness.scaler.rebuild()
    job = harness.queue()
    await harness.scaler.settle()
    name = harness.instance_for(job)
    harness.deliver(*harness.forge.start_job(job, name))
    await harness.scaler.settle()
    harness.clock.advance(harness.config.pools[0].idle_timeout * 3)
    await harness.scaler.settle()
    assert harness.scaler.store.instances[name].state is S.BUSY
    assert name in harness.provider.instances


async def test_max_lifetime_ends_busy_instance(harness: Harness) -> None:
    """A job that never ends is stopped at max_lifetime."""
    await harness.scaler.rebuild()
    job = harness.queue()
    await harness.scaler.settle()
    name = harness.instance_for(job)
    harness.deliver(*harness.forge.start_job(job, name))
    await harness.scaler.settle()
    harness.clock.advance(harness.config.pools[0].max_lifetime + 1)
    await harness.scaler.settle()
    assert name not in harness.provider.instances


async def test_surplus_idle_retired_only_when_forge_says_idle(harness: Harness) -> None:
    """An idle instance past idle_timeout is retired unless the forge says busy."""
    await harness.scaler.rebuild()
    job = harness.queue()
    await harness.sync()
    name = harness.instance_for(job)
    # The job was cancelled: it leaves the queue without running.
    harness.forge.jobs[job].status = "completed"
    await harness.scaler.resync.run_once()
    await harness.scaler.settle()
    # The forge now reports the runner busy (the webhook has not arrived yet).
    runner = harness.forge.runner_by_name(name)
    assert runner is not None
    runner.busy = True
    harness.clock.advance(harness.config.pools[0].idle_timeout + 1)
    await harness.scaler.settle()
    assert name in harness.provider.instances
    runner.busy = False
    harness.clock.advance(harness.config.pools[0].idle_timeout + 1)
    await harness.scaler.resync.run_once()
    await harness.scaler.settle()
    assert name not in harness.provider.instances


async def test_min_idle_kept(harness: Harness) -> None:
    """min_idle instances exist with no jobs and are not retired."""
    data = base_config()
    data["pools"][0]["min_idle"] = 2
    h = make_harness(data)
    await h.scaler.rebuild()
    await h.scaler.settle()
    assert len(h.provider.instances) == 2
    h.clock.advance(10_000)
    await h.scaler.settle()
    assert len(h.provider.instances) == 2


async def test_restart_rebuilds_without_duplicates(harness: Harness) -> None:
    """A new scaler over the same forge and provider adopts, never duplicates."""
    await harness.scaler.rebuild()
    jobs = [harness.queue() for _ in range(3)]
    await harness.scaler.settle()
    assert len(harness.provider.instances) == 3
    # A second scaler process: same forge state, same provider backend.
    from scaler.app import Scaler
    from scaler.provider import ProviderSettings
    from scaler.testing import FakeForge

    provider2 = MemoryProvider(ProviderSettings("mem", "memory", "rs", {}), shared=harness.provider.instances)
    forge2 = FakeForge(harness.config.forges[0], harness.forge)
    s2 = Scaler(harness.config, forges={"fake": forge2}, providers={"mem": provider2}, clock=harness.clock)
    await s2.rebuild()
    await s2.resync.run_once()
    await s2.settle()
    assert provider2.create_calls() == []
    assert {i.job_id for i in s2.store.instances.values()} == set(jobs)
    for job in jobs:
        name = next(i.name for i in s2.store.instances.values() if i.job_id == job)
        assert s2.store.instances[name].state is S.IDLE
        s2.inbox.offer(_reported(harness, *harness.forge.start_job(job, name)))
        s2.inbox.offer(_reported(harness, *harness.forge.complete_job(job)))
        provider2.finish(name)
    await s2.settle()
    assert provider2.instances == {} and harness.forge.runners == {}


def _reported(h: Harness, headers: dict[str, str], body: bytes) -> object:
    from scaler.events import JobReported

    d = h.scaler.forges["fake"].parse(headers, body)
    assert d.job is not None
    return JobReported(d.job, h.clock.now(), d.delivery_id)


async def test_orphan_runner_deregistered(harness: Harness) -> None:
    """A runner named like ours with no instance is deregistered."""
    await harness.scaler.rebuild()
    from scaler.secrets import Secret
    from scaler.testing.fake_forge import FakeRunner

    harness.forge.runners[1] = FakeRunner(1, "rs-small-jzzz", Secret("x" * 10), ("a",))
    harness.forge.runners[2] = FakeRunner(2, "someone-elses-runner", Secret("y" * 10), ("a",))
    await harness.scaler.resync.run_once()
    await harness.scaler.settle()
    assert 1 not in harness.forge.runners and 2 in harness.forge.runners


async def test_orphan_instance_collected(harness: Harness) -> None:
    """An instance of ours whose pool is unknown is deleted."""
    await harness.scaler.rebuild()
    job = harness.queue()
    await harness.scaler.settle()
    name = harness.instance_for(job)
    # A leftover from a removed pool, stamped with our controller id.
    stray = harness.provider.instances[name]
    from dataclasses import replace

    from scaler.provider import LABEL_POOL
    from scaler.testing.memory import MemoryInstance

    info = replace(stray.info, name="rs-gone-j1", labels={**stray.info.labels, LABEL_POOL: "gone"})
    harness.provider.instances["rs-gone-j1"] = MemoryInstance(stray.spec, info)
    await harness.scaler.resync.run_once()
    await harness.scaler.settle()
    assert "rs-gone-j1" not in harness.provider.instances


async def test_forge_outage_keeps_existing_state(harness: Harness) -> None:
    """A forge answering 5xx during resync changes nothing."""
    await harness.scaler.rebuild()
    job = harness.queue()
    await harness.sync()
    harness.forge.inject("list_jobs", ForgeTemporaryError("502"))
    assert await harness.scaler.resync.run_once()
    await harness.scaler.settle()
    assert harness.scaler.store.instances[harness.instance_for(job)].state is S.IDLE


async def test_provider_exit_marks_done_via_watch(harness: Harness) -> None:
    """An instance that exits is collected even without job webhooks."""
    await harness.scaler.rebuild()
    job = harness.queue()
    await harness.scaler.settle()
    name = harness.instance_for(job)
    harness.provider.finish(name, exit_code=1)
    await harness.scaler.resync.run_once()
    await harness.scaler.settle()
    assert name not in harness.provider.instances


async def test_delete_failure_retried(harness: Harness) -> None:
    """A delete that fails is retried after back-off until it succeeds."""
    await harness.scaler.rebuild()
    job = harness.queue()
    await harness.scaler.settle()
    name = harness.instance_for(job)
    harness.provider.fail_deletes.append(ProviderTemporaryError("engine down"))
    harness.run_job(job, name)
    await harness.scaler.settle()
    assert harness.scaler.store.instances[name].state is S.DELETING
    harness.clock.advance(60)
    await harness.scaler.settle()
    assert name not in harness.provider.instances and name not in harness.scaler.store.instances


async def test_fallback_to_lower_priority_pool() -> None:
    """When the preferred pool is full, a lower-priority matching pool serves."""
    data = base_config()
    big = dict(data["pools"][0], name="big", max=1, priority=10)
    data["pools"] = [big, dict(data["pools"][0], name="spill", max=5, priority=0)]
    h = make_harness(data)
    await h.scaler.rebuild()
    jobs = [h.queue() for _ in range(3)]
    await h.scaler.settle()
    pools = sorted(i.pool for i in h.scaler.store.instances.values())
    assert pools == ["big", "spill", "spill"]
    assert {i.job_id for i in h.scaler.store.instances.values()} == set(jobs)


async def test_memory_bounded_when_reports_are_lost(harness: Harness) -> None:
    """Jobs whose end is never reported are forgotten after their bounds."""
    await harness.scaler.rebuild()
    job = harness.queue()
    await harness.scaler.settle()
    name = harness.instance_for(job)
    harness.deliver(*harness.forge.start_job(job, name))  # completion never arrives
    await harness.scaler.settle()
    assert ("fake", job) in harness.scaler.store.jobs
    harness.clock.advance(harness.config.pools[0].max_lifetime + harness.config.timing.tombstone_ttl + 10)
    await harness.scaler.settle()
    assert ("fake", job) not in harness.scaler.store.jobs
    assert name not in harness.provider.instances  # and its instance ended at max_lifetime


async def test_queued_job_expires_when_forge_cannot_list() -> None:
    """On a forge without job listing, a queued job is dropped after the TTL."""
    h = make_harness()
    h.forge.can_list_jobs = False
    await h.scaler.rebuild()
    job = h.queue()
    await h.scaler.settle()
    h.clock.advance(h.config.timing.tombstone_ttl + 10)
    await h.sync()
    assert ("fake", job) not in h.scaler.store.jobs


@pytest.fixture
def full_plans(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The time of every full plan the reconciler makes from now on."""
    from scaler import reconciler as reconciler_module

    seen: list[float] = []
    real_plan = reconciler_module.plan

    def counting(snapshot: Any, index: Any) -> Any:
        seen.append(snapshot.now)
        return real_plan(snapshot, index)

    monkeypatch.setattr(reconciler_module, "plan", counting)
    return seen


async def test_new_jobs_between_full_plans_are_placed_without_replanning(
    harness: Harness, full_plans: list[float]
) -> None:
    """A pass woken only by newly queued jobs places them on the last plan; the timer still runs the full plan."""
    await harness.scaler.rebuild()
    await harness.scaler.step_reconcile(full=True)
    before = len(full_plans)
    jobs = [harness.queue(), harness.queue()]
    await harness.scaler.step_reconcile()
    await harness.scaler.reconciler.launches.join()
    assert sorted(harness.provider.create_calls()) == sorted(f"rs-small-j{_b36(j)}" for j in jobs)
    await harness.scaler.step_reconcile()  # Minted + Created: launch progress only
    assert len(full_plans) == before
    harness.clock.advance(harness.config.timing.reconcile_interval)
    await harness.scaler.step_reconcile()
    assert len(full_plans) == before + 1


async def test_job_bound_credential_forces_a_full_plan(full_plans: list[float]) -> None:
    """A credential bound to its job (Forgejo) changes what supply is free, so a pass re-plans (after the gap)."""
    from scaler.reconciler import FULL_PLAN_GAP

    harness = make_harness()
    harness.forge.bind_to_job = True
    await harness.scaler.rebuild()
    await harness.scaler.step_reconcile(full=True)
    before = len(full_plans)
    harness.queue()
    await harness.scaler.step_reconcile()
    await harness.scaler.reconciler.launches.join()
    assert len(full_plans) == before
    await harness.scaler.step_reconcile()  # drains the bound Minted: re-planning is due...
    assert len(full_plans) == before
    harness.clock.advance(FULL_PLAN_GAP)  # ...once the gap between event-driven full plans passed
    await harness.scaler.step_reconcile()
    assert len(full_plans) == before + 1


async def test_a_launch_that_ends_while_a_pass_drains_is_not_launched_again(harness: Harness) -> None:
    """A pass yields while applying many events; a launch finishing meanwhile is not dispatched (and minted) twice."""
    from scaler import events as ev
    from scaler.domain.job import Job, JobState
    from scaler.reconciler import DRAIN_SLICE

    await harness.scaler.rebuild()
    harness.queue()
    await harness.scaler.step_reconcile(full=True)  # the instance is added, its launch spawned, not yet run
    for i in range(2 * DRAIN_SLICE):  # reports for jobs no pool serves: only something to drain
        foreign = Job("fake", 10_000 + i, "evil/app", ("ubuntu-latest",), JobState.QUEUED)
        harness.scaler.inbox.post(ev.JobReported(foreign, harness.clock.now()))
    await harness.scaler.step_reconcile(full=True)  # the launch completes at the drain's first yield
    await harness.scaler.settle()
    assert len(harness.forge.minted) == 1 and len(harness.provider.create_calls()) == 1
