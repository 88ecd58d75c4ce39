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

import hmac
import secrets
import uuid
from collections.abc import Iterable

from scaler.domain.labels import labels_match
from scaler.testing.fake_forge_server._base import FJob, FRunner, Repo
from scaler.testing.fake_forge_server.index import key_of
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
        self.ix.add_job(job)
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
                self.ix.task_given(job)
                runner.busy, runner.job_id, runner.had_task = True, job.id, True
        if job.done:
            job.completed_at = now
            holder = self.runners.get(job.runner_id) if job.runner_id is not None else None
            if holder is not None and holder.job_id == job.id:
                self._task_over(holder)
        self.emit(job, before)

    def forget_job(self, job: FJob) -> None:
        """Drop a job from the world (a load test's pruning of finished ones);
        the way to remove one, so the indexes forget it too."""
        if self.jobs.get(key_of(job)) is job:
            del self.jobs[key_of(job)]
        self.ix.drop_job(job)

    def jobs_with_status(self, *statuses: str) -> list[FJob]:
        """Jobs in any of ``statuses``, in id order (without a scan of every job)."""
        return self.ix.with_status(statuses)

    # A test may play a forge that keeps used ephemeral runners (none of the
    # three does): the scaler must then find and deregister them itself.
    drops_used_runners = True

    def _task_over(self, runner: FRunner) -> None:
        runner.busy, runner.job_id = False, None
        if runner.ephemeral and self.drops_used_runners:
            self.drop_runner(runner)  # every forge removes a used ephemeral runner

    def new_runner(self, name: str, *, labels: Iterable[str] = (), ephemeral: bool = False, version: str = "",
                   description: str = "") -> FRunner:
        runner = FRunner(self.next_id(), name, str(uuid.uuid4()), secrets.token_hex(20), tuple(labels),
                         ephemeral=ephemeral, version=version, description=description)
        self.runners[runner.id] = runner
        self.ix.add_runner(runner)
        return runner

    def drop_runner(self, runner: FRunner) -> None:
        if self.runners.get(key_of(runner)) is runner:
            del self.runners[key_of(runner)]
        self.ix.drop_runner(runner)

    def set_jit(self, runner: FRunner, jit: str) -> None:
        runner.jit = jit
        self.ix.add_runner(runner)

    def _live(self, runner: FRunner | None) -> FRunner | None:
        return runner if runner is not None and self.runners.get(key_of(runner)) is runner else None

    def _filed(self, job: FJob) -> bool:
        return self.jobs.get(key_of(job)) is job

    def runner_by_name(self, name: str) -> FRunner | None:
        return next((r for r in self.runners_named(name)), None)

    def runners_named(self, name: str) -> list[FRunner]:
        return [r for r in self.ix.by_name.get(name, {}).values() if self._live(r) is not None]

    def runner_by_uuid(self, value: str | None) -> FRunner | None:
        return self._live(self.ix.by_uuid.get(value or ""))

    def runner_by_jit(self, jit: str) -> FRunner | None:
        found = self._live(self.ix.by_jit.get(jit))
        return found if found is not None and found.jit is not None and hmac.compare_digest(found.jit, jit) else None

    def job_by_task(self, task_id: str) -> FJob | None:
        job = self.ix.by_task.get(int(task_id)) if task_id.isdigit() and len(task_id) < 20 else None
        return job if job is not None and self._filed(job) and str(job.task_id) == task_id else None

    def jobs_of_run(self, run_id: int) -> list[FJob]:
        return sorted((j for j in self.ix.by_run.get(run_id, {}).values() if self._filed(j)),
                      key=lambda j: j.id)

    def registration_token(self, scope: str) -> str:
        """The scope's current registration token; reusable until reset
        (``GetRegistrationToken`` on Gitea and Forgejo: the latest active one)."""
        if scope not in self.scope_tokens:
            self.scope_tokens[scope] = secrets.token_hex(20)
        return self.scope_tokens[scope]

    def pick_job(self, runner: FRunner, handle: str | None) -> FJob | None:
        """The job a runner asking for work gets, if any: the oldest waiting
        one it matches (with a handle, that attempt only)."""
        if runner.ephemeral and runner.had_task:
            return None
        candidates: Iterable[FJob]
        if handle:
            job = self.ix.by_handle.get(handle)
            candidates = [job] if job is not None and job.status == "waiting" and self._filed(job) else []
        else:
            candidates = self.ix.waiting()
        return next((j for j in candidates if labels_match(j.labels, runner.labels)), None)

    def jobs_in_scope(self, jobs: list[FJob], scope: str) -> list[FJob]:
        """``jobs`` within ``scope``; no test per job when every job is."""
        return jobs if self.ix.all_in(scope) else [j for j in jobs if self.in_scope(j, scope)]

    def in_scope(self, job: FJob, scope: str) -> bool:
        if scope.startswith("/repos/"):
            return scope == f"/repos/{job.repo.full_name}"
        if scope.startswith("/orgs/"):
            return job.repo.owner == scope[len("/orgs/"):]
        return True


__all__ = ["WorldMixin"]
