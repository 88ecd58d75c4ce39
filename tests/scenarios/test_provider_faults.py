"""The provider misbehaving: creates failing (temporary, permanent, lost
replies), creates hanging past their deadline, deletes failing then
succeeding, listings failing."""

from __future__ import annotations

import random

import pytest

from scaler.errors import ProviderPermanentError, ProviderTemporaryError
from tests.scenarios.faults import chance, combine, window
from tests.scenarios.sim import Hang, WebhookPolicy, World, scenario_config

pytestmark = pytest.mark.scenario


def _temp(op: str) -> Exception:
    return ProviderTemporaryError(f"{op}: engine busy")


def _perm(op: str) -> Exception:
    return ProviderPermanentError(f"{op}: image not found")


async def test_create_fails_temporarily() -> None:
    """30 % of creates fail with a temporary error: retried with back-off, one credential each."""
    async with World(seed=31, webhooks=WebhookPolicy(loss=0.1)) as w:
        w.provider_fault = chance(random.Random(3), 0.3, _temp, ("create",))
        w.schedule(50, within=900)
        await w.finish(extra=3 * w.config.limits.backoff_max)
        names = w.forge.minted
        assert len(names) == len(set(names)), "a retried create minted a second runner"


async def test_create_fails_permanently() -> None:
    """20 % of creates fail for good: the instance is failed, its runner
    deregistered, and the job gets a fresh instance."""
    async with World(seed=32) as w:
        w.provider_fault = chance(random.Random(4), 0.2, _perm, ("create",))
        w.schedule(50, within=900)
        await w.finish(extra=w.config.limits.backoff_max)
        assert len(w.forge.deregistered) >= len(w.forge.minted) - len(w.forge.runners)


async def test_create_reply_lost() -> None:
    """The provider made the instance but the reply was lost: the retry adopts it."""
    async with World(seed=33) as w:
        w.provider_fault = chance(random.Random(5), 0.25, _temp, ("create_reply",))
        w.schedule(50, within=900)
        await w.finish(extra=2 * w.config.limits.backoff_max)


async def test_create_hangs_past_deadline() -> None:
    """Some creates never answer: each is cut at create_timeout and retried."""
    data = scenario_config()
    data["providers"][0]["create_timeout"] = "20ms"  # real time: asyncio.wait_for
    async with World(data, seed=34) as w:
        w.provider_fault = chance(random.Random(6), 0.15, lambda op: Hang(op), ("hang",))
        w.schedule(30, within=600)
        await w.finish(extra=2 * w.config.limits.backoff_max)
        assert w.hangs > 0


async def test_delete_fails_then_succeeds() -> None:
    """For 20 minutes every other delete fails (some after deleting): retried until gone."""
    async with World(seed=35) as w:
        rng = random.Random(7)
        until = w.clock.now() + 1200
        w.provider_fault = combine(
            chance(rng, 0.5, _temp, ("delete",), until=until),
            chance(rng, 0.2, _temp, ("delete_reply",), until=until),
        )
        w.schedule(50, within=900)
        await w.finish(extra=w.config.limits.backoff_max)


async def test_provider_list_fails() -> None:
    """The provider cannot list for 10 minutes: nothing is forgotten or doubled."""
    async with World(seed=36, webhooks=WebhookPolicy(loss=0.3)) as w:
        start = w.clock.now() + 120
        w.provider_fault = window(start, start + 600, _temp, ("list",))
        w.schedule(50, within=900)
        await w.finish(extra=600)


async def test_caps_under_pressure() -> None:
    """Two pools behind one provider with a provider cap and a global cap, a
    burst of 80 jobs and flaky creates: no cap is ever exceeded."""
    data = scenario_config()
    pool = data["pools"][0]
    data["pools"] = [
        dict(pool, name="fast", max=6, priority=10),
        dict(pool, name="spill", max=6, priority=0),
    ]
    data["providers"][0]["max_instances"] = 9
    data["limits"]["max_instances"] = 8
    async with World(data, seed=37) as w:
        w.provider_fault = chance(random.Random(8), 0.1, _temp, ("create",))
        w.schedule(80, within=60)
        await w.finish(extra=2 * w.config.limits.backoff_max)
