"""``trace export`` against the HTTP fake forge: GitHub runs + jobs, Gitea actions/jobs,
Forgejo runs + jobs + tasks; paging, rate limits, what each forge cannot do, the CLI."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from scaler.cli import main
from scaler.clock import FakeClock
from scaler.config import parse_config
from scaler.forges import build_forge
from scaler.forges.forgejo import ForgejoForge
from scaler.forges.gitea import GiteaForge
from scaler.forges.github import GitHubForge
from scaler.testing.fake_forge_server import ADMIN_TOKEN, FakeForgeServer, FJob
from scaler.trace import export as ex
from scaler.trace.format import read_trace
from tests.forges.test_fake_schemas import _load, check, openapi_response, swagger_response

NOW = 1_758_000_000.0
DAY = 86400.0


class Clock:
    def __init__(self) -> None:
        self.t = NOW - 3 * DAY

    def __call__(self) -> float:
        return self.t


def history(srv: FakeForgeServer, clock: Clock) -> dict[str, FJob]:
    """Jobs over three days: done, failed, cancelled, skipped, still running, and one too old."""
    made: dict[str, FJob] = {}
    for name, at, status, run in (
        ("old", -10 * DAY, "success", 60),
        ("ok", -2 * DAY, "success", 300),
        ("fail", -1 * DAY, "failure", 120),
        ("cancel", -0.5 * DAY, "cancelled", 30),
        ("skip", -0.4 * DAY, "skipped", 0),
        ("running", -0.1 * DAY, "running", 0),
    ):
        clock.t = NOW + at
        j = srv.queue_job("acme/app", ["self-hosted", "linux"], name=name)
        if status != "skipped":
            clock.t += 15
            srv.set_status(j, "running")
        if status != "running":
            clock.t += run
            srv.set_status(j, status)
        made[name] = j
    srv.outbox.clear()
    clock.t = NOW
    return made


def adapter(kind: str, srv: FakeForgeServer, scope: dict[str, Any]) -> Any:
    config = parse_config({
        "forges": [{"name": "f", "type": kind, "url": srv.url, "scope": scope, "token_env": "RS_EXPORT_TOKEN",
                    "webhook_secret_envs": ["RS_EXPORT_TOKEN"]}],
        "providers": [{"name": "p", "type": "memory"}],
        "pools": [{"name": "x", "forge": "f", "provider": "p", "labels": ["linux"]}],
    }).forges[0]
    cls = {"github": GitHubForge, "gitea": GiteaForge, "forgejo": ForgejoForge}[kind]
    return cls(config, clock=FakeClock(NOW))


@pytest.fixture(autouse=True)
def _token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RS_EXPORT_TOKEN", ADMIN_TOKEN)


def serve(kind: str, version: str | None = None) -> Iterator[tuple[FakeForgeServer, dict[str, FJob]]]:
    clock = Clock()
    srv = FakeForgeServer(kind, version, clock=clock).start()
    try:
        yield srv, history(srv, clock)
    finally:
        srv.stop()


@pytest.fixture
def github() -> Iterator[tuple[FakeForgeServer, dict[str, FJob]]]:
    yield from serve("github")


async def export(a: Any, **kw: Any) -> list[ex.TraceJob]:
    try:
        return await ex.export(a, NOW - 7 * DAY, NOW + 1, **kw)
    finally:
        await a.aclose()


def expect(made: dict[str, FJob], rows: list[ex.TraceJob]) -> None:
    by_name = {r.name: r for r in rows}
    assert set(by_name) == {"ok", "fail", "cancel"}  # not: too old, skipped (never ran), still running
    assert [by_name[n].status for n in ("ok", "fail", "cancel")] == ["completed", "failed", "aborted"]
    ok = by_name["ok"]
    assert (ok.job_id, ok.repository, ok.labels) == (made["ok"].id, "acme/app", ("self-hosted", "linux"))
    assert (ok.queued_at, ok.started_at, ok.completed_at) == (NOW - 2 * DAY, NOW - 2 * DAY + 15, NOW - 2 * DAY + 315)


def test_github_runs_and_jobs(github: tuple[FakeForgeServer, dict[str, FJob]], monkeypatch: pytest.MonkeyPatch) -> None:
    """Runs by created window (halved when a window is full), their jobs, finished ones only."""
    srv, made = github
    monkeypatch.setattr(ex, "GITHUB_WINDOW_CAP", 1)  # every window with two runs is split
    expect(made, asyncio.run(export(adapter("github", srv, {"kind": "repository", "name": "acme/app"}))))
    created = [q for m, q in srv.requests if m == "GET" and q.endswith("/actions/runs")]
    assert len(created) > 8  # one query per day at least, more where halved


def test_github_rate_limit_waited_out(github: tuple[FakeForgeServer, dict[str, FJob]]) -> None:
    """A 429 with Retry-After longer than the client's own retries is waited out, then read."""
    srv, made = github
    srv.fail_next("GET", r"/actions/runs$", 429, retry_after=120, times=1)
    srv.fail_next("GET", r"/jobs$", 503, times=2)
    expect(made, asyncio.run(export(adapter("github", srv, {"kind": "organization", "name": "acme"}))))


def test_github_created_filter_shape(github: tuple[FakeForgeServer, dict[str, FJob]]) -> None:
    """The fake's created filter answers in GitHub's runs shape and honours the range."""
    srv, made = github
    spec = _load("github-actions-api.json")
    day = ex._iso(NOW - 2 * DAY - 60) + ".." + ex._iso(NOW - 2 * DAY + 60)
    with httpx.Client(base_url=srv.url, headers={"authorization": f"token {ADMIN_TOKEN}"}) as c:
        runs = c.get("/repos/acme/app/actions/runs", params={"created": day}).json()
        check(spec, openapi_response(spec, "/repos/{owner}/{repo}/actions/runs", "get", "200"), runs)
        assert [r["id"] for r in runs["workflow_runs"]] == [made["ok"].run_id]
        assert c.get("/repos/acme/app/actions/runs", params={"created": "yesterday"}).status_code == 422


def test_gitea_jobs_newest_first() -> None:
    """Gitea 1.25: the scope's actions/jobs, read from the newest page back to `since`."""
    for srv, made in serve("gitea", "1.25.0"):
        expect(made, asyncio.run(export(adapter("gitea", srv, {"kind": "organization", "name": "acme"}))))
        spec = _load("gitea-actions-api.json")
        with httpx.Client(base_url=srv.url, headers={"authorization": f"token {ADMIN_TOKEN}"}) as c:
            check(spec, swagger_response(spec, "/orgs/{org}/actions/jobs", "get", "200"),
                  c.get("/api/v1/orgs/acme/actions/jobs").json())


def test_gitea_before_125_cannot() -> None:
    """Gitea 1.24 has no job listing: the export says so and names the version."""
    for srv, _ in serve("gitea", "1.24.3"):
        with pytest.raises(ex.ExportUnsupported, match=r"Gitea 1\.24\.3 has no job listing"):
            asyncio.run(export(adapter("gitea", srv, {"kind": "organization", "name": "acme"})))


def test_forgejo_runs_jobs_tasks() -> None:
    """Forgejo: per repository, runs (arrival), jobs (labels, task) and tasks (start, end)."""
    for srv, made in serve("forgejo", "16.0.1+gitea-1.22.0"):
        expect(made, asyncio.run(export(adapter("forgejo", srv, {"kind": "repository", "name": "acme/app"}))))
        with pytest.raises(ex.ExportUnsupported, match="--repository"):
            asyncio.run(export(adapter("forgejo", srv, {"kind": "organization", "name": "acme"})))
        spec = _load("forgejo-actions-api.json")
        with httpx.Client(base_url=srv.url, headers={"authorization": f"token {ADMIN_TOKEN}"}) as c:
            runs = c.get("/api/v1/repos/acme/app/actions/runs").json()
            check(spec, swagger_response(spec, "/repos/{owner}/{repo}/actions/runs", "get", "200"), runs)
            run_id = runs["workflow_runs"][0]["id"]
            check(spec, swagger_response(spec, "/repos/{owner}/{repo}/actions/runs/{run_id}/jobs", "get", "200"),
                  c.get(f"/api/v1/repos/acme/app/actions/runs/{run_id}/jobs").json())
            check(spec, swagger_response(spec, "/repos/{owner}/{repo}/actions/tasks", "get", "200"),
                  c.get("/api/v1/repos/acme/app/actions/tasks").json())


def test_export_cli(github: tuple[FakeForgeServer, dict[str, FJob]], tmp_path: Path,
                    capsys: pytest.CaptureFixture[str]) -> None:
    """`trace export` writes a trace simulate can read; bad arguments exit 2 naming them."""
    srv, _ = github
    for j in srv.jobs.values():  # the CLI exports up to the wall clock: move the history next to it
        import time
        shift = time.time() - NOW
        j.created_at += shift
        j.started_at = j.started_at + shift if j.started_at else None
        j.completed_at = j.completed_at + shift if j.completed_at else None
    config = tmp_path / "c.yaml"
    config.write_text(json.dumps({
        "forges": [{"name": "gh", "type": "github", "url": srv.url, "scope": {"kind": "repository", "name": "acme/app"},
                    "token_env": "RS_EXPORT_TOKEN", "webhook_secret_envs": ["RS_EXPORT_TOKEN"]}],
        "providers": [{"name": "p", "type": "memory"}],
        "pools": [{"name": "x", "forge": "gh", "provider": "p", "labels": ["linux"]}],
    }))
    out = tmp_path / "t.csv"
    assert main(["trace", "export", "--config", str(config), "--since", "5d", "--out", str(out),
                 "--progress", "always"]) == 0
    err = capsys.readouterr().err
    assert "3 jobs written" in err and "[" in err and "requests" in err  # the progress bar
    assert [r.name for r in read_trace(out)] == ["ok", "fail", "cancel"]
    assert main(["trace", "export", "--config", str(config), "--since", "soon"]) == 2
    assert "--since" in capsys.readouterr().err
    assert main(["trace", "export", "--config", str(config), "--repository", "nope"]) == 2
    assert main(["trace", "export", "--config", str(config), "--forge", "other"]) == 2


def test_fake_forge_has_no_history() -> None:
    """The in-process fake forge (no HTTP) cannot be exported from, and says so."""
    config = parse_config({
        "forges": [{"name": "f", "type": "fake", "url": "http://127.0.0.1:1", "scope": {"kind": "instance"},
                    "webhook_secret_envs": ["RS_EXPORT_TOKEN"]}],
        "providers": [{"name": "p", "type": "memory"}],
        "pools": [{"name": "x", "forge": "f", "provider": "p", "labels": ["linux"]}],
    })
    with pytest.raises(ex.ExportUnsupported, match="no job history"):
        ex.History(build_forge(config.forges[0]))


def test_warm_pools_rebuilt_from_history(github: tuple[FakeForgeServer, dict[str, FJob]]) -> None:
    """At start-up a warm pool learns the forge's job history through the same reader."""
    from scaler.planner import PoolIndex
    from scaler.warm import WarmPools
    from scaler.warm.history import rebuild

    srv, made = github
    a = adapter("github", srv, {"kind": "repository", "name": "acme/app"})
    config = parse_config({
        "forges": [{"name": "f", "type": "github", "url": srv.url, "scope": {"kind": "repository", "name": "acme/app"},
                    "token_env": "RS_EXPORT_TOKEN", "webhook_secret_envs": ["RS_EXPORT_TOKEN"]}],
        "providers": [{"name": "p", "type": "memory"}],
        "pools": [{"name": "x", "forge": "f", "provider": "p", "labels": ["linux", "self-hosted"],
                   "warm": {"target_wait": "30s", "history": "7d"}}],
    })
    warm = WarmPools(config, PoolIndex(config))

    async def go() -> int:
        try:
            return await rebuild(warm, {"f": a}, NOW + 1)
        finally:
            await a.aclose()

    assert asyncio.run(go()) == 3  # ok, fail, cancel: finished within the 7 days
    model = warm._pools["x"].model
    assert [b.start for b in model.batches] == sorted(made[n].created_at for n in ("ok", "fail", "cancel"))
