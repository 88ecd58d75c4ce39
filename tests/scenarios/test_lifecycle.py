"""Runners that never come online, jobs that never end, and the clock jumping."""

from __future__ import annotations

import random

import pytest

from scaler.errors import ProviderTemporaryError
from tests.scenarios.faults import chance
from tests.scenarios.sim import WebhookPolicy, World, scenario_config

pytestmark = pytest.mark.scenario


async def test_boot_timeout() -> None:
    """A fifth of the runners never come online: each is failed after
    boot_timeout, torn down and replaced."""
    async with World(seed=41, never_boot=0.2) as w:
        w.schedule(40, within=900)
        boot = w.config.pools[0].boot_timeout
        await w.finish(extra=3 * (boot + w.config.timing.collect_interval))
        assert w.never, "no runner was made to hang"
        assert not (w.never & set(w.provider.instances)), "a never-online instance was left behind"


async def test_max_lifetime_ends_endless_job() -> None:
    """A job that never ends keeps its instance until max_lifetime, then it is
    stopped (the one case a busy runner may be ended) and nothing leaks."""
    data = scenario_config()
    data["pools"][0]["max_lifetime"] = "30m"
    async with World(data, seed=42, webhooks=WebhookPolicy(loss=0.2)) as w:
        w.schedule(20, within=300)
        endless = w.queue_job("acme/app", ("ubuntu-latest",))
        w.jobs[endless].duration = float("inf")
        await w.finish(extra=0)
        assert w.inv.busy_deletes_allowed >= 1
        job = w.jobs[endless]
        assert job.completed_at is not None and job.lost_at is not None
        assert job.lost_at - job.queued_at <= 1800 + 60


async def test_clock_jump_forward() -> None:
    """The wall clock jumps an hour forward mid-burst: boot and idle timeouts
    fire at once, but no busy runner is killed and nothing leaks."""
    async with World(seed=43, job_time=(60, 300)) as w:
        w.schedule(60, within=600)
        await w.run_for(200)
        busy = w.busy_jobs()
        assert busy > 0
        await w.step(3600)
        await w.finish(extra=3600)


async def test_min_idle_pool_under_churn() -> None:
    """A pool keeping two warm runners, a burst with lost webhooks and flaky
    deletes: the warm pair is restored after the burst, and at the end the
    provider, the store and the forge agree on exactly those two."""
    data = scenario_config()
    data["pools"][0]["min_idle"] = 2
    async with World(data, seed=44, webhooks=WebhookPolicy(loss=0.3)) as w:
        w.provider_fault = chance(
            random.Random(12), 0.3, lambda op: ProviderTemporaryError("engine busy"), ("delete",), until=w.t0 + 900
        )
        w.schedule(40, within=600)
        await w.finish()
        assert len(w.provider.instances) == 2
        assert {str(i.state) for i in w.scaler.store.instances.values()} == {"idle"}
