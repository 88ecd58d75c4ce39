"""Domain rules: label matching, allow-lists, job and instance life cycles."""

from __future__ import annotations

import itertools

import pytest

from scaler.domain import (
    TRANSITIONS,
    IllegalTransition,
    Instance,
    InstanceState,
    Job,
    JobState,
    RepositoryAllowList,
    label_name,
    labels_match,
)
from scaler.domain.labels import GITHUB_IMPLICIT

S = InstanceState


@pytest.mark.parametrize(
    ("job", "pool", "implicit", "expected"),
    [
        (["ubuntu-latest"], ["ubuntu-latest:docker://node:20"], (), True),
        (["Ubuntu-Latest"], ["ubuntu-latest:docker://node:20"], (), True),
        (["native"], ["native:host"], (), True),
        (["ubuntu-latest", "gpu"], ["ubuntu-latest:docker://node:20"], (), False),
        (["self-hosted", "linux", "x64", "big"], ["big"], GITHUB_IMPLICIT, True),
        (["self-hosted", "big"], ["big"], (), False),
        ([], ["x"], (), False),
        (["a"], ["a", "b", "c"], (), True),
    ],
)
def test_labels_match(job: list[str], pool: list[str], implicit: tuple[str, ...], expected: bool) -> None:
    """Every runs-on label must be among the pool's labels, by name, any case."""
    assert labels_match(job, pool, implicit=implicit) is expected


def test_label_name_strips_scheme() -> None:
    """A scheme label matches on the part before the first colon."""
    assert label_name("Ubuntu-22.04:docker://ghcr.io/x:1") == "ubuntu-22.04"


@pytest.mark.parametrize(
    ("patterns", "repo", "allowed"),
    [
        (("acme/*",), "acme/app", True),
        (("acme/*",), "ACME/App", True),
        (("acme/*",), "evil/app", False),
        (("acme/app",), "acme/app2", False),
        (("*",), "anyone/anything", True),
        ((), "acme/app", False),
    ],
)
def test_allow_list(patterns: tuple[str, ...], repo: str, allowed: bool) -> None:
    """Allow-lists accept owner/repo, owner/* and *."""
    assert RepositoryAllowList(patterns).allows(repo) is allowed


def job(state: JobState, **kw: object) -> Job:
    return Job("f", 1, "acme/app", ("x",), state, **kw)  # type: ignore[arg-type]


def test_job_never_moves_backwards() -> None:
    """Merging an older report keeps the later state."""
    done = job(JobState.COMPLETED, runner_name="r1")
    assert done.merge(job(JobState.QUEUED)).state is JobState.COMPLETED
    assert job(JobState.QUEUED).merge(done).state is JobState.COMPLETED
    assert job(JobState.QUEUED).merge(done).runner_name == "r1"


def test_job_merge_is_order_independent() -> None:
    """Any order of the same reports gives the same state and runner."""
    reports = [job(JobState.QUEUED), job(JobState.IN_PROGRESS, runner_name="r"), job(JobState.COMPLETED)]
    results = set()
    for perm in itertools.permutations(reports):
        acc = perm[0]
        for r in perm[1:]:
            acc = acc.merge(r)
        results.add((acc.state, acc.runner_name))
    assert results == {(JobState.COMPLETED, "r")}


def inst(state: InstanceState) -> Instance:
    return Instance("n", "p", "prov", state, 0.0, 0.0)


def test_transition_table_is_enforced() -> None:
    """Only moves in the table are allowed; deleted is final."""
    for src, dsts in TRANSITIONS.items():
        for dst in InstanceState:
            if dst is src:
                continue
            if dst in dsts:
                assert inst(src).to(dst, 1.0).state is dst
            else:
                with pytest.raises(IllegalTransition):
                    inst(src).to(dst, 1.0)
    assert TRANSITIONS[S.DELETED] == frozenset()


def test_idle_since_recorded() -> None:
    """Becoming idle stamps idle_since."""
    assert inst(S.STARTING).to(S.IDLE, 5.0).idle_since == 5.0
