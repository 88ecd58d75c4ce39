"""A stand-in runner (Python): what ``tests/standin/runner.sh`` does, in-process.

It uses its credential the way the real runner of the forge does, takes one
job, reports it done and returns:

* Gitea / Forgejo (act_runner / forgejo-runner ``.runner`` file): runner
  ``Declare`` → ``FetchTask`` until a task arrives (Forgejo: bound to the
  ``--handle`` of its command, when given) → ``UpdateTask`` with
  ``RESULT_SUCCESS``; every call carries ``x-runner-uuid`` / ``x-runner-token``.
* GitHub (JIT config file): the fake forge's stand-in protocol
  (``/_fake/github-runner/{online,acquire,complete}``) authenticated by the
  JIT config; the real broker protocol is out of scope.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

RPC = "/api/actions/runner.v1.RunnerService/"


@dataclass(frozen=True)
class StandinResult:
    kind: str
    runner_name: str
    job_id: int | None  # the task/job taken, None if none came
    calls: tuple[str, ...]


def _handle(command: Sequence[str]) -> str | None:
    args = list(command)
    for i, a in enumerate(args):
        if a == "--handle" and i + 1 < len(args):
            return args[i + 1]
    return None


async def run_launch(
    files: Mapping[str, str],
    command: Sequence[str] = (),
    *,
    max_polls: int = 100,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    poll_interval: float = 0.05,
) -> StandinResult:
    """Run one job with the credential files of a launch (path → content)."""
    runner = next((v for k, v in files.items() if k.endswith("/.runner")), None)
    if runner is not None:
        return await run_gitea(json.loads(runner), handle=_handle(command), max_polls=max_polls, sleep=sleep,
                               poll_interval=poll_interval)
    jit = next((v for k, v in files.items() if k.endswith("jitconfig")), None)
    if jit is not None:
        return await run_github(jit, max_polls=max_polls, sleep=sleep, poll_interval=poll_interval)
    raise ValueError("no runner credential among the launch files (.runner or jitconfig)")


async def _post(client: httpx.AsyncClient, url: str, body: Any, headers: Mapping[str, str]) -> httpx.Response:
    return await client.post(url, json=body, headers={"content-type": "application/json",
                                                       "connect-protocol-version": "1", **headers})


async def run_gitea(
    runner: Mapping[str, Any],
    *,
    handle: str | None = None,
    max_polls: int = 100,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    poll_interval: float = 0.05,
) -> StandinResult:
    address = str(runner["address"]).rstrip("/")
    auth = {"x-runner-uuid": str(runner["uuid"]), "x-runner-token": str(runner["token"])}
    calls: list[str] = []
    async with httpx.AsyncClient(base_url=address, timeout=10) as client:
        resp = await _post(client, RPC + "Declare", {"version": "standin", "labels": runner.get("labels", [])}, auth)
        calls.append(f"Declare {resp.status_code}")
        resp.raise_for_status()
        task: Mapping[str, Any] | None = None
        version = "0"
        for _ in range(max_polls):
            body: dict[str, Any] = {"tasksVersion": version}
            if handle:
                body["handle"] = handle
            resp = await _post(client, RPC + "FetchTask", body, auth)
            calls.append(f"FetchTask {resp.status_code}")
            resp.raise_for_status()
            data = resp.json()
            version = str(data.get("tasksVersion", version))
            task = data.get("task")
            if task:
                break
            await sleep(poll_interval)
        if not task:
            return StandinResult("gitea", str(runner["name"]), None, tuple(calls))
        state = {"id": task["id"], "result": "RESULT_SUCCESS", "stoppedAt": "2026-01-01T00:00:00Z"}
        resp = await _post(client, RPC + "UpdateTask", {"state": state, "outputs": {}}, auth)
        calls.append(f"UpdateTask {resp.status_code}")
        resp.raise_for_status()
        return StandinResult("gitea", str(runner["name"]), int(task["id"]) - 1_000_000, tuple(calls))


async def run_github(
    jit: str,
    *,
    max_polls: int = 100,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
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
            return StandinResult("github", str(cfg["name"]), None, tuple(calls))
        resp = await client.post("/_fake/github-runner/complete", headers=headers, content=b"success")
        calls.append(f"complete {resp.status_code}")
        resp.raise_for_status()
        return StandinResult("github", str(cfg["name"]), job_id, tuple(calls))
