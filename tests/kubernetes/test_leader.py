"""Lease leader election against the fake API server: one leader at a time,
fail-over within a lease duration, and no Pod created twice across replicas."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from scaler.config import LeaderElection
from scaler.leader import AlwaysLeader, LeaseElector
from scaler.testing.fake_kube import FakeKube
from tests.kubernetes.conftest import ProviderFactory, launch

pytestmark = pytest.mark.kubernetes

LEASE = 1.0
RENEW = 0.6
RETRY = 0.1


def config(identity: str, **kw: Any) -> LeaderElection:
    data: dict[str, Any] = dict(
        enabled=True,
        lease_name="runner-scaler",
        namespace="default",
        lease_duration=LEASE,
        renew_deadline=RENEW,
        retry_period=RETRY,
        identity=identity,
    )
    data.update(kw)
    return LeaderElection(**data)


class Replica:
    """An elector plus a record of what its callbacks saw."""

    def __init__(
        self, kube: FakeKube, identity: str, *, release: bool = True, clock: Callable[[], float] = time.time
    ) -> None:
        self.elector = LeaseElector(config(identity), kube.api_client(), clock=clock, release_on_cancel=release)
        self.started = 0
        self.stopped = 0
        self.led_at: float | None = None
        self.stopped_at: float | None = None
        self.task: asyncio.Task[None] | None = None

    async def _on_start(self) -> None:
        self.started += 1
        self.led_at = time.monotonic()

    async def _on_stop(self) -> None:
        self.stopped += 1
        self.stopped_at = time.monotonic()

    def start(self) -> Replica:
        self.task = asyncio.create_task(self.elector.run(self._on_start, self._on_stop))
        return self

    async def kill(self) -> None:
        assert self.task is not None
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


async def until(pred: Callable[[], bool], timeout: float = 5.0) -> float:
    t0 = time.monotonic()
    while not pred():
        if time.monotonic() - t0 > timeout:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.01)
    return time.monotonic() - t0


@pytest.fixture
async def replicas(kube: FakeKube) -> AsyncIterator[list[Replica]]:
    made: list[Replica] = []
    yield made
    for r in made:
        if r.task is not None and not r.task.done():
            await r.kill()


async def test_exactly_one_leads_and_failover_within_lease_duration(kube: FakeKube, replicas: list[Replica]) -> None:
    a = Replica(kube, "a", release=False).start()
    b = Replica(kube, "b", release=False).start()
    replicas += [a, b]
    await until(lambda: a.elector.is_leader or b.elector.is_leader)
    for _ in range(30):  # about 3 lease renewals
        assert a.elector.is_leader != b.elector.is_leader
        await asyncio.sleep(0.05)
    leader, follower = (a, b) if a.elector.is_leader else (b, a)
    lease = kube.get("leases", "default", "runner-scaler")
    assert lease is not None and lease["spec"]["holderIdentity"] == leader.elector.identity
    assert lease["spec"]["renewTime"]
    await leader.kill()  # killed: stops renewing, does not release
    assert leader.stopped == 1 and not leader.elector.is_leader
    took = await until(lambda: follower.elector.is_leader)
    assert took <= LEASE + 3 * RETRY, took
    assert took >= LEASE - 2 * RETRY, "took over before the lease expired"
    lease = kube.get("leases", "default", "runner-scaler")
    assert lease is not None and lease["spec"]["holderIdentity"] == follower.elector.identity
    assert lease["spec"]["leaseTransitions"] == 1


async def test_release_on_cancel_hands_over_fast(kube: FakeKube, replicas: list[Replica]) -> None:
    a = Replica(kube, "a").start()
    replicas.append(a)
    await until(lambda: a.elector.is_leader)
    b = Replica(kube, "b").start()
    replicas.append(b)
    await asyncio.sleep(0.2)
    assert not b.elector.is_leader
    await a.kill()
    took = await until(lambda: b.elector.is_leader)
    assert took < LEASE / 2


async def test_leader_that_cannot_renew_stops_acting_before_takeover(
    kube: FakeKube, replicas: list[Replica], monkeypatch: pytest.MonkeyPatch
) -> None:
    a = Replica(kube, "a", release=False).start()
    replicas.append(a)
    await until(lambda: a.elector.is_leader)
    b = Replica(kube, "b").start()
    replicas.append(b)

    async def partitioned(*args: Any, **kwargs: Any) -> dict[str, Any]:
        raise ConnectionError("network partition")

    monkeypatch.setattr(a.elector, "_call", partitioned)
    cut = time.monotonic()
    await until(lambda: not a.elector.is_leader)
    assert time.monotonic() - cut <= RENEW + 2 * RETRY
    await until(lambda: b.led_at is not None)
    assert a.stopped_at is not None and b.led_at is not None and a.stopped_at < b.led_at


async def test_expiry_uses_the_local_observation_clock(kube: FakeKube) -> None:
    now = [1000.0]
    a = LeaseElector(config("a"), kube.api_client(), clock=lambda: now[0])
    b = LeaseElector(config("b"), kube.api_client(), clock=lambda: now[0])
    assert await a.try_acquire_or_renew()
    assert not await b.try_acquire_or_renew()  # b first observes the record now
    now[0] += LEASE - 0.01
    assert not await b.try_acquire_or_renew()
    assert await a.try_acquire_or_renew()  # a renews: the record changes
    now[0] += LEASE - 0.01
    assert not await b.try_acquire_or_renew()  # observed change restarts b's wait
    now[0] += LEASE
    assert await b.try_acquire_or_renew()
    assert not await a.try_acquire_or_renew()


def test_invalid_timing_is_rejected(kube: FakeKube) -> None:
    with pytest.raises(ValueError, match="renew_deadline"):
        LeaseElector(config("a", renew_deadline=2.0), kube.api_client())


async def test_always_leader() -> None:
    leader = AlwaysLeader()
    events: list[str] = []

    async def start() -> None:
        events.append("start")

    async def stop() -> None:
        events.append("stop")

    task = asyncio.create_task(leader.run(start, stop))
    await until(lambda: leader.is_leader)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert events == ["start", "stop"] and not leader.is_leader


async def test_two_replicas_never_create_a_pod_twice(
    kube: FakeKube, make_provider: ProviderFactory, replicas: list[Replica]
) -> None:
    """Two scaler replicas (provider + elector each) serve the same demand; the
    leader is killed half-way; every wanted Pod exists and was created once."""
    kube.kubelet = False
    demand: list[str] = [f"job-{n}" for n in range(10)]
    both_led = False

    def replica(identity: str) -> tuple[Replica, Callable[[], Any]]:
        rep = Replica(kube, identity, release=False)
        provider = make_provider()

        async def reconcile() -> None:
            while True:
                if rep.elector.is_leader:
                    # A fresh leader rebuilds its view from the cluster before acting.
                    have = {i.name for i in await provider.list()}
                    for name in list(demand):
                        if not rep.elector.is_leader:
                            break
                        if name not in have:
                            await provider.create(launch(name))
                await asyncio.sleep(0.02)

        return rep, reconcile

    (a, loop_a), (b, loop_b) = replica("a"), replica("b")
    replicas += [a.start(), b.start()]
    loops = [asyncio.create_task(loop_a()), asyncio.create_task(loop_b())]

    async def watch_overlap() -> None:
        nonlocal both_led
        while True:
            both_led |= a.elector.is_leader and b.elector.is_leader
            await asyncio.sleep(0.005)

    overlap = asyncio.create_task(watch_overlap())
    try:
        await until(lambda: all(kube.get("pods", "default", n) for n in demand))
        leader = a if a.elector.is_leader else b
        await leader.kill()
        loops[0 if leader is a else 1].cancel()
        demand.extend(f"job-{n}" for n in range(10, 20))
        await until(lambda: all(kube.get("pods", "default", n) for n in demand), timeout=10)
    finally:
        for t in [*loops, overlap]:
            t.cancel()
        await asyncio.gather(*loops, overlap, return_exceptions=True)
    assert not both_led
    creations = {name: n for (kind, _, name), n in kube.creations.items() if kind == "pods"}
    assert set(creations) == set(demand)
    assert set(creations.values()) == {1}
    posts = [path for method, path in kube.requests if method == "POST" and path.endswith("/pods")]
    assert len(posts) == len(demand)  # nobody even tried twice


async def test_failing_start_callback_steps_down_and_hands_over(kube: FakeKube, replicas: list[Replica]) -> None:
    a = Replica(kube, "a")

    async def broken() -> None:
        raise RuntimeError("boom")

    a.task = asyncio.create_task(a.elector.run(broken, a._on_stop))
    replicas.append(a)
    await until(lambda: a.elector.is_leader)
    b = Replica(kube, "b").start()
    replicas.append(b)
    await until(lambda: b.elector.is_leader)
    assert not a.elector.is_leader and a.stopped == 1
