"""HA that rolls out: real replicas (Scaler + Lease election against the fake
API server + uvicorn on loopback) driven by the Deployment controller's own
rolling-update arithmetic (``rollout.py``), with deliveries sent to whichever
ready replica the Service would pick. Every replica is Ready, so 1, 2 and 3
replicas roll out; followers forward deliveries to the leader, and hold them
through a hand-over, so every delivery is served."""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import uvicorn

from scaler.app import Scaler
from scaler.config import Config, parse_config
from scaler.leader import LEADER_URL_ANNOTATION, LeaseElector
from scaler.provider import ProviderSettings
from scaler.testing import FakeForge, FakeForgeState, MemoryProvider
from scaler.testing.fake_kube import FakeKube
from scaler.testing.memory import MemoryInstance
from scaler.web import create_app
from tests.conftest import SECRET, base_config
from tests.kubernetes.rollout import Deployment, Pod, disruptions_allowed

pytestmark = pytest.mark.kubernetes

# The chart's strategy with leader election (tests/helm checks the chart renders it).
MAX_SURGE, MAX_UNAVAILABLE = 1, 0


def _config() -> Config:
    data = base_config()
    data["pools"][0].update(max=200, boot_timeout="5m")
    data["limits"] = {"max_instances": 500}
    data["timing"] = {"reconcile_interval": "100ms", "resync_interval": "300ms", "collect_interval": "200ms"}
    data["leader_election"] = {
        "enabled": True,
        "lease_name": "rs",
        "lease_duration": "1s",
        "renew_deadline": "600ms",
        "retry_period": "100ms",
        "forward_timeout": "4s",
    }
    return parse_config(data)


@dataclass
class World:
    kube: FakeKube
    config: Config = field(default_factory=_config)
    forge: FakeForgeState = field(default_factory=lambda: FakeForgeState(secret=SECRET))
    backend: dict[str, MemoryInstance] = field(default_factory=dict)
    violations: list[str] = field(default_factory=list)


class Replica:
    """One scaler pod: its own socket, elector, Scaler and uvicorn server."""

    def __init__(self, world: World, name: str, *, release: bool = True) -> None:
        self.name = name
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        le = world.config.leader_election.model_copy(update={"identity": name})
        self.elector = LeaseElector(le, world.kube.api_client(), release_on_cancel=release, advertise_url=self.url)
        provider = MemoryProvider(ProviderSettings("mem", "memory", "rs", {}), shared=world.backend)
        provider.on_create.append(
            lambda spec: None if self.elector.is_leader else world.violations.append(f"{name} created while following")
        )
        self.scaler = Scaler(
            world.config,
            forges={"fake": FakeForge(world.config.forges[0], world.forge)},
            providers={"mem": provider},
            elector=self.elector,
        )
        config = uvicorn.Config(
            create_app(self.scaler), log_config=None, access_log=False, lifespan="on", timeout_graceful_shutdown=3
        )
        self.server = uvicorn.Server(config)
        self.task = asyncio.create_task(self.server.serve(sockets=[self.sock]))

    async def started(self) -> None:
        await _until(lambda: self.server.started, 10)

    async def terminate(self) -> None:
        """SIGTERM: uvicorn drains, then the lifespan stops the scaler (and gives up the Lease)."""
        self.server.should_exit = True
        await asyncio.wait_for(self.task, 15)


async def _until(cond: Any, timeout: float) -> None:
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, "timed out"
        await asyncio.sleep(0.02)


async def _ready(http: httpx.AsyncClient, replica: Replica) -> bool:
    try:
        return (await http.get(f"{replica.url}/readyz", timeout=1)).status_code == 200
    except httpx.HTTPError:
        return False


@dataclass
class Sent:
    job_id: int
    status: int
    served_by: str


class Service:
    """Deliveries to a random ready, not-terminating replica, as the Service routes them."""

    def __init__(self, world: World, http: httpx.AsyncClient) -> None:
        self.world, self.http = world, http
        self.endpoints: list[Replica] = []
        self.sent: list[Sent] = []
        self.rng = random.Random(13)

    async def deliver(self) -> None:
        if not self.endpoints:
            return
        target = self.rng.choice(self.endpoints)
        job_id, headers, body = self.world.forge.queue_job("acme/app", ["ubuntu-latest"])
        r = await self.http.post(f"{target.url}/webhooks/fake", content=body, headers=headers, timeout=10)
        self.sent.append(Sent(job_id, r.status_code, r.headers.get("x-runner-scaler-served-by", target.url)))

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self.deliver()
            await asyncio.sleep(0.02)


async def _roll(world: World, replicas: int) -> tuple[Deployment, Service, list[Replica]]:
    """Install at revision 1, then roll out revision 2 with deliveries throughout."""
    made: list[Replica] = []
    terminating: list[asyncio.Task[None]] = []
    http = httpx.AsyncClient(trust_env=False)
    service = Service(world, http)

    async def make(name: str, _: int) -> Replica:
        replica = Replica(world, name)
        made.append(replica)
        await replica.started()
        return replica

    async def delete(pod: Pod) -> None:
        service.endpoints = [r for r in service.endpoints if r is not pod.handle]  # endpoints go first
        terminating.append(asyncio.create_task(pod.handle.terminate()))

    deployment = Deployment(replicas, MAX_SURGE, MAX_UNAVAILABLE, make, delete)

    async def sync_until_complete(timeout: float) -> None:
        end = time.monotonic() + timeout
        while True:
            states = {p.name: await _ready(http, p.handle) for p in deployment.pods}
            deployment.observe(lambda p, seen=states: seen[p.name])  # type: ignore[misc]
            service.endpoints = [p.handle for p in deployment.pods if p.ready_since is not None]
            if deployment.complete():
                return
            assert time.monotonic() < end, f"rollout stuck: {[(p.name, p.ready_since) for p in deployment.pods]}"
            await deployment.step()
            await asyncio.sleep(0.05)

    stop = asyncio.Event()
    sender = asyncio.create_task(service.run(stop))
    try:
        await sync_until_complete(20)  # the install
        deployment.revision = 2  # a new config: helm upgrade changes the pod template
        await sync_until_complete(30)
        await _until(lambda: all(t.done() for t in terminating), 20)
        for _ in range(10):  # and some after the rollout
            await service.deliver()
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            await sender
        await http.aclose()
    return deployment, service, made


@pytest.mark.parametrize("replicas", [1, 2, 3])
async def test_rolling_update_completes_and_every_delivery_is_served(replicas: int) -> None:
    """A rollout of 1, 2 or 3 replicas completes with every pod Ready, and every delivery sent during it is accepted."""
    with FakeKube() as kube:
        world = World(kube)
        deployment, service, made = await _roll(world, replicas)
        try:
            assert deployment.complete() and all(p.revision == 2 for p in deployment.pods)
            assert len(service.sent) > 10
            assert {s.status for s in service.sent} == {202}, [s for s in service.sent if s.status != 202]
            leaders = [p.handle for p in deployment.pods if p.handle.elector.is_leader]
            assert len(leaders) == 1
            lease = kube.get("Lease", "default", "rs")
            assert lease is not None and lease["metadata"]["annotations"][LEADER_URL_ANNOTATION] == leaders[0].url
            # Every delivered job reached the leader now serving, and has exactly one instance.
            await _until(lambda: len(world.backend) >= len(service.sent), 10)
            store = leaders[0].scaler.store
            assert {s.job_id for s in service.sent} <= {k[1] for k in store.jobs}
            assert len(world.backend) == len(service.sent)
            assert world.violations == []
        finally:
            for replica in made:
                if not replica.task.done():
                    await replica.terminate()


async def _leader_and_follower(world: World, *, release: bool = True) -> tuple[Replica, Replica]:
    """replica-a leading (rebuilt), then replica-b started beside it."""
    a = Replica(world, "replica-a", release=release)
    await a.started()
    await _until(lambda: a.scaler.ready, 10)
    b = Replica(world, "replica-b")
    await b.started()
    return a, b


async def test_follower_forwards_and_holds_deliveries_through_a_hand_over() -> None:
    """A follower forwards to the leader; when the leader dies holding the Lease, it waits to lead."""
    with FakeKube() as kube:
        world = World(kube)
        a, b = await _leader_and_follower(world, release=False)
        async with httpx.AsyncClient(trust_env=False) as http:
            try:
                await _until(lambda: b.elector.leader()[1] == a.url, 5)
                assert await _ready(http, a) and await _ready(http, b)
                follower_ready = (await http.get(f"{b.url}/readyz")).json()
                assert follower_ready == {"status": "ready", "role": "follower"}
                job_id, headers, body = world.forge.queue_job("acme/app", ["ubuntu-latest"])
                r = await http.post(f"{b.url}/webhooks/fake", content=body, headers=headers)
                assert (r.status_code, r.headers["x-runner-scaler-served-by"]) == (202, a.url)
                await _until(lambda: ("fake", job_id) in a.scaler.store.jobs, 5)
                assert b.scaler.store.jobs == {}
                pools = (await http.get(f"{b.url}/api/v1/pools")).json()["pools"]  # the leader's answer
                assert [p["name"] for p in pools] == ["small"] and pools[0]["queued"] + pools[0]["in_progress"] >= 0
                assert (await http.get(f"{b.url}/api/v1/pools/small")).status_code == 200

                await a.terminate()  # dies holding the Lease: b must wait it out
                t0 = time.monotonic()
                answers = []
                for _ in range(3):
                    job_id, headers, body = world.forge.queue_job("acme/app", ["ubuntu-latest"])
                    r = await http.post(f"{b.url}/webhooks/fake", content=body, headers=headers, timeout=10)
                    answers.append((r.status_code, r.headers.get("x-runner-scaler-served-by")))
                    await _until(lambda job=job_id: ("fake", job) in b.scaler.store.jobs, 5)
                assert answers == [(202, None)] * 3  # served by b itself, once it led
                assert time.monotonic() - t0 < world.config.leader_election.forward_timeout + 1
                assert world.violations == []
            finally:
                for replica in (a, b):
                    if not replica.task.done():
                        await replica.terminate()


async def test_a_forwarded_delivery_is_not_forwarded_again() -> None:
    """A follower that receives an already forwarded delivery answers 503 instead of bouncing it."""
    with FakeKube() as kube:
        world = World(kube)
        a, b = await _leader_and_follower(world)
        async with httpx.AsyncClient(trust_env=False) as http:
            try:
                _, headers, body = world.forge.queue_job("acme/app", ["ubuntu-latest"])
                headers["x-runner-scaler-forwarded-by"] = "replica-c"
                r = await http.post(f"{b.url}/webhooks/fake", content=body, headers=headers)
                assert r.status_code == 503 and r.json()["result"] == "not_leader"
                bad = dict(headers, **{"x-gitea-signature": "0" * 64, "x-hub-signature-256": "sha256=" + "0" * 64})
                del bad["x-runner-scaler-forwarded-by"]
                r = await http.post(f"{b.url}/webhooks/fake", content=body, headers=bad)
                assert r.status_code == 401  # a follower forwards only signed deliveries
            finally:
                for replica in (a, b):
                    await replica.terminate()


def _stand_in_rollout(replicas: int) -> Deployment:
    async def make(name: str, _: int) -> str:
        return name

    async def delete(_: Pod) -> None:
        return None

    return Deployment(replicas, MAX_SURGE, MAX_UNAVAILABLE, make, delete)


@pytest.mark.parametrize("replicas", [1, 2, 3])
async def test_the_arithmetic_stalls_when_only_the_leader_is_ready(replicas: int) -> None:
    """With only the leader Ready the arithmetic never finishes a rollout; with every replica Ready it does."""
    for rule, should_finish in (("leader-only", False), ("all", True)):
        d = _stand_in_rollout(replicas)
        for _ in range(10):  # the install, all ready (the first pod leads)
            d.observe(lambda p: True)
            await d.step()
        d.revision = 2
        for _ in range(50):
            leader = min(d.pods, key=lambda p: p.created)  # the oldest pod holds the Lease
            d.observe(lambda p, lead=leader, r=rule: r == "all" or p is lead)  # type: ignore[misc]
            if d.complete():
                break
            await d.step()
        assert d.complete() is should_finish, (rule, [(p.name, p.ready_since) for p in d.pods])


@pytest.mark.parametrize("replicas", [2, 3])
def test_the_pdb_lets_a_drain_evict_the_leader(replicas: int) -> None:
    """Every replica Ready: the chart's PDB (maxUnavailable 1) allows one eviction; only the leader Ready: none."""
    assert disruptions_allowed(replicas, healthy=replicas, max_unavailable=1) == 1
    assert disruptions_allowed(replicas, healthy=1, max_unavailable=1) == 0
