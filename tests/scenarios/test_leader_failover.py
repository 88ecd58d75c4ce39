"""Two replicas with Lease leader election (the fake Kubernetes API server),
one forge and one provider backend; the leader dies mid-burst without giving
the Lease up. Real time, short leases: the follower takes over within a lease
duration and finishes the burst. Only one replica ever acts at a time."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import random
import time
from typing import Any

import httpx
import pytest

from scaler.app import Scaler
from scaler.config import LeaderElection, parse_config
from scaler.provider import LABEL_JOB_ID, InstanceStatus, ProviderSettings
from scaler.testing import FakeForge, FakeForgeState, MemoryProvider
from scaler.testing.memory import MemoryInstance
from scaler.web import create_app
from tests.scenarios.sim import CANARY_WEBHOOK, scenario_config

pytestmark = pytest.mark.scenario
fake_kube = pytest.importorskip("scaler.testing.fake_kube")
leader = pytest.importorskip("scaler.leader")

JOBS = 60
LEASE, RENEW, RETRY = 1.0, 0.6, 0.1


class Replica:
    def __init__(
        self,
        name: str,
        kube: Any,
        data: dict[str, Any],
        forge: FakeForgeState,
        backend: dict[str, MemoryInstance],
        world: Failover,
    ) -> None:
        self.name = name
        config = parse_config(data)
        self.provider = MemoryProvider(ProviderSettings("mem", "memory", "rs", {}), shared=backend)
        self.provider.on_create.append(lambda spec: world.on_create(self, spec.name))
        self.provider.on_delete.append(world.on_delete)
        election = LeaderElection(
            enabled=True,
            lease_name="rs",
            namespace="default",
            lease_duration=LEASE,
            renew_deadline=RENEW,
            retry_period=RETRY,
            identity=name,
        )
        self.elector = leader.LeaseElector(election, kube.api_client(), release_on_cancel=False)
        self.scaler = Scaler(
            config,
            forges={"fake": FakeForge(config.forges[0], forge)},
            providers={"mem": self.provider},
            elector=self.elector,
        )
        self.http = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=create_app(self.scaler)), base_url="http://127.0.0.1"
        )
        self.dead_at: float | None = None


class Failover:
    def __init__(self) -> None:
        self.violations: list[str] = []
        self.creates: list[tuple[str, str, float, bool]] = []  # replica, name, when, was leading
        self.forge = FakeForgeState(secret=CANARY_WEBHOOK)
        self.backend: dict[str, MemoryInstance] = {}

    def on_create(self, replica: Replica, name: str) -> None:
        self.creates.append((replica.name, name, time.monotonic(), replica.elector.is_leader))
        if len(self.backend) > 10:
            self.violations.append(f"inv4: {len(self.backend)} instances > max 10")

    def on_delete(self, name: str) -> None:
        r = self.forge.runner_by_name(name)
        if r is not None and r.busy:
            self.violations.append(f"inv3: {name} deleted while busy")


async def test_leader_dies_mid_burst() -> None:
    rng = random.Random(77)
    world = Failover()
    data = scenario_config()
    data["pools"][0].update(max=10, idle_timeout="300ms", boot_timeout="20s")
    data["timing"] = {"reconcile_interval": "100ms", "resync_interval": "300ms", "collect_interval": "100ms"}
    data["limits"] = {"backoff_initial": "100ms", "backoff_max": "1s"}
    data["leader_election"] = {"enabled": True}
    with fake_kube.FakeKube() as kube:
        a = Replica("replica-a", kube, data, world.forge, world.backend, world)
        b = Replica("replica-b", kube, data, world.forge, world.backend, world)
        await a.scaler.start()
        await _until(lambda: a.elector.is_leader, 5)
        await b.scaler.start()
        outbox: list[tuple[dict[str, str], bytes]] = []
        for _ in range(JOBS):
            _, headers, body = world.forge.queue_job("acme/app", ["ubuntu-latest"])
            outbox.append((headers, body))
        started_jobs: dict[int, float] = {}
        t0 = time.monotonic()
        killed = False
        open_at_kill = 0
        kill_after = rng.randint(10, 25)  # mid-burst: some jobs done, some running, some queued
        try:
            while time.monotonic() - t0 < 30:
                done = sum(1 for j in world.forge.jobs.values() if j.status == "completed")
                if not killed and done >= kill_after:
                    killed = True
                    open_at_kill = sum(1 for j in world.forge.jobs.values() if j.status != "completed")
                    a.dead_at = time.monotonic()
                    await a.scaler.stop()  # the leader dies; the Lease is not released
                for replica in (a, b):
                    if replica.dead_at is None and outbox:
                        outbox = await _deliver(replica, outbox)
                _runners(world, started_jobs, outbox)
                finished = all(j.status == "completed" for j in world.forge.jobs.values())
                if killed and finished and not world.backend and not world.forge.runners:
                    break
                await asyncio.sleep(0.01)
            statuses = {j.status for j in world.forge.jobs.values()}
            assert statuses == {"completed"}, statuses
            assert world.backend == {} and world.forge.runners == {}
            assert b.scaler.store.instances == {}
            assert world.violations == []
            assert all(leading for _, _, _, leading in world.creates)
            assert a.dead_at is not None and open_at_kill > 0
            assert all(when < a.dead_at for who, _, when, _ in world.creates if who == "replica-a")
            assert any(who == "replica-b" for who, _, _, _ in world.creates), "the follower never took over"
            per_job: dict[str, int] = {}
            for inst_name in {n for _, n, _, _ in world.creates}:
                job = inst_name.rsplit("-j", 1)[-1].split("-")[0]
                per_job[job] = per_job.get(job, 0) + 1
            assert max(per_job.values()) <= 2  # at most one re-create across the fail-over
        finally:
            for replica in (a, b):
                with contextlib.suppress(Exception):
                    await replica.scaler.stop()
                await replica.http.aclose()


async def _until(cond: Any, timeout: float) -> None:
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, "timed out"
        await asyncio.sleep(0.02)


async def _deliver(replica: Replica, outbox: list[tuple[dict[str, str], bytes]]) -> list[tuple[dict[str, str], bytes]]:
    """Send to this replica; a follower answers 503 and the forge retries (keep it)."""
    keep = []
    for headers, body in outbox:
        r = await replica.http.post("/webhooks/fake", content=body, headers=headers)
        if r.status_code == 503:
            keep.append((headers, body))
    return keep


def _runners(world: Failover, started: dict[int, float], outbox: list[tuple[dict[str, str], bytes]]) -> None:
    now = time.monotonic()
    for name, inst in list(world.backend.items()):
        if inst.info.status != "running":
            continue
        runner = world.forge.runner_by_name(name)
        job_id = inst.info.labels.get(LABEL_JOB_ID)
        if runner is None or job_id is None:
            continue
        runner.online = True
        job = world.forge.jobs.get(int(job_id))
        if job is None:
            continue
        if job.status == "queued" and not runner.busy:
            outbox.append(world.forge.start_job(job.id, name))
            started[job.id] = now
        elif job.status == "in_progress" and job.runner_name == name and now - started[job.id] > 0.05:
            outbox.append(world.forge.complete_job(job.id))
            inst.info = dataclasses.replace(inst.info, status=InstanceStatus.EXITED, exit_code=0)
