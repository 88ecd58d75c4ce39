"""GitHub (.com and Enterprise Server) adapter.

* Credentials: ``POST {scope}/actions/runners/generate-jitconfig`` → an
  ``encoded_jit_config`` for one ephemeral runner; the instance runs
  ``run.sh --jitconfig`` with it, read from a 0600 file (never the env).
* Auth: a PAT, or a GitHub App (RS256 JWT → installation token, cached and
  refreshed five minutes before it expires). The installation id comes from
  the config, from a delivery's ``installation.id``, or from
  ``GET /repos/{o}/{r}/installation`` / ``/orgs/{org}/installation``.
* Polling: queued and in-progress runs → their jobs with status ``queued``,
  with conditional requests (ETag; a 304 costs no rate limit) and a poll
  interval that stretches as the rate-limit budget shrinks; below a reserve
  the poll is skipped (``None``: webhooks and min_idle only, for that pass).
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

import structlog

from scaler.clock import Clock, SystemClock
from scaler.config import ForgeConfig, PoolConfig
from scaler.domain.job import Job, JobState
from scaler.domain.labels import label_name
from scaler.domain.repository import github_repository_problem
from scaler.errors import (
    ForgeOutcomeUnknown,
    ForgePermanentError,
    ForgeTemporaryError,
    MalformedDelivery,
    PollSkipped,
    RunnerBusyError,
)
from scaler.forges._common import (
    action_state,
    as_id,
    first_header,
    iso_to_epoch,
    load_object,
    obj,
    opt_id,
    opt_int,
    parse_answer,
    parse_each,
    repository,
    str_list,
)
from scaler.forges._http import ForgeHTTP
from scaler.forges._signature import HUB_256, verify_signature
from scaler.forges.base import Delivery, RunnerInfo, RunnerLaunch
from scaler.forges.options import GitHubOptions, typed
from scaler.provider import CredentialFile, Finding
from scaler.secrets import Secret

log = structlog.get_logger("scaler.forges.github")

PER_PAGE = 100
MAX_PAGES = 50
JIT_PATH = "/run/runner-scaler/jitconfig"
DEFAULT_IMAGE = "ghcr.io/actions/actions-runner:latest"
TOKEN_REFRESH_MARGIN = 300.0  # refresh an installation token this long before it expires
JWT_LIFETIME = 540  # seconds (GitHub allows at most 10 minutes)
ETAG_CACHE_SIZE = 1024

_ACTIONS: dict[str, JobState | str] = {
    "queued": JobState.QUEUED,
    "waiting": "job waits for a deployment protection rule; no runner needed yet",
    "requested": "job is requested (not queued yet)",
    "pending": "job is pending (concurrency); no runner needed yet",
    "in_progress": JobState.IN_PROGRESS,
    "completed": JobState.COMPLETED,
}


def github_state(action: str | None, status: str | None, conclusion: str | None) -> JobState | str:
    return action_state(_ACTIONS, action, status, conclusion)


def parse_github_delivery(forge: str, headers: Mapping[str, str], body: bytes) -> tuple[Delivery, int | None]:
    """Parse a GitHub delivery; also returns ``installation.id`` when present."""
    event = first_header(headers, "x-github-event")
    delivery_id = first_header(headers, "x-github-delivery")
    if not event:
        raise MalformedDelivery("no X-GitHub-Event header")
    data = load_object(body)
    installation = data.get("installation")
    inst_id = opt_int(installation.get("id")) if isinstance(installation, Mapping) else None
    if event == "ping":
        return Delivery(delivery_id, event, None, None, ignored="ping"), inst_id
    if event != "workflow_job":
        return Delivery(delivery_id, event, None, None, ignored=f"event {event!r} is not a job event"), inst_id
    action = data.get("action")
    if action is None:
        raise MalformedDelivery("action is missing")
    if not isinstance(action, str):
        raise MalformedDelivery("action must be a string")
    wj = obj(data.get("workflow_job"), "workflow_job")
    as_id(wj.get("id"), "workflow_job.id")
    repo = repository(obj(data.get("repository"), "repository").get("full_name"), "repository.full_name",
                      github_repository_problem)
    status = wj.get("status") if isinstance(wj.get("status"), str) else None
    conclusion = wj.get("conclusion") if isinstance(wj.get("conclusion"), str) else None
    state = github_state(action, status, conclusion)
    if not isinstance(state, JobState):
        return Delivery(delivery_id, event, action, None, ignored=state), inst_id
    return Delivery(delivery_id, event, action, job_from_github(forge, wj, repo, state)), inst_id


def job_from_github(forge: str, wj: Mapping[str, Any], repo: str, state: JobState) -> Job:
    runner_name = wj.get("runner_name")
    return Job(
        forge=forge,
        id=as_id(wj.get("id"), "workflow_job.id"),
        repository=repo,
        labels=str_list(wj.get("labels"), "workflow_job.labels"),
        state=state,
        run_id=opt_id(wj.get("run_id"), "workflow_job.run_id"),
        runner_name=runner_name if isinstance(runner_name, str) and runner_name else None,
        queued_at=iso_to_epoch(wj.get("created_at")),
        started_at=iso_to_epoch(wj.get("started_at")) if state is not JobState.QUEUED else None,
        completed_at=iso_to_epoch(wj.get("completed_at")) if state is JobState.COMPLETED else None,
    )


class AppTokens:
    """GitHub App auth: a JWT signed with the app key → installation tokens."""

    def __init__(
        self,
        app_id: int,
        private_key: Secret,
        installation_id: int | None,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.app_id = app_id
        self._key = private_key
        self.installation_id = installation_id
        self._now = now
        self._token: Secret | None = None
        self._expires_at = 0.0
        self.refreshes = 0
        self._lock = asyncio.Lock()

    def invalidate(self) -> None:
        self._token = None
        self._expires_at = 0.0

    def jwt(self) -> str:
        import jwt  # PyJWT[crypto], the ``github`` extra

        now = int(self._now())
        payload = {"iat": now - 60, "exp": now + JWT_LIFETIME, "iss": str(self.app_id)}
        return str(jwt.encode(payload, self._key.reveal(), algorithm="RS256"))

    def valid(self) -> bool:
        return self._token is not None and self._now() < self._expires_at - TOKEN_REFRESH_MARGIN

    async def token(self, http: ForgeHTTP, discover: Callable[[], str] | None) -> Secret:
        async with self._lock:  # one refresh for many concurrent callers
            if self.valid():
                assert self._token is not None
                return self._token
            return await self._refresh(http, discover)

    async def _refresh(self, http: ForgeHTTP, discover: Callable[[], str] | None) -> Secret:
        bearer = {"authorization": f"Bearer {self.jwt()}"}
        if self.installation_id is None:
            if discover is None:
                raise ForgePermanentError("GitHub App installation id unknown; set github_app.installation_id")
            resp = await http.request("GET", discover(), endpoint="get_installation", headers=bearer, auth=False)
            self.installation_id = as_id(resp.json().get("id"), "installation.id")
        resp = await http.request(
            "POST",
            f"/app/installations/{self.installation_id}/access_tokens",
            endpoint="installation_token",
            headers=bearer,
            auth=False,
            ok=(201, 200),
        )
        data = resp.json()
        token = data.get("token")
        if not isinstance(token, str):
            raise ForgePermanentError("GitHub App token answer has no token")
        self._token = Secret(token)
        self._expires_at = iso_to_epoch(data.get("expires_at")) or (self._now() + 3600)
        self.refreshes += 1
        return self._token


class GitHubForge:
    kind = "github"
    drops_used_runners = True  # a JIT runner is ephemeral; GitHub removes it after its job

    def __init__(
        self,
        config: ForgeConfig,
        *,
        clock: Clock | None = None,
    ) -> None:
        self.name = config.name
        self.config = config
        self.clock = clock or SystemClock()
        self._secrets = config.webhook_secrets()
        scope = config.scope
        if scope.kind == "repository" and scope.name:
            self.scope_path = f"/repos/{scope.name}"
        elif scope.kind == "organization":
            self.scope_path = f"/orgs/{scope.name}"
        elif scope.kind == "enterprise":
            self.scope_path = f"/enterprises/{scope.name}"
        else:
            raise ValueError(f"forge {config.name}: GitHub has no {scope.kind} scope for runners")
        self._pat = config.token()
        self.app: AppTokens | None = None
        if config.github_app is not None:
            with open(config.github_app.private_key_file, encoding="utf-8") as fh:
                key = Secret(fh.read())
            self.app = AppTokens(config.github_app.app_id, key, config.github_app.installation_id, now=self.clock.now)
        self.http = ForgeHTTP(
            forge=config.name,
            base_url=config.url,
            timeout=config.request_timeout,
            auth=self._auth_headers,
            headers={
                "accept": "application/vnd.github+json",
                "x-github-api-version": "2022-11-28",
                "user-agent": "runner-scaler",
            },
            sleep=self.clock.sleep,
            now=self.clock.now,
            on_unauthorized=self.app.invalidate if self.app is not None else None,
            concurrency=config.concurrency,
        )
        self._etags: OrderedDict[str, tuple[str, Any]] = OrderedDict()
        self._last_poll: float | None = None
        self._last_poll_cost = 1
        self.options = typed(config.options, GitHubOptions)
        self.reserve = self.options.rate_limit_reserve
        self._group_ids: dict[str, int] = {}
        self.enterprise_version: str | None = None

    # --- auth -----------------------------------------------------------------

    def _installation_url(self) -> str:
        if self.config.scope.kind == "repository":
            return f"{self.scope_path}/installation"
        if self.config.scope.kind == "organization":
            return f"/orgs/{self.config.scope.name}/installation"
        raise ForgePermanentError("set github_app.installation_id for an enterprise scope")

    async def _auth_headers(self) -> Mapping[str, str]:
        if self.app is not None:
            token = await self.app.token(self.http, self._installation_url)
            return {"authorization": f"Bearer {token.reveal()}"}
        if self._pat is not None:
            return {"authorization": f"Bearer {self._pat.reveal()}"}
        return {}

    # --- webhooks ---------------------------------------------------------------

    def verify(self, headers: Mapping[str, str], body: bytes) -> None:
        verify_signature(headers, body, self._secrets, accepted=(HUB_256,))

    def parse(self, headers: Mapping[str, str], body: bytes) -> Delivery:
        delivery, inst = parse_github_delivery(self.name, headers, body)
        if inst is not None and self.app is not None and self.app.installation_id is None:
            self.app.installation_id = inst  # the installation found from the delivery
        return delivery

    # --- conditional GETs ----------------------------------------------------------

    async def _get_json(self, url: str, endpoint: str, params: Mapping[str, Any]) -> Any:
        key = url + "?" + "&".join(f"{k}={v}" for k, v in sorted(params.items()))
        cached = self._etags.get(key)
        headers = {"if-none-match": cached[0]} if cached else {}
        resp = await self.http.request("GET", url, endpoint=endpoint, params=params, headers=headers, ok=(200, 304))
        self._cost += 1
        if resp.status_code == 304 and cached is not None:
            self._etags.move_to_end(key)
            self._cost_free += 1
            return cached[1]
        data = resp.json()
        etag = resp.headers.get("etag")
        if etag:
            self._etags[key] = (etag, data)
            self._etags.move_to_end(key)
            while len(self._etags) > ETAG_CACHE_SIZE:
                self._etags.popitem(last=False)
        return data

    _cost = 0
    _cost_free = 0

    # --- polling budget ---------------------------------------------------------------

    def poll_delay(self) -> float:
        """Seconds between polls for the current rate-limit budget.

        The configured ``poll_interval`` while the budget is ample; stretched so
        that one poll's cost, spread over what is left until the window resets,
        uses at most half of the remaining budget (the rest is for mints and
        deregistrations)."""
        base = self.config.poll_interval
        rate = self.http.rate
        if rate.remaining is None or rate.reset is None:
            return base
        window = max(1.0, rate.reset - self.clock.now())
        usable = max(0, rate.remaining - self.reserve) / 2
        if usable <= 0:
            return max(base, window)
        polls = usable / max(1, self._last_poll_cost)
        return max(base, window / polls)

    def _budget_allows(self) -> bool:
        rate = self.http.rate
        if rate.remaining is None:
            return True
        if rate.reset is not None and self.clock.now() >= rate.reset:
            return True  # the window has reset
        return rate.remaining - self._last_poll_cost > self.reserve

    async def list_queued_jobs(self) -> list[Job] | None:
        """Queued jobs; ``None`` for an enterprise scope without ``poll_repositories``
        (it cannot list); raises PollSkipped when the rate budget says wait."""
        if self.config.scope.kind == "enterprise" and not self.options.poll_repositories:
            return None
        now = self.clock.now()
        # 5 % slack so a resync timer of the same period is not skipped for jitter
        if self._last_poll is not None and now - self._last_poll < 0.95 * self.poll_delay():
            raise PollSkipped(f"{self.name}: next queued-job poll not due yet (rate-limit budget)")
        if not self._budget_allows():
            log.warning(
                "rate-limit budget low; skipping the queued-job poll",
                forge=self.name,
                remaining=self.http.rate.remaining,
            )
            raise PollSkipped(f"{self.name}: rate-limit budget low; queued-job poll skipped")
        self._last_poll = now
        self._cost = 0
        jobs: list[Job] = []
        for repo in await self._poll_repositories():
            seen_runs: set[int] = set()
            for status in ("queued", "in_progress"):
                runs = await self._paged(
                    f"/repos/{repo}/actions/runs", "list_runs", "workflow_runs", {"status": status}
                )
                for run in runs:
                    run_id = opt_int(run.get("id")) if isinstance(run, Mapping) else None
                    if run_id is None or run_id in seen_runs:
                        continue
                    seen_runs.add(run_id)
                    jobs += self._queued_of(
                        repo,
                        await self._paged(
                            f"/repos/{repo}/actions/runs/{run_id}/jobs", "list_run_jobs", "jobs", {"filter": "latest"}
                        ),
                    )
        self._last_poll_cost = max(1, self._cost)
        return jobs

    def _queued_of(self, repo: str, listed: list[Any]) -> list[Job]:
        queued = [wj for wj in listed if isinstance(wj, Mapping) and wj.get("status") == "queued"]
        return parse_each(queued, lambda wj: job_from_github(self.name, wj, repo, JobState.QUEUED), log, self.name,
                          "queued job")

    async def _poll_repositories(self) -> list[str]:
        configured = self.options.poll_repositories
        if configured:
            return list(configured)
        if self.config.scope.kind == "repository":
            return [str(self.config.scope.name)]
        repos = await self._paged(f"/orgs/{self.config.scope.name}/repos", "list_repos", None, {"type": "all"})
        names = []
        for r in repos:
            name = r.get("full_name") if isinstance(r, Mapping) else None
            if r.get("archived") if isinstance(r, Mapping) else True:
                continue
            if github_repository_problem(name) is not None:  # never put a bad name into a URL path
                log.warning("repository skipped", forge=self.name, repository=str(name)[:80])
                continue
            names.append(str(name))
        return names

    async def _paged(self, url: str, endpoint: str, key: str | None, params: Mapping[str, Any]) -> list[Any]:
        items: list[Any] = []
        for page in range(1, MAX_PAGES + 1):
            data = await self._get_json(url, endpoint, {**params, "per_page": PER_PAGE, "page": page})
            if key is None:
                batch = data if isinstance(data, list) else []
                total = None
            else:
                found = data.get(key) if isinstance(data, Mapping) else None
                batch = found if isinstance(found, list) else []
                total = data.get("total_count") if isinstance(data, Mapping) else None
            items.extend(batch)
            if not batch or len(batch) < PER_PAGE or (isinstance(total, int) and len(items) >= total):
                break
        return items

    # --- runners -------------------------------------------------------------------

    @staticmethod
    def _runner_info(r: object) -> RunnerInfo:
        if not isinstance(r, Mapping):
            raise MalformedDelivery("runner must be a JSON object")
        labels = r.get("labels")
        name = r.get("name")
        return RunnerInfo(
            id=as_id(r.get("id"), "runner.id"),
            name=name if isinstance(name, str) else "",
            online=str(r.get("status", "")).lower() == "online",
            busy=r.get("busy") is True,
            labels=tuple(
                str(x.get("name", "")) for x in (labels if isinstance(labels, list) else []) if isinstance(x, Mapping)
            ),
            ephemeral=r.get("ephemeral") is True,
        )

    async def list_runners(self) -> list[RunnerInfo]:
        items: list[Any] = []
        for page in range(1, MAX_PAGES + 1):
            resp = await self.http.request(
                "GET",
                f"{self.scope_path}/actions/runners",
                endpoint="list_runners",
                params={"per_page": PER_PAGE, "page": page},
            )
            data = resp.json()
            found = data.get("runners") if isinstance(data, Mapping) else None
            batch = found if isinstance(found, list) else []
            items.extend(batch)
            total = data.get("total_count") if isinstance(data, Mapping) else None
            if len(batch) < PER_PAGE or not isinstance(total, int) or len(items) >= total:
                break
        return parse_each(items, self._runner_info, log, self.name, "runner listing entry")

    async def get_runner(self, runner_id: int) -> RunnerInfo | None:
        resp = await self.http.request(
            "GET", f"{self.scope_path}/actions/runners/{runner_id}", endpoint="get_runner", ok=(200, 404)
        )
        if resp.status_code == 404:
            return None
        return parse_answer(self._runner_info, resp.json(), self.name, f"GET runner {runner_id}")

    async def deregister(self, runner_id: int) -> None:
        resp = await self.http.request(
            "DELETE", f"{self.scope_path}/actions/runners/{runner_id}", endpoint="deregister", ok=(204, 200, 404, 422)
        )
        if resp.status_code == 422:  # "runner is currently running a job"
            raise RunnerBusyError(f"{self.name}: runner {runner_id} is busy")

    async def delete_runner(self, runner_id: int) -> None:
        # GitHub refuses a busy runner's deletion itself (422): nothing to ask first.
        await self.deregister(runner_id)

    # --- credentials -----------------------------------------------------------------

    async def _runner_group_id(self, pool: PoolConfig) -> int:
        group = pool.runner_group or self.options.runner_group
        if group is None:
            return self.options.runner_group_id
        text = str(group)
        if text.isdigit():
            return int(text)
        if text in self._group_ids:
            return self._group_ids[text]
        if self.config.scope.kind == "repository":
            raise ForgePermanentError(f"{self.name}: runner groups by name need an organization scope")
        resp = await self.http.request(
            "GET", f"{self.scope_path}/actions/runner-groups", endpoint="list_runner_groups", params={"per_page": 100}
        )
        for g in resp.json().get("runner_groups") or []:
            if g.get("name") == text:
                self._group_ids[text] = int(g["id"])
                return self._group_ids[text]
        raise ForgePermanentError(f"{self.name}: no runner group named {text!r}")

    async def mint(self, pool: PoolConfig, runner_name: str, job: Job | None) -> RunnerLaunch:
        labels = sorted({label_name(x) for x in pool.labels})
        body = {
            "name": runner_name,
            "runner_group_id": await self._runner_group_id(pool),
            "labels": labels,
            "work_folder": "_work",
        }
        resp = await self.http.request(
            "POST",
            f"{self.scope_path}/actions/runners/generate-jitconfig",
            endpoint="generate_jitconfig",
            json=body,
            ok=(201, 409),
        )
        if resp.status_code == 409:
            # A runner of this name exists: most likely a mint whose answer was
            # lost. The retry looks it up by name and removes it first.
            raise ForgeOutcomeUnknown(f"{self.name}: a runner named {runner_name} already exists")
        data = resp.json()
        jit = data.get("encoded_jit_config")
        runner = data.get("runner") or {}
        if not isinstance(jit, str) or not jit:
            raise ForgePermanentError(f"{self.name}: generate-jitconfig answer has no encoded_jit_config")
        runner_id = opt_int(runner.get("id"))
        log.info("jit runner minted", forge=self.name, runner=runner_name, runner_id=runner_id)
        override = self.options.runner_command
        command: tuple[str, ...]
        if override:
            command = tuple(override)
        else:
            command = ("sh", "-c", f'exec /home/runner/run.sh --jitconfig "$(cat {JIT_PATH})"')
        return RunnerLaunch(
            runner_id=runner_id,
            runner_name=runner_name,
            image=pool.image or self.options.runner_image or DEFAULT_IMAGE,
            command=command,
            env={},
            files=(CredentialFile(JIT_PATH, Secret(jit), 0o600),),
        )

    # --- check ----------------------------------------------------------------------

    async def check(self) -> list[Finding]:
        subject = f"forge {self.name}"
        out: list[Finding] = []
        try:
            resp = await self.http.request("GET", "/rate_limit", endpoint="rate_limit")
        except (ForgeTemporaryError, ForgePermanentError) as exc:
            return [Finding("error", subject, f"cannot reach the API or the credential is refused: {exc}")]
        ghes = resp.headers.get("x-github-enterprise-version")
        self.enterprise_version = ghes
        out.append(Finding("ok", subject, f"GitHub Enterprise Server {ghes}" if ghes else "GitHub (api.github.com)"))
        core = (resp.json().get("resources") or {}).get("core") or {}
        out.append(Finding("ok", subject, f"rate limit: {core.get('remaining')} of {core.get('limit')} left"))
        out.append(Finding("ok", subject, "auth: GitHub App" if self.app else "auth: token"))
        out.append(Finding("ok", subject, f"scope {self.config.scope.kind} {self.config.scope.name}"))
        try:
            await self.list_runners()
            out.append(Finding("ok", subject, "runner listing: available"))
            out.append(Finding("ok", subject, "ephemeral credentials: available (generate-jitconfig)"))
        except (ForgeTemporaryError, ForgePermanentError) as exc:
            out.append(Finding("error", subject, f"runner listing failed (needs admin on the scope): {exc}"))
        if self.config.scope.kind == "enterprise" and not self.options.poll_repositories:
            out.append(
                Finding(
                    "warning",
                    subject,
                    "job listing: missing for an enterprise scope without "
                    "options.poll_repositories; lost webhooks are only covered by min_idle",
                )
            )
        else:
            out.append(Finding("ok", subject, "job listing: available (queued runs → jobs, ETag, rate-limit aware)"))
        from scaler.forges.webhooks_admin import list_hooks

        try:
            hooks = await list_hooks(self, None)
            if any(h.get("job_events") for h in hooks):
                out.append(Finding("ok", subject, "webhooks: a hook with workflow_job exists"))
            else:
                out.append(
                    Finding(
                        "warning",
                        subject,
                        "webhooks: none with workflow_job; run "
                        "`runner-scaler webhook install` (an App's own webhook is not listed here; the hooks "
                        "answer's shape is not in the API description this was built from: unconfirmed)",
                    )
                )
        except (ForgeTemporaryError, ForgePermanentError) as exc:
            out.append(Finding("warning", subject, f"webhooks: cannot list ({exc})"))
        return out

    async def aclose(self) -> None:
        await self.http.aclose()


__all__ = ["AppTokens", "GitHubForge", "job_from_github", "parse_github_delivery"]
