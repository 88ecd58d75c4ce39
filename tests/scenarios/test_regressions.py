"""Regressions for bugs the scenarios found in the core (see README)."""

from __future__ import annotations

from collections import Counter

import pytest

from scaler import events as ev
from tests.conftest import make_harness

pytestmark = pytest.mark.scenario


def _count_deregisters(h: object) -> Counter[int]:
    calls: Counter[int] = Counter()
    adapter = h.scaler.forges["fake"]  # type: ignore[attr-defined]
    original = adapter.deregister

    async def counting(runner_id: int) -> None:
        calls[runner_id] += 1
        await original(runner_id)

    adapter.deregister = counting
    return calls


async def test_runner_listed_before_teardown_is_not_deregistered_twice() -> None:
    """A forge listing applied while an instance is being torn down left its
    runner in the store after the teardown: the orphan collector then
    deregistered it a second time (224 extra DELETEs in a 500-job burst)."""
    h = make_harness()
    calls = _count_deregisters(h)
    await h.scaler.rebuild()
    job = h.queue()
    await h.sync()
    name = h.instance_for(job)
    h.run_job(job, name)
    await h.scaler.resync.run_once()  # listing (runner present, idle) queued with the job reports
    await h.scaler.settle()
    await h.scaler.settle()
    assert name not in h.scaler.store.instances
    assert h.scaler.store.runners["fake"] == {}
    assert all(n == 1 for n in calls.values()), calls


async def test_listing_older_than_teardown_is_stale() -> None:
    """The same, with the listing applied after the teardown finished."""
    h = make_harness()
    calls = _count_deregisters(h)
    await h.scaler.rebuild()
    job = h.queue()
    await h.sync()
    name = h.instance_for(job)
    listed_at = h.clock.now()
    runners = await h.scaler.forges["fake"].list_runners()
    h.clock.advance(1)
    h.run_job(job, name)
    await h.scaler.settle()
    assert name not in h.scaler.store.instances
    h.scaler.inbox.post(ev.ForgeSynced("fake", [], tuple(runners), listed_at))
    await h.scaler.settle()
    assert name not in h.scaler.store.runners["fake"]
    assert all(n == 1 for n in calls.values()), calls



async def test_job_bound_instances_with_late_webhooks() -> None:
    """Regression: on Forgejo an instance minted with a job handle can only
    ever run that job. When the job leaves the queue some other way (here:
    its ``queued`` delivery arrives after it ran, and a second instance is made
    for it), that instance is retired instead of being counted as free supply
    for the next job (which then waited for its max_lifetime, 2 h)."""
    from tests.scenarios.sim import WebhookPolicy, World

    async with World(
        seed=14, webhooks=WebhookPolicy(delay=300, reorder=True), job_time=(10, 40), bind_to_job=True
    ) as w:
        w.schedule(40, within=600)
        await w.finish()
