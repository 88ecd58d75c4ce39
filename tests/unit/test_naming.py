"""Instance names: DNS labels, distinct for distinct jobs after any truncation, never a spin."""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scaler.domain.job import Job, JobState
from scaler.naming import INT64_MAX, MAX_LEN, base36, instance_name, job_tail, owned_by, stem

DNS_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
# What the config accepts for controller_id and pool names (scaler.config.Name).
NAMES = st.from_regex(r"\A[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?\Z")
IDS = st.one_of(
    st.integers(min_value=0, max_value=INT64_MAX),
    st.integers(),  # negatives and ids past int64: the parsers refuse them, naming must still cope
    st.integers(min_value=10**29, max_value=10**101),
)


def _job(job_id: int) -> Job:
    return Job("f", job_id, "acme/app", ("x",), JobState.QUEUED)


def _name(controller: str, pool: str, job_id: int, nth: int = 1) -> str:
    taken = {instance_name(controller, pool, _job(job_id), lambda _: False)}
    name = next(iter(taken))
    for _ in range(nth - 1):
        name = instance_name(controller, pool, _job(job_id), taken.__contains__)
        taken.add(name)
    return name


def test_base36_refuses_negatives_at_once() -> None:
    """base36(-5) raises instead of looping for ever (the issue's hang)."""
    with pytest.raises(ValueError, match="negative"):
        base36(-5)


@given(st.integers(min_value=0, max_value=10**40))
def test_base36_round_trips(n: int) -> None:
    """base36 is int(…, 36)'s inverse."""
    assert int(base36(n), 36) == n


def test_longest_config_names_still_carry_the_job() -> None:
    """A 30-character controller and a 30-character pool: every job still gets its own name."""
    controller, pool = "c" * 30, "p" * 30
    names = {_name(controller, pool, j) for j in range(1, 2001)}
    assert len(names) == 2000
    assert all(len(n) <= MAX_LEN and DNS_LABEL.match(n) for n in names)
    assert _name(controller, pool, INT64_MAX).endswith(job_tail(INT64_MAX))


def test_short_names_are_unchanged() -> None:
    """Names that fit keep the form running instances already carry ({controller}-{pool}-j{id})."""
    assert _name("rs", "small", 36) == "rs-small-j10"
    assert _name("rs", "small", 36, nth=3) == "rs-small-j10-3"


def test_huge_and_negative_ids_give_bounded_names() -> None:
    """Ids past int64 (two 100-digit ids of the issue) and negative ids get distinct, short names."""
    a, b = 10**100, 10**100 + 1
    names = {_name("rs", "small", x) for x in (a, b, 10**30, 10**30 + 1, -5, -6)}
    assert len(names) == 6
    assert all(len(n) <= MAX_LEN and DNS_LABEL.match(n) for n in names)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(
    controller=NAMES,
    pools=st.lists(NAMES, min_size=1, max_size=3, unique=True),
    jobs=st.lists(st.tuples(IDS, st.integers(min_value=1, max_value=4)), min_size=2, max_size=12),
    data=st.data(),
)
def test_distinct_jobs_get_distinct_names(
    controller: str, pools: list[str], jobs: list[tuple[int, int]], data: st.DataObject
) -> None:
    """Over config-legal names and arbitrary ids: every (pool, job, n-th instance) has its own DNS-label name,
    and the name tells which pool made it."""
    stems = {stem(controller, p) for p in pools}
    if len(stems) < len(pools):
        return  # the config refuses such pools (check_stems)
    made: dict[str, tuple[str, int, int]] = {}
    for job_id, nth in jobs:
        pool = data.draw(st.sampled_from(pools))
        key = (pool, job_id, nth)
        name = _name(controller, pool, job_id, nth)
        assert len(name) <= MAX_LEN and DNS_LABEL.match(name), name
        assert made.setdefault(name, key) == key, (name, made[name], key)
        assert owned_by(name, controller, pools) == pool
    warm = instance_name(controller, pools[0], None, lambda _: False)
    assert len(warm) <= MAX_LEN and owned_by(warm, controller, pools) == pools[0]
