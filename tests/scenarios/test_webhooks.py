"""Webhooks lost, duplicated, reordered and delayed: polling keeps the truth."""

from __future__ import annotations

import pytest

from tests.scenarios.sim import WebhookPolicy, World

pytestmark = pytest.mark.scenario


@pytest.mark.parametrize("loss", [0.1, 0.5, 1.0])
async def test_webhooks_lost(loss: float) -> None:
    """A share of deliveries never arrives; 100 % means polling only."""
    async with World(seed=11, webhooks=WebhookPolicy(loss=loss)) as w:
        w.schedule(60, within=900)
        await w.finish()
        if loss == 1.0:
            assert w.webhook_results == []
        assert w.inv.creates >= w.summary()["eligible"] * 0.9


async def test_webhooks_duplicated() -> None:
    """Half the deliveries arrive twice (same or new delivery id): still one instance per job."""
    async with World(seed=12, webhooks=WebhookPolicy(dup=0.5), bind_to_job=True) as w:
        w.schedule(60, within=900)
        await w.finish()
        assert 200 in w.webhook_results  # the duplicates were answered "duplicate"
        eligible = w.summary()["eligible"]
        assert len(set(w.created_names)) == eligible, w.summary()


async def test_webhooks_reordered() -> None:
    """Deliveries arrive shuffled within a 20 s window (completed before queued, …)."""
    async with World(seed=13, webhooks=WebhookPolicy(delay=20, reorder=True)) as w:
        w.schedule(60, within=900)
        await w.finish(extra=20)


async def test_webhooks_delayed_past_completion() -> None:
    """Every delivery arrives 3-5 minutes late, after its job has long finished:
    polling serves the jobs, and the stale reports change nothing."""
    async with World(seed=14, webhooks=WebhookPolicy(delay=300, reorder=True), job_time=(10, 40)) as w:
        w.schedule(40, within=600)
        await w.finish(extra=0)


async def test_webhooks_only_forge_cannot_list_jobs() -> None:
    """A forge without a job listing (Gitea 1.24): webhooks are the only demand signal."""
    async with World(seed=15) as w:
        w.forge.can_list_jobs = False
        w.schedule(40, within=600)
        await w.finish()
