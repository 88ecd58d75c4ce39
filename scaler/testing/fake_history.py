"""Job-history endpoints of the HTTP fake forge (``trace export``, warm pools).

Kept apart from :mod:`scaler.testing.fake_forge_server` (``rest_gitea`` and
``rest_github`` call in here, one line each) so it travels unchanged when
that package is reorganised.
Shapes from the reference specs (``shared/reference``; the tests validate
every answer against them):

* GitHub ``GET /repos/{o}/{r}/actions/runs?created=…``: the ``created``
  parameter (``github-actions-api.json`` components/parameters/created, the
  search syntax for dates: ``A..B``, ``>=A``, ``>A``, ``<=B``, ``<B``, ``A``).
* Forgejo 16.0.1 (``forgejo-actions-api.json``): ``GET /repos/{o}/{r}/actions/runs``
  → ``ListActionRunResponse{workflow_runs: [ActionRun], total_count}``;
  ``GET /repos/{o}/{r}/actions/runs/{run_id}/jobs`` → ``[ActionRunJob]``;
  ``GET /repos/{o}/{r}/actions/tasks`` → ``ActionTaskResponse{workflow_runs:
  [ActionTask], total_count}``. Newest first, ``page`` / ``limit`` paging.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

if TYPE_CHECKING:
    from scaler.testing.fake_forge_server import FakeForgeServer, FJob

_NO_TIME = "0001-01-01T00:00:00Z"  # Go's zero time, as Forgejo renders an unset one


def _iso(t: float | None) -> str | None:
    return None if t is None else datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _when(text: str) -> float:
    value = text.strip()
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        value += "T00:00:00+00:00"
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def created_filter(query: str) -> Callable[[float], bool]:
    """GitHub's date search syntax for ``created`` (a ValueError when malformed)."""
    q = query.strip()
    if ".." in q:
        lo, hi = q.split("..", 1)
        a = -float("inf") if lo in ("", "*") else _when(lo)
        b = float("inf") if hi in ("", "*") else _when(hi)
        return lambda t: a <= t <= b
    for op in (">=", "<=", ">", "<"):
        if q.startswith(op):
            return _compare(op, _when(q[len(op):]))
    day = _when(q)
    return lambda t: day <= t < day + 86400


def _compare(op: str, v: float) -> Callable[[float], bool]:
    tests: dict[str, Callable[[float], bool]] = {
        ">=": lambda t: t >= v,
        "<=": lambda t: t <= v,
        ">": lambda t: t > v,
        "<": lambda t: t < v,
    }
    return tests[op]


def github_runs(request: Request, items: list[dict[str, Any]]) -> list[dict[str, Any]] | Response:
    """Apply ``created`` to a runs listing (before paging)."""
    created = request.query_params.get("created")
    if not created:
        return items
    try:
        keep = created_filter(created)
    except ValueError:
        return JSONResponse({"message": "Validation Failed"}, status_code=422)
    return [r for r in items if keep(_when(r["created_at"]))]


def forgejo(server: Any, request: Request, path: str) -> Response | None:
    """The Forgejo history routes, or None when ``path`` is not one of them
    (``server``: the FakeForgeServer, seen from its REST mixin)."""
    m = re.match(r"^/repos/([^/]+/[^/]+)/actions/(runs|tasks)$", path)
    m2 = re.match(r"^/repos/([^/]+/[^/]+)/actions/runs/(\d+)/jobs$", path)
    if request.method != "GET" or not (m or m2):
        return None
    repo = (m or m2).group(1)  # type: ignore[union-attr]
    jobs = sorted((j for j in server.jobs.values() if j.repo.full_name == repo), key=lambda j: j.id)
    if m2:
        run_id = int(m2.group(2))
        return JSONResponse([{**server.forgejo_job(j), "task_id": _task_id(j)} for j in jobs if j.run_id == run_id])
    assert m is not None
    if m.group(2) == "runs":
        runs: dict[int, list[FJob]] = {}
        for j in jobs:
            runs.setdefault(j.run_id, []).append(j)
        items = [_forgejo_run(server, rid, js) for rid, js in sorted(runs.items(), reverse=True)]
    else:
        items = [_forgejo_task(j) for j in sorted(jobs, key=lambda j: -j.id) if j.started_at is not None]
    q = request.query_params
    page, limit = max(1, int(q.get("page", 1) or 1)), max(1, min(50, int(q.get("limit", 50) or 50)))
    return JSONResponse({"workflow_runs": items[(page - 1) * limit: page * limit], "total_count": len(items)})


def _task_id(job: FJob) -> int:
    # The task a runner got for the job: the world's, or one made up for a job
    # set running without a runner (tests drive jobs directly).
    if job.started_at is None:
        return 0
    return job.task_id or job.id + 1_000_000


def _forgejo_run(server: FakeForgeServer, run_id: int, jobs: list[FJob]) -> dict[str, Any]:
    done = all(j.done for j in jobs)
    status = "success" if done and all(j.status == "success" for j in jobs) else (
        "failure" if done else ("running" if any(j.status == "running" for j in jobs) else "waiting"))
    started = min((j.started_at for j in jobs if j.started_at is not None), default=None)
    stopped = max((j.completed_at or 0.0 for j in jobs), default=0.0) if done else None
    return {
        **server.forgejo_run(jobs[0]),
        "id": run_id, "status": status, "started": _iso(started) or _NO_TIME, "stopped": _iso(stopped) or _NO_TIME,
        "updated": _iso(stopped or started or jobs[0].created_at),
    }


def _forgejo_task(job: FJob) -> dict[str, Any]:
    # A task is one attempt of a job on a runner: created when a runner took
    # it, last updated when it finished (or with its latest log while running).
    task = _task_id(job)
    return {
        "id": task, "name": job.name, "display_title": "CI", "status": job.status,
        "event": "push", "workflow_id": "ci.yml", "head_branch": "main", "head_sha": "0" * 40,
        "run_number": job.run_id, "url": f"/api/v1/repos/{job.repo.full_name}/actions/tasks/{task}",
        "created_at": _iso(job.started_at), "updated_at": _iso(job.completed_at or job.started_at),
        "run_started_at": _iso(job.started_at),
    }
