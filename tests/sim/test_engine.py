"""The replay: the real core against the simulated forge and provider, on a virtual clock."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import scaler.reconciler
from scaler.app import Scaler
from scaler.collector import Collector
from scaler.planner import Plan
from scaler.reconciler import Reconciler
from scaler.resync import Resync
from scaler.sim import report
from scaler.sim.engine import Engine, ReplayOptions
from scaler.sim.latency import Latency, parse_distribution
from scaler.store import Store
from scaler.trace.format import TraceJob
from tests.sim.conftest import T0, job, sim_config

POOL = {"name": "linux", "forge": "forge", "provider": "cloud", "labels": ["linux"], "max": 50}


def run(config: Any, jobs: list[TraceJob], **options: Any) -> dict[str, Any]:
    replay = asyncio.run(Engine(config, jobs, ReplayOptions(**options)).run())
    return report.build(replay)


def stable(rep: dict[str, Any]) -> dict[str, Any]:
    """A report without what depends on the machine (how long it took)."""
    out = dict(rep)
    out["replay"] = {k: v for k, v in rep["replay"].items() if k not in ("replay_seconds",)}
    return out


def test_uses_the_real_core(monkeypatch: pytest.MonkeyPatch) -> None:
    """The replay drives the very classes serve runs, and plans with the real planner."""
    calls: list[Plan] = []
    real_plan = scaler.reconciler.plan

    def spy(*args: Any, **kwargs: Any) -> Plan:
        result = real_plan(*args, **kwargs)
        calls.append(result)
        return result

    monkeypatch.setattr(scaler.reconciler, "plan", spy)
    engine = Engine(sim_config(), [job(1, T0), job(2, T0 + 600)], ReplayOptions())
    s = engine.scaler
    assert type(s) is Scaler and type(s.store) is Store and type(s.reconciler) is Reconciler
    assert type(s.collector) is Collector and type(s.resync) is Resync
    replay = asyncio.run(engine.run())
    assert calls and any(p.creates for p in calls)
    assert all(j.taken_at is not None for j in replay.world.jobs)


def test_min_idle_zero_waits_one_start() -> None:
    """With no idle runners every job waits exactly the provider's start time."""
    jobs = [job(i, T0 + i * 1000) for i in range(1, 30)]
    rep = run(sim_config(), jobs, latency=Latency(45.0), end=T0 + 31_000)
    o = rep["overall"]
    assert (o["jobs"], o["wait_p50_s"], o["wait_p95_s"], o["wait_max_s"]) == (29, 45.0, 45.0, 45.0)
    assert o["instances_created"] == 29 and o["jobs_over_target"] == 29 and o["unserved"] == 0
    assert o["idle_instance_minutes"] == 0 and o["busy_instance_minutes"] == pytest.approx(29 * 5, abs=0.1)
    assert o["boot_instance_minutes"] == pytest.approx(29 * 0.75, abs=0.1)


def test_fixed_min_idle_serves_at_once_and_costs_idle() -> None:
    """Idle runners take jobs at once; the pool pays for them between jobs."""
    jobs = [job(i, T0 + 3600 + i * 1000) for i in range(1, 20)]
    rep = run(sim_config(pools=[dict(POOL, min_idle=2)]), jobs, warmup=3600)
    o = rep["overall"]
    assert o["wait_max_s"] == 0 and o["jobs_over_target"] == 0
    window_min = (rep["replay"]["to"] - rep["replay"]["from"]) / 60
    # two free runners all the time, each booting a minute after it replaced one that took a job
    assert o["idle_instance_minutes"] + o["boot_instance_minutes"] == pytest.approx(2 * window_min, abs=1)
    assert o["peak_instances"] >= 2


def test_max_caps_and_unmatched() -> None:
    """A burst over max waits for runners to free up; jobs no pool serves are counted apart."""
    burst = [job(i, T0, run=600) for i in range(1, 11)] + [job(99, T0, labels=("gpu",))]
    rep = run(sim_config(pools=[dict(POOL, max=4)]), burst)
    o = rep["overall"]
    assert o["jobs"] == 10 and rep["replay"]["unmatched_jobs"] == 1
    assert o["peak_instances"] == 4
    assert o["wait_max_s"] >= 2 * 600  # the last ones wait two job lengths for a free slot


def test_skipping_quiet_passes_changes_nothing() -> None:
    """Skipping timer passes and resyncs that cannot change anything gives serve's report."""
    jobs = [job(i, T0 + (i // 5) * 900 + i, run=200 + 37 * (i % 7)) for i in range(1, 60)]
    config = sim_config(pools=[dict(POOL, min_idle=1, idle_timeout="3m", max=6)])
    fast = run(config, jobs)
    slow = run(config, jobs, skip_quiet=False)
    assert stable(fast)["overall"] == stable(slow)["overall"]
    assert fast["replay"]["passes"] < slow["replay"]["passes"]


def test_deterministic() -> None:
    """The same trace and config give the same report, start latency drawn from a distribution too."""
    jobs = [job(i, T0 + i * 97, run=100 + i) for i in range(1, 80)]
    config = sim_config(pools=[dict(POOL, min_idle=1)])
    latency = parse_distribution("median=40s,p95=90s")
    a, b = run(config, jobs, latency=latency), run(config, jobs, latency=latency)
    assert stable(a) == stable(b)
    c = run(config, jobs, latency=latency, seed=7)
    assert stable(c)["overall"] != stable(a)["overall"]


def test_latency_distribution() -> None:
    """Draws have the asked median and p95."""
    draw = parse_distribution("median=40s,p95=90s").sampler(1)
    xs = sorted(draw() for _ in range(20_000))
    assert xs[10_000] == pytest.approx(40, rel=0.05) and xs[19_000] == pytest.approx(90, rel=0.07)
    for bad in ("median=40s", "p95=1m,median=2m", "median=x,p95=1m", "mean=1s,p95=2s"):
        with pytest.raises(ValueError, match="provider-start-dist"):
            parse_distribution(bad)


def test_bitcoin_days(bitcoin: list[TraceJob]) -> None:
    """Two days of the real trace replay with every report key, per pool and overall."""
    pools = [dict(POOL, name=n, labels=[n]) for n in ("linux", "macos", "windows")]
    day = [j for j in bitcoin if j.queued_at < bitcoin[0].queued_at + 2 * 86400]
    rep = run(sim_config(pools=pools), day, end=day[-1].queued_at + 4 * 3600)  # past the last job's end
    keys = {"jobs", "wait_p50_s", "wait_p95_s", "wait_p99_s", "idle_instance_minutes", "busy_instance_minutes",
            "instances_created"}
    assert keys <= set(rep["overall"]) and all(keys <= set(p) for p in rep["pools"].values())
    assert rep["overall"]["jobs"] == len(day) == sum(p["jobs"] for p in rep["pools"].values())
    assert rep["overall"]["wait_p95_s"] == 60.0  # min_idle 0, 60 s starts
    expected_busy = sum(j.duration for j in day) / 60
    assert rep["overall"]["busy_instance_minutes"] == pytest.approx(expected_busy, rel=0.01)


def test_report_window_excludes_warmup() -> None:
    """Jobs of the warm-up are replayed but not reported."""
    jobs = [job(i, T0 + i * 3600) for i in range(1, 10)]
    rep = run(sim_config(), jobs, warmup=4.5 * 3600)
    assert rep["overall"]["jobs"] == 4  # arrivals 6 h to 9 h after T0; the window starts 5.5 h after
