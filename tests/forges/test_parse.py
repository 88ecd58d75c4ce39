"""Deliveries of the real shapes (``tests/forges/shapes``), for every version the
README claims, parse to the right job, labels, repository and state; anything a
forge could not have sent is a 400 naming the field."""

from __future__ import annotations

import json
import random
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
from tests.forges.shape_check import ABSENT, Shapes

Q, P, C = JobState.QUEUED, JobState.IN_PROGRESS, JobState.COMPLETED
GITEA_VERSIONS = ("1.24.0", "1.25.0", "1.26.0", "1.27.0")
FORGEJO_EVENT_VERSIONS = ("17.0.0",)  # job webhooks: a tree after v16 (unconfirmed release)
GITEA_H = {"x-gitea-event": "workflow_job", "x-gitea-event-type": "workflow_job", "x-gitea-delivery": "d-1",
           "x-github-event": "workflow_job"}


def forgejo_headers(status: str) -> dict[str, str]:
    event = f"workflow_job_{status}"
    return {"x-forgejo-event": event, "x-forgejo-event-type": event, "x-forgejo-delivery": "fd-1",
            "x-gitea-event": event, "x-github-event": event}


def gitea_body(version: str, action: str, conclusion: str | None = None, seed: int = 0, **job: Any) -> bytes:
    """A Gitea ``workflow_job`` delivery built from the recorded shape."""
    shapes = Shapes("gitea", version)
    overrides: dict[str, Any] = {"action": action, "workflow_job.id": 42, "workflow_job.run_id": 7,
                                 "workflow_job.labels": ["ubuntu-latest"], "workflow_job.status": action,
                                 "workflow_job.created_at": "2026-01-01T00:00:00Z",
                                 "repository.full_name": "acme/app",
                                 "workflow_job.conclusion": conclusion if conclusion else ABSENT}
    overrides.update({f"workflow_job.{k}": v for k, v in job.items()})
    return json.dumps(shapes.example("WorkflowJobPayload", random.Random(seed), overrides)).encode()


def forgejo_body(status: str, *, top_repository: bool = True, seed: int = 0, **job: Any) -> bytes:
    """A Forgejo job delivery built from the recorded (unconfirmed) shape."""
    shapes = Shapes("forgejo", "17.0.0")
    overrides: dict[str, Any] = {
        "action": "job_status_changed", "job.id": 9, "job.run_id": 3, "job.status": status,
        "job.runs_on": ["docker"], "job.handle": "h-123", "run.id": 3, "run.repository.full_name": "acme/app",
        "repository": {"full_name": "acme/app"} if top_repository else ABSENT,
    }
    overrides.update({f"job.{k}": v for k, v in job.items()})
    return json.dumps(shapes.example("WorkflowJobPayload", random.Random(seed), overrides)).encode()


@pytest.mark.parametrize("version", GITEA_VERSIONS)
@pytest.mark.parametrize(
    ("action", "conclusion", "state"),
    [
        ("queued", None, Q),  # Waiting: ready for a runner
        ("waiting", None, None),  # Blocked (needs, approval, concurrency)
        ("in_progress", None, P),  # Running (and Cancelling on 1.27)
        ("completed", "success", C),
        ("completed", "failure", C),
        ("completed", "cancelled", C),
        ("completed", "skipped", None),
        ("completed", None, C),  # 1.24: skipped with no conclusion
        ("", None, None),  # a status the forge does not know (1.24-1.26)
        ("something_new", None, None),
    ],
)
def test_gitea_vocabulary(version: str, action: str, conclusion: str | None, state: JobState | None) -> None:
    d = parse_gitea_delivery("g", GITEA_H, gitea_body(version, action, conclusion))
    assert d.delivery_id == "d-1" and d.event == "workflow_job" and d.action == action
    if state is None:
        assert d.job is None and d.ignored
        return
    assert d.job is not None and d.job.state is state
    assert (d.job.id, d.job.run_id, d.job.repository, d.job.labels) == (42, 7, "acme/app", ("ubuntu-latest",))
    assert d.job.forge == "g" and d.job.queued_at is not None


def test_gitea_runner_name_only_once_taken() -> None:
    queued = parse_gitea_delivery("g", GITEA_H, gitea_body("1.24.0", "queued", runner_name=ABSENT, runner_id=ABSENT))
    running = parse_gitea_delivery("g", GITEA_H, gitea_body("1.24.0", "in_progress", runner_name="rs-small-1",
                                                            runner_id=5, started_at="2026-01-01T00:01:00Z"))
    assert queued.job is not None and queued.job.runner_name is None
    assert running.job is not None and running.job.runner_name == "rs-small-1" and running.job.started_at


def test_gitea_null_labels_and_steps() -> None:
    d = parse_gitea_delivery("g", GITEA_H, gitea_body("1.24.0", "queued", labels=None, steps=None))
    assert d.job is not None and d.job.labels == ()


@pytest.mark.parametrize("event", ["ping", "push", "workflow_run", "pull_request"])
def test_gitea_other_events_ignored(event: str) -> None:
    d = parse_gitea_delivery("g", {"x-gitea-event": event}, b"{}")
    assert d.job is None and d.ignored


@pytest.mark.parametrize(
    ("body", "names"),
    [
        (b"not json", "not valid JSON"),
        (b"[]", "not a JSON object"),
        (b'{"workflow_job":{"id":1},"repository":{"full_name":"a/b"}}', "action is missing"),
        (b'{"action":"queued","repository":{"full_name":"a/b"}}', "workflow_job"),
        (b'{"action":"queued","workflow_job":{"id":1}}', "repository"),
        (b'{"action":"queued","workflow_job":{"id":"x"},"repository":{}}', "workflow_job.id"),
        (b'{"action":5,"workflow_job":{"id":1},"repository":{"full_name":"a/b"}}', "action"),
        (b'{"action":"queued","workflow_job":{"id":1,"labels":"x"},"repository":{"full_name":"a/b"}}',
         "workflow_job.labels"),
        (b'{"action":"queued","workflow_job":{"id":1},"repository":{"full_name":"nope"}}', "repository.full_name"),
    ],
)
def test_gitea_malformed_names_the_field(body: bytes, names: str) -> None:
    with pytest.raises(MalformedDelivery, match=names.replace(".", r"\.")):
        parse_gitea_delivery("g", GITEA_H, body)


def test_missing_event_header_malformed() -> None:
    with pytest.raises(MalformedDelivery):
        parse_gitea_delivery("g", {}, gitea_body("1.25.0", "queued"))
    with pytest.raises(MalformedDelivery):
        parse_forgejo_delivery("f", {}, b"{}")
    with pytest.raises(MalformedDelivery):
        parse_github_delivery("h", {}, b"{}")


# --- ids and repository names: what no forge can send is refused, by field ----------

BAD_IDS = [-5, 0, -(2**63), 2**63, 10**30, 1e30, 1.5, True, "12x", "-3", "", None, [1], {"a": 1}]


@pytest.mark.parametrize("bad", BAD_IDS, ids=repr)
def test_bad_job_ids_are_400_naming_the_field(bad: Any) -> None:
    with pytest.raises(MalformedDelivery, match=r"workflow_job\.id"):
        parse_gitea_delivery("g", GITEA_H, gitea_body("1.25.0", "queued", id=bad))
    with pytest.raises(MalformedDelivery, match=r"job\.id"):
        parse_forgejo_delivery("f", forgejo_headers("waiting"), forgejo_body("waiting", id=bad))
    gh = {"action": "queued", "workflow_job": {"id": bad, "labels": []}, "repository": {"full_name": "a/b"}}
    with pytest.raises(MalformedDelivery, match=r"workflow_job\.id"):
        parse_github_delivery("h", {"x-github-event": "workflow_job"}, json.dumps(gh).encode())


@pytest.mark.parametrize("bad", [b for b in BAD_IDS if b not in (0, None)], ids=repr)
def test_bad_run_ids_are_400_naming_the_field(bad: Any) -> None:
    with pytest.raises(MalformedDelivery, match=r"workflow_job\.run_id"):
        parse_gitea_delivery("g", GITEA_H, gitea_body("1.25.0", "queued", run_id=bad))


def test_largest_ids_fit() -> None:
    d = parse_gitea_delivery("g", GITEA_H, gitea_body("1.25.0", "queued", id=2**63 - 1, run_id="9223372036854775807"))
    assert d.job is not None and d.job.id == 2**63 - 1 and d.job.run_id == 2**63 - 1


BAD_REPOS = ["acme/..", "acme/.", "../acme", "acme/x\ny", "acme/a b", "acme/a/b", "acme", "/app", "acme/",
             "acme/app\x00", "acme/\uff41pp", "ac..me/app", "a" * 101 + "/b", ""]


@pytest.mark.parametrize("bad", BAD_REPOS, ids=repr)
def test_bad_repository_names_are_400(bad: str) -> None:
    body = json.loads(gitea_body("1.25.0", "queued"))
    body["repository"]["full_name"] = bad
    with pytest.raises(MalformedDelivery, match=r"repository\.full_name"):
        parse_gitea_delivery("g", GITEA_H, json.dumps(body).encode())
    gh = {"action": "queued", "workflow_job": {"id": 1, "labels": []}, "repository": {"full_name": bad}}
    with pytest.raises(MalformedDelivery, match=r"repository\.full_name"):
        parse_github_delivery("h", {"x-github-event": "workflow_job"}, json.dumps(gh).encode())


# --- Forgejo -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "state"),
    [("waiting", Q), ("running", P), ("success", C), ("failure", C), ("cancelled", C), ("skipped", None),
     ("blocked", None)],
)
@pytest.mark.parametrize("top_repository", [True, False], ids=["repository", "run.repository"])
def test_forgejo_vocabulary(status: str, state: JobState | None, top_repository: bool) -> None:
    d = parse_forgejo_delivery("f", forgejo_headers(status), forgejo_body(status, top_repository=top_repository))
    assert d.event == f"workflow_job_{status}" and d.delivery_id == "fd-1"
    if state is None:
        assert d.job is None and d.ignored
        return
    assert d.job is not None and d.job.state is state and d.job.handle == "h-123"
    assert d.job.labels == ("docker",) and d.job.repository == "acme/app" and d.job.run_id == 3


def test_forgejo_run_id_from_the_run_when_the_job_has_none() -> None:
    d = parse_forgejo_delivery("f", forgejo_headers("waiting"), forgejo_body("waiting", run_id=ABSENT))
    assert d.job is not None and d.job.run_id == 3


def test_forgejo_running_job_is_tied_to_its_runner_by_handle() -> None:
    body = forgejo_body("running", handle="h-9")
    assert parse_forgejo_delivery("f", forgejo_headers("running"), body).job.runner_name is None  # type: ignore[union-attr]
    d = parse_forgejo_delivery("f", forgejo_headers("running"), body, {"h-9": "rs-small-j9"})
    assert d.job is not None and d.job.runner_name == "rs-small-j9"


def test_forgejo_event_type_header_alone_suffices() -> None:
    d = parse_forgejo_delivery("f", {"x-forgejo-event-type": "workflow_job_waiting",
                                     "x-forgejo-event": "workflow_job_waiting"}, forgejo_body("waiting"))
    assert d.job is not None and d.job.state is Q


@pytest.mark.parametrize(
    ("body", "names"),
    [(b'{"job":{"id":1},"run":{"repository":{"full_name":"a/b"}}}', "action is missing"),
     (b'{"action":"job_status_changed","run":{"repository":{"full_name":"a/b"}}}', "job"),
     (b'{"action":"job_status_changed","job":{"id":1},"run":{}}', "repository is missing"),
     (b'{"action":"job_status_changed","job":{"id":1},"run":{"repository":{"full_name":"a/.."}}}',
      "run.repository.full_name")],
)
def test_forgejo_malformed_names_the_field(body: bytes, names: str) -> None:
    with pytest.raises(MalformedDelivery, match=names.replace(".", r"\.")):
        parse_forgejo_delivery("f", forgejo_headers("waiting"), body)


def test_forgejo_other_events() -> None:
    for event in ("ping", "push", "action_run_success", "workflow_job"):
        d = parse_forgejo_delivery("f", {"x-forgejo-event": event}, b"{}")
        assert d.job is None


# --- GitHub --------------------------------------------------------------------------


def github_body(action: str, conclusion: str | None = None, seed: int = 0, **extra: Any) -> bytes:
    name = {"in_progress": "in-progress"}.get(action, action)
    shapes = Shapes("github")
    overrides: dict[str, Any] = {"action": action, "workflow_job.id": 5, "workflow_job.run_id": 2,
                                 "workflow_job.status": action, "workflow_job.conclusion": conclusion,
                                 "workflow_job.labels": ["self-hosted", "linux"],
                                 "repository.full_name": "acme/app", **extra}
    return json.dumps(shapes.example(f"webhook-workflow-job-{name}", random.Random(seed), overrides)).encode()


@pytest.mark.parametrize(
    ("action", "conclusion", "state"),
    [("queued", None, Q), ("waiting", None, None), ("in_progress", None, P), ("completed", "success", C),
     ("completed", "cancelled", C), ("completed", "skipped", None)],
)
def test_github_vocabulary(action: str, conclusion: str | None, state: JobState | None) -> None:
    d, inst = parse_github_delivery("h", {"x-github-event": "workflow_job", "x-github-delivery": "g-1"},
                                    github_body(action, conclusion, installation={"id": 77, "node_id": "x"}))
    assert inst == 77 and d.delivery_id == "g-1"
    assert (d.job.state if d.job else None) is state
    if d.job is not None:
        assert (d.job.id, d.job.run_id, d.job.repository) == (5, 2, "acme/app")


def test_github_ping() -> None:
    d, _ = parse_github_delivery("h", {"x-github-event": "ping"}, b'{"zen":"x","hook_id":1}')
    assert d.job is None and d.ignored == "ping"


# --- shapes the project has never seen: any instance of the recorded shape ----------


@settings(max_examples=150, deadline=None)
@given(
    version=st.sampled_from(GITEA_VERSIONS),
    seed=st.integers(0, 2**32),
    job_id=st.integers(1, 2**63 - 1),
    labels=st.lists(st.text(st.characters(codec="ascii", categories=["L", "N"]), min_size=1, max_size=12),
                    max_size=5),
    extra=st.dictionaries(st.text(min_size=1, max_size=8), st.integers() | st.text(max_size=5), max_size=3),
)
def test_any_gitea_delivery_of_the_shape_parses(version: str, seed: int, job_id: int, labels: list[str],
                                                extra: dict[str, Any]) -> None:
    body = json.loads(gitea_body(version, "queued", seed=seed, id=job_id, labels=labels))
    body["workflow_job"].update({f"x_{k}": v for k, v in extra.items()})  # unknown fields are ignored
    d = parse_gitea_delivery("g", GITEA_H, json.dumps(body).encode())
    assert d.job is not None and (d.job.id, d.job.labels, d.job.state) == (job_id, tuple(labels), Q)


@settings(max_examples=100, deadline=None)
@given(seed=st.integers(0, 2**32), status=st.sampled_from(["waiting", "running", "success"]),
       top=st.booleans(), job_id=st.integers(1, 2**63 - 1))
def test_any_forgejo_delivery_of_the_shape_parses(seed: int, status: str, top: bool, job_id: int) -> None:
    d = parse_forgejo_delivery("f", forgejo_headers(status), forgejo_body(status, top_repository=top, seed=seed,
                                                                          id=job_id))
    assert d.job is not None and d.job.id == job_id and d.job.repository == "acme/app"


@settings(max_examples=100, deadline=None)
@given(seed=st.integers(0, 2**32), action=st.sampled_from(["queued", "in_progress"]))
def test_any_github_delivery_of_the_shape_parses(seed: int, action: str) -> None:
    d, _ = parse_github_delivery("h", {"x-github-event": "workflow_job"}, github_body(action, seed=seed))
    assert d.job is not None and d.job.id == 5 and d.job.labels == ("self-hosted", "linux")


# --- the fake's own deliveries parse, for every version ------------------------------


@pytest.mark.parametrize(("kind", "version"), [*[("gitea", v) for v in GITEA_VERSIONS],
                                               *[("forgejo", v) for v in FORGEJO_EVENT_VERSIONS], ("github", None)])
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
    assert states == [None, Q, P, C]


def test_forgejo_15_and_16_send_no_job_webhooks() -> None:
    for version in ("15.0.0", "15.0.3", "16.0.1"):
        srv = FakeForgeServer("forgejo", version)
        srv.subscribe("http://127.0.0.1:1/x", "s3cret-value")
        srv.queue_job("acme/app", ["docker"])
        assert srv.outbox == []


# --- property: permutations and duplicates end in the same state --------------------


def _deliveries() -> list[Job]:
    out = []
    for action, concl in (("queued", None), ("in_progress", None), ("completed", "success")):
        d = parse_gitea_delivery("g", GITEA_H, gitea_body("1.25.0", action, concl, runner_name="r-1" if
                                                          action != "queued" else ABSENT))
        assert d.job is not None
        out.append(d.job)
    for status in ("waiting", "running", "success"):
        d = parse_forgejo_delivery("g", forgejo_headers(status), forgejo_body(status, id=42))
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
    ordered = sorted(seq, key=lambda j: ["queued", "in_progress", "completed"].index(j.state))
    m2 = ordered[0]
    for r in ordered[1:]:
        m2 = m2.merge(r)
    assert m2.state is merged.state and m2.queued_at == merged.queued_at
