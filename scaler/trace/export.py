"""A job trace from a forge's own job history (``runner-scaler trace export``;
also what warm pools learn from at start-up, :mod:`scaler.warm.history`).

Per forge, with the adapter's HTTP client (auth, retries, rate-limit headers):

* **GitHub**: ``GET /repos/{o}/{r}/actions/runs?created=A..B`` in windows of
  at most a day (GitHub answers at most 1,000 runs per query: a fuller window
  is halved), then ``…/runs/{id}/jobs?filter=all``. Job fields used:
  ``created_at`` (else the run's), ``started_at``, ``completed_at``,
  ``labels``, ``conclusion``, ``name``. Organisation scope: every repository
  of ``GET /orgs/{org}/repos``; an enterprise scope needs ``--repository``.
* **Gitea ≥ 1.25**: ``GET {scope}/actions/jobs`` (repository, organisation,
  user or admin scope), which carries ``created_at``, ``started_at``,
  ``completed_at`` and ``labels``. It has no time filter: pages are walked
  from the newest end until jobs are older than ``since``. Gitea 1.24 and
  older have no job listing at all: nothing can be exported.
* **Forgejo** (the 16.0.1 API): its job objects carry no times and no scope
  above the repository lists them, so per repository: ``…/actions/runs``
  (``created``: the arrival), ``…/runs/{id}/jobs`` (``runs_on``, ``task_id``,
  ``status``) and ``…/actions/tasks`` (a task is a job's attempt on a runner:
  its ``created_at`` is when a runner took it, its ``updated_at`` after the
  task finished is its end). Organisation or instance scope needs
  ``--repository``.

A rate-limited answer (429, or 403 with the budget spent) is waited out
(``Retry-After`` or the window's reset, at most :data:`MAX_RATE_WAIT`), and
below :data:`RESERVE` requests left the export waits for the reset instead of
spending the budget the running scaler needs.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar

from scaler.errors import ForgePermanentError, ForgeTemporaryError, PermanentError
from scaler.forges._common import iso_to_epoch, opt_int
from scaler.forges.base import ForgeAdapter
from scaler.trace.format import TraceJob
from scaler.trace.progress import Progress

T = TypeVar("T")
PER_PAGE = 100  # GitHub's maximum
GITEA_PAGE = 50  # Gitea's default MAX_RESPONSE_ITEMS
GITHUB_WINDOW_CAP = 1000  # runs GitHub returns for one filtered query
MAX_PAGES = 10_000
MAX_RATE_WAIT = 3600.0
RESERVE = 50
ATTEMPTS = 5
_CONCLUSION = {
    "success": "completed",
    "neutral": "completed",
    "failure": "failed",
    "timed_out": "failed",
    "startup_failure": "failed",
    "cancelled": "aborted",
}
_FORGEJO_STATUS = {"success": "completed", "failure": "failed", "cancelled": "aborted"}


class ExportUnsupported(PermanentError):
    """The forge (or its version or scope) cannot list its job history."""


class History:
    """Reads one forge's job history through its adapter's HTTP client."""

    def __init__(self, adapter: ForgeAdapter, progress: Progress | None = None, reserve: int = RESERVE) -> None:
        self.reserve = reserve  # requests left below which the export waits for the window's reset
        http = getattr(adapter, "http", None)
        if http is None:
            raise ExportUnsupported(f"forge {adapter.name} ({adapter.kind}) has no job history API")
        self.adapter = adapter
        self.http = http
        self.progress = progress or Progress(enabled=False)
        clock = getattr(adapter, "clock", None)
        self._sleep: Callable[[float], Awaitable[None]] = clock.sleep if clock is not None else asyncio.sleep
        self._now: Callable[[], float] = clock.now if clock is not None else time.time

    # --- requests -------------------------------------------------------------------

    async def get(self, path: str, endpoint: str, params: Mapping[str, Any] | None = None) -> Any:
        """GET JSON; waits out rate limits; a 404 is ExportUnsupported naming the path."""
        for attempt in range(ATTEMPTS):
            await self._respect_budget()
            try:
                resp = await self.http.request("GET", path, endpoint=endpoint, params=params, ok=(200,))
            except ForgeTemporaryError as exc:
                if attempt == ATTEMPTS - 1:
                    raise
                wait = min(MAX_RATE_WAIT, exc.retry_after if exc.retry_after is not None else 2.0**attempt)
                self.progress.update(note=f"rate limited: waiting {wait:.0f}s")
                await self._sleep(wait)
                continue
            except ForgePermanentError as exc:
                if "HTTP 404" in str(exc):
                    raise ExportUnsupported(f"{self.adapter.name}: {path} is not there (HTTP 404)") from None
                raise
            self.progress.requests += 1
            self.progress.draw()
            return resp.json()
        raise AssertionError("unreachable")  # pragma: no cover

    async def _respect_budget(self) -> None:
        rate = self.http.rate
        if rate.remaining is None or rate.remaining > self.reserve or rate.reset is None:
            return
        wait = rate.reset - self._now()
        if wait > 0:
            self.progress.update(note=f"{rate.remaining} requests left: waiting {min(wait, MAX_RATE_WAIT):.0f}s")
            await self._sleep(min(wait, MAX_RATE_WAIT))

    # --- the forges -------------------------------------------------------------------

    async def jobs(self, since: float, until: float, repositories: list[str] | None = None) -> list[TraceJob]:
        kind = self.adapter.kind
        if kind == "github":
            return await self._github(since, until, repositories)
        if kind == "gitea":
            return await self._gitea(since, until, repositories)
        if kind == "forgejo":
            return await self._forgejo(since, until, repositories)
        raise ExportUnsupported(f"forge {self.adapter.name} ({kind}) has no job history API")

    def _repositories(self, repositories: list[str] | None, what: str) -> list[str] | None:
        if repositories:
            return repositories
        scope = self.adapter_scope()
        if scope[0] == "repository":
            return [str(scope[1])]
        return None if what == "list" else []

    def adapter_scope(self) -> tuple[str, str | None]:
        cfg = getattr(self.adapter, "config", None)
        scope = getattr(cfg, "scope", None)
        return (scope.kind, scope.name) if scope is not None else ("instance", None)

    # --- GitHub -------------------------------------------------------------------------

    async def _github(self, since: float, until: float, repositories: list[str] | None) -> list[TraceJob]:
        repos = self._repositories(repositories, "list")
        if repos is None:
            kind, name = self.adapter_scope()
            if kind != "organization":
                raise ExportUnsupported(f"GitHub {kind} scope: name the repositories with --repository owner/repo")
            listed = await self._paged_github(f"/orgs/{name}/repos", "list_repos", None, {"type": "all"})
            repos = [str(r["full_name"]) for r in listed if isinstance(r, Mapping) and r.get("full_name")]
        out: list[TraceJob] = []
        for i, repo in enumerate(repos):
            windows = _windows(since, until, 86400.0)
            for k, (a, b) in enumerate(windows):
                for run in await self._github_runs(repo, a, b):
                    out += await self._github_run_jobs(repo, run)
                    self.progress.update(jobs=len(out))
                self.progress.update(done=(i + (k + 1) / len(windows)) / len(repos), note=repo)
        return [j for j in out if since <= j.queued_at < until]

    async def _github_runs(self, repo: str, a: float, b: float) -> list[Mapping[str, Any]]:
        created = f"{_iso(a)}..{_iso(b)}"
        first = await self.get(f"/repos/{repo}/actions/runs", "list_runs",
                               {"created": created, "per_page": PER_PAGE, "page": 1})
        total = first.get("total_count") if isinstance(first, Mapping) else None
        if isinstance(total, int) and total > GITHUB_WINDOW_CAP and b - a > 60:
            mid = (a + b) / 2
            return await self._github_runs(repo, a, mid) + await self._github_runs(repo, mid, b)
        runs = list(first.get("workflow_runs") or []) if isinstance(first, Mapping) else []
        page = 1
        while len(runs) < (total if isinstance(total, int) else 0) and page < MAX_PAGES:
            page += 1
            data = await self.get(f"/repos/{repo}/actions/runs", "list_runs",
                                  {"created": created, "per_page": PER_PAGE, "page": page})
            batch = data.get("workflow_runs") or [] if isinstance(data, Mapping) else []
            if not batch:
                break
            runs += batch
        return [r for r in runs if isinstance(r, Mapping)]

    async def _github_run_jobs(self, repo: str, run: Mapping[str, Any]) -> list[TraceJob]:
        run_id = opt_int(run.get("id"))
        if run_id is None:
            return []
        jobs = await self._paged_github(f"/repos/{repo}/actions/runs/{run_id}/jobs", "list_run_jobs", "jobs",
                                        {"filter": "all"})
        out = []
        for j in jobs:
            if not isinstance(j, Mapping) or j.get("status") != "completed":
                continue
            status = _CONCLUSION.get(str(j.get("conclusion")))
            row = _row(j.get("id"), repo, j.get("labels"), j.get("created_at") or run.get("created_at"),
                       j.get("started_at"), j.get("completed_at"), status, j.get("name"))
            if row is not None:
                out.append(row)
        return out

    async def _paged_github(self, path: str, endpoint: str, key: str | None, params: Mapping[str, Any]) -> list[Any]:
        items: list[Any] = []
        for page in range(1, MAX_PAGES):
            data = await self.get(path, endpoint, {**params, "per_page": PER_PAGE, "page": page})
            batch = (data if key is None else (data or {}).get(key)) or []
            items += batch
            total = None if key is None else (data or {}).get("total_count")
            if len(batch) < PER_PAGE or (isinstance(total, int) and len(items) >= total):
                break
        return items

    # --- Gitea ----------------------------------------------------------------------------

    async def _gitea(self, since: float, until: float, repositories: list[str] | None) -> list[TraceJob]:
        version = await self.adapter.get_version()  # type: ignore[attr-defined]
        if version is not None and version < (1, 25, 0):
            raise ExportUnsupported(
                f"Gitea {'.'.join(map(str, version))} has no job listing API (actions/jobs is Gitea 1.25+)"
            )
        api: Callable[[str], str] = self.adapter.api  # type: ignore[attr-defined]
        paths = [f"/repos/{r}/actions/jobs" for r in repositories] if repositories else [
            f"{self.adapter.scope_path}/actions/jobs"  # type: ignore[attr-defined]
        ]
        out: list[TraceJob] = []
        for i, path in enumerate(paths):
            repo = path.split("/")[2] + "/" + path.split("/")[3] if path.startswith("/repos/") else None

            def share(done: float, i: int = i) -> float:
                return (i + done) / len(paths)

            for j in await self._newest_first(api(path), since, share):
                if j.get("status") != "completed":
                    continue
                row = _row(j.get("id"), repo or _repo_from_url(j), j.get("labels"), j.get("created_at"),
                           j.get("started_at"), j.get("completed_at"), _CONCLUSION.get(str(j.get("conclusion"))),
                           j.get("name"))
                if row is not None and since <= row.queued_at < until:
                    out.append(row)
            self.progress.update(jobs=len(out))
        return out

    async def _newest_first(self, path: str, since: float, share: Callable[[float], float]) -> list[Mapping[str, Any]]:
        """Every job of a Gitea listing created since ``since``: the listing has
        no time filter and is ordered by id, so pages are read from the newest
        end until one holds nothing that recent."""
        first = await self.get(path, "list_jobs", {"page": 1, "limit": GITEA_PAGE})
        total = first.get("total_count") if isinstance(first, Mapping) else 0
        pages = max(1, math.ceil((total if isinstance(total, int) else 0) / GITEA_PAGE))
        head = [j for j in (first.get("jobs") or []) if isinstance(j, Mapping)]
        ids = [opt_int(j.get("id")) or 0 for j in head]
        ascending = len(ids) < 2 or ids[0] < ids[-1]
        order = range(pages, 0, -1) if ascending else range(1, pages + 1)
        out: list[Mapping[str, Any]] = []
        for n, page in enumerate(order):
            if page == 1:
                batch = head
            else:
                data = await self.get(path, "list_jobs", {"page": page, "limit": GITEA_PAGE})
                batch = [j for j in (data.get("jobs") or []) if isinstance(j, Mapping)]
            out += batch
            self.progress.update(done=share((n + 1) / pages))
            created = [iso_to_epoch(j.get("created_at")) for j in batch]
            if batch and all(c is not None and c < since for c in created):
                break
        return out

    # --- Forgejo ---------------------------------------------------------------------------

    async def _forgejo(self, since: float, until: float, repositories: list[str] | None) -> list[TraceJob]:
        repos = self._repositories(repositories, "forgejo")
        if not repos:
            raise ExportUnsupported(
                "Forgejo lists job history per repository only: name them with --repository owner/repo"
            )
        api: Callable[[str], str] = self.adapter.api  # type: ignore[attr-defined]
        out: list[TraceJob] = []
        for i, repo in enumerate(repos):
            runs = await self._forgejo_list(api(f"/repos/{repo}/actions/runs"), "list_runs", since, "created")
            tasks = {
                opt_int(t.get("id")): t
                for t in await self._forgejo_list(api(f"/repos/{repo}/actions/tasks"), "list_tasks", since,
                                                  "created_at")
            }
            for k, run in enumerate(runs):
                queued = iso_to_epoch(run.get("created"))
                if queued is None or not since <= queued < until:
                    continue
                jobs = await self.get(api(f"/repos/{repo}/actions/runs/{run.get('id')}/jobs"), "list_run_jobs")
                for j in jobs if isinstance(jobs, list) else []:
                    task = tasks.get(opt_int(j.get("task_id"))) if isinstance(j, Mapping) else None
                    status = _FORGEJO_STATUS.get(str(j.get("status")))
                    if task is None or status is None:
                        continue
                    row = _row(j.get("id"), repo, j.get("runs_on"), run.get("created"), task.get("created_at"),
                               task.get("updated_at"), status, j.get("name"))
                    if row is not None:
                        out.append(row)
                self.progress.update(done=(i + (k + 1) / max(1, len(runs))) / len(repos), jobs=len(out))
        return out

    async def _forgejo_list(self, path: str, endpoint: str, since: float, created: str) -> list[Mapping[str, Any]]:
        """A Forgejo ``{workflow_runs: [...], total_count}`` listing, newest
        first, read until entries are older than ``since``."""
        items: list[Mapping[str, Any]] = []
        for page in range(1, MAX_PAGES):
            data = await self.get(path, endpoint, {"page": page, "limit": GITEA_PAGE})
            batch = [x for x in (data.get("workflow_runs") or []) if isinstance(x, Mapping)]
            items += batch
            total = data.get("total_count")
            times = [iso_to_epoch(x.get(created)) for x in batch]
            old = bool(batch) and all(t is not None and t < since for t in times)
            if len(batch) < GITEA_PAGE or old or (isinstance(total, int) and len(items) >= total):
                break
        return items


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _windows(since: float, until: float, width: float) -> list[tuple[float, float]]:
    out, a = [], since
    while a < until:
        out.append((a, min(until, a + width)))
        a += width
    return out or [(since, until)]


def _repo_from_url(job: Mapping[str, Any]) -> str:
    from scaler.forges._common import repository_from_url

    return repository_from_url(job.get("url"), job.get("run_url")) or ""


def _labels(value: object) -> tuple[str, ...]:
    if not isinstance(value, list):
        return ()
    return tuple(str(x) for x in value if isinstance(x, str) and x.strip() and ";" not in x)


def _row(job_id: object, repo: str, labels: object, queued: object, started: object, completed: object,
         status: str | None, name: object) -> TraceJob | None:
    """A trace row, or None for a job that never ran on a runner (skipped,
    cancelled before it started) or whose fields are not what the API promises."""
    jid = opt_int(job_id)
    q, s, c = iso_to_epoch(queued), iso_to_epoch(started), iso_to_epoch(completed)
    names = _labels(labels)
    if jid is None or jid <= 0 or status is None or not names or "/" not in repo:
        return None
    if q is None or s is None or c is None or c < s:
        return None
    return TraceJob(jid, repo, names, q, s, c, status, str(name or "").replace("\n", " ")[:200])


def dedupe(jobs: Iterable[TraceJob]) -> list[TraceJob]:
    seen: dict[int, TraceJob] = {}
    for j in jobs:
        seen.setdefault(j.job_id, j)
    return sorted(seen.values(), key=lambda j: (j.queued_at, j.job_id))


async def export(adapter: ForgeAdapter, since: float, until: float, repositories: list[str] | None = None,
                 progress: Progress | None = None) -> list[TraceJob]:
    """The forge's finished jobs queued in ``[since, until)``."""
    try:
        return dedupe(await History(adapter, progress).jobs(since, until, repositories))
    finally:
        if progress is not None:
            progress.close()
