"""The checker itself: each invariant fires when the world is broken on purpose."""

from __future__ import annotations

import dataclasses

import pytest
import structlog

from scaler.provider import LABEL_POOL
from scaler.secrets import Secret, forget_secret_value
from scaler.testing.fake_forge import FakeRunner
from tests.scenarios.sim import CANARY_TOKEN, World

pytestmark = pytest.mark.scenario


async def test_inv1_job_never_served() -> None:
    async with World(seed=61, never_boot=1.0) as w:
        w.schedule(3)
        with pytest.raises(AssertionError, match="inv1"):
            await w.finish(drain_limit=1200)


async def test_inv2_leaked_runner() -> None:
    async with World(seed=62) as w:
        w.schedule(3)
        await w.drain()
        w.forge.runners[1] = FakeRunner(1, "rs-small-jleak", Secret("leaked-runner-tok"), ("x",), busy=True)
        with pytest.raises(AssertionError, match="inv2"):
            await w.inv.check_final(1e9)


async def test_inv3_busy_instance_deleted() -> None:
    async with World(seed=63, job_time=(600, 600)) as w:
        w.schedule(1)
        await w.run_for(30)
        name = next(j.runner for j in w.jobs.values() if j.runner)
        assert name is not None
        await w.provider.delete(name)
        with pytest.raises(AssertionError, match="inv3"):
            w.inv.check_step()


async def test_inv4_pool_over_max() -> None:
    async with World(seed=64, job_time=(600, 600), foreign_share=0, odd_labels_share=0) as w:
        w.schedule(5)
        await w.run_for(10)
        assert len(w.provider.instances) == w.config.pools[0].max
        spec = next(iter(w.provider.instances.values())).spec
        await w.provider.create(
            dataclasses.replace(spec, name="rs-small-jextra", labels={**spec.labels, LABEL_POOL: "small"})
        )
        with pytest.raises(AssertionError, match="inv4"):
            w.inv.check_step()


async def test_inv5_canary_in_log_line() -> None:
    async with World(seed=65) as w:
        # An earlier test in the same process may have revealed the canary,
        # which registers it with the redactor: this test is about a leak the
        # redactor did not mask.
        forget_secret_value(CANARY_TOKEN)
        structlog.get_logger("oops").warning("debugging", header=f"x {CANARY_TOKEN} y")
        with pytest.raises(AssertionError, match="inv5"):
            w.inv.check_step()
