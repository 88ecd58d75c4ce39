"""Fuzz every forge's delivery parser: the only outcomes are a parsed
Delivery (with well-typed fields) or a WebhookError subclass (the documented 4xx)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scaler.config import parse_config
from scaler.domain.job import Job
from scaler.domain.repository import is_repository_name
from scaler.errors import WebhookError
from scaler.forges._common import INT64_MAX, MAX_LABELS
from scaler.forges.base import Delivery
from scaler.testing import FakeForge, FakeForgeState
from tests.scenarios.sim import scenario_config

Parser = Callable[[Mapping[str, str], bytes], Delivery]


def _parsers() -> dict[str, Parser]:
    fake = FakeForge(parse_config(scenario_config()).forges[0], FakeForgeState())
    parsers: dict[str, Parser] = {"fake": fake.parse}
    try:
        from scaler.forges.forgejo import parse_forgejo_delivery
        from scaler.forges.gitea import parse_gitea_delivery
        from scaler.forges.github import parse_github_delivery
    except ImportError:  # the adapters are not there yet
        return parsers
    parsers["gitea"] = lambda h, b: parse_gitea_delivery("gitea", h, b)
    parsers["forgejo"] = lambda h, b: parse_forgejo_delivery("forgejo", h, b)
    parsers["github"] = lambda h, b: parse_github_delivery("github", h, b)[0]
    return parsers


PARSERS = _parsers()

EVENT_HEADERS = ["x-github-event", "x-gitea-event", "x-forgejo-event", "x-gogs-event", "x-forgejo-event-type"]
EVENTS = ["workflow_job", "ping", "push", "workflow_job_queued", "workflow_job_completed", "", "workflow_job_x"]
KEYS = [
    "action",
    "workflow_job",
    "job",
    "repository",
    "full_name",
    "id",
    "labels",
    "runs_on",
    "status",
    "conclusion",
    "run_id",
    "runner_name",
    "handle",
    "created_at",
    "started_at",
    "installation",
]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.sampled_from(
        [
            "queued",
            "waiting",
            "in_progress",
            "completed",
            "success",
            "skipped",
            "acme/app",
            "1",
            "2024-01-01T00:00:00Z",
            "0001-01-01T00:00:00Z",
            "ubuntu-latest",
        ]
    ),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=8), inner, max_size=6)
    ),
    max_leaves=10,
)


_strings = st.lists(st.text(max_size=10), max_size=3)
HOSTILE_REPOS = ["acme/..", "acme/.", "../acme", "acme/x\ny", "acme/a/b", "acme/\uff41pp", "acme/app\x00", "acme/ app"]
HOSTILE_IDS = [-5, 0, -1, 2**63, 2**63 - 1, 10**30, 10**30 + 1, 1e30, -0.0, "-3", "9" * 30, True]
_job = st.fixed_dictionaries(
    {
        "id": st.integers(min_value=0, max_value=2**63) | st.sampled_from(HOSTILE_IDS) | json_values,
        "labels": _strings | json_values,
        "runs_on": _strings | json_values,
        "status": st.sampled_from(["queued", "waiting", "in_progress", "completed", "running", "x"]) | json_values,
        "run_id": st.sampled_from(HOSTILE_IDS) | json_values,
        "runner_name": json_values,
        "handle": json_values,
        "created_at": json_values,
    }
)
# Mostly-right payloads with random fields: reaches deep into the parsers.
job_shaped = st.fixed_dictionaries(
    {
        "action": st.sampled_from(["queued", "waiting", "in_progress", "completed"]) | json_values,
        "workflow_job": _job,
        "job": _job,
        "repository": st.fixed_dictionaries({"full_name": st.text(max_size=20) | st.just("acme/app")
                                             | st.sampled_from(HOSTILE_REPOS)}) | json_values,
    }
)


bodies = st.one_of(
    st.binary(max_size=200),
    json_values.map(lambda v: json.dumps(v).encode()),
    job_shaped.map(lambda v: json.dumps(v).encode()),
)
headers = st.dictionaries(
    st.sampled_from([*EVENT_HEADERS, "x-github-delivery", "x-gitea-delivery", "content-type"]),
    st.sampled_from(EVENTS) | st.text(max_size=20),
    max_size=4,
)


def _check(parser: Parser, h: Mapping[str, str], body: bytes) -> None:
    try:
        d = parser(h, body)
    except WebhookError as exc:
        assert 400 <= exc.status < 500
        return
    assert isinstance(d, Delivery)
    if d.job is not None:
        j = d.job
        assert isinstance(j, Job)
        # ids: positive and within int64, whatever the body said
        assert isinstance(j.id, int) and not isinstance(j.id, bool) and 0 < j.id <= INT64_MAX
        assert j.run_id is None or (isinstance(j.run_id, int) and not isinstance(j.run_id, bool)
                                    and 0 < j.run_id <= INT64_MAX)
        # names: a repository some forge can have, never "acme/.." or "acme/x\ny"
        assert isinstance(j.repository, str) and is_repository_name(j.repository), j.repository
        assert isinstance(j.labels, tuple) and all(isinstance(x, str) for x in j.labels)
        assert len(j.labels) <= MAX_LABELS
        assert j.runner_name is None or isinstance(j.runner_name, str)


@pytest.mark.parametrize("name", list(PARSERS))
@settings(
    max_examples=int(os.environ.get("RS_FUZZ_EXAMPLES", "100")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(h=headers, body=bodies, event=st.sampled_from(EVENTS), header=st.sampled_from(EVENT_HEADERS))
def test_parser_outcomes(name: str, h: dict[str, str], body: bytes, event: str, header: str) -> None:
    h = dict(h)
    h.setdefault(header, event)
    _check(PARSERS[name], h, body)


@pytest.mark.parametrize("name", list(PARSERS))
def test_parser_deep_nesting(name: str) -> None:
    for body in (b"[" * 100_000 + b"]" * 100_000, b'{"a":' * 50_000 + b"1" + b"}" * 50_000):
        for event in ("workflow_job", "workflow_job_queued"):
            _check(PARSERS[name], {"x-github-event": event, "x-gitea-event": event, "x-forgejo-event": event}, body)
