"""The runner simulator: plays every runner the scaler launches, in its own process.

It tails the memory provider's launch log (``scaler.testing.launch_record``):
each instance created is a runner booting with exactly the credential files
it was given. The runner then speaks its forge's runner protocol to the HTTP
fake forge, as the real one does: Gitea / Forgejo ``Declare`` →
``FetchTask`` (polled; Forgejo with the ``--handle`` of its command) →
``UpdateTask`` ``RESULT_SUCCESS``; GitHub the fake's JIT-authenticated
stand-in (``online`` → ``acquire`` → ``complete``). Then the process
"exits": ``NAME 0`` on the exit FIFO, which the provider reports on its watch
stream. A runner whose instance is deleted before it got a task stops.

``--hold``: runners keep their job until SIGUSR1, then all complete within
``--spread`` seconds (the completion storm). Status (runners booted, jobs
taken and done, first and last completion on ``time.monotonic()``) is
written to ``--status`` every 0.5 s and at exit.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import random
import signal
import sys
import time
from typing import Any
from urllib.parse import urlsplit

from scaler.testing.launch_record import LaunchTail, write_exit
from scaler.testing.rawhttp import RawHTTP

RPC = "/api/actions/runner.v1.RunnerService/"
JSON = {"content-type": "application/json", "connect-protocol-version": "1"}


class Sim:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.tail = LaunchTail(args.launch_log)
        self.exit_fd = os.open(args.exit_fifo, os.O_WRONLY)
        self.clients: dict[str, RawHTTP] = {}
        self.release = asyncio.Event()
        self.deleted: set[str] = set()
        self.running: dict[str, asyncio.Task[None]] = {}
        self.stats: dict[str, Any] = {"booted": 0, "taken": 0, "done": 0, "no_task": 0, "refused": 0, "errors": 0}
        self.first_done: float | None = None
        self.last_done: float | None = None
        self.released_at: float | None = None
        self.rng = random.Random(1)

    def client(self, address: str) -> RawHTTP:
        if address not in self.clients:
            u = urlsplit(address)
            self.clients[address] = RawHTTP(u.hostname or "127.0.0.1", u.port or 80, self.args.conns)
        return self.clients[address]

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGUSR1, self._release)
        stop = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        writer = asyncio.create_task(self._status_loop())
        while not stop.is_set():
            for rec in self.tail.read():
                if rec["op"] == "create" and rec["name"] not in self.running:
                    self.running[rec["name"]] = asyncio.create_task(self._runner(rec))
                elif rec["op"] == "delete":
                    self.deleted.add(rec["name"])
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.02):
                    await stop.wait()
        writer.cancel()
        self._write_status()

    def _release(self) -> None:
        self.released_at = time.monotonic()
        self.release.set()

    async def _runner(self, rec: dict[str, Any]) -> None:
        name = rec["name"]
        files: dict[str, str] = rec["files"]
        self.stats["booted"] += 1
        try:
            command = rec.get("command") or []
            runner = next((v for k, v in files.items() if k.endswith("/.runner")), None)
            if runner is not None:
                code = await self._gitea(name, json.loads(runner), _flag(command, "--handle"))
            elif _flag(command, "--uuid"):
                code = await self._gitea(name, _forgejo_runner(command, files), _flag(command, "--handle"))
            else:
                jit = next(v for k, v in files.items() if k.endswith("jitconfig"))
                code = await self._github(name, jit)
        except Exception as exc:
            self.stats["errors"] += 1
            print(f"runner {name}: {exc!r}", file=sys.stderr, flush=True)
            code = 1
        if name not in self.deleted:
            write_exit(self.exit_fd, name, code)

    async def _hold(self) -> None:
        if self.args.hold:
            await self.release.wait()
            await asyncio.sleep(self.rng.uniform(0, self.args.spread))
        elif self.args.job_time:
            await asyncio.sleep(self.args.job_time)

    def _done(self) -> None:
        now = time.monotonic()
        self.stats["done"] += 1
        self.first_done = self.first_done or now
        self.last_done = now

    async def _gitea(self, name: str, runner: dict[str, Any], handle: str | None) -> int:
        http = self.client(str(runner["address"]))
        auth = {**JSON, "x-runner-uuid": str(runner["uuid"]), "x-runner-token": str(runner["token"])}

        async def call(method: str, body: dict[str, Any]) -> tuple[int, Any]:
            status, payload = await http.request("POST", RPC + method, json.dumps(body).encode(), auth)
            return status, (json.loads(payload) if payload else {})

        status, _ = await call("Declare", {"version": "runner-sim", "labels": runner.get("labels", [])})
        if status != 200:
            self.stats["refused"] += 1
            return 1
        version, task = "0", None
        while name not in self.deleted:
            body: dict[str, Any] = {"tasksVersion": version}
            if handle:
                body["handle"] = handle
            status, data = await call("FetchTask", body)
            if status != 200:
                self.stats["refused"] += 1
                return 1
            version = str(data.get("tasksVersion", version))
            task = data.get("task")
            if task:
                break
            await asyncio.sleep(self.args.poll)
        if not task:
            self.stats["no_task"] += 1
            return 2  # forgejo-runner one-job: no task came
        self.stats["taken"] += 1
        await self._hold()
        state = {"id": task["id"], "result": "RESULT_SUCCESS", "stoppedAt": "2026-01-01T00:00:00Z"}
        status, _ = await call("UpdateTask", {"state": state, "outputs": {}})
        if status == 200:
            self._done()
        return 0 if status == 200 else 1

    async def _github(self, name: str, jit: str) -> int:
        cfg = json.loads(base64.b64decode(jit))
        http = self.client(str(cfg["url"]))
        auth = {"x-jit-config": jit.strip()}
        status, _ = await http.request("POST", "/_fake/github-runner/online", b"", auth)
        if status != 200:
            self.stats["refused"] += 1
            return 1
        while name not in self.deleted:
            status, _ = await http.request("POST", "/_fake/github-runner/acquire", b"", auth)
            if status == 200:
                break
            if status != 204:
                self.stats["refused"] += 1
                return 1
            await asyncio.sleep(self.args.poll)
        else:
            self.stats["no_task"] += 1
            return 2
        self.stats["taken"] += 1
        await self._hold()
        status, _ = await http.request("POST", "/_fake/github-runner/complete", b"success", auth)
        if status == 200:
            self._done()
        return 0 if status == 200 else 1

    async def _status_loop(self) -> None:
        while True:
            self._write_status()
            await asyncio.sleep(0.5)

    def _write_status(self) -> None:
        status = {
            **self.stats,
            "first_done": self.first_done,
            "last_done": self.last_done,
            "released_at": self.released_at,
            "runners": len(self.running),
        }
        tmp = self.args.status + ".tmp"
        with open(tmp, "w") as fh:
            json.dump(status, fh)
        os.replace(tmp, self.args.status)


def _forgejo_runner(command: list[str], files: dict[str, str]) -> dict[str, Any]:
    """What ``forgejo-runner one-job --url U --uuid ID --token-url file:PATH --label L``
    (Forgejo >= 15, an ephemeral credential) reads: the address, the runner's
    uuid, the token from the file the provider wrote, and its labels."""
    token_url = _flag(command, "--token-url") or ""
    path = token_url.removeprefix("file:")
    if path not in files:
        raise ValueError(f"--token-url {token_url!r}: no such file in the launch")
    labels = [command[i + 1] for i, a in enumerate(command[:-1]) if a == "--label"]
    return {"address": _flag(command, "--url"), "uuid": _flag(command, "--uuid"), "token": files[path].strip(),
            "labels": labels}


def _flag(command: list[str], flag: str) -> str | None:
    for i, a in enumerate(command):
        if a == flag and i + 1 < len(command):
            return command[i + 1]
    return None


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--launch-log", required=True)
    ap.add_argument("--exit-fifo", required=True)
    ap.add_argument("--status", required=True)
    ap.add_argument("--hold", action="store_true", help="keep jobs until SIGUSR1")
    ap.add_argument("--spread", type=float, default=1.0, help="completions after SIGUSR1 spread over this")
    ap.add_argument("--job-time", type=float, default=0.0)
    ap.add_argument("--poll", type=float, default=0.25, help="FetchTask / acquire poll interval")
    ap.add_argument("--conns", type=int, default=32)
    args = ap.parse_args()
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()
    asyncio.run(Sim(args).run())


if __name__ == "__main__":
    main()
