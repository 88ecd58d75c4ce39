"""What the fake sends when it plays Gitea (1.24 … 1.27) and, for the parts
they share, Forgejo. Every shape is recorded in
``tests/forges/shapes/gitea.json`` with the file and tag it was read at;
``tests/forges/test_recorded_shapes.py`` holds these against them.
"""

from __future__ import annotations

from typing import Any

from scaler.testing.fake_forge_server._base import FJob, ForgeBase, FRunner, Hook, Repo, go_time

_ZERO_INTS = ("size", "stars_count", "forks_count", "watchers_count", "open_issues_count", "open_pr_counter",
              "release_counter")
_FALSE = ("empty", "private", "fork", "template", "mirror", "archived", "ignore_whitespace_conflicts",
          "default_delete_branch_after_merge", "default_allow_maintainer_edit", "internal", "allow_rebase_update",
          "allow_fast_forward_only_merge")
_TRUE = ("has_issues", "has_wiki", "has_pull_requests", "has_projects", "has_releases", "has_packages",
         "has_actions", "allow_merge_commits", "allow_rebase", "allow_rebase_explicit", "allow_squash_merge")
_EMPTY = ("description", "language", "original_url", "website", "mirror_interval")


class GiteaShapes(ForgeBase):
    """``modules/structs`` as ``services/convert`` fills them in."""

    def gitea_user(self, login: str) -> dict[str, Any]:
        """``User`` (modules/structs/user.go)."""
        u: dict[str, Any] = {
            "id": 1, "login": login, "login_name": "", "source_id": 0, "full_name": "",
            "email": f"{login}@noreply.example.invalid", "avatar_url": f"{self.url}/avatars/{login}",
            "html_url": f"{self.url}/{login}", "language": "", "is_admin": False, "last_login": go_time(None),
            "created": go_time(self.clock()), "restricted": False, "active": False, "prohibit_login": False,
            "location": "", "website": "", "description": "", "visibility": "public", "followers_count": 0,
            "following_count": 0, "starred_repos_count": 0,
        }
        if self.kind == "forgejo":
            u["pronouns"] = ""
        return u

    def gitea_org(self, name: str) -> dict[str, Any]:
        """``Organization`` (modules/structs/org.go)."""
        return {"id": 2, "name": name, "full_name": "", "email": "", "avatar_url": f"{self.url}/avatars/{name}",
                "description": "", "website": "", "location": "", "visibility": "public",
                "repo_admin_change_team_access": False, "username": name}

    def gitea_repo(self, repo: Repo) -> dict[str, Any]:
        """``Repository`` (modules/structs/repo.go), fields as of this version."""
        web = f"{self.url}/{repo.full_name}"
        r: dict[str, Any] = {
            "id": repo.id, "owner": self.gitea_user(repo.owner), "name": repo.name, "full_name": repo.full_name,
            "languages_url": f"{self.url}/api/v1/repos/{repo.full_name}/languages", "html_url": web,
            "url": f"{self.url}/api/v1/repos/{repo.full_name}", "link": "", "ssh_url": f"git@fake:{repo.full_name}.git",
            "clone_url": f"{web}.git", "default_branch": "main", "created_at": go_time(self.clock()),
            "updated_at": go_time(self.clock()), "archived_at": go_time(None), "default_merge_style": "merge",
            "avatar_url": "", "object_format_name": "sha1", "mirror_updated": go_time(None), "topics": None,
        }
        r.update(dict.fromkeys(_ZERO_INTS, 0))
        r.update(dict.fromkeys(_FALSE, False))
        r.update(dict.fromkeys(_TRUE, True))
        r.update(dict.fromkeys(_EMPTY, ""))
        if self.kind == "forgejo":
            r.update({"has_wiki_contents": False, "wiki_ssh_url": f"git@fake:{repo.full_name}.wiki.git",
                      "wiki_clone_url": f"{web}.wiki.git", "globally_editable_wiki": False,
                      "default_update_style": "merge", "parent": None, "repo_transfer": None})
            return r
        r.update({"projects_mode": "all", "licenses": None})
        if self.at_least(1, 25):
            r.update({"has_code": True, "allow_manual_merge": False, "autodetect_manual_merge": False})
        if self.at_least(1, 26):
            r["branch_count"] = 1
        if not self.at_least(1, 27):  # omitempty only since 1.27
            r.update({"parent": None, "repo_transfer": None})
        if self.at_least(1, 27):
            r.update({"allow_merge_update": True, "default_update_style": "merge",
                      "mirror_last_sync_at": go_time(None)})
        return r

    # --- actions ------------------------------------------------------------------

    def gitea_status(self, job: FJob) -> tuple[str, str]:
        """(status, conclusion) of a job: ``ToActionsStatus`` (convert.go;
        notifier.go ``toActionStatus`` at 1.24, which gives skipped no conclusion)."""
        s = job.status
        if s == "blocked":
            return "waiting", ""
        if s == "waiting":
            return "queued", ""
        if s == "running":
            return "in_progress", ""
        if s == "skipped" and not self.at_least(1, 25):
            return "completed", ""
        return "completed", s

    def gitea_job(self, job: FJob) -> dict[str, Any]:
        """``ActionWorkflowJob`` (repo_actions.go): conclusion, runner_id and
        runner_name left out while empty (omitempty), times always sent."""
        status, conclusion = self.gitea_status(job)
        repo_api = f"{self.url}/api/v1/repos/{job.repo.full_name}"
        run_web = f"{self.url}/{job.repo.full_name}/actions/runs/{job.run_id}"
        if self.at_least(1, 25):
            url, html = f"{repo_api}/actions/jobs/{job.id}", f"{run_web}/jobs/{job.id}"
        else:  # services/webhook/notifier.go: the job's index in its run
            url, html = f"{repo_api}/actions/runs/{job.run_id}/jobs/{job.id}", f"{run_web}/jobs/0"
        wj: dict[str, Any] = {
            "id": job.id, "url": url, "html_url": html, "run_id": job.run_id,
            "run_url": f"{repo_api}/actions/runs/{job.run_id}", "name": job.name, "labels": list(job.labels),
            "run_attempt": job.attempt, "head_sha": "0" * 40, "head_branch": "main", "status": status,
            # util.SliceNilAsEmpty(steps) since 1.26; a nil slice (null) before
            "steps": [] if self.at_least(1, 26) else None,
            "created_at": go_time(job.created_at), "started_at": go_time(job.started_at),
            "completed_at": go_time(job.completed_at),
        }
        if conclusion:
            wj["conclusion"] = conclusion
        if job.runner_id:
            wj["runner_id"], wj["runner_name"] = job.runner_id, job.runner_name or ""
        return wj

    def gitea_runner(self, r: FRunner) -> dict[str, Any]:
        """``ActionRunner`` (convert.go ``ToActionRunner``)."""
        out: dict[str, Any] = {
            "id": r.id, "name": r.name, "status": "online" if r.online else "offline", "busy": r.busy,
            "ephemeral": r.ephemeral,
            "labels": [{"id": i, "name": x, "type": "custom"} for i, x in enumerate(r.labels)],
        }
        if self.at_least(1, 26):
            out["disabled"] = False
        return out

    def gitea_hook(self, h: Hook) -> dict[str, Any]:
        """``Hook`` (hook.go; services/webhook/general.go ``ToHook``)."""
        out: dict[str, Any] = {
            "id": h.id, "type": h.type, "branch_filter": "*", "config": {"url": h.url, "content_type": h.content_type},
            "events": h.events, "authorization_header": "", "active": h.active,
            "updated_at": go_time(h.created_at), "created_at": go_time(h.created_at),
        }
        if self.kind == "forgejo":
            out.update({"url": h.url, "content_type": h.content_type, "metadata": None})
        elif self.at_least(1, 26):
            out["name"] = ""
        return out

    def gitea_payload(self, job: FJob) -> tuple[str, dict[str, Any]] | None:
        """``WorkflowJobPayload`` (hook.go): the action is the job's status."""
        action, _ = self.gitea_status(job)
        payload: dict[str, Any] = {"action": action, "workflow_job": self.gitea_job(job),
                                   "repository": self.gitea_repo(job.repo), "sender": self.gitea_user("admin")}
        if job.repo.owner_is_org:
            payload["organization"] = self.gitea_org(job.repo.owner)
        return "workflow_job", payload


__all__ = ["GiteaShapes"]
