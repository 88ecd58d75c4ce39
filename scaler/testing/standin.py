"""A stand-in runner (Python): what ``tests/standin/runner.sh`` does, in-process.

It takes the launch's command line and credential files the way the real
runner would (``tests/forges/shapes/runner.json`` records where each
behaviour was read) and returns what the runner process would have done:

* ``act_runner daemon [--config F]`` (Gitea): reads the ``.runner`` file
  (``runner.file`` of the config), ``Declare`` → ``FetchTask`` until a task →
  ``UpdateTask`` (``RESULT_SUCCESS``). An ephemeral runner file means one task
  and exit 0; a non-ephemeral runner keeps taking tasks.
* ``forgejo-runner one-job --url U --uuid X --token-url file:P --label L…
  [--handle H] [--wait]``: ``Declare`` → ``FetchSingleTask`` (with the handle)
  or ``FetchTask`` → ``UpdateTask``; without ``--wait`` it asks once and exits
  2 when no task came.
* GitHub (JIT config file): the fake forge's stand-in protocol
  (``/_fake/github-runner/{online,acquire,complete}``); the real broker
  protocol is out of scope.

Exit 3 means it gave up after ``max_polls`` (the real runners keep asking).
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

RPC = "/api/actions/runner.v1.RunnerService/"
NO_TASK_EXIT = 2  # forgejo-runner one-job: poll.ErrNoTaskReceived
GAVE_UP_EXIT = 3  # the stand-in's own limit
Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True)
class StandinResult:
    kind: str
    runner_name: str
    job_id: int | None  # the first task (Gitea/Forgejo task id; GitHub job id) taken, None if none came
    calls: tuple[str, ...]
    exit_code: int = 0
    tasks: tuple[int, ...] = field(default=())


def _flag(args: Sequence[str], name: str) -> str | None:
    for i, a in enumerate(args):
        if a == name and i + 1 < len(args):
            return args[i + 1]
    return None


def _flags(args: Sequence[str], name: str) -> list[str]:
    return [args[i + 1] for i, a in enumerate(args) if a == name and i + 1 < len(args)]


async def run_launch(
    files: Mapping[str, str],
    command: Sequence[str] = (),
    *,
    max_polls: int = 100,
    sleep: Sleep = asyncio.sleep,
    poll_interval: float = 0.05,
) -> StandinResult:
    """Run a launch's runner with its credential files (path → content)."""
    args = list(command)
    if "one-job" in args and _flag(args, "--uuid"):
        return await run_one_job(files, args, max_polls=max_polls, sleep=sleep, poll_interval=poll_interval)
    runner = _runner_file(files, args)
    if runner is not None:
        return await run_gitea(json.loads(runner), handle=_flag(args, "--handle"), max_polls=max_polls,
                               sleep=sleep, poll_interval=poll_interval)
    jit = next((v for k, v in files.items() if k.endswith("jitconfig")), None)
    if jit is not None:
        return await run_github(jit, max_polls=max_polls, sleep=sleep, poll_interval=poll_interval)
    raise ValueError("no runner credential among the launch files (.runner, one-job token or jitconfig)")


def _runner_file(files: Mapping[str, str], args: Sequence[str]) -> str | None:
    config = files.get(_flag(args, "--config") or "")
    if config is not None:
        m = re.search(r'^  file: "?([^"\n]+)"?\s*$', config, re.M)
        if m and m.group(1) in files:
            return files[m.group(1)]
    return next((v for k, v in files.items() if k.endswith("/.runner")), None)


async def _post(client: httpx.AsyncClient, method: str, body: Any, headers: Mapping[str, str]) -> httpx.Response:
    return await client.post(RPC + method, json=body, headers={"content-type": "application/json",
                                                                "connect-protocol-version": "1", **headers})


async def _fetch(client: httpx.AsyncClient, auth: Mapping[str, str], handle: str | None,
                 calls: list[str]) -> Mapping[str, Any] | None:
    method = "FetchSingleTask" if handle else "FetchTask"
    body: dict[str, Any] = {"handle": handle} if handle else {}
    resp = await _post(client, method, body, auth)
    calls.append(f"{method} {resp.status_code}")
    resp.raise_for_status()
    task = resp.json().get("task")
    return task if isinstance(task, Mapping) else None


async def _finish(client: httpx.AsyncClient, auth: Mapping[str, str], task: Mapping[str, Any],
                  calls: list[str]) -> int:
    state = {"id": task["id"], "result": "RESULT_SUCCESS", "stoppedAt": "2026-01-01T00:00:00Z"}
    resp = await _post(client, "UpdateTask", {"state": state, "outputs": {}}, auth)
    calls.append(f"UpdateTask {resp.status_code}")
    resp.raise_for_status()
    return int(task["id"])


async def run_gitea(
    runner: Mapping[str, Any],
    *,
    handle: str | None = None,
    max_polls: int = 100,
    sleep: Sleep = asyncio.sleep,
    poll_interval: float = 0.05,
) -> StandinResult:
    """act_runner ``daemon`` with a runner file."""
    address = str(runner["address"]).rstrip("/")
    auth = {"x-runner-uuid": str(runner["uuid"]), "x-runner-token": str(runner["token"])}
    calls: list[str] = []
    tasks: list[int] = []
    async with httpx.AsyncClient(base_url=address, timeout=10) as client:
        resp = await _post(client, "Declare", {"version": "standin", "labels": runner.get("labels", [])}, auth)
        calls.append(f"Declare {resp.status_code}")
        resp.raise_for_status()
        for _ in range(max_polls):
            task = await _fetch(client, auth, handle, calls)
            if task is not None:
                tasks.append(await _finish(client, auth, task, calls))
                if runner.get("ephemeral") is True:
                    break  # PollOnce: one task, then the daemon exits
                continue
            await sleep(poll_interval)
    code = 0 if tasks else GAVE_UP_EXIT
    return StandinResult("gitea", str(runner["name"]), tasks[0] if tasks else None, tuple(calls), code, tuple(tasks))


async def run_one_job(
    files: Mapping[str, str],
    args: Sequence[str],
    *,
    max_polls: int = 100,
    sleep: Sleep = asyncio.sleep,
    poll_interval: float = 0.05,
) -> StandinResult:
    """forgejo-runner ``one-job`` with a connection from its flags."""
    url, uuid, token_url = _flag(args, "--url"), _flag(args, "--uuid"), _flag(args, "--token-url")
    if not url or not uuid or not token_url or not token_url.startswith("file:"):
        raise ValueError("one-job needs --url, --uuid and a file: --token-url")
    path = token_url.removeprefix("file:").removeprefix("//")
    auth = {"x-runner-uuid": uuid, "x-runner-token": files[path]}
    handle, wait = _flag(args, "--handle"), "--wait" in args or "-w" in args
    labels = [x.split(":", 1)[0] for x in _flags(args, "--label")]
    calls: list[str] = []
    async with httpx.AsyncClient(base_url=url.rstrip("/"), timeout=10) as client:
        resp = await _post(client, "Declare", {"version": "standin", "labels": labels}, auth)
        calls.append(f"Declare {resp.status_code}")
        resp.raise_for_status()
        for _ in range(max_polls if wait else 1):
            task = await _fetch(client, auth, handle, calls)
            if task is not None:
                done = await _finish(client, auth, task, calls)
                return StandinResult("forgejo", uuid, done, tuple(calls), 0, (done,))
            if wait:
                await sleep(poll_interval)
    return StandinResult("forgejo", uuid, None, tuple(calls), GAVE_UP_EXIT if wait else NO_TASK_EXIT)


async def run_github(
    jit: str,
    *,
    max_polls: int = 100,
    sleep: Sleep = asyncio.sleep,
    poll_interval: float = 0.05,
) -> StandinResult:
    cfg = json.loads(base64.b64decode(jit))
    headers = {"x-jit-config": jit.strip()}
    calls: list[str] = []
    async with httpx.AsyncClient(base_url=str(cfg["url"]).rstrip("/"), timeout=10) as client:
        resp = await client.post("/_fake/github-runner/online", headers=headers)
        calls.append(f"online {resp.status_code}")
        resp.raise_for_status()
        job_id = None
        for _ in range(max_polls):
            resp = await client.post("/_fake/github-runner/acquire", headers=headers)
            calls.append(f"acquire {resp.status_code}")
            resp.raise_for_status()
            if resp.status_code == 200:
                job_id = int(resp.json()["job_id"])
                break
            await sleep(poll_interval)
        if job_id is None:
            return StandinResult("github", str(cfg["name"]), None, tuple(calls), GAVE_UP_EXIT)
        resp = await client.post("/_fake/github-runner/complete", headers=headers, content=b"success")
        calls.append(f"complete {resp.status_code}")
        resp.raise_for_status()
        return StandinResult("github", str(cfg["name"]), job_id, tuple(calls), 0, (job_id,))
