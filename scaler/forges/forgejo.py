"""Forgejo ≥ 15 adapter.

Credentials: ``POST /{scope}/actions/runners {"name", "ephemeral": true}`` →
``{id, uuid, token}``; the instance receives a runner file with them and runs
``forgejo-runner one-job`` bound to the job's ``handle``. Older Forgejo only
has the shared registration token, used behind
``insecure_pass_registration_token: true``.

Webhooks (ASSUMED SHAPE — no job-level webhook was found in the reference
material, so this follows the issue's description and Forgejo's REST
``ActionRunJob``): one event per status, named in ``X-Forgejo-Event`` /
``X-Forgejo-Event-Type`` as ``workflow_job_<status>`` (``waiting``,
``running``, ``success``, ``failure``, ``cancelled``, ``skipped``,
``blocked``). Body::

    {"action": "<status>", "job": ActionRunJob{id, run_id, name, runs_on[],
     status, handle, attempt, task_id, repo_id, owner_id}, "repository":
     {"full_name": ...}, "sender": {...}}

``workflow_job`` is accepted as the job key too, as is the status taken from
the body when the event header is a plain ``workflow_job``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import structlog

from scaler.config import PoolConfig
from scaler.domain.job import Job, JobState
from scaler.errors import ForgePermanentError, ForgeTemporaryError, MalformedDelivery
from scaler.forges._common import as_int, first_header, load_object, obj, opt_int, str_list
from scaler.forges._signature import FORGEJO, GITEA, GOGS, HUB_256
from scaler.forges.base import Delivery, RunnerLaunch
from scaler.forges.gitea import GiteaFamily, runner_config, runner_file
from scaler.provider import CredentialFile, Finding
from scaler.secrets import Secret

log = structlog.get_logger("scaler.forges.forgejo")

_STATUS: dict[str, JobState | str] = {
    "waiting": JobState.QUEUED,
    "running": JobState.IN_PROGRESS,
    "success": JobState.COMPLETED,
    "failure": JobState.COMPLETED,
    "cancelled": JobState.COMPLETED,
    "skipped": "job was skipped; no runner needed",
    "blocked": "job is blocked (waiting for needs or approval); no runner needed yet",
}

JOB_EVENTS = tuple(f"workflow_job_{s}" for s in _STATUS)


def forgejo_state(status: str) -> JobState | str:
    return _STATUS.get(status, f"unknown job status {status!r}")


def parse_forgejo_delivery(forge: str, headers: Mapping[str, str], body: bytes) -> Delivery:
    event = first_header(headers, "x-forgejo-event", "x-gitea-event", "x-gogs-event", "x-github-event")
    event_type = first_header(headers, "x-forgejo-event-type", "x-gitea-event-type")
    delivery_id = first_header(headers, "x-forgejo-delivery", "x-gitea-delivery", "x-github-delivery")
    if not event:
        raise MalformedDelivery("no X-Forgejo-Event header")
    data = load_object(body)
    if event == "ping":
        return Delivery(delivery_id, event, None, None, ignored="ping")
    named = next((e for e in (event_type, event) if e and e.startswith("workflow_job_")), None)
    if named is None and event != "workflow_job":
        return Delivery(delivery_id, event, None, None, ignored=f"event {event!r} is not a job event")
    raw = data.get("job", data.get("workflow_job"))
    job_obj = obj(raw, "job")
    action = data.get("action")
    status = named.removeprefix("workflow_job_") if named else None
    if status is None:
        status = action if isinstance(action, str) else job_obj.get("status")
    if not isinstance(status, str) or not status:
        raise MalformedDelivery("no job status in the event name, action or job.status")
    job_id = as_int(job_obj.get("id"), "job.id")
    repo = obj(data.get("repository"), "repository").get("full_name")
    if not isinstance(repo, str) or "/" not in repo:
        raise MalformedDelivery("repository.full_name must be owner/repo")
    state = forgejo_state(status)
    ev_name = named or event
    if not isinstance(state, JobState):
        return Delivery(delivery_id, ev_name, status, None, ignored=state)
    return Delivery(delivery_id, ev_name, status, _job(forge, job_obj, job_id, repo, state))


def _job(forge: str, j: Mapping[str, Any], job_id: int, repo: str, state: JobState) -> Job:
    labels = str_list(j.get("runs_on", j.get("labels")), "job.runs_on")
    handle = j.get("handle")
    runner_name = j.get("runner_name")
    return Job(
        forge=forge,
        id=job_id,
        repository=repo,
        labels=labels,
        state=state,
        run_id=opt_int(j.get("run_id")),
        runner_name=runner_name if isinstance(runner_name, str) and runner_name else None,
        handle=handle if isinstance(handle, str) and handle else None,
    )


class ForgejoForge(GiteaFamily):
    kind = "forgejo"
    product = "Forgejo"
    default_image = "code.forgejo.org/forgejo/runner:11"
    signature_headers = (HUB_256, FORGEJO, GITEA, GOGS)
    runners_key = None

    def parse(self, headers: Mapping[str, str], body: bytes) -> Delivery:
        return parse_forgejo_delivery(self.name, headers, body)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._repo_names: dict[int, str] = {}

    async def _repo_name(self, repo_id: int) -> str | None:
        if self.config.scope.kind == "repository":
            return self.config.scope.name
        if repo_id in self._repo_names:
            return self._repo_names[repo_id]
        resp = await self.http.request(
            "GET", self.api(f"/repositories/{repo_id}"), endpoint="get_repository", ok=(200, 404)
        )
        if resp.status_code == 404:
            return None
        name = resp.json().get("full_name")
        if isinstance(name, str):
            if len(self._repo_names) > 10_000:
                self._repo_names.clear()
            self._repo_names[repo_id] = name
            return name
        return None

    async def list_queued_jobs(self) -> list[Job] | None:
        path = self.api(f"{self.scope_path}/actions/runners/jobs")
        resp = await self.http.request("GET", path, endpoint="list_jobs", ok=(200, 404))
        if resp.status_code == 404 and self.config.scope.kind == "instance":  # older alias
            resp = await self.http.request("GET", self.api("/admin/runners/jobs"), endpoint="list_jobs", ok=(200, 404))
        if resp.status_code == 404:
            return None
        data = resp.json()
        jobs: list[Job] = []
        for j in data if isinstance(data, list) else []:
            if not isinstance(j, Mapping) or j.get("status") not in (None, "waiting", "queued"):
                continue
            try:
                job_id = as_int(j.get("id"), "id")
                repo = await self._repo_name(as_int(j.get("repo_id", 0), "repo_id"))
                if repo:
                    jobs.append(_job(self.name, j, job_id, repo, JobState.QUEUED))
            except MalformedDelivery:
                continue
        return jobs

    async def _supports_ephemeral(self) -> bool:
        if self.config.options.get("assume_ephemeral_api"):
            return True
        version = await self.get_version()
        return version is None or version >= (15, 0, 0)

    async def mint(self, pool: PoolConfig, runner_name: str, job: Job | None) -> RunnerLaunch:
        labels = list(pool.labels)
        image = self._image(pool)
        d = self._runner_dir()
        handle = job.handle if job is not None else None
        one_job = ["forgejo-runner", "one-job", "--config", f"{d}/config.yaml"]
        if handle:
            one_job += ["--handle", handle]
        one_job.append("--wait")
        if await self._supports_ephemeral():
            resp = await self.http.request(
                "POST",
                self.api(f"{self.scope_path}/actions/runners"),
                endpoint="create_runner",
                json={"name": runner_name, "description": "runner-scaler ephemeral runner", "ephemeral": True},
                ok=(200, 201),
            )
            data = resp.json()
            if not data.get("uuid") or not data.get("token"):
                raise ForgePermanentError(f"{self.name}: create-runner answer has no uuid/token")
            runner_id = as_int(data.get("id"), "id")
            content = runner_file(
                runner_id=runner_id,
                uuid=str(data["uuid"]),
                name=runner_name,
                token=str(data["token"]),
                address=self.config.url,
                labels=labels,
            )
            log.info("runner created", forge=self.name, runner=runner_name, runner_id=runner_id, handle=handle)
            return RunnerLaunch(
                runner_id=runner_id,
                runner_name=runner_name,
                image=image,
                command=self._command(tuple(one_job), ("--handle", handle) if handle else ()),
                env={},
                files=self._files(content, labels),
                bound_to_job=bool(handle),
            )
        if not self.config.insecure_pass_registration_token:
            raise ForgePermanentError(
                f"{self.name}: Forgejo {self.version_text} cannot create ephemeral runners (needs 15); "
                "upgrade or set insecure_pass_registration_token: true"
            )
        log.warning("passing the registration token to an instance (insecure opt-in)", forge=self.name)
        resp = await self.http.request(
            "GET", self.api(f"{self.scope_path}/actions/runners/registration-token"), endpoint="registration_token"
        )
        token = resp.json().get("token")
        if not isinstance(token, str) or not token:
            raise ForgePermanentError(f"{self.name}: registration-token answer has no token")
        server, secret = self._cache()
        cfg = runner_config(runner_file_path=f"{d}/.runner", labels=labels, cache_server=server, cache_secret=secret)
        script = (
            f"forgejo-runner register --no-interactive --config {d}/config.yaml "
            f'--instance {json.dumps(self.config.url)} --token "$(cat {d}/registration-token)" '
            f"--name {json.dumps(runner_name)} --labels {json.dumps(','.join(labels))} "
            f"&& rm -f {d}/registration-token && exec " + " ".join(one_job)
        )
        return RunnerLaunch(
            runner_id=None,
            runner_name=runner_name,
            image=image,
            command=self._command(("sh", "-c", script)),
            env={},
            files=(
                CredentialFile(f"{d}/registration-token", Secret(token), 0o600),
                CredentialFile(f"{d}/config.yaml", Secret(cfg), 0o600),
            ),
        )

    async def check(self) -> list[Finding]:
        subject = f"forge {self.name}"
        out: list[Finding] = []
        try:
            version = await self.get_version()
        except (ForgeTemporaryError, ForgePermanentError) as exc:
            return [Finding("error", subject, f"cannot read the version: {exc}")]
        out.append(Finding("ok", subject, f"Forgejo version {self.version_text}"))
        out.append(Finding("ok", subject, f"scope {self.config.scope.kind} {self.config.scope.name or ''}".rstrip()))
        try:
            await self.list_runners()
            out.append(Finding("ok", subject, "runner listing: available (token can manage runners)"))
        except (ForgeTemporaryError, ForgePermanentError) as exc:
            out.append(Finding("error", subject, f"runner listing failed: {exc}"))
        if version is None or version >= (15, 0, 0):
            out.append(Finding("ok", subject, "ephemeral credentials: available (POST actions/runners, job handles)"))
        elif self.config.insecure_pass_registration_token:
            out.append(Finding("warning", subject, "ephemeral credentials: missing before Forgejo 15; instances "
                               "receive the reusable registration token (insecure opt-in)"))
        else:
            out.append(Finding("error", subject, "ephemeral credentials: missing before Forgejo 15; upgrade or set "
                               "insecure_pass_registration_token: true"))
        try:
            listed = await self.list_queued_jobs()
        except (ForgeTemporaryError, ForgePermanentError):
            listed = None
        if listed is not None:
            out.append(Finding("ok", subject, "job listing: available (lost webhooks are recovered by polling)"))
        else:
            out.append(Finding("warning", subject, "job listing: missing; lost webhooks are only covered by min_idle"))
        out.append(await self._check_hooks())
        return out
