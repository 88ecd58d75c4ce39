"""The runner side of the fake forge.

Gitea / Forgejo: the ``runner.v1.RunnerService`` ConnectRPC service under
``/api/actions/`` with connect-go's JSON codec (proto3 JSON: lowerCamelCase,
zero values left out, int64 as strings; ``tests/forges/shapes/runner.json``):

* ``Register`` (no runner credentials): refuses with plain errors, which
  connect-go sends as ``unknown`` / HTTP 500 (``routers/api/actions/runner/
  runner.go``); the registration token stays valid.
* ``Declare``, ``FetchTask``, ``UpdateTask``, ``UpdateLog`` and, on Forgejo,
  ``FetchSingleTask`` (a job handle picks that attempt) — each needs
  ``x-runner-uuid`` / ``x-runner-token`` (``unauthenticated`` otherwise,
  also for a used ephemeral runner: its record is gone).

GitHub: the real broker protocol is out of scope; a stand-in protocol under
``/_fake/github-runner/{online,acquire,complete}`` authenticated by the JIT
config plays the runner's part.
"""

from __future__ import annotations

import base64
import hmac
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from scaler.testing.fake_forge_server._base import FJob, FRunner
from scaler.testing.fake_forge_server.rest_github import GitHubRest

_HTTP = {"unknown": 500, "unauthenticated": 401, "invalid_argument": 400, "not_found": 404, "unimplemented": 404,
         "internal": 500, "permission_denied": 403}
_RESULTS = {"RESULT_SUCCESS": "success", "RESULT_FAILURE": "failure", "RESULT_CANCELLED": "cancelled",
            "RESULT_SKIPPED": "skipped", 1: "success", 2: "failure", 3: "cancelled", 4: "skipped"}


def connect_error(code: str, message: str) -> Response:
    return JSONResponse({"code": code, "message": message}, status_code=_HTTP[code])


def _proto_runner(r: FRunner, *, with_token: bool = True) -> dict[str, Any]:
    """``runner.v1.Runner`` in proto3 JSON: empty fields left out."""
    out: dict[str, Any] = {"id": str(r.id), "uuid": r.uuid, "name": r.name}
    if with_token:
        out["token"] = r.token
    if r.version:
        out["version"] = r.version
    if r.labels:
        out["labels"] = list(r.labels)
    if r.ephemeral:
        out["ephemeral"] = True
    return out


class RunnerRpc(GitHubRest):
    async def _rpc(self, request: Request, method: str) -> Response:
        try:
            body = await request.json()
        except ValueError:
            return connect_error("invalid_argument", "body is not JSON")
        if not isinstance(body, dict):
            return connect_error("invalid_argument", "body is not a JSON object")
        if method == "Register":
            return self._register(body)
        runner = self._rpc_runner(request)
        if runner is None:
            return connect_error("unauthenticated", "unregistered runner")
        if method == "Declare":
            runner.labels = tuple(body.get("labels") or runner.labels)
            runner.version = str(body.get("version", runner.version))
            runner.online = True
            return JSONResponse({"runner": _proto_runner(runner)})
        if method == "FetchTask":
            return self._fetch(runner, None)
        if method == "FetchSingleTask" and self.kind == "forgejo":
            handle = body.get("handle")
            return self._fetch(runner, handle if isinstance(handle, str) and handle else None)
        if method == "UpdateTask":
            return self._update_task(runner, body)
        if method == "UpdateLog":
            index = body.get("index")
            return JSONResponse({"ackIndex": str(index)} if index else {})
        return connect_error("unimplemented", f"runner.v1.RunnerService.{method} is not implemented")

    def _register(self, body: dict[str, Any]) -> Response:
        name, token = body.get("name"), body.get("token")
        if not name or not token:
            return connect_error("unknown", "missing runner token, name")
        if token not in self.registration_tokens:
            return connect_error("unknown", "runner registration token not found")
        labels = body.get("labels") or ()
        r = self.new_runner(str(name), labels=[str(x) for x in labels], ephemeral=body.get("ephemeral") is True,
                            version=str(body.get("version", "")))
        return JSONResponse({"runner": _proto_runner(r)})

    def _rpc_runner(self, request: Request) -> FRunner | None:
        ruuid, rtoken = request.headers.get("x-runner-uuid"), request.headers.get("x-runner-token")
        runner = self.runner_by_uuid(ruuid)
        if runner is None or not rtoken or not hmac.compare_digest(runner.token, rtoken):
            return None
        return runner

    def _fetch(self, runner: FRunner, handle: str | None) -> Response:
        runner.online = True
        reply: dict[str, Any] = {"tasksVersion": str(self.tasks_version)} if self.tasks_version else {}
        job = None if runner.busy else self.pick_job(runner, handle)
        if job is None:
            return JSONResponse(reply)
        self.set_status(job, "running", runner)
        reply["task"] = self._task(job)
        return JSONResponse(reply)

    def _task(self, job: FJob) -> dict[str, Any]:
        """``runner.v1.Task``: the workflow and its context."""
        return {"id": str(job.task_id), "workflowPayload": base64.b64encode(b"jobs: {}\n").decode(),
                "context": {"repository": job.repo.full_name, "job": job.name, "run_id": str(job.run_id)}}

    def _update_task(self, runner: FRunner, body: dict[str, Any]) -> Response:
        raw_state = body.get("state")
        state: dict[str, Any] = raw_state if isinstance(raw_state, dict) else {}
        task_id = str(state.get("id", ""))
        job = self.job_by_task(task_id)
        if job is None or job.runner_id != runner.id:
            return connect_error("unknown", "update task: task not found")
        result = state.get("result")
        final = _RESULTS.get(result) if isinstance(result, str | int) else None
        if final is not None and not job.done:
            self.set_status(job, final)  # an ephemeral runner's record goes with it
        reply_state: dict[str, Any] = {"id": task_id}
        if final is not None:
            reply_state["result"] = result if isinstance(result, str) else "RESULT_UNSPECIFIED"
        return JSONResponse({"state": reply_state})

    async def _gh_runner(self, request: Request, verb: str) -> Response:
        """Stand-in GitHub runner protocol: the JIT config authenticates."""
        jit = request.headers.get("x-jit-config", "")
        runner = self.runner_by_jit(jit)
        if runner is None:
            return JSONResponse({"message": "unauthorised"}, status_code=401)
        if verb == "online":
            runner.online = True
            return JSONResponse({"ok": True})
        if verb == "acquire":
            if runner.busy and runner.job_id is not None:
                return JSONResponse({"job_id": runner.job_id})
            job = self.pick_job(runner, None)
            if job is None:
                return Response(status_code=204)
            self.set_status(job, "running", runner)
            return JSONResponse({"job_id": job.id})
        if verb == "complete":
            job = self.jobs.get(runner.job_id or -1)
            if job is None:
                return JSONResponse({"message": "no job"}, status_code=404)
            body = await request.body()
            self.set_status(job, "failure" if b"failure" in body else "success")
            return JSONResponse({"ok": True})
        return JSONResponse({"message": "not found"}, status_code=404)


__all__ = ["RunnerRpc", "connect_error"]
