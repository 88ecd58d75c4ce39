"""The forge misbehaving: 429 with Retry-After, 5xx bursts, timeouts (with
lost replies) and a 30-minute outage."""

from __future__ import annotations

import random

import pytest

from scaler.errors import ForgeTemporaryError
from tests.scenarios.faults import FORGE_CALLS, bursts, chance, combine, window
from tests.scenarios.sim import WebhookPolicy, World

pytestmark = pytest.mark.scenario


def _429(op: str) -> Exception:
    return ForgeTemporaryError(f"{op}: 429 Too Many Requests", retry_after=30.0)


def _503(op: str) -> Exception:
    return ForgeTemporaryError(f"{op}: 503 Service Unavailable")


def _timeout(op: str) -> Exception:
    return ForgeTemporaryError(f"{op}: timed out after 10s")


async def test_forge_rate_limited() -> None:
    """A third of all forge calls answer 429 with Retry-After: 30."""
    async with World(seed=21, webhooks=WebhookPolicy(loss=0.3)) as w:
        w.forge_fault = chance(random.Random(1), 0.33, _429, FORGE_CALLS)
        w.schedule(50, within=900)
        await w.finish(extra=5 * 30)


async def test_forge_5xx_bursts() -> None:
    """Every 5 minutes the forge answers 503 to everything for a minute."""
    async with World(seed=22, webhooks=WebhookPolicy(loss=0.3)) as w:
        w.forge_fault = bursts(300, 60, w.clock.now() + 30, _503, FORGE_CALLS)
        w.schedule(50, within=1200)
        await w.finish(extra=2 * 60 + w.config.limits.backoff_max)


async def test_forge_timeouts_with_lost_replies() -> None:
    """Calls time out; some mints and deregistrations did happen on the forge
    but the answer was lost (a retry must not leak a second runner)."""
    async with World(seed=23, webhooks=WebhookPolicy(loss=0.2)) as w:
        rng = random.Random(2)
        w.forge_fault = combine(
            chance(rng, 0.15, _timeout, ("mint_reply", "deregister_reply")),
            chance(rng, 0.15, _timeout, FORGE_CALLS),
        )
        w.schedule(50, within=900)
        await w.finish(extra=2 * w.config.limits.backoff_max)


async def test_forge_outage_30_minutes() -> None:
    """The forge is down for 30 minutes mid-burst (API and webhooks): nothing
    is torn down by mistake and every job is served once it is back."""
    async with World(seed=24) as w:
        start = w.clock.now() + 300
        end = start + 1800
        w.forge_fault = window(start, end, _503, FORGE_CALLS)
        w.schedule(30, within=600)
        w.schedule(30, within=1800, start=start)
        await w.run_for(300)
        w.webhooks.loss = 1.0  # the forge cannot send webhooks either
        await w.run_for(1800)
        w.webhooks.loss = 0.0
        await w.finish(extra=1800 + w.config.limits.backoff_max)
