"""Warm pools: the target's bounds (property tests), the planner keeping it, the
policy reacting to a burst pattern in a replay, and where an operator sees it."""

from __future__ import annotations

import asyncio
import math
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scaler.domain.job import Job, JobState
from scaler.planner import PoolIndex, plan
from scaler.sim import report
from scaler.sim.engine import Engine, ReplayOptions
from scaler.store import Snapshot
from scaler.trace.format import TraceJob
from scaler.warm import WarmPools
from scaler.warm.forecast import ArrivalModel, how
from scaler.warm.policy import STEP, budget, calibrate, feedback, hold
from tests.sim.conftest import T0, job, sim_config

DAY = 86400.0


def warm_pool(**warm: Any) -> dict[str, Any]:
    w = {"target_wait": "30s", "quantile": 0.95, "max_idle": 8, "start_time": "60s", **warm}
    return {"name": "linux", "forge": "forge", "provider": "cloud", "labels": ["linux"], "max": 12, "warm": w}


def pools_with(arrivals: list[float], **pool: Any) -> tuple[WarmPools, Any]:
    config = sim_config(pools=[{**warm_pool(), **pool}])
    warm = WarmPools(config, PoolIndex(config))
    warm.observe_jobs(Job("forge", i + 1, "acme/app", ("linux",), JobState.QUEUED, queued_at=t)
                      for i, t in enumerate(arrivals))
    return warm, config


arrival_lists = st.lists(st.floats(min_value=0, max_value=21 * DAY), max_size=120).map(
    lambda xs: sorted(T0 + x for x in xs)
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(arrivals=arrival_lists, min_idle=st.integers(0, 4), max_idle=st.integers(4, 10), pool_max=st.integers(4, 12),
       probe=st.floats(min_value=0, max_value=28 * DAY))
def test_target_bounds(arrivals: list[float], min_idle: int, max_idle: int, pool_max: int, probe: float) -> None:
    """Never below min_idle, never above max_idle or max, whatever arrived and whenever asked."""
    warm, _ = pools_with(arrivals, min_idle=min_idle, max=pool_max, warm={**warm_pool()["warm"], "max_idle": max_idle})
    t = warm.targets(T0 + probe)["linux"]
    assert min_idle <= t.target_idle <= max(min_idle, min(max_idle, pool_max))
    assert t.forecast >= 0 and t.reason
    assert warm.target_idle(T0 + probe)["linux"] == t.target_idle


@given(probe=st.floats(min_value=0, max_value=28 * DAY), min_idle=st.integers(0, 3))
def test_nothing_arrives_nothing_held(probe: float, min_idle: int) -> None:
    """A pool that has seen no arrivals holds min_idle, nothing more."""
    warm, _ = pools_with([], min_idle=min_idle)
    t = warm.targets(T0 + probe)["linux"]
    assert t.target_idle == min_idle and t.forecast == 0 and "learning" in t.reason


def test_start_within_target_needs_none() -> None:
    """When runners start within the target, none are held: on demand is in time."""
    busy = [T0 + d * DAY + h * 600 for d in range(10) for h in range(50)]
    warm, _ = pools_with(busy, warm={**warm_pool()["warm"], "start_time": "20s"})
    t = warm.targets(busy[-1] + 60)["linux"]
    assert t.target_idle == 0 and "on demand in time" in t.reason


def test_calibration_budget() -> None:
    """The cut-off leaves the rarest arrivals (under 1 - quantile of the jobs) to start on
    demand and holds a full run where runs are expected."""
    model = ArrivalModel()
    busy, quiet = 2.0 / 3600, 0.05 / 3600
    for d in range(14):
        predicted = None if d < 2 else busy  # forecasts of the first days are not scored
        for h in range(9, 16):
            for k in range(3):
                model.pending_prediction = predicted
                model.observe(T0 + d * DAY + h * 3600 + k)
        model.pending_prediction = None if d < 2 else quiet
        model.observe(T0 + d * DAY + 2 * 3600)  # one job at night: 4.5 % of the jobs
    cal = calibrate(model, 60.0, 30.0, 0.05, T0 + 15 * DAY)
    assert cal.jobs == 12 * (7 * 3 + 1)
    assert quiet < cal.cutoff <= busy
    assert hold(busy, cal) == 3 and hold(quiet, cal) == 0


def test_feedback_moves_budget() -> None:
    """Late jobs shrink the budget (hold more), jobs in time let it grow back, within bounds."""
    g = 0.0
    for _ in range(200):
        g = feedback(g, 0.95, late=True)
    assert math.isclose(budget(0.95, g), 0.05 * 0.1)
    for _ in range(100_000):
        g = feedback(g, 0.95, late=False)
    assert math.isclose(budget(0.95, g), 0.05 * 3.0)


def test_planner_keeps_the_warm_target() -> None:
    """The planner creates up to the warm target (above min_idle), and never beyond max."""
    config = sim_config(pools=[{**warm_pool(), "min_idle": 1, "max": 5}])
    index = PoolIndex(config)
    snap = Snapshot(T0, (), (), frozenset(), warm={"linux": 3})
    assert len(plan(snap, index).creates) == 3
    snap = Snapshot(T0, (), (), frozenset(), warm={"linux": 9})
    assert len(plan(snap, index).creates) == 5
    assert len(plan(Snapshot(T0, (), (), frozenset()), index).creates) == 1


def burst_trace(days: int = 21) -> list[TraceJob]:
    """Every weekday at 09:00 UTC a run of 12 jobs; nothing else but one job at 21:00 now and then."""
    jobs, n = [], 1
    for d in range(days):
        day = T0 + d * DAY
        if int((day // DAY + 3) % 7) >= 5:
            continue
        for k in range(12):
            jobs.append(job(n, day + 9 * 3600, run=600 + 10 * k))
            n += 1
        if d % 3 == 0:
            jobs.append(job(n, day + 21 * 3600))
            n += 1
    return jobs


def replay(pool: dict[str, Any], jobs: list[TraceJob]) -> tuple[dict[str, Any], Any]:
    engine = Engine(sim_config(pools=[pool]), jobs, ReplayOptions(warmup=14 * DAY))
    r = asyncio.run(engine.run())
    return report.build(r), r


def test_policy_reacts_to_a_burst_pattern() -> None:
    """Learned from two weeks, the pool is warm before the 09:00 burst and cold at night,
    so the bursts start at once for a fraction of a fixed min_idle's idle time."""
    jobs = burst_trace()
    warm_rep, r = replay({**warm_pool(), "max": 20, "warm": {**warm_pool()["warm"], "max_idle": 14}}, jobs)
    fixed_rep, _ = replay({**warm_pool(), "max": 20, "min_idle": 12, "warm": None}, jobs)
    bursts = [j for j in r.world.jobs if j.arrival >= r.window[0] and (j.arrival % DAY) == 9 * 3600]
    assert bursts and all(j.taken_at == j.arrival for j in bursts)  # warm before 09:00: no wait
    assert warm_rep["overall"]["wait_p95_s"] <= 30
    assert warm_rep["overall"]["idle_instance_minutes"] < 0.25 * fixed_rep["overall"]["idle_instance_minutes"]
    # the target rose ahead of 09:00 and fell back at night
    held = {how(t) % 24: n for t, n in r.warm if t >= r.window[0]}
    assert any(n >= 12 for h, n in held.items() if h in (8, 9))
    assert [n for t, n in r.warm if t >= r.window[0] and 1 <= (t % DAY) / 3600 < 6] in ([], [0], [0, 0])


def test_pool_stats_and_metrics() -> None:
    """/api/v1/pools carries warm {target_idle, forecast, reason}; null without warm; gauges set."""
    from prometheus_client import REGISTRY

    jobs = burst_trace(10)
    engine = Engine(sim_config(pools=[warm_pool(), {**warm_pool(), "name": "other", "labels": ["x"], "warm": None}]),
                    jobs, ReplayOptions())
    asyncio.run(engine.run())
    engine.clock.set(T0 + 14 * DAY + 9 * 3600 - 2 * STEP)  # a Monday, just before the burst
    stats = engine.scaler.pool_stats()
    assert stats["other"]["warm"] is None
    w = stats["linux"]["warm"]
    assert set(w) == {"target_idle", "forecast", "reason"} and w["target_idle"] >= 8 and w["forecast"] > 0
    assert "Mon 08h" in w["reason"] or "Mon 09h" in w["reason"]
    engine.scaler.publish_gauges()
    assert REGISTRY.get_sample_value("runner_scaler_warm_target_idle", {"pool": "linux"}) == w["target_idle"]
    assert REGISTRY.get_sample_value("runner_scaler_warm_forecast_jobs", {"pool": "linux"}) == w["forecast"]
