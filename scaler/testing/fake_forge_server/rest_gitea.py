"""The Gitea and Forgejo REST API under ``/api/v1`` (the parts the adapters
use), per version:

* runners list/get/delete at every scope (Gitea wraps the list as
  ``{runners, total_count}``; Forgejo answers a bare array with
  ``X-Total-Count`` and ``Link``); ``registration-token`` (Gitea GET and POST
  until 1.26, POST only from 1.27; Forgejo GET), the scope's reusable token;
* Gitea ``GET …/actions/jobs?status=`` from 1.25 (``shared/action.go``);
* Forgejo ``POST …/actions/runners`` (15+) and ``GET …/actions/runners/jobs``
  (the waiting and running jobs, ``null`` when none; ``?labels=`` keeps the
  jobs whose ``runs_on`` are all among them);
* ``/repositories/{id}``, ``/version``, hooks (repository, organisation, user,
  system).
"""

from __future__ import annotations

import json
import re
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from scaler.testing import fake_history
from scaler.testing.fake_forge_server._base import Hook
from scaler.testing.fake_forge_server.world import WorldMixin

_SCOPE = re.compile(r"^(/repos/[^/]+/[^/]+|/orgs/[^/]+|/user|/admin)(/.*)$")
_RUNNER = re.compile(r"^/actions/runners/(\d+)$")
_HOOK = re.compile(r"^/hooks/(\d+)$")
# shared/action.go convertToInternal: the ?status= values and what they select
_GITEA_STATUS = {"pending": {"blocked"}, "waiting": {"blocked"}, "requested": {"blocked"},
                 "action_required": {"blocked"}, "queued": {"waiting"}, "in_progress": {"running"},
                 "completed": {"success", "failure", "skipped", "cancelled"}, "failure": {"failure"},
                 "success": {"success"}, "skipped": {"skipped"}, "neutral": {"skipped"},
                 "cancelled": {"cancelled"}, "timed_out": {"cancelled"}}


def _error(message: str, status: int) -> JSONResponse:
    return JSONResponse({"message": message, "url": ""}, status_code=status)


class GiteaRest(WorldMixin):
    async def _gitea_rest(self, request: Request, path: str) -> Response:
        if path == "/version":
            return JSONResponse({"version": self.version})
        m = re.match(r"^/repositories/(\d+)$", path)
        if m:
            repo = next((r for r in self.repos.values() if r.id == int(m.group(1))), None)
            return JSONResponse(self.gitea_repo(repo)) if repo else _error("repository not found", 404)
        if self.kind == "forgejo" and path == "/admin/runners/jobs":
            return self._forgejo_jobs(request, "/admin")
        if self.kind == "forgejo" and (history := fake_history.forgejo(self, request, path)) is not None:
            return history
        m = _SCOPE.match(path)
        if not m:
            return _error("not found", 404)
        scope, rest = m.group(1), m.group(2)
        if rest == "/actions/runners":
            return await self._runners(request, scope)
        if rest == "/actions/runners/registration-token":
            return self._registration_token(request, scope)
        m2 = _RUNNER.match(rest)
        if m2:
            return self._runner(request, int(m2.group(1)))
        if rest == "/actions/jobs" and self.kind == "gitea" and request.method == "GET":
            return self._gitea_jobs(request, scope)
        if rest == "/actions/runners/jobs" and self.kind == "forgejo" and request.method == "GET":
            return self._forgejo_jobs(request, scope)
        if rest == "/hooks":
            return await self._hooks(request, system=scope == "/admin")
        m3 = _HOOK.match(rest)
        if m3 and request.method == "PATCH":
            return await self._patch_hook(request, int(m3.group(1)))
        return _error("not found", 404)

    def _page(self, request: Request) -> tuple[int, int]:
        q = request.query_params
        return max(1, int(q.get("page", 1) or 1)), max(1, min(50, int(q.get("limit", 30) or 30)))

    async def _runners(self, request: Request, scope: str) -> Response:
        if request.method == "POST":
            return await self._create_runner(request)
        page, limit = self._page(request)
        runners = list(self.runners.values())  # ids only grow: insertion order is id order
        chunk = runners[(page - 1) * limit: page * limit]
        if self.kind == "gitea":
            return JSONResponse({"runners": [self.gitea_runner(r) for r in chunk], "total_count": len(runners)})
        headers = {"x-total-count": str(len(runners))}
        if page * limit < len(runners):
            headers["link"] = f'<{request.url.include_query_params(page=page + 1)}>; rel="next"'
        return JSONResponse([self.forgejo_runner(r) for r in chunk], headers=headers)

    async def _create_runner(self, request: Request) -> Response:
        """Forgejo ≥ 15 ``RegisterRunner``: 201 ``{id, uuid, token}``."""
        if self.kind != "forgejo" or not self.at_least(15):
            return _error("method not allowed", 405)
        try:
            body = await request.json()
        except json.JSONDecodeError:
            return _error("invalid JSON", 422)
        if not isinstance(body, dict) or not isinstance(body.get("name"), str) or not body["name"]:
            return JSONResponse([{"fieldNames": ["Name"], "classification": "RequiredError",
                                  "message": "Required"}], status_code=422)
        r = self.new_runner(body["name"], ephemeral=body.get("ephemeral") is True,
                            description=str(body.get("description") or ""))
        return JSONResponse({"id": r.id, "uuid": r.uuid, "token": r.token}, status_code=201)

    def _registration_token(self, request: Request, scope: str) -> Response:
        allowed = {"GET"} if self.kind == "forgejo" else ({"POST"} if self.at_least(1, 27) else {"GET", "POST"})
        if request.method not in allowed:
            return _error("method not allowed", 405)
        return JSONResponse({"token": self.registration_token(scope)})

    def _runner(self, request: Request, runner_id: int) -> Response:
        found = self.runners.get(runner_id)
        if found is None:
            return _error("runner not found", 404)
        if request.method == "DELETE":
            self.drop_runner(found)
            return Response(status_code=204)
        render = self.gitea_runner if self.kind == "gitea" else self.forgejo_runner
        return JSONResponse(render(found))

    def _gitea_jobs(self, request: Request, scope: str) -> Response:
        if not self.lists_jobs:
            return _error("not found", 404)
        wanted: set[str] = set()
        for status in request.query_params.getlist("status"):
            if status not in _GITEA_STATUS:
                return _error(f"Invalid status {status}", 400)
            wanted |= _GITEA_STATUS[status]
        page, limit = self._page(request)
        jobs = self.jobs_in_scope(self.jobs_with_status(*wanted) if wanted else list(self.jobs.values()), scope)
        chunk = jobs[(page - 1) * limit: page * limit]
        return JSONResponse({"jobs": [self.gitea_job(j) for j in chunk], "total_count": len(jobs)})

    def _forgejo_jobs(self, request: Request, scope: str) -> Response:
        raw = request.query_params.get("labels")
        wanted = raw.split(",") if raw is not None else []
        jobs = []
        for j in self.jobs_in_scope(self.jobs_with_status("waiting", "running"), scope):
            if not wanted or (wanted[0] == "" and not j.labels) or (j.labels and set(j.labels) <= set(wanted)):
                jobs.append(self.forgejo_job(j))
        return JSONResponse(jobs or None)  # a nil Go slice

    async def _hooks(self, request: Request, *, system: bool = False) -> Response:
        if request.method == "GET":
            return JSONResponse([self.hook_json(h) for h in self.hooks.values() if h.system == system])
        body = await request.json()
        cfg = body.get("config") or {}
        if self.kind == "github":
            if body.get("name", "web") != "web" or not cfg.get("url"):
                return JSONResponse({"message": "Validation Failed"}, status_code=422)
        elif not body.get("type") or not cfg.get("url") or not cfg.get("content_type"):
            return _error("type, config.url and config.content_type are required", 422)
        h = Hook(self.next_id(), cfg["url"], list(body.get("events") or ["push"]), cfg.get("secret", ""),
                 cfg.get("content_type", "form"), bool(body.get("active", True)), body.get("type", "web"), system,
                 created_at=self.clock())
        self.hooks[h.id] = h
        return JSONResponse(self.hook_json(h), status_code=201)

    async def _patch_hook(self, request: Request, hook_id: int) -> Response:
        h = self.hooks.get(hook_id)
        if h is None:
            return _error("not found", 404)
        body = await request.json()
        cfg = body.get("config") or {}
        h.url = cfg.get("url", h.url)
        h.secret = cfg.get("secret", h.secret)
        h.content_type = cfg.get("content_type", h.content_type)
        h.events = list(body.get("events") or h.events)
        h.active = bool(body.get("active", h.active))
        return JSONResponse(self.hook_json(h))

    def hook_json(self, h: Hook) -> dict[str, Any]:
        if self.kind == "github":  # not in the reference subset: unconfirmed
            return {"id": h.id, "type": "Repository", "name": "web", "active": h.active, "events": h.events,
                    "config": {"url": h.url, "content_type": h.content_type, "insecure_ssl": "0"}}
        return self.gitea_hook(h)


__all__ = ["GiteaRest"]
