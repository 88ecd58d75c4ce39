"""What the fake sends when it plays GitHub. Shapes: GitHub's own OpenAPI
description (github/rest-api-description), recorded in
``tests/forges/shapes/github.json``: ``simple-user``, ``repository-webhooks``,
``minimal-repository``, ``job``, ``workflow-run``, ``runner``, the
``webhook-workflow-job-*`` payloads.
"""

from __future__ import annotations

from typing import Any

from scaler.testing.fake_forge_server._base import FJob, ForgeBase, FRunner, Repo, iso

_USER_URLS = ("events", "followers", "following", "gists", "organizations", "received_events", "repos",
              "starred", "subscriptions")
_REPO_URLS = ("archive", "assignees", "blobs", "branches", "collaborators", "comments", "commits", "compare",
              "contents", "contributors", "deployments", "downloads", "events", "forks", "git_commits", "git_refs",
              "git_tags", "hooks", "issue_comment", "issue_events", "issues", "keys", "labels", "languages",
              "merges", "milestones", "notifications", "pulls", "releases", "stargazers", "statuses",
              "subscribers", "subscription", "tags", "teams", "trees")


class GitHubShapes(ForgeBase):
    def github_user(self, login: str) -> dict[str, Any]:
        """``simple-user``."""
        base = f"{self.url}/users/{login}"
        u: dict[str, Any] = {"id": 1, "login": login, "node_id": "MDQ6VXNlcjE=", "type": "User",
                             "site_admin": False, "gravatar_id": None, "html_url": f"{self.url}/{login}",
                             "url": base, "avatar_url": f"{self.url}/avatars/{login}"}
        for k in _USER_URLS:
            u[f"{k}_url"] = f"{base}/{k}"
        return u

    def github_repo(self, repo: Repo, *, minimal: bool = False) -> dict[str, Any]:
        """``repository-webhooks`` (payloads) or ``minimal-repository`` (runs)."""
        api = f"{self.url}/repos/{repo.full_name}"
        r: dict[str, Any] = {
            "id": repo.id, "node_id": f"R_{repo.id}", "name": repo.name, "full_name": repo.full_name,
            "owner": self.github_user(repo.owner), "private": False, "fork": False, "description": None,
            "html_url": f"{self.url}/{repo.full_name}", "url": api,
        }
        for k in _REPO_URLS:
            r[f"{k}_url"] = f"{api}/{k}"
        if minimal:
            return r
        r.update({
            "homepage": None, "language": None, "mirror_url": None, "pushed_at": None, "created_at": None,
            "updated_at": None, "license": None, "default_branch": "main", "archived": False, "disabled": False,
            "size": 0, "clone_url": f"{self.url}/{repo.full_name}.git", "git_url": f"git://fake/{repo.full_name}.git",
            "ssh_url": f"git@fake:{repo.full_name}.git", "svn_url": f"{self.url}/{repo.full_name}",
        })
        for k in ("forks", "forks_count", "open_issues", "open_issues_count", "stargazers_count", "watchers",
                  "watchers_count"):
            r[k] = 0
        for k in ("has_downloads", "has_issues", "has_projects", "has_wiki", "has_pages"):
            r[k] = False
        return r

    @staticmethod
    def github_status(job: FJob) -> tuple[str, str | None]:
        s = job.status
        if s in ("blocked", "waiting"):
            return ("waiting" if s == "blocked" else "queued"), None
        if s == "running":
            return "in_progress", None
        return "completed", s

    def github_job(self, job: FJob) -> dict[str, Any]:
        """``job`` (REST) — the webhook's ``workflow_job`` is the same set."""
        status, conclusion = self.github_status(job)
        api = f"{self.url}/repos/{job.repo.full_name}/actions"
        return {
            "id": job.id, "node_id": f"J_{job.id}", "run_id": job.run_id, "run_url": f"{api}/runs/{job.run_id}",
            "run_attempt": job.attempt, "head_sha": "0" * 40, "workflow_name": "CI", "head_branch": "main",
            "name": job.name, "url": f"{api}/jobs/{job.id}",
            "html_url": f"{self.url}/{job.repo.full_name}/actions/runs/{job.run_id}/job/{job.id}",
            "status": status, "conclusion": conclusion, "started_at": iso(job.started_at or job.created_at),
            "completed_at": iso(job.completed_at), "check_run_url": f"{self.url}/check-runs/{job.id}",
            "labels": list(job.labels), "runner_id": job.runner_id, "runner_name": job.runner_name,
            "runner_group_id": 1 if job.runner_id else None,
            "runner_group_name": "Default" if job.runner_id else None, "created_at": iso(job.created_at),
            "steps": [],
        }

    def github_run_status(self, jobs: list[FJob]) -> str:
        statuses = [self.github_status(j)[0] for j in jobs]
        return next((s for s in ("in_progress", "queued", "waiting") if s in statuses), "completed")

    def github_run(self, run_id: int, jobs: list[FJob]) -> dict[str, Any]:
        """``workflow-run``."""
        repo = jobs[0].repo
        status = self.github_run_status(jobs)
        api = f"{self.url}/repos/{repo.full_name}/actions/runs/{run_id}"
        minimal = self.github_repo(repo, minimal=True)
        return {
            "id": run_id, "node_id": f"WR_{run_id}", "head_branch": "main", "run_number": run_id,
            "display_title": "CI", "event": "push", "status": status, "conclusion": None, "head_sha": "0" * 40,
            "path": ".github/workflows/ci.yml", "workflow_id": 1, "url": api,
            "html_url": f"{self.url}/{repo.full_name}/actions/runs/{run_id}",
            "created_at": iso(jobs[0].created_at), "updated_at": iso(jobs[0].created_at), "head_commit": None,
            "head_repository": minimal, "repository": minimal, "jobs_url": f"{api}/jobs", "logs_url": f"{api}/logs",
            "check_suite_url": f"{api}/check-suite", "cancel_url": f"{api}/cancel", "rerun_url": f"{api}/rerun",
            "artifacts_url": f"{api}/artifacts", "workflow_url": f"{self.url}/repos/{repo.full_name}/workflows/1",
            "pull_requests": [],
        }

    def github_runner(self, r: FRunner) -> dict[str, Any]:
        """``runner``."""
        return {"id": r.id, "runner_group_id": 1, "name": r.name, "os": "linux",
                "status": "online" if r.online else "offline", "busy": r.busy, "ephemeral": r.ephemeral,
                "labels": [{"id": i + 1, "name": x, "type": "custom"} for i, x in enumerate(r.labels)]}

    def github_payload(self, job: FJob) -> tuple[str, dict[str, Any]] | None:
        """``webhook-workflow-job-{queued,waiting,in-progress,completed}``."""
        action, _ = self.github_status(job)
        payload: dict[str, Any] = {"action": action, "workflow_job": self.github_job(job),
                                   "repository": self.github_repo(job.repo), "sender": self.github_user("admin")}
        if self.app_id is not None:
            payload["installation"] = {"id": self.installation_id, "node_id": "MDIzOkluc3RhbGxhdGlvbg=="}
        return "workflow_job", payload


__all__ = ["GitHubShapes"]
