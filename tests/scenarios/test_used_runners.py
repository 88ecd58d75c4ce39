"""A finished ephemeral runner is left to the forge (issue 17: fewer forge calls per job).

Gitea, Forgejo and GitHub delete a used ephemeral runner themselves after its
job, so the collector tears a finished instance down without a forge call.
Should a forge keep the record after all, the resync's runner listing shows it
with no instance, and the orphan collector deregisters it: nothing is left."""

from __future__ import annotations

from pathlib import Path

import pytest

from scaler.provider import LABEL_JOB_ID
from scaler.testing.fake_forge_server import FakeForgeServer
from tests.scenarios.http_world import HttpWorld, http_config

pytestmark = pytest.mark.scenario

JOBS = 30


async def _run_jobs(world: HttpWorld) -> int:
    """JOBS jobs served and completed; the runner deletions asked of the forge meanwhile."""
    srv = world.srv
    await world.scaler.rebuild()
    jobs = {j.id: j for j in (srv.queue_job("acme/app", ["ubuntu-latest"]) for _ in range(JOBS))}
    await world.deliver()
    await world.scaler.resync.run_once()  # Forgejo 15 sends nothing for a new job: its listing finds it
    await world.scaler.settle()
    assert len(world.provider.instances) == JOBS
    by_name = {r.name: r for r in srv.runners.values()}
    for name, inst in world.provider.instances.items():
        by_name[name].online = True
        srv.set_status(jobs[int(inst.info.labels[LABEL_JOB_ID])], "running", by_name[name])
    await world.deliver()
    await world.scaler.settle()
    await world.scaler.resync.run_once()  # and the runners taking them
    await world.scaler.settle()
    before = len(srv.requests)
    for job in jobs.values():
        srv.set_status(job, "success")
        world.provider.finish(str(job.runner_name))
    await world.deliver()
    world.clock.advance(2)
    await world.scaler.resync.run_once()  # Forgejo: the listing shows the runners gone
    await world.scaler.settle(rounds=20)
    assert world.scaler.store.instances == {} and world.provider.instances == {}
    return sum(1 for m, _ in srv.requests[before:] if m == "DELETE")


@pytest.mark.parametrize("kind", ["gitea", "forgejo", "github"])
async def test_finished_runners_cost_no_forge_call(tmp_path: Path, kind: str) -> None:
    """Thirty jobs finish: thirty instances torn down without one runner deletion, no runner left."""
    srv = FakeForgeServer(kind).start()
    world = HttpWorld.build(srv, http_config(tmp_path, srv, max=JOBS))
    try:
        assert await _run_jobs(world) == 0
        assert [r for r in srv.runners.values() if r.name.startswith("rs-")] == []
        await world.close()
    finally:
        srv.stop()


async def test_runners_a_forge_keeps_are_deregistered_by_the_resync(tmp_path: Path) -> None:
    """A forge that keeps used runners: the next resync finds every one and they are deregistered."""
    srv = FakeForgeServer("gitea", "1.25.0")
    srv.drops_used_runners = False
    srv.start()
    world = HttpWorld.build(srv, http_config(tmp_path, srv, max=JOBS))
    try:
        await _run_jobs(world)
        lingering = [r.id for r in srv.runners.values() if r.name.startswith("rs-")]
        assert len(lingering) == JOBS  # left to the forge, which kept them
        world.clock.advance(world.scaler.config.timing.resync_interval)
        await world.scaler.resync.run_once()
        await world.scaler.settle()
        assert [r for r in srv.runners.values() if r.name.startswith("rs-")] == []
        deleted = sorted(int(p.rsplit("/", 1)[1]) for m, p in srv.requests if m == "DELETE")
        assert deleted == sorted(lingering)  # each deregistered once
        await world.close()
    finally:
        srv.stop()
