"""One runner per job while the resync's paged listings are slow (issue 17).

The 5,000-job storm minted 6,015 runners for 5,000 jobs: a queue listing of
100 pages began long before some runners took their jobs, the runner pages
read after showed those runners busy, and the store dropped each one's
took-a-job guess although the listing still showed its job waiting; the job
looked unserved and got a second runner. In miniature: 200 jobs, four pages
per listing, ten runners take a job after every page the forge serves, and
the in_progress reports arrive only at the end."""

from __future__ import annotations

from pathlib import Path

import pytest
from starlette.requests import Request
from starlette.responses import Response

from scaler.testing.fake_forge_server import FakeForgeServer
from tests.scenarios.http_world import HttpWorld, http_config

pytestmark = pytest.mark.scenario

JOBS = 200
TAKES_PER_PAGE = 10


class SlowListingForge(FakeForgeServer):
    """After serving each page of a runner or job listing, ten online idle
    runners take the oldest waiting job (as ``FetchTask`` hands them out)."""

    taking = False

    async def _dispatch(self, request: Request) -> Response:
        response = await super()._dispatch(request)
        if self.taking and request.method == "GET" and request.url.path.endswith(("/runners", "/jobs")):
            for runner in [r for r in self.runners.values() if r.online and not r.busy][:TAKES_PER_PAGE]:
                job = self.pick_job(runner, None)
                if job is not None:
                    self.set_status(job, "running", runner)
        return response


async def test_slow_paged_listings_mint_one_runner_per_job(tmp_path: Path) -> None:
    """Runners taking jobs between listing pages, reports late: exactly one runner and one instance per job."""
    srv = SlowListingForge("gitea", "1.25.0").start()
    world = HttpWorld.build(srv, http_config(tmp_path, srv, max=2 * JOBS))  # room for extras
    try:
        await world.scaler.rebuild()
        jobs = [srv.queue_job("acme/app", ["ubuntu-latest"]) for _ in range(JOBS)]
        await world.deliver()
        await world.scaler.settle()
        assert len(world.provider.instances) == JOBS
        for runner in srv.runners.values():
            runner.online = True
            runner.labels = ("ubuntu-latest",)
        srv.taking = True
        held = []  # the in_progress reports, late: every guess must come from the listings
        for _ in range(8):  # well past TOOK_JOB_GRACE; every job taken by the end
            await world.scaler.resync.run_once()
            held += srv.outbox
            srv.outbox = []
            await world.scaler.settle()
            world.clock.advance(15)
        assert all(j.status == "running" for j in jobs)
        ours = [r for r in srv.runners.values() if r.name.startswith("rs-")]
        assert len(ours) == JOBS and len(world.provider.instances) == JOBS  # no runner minted twice over

        srv.taking = False
        srv.outbox = held
        await world.deliver()
        for job in jobs:  # every job ends; the forge drops its ephemeral runner
            srv.set_status(job, "success")
            world.provider.finish(str(job.runner_name))
        await world.deliver()
        world.clock.advance(2)
        await world.scaler.settle(rounds=20)
        assert world.scaler.store.instances == {} and world.provider.instances == {}
        assert [r.name for r in srv.runners.values() if r.name.startswith("rs-")] == []
        await world.close()
    finally:
        srv.stop()
