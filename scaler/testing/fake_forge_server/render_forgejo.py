"""What the fake sends when it plays Forgejo (15 … main). Shapes recorded in
``tests/forges/shapes/forgejo.json`` (file, tag and commit beside each).

Job webhooks exist only from ``JOB_WEBHOOKS_SINCE`` (UNCONFIRMED: read from
a Forgejo tree after v16; 15.0.x and the 16.0 branch send none).
"""

from __future__ import annotations

from typing import Any

from scaler.forges.forgejo import JOB_WEBHOOKS_SINCE
from scaler.testing.fake_forge_server._base import FJob, FRunner, go_time
from scaler.testing.fake_forge_server.render_gitea import GiteaShapes


class ForgejoShapes(GiteaShapes):
    # None: as the version has it; True/False: force job webhooks on or off.
    forgejo_job_webhooks: bool | None
    # The later tree's top-level ``repository`` (an earlier one only had run.repository).
    forgejo_payload_repository: bool

    @property
    def sends_job_webhooks(self) -> bool:
        if self.forgejo_job_webhooks is not None:
            return self.forgejo_job_webhooks
        return self.at_least(*JOB_WEBHOOKS_SINCE)

    def forgejo_job(self, job: FJob, *, webhook: bool = False) -> dict[str, Any]:
        """``ActionRunJob`` (modules/structs/action.go): ``run_id`` since 16;
        the webhook's (a later tree) also has ``html_url``."""
        out: dict[str, Any] = {
            "id": job.id, "attempt": job.attempt, "handle": job.handle, "repo_id": job.repo.id, "owner_id": 2,
            "name": job.name, "needs": None, "runs_on": list(job.labels), "task_id": job.task_id or 0,
            "status": job.status,
        }
        if webhook or self.at_least(16):
            out["run_id"] = job.run_id
        if webhook:
            out["html_url"] = f"{self.url}/{job.repo.full_name}/actions/runs/{job.run_id}/jobs/0"
        return out

    def forgejo_run(self, job: FJob) -> dict[str, Any]:
        """``ActionRun`` (action.go; convert ``ToActionRun``)."""
        status = "running" if job.status == "running" else job.status
        return {
            "id": job.run_id, "title": "CI", "repository": self.gitea_repo(job.repo), "workflow_id": "ci.yml",
            "index_in_repo": job.run_id, "trigger_user": self.gitea_user("admin"), "ScheduleID": 0,
            "prettyref": "main", "is_ref_deleted": False, "commit_sha": "0" * 40, "is_fork_pull_request": False,
            "need_approval": False, "approved_by": 0, "event": "push", "event_payload": "{}",
            "trigger_event": "push", "status": status, "started": go_time(job.started_at),
            "stopped": go_time(job.completed_at), "created": go_time(job.created_at),
            "updated": go_time(job.completed_at or job.started_at or job.created_at),
            "html_url": f"{self.url}/{job.repo.full_name}/actions/runs/{job.run_id}",
        }

    def forgejo_runner(self, r: FRunner) -> dict[str, Any]:
        """``ActionRunner`` (repo_actions.go; convert ``ToActionRunner``)."""
        status = ("active" if r.busy else "idle") if r.online else "offline"
        return {"id": r.id, "uuid": r.uuid, "owner_id": 2, "repo_id": 0, "name": r.name, "status": status,
                "version": r.version, "labels": list(r.labels) or None, "description": r.description,
                "ephemeral": r.ephemeral}

    def forgejo_payload(self, job: FJob, previous: str | None) -> tuple[str, dict[str, Any]] | None:
        """``WorkflowJobPayload`` as event ``workflow_job_<status>``."""
        if not self.sends_job_webhooks:
            return None
        if previous is None:
            action = "new_job_attempt"
        elif job.done:
            action = "job_completed"
        else:
            action = "job_status_changed"
        payload: dict[str, Any] = {"action": action, "job": self.forgejo_job(job, webhook=True),
                                   "run": self.forgejo_run(job)}
        if self.forgejo_payload_repository:
            payload["repository"] = self.gitea_repo(job.repo)
        return f"workflow_job_{job.status}", payload


__all__ = ["ForgejoShapes"]
