"""Queue metrics that mean what they say: per-pool demand (``queued``) whatever
the capacity, split into ``assigned`` and ``held_back`` (with why), and per-forge
jobs no pool can serve, from deliveries and listings alike."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from prometheus_client import REGISTRY

from scaler import events as ev
from scaler.app import Scaler
from scaler.clock import FakeClock
from scaler.config import parse_config
from scaler.domain.job import Job, JobState
from scaler.planner import PoolIndex, plan
from scaler.provider import ProviderSettings
from scaler.store import Store
from scaler.testing import FakeForge, FakeForgeState, MemoryProvider
from tests.conftest import SECRET, base_config


def _pool(name: str, **kw: Any) -> dict[str, Any]:
    base = {"name": name, "forge": "fake", "provider": "mem", "labels": ["ubuntu-latest"], "max": 5}
    return {**base, **kw}


def _store(pools: list[dict[str, Any]], **over: Any) -> tuple[Store, PoolIndex]:
    config = parse_config(base_config(pools=pools, **over))
    store = Store(config)
    for p in config.providers:
        store.providers[p.name].synced = True
    return store, PoolIndex(config)


def _queue(store: Store, n: int, labels: tuple[str, ...] = ("ubuntu-latest",), repo: str = "acme/app") -> None:
    for _ in range(n):
        job_id = len(store.jobs) + 1
        store.apply(ev.JobReported(Job("fake", job_id, repo, labels, JobState.QUEUED), 100.0), 100.0)


def test_pool_at_max_zero_reports_its_waiting_jobs() -> None:
    """A pool with ``max: 0`` shows every matching waiting job as demand, all held back by max."""
    store, index = _store([_pool("keda", max=0)])
    _queue(store, 3)
    demand = plan(store.snapshot(100.0), index).demand()
    assert (demand.queued_in("keda"), demand.assigned.get("keda", 0), demand.held_back_in("keda")) == (3, 0, 3)
    assert demand.held_back == {("keda", "max"): 3}


def test_jobs_over_max_are_held_back_and_still_demand() -> None:
    """15 jobs on a pool of max 10: demand 15, 10 assigned, 5 held back by max."""
    store, index = _store([_pool("p", max=10)], limits={"max_instances": 100})
    _queue(store, 15)
    demand = plan(store.snapshot(100.0), index).demand()
    assert demand.queued_in("p") == 15 and demand.assigned["p"] == 10 and demand.held_back == {("p", "max"): 5}


def test_a_job_several_pools_match_is_counted_once_where_it_goes() -> None:
    """A job matching two pools counts in the one it was given, or when both are full in the first by priority."""
    store, index = _store([_pool("first", max=1, priority=5), _pool("spill", max=1)])
    _queue(store, 3)
    demand = plan(store.snapshot(100.0), index).demand()
    assert demand.assigned == {"first": 1, "spill": 1}
    assert demand.held_back == {("first", "max"): 1}
    assert demand.queued_in("first") + demand.queued_in("spill") == 3


@pytest.mark.parametrize(
    ("over", "reason"),
    [
        ({"limits": {"max_instances": 1}}, "global_cap"),
        ({"providers": [{"name": "mem", "type": "memory", "max_instances": 1}]}, "provider_cap"),
    ],
)
def test_held_back_names_the_cap(over: dict[str, Any], reason: str) -> None:
    """A job held back by the global or the provider cap says which."""
    store, index = _store([_pool("p", max=10)], **over)
    _queue(store, 3)
    demand = plan(store.snapshot(100.0), index).demand()
    assert demand.assigned == {"p": 1} and demand.held_back == {("p", reason): 2}


def test_held_back_by_an_unavailable_provider() -> None:
    """Jobs whose only pool's provider has not synced yet are held back as provider_unavailable."""
    store, index = _store([_pool("p")])
    store.providers["mem"].synced = False
    _queue(store, 2)
    assert plan(store.snapshot(100.0), index).demand().held_back == {("p", "provider_unavailable"): 2}


def test_jobs_no_pool_serves_are_unservable_per_forge() -> None:
    """Jobs whose labels or repository no pool admits are counted per forge, not in any pool."""
    store, index = _store([_pool("p", repositories=["acme/*"])])
    _queue(store, 2, labels=("gpu",))
    _queue(store, 1, repo="evil/app")
    _queue(store, 1)
    demand = plan(store.snapshot(100.0), index).demand()
    assert demand.unservable == {"fake": 3} and demand.queued_in("p") == 1


def _scaler(pools: list[dict[str, Any]]) -> tuple[Scaler, FakeForgeState, FakeClock]:
    config = parse_config(base_config(pools=pools))
    clock = FakeClock(1000.0)
    state = FakeForgeState(secret=SECRET)
    provider = MemoryProvider(ProviderSettings("mem", "memory", "rs", {}))
    scaler = Scaler(
        config, forges={"fake": FakeForge(config.forges[0], state)}, providers={"mem": provider}, clock=clock
    )
    return scaler, state, clock


def _sample(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


async def test_pool_stats_forge_stats_and_gauges_agree() -> None:
    """pool_stats, forge_stats and the gauges carry the same breakdown, from a listing and a delivery alike."""
    scaler, state, clock = _scaler([_pool("keda", max=0, labels=["ubuntu-latest"])])
    state.queue_job("acme/app", ["ubuntu-latest"])  # listed at rebuild
    state.queue_job("acme/app", ["gpu"])  # listed, no pool has the label
    await scaler.rebuild()
    _, headers, body = state.queue_job("acme/app", ["arm"])  # delivered, no pool has the label
    scaler.forges["fake"].verify(headers, body)
    job = scaler.forges["fake"].parse(headers, body).job
    assert job is not None
    scaler.inbox.offer(ev.JobReported(job, clock.now()))
    await scaler.step_reconcile()
    stats = scaler.pool_stats()["keda"]
    assert {k: stats[k] for k in ("queued", "assigned", "held_back", "max")} == {
        "queued": 1,
        "assigned": 0,
        "held_back": 1,
        "max": 0,
    }
    assert scaler.forge_stats() == {"forges": [{"name": "fake", "type": "fake", "unservable": 2, "lists_jobs": True}]}
    scaler.publish_gauges()
    assert _sample("runner_scaler_queued_jobs", pool="keda") == 1
    assert _sample("runner_scaler_held_back_jobs", pool="keda", reason="max") == 1
    assert _sample("runner_scaler_assigned_jobs", pool="keda") == 0
    assert _sample("runner_scaler_unservable_jobs", forge="fake") == 2
    assert _sample("runner_scaler_pool_max_instances", pool="keda") == 0
    await scaler.stop()


class _Follower:
    is_leader = False

    async def run(self, on_started_leading: Any, on_stopped_leading: Any) -> None:
        return None


async def test_a_demoted_leader_exports_no_state() -> None:
    """After losing leadership the pool API is empty and no pool, forge or loop series is exported."""
    scaler, state, _ = _scaler([_pool("p")])
    state.queue_job("acme/app", ["ubuntu-latest"])
    await scaler._start_leading()
    await asyncio.sleep(0)  # the loops register their heartbeats
    scaler.publish_gauges()
    assert _sample("runner_scaler_queued_jobs", pool="p") == 1
    assert _sample("runner_scaler_loop_interval_seconds", loop="reconciler") == 1.0
    scaler.elector = _Follower()
    await scaler._stop_leading()
    scaler.publish_gauges()
    assert scaler.pool_stats() == {} and scaler.forge_stats() == {"forges": []}
    assert scaler.store.instances == {} and scaler.store.jobs == {}
    for name, labels in [
        ("runner_scaler_queued_jobs", {"pool": "p"}),
        ("runner_scaler_instances", {"pool": "p", "state": "starting"}),
        ("runner_scaler_unservable_jobs", {"forge": "fake"}),
        ("runner_scaler_loop_last_success_timestamp_seconds", {"loop": "reconciler"}),
        ("runner_scaler_loop_interval_seconds", {"loop": "reconciler"}),
    ]:
        assert _sample(name, **labels) is None, name
    assert _sample("runner_scaler_leader") == 0
    await scaler.stop()
