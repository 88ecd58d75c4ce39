"""``next_decision_at``: no plan of the same snapshot decides differently before it
(what lets a replay skip the reconciler's quiet timer passes)."""

from __future__ import annotations

import dataclasses
import math

from hypothesis import given, settings
from hypothesis import strategies as st

from scaler.domain.instance import Instance, InstanceState
from scaler.domain.job import Job, JobState
from scaler.planner import Plan, PoolIndex, next_decision_at, plan
from scaler.store import Claim, Snapshot
from tests.sim.conftest import sim_config

S = InstanceState
CONFIG = sim_config(pools=[
    {"name": "linux", "forge": "forge", "provider": "cloud", "labels": ["linux"], "max": 6, "min_idle": 1,
     "boot_timeout": "2m", "idle_timeout": "5m", "max_lifetime": "1h"},
    {"name": "arm", "forge": "forge", "provider": "cloud", "labels": ["arm"], "max": 3, "idle_timeout": "1m"},
])
INDEX = PoolIndex(CONFIG)
NOW = 10_000.0

instances = st.lists(
    st.builds(
        lambda i, pool, state, age, idle, took, retire: Instance(
            f"i{i}", pool, "cloud", state, NOW - age, NOW - min(age, idle or 0.0),
            idle_since=NOW - min(age, idle) if idle is not None else None,
            took_job_at=NOW - took if took is not None else None,
            retire_reason="r" if retire else None, provisioned=True,
        ),
        st.integers(0, 10_000), st.sampled_from(["linux", "arm"]),
        st.sampled_from([S.PENDING, S.CREATING, S.STARTING, S.IDLE, S.BUSY, S.DONE]),
        st.floats(0, 7200), st.one_of(st.none(), st.floats(0, 900)), st.one_of(st.none(), st.floats(0, 20)),
        st.booleans(),
    ),
    max_size=8, unique_by=lambda i: i.name,
)
jobs = st.lists(st.builds(lambda i, lab: Job("forge", i, "acme/app", (lab,), JobState.QUEUED),
                          st.integers(1, 10_000), st.sampled_from(["linux", "arm"])), max_size=6,
                unique_by=lambda j: j.id)
claims = st.lists(st.builds(lambda age: Claim("linux", NOW - age), st.floats(0, 20)), max_size=2)


def decisions(p: Plan) -> tuple[object, ...]:
    return (tuple((c.pool, c.job) for c in p.creates), p.retires, p.fails)


@settings(max_examples=300, deadline=None)
@given(instances, jobs, claims, st.lists(st.floats(0, 1), min_size=1, max_size=4))
def test_no_new_decision_before(insts: list[Instance], queued: list[Job], cl: list[Claim],
                                fractions: list[float]) -> None:
    """Plans at any time in [now, next_decision_at) decide what the plan at now does."""
    snap = Snapshot(NOW, tuple(queued), tuple(insts), frozenset(), tuple(cl))
    at = next_decision_at(snap, INDEX)
    assert at > NOW
    base = decisions(plan(snap, INDEX))
    end = at if math.isfinite(at) else NOW + 86_400
    for f in fractions:
        t = NOW + f * (end - NOW)
        if t < at:
            assert decisions(plan(dataclasses.replace(snap, now=t), INDEX)) == base, t
