"""Gitea ≥ 1.24 adapter.

Credential flow (DESIGN principle 5): the scaler fetches the scope's
registration token and itself calls the runner service's ``Register`` RPC
(ConnectRPC, JSON codec) with ``ephemeral: true``. The instance receives only
the resulting act_runner ``.runner`` file and runs ``act_runner daemon``,
which takes one task and exits because the file says ``ephemeral``
(act_runner ``internal/app/cmd/daemon.go``, v0.2.13 … v3.3.0). Gitea deletes
the runner record itself when that task ends (``models/actions/task.go``
``UpdateTask``); one that never got a task stays until it is deregistered.
Only with ``insecure_pass_registration_token: true`` is the token written into
the instance (for forges without an ephemeral Register).

Webhook (``X-Gitea-Event: workflow_job``; every shape is recorded with its
source in ``tests/forges/shapes/gitea.json``): ``{action, workflow_job:
ActionWorkflowJob, repository, sender, organization?}``. ``action`` is the
job's status (``services/webhook/notifier.go`` at 1.24,
``services/convert/convert.go`` ``ToActionsStatus`` since 1.25): Waiting →
``queued`` (demand), Blocked → ``waiting`` (ignored), Running (and, since
1.27, Cancelling) → ``in_progress``, done → ``completed`` with a conclusion
(1.24 sends an empty one for skipped jobs), and ``""`` for a status it does not
know (1.24 … 1.26). ``runner_id`` / ``runner_name`` are left out until a
runner takes the job.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping
from typing import Any

import httpx
import structlog

from scaler.clock import Clock, SystemClock
from scaler.config import ForgeConfig, PoolConfig
from scaler.domain.job import Job, JobState
from scaler.domain.repository import gitea_repository_problem
from scaler.errors import (
    ForgeOutcomeUnknown,
    ForgePermanentError,
    ForgeTemporaryError,
    MalformedDelivery,
    RunnerBusyError,
)
from scaler.forges._common import (
    action_state,
    as_id,
    first_header,
    gitea_scope_path,
    iso_to_epoch,
    load_object,
    obj,
    opt_id,
    parse_answer,
    parse_each,
    parse_version,
    repository,
    repository_from_url,
    str_list,
)
from scaler.forges._http import NOT_SENT, ForgeHTTP, describe_transport_error
from scaler.forges._metrics import FORGE_REQUESTS
from scaler.forges._signature import GITEA, GOGS, HUB_256, verify_signature
from scaler.forges.base import Delivery, RunnerInfo, RunnerLaunch
from scaler.forges.options import ForgejoOptions, GiteaOptions
from scaler.provider import CredentialFile, Finding
from scaler.secrets import Secret, read_secret_file

log = structlog.get_logger("scaler.forges.gitea")

PAGE_SIZE = 50
MAX_PAGES = 200
RUNNER_DIR = "/data"
REGISTER_RPC = "/api/actions/runner.v1.RunnerService/Register"

# --- parsing ------------------------------------------------------------------

_GITEA_ACTIONS: dict[str, JobState | str] = {
    "queued": JobState.QUEUED,
    "waiting": "job is blocked (waiting for needs, approval or concurrency); no runner needed yet",
    "in_progress": JobState.IN_PROGRESS,
    "completed": JobState.COMPLETED,
    "": "job status unknown to the forge (empty action); no runner needed",
}


def gitea_state(action: str | None, status: str | None, conclusion: str | None) -> JobState | str:
    """The job state a Gitea ``workflow_job`` delivery reports, or why it is ignored."""
    if action == "":
        return _GITEA_ACTIONS[""]
    return action_state(_GITEA_ACTIONS, action, status, conclusion)


def _opt_str(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def parse_gitea_delivery(forge: str, headers: Mapping[str, str], body: bytes) -> Delivery:
    """Parse a Gitea delivery (no signature check)."""
    event = first_header(headers, "x-gitea-event", "x-gogs-event", "x-github-event")
    delivery_id = first_header(headers, "x-gitea-delivery", "x-gogs-delivery", "x-github-delivery")
    if not event:
        raise MalformedDelivery("no X-Gitea-Event header")
    data = load_object(body)
    if event == "ping":
        return Delivery(delivery_id, event, None, None, ignored="ping")
    if event != "workflow_job":
        return Delivery(delivery_id, event, None, None, ignored=f"event {event!r} is not a job event")
    action = data.get("action")
    if action is None:
        raise MalformedDelivery("action is missing")
    if not isinstance(action, str):
        raise MalformedDelivery("action must be a string")
    wj = obj(data.get("workflow_job"), "workflow_job")
    job_id = as_id(wj.get("id"), "workflow_job.id")
    repo = repository(obj(data.get("repository"), "repository").get("full_name"), "repository.full_name",
                      gitea_repository_problem)
    state = gitea_state(action, _opt_str(wj.get("status")), _opt_str(wj.get("conclusion")))
    if not isinstance(state, JobState):
        return Delivery(delivery_id, event, action, None, ignored=state)
    return Delivery(delivery_id, event, action, job_from_gitea(forge, wj, repo, state, job_id))


def job_from_gitea(forge: str, wj: Mapping[str, Any], repo: str, state: JobState, job_id: int | None = None) -> Job:
    """A Job from Gitea's ``ActionWorkflowJob`` (webhook or jobs listing)."""
    return Job(
        forge=forge,
        id=job_id if job_id is not None else as_id(wj.get("id"), "workflow_job.id"),
        repository=repo,
        labels=str_list(wj.get("labels"), "workflow_job.labels"),
        state=state,
        run_id=opt_id(wj.get("run_id"), "workflow_job.run_id"),
        runner_name=_opt_str(wj.get("runner_name")),
        queued_at=iso_to_epoch(wj.get("created_at")),
        started_at=iso_to_epoch(wj.get("started_at")) if state is not JobState.QUEUED else None,
        completed_at=iso_to_epoch(wj.get("completed_at")) if state is JobState.COMPLETED else None,
    )


def _register_error(forge: str, resp: httpx.Response) -> ForgeTemporaryError | ForgePermanentError:
    """A failed ``Register``: a Connect error ``{code, message}``. Gitea
    returns plain errors, which connect-go sends as ``unknown`` / HTTP 500
    (``routers/api/actions/runner/runner.go``): a token it does not know is
    permanent, one it has replaced ("invalidated") is not (the next mint
    fetches the current one)."""
    code = message = ""
    with contextlib.suppress(ValueError, AttributeError):
        data = resp.json()
        code, message = str(data.get("code", "")), str(data.get("message", ""))[:200]
    msg = f"{forge}: Register RPC failed: HTTP {resp.status_code} {code} {message}".rstrip()
    final: ForgeTemporaryError | ForgePermanentError
    if "registration token not found" in message:
        final = ForgePermanentError(msg)
    elif resp.status_code >= 500 or resp.status_code == 429 or code in ("unavailable", "resource_exhausted"):
        final = ForgeTemporaryError(msg)
    else:
        final = ForgePermanentError(msg)
    token_refused = (
        "registration token" in message
        or "invalidated" in message
        or resp.status_code in (401, 403)
        or code in ("permission_denied", "unauthenticated")
    )
    # The cached token may be the one refused: the caller fetches it anew once.
    return RegistrationRefused(msg, final) if token_refused else final


# --- act_runner files -----------------------------------------------------------


def runner_file(*, runner_id: int, uuid: str, name: str, token: str, address: str, labels: list[str]) -> str:
    """act_runner's ``.runner`` JSON (what ``act_runner register`` writes)."""
    return json.dumps(
        {
            "WARNING": "This file is automatically generated by runner-scaler. Do not edit it manually.",
            "id": runner_id,
            "uuid": uuid,
            "name": name,
            "token": token,
            "address": address,
            "labels": labels,
            "ephemeral": True,
        },
        indent=2,
    )


def runner_config(
    *, runner_file_path: str, labels: list[str], cache_server: str | None, cache_secret: str | None
) -> str:
    """act_runner ``config.yaml``: one task, the labels, an optional shared cache."""
    lines = [
        "log:",
        "  level: info",
        "runner:",
        f"  file: {json.dumps(runner_file_path)}",
        "  capacity: 1",
        "  labels:",
        *[f"    - {json.dumps(x)}" for x in labels],
        "cache:",
    ]
    if cache_server:
        lines += ["  enabled: true", f"  external_server: {json.dumps(cache_server)}"]
        if cache_secret:
            lines.append(f"  external_secret: {json.dumps(cache_secret)}")
    else:
        lines.append("  enabled: true")
    return "\n".join(lines) + "\n"


# --- the adapter ----------------------------------------------------------------


class RegistrationRefused(ForgePermanentError):
    """The Register RPC refused the registration token (reset, or expired);
    ``final`` is what it means when a freshly fetched token is refused too."""

    def __init__(self, message: str, final: ForgeTemporaryError | ForgePermanentError) -> None:
        super().__init__(message)
        self.final = final



class GiteaFamily:
    """What Gitea and Forgejo share: REST layout, signatures, runners."""

    kind = "gitea"
    product = "Gitea"
    default_image = "docker.io/gitea/act_runner:latest"
    signature_headers: tuple[str, ...] = (HUB_256, GITEA, GOGS)
    runners_key: str | None = "runners"  # Gitea wraps lists; Forgejo answers a bare array
    # Gitea models/actions/task.go UpdateTask (1.24+) and Forgejo
    # routers/api/actions/runner/runner.go UpdateTask delete an ephemeral
    # runner when its task ends.
    drops_used_runners = True

    def __init__(
        self,
        config: ForgeConfig,
        *,
        clock: Clock | None = None,
    ) -> None:
        self.name = config.name
        self.config = config
        self.clock = clock or SystemClock()
        self._secrets = config.webhook_secrets()
        self._token = config.token()
        self.scope_path = gitea_scope_path(config.scope.kind, config.scope.name)
        self.http = ForgeHTTP(
            forge=config.name,
            base_url=config.url,
            timeout=config.request_timeout,
            auth=self._auth_headers,
            headers={"accept": "application/json", "user-agent": "runner-scaler"},
            sleep=self.clock.sleep,
            now=self.clock.now,
            concurrency=config.concurrency,
        )
        self.version: tuple[int, int, int] | None = None
        self.version_text: str | None = None
        if config.insecure_pass_registration_token:
            log.warning(
                "insecure_pass_registration_token is on: instances receive the scope's reusable registration token",
                forge=self.name,
            )

    async def _auth_headers(self) -> Mapping[str, str]:
        if self._token is None:
            return {}
        return {"authorization": f"token {self._token.reveal()}"}

    def api(self, path: str) -> str:
        return "/api/v1" + path

    # --- webhooks ---------------------------------------------------------------

    def verify(self, headers: Mapping[str, str], body: bytes) -> None:
        verify_signature(headers, body, self._secrets, accepted=self.signature_headers)

    def parse(self, headers: Mapping[str, str], body: bytes) -> Delivery:
        return parse_gitea_delivery(self.name, headers, body)

    # --- version ----------------------------------------------------------------

    async def get_version(self) -> tuple[int, int, int] | None:
        if self.version is None:
            resp = await self.http.request("GET", self.api("/version"), endpoint="version")
            text = resp.json().get("version", "")
            self.version_text = str(text)
            self.version = parse_version(self.version_text)
        return self.version

    # --- runners ------------------------------------------------------------------

    async def _paged(self, path: str, endpoint: str, key: str | None, params: Mapping[str, Any]) -> list[Any]:
        """Page through a list: ``{key: [...], total_count}`` (Gitea) or a bare
        array with ``X-Total-Count`` (Forgejo; ``null`` when empty)."""
        items: list[Any] = []
        for page in range(1, MAX_PAGES + 1):
            resp = await self.http.request(
                "GET", self.api(path), endpoint=endpoint, params={**params, "page": page, "limit": PAGE_SIZE}
            )
            data = resp.json()
            total: object = None
            if key is None:
                batch = data if isinstance(data, list) else []
                total_header = resp.headers.get("x-total-count", "")
                total = int(total_header) if total_header.isdigit() and len(total_header) < 12 else None
            else:
                found = data.get(key) if isinstance(data, Mapping) else None
                batch = found if isinstance(found, list) else []
                total = data.get("total_count") if isinstance(data, Mapping) else None
            items.extend(batch)
            if not batch or len(batch) < PAGE_SIZE or (isinstance(total, int) and len(items) >= total):
                break
        return items

    def _runner_info(self, r: object) -> RunnerInfo:
        """A runner as listed (Gitea: ``status`` online/offline + ``busy``;
        Forgejo: ``status`` offline/idle/active). Raises MalformedDelivery."""
        if not isinstance(r, Mapping):
            raise MalformedDelivery("runner must be a JSON object")
        status = str(r.get("status") or "").lower()
        raw_labels = r.get("labels")
        labels = tuple(
            str(x.get("name", "")) if isinstance(x, Mapping) else str(x)
            for x in (raw_labels if isinstance(raw_labels, list) else [])
        )
        name = r.get("name")
        return RunnerInfo(
            id=as_id(r.get("id"), "runner.id"),
            name=name if isinstance(name, str) else "",
            online=status not in ("offline", "unspecified", ""),
            busy=r.get("busy") is True or status == "active",
            labels=labels,
            ephemeral=r.get("ephemeral") is True,
        )

    async def list_runners(self) -> list[RunnerInfo]:
        raw = await self._paged(f"{self.scope_path}/actions/runners", "list_runners", self.runners_key, {})
        return parse_each(raw, self._runner_info, log, self.name, "runner listing entry")

    async def get_runner(self, runner_id: int) -> RunnerInfo | None:
        resp = await self.http.request(
            "GET", self.api(f"{self.scope_path}/actions/runners/{runner_id}"), endpoint="get_runner", ok=(200, 404)
        )
        if resp.status_code == 404:
            return None
        return parse_answer(self._runner_info, resp.json(), self.name, f"GET runner {runner_id}")

    async def deregister(self, runner_id: int) -> None:
        runner = await self.get_runner(runner_id)
        if runner is None:
            return
        if runner.busy:
            raise RunnerBusyError(f"{self.name}: runner {runner_id} is busy")
        await self.delete_runner(runner_id)

    async def delete_runner(self, runner_id: int) -> None:
        resp = await self.http.request(
            "DELETE",
            self.api(f"{self.scope_path}/actions/runners/{runner_id}"),
            endpoint="deregister",
            ok=(200, 204, 404, 409, 422),
        )
        if resp.status_code in (409, 422):
            raise RunnerBusyError(f"{self.name}: runner {runner_id} refused deletion (HTTP {resp.status_code})")

    # --- launch helpers -------------------------------------------------------------

    @property
    def options(self) -> GiteaOptions | ForgejoOptions:
        opts = self.config.options
        if not isinstance(opts, GiteaOptions | ForgejoOptions):
            raise TypeError(f"forge {self.name}: options are {type(opts).__name__}")
        return opts

    def _image(self, pool: PoolConfig) -> str:
        return pool.image or self.options.runner_image or self.default_image

    def _runner_dir(self) -> str:
        return self.options.runner_dir.rstrip("/") or RUNNER_DIR

    def _cache(self) -> tuple[str | None, str | None]:
        secret = None
        if self.options.cache_secret_file is not None:
            secret = read_secret_file(self.options.cache_secret_file).reveal()
        return self.options.cache_server, secret

    def _command(self, default: tuple[str, ...], *, keep_args: bool = True) -> tuple[str, ...]:
        """The runner command; ``options.runner_command`` replaces the program
        (e.g. with a stand-in runner in tests) and, unless ``keep_args`` is
        off (a shell script), gets the real runner's arguments."""
        override = self.options.runner_command
        if override:
            return (*override, *default[1:]) if keep_args else override
        return default

    def _files(self, runner_json: str, labels: list[str]) -> tuple[CredentialFile, ...]:
        d = self._runner_dir()
        server, secret = self._cache()
        cfg = runner_config(runner_file_path=f"{d}/.runner", labels=labels, cache_server=server, cache_secret=secret)
        return (
            CredentialFile(f"{d}/.runner", Secret(runner_json), 0o600),
            CredentialFile(f"{d}/config.yaml", Secret(cfg), 0o600),
        )

    async def _check_hooks(self) -> Finding:
        from scaler.forges.webhooks_admin import list_hooks

        subject = f"forge {self.name}"
        try:
            hooks = await list_hooks(self, None)
        except (ForgeTemporaryError, ForgePermanentError) as exc:
            return Finding("warning", subject, f"webhooks: cannot list ({exc})")
        if any(h.get("job_events") for h in hooks):
            return Finding("ok", subject, "webhooks: a hook with job events exists")
        return Finding(
            "warning",
            subject,
            "webhooks: none with job events; run `runner-scaler webhook install` "
            "(until then only polling and min_idle create demand)",
        )

    async def aclose(self) -> None:
        await self.http.aclose()


class GiteaForge(GiteaFamily):
    kind = "gitea"
    product = "Gitea"

    def __init__(
        self,
        config: ForgeConfig,
        *,
        clock: Clock | None = None,
    ) -> None:
        super().__init__(config, clock=clock)
        self._jobs_listing: bool | None = None
        self._reg_token: Secret | None = None

    # --- queued jobs --------------------------------------------------------------

    def _jobs_path(self) -> str:
        return f"{self.scope_path}/actions/jobs"

    async def list_queued_jobs(self) -> list[Job] | None:
        if self._jobs_listing is False:
            return None
        version = await self.get_version()
        if version is not None and version < (1, 25, 0) and self._jobs_listing is None:
            self._jobs_listing = False
            return None
        items: list[Any] = []
        try:
            items = await self._paged(self._jobs_path(), "list_jobs", "jobs", {"status": "queued"})
        except ForgePermanentError as exc:
            if "HTTP 404" in str(exc) or "HTTP 405" in str(exc):
                self._jobs_listing = False
                return None
            raise
        self._jobs_listing = True
        queued = [wj for wj in items if isinstance(wj, Mapping) and wj.get("status") == "queued"]
        return parse_each(queued, self._listed_job, log, self.name, "queued job")

    def _listed_job(self, wj: Mapping[str, Any]) -> Job:
        """A job of the listing. The listing names no repository but in the
        job's URLs (``{repo.APIURL}/actions/jobs/{id}``, ``…/runs/{run}``)."""
        if self.config.scope.kind == "repository" and self.config.scope.name:
            repo: str | None = self.config.scope.name
        else:
            repo = repository_from_url(wj.get("url"), wj.get("run_url"))
        if repo is None:
            raise MalformedDelivery("url names no repository")
        checked = repository(repo, "repository (from url)", gitea_repository_problem)
        return job_from_gitea(self.name, wj, checked, JobState.QUEUED)

    # --- credentials ----------------------------------------------------------------

    async def _registration_token(self) -> Secret:
        path = self.api(f"{self.scope_path}/actions/runners/registration-token")
        resp = await self.http.request("POST", path, endpoint="registration_token", ok=(200, 201, 404, 405))
        if resp.status_code in (404, 405):  # older Gitea: GET
            resp = await self.http.request("GET", path, endpoint="registration_token")
        token = resp.json().get("token")
        if not isinstance(token, str) or not token:
            raise ForgePermanentError(f"{self.name}: registration-token answer has no token")
        return Secret(token)

    async def _register_with_cached_token(self, name: str, labels: list[str]) -> Mapping[str, Any]:
        """Register with the scope's registration token, fetched once and kept
        (Gitea hands out the same token until someone resets it): one forge
        call per mint, not two. A token the forge refuses is fetched anew
        once; a refused Register made no runner, so trying again is safe."""
        if self._reg_token is None:
            self._reg_token = await self._registration_token()
        try:
            return await self._register(self._reg_token, name, labels)
        except RegistrationRefused:
            self._reg_token = await self._registration_token()
        try:
            return await self._register(self._reg_token, name, labels)
        except RegistrationRefused as exc:
            raise exc.final from None

    async def _register(self, reg: Secret, name: str, labels: list[str]) -> Mapping[str, Any]:
        """The runner ``Register`` RPC (ConnectRPC unary, JSON codec). Never retried."""
        body = {"name": name, "token": reg.reveal(), "version": "runner-scaler", "labels": labels, "ephemeral": True}
        try:
            resp = await self.http.send(
                "POST",
                REGISTER_RPC,
                json=body,
                headers={"content-type": "application/json", "connect-protocol-version": "1"},
            )
        except httpx.TransportError as exc:
            message = f"{self.name}: POST {self.config.url}{REGISTER_RPC}: {describe_transport_error(exc)}"
            if isinstance(exc, NOT_SENT):
                raise ForgeTemporaryError(message) from None
            raise ForgeOutcomeUnknown(message) from None
        FORGE_REQUESTS.labels(self.name, "register", str(resp.status_code)).inc()
        if resp.status_code != 200:
            raise _register_error(self.name, resp)
        runner = resp.json().get("runner")
        if not isinstance(runner, Mapping) or not runner.get("uuid") or not runner.get("token"):
            raise ForgePermanentError(f"{self.name}: Register RPC answer has no runner")
        return runner

    async def mint(self, pool: PoolConfig, runner_name: str, job: Job | None) -> RunnerLaunch:
        labels = list(pool.labels)
        image = self._image(pool)
        d = self._runner_dir()
        if self.config.insecure_pass_registration_token:
            log.warning("passing the registration token to an instance (insecure opt-in)", forge=self.name)
            reg = await self._registration_token()
            server, secret = self._cache()
            cfg = runner_config(
                runner_file_path=f"{d}/.runner", labels=labels, cache_server=server, cache_secret=secret
            )
            script = (
                f"act_runner register --no-interactive --ephemeral --config {d}/config.yaml "
                f'--instance {json.dumps(self.config.url)} --token "$(cat {d}/registration-token)" '
                f"--name {json.dumps(runner_name)} --labels {json.dumps(','.join(labels))} "
                f"&& rm -f {d}/registration-token && exec act_runner daemon --config {d}/config.yaml"
            )
            return RunnerLaunch(
                runner_id=None,
                runner_name=runner_name,
                image=image,
                command=self._command(("sh", "-c", script), keep_args=False),
                env={},
                files=(
                    CredentialFile(f"{d}/registration-token", reg, 0o600),
                    CredentialFile(f"{d}/config.yaml", Secret(cfg), 0o600),
                ),
            )
        version = await self.get_version()
        if version is not None and version < (1, 24, 0):
            raise ForgePermanentError(
                f"{self.name}: Gitea {self.version_text} ignores ephemeral registration (needs 1.24); "
                "upgrade or set insecure_pass_registration_token: true"
            )
        runner = await self._register_with_cached_token(runner_name, labels)
        runner_id = as_id(runner.get("id"), "runner.id")
        content = runner_file(
            runner_id=runner_id,
            uuid=str(runner["uuid"]),
            name=runner_name,
            token=str(runner["token"]),
            address=self.config.url,
            labels=labels,
        )
        log.info("runner registered", forge=self.name, runner=runner_name, runner_id=runner_id, ephemeral=True)
        return RunnerLaunch(
            runner_id=runner_id,
            runner_name=runner_name,
            image=image,
            command=self._command(("act_runner", "daemon", "--config", f"{d}/config.yaml")),
            env={},
            files=self._files(content, labels),
        )

    # --- check --------------------------------------------------------------------

    async def check(self) -> list[Finding]:
        subject = f"forge {self.name}"
        out: list[Finding] = []
        try:
            version = await self.get_version()
        except (ForgeTemporaryError, ForgePermanentError) as exc:
            return [Finding("error", subject, f"cannot read the version: {exc}")]
        out.append(Finding("ok", subject, f"{self.product} version {self.version_text}"))
        out.append(Finding("ok", subject, f"scope {self.config.scope.kind} {self.config.scope.name or ''}".rstrip()))
        try:
            await self.list_runners()
            out.append(Finding("ok", subject, "runner listing: available (token can manage runners)"))
        except (ForgeTemporaryError, ForgePermanentError) as exc:
            out.append(Finding("error", subject, f"runner listing failed: {exc}"))
        if version is not None and version < (1, 24, 0):
            if self.config.insecure_pass_registration_token:
                out.append(
                    Finding(
                        "warning",
                        subject,
                        "ephemeral credentials: missing before 1.24; "
                        "instances receive the reusable registration token (insecure opt-in)",
                    )
                )
            else:
                out.append(
                    Finding(
                        "error",
                        subject,
                        "ephemeral credentials: missing before Gitea 1.24; upgrade or "
                        "set insecure_pass_registration_token: true",
                    )
                )
        else:
            out.append(Finding("ok", subject, "ephemeral credentials: available (Register RPC with ephemeral: true)"))
            if self.config.insecure_pass_registration_token:
                out.append(
                    Finding(
                        "warning",
                        subject,
                        "insecure_pass_registration_token is on although the forge "
                        "supports ephemeral registration: instances receive a reusable token",
                    )
                )
        jobs = await self.list_queued_jobs_probe()
        if jobs:
            out.append(Finding("ok", subject, "job listing: available (lost webhooks are recovered by polling)"))
        else:
            out.append(
                Finding(
                    "warning",
                    subject,
                    "job listing: missing (needs Gitea 1.25); lost webhooks are only covered by pools' min_idle",
                )
            )
        out.append(await self._check_hooks())
        return out

    async def list_queued_jobs_probe(self) -> bool:
        try:
            return await self.list_queued_jobs() is not None
        except (ForgeTemporaryError, ForgePermanentError):
            return False
