"""A job from a repository outside a pool's allow-list never gets that pool's
instance — even when its labels match and the pool has idle instances."""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from scaler.config import parse_config
from scaler.domain.instance import Instance, InstanceState
from scaler.domain.job import Job, JobState
from scaler.planner import PoolIndex, plan
from scaler.store import Snapshot
from tests.scenarios.sim import scenario_config

NAMES = ["acme", "Acme", "evil", "acme-evil", "ac", "app", "lib", "x"]
segment = st.sampled_from(NAMES)
pattern = st.one_of(
    st.just("*"),
    segment.map(lambda o: f"{o}/*"),
    st.tuples(segment, segment).map(lambda t: f"{t[0]}/{t[1]}"),
)
repo = st.one_of(
    st.tuples(segment, segment).map(lambda t: f"{t[0]}/{t[1]}"),
    st.sampled_from(["acme/../evil", "acme/app/../../evil", "acme/", "/acme", "acme", "", "acme/a/b", "ACME/APP",
                     "acme/..", "acme/.", "acme/x\ny", "acme/x y", "acme/\uff41pp", "acme/app\x00", "acme/\tapp"]),
    st.text(max_size=6).map(lambda t: f"acme/{t}"),
)


def oracle(patterns: list[str], repository: str) -> bool:
    """Allowed iff a pattern names it: ``*``, ``owner/*`` or ``owner/repo``
    (case-insensitive), and the repository is a well-formed ``owner/repo``."""
    parts = repository.lower().split("/")
    if len(parts) != 2 or not all(parts):
        return False
    # only names a forge can have: ASCII letters, digits, - _ . ; never . or ..
    allowed = set("abcdefghijklmnopqrstuvwxyz0123456789-_.")
    if any(p in (".", "..") or not set(p) <= allowed or len(p) > 100 for p in parts):
        return False
    for p in patterns:
        if p == "*":
            return True
        owner, name = p.lower().split("/")
        if owner == parts[0] and name in ("*", parts[1]):
            return True
    return False


@settings(max_examples=150, deadline=None)
@given(
    allow=st.lists(st.lists(pattern, min_size=1, max_size=3), min_size=1, max_size=4),
    repos=st.lists(repo, min_size=1, max_size=12),
    idle=st.integers(min_value=0, max_value=2),
)
def test_disallowed_repository_never_gets_the_pool(allow: list[list[str]], repos: list[str], idle: int) -> None:
    data = copy.deepcopy(scenario_config())
    base: dict[str, Any] = data["pools"][0]
    data["pools"] = [dict(base, name=f"p{i}", repositories=a, max=20, priority=i % 2) for i, a in enumerate(allow)]
    config = parse_config(data)
    index = PoolIndex(config)
    now = 1_000.0
    instances = tuple(
        Instance(
            f"rs-p{i}-i{k}",
            f"p{i}",
            "mem",
            InstanceState.IDLE,
            now - 10,
            now - 10,
            idle_since=now - 10,
            provisioned=True,
        )
        for i in range(len(allow))
        for k in range(idle)
    )
    jobs = tuple(Job("fake", n + 1, r, ("ubuntu-latest",), JobState.QUEUED) for n, r in enumerate(repos))
    result = plan(Snapshot(now, jobs, instances, frozenset()), index)
    by_key = {j.key: j for j in jobs}
    patterns = {f"p{i}": a for i, a in enumerate(allow)}
    for key, pool in result.assigned:
        assert oracle(patterns[pool], by_key[key].repository), (pool, by_key[key].repository)
    for create in result.creates:
        if create.job is not None:
            assert oracle(patterns[create.pool], create.job.repository), (create.pool, create.job.repository)
    # And every job some pool may serve was given a pool (there is room).
    served = {key for key, _ in result.assigned}
    for job in jobs:
        if any(oracle(a, job.repository) for a in allow):
            assert job.key in served


def test_star_patterns_never_admit_traversal_or_control_characters() -> None:
    """``acme/*`` and ``*`` admit ``acme/app`` but not ``acme/..`` or ``acme/x\\ny``."""
    from scaler.domain.labels import RepositoryAllowList

    for patterns in (("acme/*",), ("*",), ("acme/*", "*")):
        allow = RepositoryAllowList(patterns)
        assert allow.allows("acme/app")
        for bad in ("acme/..", "acme/.", "acme/x\ny", "acme/x\x00", "acme/a/b", "acme/ app", "acme/\uff41pp"):
            assert not allow.allows(bad), (patterns, bad)
