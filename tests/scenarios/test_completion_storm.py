"""1,000 jobs completing at once, through the HTTP fake forge (issue 17, item 1).

The real Gitea adapter over loopback HTTP, the real core (webhook route over
ASGI, reconciler, collector) and the memory provider, on a fake clock: 1,000
jobs are queued, minted, created and taken; then all complete in one step.
Everything must end with zero instances and zero runners, and every forge
call within the forge's limit. The teardowns cost no forge call at all: Gitea
deletes a used ephemeral runner itself (``test_used_runners.py`` covers a
forge that keeps them)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from scaler.forges.gitea import GiteaForge
from scaler.provider import LABEL_JOB_ID
from scaler.testing.fake_forge_server import FakeForgeServer, FJob
from tests.scenarios.http_world import HttpWorld, http_config

pytestmark = pytest.mark.scenario

JOBS = 1000


async def test_thousand_completions_leave_nothing(tmp_path: Path) -> None:
    """1,000 completions in one step: all torn down, no runner left, forge calls bounded, none for teardown."""
    srv = FakeForgeServer("gitea", "1.25.0").start()
    world = HttpWorld.build(srv, http_config(tmp_path, srv, forge={"concurrency": 8}, max=JOBS))
    scaler, provider = world.scaler, world.provider
    try:
        await scaler.rebuild()
        jobs = {j.id: j for j in (srv.queue_job("acme/app", ["ubuntu-latest"]) for _ in range(JOBS))}
        await world.deliver()
        await scaler.settle()
        assert len(provider.instances) == JOBS
        by_name = {r.name: r for r in srv.runners.values()}
        for name, inst in provider.instances.items():  # each runner comes online and takes its job
            runner = by_name[name]
            runner.online = True
            srv.set_status(jobs[int(inst.info.labels[LABEL_JOB_ID])], "running", runner)
        await world.deliver()
        await scaler.settle()
        assert Counter(str(i.state) for i in scaler.store.instances.values()) == {"busy": JOBS}

        before = len(srv.requests)
        for name in list(provider.instances):  # the storm: every job ends in the same step
            job: FJob = next(j for j in jobs.values() if j.runner_name == name)
            srv.set_status(job, "success")
            provider.finish(name)
        await world.deliver()
        world.clock.advance(2)
        await scaler.settle(rounds=20)
        assert scaler.store.instances == {} and provider.instances == {}
        assert [r.name for r in srv.runners.values() if r.name.startswith("rs-")] == []
        assert srv.requests[before:] == []  # the forge dropped each used runner: nothing to ask it
        assert isinstance(world.forge, GiteaForge) and world.forge.http.limiter.max_in_flight <= 8
        await world.close()
    finally:
        srv.stop()
