"""An in-process fake forge adapter (config ``type: fake``).

It keeps jobs and runners in memory, signs deliveries with real HMAC-SHA256
(``X-Hub-Signature-256``) and speaks GitHub's ``workflow_job`` payload shape,
so tests can drive the whole core — webhook route included — without a
server. For a fake forge over HTTP that plays Gitea, Forgejo and GitHub, see
``scaler.testing.fake_forge_server``.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import uuid
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from scaler.config import ForgeConfig, PoolConfig
from scaler.domain.job import Job, JobState
from scaler.domain.repository import github_repository_problem
from scaler.errors import ForgeTemporaryError, MalformedDelivery, RunnerBusyError, SignatureError
from scaler.forges._common import as_int, load_object, obj, opt_id, repository, str_list
from scaler.forges.base import Delivery, RunnerInfo, RunnerLaunch
from scaler.provider import CredentialFile, Finding
from scaler.secrets import Secret

_ACTION_STATE = {
    "queued": JobState.QUEUED,
    "in_progress": JobState.IN_PROGRESS,
    "completed": JobState.COMPLETED,
}


@dataclass
class FakeRunner:
    id: int
    name: str
    token: Secret
    labels: tuple[str, ...]
    online: bool = False
    busy: bool = False


@dataclass
class FakeJob:
    id: int
    repository: str
    labels: tuple[str, ...]
    status: str = "queued"
    runner_name: str | None = None


@dataclass
class FakeForgeState:
    """The forge's side: jobs, runners, and knobs for failures."""

    secret: str = "fake-webhook-secret"  # noqa: S105 - a test double's default
    auto_online: bool = False  # minted runners come online at once
    can_list_jobs: bool = True
    bind_to_job: bool = False  # mint like Forgejo: a runner made for a job runs only that job
    jobs: dict[int, FakeJob] = field(default_factory=dict)
    runners: dict[int, FakeRunner] = field(default_factory=dict)
    fail: dict[str, deque[Exception]] = field(default_factory=dict)  # op -> next errors
    deregistered: list[int] = field(default_factory=list)
    minted: list[str] = field(default_factory=list)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1000))

    def inject(self, op: str, *errors: Exception) -> None:
        self.fail.setdefault(op, deque()).extend(errors)

    def maybe_fail(self, op: str) -> None:
        queue = self.fail.get(op)
        if queue:
            raise queue.popleft()

    # --- forge-side actions that produce deliveries -------------------------

    def queue_job(self, repository: str, labels: list[str]) -> tuple[int, dict[str, str], bytes]:
        job = FakeJob(next(self._ids), repository, tuple(labels))
        self.jobs[job.id] = job
        return (job.id, *self.delivery(job, "queued"))

    def start_job(self, job_id: int, runner_name: str) -> tuple[dict[str, str], bytes]:
        job = self.jobs[job_id]
        job.status, job.runner_name = "in_progress", runner_name
        for r in self.runners.values():
            if r.name == runner_name:
                r.busy, r.online = True, True
        return self.delivery(job, "in_progress")

    def complete_job(self, job_id: int) -> tuple[dict[str, str], bytes]:
        job = self.jobs[job_id]
        job.status = "completed"
        for r in self.runners.values():
            if r.name == job.runner_name:
                r.busy = False
        return self.delivery(job, "completed")

    def runner_online(self, name: str) -> None:
        for r in self.runners.values():
            if r.name == name:
                r.online = True

    def runner_by_name(self, name: str) -> FakeRunner | None:
        return next((r for r in self.runners.values() if r.name == name), None)

    def delivery(self, job: FakeJob, action: str) -> tuple[dict[str, str], bytes]:
        payload = {
            "action": action,
            "workflow_job": {
                "id": job.id,
                "run_id": job.id // 10,
                "status": job.status,
                "labels": list(job.labels),
                "runner_name": job.runner_name,
            },
            "repository": {"full_name": job.repository},
        }
        body = json.dumps(payload).encode()
        return self.sign(body, event="workflow_job"), body

    def sign(self, body: bytes, event: str = "workflow_job") -> dict[str, str]:
        digest = hmac.new(self.secret.encode(), body, hashlib.sha256).hexdigest()
        return {
            "content-type": "application/json",
            "x-github-event": event,
            "x-github-delivery": str(uuid.uuid4()),
            "x-hub-signature-256": f"sha256={digest}",
        }


class FakeForge:
    """The adapter the core talks to; all state lives in a FakeForgeState."""

    kind = "fake"
    drops_used_runners = False  # FakeForgeState keeps a runner until it is deregistered

    def __init__(self, config: ForgeConfig, state: FakeForgeState | None = None) -> None:
        self.name = config.name
        self.config = config
        if state is None:
            secrets = config.webhook_secrets()
            state = FakeForgeState(
                secret=secrets[0].reveal(), auto_online=getattr(config.options, "auto_online", True)
            )
        self.state = state

    def verify(self, headers: Mapping[str, str], body: bytes) -> None:
        sig = headers.get("x-hub-signature-256", "")
        if not sig:
            raise SignatureError("missing X-Hub-Signature-256")
        if not sig.startswith("sha256=") or not all(c in "0123456789abcdefABCDEF" for c in sig[7:]):
            # compare_digest raises TypeError on non-ASCII text: refuse first.
            raise SignatureError("malformed X-Hub-Signature-256")
        expected = hmac.new(self.state.secret.encode(), body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(sig[7:].lower(), expected):
            raise SignatureError("signature does not match")

    def parse(self, headers: Mapping[str, str], body: bytes) -> Delivery:
        event = headers.get("x-github-event", "")
        delivery_id = headers.get("x-github-delivery")
        if event != "workflow_job":
            return Delivery(delivery_id, event, None, None, ignored=f"event {event!r} is not workflow_job")
        # Strict types (the shared helpers the real adapters use): a string
        # where a list belongs must not become a tuple of characters.
        data = load_object(body)
        action = data.get("action")
        if not isinstance(action, str) or action not in _ACTION_STATE:
            raise MalformedDelivery("not a workflow_job delivery: bad action")
        wj = obj(data.get("workflow_job"), "workflow_job")
        repo = repository(obj(data.get("repository"), "repository").get("full_name"), "repository.full_name",
                          github_repository_problem)
        runner_name = wj.get("runner_name")
        job = Job(
            forge=self.name,
            id=as_int(wj.get("id"), "workflow_job.id"),
            repository=repo,
            labels=str_list(wj.get("labels"), "workflow_job.labels"),
            state=_ACTION_STATE[action],
            run_id=opt_id(wj.get("run_id"), "workflow_job.run_id"),
            runner_name=runner_name if isinstance(runner_name, str) and runner_name else None,
        )
        return Delivery(delivery_id, event, action, job)

    async def list_queued_jobs(self) -> list[Job] | None:
        self.state.maybe_fail("list_jobs")
        if not self.state.can_list_jobs:
            return None
        return [
            Job(self.name, j.id, j.repository, j.labels, JobState.QUEUED)
            for j in self.state.jobs.values()
            if j.status == "queued"
        ]

    async def list_runners(self) -> list[RunnerInfo]:
        self.state.maybe_fail("list_runners")
        return [_info(r) for r in self.state.runners.values()]

    async def get_runner(self, runner_id: int) -> RunnerInfo | None:
        self.state.maybe_fail("get_runner")
        r = self.state.runners.get(runner_id)
        return _info(r) if r else None

    async def mint(self, pool: PoolConfig, runner_name: str, job: Job | None) -> RunnerLaunch:
        self.state.maybe_fail("mint")
        runner = FakeRunner(
            next(self.state._ids), runner_name, Secret(f"fake-runner-token-{uuid.uuid4().hex}"), pool.labels
        )
        runner.online = self.state.auto_online
        self.state.runners[runner.id] = runner
        self.state.minted.append(runner_name)
        return RunnerLaunch(
            runner_id=runner.id,
            runner_name=runner_name,
            image="runner-scaler/fake-runner:latest",
            command=("/runner/run", "--once"),
            env={"RUNNER_NAME": runner_name},
            files=(CredentialFile("/runner/.credential", runner.token),),
            bound_to_job=self.state.bind_to_job and job is not None,
        )

    async def deregister(self, runner_id: int) -> None:
        self.state.maybe_fail("deregister")
        runner = self.state.runners.get(runner_id)
        if runner is None:
            return
        if runner.busy:
            raise RunnerBusyError(f"runner {runner.name} is busy")
        del self.state.runners[runner_id]
        self.state.deregistered.append(runner_id)

    async def delete_runner(self, runner_id: int) -> None:
        await self.deregister(runner_id)  # one call either way here

    async def check(self) -> list[Finding]:
        return [Finding("ok", f"forge {self.name}", "fake forge (in-process); job listing available")]

    async def aclose(self) -> None:
        return None


def _info(r: FakeRunner) -> RunnerInfo:
    return RunnerInfo(r.id, r.name, r.online, r.busy, r.labels, ephemeral=True)


__all__ = ["FakeForge", "FakeForgeState", "ForgeTemporaryError"]
_ = Any
