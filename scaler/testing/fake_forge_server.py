"""A stateful fake forge over HTTP that plays Gitea, Forgejo or GitHub.

Built from the API subsets in the reference specs (see the module's tests,
which validate its answers against them). One server plays one forge kind:

* REST: version, runners (list/get/delete, paged as the forge pages),
  registration tokens, queued jobs (Gitea ≥ 1.25 ``actions/jobs``, Forgejo
  ``actions/runners/jobs``, GitHub runs → jobs with ETags), Forgejo
  ``POST actions/runners`` with job handles, GitHub ``generate-jitconfig``,
  GitHub App installation tokens, rate limits, hooks (repo/org/user/system).
* The runner side: the Gitea/Forgejo runner ConnectRPC service (``Register``,
  ``Declare``, ``FetchTask``, ``UpdateTask``, ``UpdateLog``; all but
  ``Register`` need ``x-runner-uuid`` / ``x-runner-token``) and, for GitHub, a
  small stand-in protocol under ``/_fake/github-runner/`` authenticated by the
  JIT config (the real broker protocol is out of scope).
* Webhooks: ``emit`` records a delivery signed exactly as the forge signs it
  (all headers); ``flush`` sends them to every hook, with knobs to drop,
  duplicate, delay and reorder.
* Faults: ``fail_next(method, path_regex, status, retry_after=…, times=…,
  delay=…)`` answers 429/5xx or stalls (a timeout for a short client timeout).

Run it standalone: ``python -m scaler.testing.fake_forge_server --kind gitea``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import hmac
import itertools
import json
import random
import re
import secrets
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

ADMIN_TOKEN = "fake-admin-token-0123456789"  # noqa: S105 - a test fixture value


def _iso(t: float | None) -> str | None:
    return None if t is None else datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Repo:
    id: int
    full_name: str

    @property
    def owner(self) -> str:
        return self.full_name.split("/", 1)[0]

    @property
    def name(self) -> str:
        return self.full_name.split("/", 1)[1]


@dataclass
class FJob:
    """A workflow job. ``status`` is the forge-neutral life cycle:
    blocked → waiting (ready for a runner) → running → success/failure/cancelled/skipped."""

    id: int
    run_id: int
    repo: Repo
    labels: tuple[str, ...]
    name: str = "build"
    status: str = "waiting"
    handle: str = field(default_factory=lambda: uuid.uuid4().hex)
    runner_id: int | None = None
    runner_name: str | None = None
    created_at: float = field(default_factory=time.time)
    started_at: float | None = None
    completed_at: float | None = None
    attempt: int = 1

    @property
    def done(self) -> bool:
        return self.status in ("success", "failure", "cancelled", "skipped")


@dataclass
class FRunner:
    id: int
    name: str
    uuid: str
    token: str
    labels: tuple[str, ...] = ()
    ephemeral: bool = False
    online: bool = False
    busy: bool = False
    job_id: int | None = None
    version: str = ""
    jit: str | None = None
    finished: bool = False


@dataclass
class Hook:
    id: int
    url: str
    events: list[str]
    secret: str
    content_type: str = "json"
    active: bool = True
    type: str = "gitea"
    system: bool = False


@dataclass
class Fault:
    method: str
    path: re.Pattern[str]
    status: int
    retry_after: float | None = None
    delay: float = 0.0
    times: int = 1


@dataclass
class DeliveryFaults:
    """What ``flush`` does to the pending deliveries (seeded, reproducible)."""

    drop: float = 0.0  # probability
    duplicate: float = 0.0  # probability
    reorder: bool = False
    delay: float = 0.0  # seconds before each send
    seed: int = 0


@dataclass
class SentDelivery:
    url: str
    headers: dict[str, str]
    body: bytes
    status: int | None = None


class FakeForgeServer:
    def __init__(
        self,
        kind: str = "gitea",
        version: str | None = None,
        *,
        token: str = ADMIN_TOKEN,
        app_id: int | None = None,
        app_public_key: str | None = None,
        rate_limit: int = 5000,
        rate_window: float = 3600.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if kind not in ("gitea", "forgejo", "github"):
            raise ValueError(f"unknown forge kind {kind!r}")
        self.kind = kind
        self.version = version or {"gitea": "1.25.0", "forgejo": "15.0.0+gitea-1.22.0", "github": ""}[kind]
        self.token = token
        self.app_id = app_id
        self.app_public_key = app_public_key
        self.installation_id = 4242
        self.installation_tokens: dict[str, float] = {}
        self.clock = clock
        self._ids = itertools.count(100)
        self.repos: dict[str, Repo] = {}
        self.jobs: dict[int, FJob] = {}
        self.runners: dict[int, FRunner] = {}
        self.hooks: dict[int, Hook] = {}
        self.registration_tokens: list[str] = []
        self.outbox: list[SentDelivery] = []
        self.sent: list[SentDelivery] = []
        self.faults: list[Fault] = []
        self.requests: list[tuple[str, str]] = []
        self.rate_limit = rate_limit
        self.rate_remaining = rate_limit
        self.rate_window = rate_window
        self.rate_reset = clock() + rate_window
        self.tasks_version = 0
        self.webhook_targets: list[tuple[str, str]] = []  # (url, secret) outside the hook API
        self.app = Starlette(routes=self._routes())
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self.port = 0

    # --- life cycle ---------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FakeForgeServer:
        import uvicorn

        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(self.app, log_level="warning", access_log=False, lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]}, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("fake forge did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)

    def __enter__(self) -> FakeForgeServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- world setup -------------------------------------------------------------------

    def add_repo(self, full_name: str) -> Repo:
        if full_name not in self.repos:
            self.repos[full_name] = Repo(next(self._ids), full_name)
        return self.repos[full_name]

    def queue_job(self, repo: str, labels: Iterable[str], *, blocked: bool = False, name: str = "build") -> FJob:
        r = self.add_repo(repo)
        job = FJob(next(self._ids), next(self._ids), r, tuple(labels), name=name, created_at=self.clock())
        job.status = "blocked" if blocked else "waiting"
        self.jobs[job.id] = job
        self.tasks_version += 1
        self.emit(job)
        return job

    def unblock(self, job: FJob) -> None:
        job.status = "waiting"
        self.tasks_version += 1
        self.emit(job)

    def set_status(self, job: FJob, status: str, runner: FRunner | None = None) -> None:
        job.status = status
        now = self.clock()
        if status == "running":
            job.started_at = now
            if runner is not None:
                job.runner_id, job.runner_name = runner.id, runner.name
                runner.busy, runner.job_id = True, job.id
        if job.done:
            job.completed_at = now
            for r in list(self.runners.values()):
                if r.job_id == job.id:
                    r.busy, r.job_id = False, None
                    if r.ephemeral:
                        r.finished = True
                        r.online = False
                        if self.kind in ("forgejo", "github"):
                            del self.runners[r.id]  # Gitea leaves the record behind
        self.emit(job)

    def fail_next(
        self,
        method: str,
        path: str,
        status: int,
        *,
        retry_after: float | None = None,
        delay: float = 0.0,
        times: int = 1,
    ) -> None:
        self.faults.append(Fault(method.upper(), re.compile(path), status, retry_after, delay, times))

    def subscribe(self, url: str, secret: str) -> None:
        """Deliver webhooks to ``url`` without going through the hook API."""
        self.webhook_targets.append((url, secret))

    def runner_by_name(self, name: str) -> FRunner | None:
        return next((r for r in self.runners.values() if r.name == name), None)

    # --- webhooks ------------------------------------------------------------------------

    def _targets(self) -> list[tuple[str, str, list[str] | None]]:
        out: list[tuple[str, str, list[str] | None]] = [(u, s, None) for u, s in self.webhook_targets]
        out += [(h.url, h.secret, h.events) for h in self.hooks.values() if h.active]
        return out

    def emit(self, job: FJob) -> None:
        """Record the delivery for the job's current status (nothing if the forge sends none)."""
        rendered = self.render_delivery(job)
        if rendered is None:
            return
        event, event_type, payload = rendered
        body = json.dumps(payload).encode()
        for url, secret, events in self._targets():
            if events is not None and event not in events and event_type not in events and "*" not in events:
                continue
            self.outbox.append(SentDelivery(url, self.sign_headers(event, event_type, body, secret), body))

    def sign_headers(self, event: str, event_type: str, body: bytes, secret: str) -> dict[str, str]:
        digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest() if secret else ""
        sha1 = hmac.new(secret.encode(), body, hashlib.sha1).hexdigest() if secret else ""
        did = str(uuid.uuid4())
        h = {"content-type": "application/json"}
        if self.kind == "github":
            h.update(
                {
                    "user-agent": "GitHub-Hookshot/fake",
                    "x-github-event": event,
                    "x-github-delivery": did,
                    "x-github-hook-id": "1",
                    "x-github-hook-installation-target-type": "repository",
                    "x-github-hook-installation-target-id": "1",
                    "x-hub-signature-256": f"sha256={digest}" if secret else "",
                    "x-hub-signature": f"sha1={sha1}" if secret else "",
                }
            )
            return {k: v for k, v in h.items() if v}
        sets = ["gitea", "gogs"] + (["forgejo"] if self.kind == "forgejo" else [])
        for name in sets:
            h[f"x-{name}-event"] = event
            h[f"x-{name}-event-type"] = event_type
            h[f"x-{name}-delivery"] = did
            h[f"x-{name}-signature"] = digest
            if name != "forgejo":
                h[f"x-{name}-hook-installation-target-type"] = "repository"
        h.update(
            {
                "x-github-event": event,
                "x-github-event-type": event_type,
                "x-github-delivery": did,
                "x-github-hook-installation-target-type": "repository",
                "x-hub-signature-256": f"sha256={digest}" if digest else "",
                "x-hub-signature": f"sha1={sha1}" if sha1 else "",
                "user-agent": "Go-http-client/1.1",
            }
        )
        return h

    def render_delivery(self, job: FJob) -> tuple[str, str, dict[str, Any]] | None:
        repo = self.repo_json(job.repo)
        sender = self.user_json("admin")
        if self.kind == "forgejo":
            status = job.status
            name = f"workflow_job_{status}"
            return (
                name,
                name,
                {"action": status, "job": self.forgejo_job_json(job), "repository": repo, "sender": sender},
            )
        action, status, conclusion = self._gh_like_status(job)
        if action is None:
            return None
        wj = self.gitea_job_json(job) if self.kind == "gitea" else self.github_job_json(job)
        wj["status"] = status
        wj["conclusion"] = conclusion if (conclusion is not None or self.kind == "github") else ""
        payload: dict[str, Any] = {"action": action, "workflow_job": wj, "repository": repo, "sender": sender}
        if self.kind == "github" and self.app_id is not None:
            payload["installation"] = {"id": self.installation_id, "node_id": "MDIzOkluc3RhbGxhdGlvbg=="}
        return ("workflow_job", "workflow_job", payload)

    def _newer_gitea(self) -> bool:
        from scaler.forges._common import parse_version

        v = parse_version(self.version)
        return v is not None and v >= (1, 25, 0)

    def _gh_like_status(self, job: FJob) -> tuple[str | None, str, str | None]:
        s = job.status
        if s == "blocked":
            if self.kind == "gitea":
                return ("pending" if self._newer_gitea() else "waiting"), "waiting", None
            return None, "waiting", None  # GitHub: not delivered (no runner-visible state)
        if s == "waiting":
            return "queued", "queued", None
        if s == "running":
            return "in_progress", "in_progress", None
        return "completed", "completed", s

    # --- JSON shapes ---------------------------------------------------------------

    def user_json(self, login: str) -> dict[str, Any]:
        base = f"{self.url}/users/{login}"
        u: dict[str, Any] = {"id": 1, "login": login, "node_id": "MDQ6VXNlcjE=", "type": "User",
                             "site_admin": False, "gravatar_id": None, "html_url": f"{self.url}/{login}",
                             "url": base, "avatar_url": f"{self.url}/avatars/{login}"}
        for k in ("events", "followers", "following", "gists", "organizations", "received_events", "repos",
                  "starred", "subscriptions"):
            u[f"{k}_url"] = f"{base}/{k}"
        if self.kind != "github":
            u = {"id": 1, "login": login, "full_name": "", "email": f"{login}@example.invalid",
                 "avatar_url": u["avatar_url"], "username": login}
        return u

    def repo_json(self, repo: Repo) -> dict[str, Any]:
        if self.kind != "github":
            return {"id": repo.id, "name": repo.name, "full_name": repo.full_name,
                    "owner": self.user_json(repo.owner), "private": False,
                    "html_url": f"{self.url}/{repo.full_name}", "default_branch": "main"}
        api = f"{self.url}/repos/{repo.full_name}"
        r: dict[str, Any] = {
            "id": repo.id, "node_id": f"R_{repo.id}", "name": repo.name, "full_name": repo.full_name,
            "owner": self.user_json(repo.owner), "private": False, "fork": False, "description": None,
            "html_url": f"{self.url}/{repo.full_name}", "url": api, "homepage": None, "language": None,
            "mirror_url": None, "pushed_at": None, "created_at": None, "updated_at": None, "license": None,
            "default_branch": "main", "archived": False, "disabled": False, "size": 0,
            "clone_url": f"{self.url}/{repo.full_name}.git", "git_url": f"git://fake/{repo.full_name}.git",
            "ssh_url": f"git@fake:{repo.full_name}.git", "svn_url": f"{self.url}/{repo.full_name}",
        }
        for k in ("forks", "forks_count", "open_issues", "open_issues_count", "stargazers_count", "watchers",
                  "watchers_count"):
            r[k] = 0
        for k in ("has_downloads", "has_issues", "has_projects", "has_wiki", "has_pages"):
            r[k] = False
        for k in ("archive", "assignees", "blobs", "branches", "collaborators", "comments", "commits", "compare",
                  "contents", "contributors", "deployments", "downloads", "events", "forks", "git_commits",
                  "git_refs", "git_tags", "hooks", "issue_comment", "issue_events", "issues", "keys", "labels",
                  "languages", "merges", "milestones", "notifications", "pulls", "releases", "stargazers",
                  "statuses", "subscribers", "subscription", "tags", "teams", "trees"):
            r[f"{k}_url"] = f"{api}/{k}"
        return r

    def gitea_status(self, job: FJob) -> tuple[str, str]:
        """(status, conclusion) as Gitea's REST API shows a job."""
        s = job.status
        if s == "blocked":
            return "pending" if self._newer_gitea() else "waiting", ""
        if s == "waiting":
            return "queued", ""
        if s == "running":
            return "in_progress", ""
        return "completed", s

    def gitea_job_json(self, job: FJob) -> dict[str, Any]:
        status, conclusion = self.gitea_status(job)
        api = f"{self.url}/api/v1/repos/{job.repo.full_name}/actions"
        return {
            "id": job.id, "url": f"{api}/jobs/{job.id}",
            "html_url": f"{self.url}/{job.repo.full_name}/actions/runs/{job.run_id}/jobs/0",
            "run_id": job.run_id, "run_url": f"{api}/runs/{job.run_id}", "name": job.name,
            "labels": list(job.labels), "run_attempt": job.attempt, "head_sha": "0" * 40, "head_branch": "main",
            "status": status, "conclusion": conclusion, "runner_id": job.runner_id or 0,
            "runner_name": job.runner_name or "", "steps": [],
            "created_at": _iso(job.created_at), "started_at": _iso(job.started_at) or "0001-01-01T00:00:00Z",
            "completed_at": _iso(job.completed_at) or "0001-01-01T00:00:00Z",
        }

    def forgejo_job_json(self, job: FJob) -> dict[str, Any]:
        return {
            "id": job.id, "run_id": job.run_id, "repo_id": job.repo.id, "owner_id": 1, "name": job.name,
            "needs": [], "runs_on": list(job.labels), "status": job.status, "task_id": job.id + 1_000_000,
            "attempt": job.attempt, "handle": job.handle,
        }

    def github_status(self, job: FJob) -> tuple[str, str | None]:
        s = job.status
        if s in ("blocked", "waiting"):
            return ("waiting" if s == "blocked" else "queued"), None
        if s == "running":
            return "in_progress", None
        return "completed", s

    def github_job_json(self, job: FJob) -> dict[str, Any]:
        status, conclusion = self.github_status(job)
        api = f"{self.url}/repos/{job.repo.full_name}/actions"
        return {
            "id": job.id, "node_id": f"J_{job.id}", "run_id": job.run_id, "run_url": f"{api}/runs/{job.run_id}",
            "run_attempt": job.attempt, "head_sha": "0" * 40, "workflow_name": "CI", "head_branch": "main",
            "name": job.name, "url": f"{api}/jobs/{job.id}",
            "html_url": f"{self.url}/{job.repo.full_name}/actions/runs/{job.run_id}/job/{job.id}",
            "status": status, "conclusion": conclusion, "started_at": _iso(job.started_at or job.created_at),
            "completed_at": _iso(job.completed_at), "check_run_url": f"{self.url}/check-runs/{job.id}",
            "labels": list(job.labels), "runner_id": job.runner_id, "runner_name": job.runner_name,
            "runner_group_id": 1 if job.runner_id else None,
            "runner_group_name": "Default" if job.runner_id else None, "created_at": _iso(job.created_at),
            "steps": [],
        }

    def github_run_json(self, run_id: int, jobs: list[FJob]) -> dict[str, Any]:
        repo = jobs[0].repo
        statuses = [self.github_status(j)[0] for j in jobs]
        status = "in_progress" if "in_progress" in statuses else ("queued" if "queued" in statuses else
                                                                  ("waiting" if "waiting" in statuses else
                                                                   "completed"))
        api = f"{self.url}/repos/{repo.full_name}/actions/runs/{run_id}"
        minimal = self.repo_json(repo)
        return {
            "id": run_id, "node_id": f"WR_{run_id}", "head_branch": "main", "run_number": run_id,
            "display_title": "CI", "event": "push", "status": status, "conclusion": None, "head_sha": "0" * 40,
            "path": ".github/workflows/ci.yml", "workflow_id": 1, "url": api,
            "html_url": f"{self.url}/{repo.full_name}/actions/runs/{run_id}",
            "created_at": _iso(jobs[0].created_at), "updated_at": _iso(jobs[0].created_at), "head_commit": None,
            "head_repository": minimal, "repository": minimal, "jobs_url": f"{api}/jobs", "logs_url": f"{api}/logs",
            "check_suite_url": f"{api}/check-suite", "cancel_url": f"{api}/cancel", "rerun_url": f"{api}/rerun",
            "artifacts_url": f"{api}/artifacts", "workflow_url": f"{self.url}/repos/{repo.full_name}/workflows/1",
            "pull_requests": [],
        }

    def runner_json(self, r: FRunner) -> dict[str, Any]:
        status = "online" if r.online else "offline"
        if self.kind == "gitea":
            return {"id": r.id, "name": r.name, "status": status, "busy": r.busy, "disabled": False,
                    "ephemeral": r.ephemeral,
                    "labels": [{"id": i + 1, "name": x, "type": "custom"} for i, x in enumerate(r.labels)]}
        if self.kind == "forgejo":
            return {"id": r.id, "uuid": r.uuid, "name": r.name, "version": r.version, "labels": list(r.labels),
                    "status": ("active" if r.busy else "idle") if r.online else "offline",
                    "ephemeral": r.ephemeral, "description": "", "owner_id": 0, "repo_id": 0}
        return {"id": r.id, "runner_group_id": 1, "name": r.name, "os": "linux", "status": status,
                "busy": r.busy, "ephemeral": r.ephemeral, "version": r.version or None,
                "labels": [{"id": i + 1, "name": x, "type": "custom"} for i, x in enumerate(r.labels)]}

    # --- delivery ------------------------------------------------------------------------

    async def flush(self, faults: DeliveryFaults | None = None, *, timeout: float = 5.0) -> list[SentDelivery]:
        """Send every pending delivery (to 127.0.0.1 targets only)."""
        f = faults or DeliveryFaults()
        rng = random.Random(f.seed)  # noqa: S311 - reproducible faults, not crypto
        pending, self.outbox = self.outbox, []
        batch: list[SentDelivery] = []
        for d in pending:
            if f.drop and rng.random() < f.drop:
                continue
            batch.append(d)
            if f.duplicate and rng.random() < f.duplicate:
                batch.append(SentDelivery(d.url, dict(d.headers), d.body))
        if f.reorder:
            rng.shuffle(batch)
        async with httpx.AsyncClient(timeout=timeout) as client:
            for d in batch:
                host = httpx.URL(d.url).host
                if host not in ("127.0.0.1", "localhost", "::1"):
                    raise ValueError(f"refusing to deliver to a non-loopback host {host!r}")
                if f.delay:
                    await asyncio.sleep(f.delay)
                resp = await client.post(d.url, content=d.body, headers=d.headers)
                d.status = resp.status_code
                self.sent.append(d)
        return batch

    # --- HTTP plumbing ---------------------------------------------------------------------

    async def _fault(self, request: Request) -> Response | None:
        self.requests.append((request.method, request.url.path))
        for f in self.faults:
            if f.times > 0 and f.method in (request.method, "*") and f.path.search(request.url.path):
                f.times -= 1
                if f.delay:
                    await asyncio.sleep(f.delay)
                headers = {"retry-after": str(int(f.retry_after))} if f.retry_after is not None else {}
                return JSONResponse({"message": "injected fault"}, status_code=f.status, headers=headers)
        return None

    def _rate_headers(self) -> dict[str, str]:
        return {"x-ratelimit-limit": str(self.rate_limit), "x-ratelimit-remaining": str(self.rate_remaining),
                "x-ratelimit-reset": str(int(self.rate_reset)), "x-ratelimit-used":
                str(self.rate_limit - self.rate_remaining), "x-ratelimit-resource": "core"}

    def _authorised(self, request: Request) -> bool:
        auth = request.headers.get("authorization", "")
        scheme, _, value = auth.partition(" ")
        if self.kind == "github":
            return scheme.lower() in ("bearer", "token") and (
                value == self.token or (value in self.installation_tokens and
                                        self.installation_tokens[value] > self.clock()))
        return scheme.lower() in ("token", "bearer") and value == self.token

    def _routes(self) -> list[Route]:
        return [
            Route("/{path:path}", self._dispatch, methods=["GET", "POST", "PATCH", "DELETE", "PUT"]),
        ]

    async def _dispatch(self, request: Request) -> Response:
        fault = await self._fault(request)
        if fault is not None:
            return fault
        path = "/" + request.path_params["path"]
        if path.startswith("/api/actions/runner.v1.RunnerService/") and self.kind != "github":
            return await self._rpc(request, path.rsplit("/", 1)[1])
        if path.startswith("/_fake/github-runner/") and self.kind == "github":
            return await self._gh_runner(request, path.rsplit("/", 1)[1])
        if self.kind == "github":
            return await self._github(request, path)
        if not path.startswith("/api/v1/"):
            return JSONResponse({"message": "not found"}, status_code=404)
        if not self._authorised(request):
            return JSONResponse({"message": "token is required"}, status_code=401)
        return await self._gitea_rest(request, path[len("/api/v1"):])

    # --- Gitea / Forgejo REST --------------------------------------------------------------

    _SCOPE = re.compile(r"^(/repos/[^/]+/[^/]+|/orgs/[^/]+|/user|/admin)(/.*)$")

    async def _gitea_rest(self, request: Request, path: str) -> Response:
        method = request.method
        if path == "/version":
            return JSONResponse({"version": self.version})
        m = re.match(r"^/repositories/(\d+)$", path)
        if m:
            repo = next((r for r in self.repos.values() if r.id == int(m.group(1))), None)
            return JSONResponse(self.repo_json(repo)) if repo else JSONResponse({"message": "nf"}, status_code=404)
        if self.kind == "forgejo" and path == "/admin/runners/jobs":
            return self._forgejo_jobs(request)
        m = self._SCOPE.match(path)
        if not m:
            return JSONResponse({"message": "not found"}, status_code=404)
        scope, rest = m.group(1), m.group(2)
        q = request.query_params
        page, limit = int(q.get("page", 1) or 1), int(q.get("limit", 30) or 30)
        if rest == "/actions/runners" and method == "GET":
            runners = sorted(self.runners.values(), key=lambda r: r.id)
            chunk = runners[(page - 1) * limit: page * limit]
            if self.kind == "gitea":
                return JSONResponse({"runners": [self.runner_json(r) for r in chunk], "total_count": len(runners)})
            return JSONResponse([self.runner_json(r) for r in chunk], headers={"x-total-count": str(len(runners))})
        if rest == "/actions/runners" and method == "POST" and self.kind == "forgejo":
            if self._major() < 15:
                return JSONResponse({"message": "not found"}, status_code=404)
            body = await request.json()
            if not isinstance(body.get("name"), str) or not body["name"]:
                return JSONResponse({"message": "name is required"}, status_code=400)
            r = FRunner(next(self._ids), body["name"], str(uuid.uuid4()), secrets.token_hex(20),
                        ephemeral=bool(body.get("ephemeral")))
            self.runners[r.id] = r
            return JSONResponse({"id": r.id, "uuid": r.uuid, "token": r.token}, status_code=201)
        if rest == "/actions/runners/registration-token":
            if self.kind == "gitea" and method not in ("POST", "GET"):
                return JSONResponse({"message": "method"}, status_code=405)
            if self.kind == "forgejo" and method != "GET":
                return JSONResponse({"message": "method"}, status_code=405)
            tok = secrets.token_hex(20)
            self.registration_tokens.append(tok)
            return JSONResponse({"token": tok})
        m2 = re.match(r"^/actions/runners/(\d+)$", rest)
        if m2:
            found = self.runners.get(int(m2.group(1)))
            if found is None:
                return JSONResponse({"message": "runner not found"}, status_code=404)
            if method == "DELETE":
                del self.runners[found.id]
                return Response(status_code=204)
            return JSONResponse(self.runner_json(found))
        if rest == "/actions/jobs" and method == "GET" and self.kind == "gitea":
            if not self._newer_gitea():
                return JSONResponse({"message": "not found"}, status_code=404)
            status = q.get("status")
            jobs = [j for j in sorted(self.jobs.values(), key=lambda j: j.id) if self._in_scope(j, scope)
                    and (status is None or self.gitea_status(j)[0] == status)]
            some = jobs[(page - 1) * limit: page * limit]
            return JSONResponse({"jobs": [self.gitea_job_json(j) for j in some], "total_count": len(jobs)})
        if rest == "/actions/runners/jobs" and method == "GET" and self.kind == "forgejo":
            return self._forgejo_jobs(request, scope)
        if rest == "/hooks":
            return await self._hooks(request, system=scope == "/admin")
        m3 = re.match(r"^/hooks/(\d+)$", rest)
        if m3 and method == "PATCH":
            return await self._patch_hook(request, int(m3.group(1)))
        return JSONResponse({"message": "not found"}, status_code=404)

    def _major(self) -> int:
        from scaler.forges._common import parse_version

        v = parse_version(self.version)
        return v[0] if v else 0

    def _in_scope(self, job: FJob, scope: str) -> bool:
        if scope.startswith("/repos/"):
            return scope == f"/repos/{job.repo.full_name}"
        if scope.startswith("/orgs/"):
            return job.repo.owner == scope[len("/orgs/"):]
        return True

    def _forgejo_jobs(self, request: Request, scope: str = "/admin") -> Response:
        wanted = {x for x in (request.query_params.get("labels") or "").split(",") if x}
        jobs = [self.forgejo_job_json(j) for j in sorted(self.jobs.values(), key=lambda j: j.id)
                if j.status == "waiting" and self._in_scope(j, scope) and (not wanted or wanted <= set(j.labels))]
        return JSONResponse(jobs)

    async def _hooks(self, request: Request, *, system: bool = False) -> Response:
        if request.method == "GET":
            return JSONResponse([self.hook_json(h) for h in self.hooks.values() if h.system == system])
        body = await request.json()
        cfg = body.get("config") or {}
        if self.kind == "github":
            if body.get("name", "web") != "web" or not cfg.get("url"):
                return JSONResponse({"message": "Validation Failed"}, status_code=422)
        elif not body.get("type") or not cfg.get("url") or not cfg.get("content_type"):
            return JSONResponse({"message": "type, config.url and config.content_type are required"},
                                status_code=422)
        h = Hook(next(self._ids), cfg["url"], list(body.get("events") or ["push"]), cfg.get("secret", ""),
                 cfg.get("content_type", "form"), bool(body.get("active", True)), body.get("type", "web"), system)
        self.hooks[h.id] = h
        return JSONResponse(self.hook_json(h), status_code=201)

    async def _patch_hook(self, request: Request, hook_id: int) -> Response:
        h = self.hooks.get(hook_id)
        if h is None:
            return JSONResponse({"message": "not found"}, status_code=404)
        body = await request.json()
        cfg = body.get("config") or {}
        h.url = cfg.get("url", h.url)
        h.secret = cfg.get("secret", h.secret)
        h.content_type = cfg.get("content_type", h.content_type)
        h.events = list(body.get("events") or h.events)
        h.active = bool(body.get("active", h.active))
        return JSONResponse(self.hook_json(h))

    def hook_json(self, h: Hook) -> dict[str, Any]:
        cfg = {"url": h.url, "content_type": h.content_type}
        if self.kind == "github":
            return {"id": h.id, "type": "Repository", "name": "web", "active": h.active, "events": h.events,
                    "config": {**cfg, "insecure_ssl": "0"}}
        return {"id": h.id, "type": h.type, "active": h.active, "events": h.events, "config": cfg,
                "branch_filter": "*", "authorization_header": "", "created_at": _iso(self.clock()),
                "updated_at": _iso(self.clock())}

    # --- the runner RPC (Gitea / Forgejo) -------------------------------------------------

    @staticmethod
    def _connect_error(code: str, message: str, status: int) -> Response:
        return JSONResponse({"code": code, "message": message}, status_code=status)

    async def _rpc(self, request: Request, method: str) -> Response:
        try:
            body = await request.json()
        except ValueError:
            return self._connect_error("invalid_argument", "body is not JSON", 400)
        if method == "Register":
            if not body.get("name") or not body.get("token"):
                return self._connect_error("invalid_argument", "name and token are required", 400)
            if body["token"] not in self.registration_tokens:
                return self._connect_error("permission_denied", "runner registration token not found", 403)
            r = FRunner(next(self._ids), body["name"], str(uuid.uuid4()), secrets.token_hex(20),
                        labels=tuple(body.get("labels") or ()), ephemeral=bool(body.get("ephemeral")),
                        version=str(body.get("version", "")))
            self.runners[r.id] = r
            return JSONResponse({"runner": {"id": str(r.id), "uuid": r.uuid, "token": r.token, "name": r.name,
                                            "version": r.version, "labels": list(r.labels),
                                            "ephemeral": r.ephemeral}})
        ruuid, rtoken = request.headers.get("x-runner-uuid"), request.headers.get("x-runner-token")
        runner = next((r for r in self.runners.values() if r.uuid == ruuid), None)
        if runner is None or not rtoken or not hmac.compare_digest(runner.token, rtoken):
            return self._connect_error("unauthenticated", "unregistered runner", 401)
        if runner.finished:
            return self._connect_error("unauthenticated", "ephemeral runner already used", 401)
        if method == "Declare":
            runner.labels = tuple(body.get("labels") or runner.labels)
            runner.version = str(body.get("version", runner.version))
            runner.online = True
            return JSONResponse({"runner": {"id": str(runner.id), "uuid": runner.uuid, "name": runner.name,
                                            "labels": list(runner.labels), "ephemeral": runner.ephemeral}})
        if method == "FetchTask":
            runner.online = True
            if runner.busy:
                return JSONResponse({"tasksVersion": str(self.tasks_version)})
            job = self._pick_job(runner, body.get("handle"))
            if job is None:
                return JSONResponse({"tasksVersion": str(self.tasks_version)})
            self.set_status(job, "running", runner)
            task = {"id": str(job.id + 1_000_000), "workflowPayload": base64.b64encode(b"jobs: {}").decode(),
                    "context": {"repository": job.repo.full_name, "job": job.name}, "secrets": {},
                    "needs": {}, "vars": {}}
            return JSONResponse({"task": task, "tasksVersion": str(self.tasks_version)})
        if method == "UpdateTask":
            state = body.get("state") or {}
            task_id = int(str(state.get("id", "0")))
            job = self.jobs.get(task_id - 1_000_000)
            if job is None or job.runner_id != runner.id:
                return self._connect_error("not_found", "task not found", 404)
            result = state.get("result")
            if result in ("RESULT_SUCCESS", 1):
                self.set_status(job, "success")
            elif result in ("RESULT_FAILURE", 2):
                self.set_status(job, "failure")
            elif result in ("RESULT_CANCELLED", 3):
                self.set_status(job, "cancelled")
            return JSONResponse({"state": {"id": str(task_id), "result": result or "RESULT_UNSPECIFIED"},
                                 "sentOutputs": []})
        if method == "UpdateLog":
            return JSONResponse({"ackIndex": str(body.get("index", 0))})
        return self._connect_error("unimplemented", f"{method} is not implemented", 404)

    def _pick_job(self, runner: FRunner, handle: str | None) -> FJob | None:
        from scaler.domain.labels import labels_match

        for job in sorted(self.jobs.values(), key=lambda j: j.id):
            if job.status != "waiting":
                continue
            if handle and job.handle != handle:
                continue
            if labels_match(job.labels, runner.labels):
                return job
        return None

    # --- GitHub ------------------------------------------------------------------------

    _GH_SCOPE = re.compile(r"^(/repos/[^/]+/[^/]+|/orgs/[^/]+|/enterprises/[^/]+)(/.*)$")

    def _gh(self, data: Any, status: int = 200, headers: dict[str, str] | None = None,
            request: Request | None = None) -> Response:
        body = json.dumps(data).encode()
        etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        h = {**self._rate_headers(), "etag": etag, **(headers or {})}
        if request is not None and request.headers.get("if-none-match") == etag:
            self.rate_remaining += 1  # a 304 does not count
            h["x-ratelimit-remaining"] = str(self.rate_remaining)
            return Response(status_code=304, headers=h)
        return Response(body, status_code=status, headers=h, media_type="application/json")

    async def _github(self, request: Request, path: str) -> Response:
        method = request.method
        now = self.clock()
        if now >= self.rate_reset:
            self.rate_remaining, self.rate_reset = self.rate_limit, now + self.rate_window
        if path.startswith("/app/installations/") and path.endswith("/access_tokens") and method == "POST":
            return self._app_token(request, path)
        if re.match(r"^/(repos/[^/]+/[^/]+|orgs/[^/]+)/installation$", path):
            if self._check_jwt(request) is None:
                return JSONResponse({"message": "A JSON web token could not be decoded"}, status_code=401)
            return JSONResponse({"id": self.installation_id, "app_id": self.app_id})
        if not self._authorised(request):
            return JSONResponse({"message": "Bad credentials"}, status_code=401)
        if path != "/rate_limit":
            if self.rate_remaining <= 0:
                return JSONResponse({"message": "API rate limit exceeded"}, status_code=403,
                                    headers=self._rate_headers())
            self.rate_remaining -= 1
        if path == "/rate_limit":
            core = {"limit": self.rate_limit, "remaining": self.rate_remaining, "reset": int(self.rate_reset),
                    "used": self.rate_limit - self.rate_remaining}
            return self._gh({"resources": {"core": core, "search": {**core, "limit": 30, "remaining": 30,
                                                                     "used": 0}}, "rate": core})
        m = re.match(r"^/orgs/([^/]+)/repos$", path)
        if m:
            repos = [self.repo_json(r) for r in self.repos.values() if r.owner == m.group(1)]
            return self._page(request, repos, None)
        m = self._GH_SCOPE.match(path)
        if not m:
            return JSONResponse({"message": "Not Found"}, status_code=404)
        scope, rest = m.group(1), m.group(2)
        if rest == "/actions/runners" and method == "GET":
            runners = [self.runner_json(r) for r in sorted(self.runners.values(), key=lambda r: r.id)]
            name = request.query_params.get("name")
            if name:
                runners = [r for r in runners if r["name"] == name]
            return self._page(request, runners, "runners")
        if rest == "/actions/runners/generate-jitconfig" and method == "POST":
            body = await request.json()
            if not body.get("name") or not isinstance(body.get("runner_group_id"), int) or not body.get("labels"):
                return JSONResponse({"message": "Validation Failed"}, status_code=422)
            if self.runner_by_name(body["name"]):
                return JSONResponse({"message": "Already exists - A runner with the same name exists"},
                                    status_code=409)
            r = FRunner(next(self._ids), body["name"], str(uuid.uuid4()), secrets.token_hex(20),
                        labels=("self-hosted", "Linux", "X64", *body["labels"]), ephemeral=True)
            cfg = {"runner_id": r.id, "name": r.name, "token": r.token, "url": self.url,
                   "labels": list(r.labels)}
            r.jit = base64.b64encode(json.dumps(cfg).encode()).decode()
            self.runners[r.id] = r
            return self._gh({"runner": self.runner_json(r), "encoded_jit_config": r.jit}, status=201)
        if rest in ("/actions/runners/registration-token", "/actions/runners/remove-token") and method == "POST":
            tok = secrets.token_hex(20)
            self.registration_tokens.append(tok)
            return self._gh({"token": tok, "expires_at": _iso(now + 3600)}, status=201)
        m2 = re.match(r"^/actions/runners/(\d+)$", rest)
        if m2:
            found = self.runners.get(int(m2.group(1)))
            if found is None:
                return JSONResponse({"message": "Not Found"}, status_code=404)
            if method == "DELETE":
                if found.busy:
                    return JSONResponse({"message": "Bad request - Runner is currently running a job"},
                                        status_code=422)
                del self.runners[found.id]
                return Response(status_code=204, headers=self._rate_headers())
            return self._gh(self.runner_json(found))
        if rest == "/actions/runs" and method == "GET":
            status = request.query_params.get("status")
            runs: dict[int, list[FJob]] = {}
            for j in sorted(self.jobs.values(), key=lambda j: j.id):
                if self._in_scope(j, scope):
                    runs.setdefault(j.run_id, []).append(j)
            items = [self.github_run_json(rid, js) for rid, js in runs.items()]
            if status:
                items = [x for x in items if x["status"] == status]
            return self._page(request, items, "workflow_runs")
        m3 = re.match(r"^/actions/runs/(\d+)/jobs$", rest)
        if m3:
            jobs = [self.github_job_json(j) for j in sorted(self.jobs.values(), key=lambda j: j.id)
                    if j.run_id == int(m3.group(1))]
            return self._page(request, jobs, "jobs")
        m4 = re.match(r"^/actions/jobs/(\d+)$", rest)
        if m4:
            job = self.jobs.get(int(m4.group(1)))
            return self._gh(self.github_job_json(job)) if job else JSONResponse({"message": "Not Found"},
                                                                                 status_code=404)
        if rest == "/hooks":
            return await self._hooks(request)
        m5 = re.match(r"^/hooks/(\d+)$", rest)
        if m5 and method == "PATCH":
            return await self._patch_hook(request, int(m5.group(1)))
        return JSONResponse({"message": "Not Found"}, status_code=404)

    def _page(self, request: Request, items: list[Any], key: str | None) -> Response:
        q = request.query_params
        per, page = min(100, int(q.get("per_page", 30) or 30)), int(q.get("page", 1) or 1)
        chunk = items[(page - 1) * per: page * per]
        headers = {}
        if page * per < len(items):
            headers["link"] = f'<{request.url.include_query_params(page=page + 1)}>; rel="next"'
        data: Any = chunk if key is None else {"total_count": len(items), key: chunk}
        return self._gh(data, headers=headers, request=request)

    def _check_jwt(self, request: Request) -> dict[str, Any] | None:
        if self.app_public_key is None:
            return None
        import jwt

        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer":
            return None
        try:
            claims: dict[str, Any] = jwt.decode(token, self.app_public_key, algorithms=["RS256"],
                                                options={"verify_iat": False, "verify_exp": False})
        except jwt.PyJWTError:
            return None
        now = self.clock()
        if str(claims.get("iss")) != str(self.app_id) or not (claims["iat"] - 60 <= now <= claims["exp"]):
            return None
        if claims["exp"] - claims["iat"] > 660:
            return None
        return claims

    def _app_token(self, request: Request, path: str) -> Response:
        if self._check_jwt(request) is None:
            return JSONResponse({"message": "A JSON web token could not be decoded"}, status_code=401)
        if path != f"/app/installations/{self.installation_id}/access_tokens":
            return JSONResponse({"message": "Not Found"}, status_code=404)
        tok = "ghs_" + secrets.token_hex(18)
        expires = self.clock() + 3600
        self.installation_tokens[tok] = expires
        return JSONResponse({"token": tok, "expires_at": _iso(expires), "permissions": {"administration": "write"},
                             "repository_selection": "all"}, status_code=201)

    async def _gh_runner(self, request: Request, verb: str) -> Response:
        """Stand-in GitHub runner protocol: the JIT config authenticates."""
        jit = request.headers.get("x-jit-config", "")
        runner = next((r for r in self.runners.values() if r.jit and hmac.compare_digest(r.jit, jit)), None)
        if runner is None or runner.finished:
            return JSONResponse({"message": "unauthorised"}, status_code=401)
        if verb == "online":
            runner.online = True
            return JSONResponse({"ok": True})
        if verb == "acquire":
            if runner.busy and runner.job_id is not None:
                return JSONResponse({"job_id": runner.job_id})
            job = self._pick_job(runner, None)
            if job is None:
                return Response(status_code=204)
            self.set_status(job, "running", runner)
            return JSONResponse({"job_id": job.id})
        if verb == "complete":
            job = self.jobs.get(runner.job_id or -1)
            if job is None:
                return JSONResponse({"message": "no job"}, status_code=404)
            body = await request.body()
            self.set_status(job, "failure" if b"failure" in body else "success")
            return JSONResponse({"ok": True})
        return JSONResponse({"message": "not found"}, status_code=404)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="run the fake forge on 127.0.0.1")
    parser.add_argument("--kind", choices=["gitea", "forgejo", "github"], default="gitea")
    parser.add_argument("--version", default=None)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    import uvicorn

    server = FakeForgeServer(args.kind, args.version)
    print(f"fake {args.kind} forge; admin token {server.token}", flush=True)
    uvicorn.run(server.app, host="127.0.0.1", port=args.port, log_level="info")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())


__all__ = ["ADMIN_TOKEN", "DeliveryFaults", "FJob", "FRunner", "FakeForgeServer", "deque"]
