"""The fake forge's answers and deliveries match the forges' own published shapes.

Validated against the API subsets in ``/work/shared/reference`` (or
``$RUNNER_SCALER_REFERENCE``), so the fake cannot drift from the real APIs.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest

from scaler.testing.fake_forge_server import ADMIN_TOKEN, FakeForgeServer

# The specs live in shared/ beside the repository (as in CI's fresh clone).
REF = Path(os.environ.get("RUNNER_SCALER_REFERENCE", Path(__file__).resolve().parents[3] / "shared" / "reference"))
if not REF.is_dir():
    raise RuntimeError(f"reference specs not found at {REF} (set RUNNER_SCALER_REFERENCE)")


def _load(name: str) -> dict[str, Any]:
    return dict(json.loads((REF / name).read_text()))


def _openapi_to_jsonschema(node: Any) -> Any:
    """OpenAPI 3.0 ``nullable`` → JSON Schema; drop keywords draft-4 tools misread."""
    if isinstance(node, dict):
        out = {k: _openapi_to_jsonschema(v) for k, v in node.items() if not k.startswith("x-")}
        if out.pop("nullable", False):
            if "$ref" in out:
                return {"anyOf": [{"$ref": out["$ref"]}, {"type": "null"}]}
            if "type" in out:
                out["type"] = [out["type"], "null"]
                if "enum" in out and None not in out["enum"]:
                    out["enum"] = [*out["enum"], None]
            else:
                return {"anyOf": [out, {"type": "null"}]}
        out.pop("example", None)
        out.pop("examples", None)
        return out
    if isinstance(node, list):
        return [_openapi_to_jsonschema(x) for x in node]
    return node


def _go_nil_slices(node: Any) -> Any:
    """Swagger 2.0 from Go: a nil slice or pointer is encoded as ``null``, which
    swagger cannot say; let every array and referenced object be null too.
    (Exact per-version shapes: tests/forges/test_recorded_shapes.py.)"""
    if isinstance(node, dict):
        out = {k: _go_nil_slices(v) for k, v in node.items()}
        if out.get("type") == "array":
            out["type"] = ["array", "null"]
        if isinstance(out.get("properties"), dict):  # Go pointers to structs may be nil
            out["properties"] = {k: {"anyOf": [v, {"type": "null"}]} if "$ref" in v else v
                                 for k, v in out["properties"].items()}
        return out
    if isinstance(node, list):
        return [_go_nil_slices(x) for x in node]
    return node


def validator(spec: dict[str, Any], schema: dict[str, Any]) -> Any:
    root = copy.deepcopy(spec)
    if spec.get("swagger") == "2.0":
        root = _go_nil_slices(root)
    root = _openapi_to_jsonschema(root)
    full = {**schema, "definitions": root.get("definitions", {}), "components": root.get("components", {})}
    return jsonschema.Draft4Validator(_openapi_to_jsonschema(full))


def check(spec: dict[str, Any], schema: dict[str, Any], instance: Any) -> None:
    errors = sorted(validator(spec, schema).iter_errors(instance), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors[:10])


def swagger_response(spec: dict[str, Any], path: str, method: str, status: str) -> dict[str, Any]:
    resp = spec["paths"][path][method]["responses"][status]
    if "$ref" in resp:
        resp = spec["responses"][resp["$ref"].rsplit("/", 1)[1]]
    return dict(resp["schema"])


def openapi_response(spec: dict[str, Any], path: str, method: str, status: str) -> dict[str, Any]:
    resp = spec["paths"][path][method]["responses"][status]
    if "$ref" in resp:
        resp = spec["components"]["responses"][resp["$ref"].rsplit("/", 1)[1]]
    return dict(resp["content"]["application/json"]["schema"])


def _serve(kind: str, version: str | None = None) -> Iterator[FakeForgeServer]:
    srv = FakeForgeServer(kind, version).start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def gitea() -> Iterator[FakeForgeServer]:
    yield from _serve("gitea", "1.25.0")


@pytest.fixture
def forgejo() -> Iterator[FakeForgeServer]:
    yield from _serve("forgejo", "16.0.1+gitea-1.22.0")  # the version of the reference spec


@pytest.fixture
def github() -> Iterator[FakeForgeServer]:
    yield from _serve("github")


def _client(srv: FakeForgeServer) -> httpx.Client:
    return httpx.Client(base_url=srv.url, headers={"authorization": f"token {ADMIN_TOKEN}"})


def test_gitea_shapes(gitea: FakeForgeServer) -> None:
    spec = _load("gitea-actions-api.json")
    job = gitea.queue_job("acme/app", ["ubuntu-latest"])
    with _client(gitea) as c:
        check(spec, swagger_response(spec, "/version", "get", "200"), c.get("/api/v1/version").json())
        tok = c.post("/api/v1/orgs/acme/actions/runners/registration-token")
        assert tok.status_code == 200 and isinstance(tok.json()["token"], str)
        reg = c.post("/api/actions/runner.v1.RunnerService/Register",
                     json={"name": "r1", "token": tok.json()["token"], "labels": ["a:host"], "ephemeral": True})
        runner = reg.json()["runner"]
        assert isinstance(runner["id"], str) and runner["ephemeral"] is True  # proto3 JSON int64
        check(spec, swagger_response(spec, "/orgs/{org}/actions/runners", "get", "200"),
              c.get("/api/v1/orgs/acme/actions/runners").json())
        check(spec, swagger_response(spec, "/orgs/{org}/actions/runners/{runner_id}", "get", "200"),
              c.get(f"/api/v1/orgs/acme/actions/runners/{runner['id']}").json())
        jobs = c.get("/api/v1/orgs/acme/actions/jobs", params={"status": "queued"}).json()
        check(spec, swagger_response(spec, "/orgs/{org}/actions/jobs", "get", "200"), jobs)
        assert jobs["jobs"][0]["id"] == job.id
        assert c.delete(f"/api/v1/orgs/acme/actions/runners/{runner['id']}").status_code == 204
        hook = c.post("/api/v1/repos/acme/app/hooks", json={"type": "gitea", "events": ["workflow_job"],
                                                         "config": {"url": "http://127.0.0.1:1/", "content_type":
                                                                    "json"}})
        check(spec, swagger_response(spec, "/repos/{owner}/{repo}/hooks", "post", "201"), hook.json())
    # the delivery body's workflow_job is Gitea's ActionWorkflowJob
    gitea.subscribe("http://127.0.0.1:1/", "s3cret-value")
    gitea.set_status(job, "running")
    body = json.loads(gitea.outbox[-1].body)
    check(spec, {"$ref": "#/definitions/ActionWorkflowJob"}, body["workflow_job"])
    check(spec, {"$ref": "#/definitions/Repository"}, body["repository"])


def test_forgejo_shapes(forgejo: FakeForgeServer) -> None:
    spec = _load("forgejo-actions-api.json")
    job = forgejo.queue_job("acme/app", ["docker"])
    with _client(forgejo) as c:
        check(spec, swagger_response(spec, "/version", "get", "200"), c.get("/api/v1/version").json())
        req = {"name": "r1", "ephemeral": True}
        check(spec, {"$ref": "#/definitions/RegisterRunnerOptions"}, req)
        created = c.post("/api/v1/orgs/acme/actions/runners", json=req)
        assert created.status_code == 201
        check(spec, swagger_response(spec, "/orgs/{org}/actions/runners", "post", "201"), created.json())
        listed = c.get("/api/v1/orgs/acme/actions/runners")
        check(spec, swagger_response(spec, "/orgs/{org}/actions/runners", "get", "200"), listed.json())
        assert listed.headers["x-total-count"] == "1"
        check(spec, swagger_response(spec, "/orgs/{org}/actions/runners/{runner_id}", "get", "200"),
              c.get(f"/api/v1/orgs/acme/actions/runners/{created.json()['id']}").json())
        jobs = c.get("/api/v1/orgs/acme/actions/runners/jobs").json()
        check(spec, swagger_response(spec, "/orgs/{org}/actions/runners/jobs", "get", "200"), jobs)
        assert jobs[0]["handle"] == job.handle
        check(spec, swagger_response(spec, "/orgs/{org}/actions/runners/registration-token", "get", "200"),
              c.get("/api/v1/orgs/acme/actions/runners/registration-token").json())


def test_github_shapes(github: FakeForgeServer) -> None:
    spec = _load("github-actions-api.json")
    job = github.queue_job("acme/app", ["self-hosted", "gpu"])
    with _client(github) as c:
        req = {"name": "r1", "runner_group_id": 1, "labels": ["gpu"], "work_folder": "_work"}
        schema = spec["paths"]["/orgs/{org}/actions/runners/generate-jitconfig"]["post"]["requestBody"]
        check(spec, schema["content"]["application/json"]["schema"], req)
        jit = c.post("/orgs/acme/actions/runners/generate-jitconfig", json=req)
        assert jit.status_code == 201
        check(spec, openapi_response(spec, "/orgs/{org}/actions/runners/generate-jitconfig", "post", "201"),
              jit.json())
        check(spec, openapi_response(spec, "/orgs/{org}/actions/runners", "get", "200"),
              c.get("/orgs/acme/actions/runners").json())
        check(spec, openapi_response(spec, "/repos/{owner}/{repo}/actions/runners/{runner_id}", "get", "200"),
              c.get(f"/repos/acme/app/actions/runners/{jit.json()['runner']['id']}").json())
        runs = c.get("/repos/acme/app/actions/runs", params={"status": "queued"}).json()
        check(spec, openapi_response(spec, "/repos/{owner}/{repo}/actions/runs", "get", "200"), runs)
        jobs = c.get(f"/repos/acme/app/actions/runs/{job.run_id}/jobs").json()
        check(spec, openapi_response(spec, "/repos/{owner}/{repo}/actions/runs/{run_id}/jobs", "get", "200"),
              jobs)
        check(spec, openapi_response(spec, "/repos/{owner}/{repo}/actions/jobs/{job_id}", "get", "200"),
              c.get(f"/repos/acme/app/actions/jobs/{job.id}").json())
        check(spec, openapi_response(spec, "/rate_limit", "get", "200"), c.get("/rate_limit").json())
        check(spec, openapi_response(spec, "/orgs/{org}/actions/runners/registration-token", "post", "201"),
              c.post("/orgs/acme/actions/runners/registration-token").json())
    github.subscribe("http://127.0.0.1:1/", "s3cret-value")
    github.set_status(job, "running")
    github.set_status(job, "success")
    for sent, name in zip(github.outbox, ("in-progress", "completed"), strict=True):
        check(spec, {"$ref": f"#/components/schemas/webhook-workflow-job-{name}"}, json.loads(sent.body))
    fresh = github.queue_job("acme/app", ["x"])
    check(spec, {"$ref": "#/components/schemas/webhook-workflow-job-queued"}, json.loads(github.outbox[-1].body))
    assert fresh.id in [j["id"] for j in [json.loads(github.outbox[-1].body)["workflow_job"]]]
