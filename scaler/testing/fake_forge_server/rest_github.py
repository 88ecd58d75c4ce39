"""The GitHub REST API (the parts the adapter uses), from GitHub's OpenAPI
description (``tests/forges/shapes/github.json``): runners (list by name,
get, delete — 422 while busy), ``generate-jitconfig`` (409 for a taken
name), registration and remove tokens, runs → jobs with ETags (a 304 costs no
rate limit), ``/rate_limit``, GitHub App installation tokens (RS256 JWT), and
hooks (not in the reference subset: unconfirmed)."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from scaler.testing import fake_history
from scaler.testing.fake_forge_server._base import iso
from scaler.testing.fake_forge_server.rest_gitea import GiteaRest

_GH_SCOPE = re.compile(r"^(/repos/[^/]+/[^/]+|/orgs/[^/]+|/enterprises/[^/]+)(/.*)$")


def _not_found() -> JSONResponse:
    return JSONResponse({"message": "Not Found"}, status_code=404)


class GitHubRest(GiteaRest):
    app_public_key: str | None
    installation_tokens: dict[str, float]
    rate_limit: int
    rate_remaining: int
    rate_window: float
    rate_reset: float

    def _rate_headers(self) -> dict[str, str]:
        return {"x-ratelimit-limit": str(self.rate_limit), "x-ratelimit-remaining": str(self.rate_remaining),
                "x-ratelimit-reset": str(int(self.rate_reset)),
                "x-ratelimit-used": str(self.rate_limit - self.rate_remaining), "x-ratelimit-resource": "core"}

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

    def _gh_page(self, request: Request, items: list[Any], key: str | None,
                 render: Callable[[Any], Any] | None = None) -> Response:
        """One page of ``items``; ``render`` turns each item of the page (only) into its shape."""
        q = request.query_params
        per, page = min(100, int(q.get("per_page", 30) or 30)), int(q.get("page", 1) or 1)
        chunk = items[(page - 1) * per: page * per]
        if render is not None:
            chunk = [render(x) for x in chunk]
        headers = {}
        if page * per < len(items):
            headers["link"] = f'<{request.url.include_query_params(page=page + 1)}>; rel="next"'
        data: Any = chunk if key is None else {"total_count": len(items), key: chunk}
        return self._gh(data, headers=headers, request=request)

    async def _github(self, request: Request, path: str) -> Response:
        now = self.clock()
        if now >= self.rate_reset:
            self.rate_remaining, self.rate_reset = self.rate_limit, now + self.rate_window
        if path.startswith("/app/installations/") and path.endswith("/access_tokens") and request.method == "POST":
            return self._app_token(request, path)
        if re.match(r"^/(repos/[^/]+/[^/]+|orgs/[^/]+)/installation$", path):
            if self._check_jwt(request) is None:
                return JSONResponse({"message": "A JSON web token could not be decoded"}, status_code=401)
            return JSONResponse({"id": self.installation_id, "app_id": self.app_id})
        if not self._authorised(request):
            return JSONResponse({"message": "Bad credentials"}, status_code=401)
        if path == "/rate_limit":
            core = {"limit": self.rate_limit, "remaining": self.rate_remaining, "reset": int(self.rate_reset),
                    "used": self.rate_limit - self.rate_remaining}
            search = {**core, "limit": 30, "remaining": 30, "used": 0}
            return self._gh({"resources": {"core": core, "search": search}, "rate": core})
        if self.rate_remaining <= 0:
            return JSONResponse({"message": "API rate limit exceeded"}, status_code=403,
                                headers=self._rate_headers())
        self.rate_remaining -= 1
        m = re.match(r"^/orgs/([^/]+)/repos$", path)
        if m:
            repos = [self.github_repo(r, minimal=True) for r in self.repos.values() if r.owner == m.group(1)]
            return self._gh_page(request, repos, None)
        m = _GH_SCOPE.match(path)
        if not m:
            return _not_found()
        return await self._github_scoped(request, m.group(1), m.group(2))

    async def _github_scoped(self, request: Request, scope: str, rest: str) -> Response:
        method = request.method
        if rest == "/actions/runners" and method == "GET":
            name = request.query_params.get("name")
            runners = self.runners_named(name) if name else list(self.runners.values())
            return self._gh_page(request, runners, "runners", self.github_runner)
        if rest == "/actions/runners/generate-jitconfig" and method == "POST":
            return await self._jitconfig(request)
        if rest in ("/actions/runners/registration-token", "/actions/runners/remove-token") and method == "POST":
            token = secrets.token_hex(20)  # a new one each time, valid for an hour
            self.scope_tokens[f"{scope}{rest}#{self.next_id()}"] = token
            return self._gh({"token": token, "expires_at": iso(self.clock() + 3600)}, status=201)
        m = re.match(r"^/actions/runners/(\d+)$", rest)
        if m:
            return self._github_runner_item(request, int(m.group(1)))
        if rest == "/actions/runs" and method == "GET":
            return self._runs(request, scope)
        m = re.match(r"^/actions/runs/(\d+)/jobs$", rest)
        if m:
            return self._gh_page(request, self.jobs_of_run(int(m.group(1))), "jobs", self.github_job)
        m = re.match(r"^/actions/jobs/(\d+)$", rest)
        if m:
            job = self.jobs.get(int(m.group(1)))
            return self._gh(self.github_job(job)) if job else _not_found()
        if rest == "/hooks":
            return await self._hooks(request)
        m = re.match(r"^/hooks/(\d+)$", rest)
        if m and method == "PATCH":
            return await self._patch_hook(request, int(m.group(1)))
        return _not_found()

    async def _jitconfig(self, request: Request) -> Response:
        body = await request.json()
        if not body.get("name") or not isinstance(body.get("runner_group_id"), int) or not body.get("labels"):
            return JSONResponse({"message": "Validation Failed"}, status_code=422)
        if self.runner_by_name(body["name"]):
            return JSONResponse({"message": "Already exists - A runner with the same name exists"}, status_code=409)
        r = self.new_runner(body["name"], labels=("self-hosted", "Linux", "X64", *body["labels"]), ephemeral=True)
        cfg = {"runner_id": r.id, "name": r.name, "token": r.token, "url": self.url, "labels": list(r.labels)}
        self.set_jit(r, base64.b64encode(json.dumps(cfg).encode()).decode())
        assert r.jit is not None
        return self._gh({"runner": self.github_runner(r), "encoded_jit_config": r.jit}, status=201)

    def _github_runner_item(self, request: Request, runner_id: int) -> Response:
        found = self.runners.get(runner_id)
        if found is None:
            return _not_found()
        if request.method == "DELETE":
            if found.busy:
                return JSONResponse({"message": "Bad request - Runner is currently running a job"}, status_code=422)
            self.drop_runner(found)
            return Response(status_code=204, headers=self._rate_headers())
        return self._gh(self.github_runner(found))

    def _runs(self, request: Request, scope: str) -> Response:
        status = request.query_params.get("status")
        # A run is queued, waiting or in progress only while one of its jobs is
        # not done: those filters need not look at finished jobs.
        open_only = status in ("queued", "waiting", "in_progress")
        source = self.jobs_with_status("blocked", "waiting", "running") if open_only else list(self.jobs.values())
        run_ids = dict.fromkeys(j.run_id for j in self.jobs_in_scope(source, scope))  # by their first job's id
        runs = [(rid, [j for j in self.jobs_of_run(rid) if self.in_scope(j, scope)]) for rid in run_ids]
        if open_only:
            runs = sorted(runs, key=lambda r: r[1][0].id)
        if status:
            runs = [r for r in runs if self.github_run_status(r[1]) == status]
        if request.query_params.get("created"):  # history listings (trace export): filter the rendered runs
            filtered = fake_history.github_runs(request, [self.github_run(*r) for r in runs])
            if isinstance(filtered, Response):
                return filtered
            return self._gh_page(request, filtered, "workflow_runs")
        return self._gh_page(request, runs, "workflow_runs", lambda r: self.github_run(*r))

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
            return _not_found()
        tok = "ghs_" + secrets.token_hex(18)
        expires = self.clock() + 3600
        self.installation_tokens[tok] = expires
        return JSONResponse({"token": tok, "expires_at": iso(expires), "permissions": {"administration": "write"},
                             "repository_selection": "all"}, status_code=201)

    def _authorised(self, request: Request) -> bool:
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() not in ("bearer", "token"):
            return False
        if value == self.token:
            return True
        return self.kind == "github" and self.installation_tokens.get(value, 0.0) > self.clock()


__all__ = ["GitHubRest"]
