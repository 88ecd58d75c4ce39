"""Forgejo ≥ 15 adapter.

Every shape below is recorded with its source file and tag in
``tests/forges/shapes/forgejo.json``.

* Credentials: ``POST /{scope}/actions/runners {"name", "ephemeral": true}``
  → ``{id, uuid, token}`` (``routers/api/v1/shared/runners.go``, v15.0.0).
  The instance runs ``forgejo-runner one-job --url U --uuid X --token-url
  file:… --label L… --handle H [--wait]`` (forgejo-runner 12.8,
  ``internal/app/cmd/cmd.go``): the handle binds it to its job (Forgejo's
  ``FetchSingleTask``), and without ``--wait`` it asks once and exits 2 when
  no task came. Forgejo deletes an ephemeral runner when its task ends
  (``UpdateTask``); one that never got a task is deregistered here, and its
  job stays queued: demand for the next instance.
* Queued jobs: ``GET /{scope}/actions/runners/jobs`` → ``ActionRunJob[]``
  (``null`` when none; waiting *and* running jobs). ``run_id`` is absent on
  15/16 and present on main.
* Webhooks: Forgejo 15.0.x and 16.0 send **no** job webhooks (their
  ``modules/webhook/type.go`` has none). Later trees send one event per job
  status, ``workflow_job_{waiting,blocked,running,success,failure,cancelled,
  skipped}`` in ``X-Forgejo-Event`` and ``X-Forgejo-Event-Type`` (and the
  ``X-Gitea-*``, ``X-Gogs-*``, ``X-GitHub-*`` copies), body
  ``WorkflowJobPayload{action: new_job_attempt | job_status_changed |
  job_completed, job: ActionRunJob, run: ActionRun, repository?}``; the
  repository is ``run.repository`` (newer trees add a top-level
  ``repository``; both are accepted). UNCONFIRMED: read from a Forgejo tree
  after v16 (``tests/forges/shapes/forgejo.json`` says which); the release
  that ships it is not known, and ``check`` says so.
* A ``running`` job names no runner. It is tied to its instance by the job
  handle this adapter minted the runner with (``handle → runner name``, kept
  here); after a restart, by the runner listing (an ``active`` runner is busy).

Older Forgejo only has the shared registration token, used behind
``insecure_pass_registration_token: true``.
"""

from __future__ import annotations

import dataclasses
import json
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import structlog

from scaler.config import PoolConfig
from scaler.domain.job import Job, JobState
from scaler.domain.repository import gitea_repository_problem
from scaler.errors import ForgePermanentError, ForgeTemporaryError, MalformedDelivery
from scaler.forges._common import (
    as_id,
    first_header,
    load_object,
    obj,
    opt_id,
    parse_version,
    repository,
    str_list,
)
from scaler.forges._signature import FORGEJO, GITEA, GOGS, HUB_256
from scaler.forges.base import Delivery, RunnerLaunch
from scaler.forges.gitea import GiteaFamily, runner_config
from scaler.forges.options import ForgejoOptions, typed
from scaler.provider import CredentialFile, Finding
from scaler.secrets import Secret

log = structlog.get_logger("scaler.forges.forgejo")

# Job status (models/actions/status.go) -> state, or why it is ignored.
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
PAYLOAD_ACTIONS = ("new_job_attempt", "job_status_changed", "job_completed")
# UNCONFIRMED: the first Forgejo release with job webhooks. None of 15.0.0 …
# 15.0.3 or the v16.0 branch has them; a tree after v16 does (see
# tests/forges/shapes/forgejo.json). Used only for what ``check`` reports.
JOB_WEBHOOKS_SINCE = (17, 0, 0)
HANDLES_KEPT = 10_000
ONE_JOB_NO_TASK_EXIT = 2  # forgejo-runner one-job: no task received (poll.ErrNoTaskReceived)


def forgejo_state(status: str) -> JobState | str:
    return _STATUS.get(status, f"unknown job status {status!r}")


def _event_status(headers: Mapping[str, str]) -> tuple[str | None, str | None]:
    """(the event name, the job status it names) from the headers."""
    event = first_header(headers, "x-forgejo-event", "x-gitea-event", "x-gogs-event", "x-github-event")
    event_type = first_header(
        headers, "x-forgejo-event-type", "x-gitea-event-type", "x-gogs-event-type", "x-github-event-type"
    )
    named = next((e for e in (event_type, event) if e and e.startswith("workflow_job_")), None)
    return (named or event), (named.removeprefix("workflow_job_") if named else None)


def _repository_of(data: Mapping[str, Any], run: Mapping[str, Any] | None) -> str:
    top = data.get("repository")
    if isinstance(top, Mapping):
        return repository(top.get("full_name"), "repository.full_name", gitea_repository_problem)
    if run is not None and isinstance(run.get("repository"), Mapping):
        inner = run["repository"]
        return repository(inner.get("full_name"), "run.repository.full_name", gitea_repository_problem)
    raise MalformedDelivery("repository is missing (neither repository nor run.repository)")


def parse_forgejo_delivery(
    forge: str, headers: Mapping[str, str], body: bytes, runner_of: Mapping[str, str] | None = None
) -> Delivery:
    """Parse a Forgejo job delivery (no signature check). ``runner_of`` maps
    job handles to the runner minted for them (a running job names none)."""
    event, status = _event_status(headers)
    delivery_id = first_header(headers, "x-forgejo-delivery", "x-gitea-delivery", "x-github-delivery")
    if not event:
        raise MalformedDelivery("no X-Forgejo-Event header")
    data = load_object(body)
    if status is None:
        return Delivery(delivery_id, event, None, None, ignored=f"event {event!r} is not a job event")
    action = data.get("action")
    if action is None:
        raise MalformedDelivery("action is missing")
    if not isinstance(action, str):
        raise MalformedDelivery("action must be a string")
    job = obj(data.get("job"), "job")
    job_id = as_id(job.get("id"), "job.id")
    run_raw = data.get("run")
    run = obj(run_raw, "run") if run_raw is not None else None
    repo = _repository_of(data, run)
    state = forgejo_state(status)
    if not isinstance(state, JobState):
        return Delivery(delivery_id, event, action, None, ignored=state)
    run_id = opt_id(job.get("run_id"), "job.run_id")
    if run_id is None and run is not None:
        run_id = opt_id(run.get("id"), "run.id")
    parsed = job_from_forgejo(forge, job, job_id, repo, state, run_id)
    if parsed.handle and runner_of is not None and parsed.handle in runner_of:
        parsed = dataclasses.replace(parsed, runner_name=runner_of[parsed.handle])
    return Delivery(delivery_id, event, action, parsed)


def job_from_forgejo(
    forge: str, j: Mapping[str, Any], job_id: int, repo: str, state: JobState, run_id: int | None = None
) -> Job:
    """A Job from Forgejo's ``ActionRunJob`` (webhook or jobs listing)."""
    handle = j.get("handle")
    return Job(
        forge=forge,
        id=job_id,
        repository=repo,
        labels=str_list(j.get("runs_on"), "job.runs_on"),
        state=state,
        run_id=run_id if run_id is not None else opt_id(j.get("run_id"), "job.run_id"),
        handle=handle if isinstance(handle, str) and handle else None,
    )


class ForgejoForge(GiteaFamily):
    kind = "forgejo"
    product = "Forgejo"
    # 12.8 has ``one-job --handle/--url/--uuid/--token-url`` and exit 2.
    default_image = "data.forgejo.org/forgejo/runner:12"
    signature_headers = (HUB_256, FORGEJO, GITEA, GOGS)
    runners_key = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._repo_names: dict[int, str] = {}
        # job handle -> the runner minted for it (bounded; dropped when done)
        self._runner_of: OrderedDict[str, str] = OrderedDict()

    @property
    def forgejo_options(self) -> ForgejoOptions:
        return typed(self.config.options, ForgejoOptions)

    def parse(self, headers: Mapping[str, str], body: bytes) -> Delivery:
        delivery = parse_forgejo_delivery(self.name, headers, body, self._runner_of)
        job = delivery.job
        if job is not None and job.handle and job.state is JobState.COMPLETED:
            self._runner_of.pop(job.handle, None)
        return delivery

    def _bind(self, handle: str, runner_name: str) -> None:
        self._runner_of[handle] = runner_name
        self._runner_of.move_to_end(handle)
        while len(self._runner_of) > HANDLES_KEPT:
            self._runner_of.popitem(last=False)

    # --- queued jobs ----------------------------------------------------------

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
        data = resp.json()
        name = data.get("full_name") if isinstance(data, Mapping) else None
        checked = repository(name, "repository.full_name", gitea_repository_problem)
        if len(self._repo_names) > 10_000:
            self._repo_names.clear()
        self._repo_names[repo_id] = checked
        return checked

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
            # The listing holds waiting and running jobs (GetActionRunJobs).
            if not isinstance(j, Mapping) or j.get("status") != "waiting":
                continue
            try:
                job_id = as_id(j.get("id"), "job.id")
                repo = await self._repo_name(as_id(j.get("repo_id"), "job.repo_id"))
                if repo:
                    jobs.append(job_from_forgejo(self.name, j, job_id, repo, JobState.QUEUED))
            except MalformedDelivery as exc:
                log.warning("queued job skipped", forge=self.name, job=str(j.get("id"))[:40], reason=str(exc))
        return jobs

    # --- credentials ------------------------------------------------------------

    async def _supports_ephemeral(self) -> bool:
        if self.forgejo_options.assume_ephemeral_api:
            return True
        version = await self.get_version()
        return version is None or version >= (15, 0, 0)

    def _one_job(self, uuid: str, labels: list[str], handle: str | None, config: str | None) -> tuple[str, ...]:
        d = self._runner_dir()
        argv = ["forgejo-runner", "one-job"]
        if config is not None:
            argv += ["--config", config]
        argv += ["--url", self.config.url, "--uuid", uuid, "--token-url", f"file:{d}/token"]
        for label in labels:
            argv += ["--label", label]
        if handle:
            argv += ["--handle", handle]
        if self.forgejo_options.one_job_wait:
            argv.append("--wait")
        return tuple(argv)

    def _cache_config(self) -> str | None:
        """forgejo-runner ``config.yaml`` for a shared cache (``cache.secret``),
        or None: one-job needs no config file otherwise."""
        server, secret = self._cache()
        if not server:
            return None
        lines = ["cache:", "  enabled: true", f"  external_server: {json.dumps(server)}"]
        if secret:
            lines.append(f"  secret: {json.dumps(secret)}")
        return "\n".join(lines) + "\n"

    async def mint(self, pool: PoolConfig, runner_name: str, job: Job | None) -> RunnerLaunch:
        labels = list(pool.labels)
        handle = job.handle if job is not None else None
        if not await self._supports_ephemeral():
            return await self._mint_with_registration_token(pool, runner_name, handle)
        resp = await self.http.request(
            "POST",
            self.api(f"{self.scope_path}/actions/runners"),
            endpoint="create_runner",
            json={"name": runner_name, "description": "runner-scaler ephemeral runner", "ephemeral": True},
            ok=(200, 201),
        )
        data = resp.json()
        if not isinstance(data, Mapping) or not isinstance(data.get("uuid"), str) or not data.get("token"):
            raise ForgePermanentError(f"{self.name}: create-runner answer has no uuid/token")
        runner_id = as_id(data.get("id"), "id")
        d = self._runner_dir()
        files = [CredentialFile(f"{d}/token", Secret(str(data["token"])), 0o600)]
        cache = self._cache_config()
        if cache is not None:
            files.append(CredentialFile(f"{d}/config.yaml", Secret(cache), 0o600))
        if handle:
            self._bind(handle, runner_name)
        log.info("runner created", forge=self.name, runner=runner_name, runner_id=runner_id, handle=handle)
        argv = self._one_job(str(data["uuid"]), labels, handle, f"{d}/config.yaml" if cache else None)
        return RunnerLaunch(
            runner_id=runner_id,
            runner_name=runner_name,
            image=self._image(pool),
            command=self._command(argv),
            env={},
            files=tuple(files),
            bound_to_job=bool(handle),
        )

    async def _mint_with_registration_token(
        self, pool: PoolConfig, runner_name: str, handle: str | None
    ) -> RunnerLaunch:
        if not self.config.insecure_pass_registration_token:
            raise ForgePermanentError(
                f"{self.name}: Forgejo {self.version_text} cannot create ephemeral runners (needs 15); "
                "upgrade or set insecure_pass_registration_token: true"
            )
        log.warning("passing the registration token to an instance (insecure opt-in)", forge=self.name)
        resp = await self.http.request(
            "GET", self.api(f"{self.scope_path}/actions/runners/registration-token"), endpoint="registration_token"
        )
        data = resp.json()
        token = data.get("token") if isinstance(data, Mapping) else None
        if not isinstance(token, str) or not token:
            raise ForgePermanentError(f"{self.name}: registration-token answer has no token")
        labels = list(pool.labels)
        d = self._runner_dir()
        server, secret = self._cache()
        cfg = runner_config(runner_file_path=f"{d}/.runner", labels=labels, cache_server=server, cache_secret=secret)
        script = (
            f"forgejo-runner register --no-interactive --config {d}/config.yaml "
            f'--instance {json.dumps(self.config.url)} --token "$(cat {d}/registration-token)" '
            f"--name {json.dumps(runner_name)} --labels {json.dumps(','.join(labels))} "
            f"&& rm -f {d}/registration-token && exec forgejo-runner one-job --config {d}/config.yaml --wait"
        )
        return RunnerLaunch(
            runner_id=None,
            runner_name=runner_name,
            image=self._image(pool),
            command=self._command(("sh", "-c", script), keep_args=False),
            env={},
            files=(
                CredentialFile(f"{d}/registration-token", Secret(token), 0o600),
                CredentialFile(f"{d}/config.yaml", Secret(cfg), 0o600),
            ),
        )

    # --- check ------------------------------------------------------------------

    async def check(self) -> list[Finding]:
        subject = f"forge {self.name}"
        try:
            version = await self.get_version()
        except (ForgeTemporaryError, ForgePermanentError) as exc:
            return [Finding("error", subject, f"cannot read the version: {exc}")]
        out = [
            Finding("ok", subject, f"Forgejo version {self.version_text}"),
            Finding("ok", subject, f"scope {self.config.scope.kind} {self.config.scope.name or ''}".rstrip()),
        ]
        try:
            await self.list_runners()
            out.append(Finding("ok", subject, "runner listing: available (token can manage runners)"))
        except (ForgeTemporaryError, ForgePermanentError) as exc:
            out.append(Finding("error", subject, f"runner listing failed: {exc}"))
        out.append(self._credential_finding(version))
        try:
            listed = await self.list_queued_jobs()
        except (ForgeTemporaryError, ForgePermanentError):
            listed = None
        if listed is not None:
            out.append(Finding("ok", subject, "job listing: available (GET actions/runners/jobs, with job handles)"))
        else:
            out.append(Finding("warning", subject, "job listing: missing; lost webhooks are only covered by min_idle"))
        out.append(self._webhook_finding(version))
        out.append(await self._check_hooks())
        return out

    def _credential_finding(self, version: tuple[int, int, int] | None) -> Finding:
        subject = f"forge {self.name}"
        if version is None or version >= (15, 0, 0):
            return Finding("ok", subject, "ephemeral credentials: available (POST actions/runners, job handles; "
                           "needs forgejo-runner ≥ 12.8 in the image: one-job --handle asks FetchSingleTask, whose "
                           "message was read from Forgejo's server, not from its .proto)")
        if self.config.insecure_pass_registration_token:
            return Finding("warning", subject, "ephemeral credentials: missing before Forgejo 15; instances "
                           "receive the reusable registration token (insecure opt-in)")
        return Finding("error", subject, "ephemeral credentials: missing before Forgejo 15; upgrade or set "
                       "insecure_pass_registration_token: true")

    def _webhook_finding(self, version: tuple[int, int, int] | None) -> Finding:
        subject = f"forge {self.name}"
        if version is not None and version < JOB_WEBHOOKS_SINCE:
            return Finding(
                "warning",
                subject,
                f"job webhooks: Forgejo {self.version_text} sends none; jobs are found by polling every "
                f"{self.config.poll_interval:g}s (lower poll_interval for faster starts)",
            )
        return Finding(
            "warning",
            subject,
            "job webhooks: the workflow_job_* shape was read from an unreleased Forgejo tree (unconfirmed for "
            f"Forgejo {self.version_text}); polling every {self.config.poll_interval:g}s covers any it misses",
        )


def version_sends_job_webhooks(version_text: str | None) -> bool | None:
    """Whether a Forgejo version sends job webhooks (None: not known)."""
    version = parse_version(version_text or "")
    if version is None:
        return None
    return version >= JOB_WEBHOOKS_SINCE


__all__ = [
    "JOB_EVENTS",
    "JOB_WEBHOOKS_SINCE",
    "ONE_JOB_NO_TASK_EXIT",
    "PAYLOAD_ACTIONS",
    "ForgejoForge",
    "forgejo_state",
    "job_from_forgejo",
    "parse_forgejo_delivery",
    "version_sends_job_webhooks",
]
