"""Parsing realistic deliveries of every forge and vocabulary into job reports."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scaler.domain.job import Job, JobState
from scaler.errors import MalformedDelivery
from scaler.forges.forgejo import parse_forgejo_delivery
from scaler.forges.gitea import parse_gitea_delivery
from scaler.forges.github import parse_github_delivery
from scaler.testing.fake_forge_server import FakeForgeServer

Q, P, C = JobState.QUEUED, JobState.IN_PROGRESS, JobState.COMPLETED


def gitea_body(action: str, status: str | None = None, conclusion: str = "", **job: Any) -> bytes:
    wj = {
        "id": 42, "run_id": 7, "name": "build", "labels": ["ubuntu-latest"], "status": status or action,
        "conclusion": conclusion, "runner_id": 0, "runner_name": "", "created_at": "2026-01-01T00:00:00Z",
        "started_at": "0001-01-01T00:00:00Z", "completed_at": "0001-01-01T00:00:00Z",
        "url": "http://g/api/v1/repos/acme/app/actions/jobs/42", **job,
    }
    return json.dumps({"action": action, "workflow_job": wj, "repository": {"full_name": "acme/app"},
                       "sender": {"login": "x"}}).encode()


GITEA_H = {"x-gitea-event": "workflow_job", "x-gitea-event-type": "workflow_job", "x-gitea-delivery": "d-1",
           "x-github-event": "workflow_job"}


@pytest.mark.parametrize(
    ("action", "conclusion", "state"),
    [
        ("queued", "", Q),  # 1.24 and later: DB Waiting
        ("waiting", "", None),  # 1.24: Blocked
        ("pending", "", None),  # newer: not ready
        ("requested", "", None),
        ("in_progress", "", P),
        ("completed", "success", C),
        ("completed", "failure", C),
        ("completed", "cancelled", C),
        ("completed", "skipped", None),
        ("something_new", "", None),
    ],
)
def test_gitea_vocabulary(action: str, conclusion: str, state: JobState | None) -> None:
    d = parse_gitea_delivery("g", GITEA_H, gitea_body(action, conclusion=conclusion))
    assert d.delivery_id == "d-1" and d.event == "workflow_job" and d.action == action
    if state is None:
        assert d.job is None and d.ignored
    else:
        assert d.job is not None and d.job.state is state
        assert d.job.id == 42 and d.job.run_id == 7 and d.job.repository == "acme/app"
        assert d.job.labels == ("ubuntu-latest",) and d.job.forge == "g"
        assert d.job.queued_at is not None


def test_gitea_runner_name_and_times() -> None:
    body = gitea_body("in_progress", runner_name="rs-small-1", started_at="2026-01-01T00:01:00Z")
    d = parse_gitea_delivery("g", GITEA_H, body)
    assert d.job is not None and d.job.runner_name == "rs-small-1" and d.job.started_at is not None


@pytest.mark.parametrize("event", ["ping", "push", "workflow_run", "pull_request"])
def test_gitea_other_events_ignored(event: str) -> None:
    d = parse_gitea_delivery("g", {"x-gitea-event": event}, b"{}")
    assert d.job is None and d.ignored


@pytest.mark.parametrize(
    "body",
    [b"not json", b"[]", b'{"action":"queued"}', b'{"action":"queued","workflow_job":{"id":"x"},"repository":{}}',
     b'{"action":5,"workflow_job":{"id":1},"repository":{"full_name":"a/b"}}',
     b'{"action":"queued","workflow_job":{"id":1,"labels":"x"},"repository":{"full_name":"a/b"}}',
     b'{"action":"queued","workflow_job":{"id":1},"repository":{"full_name":"nope"}}'],
)
def test_gitea_malformed(body: bytes) -> None:
    with pytest.raises(MalformedDelivery):
        parse_gitea_delivery("g", GITEA_H, body)


def test_missing_event_header_malformed() -> None:
    with pytest.raises(MalformedDelivery):
        parse_gitea_delivery("g", {}, gitea_body("queued"))
    with pytest.raises(MalformedDelivery):
        parse_forgejo_delivery("f", {}, b"{}")
    with pytest.raises(MalformedDelivery):
        parse_github_delivery("h", {}, b"{}")


# --- Forgejo (assumed per-status shape; see scaler/forges/forgejo.py) ----------


def forgejo_body(status: str, **job: Any) -> bytes:
    j = {"id": 9, "run_id": 3, "repo_id": 1, "owner_id": 1, "name": "build", "needs": [],
         "runs_on": ["docker"], "status": status, "task_id": 0, "attempt": 1, "handle": "h-123", **job}
    return json.dumps({"action": status, "job": j, "repository": {"full_name": "acme/app"}}).encode()


@pytest.mark.parametrize(
    ("status", "state"),
    [("waiting", Q), ("running", P), ("success", C), ("failure", C), ("cancelled", C), ("skipped", None),
     ("blocked", None)],
)
def test_forgejo_vocabulary(status: str, state: JobState | None) -> None:
    event = f"workflow_job_{status}"
    headers = {"x-forgejo-event": event, "x-forgejo-event-type": event, "x-forgejo-delivery": "fd-1",
               "x-gitea-event": event}
    d = parse_forgejo_delivery("f", headers, forgejo_body(status))
    assert d.event == event and d.delivery_id == "fd-1"
    if state is None:
        assert d.job is None and d.ignored
    else:
        assert d.job is not None and d.job.state is state and d.job.handle == "h-123"
        assert d.job.labels == ("docker",) and d.job.repository == "acme/app" and d.job.run_id == 3


def test_forgejo_status_from_body_when_event_is_generic() -> None:
    d = parse_forgejo_delivery("f", {"x-forgejo-event": "workflow_job"}, forgejo_body("waiting"))
    assert d.job is not None and d.job.state is Q


def test_forgejo_other_events() -> None:
    for event in ("ping", "push", "action_run_success"):
        d = parse_forgejo_delivery("f", {"x-forgejo-event": event}, b"{}")
        assert d.job is None


# --- GitHub --------------------------------------------------------------------------


def github_body(action: str, conclusion: str | None = None, **extra: Any) -> bytes:
    wj = {"id": 5, "run_id": 2, "status": action if action != "waiting" else "waiting", "conclusion": conclusion,
          "labels": ["self-hosted", "linux"], "runner_id": None, "runner_name": None,
          "created_at": "2026-01-01T00:00:00Z", "started_at": "2026-01-01T00:00:00Z", "completed_at": None}
    return json.dumps({"action": action, "workflow_job": wj, "repository": {"full_name": "acme/app"},
                       "sender": {"login": "x"}, **extra}).encode()


@pytest.mark.parametrize(
    ("action", "conclusion", "state"),
    [("queued", None, Q), ("waiting", None, None), ("in_progress", None, P), ("completed", "success", C),
     ("completed", "cancelled", C), ("completed", "skipped", None)],
)
def test_github_vocabulary(action: str, conclusion: str | None, state: JobState | None) -> None:
    d, inst = parse_github_delivery("h", {"x-github-event": "workflow_job", "x-github-delivery": "g-1"},
                                    github_body(action, conclusion, installation={"id": 77}))
    assert inst == 77 and d.delivery_id == "g-1"
    assert (d.job.state if d.job else None) is state


def test_github_ping() -> None:
    d, _ = parse_github_delivery("h", {"x-github-event": "ping"}, b'{"zen":"x","hook_id":1}')
    assert d.job is None and d.ignored == "ping"


# --- the fake's own deliveries parse, for every vocabulary ------------------------


@pytest.mark.parametrize(("kind", "version"), [("gitea", "1.24.6"), ("gitea", "1.26.0"), ("forgejo", "15.0.0"),
                                               ("github", None)])
def test_fake_deliveries_parse(kind: str, version: str | None) -> None:
    srv = FakeForgeServer(kind, version)
    srv.subscribe("http://127.0.0.1:1/x", "s3cret-value")
    job = srv.queue_job("acme/app", ["docker"], blocked=True)
    srv.unblock(job)
    srv.set_status(job, "running")
    srv.set_status(job, "success")
    parse = {"gitea": parse_gitea_delivery, "forgejo": parse_forgejo_delivery,
             "github": lambda n, h, b: parse_github_delivery(n, h, b)[0]}[kind]
    states = [d.job.state if d.job else None for d in (parse("x", s.headers, s.body) for s in srv.outbox)]
    assert states[-3:] == [Q, P, C]
    assert all(s is None for s in states[:-3])


# --- property: permutations and duplicates end in the same state --------------------


def _deliveries() -> list[Job]:
    out = []
    for action, concl in (("queued", ""), ("in_progress", ""), ("completed", "success")):
        d = parse_gitea_delivery("g", GITEA_H, gitea_body(action, conclusion=concl, runner_name="r-1" if
                                                          action != "queued" else ""))
        assert d.job is not None
        out.append(d.job)
    for status in ("waiting", "running", "success"):
        d = parse_forgejo_delivery("g", {"x-forgejo-event": f"workflow_job_{status}"},
                                   forgejo_body(status, id=42))
        assert d.job is not None
        out.append(d.job)
    return out


REPORTS = _deliveries()


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(range(len(REPORTS))), min_size=1, max_size=20), st.randoms())
def test_any_order_and_duplication_converges(indices: list[int], rnd: Any) -> None:
    seq = [REPORTS[i] for i in indices] + [REPORTS[2]]  # the completion arrives at least once
    rnd.shuffle(seq)
    merged = seq[0]
    for r in seq[1:]:
        merged = merged.merge(r)
    assert merged.state is C
    assert merged.labels and merged.repository == "acme/app"
    # the in-order merge of the same multiset ends identically in state
    ordered = sorted(seq, key=lambda j: ["queued", "in_progress", "completed"].index(j.state))
    m2 = ordered[0]
    for r in ordered[1:]:
        m2 = m2.merge(r)
    assert m2.state is merged.state and m2.queued_at == merged.queued_at
