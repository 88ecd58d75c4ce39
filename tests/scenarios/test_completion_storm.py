"""1,000 jobs completing at once, through the HTTP fake forge (issue 17, item 1).

The real Gitea adapter over loopback HTTP, the real core (webhook route over
ASGI, reconciler, collector) and the memory provider, on a fake clock: 1,000
jobs are queued, minted, created and taken; then all complete in one step.
Everything must end with zero instances and zero runners, every forge call
within the forge's limit, and the teardowns must cost one call each (no
``get_runner`` per finished instance)."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from scaler.app import Scaler
from scaler.clock import FakeClock
from scaler.config import parse_config
from scaler.forges.gitea import GiteaForge
from scaler.provider import LABEL_JOB_ID, ProviderSettings
from scaler.testing import MemoryProvider
from scaler.testing.fake_forge_server import FakeForgeServer, FJob
from scaler.web import create_app
from tests.scenarios.sim import scenario_config

pytestmark = pytest.mark.scenario

JOBS = 1000
HOOK_SECRET = "completion-storm-hook-secret-3"


async def test_thousand_completions_leave_nothing(tmp_path: Path) -> None:
    """1,000 completions in one step: all torn down, no runner left, forge calls bounded, one call each."""
    srv = FakeForgeServer("gitea", "1.25.0").start()
    try:
        (tmp_path / "hook").write_text(HOOK_SECRET)
        (tmp_path / "token").write_text(srv.token)
        for f in ("hook", "token"):
            (tmp_path / f).chmod(0o600)
        data = scenario_config()
        data["forges"] = [
            {
                "name": "f",
                "type": "gitea",
                "url": srv.url,
                "scope": {"kind": "organization", "name": "acme"},
                "webhook_secret_files": [str(tmp_path / "hook")],
                "token_file": str(tmp_path / "token"),
                "concurrency": 8,
            }
        ]
        data["pools"][0].update(forge="f", max=JOBS)
        data["limits"] = {"max_instances": JOBS, "event_queue_size": 4 * JOBS}
        config = parse_config(data)
        clock = FakeClock(time.time())
        forge = GiteaForge(config.forges[0], clock=clock)
        provider = MemoryProvider(ProviderSettings("mem", "memory", "rs", {}))
        scaler = Scaler(config, forges={"f": forge}, providers={"mem": provider}, clock=clock)
        http = httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(scaler)), base_url="http://127.0.0.1")
        srv.subscribe("http://127.0.0.1/webhooks/f", HOOK_SECRET)

        async def deliver() -> None:
            sent, srv.outbox = srv.outbox, []
            for d in sent:
                assert (await http.post("/webhooks/f", content=d.body, headers=d.headers)).status_code in (200, 202)

        await scaler.rebuild()
        jobs = {j.id: j for j in (srv.queue_job("acme/app", ["ubuntu-latest"]) for _ in range(JOBS))}
        await deliver()
        await scaler.settle()
        assert len(provider.instances) == JOBS
        by_name = {r.name: r for r in srv.runners.values()}
        for name, inst in provider.instances.items():  # each runner comes online and takes its job
            runner = by_name[name]
            runner.online = True
            srv.set_status(jobs[int(inst.info.labels[LABEL_JOB_ID])], "running", runner)
        await deliver()
        await scaler.settle()
        assert Counter(str(i.state) for i in scaler.store.instances.values()) == {"busy": JOBS}

        before = len(srv.requests)
        for name in list(provider.instances):  # the storm: every job ends in the same step
            job: FJob = next(j for j in jobs.values() if j.runner_name == name)
            srv.set_status(job, "success")
            provider.finish(name)
        await deliver()
        clock.advance(2)
        await scaler.settle(rounds=20)
        assert scaler.store.instances == {} and provider.instances == {}
        assert [r.name for r in srv.runners.values() if r.name.startswith("rs-")] == []
        storm = Counter(f"{m} {p.rsplit('/', 1)[0]}" for m, p in srv.requests[before:])
        assert storm == {"DELETE /api/v1/orgs/acme/actions/runners": JOBS}, storm
        assert forge.http.limiter.max_in_flight <= 8
        await scaler.stop()
        await http.aclose()
    finally:
        srv.stop()
