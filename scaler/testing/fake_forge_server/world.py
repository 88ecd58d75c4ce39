"""The fake forge's world: repositories, jobs moving through their statuses,
runners taking them — as the real forges move them.

* An ephemeral runner gets one task, ever (Gitea ``services/actions/task.go``
  ``PickTask``, v1.24.0; Forgejo the same file, v15.0.0), and its record is
  deleted when that task ends (Gitea ``models/actions/task.go`` ``UpdateTask``;
  Forgejo ``routers/api/actions/runner/runner.go`` ``UpdateTask``; GitHub
  removes an ephemeral runner after its job). One that never got a task stays.
* Forgejo hands a runner that asks with a job handle that job attempt only
  (``FetchSingleTask``).
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Iterable

from scaler.domain.labels import labels_match
from scaler.testing.fake_forge_server._base import FJob, FRunner, Repo
from scaler.testing.fake_forge_server.webhooks import WebhookMixin


class WorldMixin(WebhookMixin):
    def add_repo(self, full_name: str, *, owner_is_org: bool = True) -> Repo:
        if full_name not in self.repos:
            self.repos[full_name] = Repo(self.next_id(), full_name, owner_is_org)
        return self.repos[full_name]

    def queue_job(self, repo: str, labels: Iterable[str], *, blocked: bool = False, name: str = "build") -> FJob:
        r = self.add_repo(repo)
        job = FJob(self.next_id(), self.next_id(), r, tuple(labels), name=name, created_at=self.clock())
        job.status = "blocked" if blocked else "waiting"
        self.jobs[job.id] = job
        self.tasks_version += 1
        self.emit(job, None)
        return job

    def unblock(self, job: FJob) -> None:
        before, job.status = job.status, "waiting"
        self.tasks_version += 1
        self.emit(job, before)

    def set_status(self, job: FJob, status: str, runner: FRunner | None = None) -> None:
        before, job.status = job.status, status
        now = self.clock()
        if status == "running":
            job.started_at = now
            if runner is not None:
                job.runner_id, job.runner_name = runner.id, runner.name
                job.task_id = job.task_id or self.next_id()
                runner.busy, runner.job_id, runner.had_task = True, job.id, True
        if job.done:
            job.completed_at = now
            for r in list(self.runners.values()):
                if r.job_id == job.id:
                    self._task_over(r)
        self.emit(job, before)

    def _task_over(self, runner: FRunner) -> None:
        runner.busy, runner.job_id = False, None
        if runner.ephemeral:
            del self.runners[runner.id]  # every forge removes a used ephemeral runner

    def new_runner(self, name: str, *, labels: Iterable[str] = (), ephemeral: bool = False, version: str = "",
                   description: str = "") -> FRunner:
        runner = FRunner(self.next_id(), name, str(uuid.uuid4()), secrets.token_hex(20), tuple(labels),
                         ephemeral=ephemeral, version=version, description=description)
        self.runners[runner.id] = runner
        return runner

    def runner_by_name(self, name: str) -> FRunner | None:
        return next((r for r in self.runners.values() if r.name == name), None)

    def registration_token(self, scope: str) -> str:
        """The scope's current registration token; reusable until reset
        (``GetRegistrationToken`` on Gitea and Forgejo: the latest active one)."""
        if scope not in self.scope_tokens:
            self.scope_tokens[scope] = secrets.token_hex(20)
        return self.scope_tokens[scope]

    def pick_job(self, runner: FRunner, handle: str | None) -> FJob | None:
        """The job a runner asking for work gets, if any."""
        if runner.ephemeral and runner.had_task:
            return None
        for job in sorted(self.jobs.values(), key=lambda j: j.id):
            if job.status != "waiting":
                continue
            if handle and job.handle != handle:
                continue
            if labels_match(job.labels, runner.labels):
                return job
        return None

    def in_scope(self, job: FJob, scope: str) -> bool:
        if scope.startswith("/repos/"):
            return scope == f"/repos/{job.repo.full_name}"
        if scope.startswith("/orgs/"):
            return job.repo.owner == scope[len("/orgs/"):]
        return True


__all__ = ["WorldMixin"]
