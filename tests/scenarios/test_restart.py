"""The scaler restarting mid-burst: a new Scaler over the same forge and the
same provider backend rebuilds its state, adopts, never duplicates or leaks."""

from __future__ import annotations

import random

import pytest

from scaler.errors import ForgeTemporaryError
from tests.scenarios.faults import chance
from tests.scenarios.sim import WebhookPolicy, World

pytestmark = pytest.mark.scenario


@pytest.mark.parametrize("mid_flight", [False, True], ids=["between-passes", "mid-flight"])
async def test_restart_mid_burst(mid_flight: bool) -> None:
    """Restarted five times at random points of a 100-job burst; with
    ``mid-flight`` the old process dies with launches and teardowns half done."""
    async with World(seed=51 + mid_flight, webhooks=WebhookPolicy(loss=0.2), bind_to_job=True) as w:
        rng = random.Random(9)
        w.schedule(100, within=300)
        for _ in range(5):
            await w.run_for(rng.uniform(10, 120))
            await w.restart(mid_flight=mid_flight)
        await w.finish(extra=5 * w.config.timing.resync_interval)
        assert len(w.forge.minted) <= len(set(w.forge.minted)) + 10


async def test_restart_with_lost_replies() -> None:
    """Restarts while mint replies are being lost: orphan runners are found and
    deregistered, no runner name is left twice on the forge."""
    async with World(seed=53, bind_to_job=True) as w:
        w.forge_fault = chance(random.Random(10), 0.2, lambda op: ForgeTemporaryError("timed out"), ("mint_reply",))
        w.schedule(60, within=300)
        for _ in range(3):
            await w.run_for(60)
            await w.restart(mid_flight=True)
        await w.finish(extra=2 * w.config.limits.backoff_max)
