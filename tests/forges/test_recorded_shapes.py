"""The fake forge against the shapes read from the forges' own source
(``tests/forges/shapes/*.json``, each with its file and tag/commit): every
delivery and every answer the adapters read has every field the real forge
sends, with its JSON type, and nothing it never sends — for each version the
README claims. What the adapters send (Register, create-runner, jitconfig) is
held against the forge's request shapes too."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from scaler.clock import FakeClock
from scaler.forges.forgejo import ForgejoForge
from scaler.forges.gitea import GiteaForge
from scaler.forges.github import GitHubForge
from scaler.testing.fake_forge_server import ADMIN_TOKEN, FakeForgeServer
from tests.forges.conftest import forge_config, pool
from tests.forges.shape_check import Shapes, headers_problems, load

GITEA = ["1.24.0", "1.25.0", "1.26.0", "1.27.0"]
FORGEJO = ["15.0.0", "16.0.1", "17.0.0"]


class Recorder:
    """ASGI middleware before the fake: keeps what the adapter sent over loopback."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.sent: list[tuple[str, str, Any]] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        body = bytearray()
        messages = []
        while True:
            message = await receive()
            messages.append(message)
            body.extend(message.get("body", b""))
            if not message.get("more_body"):
                break
        self.sent.append((scope["method"], scope["path"], json.loads(body) if body else None))

        async def replay() -> Any:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)

    def body_of(self, path_end: str) -> Any:
        return next(b for m, p, b in self.sent if m == "POST" and p.endswith(path_end))


def _serve(kind: str, version: str | None) -> Iterator[tuple[FakeForgeServer, Recorder]]:
    srv = FakeForgeServer(kind, version)
    rec = Recorder(srv.app)
    srv.app = rec  # type: ignore[assignment]
    srv.start()
    try:
        yield srv, rec
    finally:
        srv.stop()


def _client(srv: FakeForgeServer) -> httpx.Client:
    return httpx.Client(base_url=srv.url, headers={"authorization": f"token {ADMIN_TOKEN}"})


def _ok(shapes: Shapes, name: str, value: Any) -> None:
    problems = shapes.problems(name, value)
    assert not problems, "\n".join(problems[:15])


def _lifecycle(srv: FakeForgeServer) -> list[Any]:
    """Deliveries for blocked → waiting → running → success of one job."""
    srv.subscribe("http://127.0.0.1:1/x", "s3cret-value")
    job = srv.queue_job("acme/app", ["ubuntu-latest"], blocked=True)
    srv.unblock(job)
    runner = srv.new_runner("r-1", labels=["ubuntu-latest"], ephemeral=True)
    srv.set_status(job, "running", runner)
    srv.set_status(job, "success")
    skipped = srv.queue_job("acme/app", ["x"], blocked=True)
    srv.set_status(skipped, "skipped")
    return list(srv.outbox)


def _rpc(c: httpx.Client, method: str, body: Any, auth: dict[str, str] | None = None) -> httpx.Response:
    return c.post(f"/api/actions/runner.v1.RunnerService/{method}", json=body,
                  headers={"content-type": "application/json", **(auth or {})})


@pytest.mark.parametrize("version", GITEA)
async def test_gitea(version: str, tmp_path: Path) -> None:
    for srv, rec in _serve("gitea", version):
        shapes, proto = Shapes("gitea", version), Shapes("runner")
        adapter = GiteaForge(forge_config(tmp_path, "gitea", srv.url), clock=FakeClock())
        job = srv.queue_job("acme/app", ["ubuntu-latest"])
        launch = await adapter.mint(pool(), "rs-small-1", None)
        _ok(proto, "RegisterRequest", rec.body_of("/Register"))
        with _client(srv) as c:
            _ok(shapes, "ServerVersion", c.get("/api/v1/version").json())
            _ok(shapes, "RegistrationToken", c.post("/api/v1/orgs/acme/actions/runners/registration-token").json())
            runners = c.get("/api/v1/orgs/acme/actions/runners").json()
            _ok(shapes, "ActionRunnersResponse", runners)
            _ok(shapes, "ActionRunner", c.get(f"/api/v1/orgs/acme/actions/runners/{launch.runner_id}").json())
            jobs = c.get("/api/v1/orgs/acme/actions/jobs", params={"status": "queued"})
            if version == "1.24.0":
                assert jobs.status_code == 404  # the listing came with 1.25
            else:
                _ok(shapes, "ActionWorkflowJobsResponse", jobs.json())
                assert [j["id"] for j in jobs.json()["jobs"]] == [job.id]
            hook = c.post("/api/v1/repos/acme/app/hooks", json={
                "type": "gitea", "events": ["workflow_job"], "active": True,
                "config": {"url": "http://127.0.0.1:1/", "content_type": "json"}})
            _ok(shapes, "Hook", hook.json())
            srv.hooks.clear()
            token = srv.registration_tokens[0]
            reg = _rpc(c, "Register", {"name": "r2", "token": token, "labels": ["a:host"], "ephemeral": True})
            _ok(proto, "RegisterResponse", reg.json())
            r = reg.json()["runner"]
            auth = {"x-runner-uuid": r["uuid"], "x-runner-token": r["token"]}
            _ok(proto, "DeclareResponse", _rpc(c, "Declare", {"version": "v", "labels": ["a"]}, auth).json())
            _ok(proto, "FetchTaskResponse", _rpc(c, "FetchTask", {}, auth).json())
            bad = _rpc(c, "Register", {"name": "r3", "token": "0" * 40})
            assert bad.status_code == 500 and bad.json() == {"code": "unknown",
                                                             "message": "runner registration token not found"}
        for d in _lifecycle(srv):
            assert not headers_problems("gitea", d.headers)
            _ok(shapes, "WorkflowJobPayload", json.loads(d.body))
        await adapter.aclose()


@pytest.mark.parametrize("version", FORGEJO)
async def test_forgejo(version: str, tmp_path: Path) -> None:
    for srv, rec in _serve("forgejo", version):
        shapes, proto = Shapes("forgejo", version), Shapes("runner")
        adapter = ForgejoForge(forge_config(tmp_path, "forgejo", srv.url), clock=FakeClock())
        job = srv.queue_job("acme/app", ["ubuntu-latest"])
        launch = await adapter.mint(pool(), "rs-small-1", None)
        _ok(shapes, "RegisterRunnerOptions", rec.body_of("/actions/runners"))
        with _client(srv) as c:
            _ok(shapes, "ServerVersion", c.get("/api/v1/version").json())
            created = c.post("/api/v1/orgs/acme/actions/runners", json={"name": "r2", "ephemeral": True})
            assert created.status_code == 201
            _ok(shapes, "RegisterRunnerResponse", created.json())
            listed = c.get("/api/v1/orgs/acme/actions/runners")
            assert listed.headers["x-total-count"] == "2"
            for r in listed.json():
                _ok(shapes, "ActionRunner", r)
            _ok(shapes, "ActionRunner", c.get(f"/api/v1/orgs/acme/actions/runners/{launch.runner_id}").json())
            jobs = c.get("/api/v1/orgs/acme/actions/runners/jobs").json()
            for j in jobs:
                _ok(shapes, "ActionRunJob", j)
            assert [j["handle"] for j in jobs] == [job.handle]
            assert c.get("/api/v1/repos/acme/app/actions/runners/jobs", params={"labels": "nope"}).json() is None
            _ok(shapes, "RegistrationToken", c.get("/api/v1/orgs/acme/actions/runners/registration-token").json())
            _ok(shapes, "Repository", c.get(f"/api/v1/repositories/{job.repo.id}").json())
            hook = c.post("/api/v1/repos/acme/app/hooks", json={
                "type": "forgejo", "events": ["workflow_job_waiting"], "active": True,
                "config": {"url": "http://127.0.0.1:1/", "content_type": "json"}})
            _ok(shapes, "Hook", hook.json())
            srv.hooks.clear()
            auth = {"x-runner-uuid": created.json()["uuid"], "x-runner-token": created.json()["token"]}
            declared = _rpc(c, "Declare", {"version": "v", "labels": ["ubuntu-latest"]}, auth)
            _ok(proto, "DeclareResponse", declared.json())
            fetched = _rpc(c, "FetchSingleTask", {"handle": job.handle}, auth).json()
            _ok(proto, "FetchSingleTaskResponse", fetched)
            assert fetched["task"]["id"] == str(job.task_id)
        deliveries = _lifecycle(srv)
        if version.startswith(("15.", "16.")):
            assert deliveries == []  # no job webhooks before a later tree
        assert deliveries or version.startswith(("15.", "16."))
        for d in deliveries:
            assert not headers_problems("forgejo", d.headers)
            _ok(shapes, "WorkflowJobPayload", json.loads(d.body))
        await adapter.aclose()


async def test_github(tmp_path: Path) -> None:
    clock = FakeClock()
    for srv, rec in _serve("github", None):
        shapes = Shapes("github")
        adapter = GitHubForge(forge_config(tmp_path, "github", srv.url), clock=clock)
        job = srv.queue_job("acme/app", ["self-hosted", "gpu"])
        launch = await adapter.mint(pool(("gpu",)), "rs-gpu-1", None)
        _ok(shapes, "generate-jitconfig-request", rec.body_of("/generate-jitconfig"))
        with _client(srv) as c:
            jit = c.post("/orgs/acme/actions/runners/generate-jitconfig",
                         json={"name": "r2", "runner_group_id": 1, "labels": ["gpu"], "work_folder": "_work"})
            _ok(shapes, "jit-config", jit.json())
            _ok(shapes, "runners-list", c.get("/orgs/acme/actions/runners").json())
            _ok(shapes, "runner", c.get(f"/orgs/acme/actions/runners/{launch.runner_id}").json())
            _ok(shapes, "workflow-runs-list", c.get("/repos/acme/app/actions/runs", params={"status": "queued"}).json())
            _ok(shapes, "jobs-list", c.get(f"/repos/acme/app/actions/runs/{job.run_id}/jobs").json())
            _ok(shapes, "job", c.get(f"/repos/acme/app/actions/jobs/{job.id}").json())
            _ok(shapes, "rate-limit-overview", c.get("/rate_limit").json())
            _ok(shapes, "authentication-token", c.post("/orgs/acme/actions/runners/registration-token").json())
        for d in _lifecycle(srv):
            assert not headers_problems("github", d.headers)
            body = json.loads(d.body)
            _ok(shapes, f"webhook-workflow-job-{body['action'].replace('_', '-')}", body)
        await adapter.aclose()


def test_every_shape_names_its_source() -> None:
    for name in ("gitea", "forgejo", "github", "runner"):
        doc = load(name)
        for shape_name, shape in doc["shapes"].items():
            src = shape["source"]
            assert src.get("file") or src.get("schema"), shape_name
            assert src.get("tags") or src.get("commit") or src.get("module_versions") or src.get("schema"), shape_name


def test_unconfirmed_shapes_say_so() -> None:
    forgejo = load("forgejo")
    for name in forgejo["unconfirmed"][:2]:
        assert "UNCONFIRMED" in forgejo["shapes"][name]["note"]
    runner = load("runner")
    assert all("unconfirmed" in runner["shapes"][n] for n in ("FetchSingleTaskRequest", "FetchSingleTaskResponse"))


def test_the_checker_catches_drift() -> None:
    """A field the forge never sends, a missing one, a wrong type and a field
    of a later version are each reported."""
    srv = FakeForgeServer("gitea", "1.24.0")
    r = srv.new_runner("r", labels=["a"])
    good = srv.gitea_runner(r)
    shapes = Shapes("gitea", "1.24.0")
    assert shapes.problems("ActionRunner", good) == []
    assert shapes.problems("ActionRunner", {**good, "extra": 1}) == ["ActionRunner.extra: unexpected field (the forge "
                                                                     "never sends it)"]
    assert shapes.problems("ActionRunner", {k: v for k, v in good.items() if k != "busy"}) == [
        "ActionRunner.busy: missing (the forge always sends it)"]
    assert shapes.problems("ActionRunner", {**good, "id": "1"}) == ["ActionRunner.id: expected integer, got str"]
    assert shapes.problems("ActionRunner", {**good, "disabled": False}) == [
        "ActionRunner.disabled: unexpected field (not at this version)"]
    assert Shapes("gitea", "1.26.0").problems("ActionRunner", good) == [
        "ActionRunner.disabled: missing (the forge always sends it)"]
