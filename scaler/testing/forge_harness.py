"""The HTTP fake forge as a process of its own, with what load tests need.

``FakeForgeServer`` is used as it is; this wraps its ASGI app with:

* **admin routes** under ``/_harness/``: ``POST jobs`` (queue ``n`` jobs),
  ``POST subscribe`` (a webhook target), ``GET stats`` (runners, jobs by
  status, mints, duplicate mints, forge calls in flight and their maximum),
  ``GET accepted`` (when each job's queued delivery was answered 2xx, on
  ``time.monotonic()``), ``POST reset``;
* **a delivery loop** sending each webhook as soon as it is emitted, over a
  few keep-alive connections (``RawHTTP``: httpx would cost the fake ~1 ms of
  CPU per delivery; the forge's own ``flush`` sends on demand);
* **counting**: forge calls (the scaler's REST and ``Register`` calls, not
  the runners' own protocol) in flight, and mints per runner name;
* :class:`LateAnswers`: do the work, then answer late — the reply a client
  timed out on, after the forge acted (a lost answer).

Run: ``python -m scaler.testing.forge_harness --kind gitea [--port P]
[--port-file F]``; it prints ``port N`` and serves until SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import signal
import time
from collections import Counter
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

import httpx

from scaler.testing.fake_forge_server import FakeForgeServer, FJob, SentDelivery
from scaler.testing.fake_forge_server._base import DONE
from scaler.testing.rawhttp import RawHTTP

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# The calls that mint a runner credential, per forge (their body names the runner).
MINT = re.compile(
    r"(/api/actions/runner\.v1\.RunnerService/Register"
    r"|/actions/runners/generate-jitconfig"
    r"|^/api/v1/(repos/[^/]+/[^/]+|orgs/[^/]+|user|admin)/actions/runners)$"
)
# The runners' own protocol: not a forge call the scaler makes.
RUNNER_SIDE = re.compile(r"^/api/actions/runner\.v1\.RunnerService/(?!Register)|^/_fake/github-runner/|^/_harness/")


@dataclass
class LateRule:
    method: str
    path: re.Pattern[str]
    delay: float
    times: int


class LateAnswers:
    """ASGI middleware: matching requests are served in full (the forge acts),
    then the answer is held back ``delay`` seconds — past a client's timeout,
    the client never learns what happened."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.rules: list[LateRule] = []
        self.held = 0

    def answer_late(self, method: str, path: str, delay: float, *, times: int = 1) -> None:
        self.rules.append(LateRule(method.upper(), re.compile(path), delay, times))

    def _rule(self, scope: Scope) -> LateRule | None:
        for rule in self.rules:
            if rule.times > 0 and rule.method in (scope.get("method"), "*") and rule.path.search(scope["path"]):
                rule.times -= 1
                return rule
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        rule = self._rule(scope) if scope["type"] == "http" else None
        if rule is None:
            await self.app(scope, receive, send)
            return
        held: list[Message] = []

        async def hold(message: Message) -> None:
            held.append(message)

        await self.app(scope, receive, hold)
        self.held += 1
        await asyncio.sleep(rule.delay)
        for message in held:
            await send(message)


class Harness:
    """Counting, admin routes and the delivery loop around one fake forge."""

    def __init__(self, server: FakeForgeServer, *, senders: int = 8, prune_after: float = 30.0) -> None:
        self.server = server
        self.late = LateAnswers(server.app)
        self.senders = senders
        self.prune_after = prune_after
        self.inflight = 0
        self.inflight_max = 0
        self.calls: Counter[str] = Counter()
        self.minted: Counter[str] = Counter()
        self.accepted: dict[int, float] = {}
        self._meta: dict[int, tuple[int, str]] = {}  # id(delivery) -> (job id, status)
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._clients: dict[tuple[str, int], RawHTTP] = {}
        self._wrap_emit()

    def _wrap_emit(self) -> None:
        emit = self.server.emit

        def emit_and_note(job: FJob, previous: str | None = None) -> None:
            before = len(self.server.outbox)
            emit(job, previous)
            for d in self.server.outbox[before:]:
                self._meta[id(d)] = (job.id, job.status)
            if len(self.server.outbox) > before:
                self._wake.set()

        self.server.emit = emit_and_note  # type: ignore[method-assign]

    # --- ASGI ------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.late(scope, receive, send)
            return
        path = scope["path"]
        if path.startswith("/_harness/"):
            await self._admin(scope, receive, send)
            return
        if RUNNER_SIDE.search(path):
            await self.late(scope, receive, send)
            return
        await self._counted(scope, receive, send)

    async def _counted(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"]
        mint = scope["method"] == "POST" and MINT.search(path) is not None
        body = bytearray()

        async def recv() -> Message:
            message = await receive()
            if mint and message["type"] == "http.request":
                body.extend(message.get("body", b""))
            return message

        status = 0

        async def snd(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        self.inflight += 1
        self.inflight_max = max(self.inflight_max, self.inflight)
        self.calls[f"{scope['method']} {_endpoint(path)}"] += 1
        try:
            await self.late(scope, recv, snd)
        finally:
            self.inflight -= 1
        if mint and 200 <= status < 300:
            with contextlib.suppress(ValueError, AttributeError):
                self.minted[str(json.loads(bytes(body)).get("name"))] += 1

    async def _admin(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        data = json.loads(body) if body else {}
        verb = scope["path"].removeprefix("/_harness/")
        answer: Any
        if verb == "jobs":
            answer = {"ids": [j.id for j in self.queue(data["repo"], data["labels"], int(data.get("n", 1)))]}
        elif verb == "subscribe":
            self.server.subscribe(data["url"], data["secret"])
            answer = {"ok": True}
        elif verb == "stats":
            answer = self.stats(data.get("prefix") or _query(scope, "prefix"))
        elif verb == "accepted":
            answer = {"accepted": self.accepted}
        elif verb == "reset":
            self.inflight_max = self.inflight
            self.calls.clear()
            answer = {"ok": True}
        else:
            answer = {"error": f"unknown {verb}"}
        payload = json.dumps(answer).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": payload})

    # --- world ------------------------------------------------------------------

    def queue(self, repo: str, labels: list[str], n: int) -> list[FJob]:
        return [self.server.queue_job(repo, labels) for _ in range(n)]

    def stats(self, prefix: str | None = None) -> dict[str, Any]:
        runners = list(self.server.runners.values())
        ours = [r for r in runners if prefix is None or r.name.startswith(prefix)]
        return {
            "runners": len(runners),
            "runners_ours": len(ours),
            "runners_busy": sum(1 for r in ours if r.busy),
            "jobs": {s: n for s, ix in self.server.ix.by_status.items() if (n := len(ix.jobs))},
            "mints": sum(self.minted.values()),
            "duplicate_mints": sum(n - 1 for n in self.minted.values() if n > 1),
            "inflight": self.inflight,
            "inflight_max": self.inflight_max,
            "calls": dict(self.calls),
            "outbox": len(self.server.outbox),
            "late_answers": self.late.held,
        }

    # --- background: deliveries, pruning ------------------------------------------

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._deliver()), asyncio.create_task(self._prune())]

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _deliver(self) -> None:
        queue: asyncio.Queue[SentDelivery] = asyncio.Queue()
        workers = [asyncio.create_task(self._send(queue)) for _ in range(self.senders)]
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                pending, self.server.outbox = self.server.outbox, []
                for d in pending:
                    queue.put_nowait(d)
        finally:
            for w in workers:
                w.cancel()
            for client in self._clients.values():
                await client.close()

    def _client(self, url: httpx.URL) -> RawHTTP:
        key = (url.host, url.port or 80)
        if key not in self._clients:
            self._clients[key] = RawHTTP(url.host, url.port or 80, self.senders)
        return self._clients[key]

    async def _send(self, queue: asyncio.Queue[SentDelivery]) -> None:
        while True:
            d = await queue.get()
            meta = self._meta.pop(id(d), None)
            url = httpx.URL(d.url)
            if url.host not in ("127.0.0.1", "localhost", "::1"):
                continue  # loopback only
            target = url.raw_path.decode()
            for attempt in range(5):  # the forge retries a failed delivery (Gitea: a few times)
                try:
                    async with asyncio.timeout(30):
                        d.status, _ = await self._client(url).request("POST", target, d.body, d.headers)
                except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError):
                    await asyncio.sleep(0.5 * (attempt + 1))
                    continue
                if d.status < 500:
                    break
                await asyncio.sleep(0.5 * (attempt + 1))
            if meta is not None and meta[1] == "waiting" and d.status is not None and 200 <= d.status < 300:
                self.accepted.setdefault(meta[0], time.monotonic())

    async def _prune(self) -> None:
        """The fake keeps every job for ever; forget finished ones (its lookups scan them)."""
        while True:
            await asyncio.sleep(5)
            cutoff = time.time() - self.prune_after
            for job in self.server.jobs_with_status(*DONE):
                if (job.completed_at or 0) < cutoff:
                    self.server.forget_job(job)


def _endpoint(path: str) -> str:
    return re.sub(r"/\d+(?=/|$)", "/{id}", path)


def _query(scope: Scope, key: str) -> str | None:
    for part in bytes(scope.get("query_string", b"")).decode().split("&"):
        k, _, v = part.partition("=")
        if k == key:
            return v
    return None


async def serve(kind: str, version: str | None, port: int, port_file: str | None) -> None:
    import socket

    import uvicorn

    server = FakeForgeServer(kind, version)
    harness = Harness(server)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(4096)  # connections wait in the backlog from the moment the port is published
    server.port = sock.getsockname()[1]
    config = uvicorn.Config(harness, log_level="warning", access_log=False, lifespan="off", backlog=4096)
    uv = uvicorn.Server(config)
    harness.start()
    if port_file:
        _write_port(port_file, server.port)
    print(f"port {server.port}", flush=True)
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, lambda: setattr(uv, "should_exit", True))
    try:
        await uv.serve(sockets=[sock])
    finally:
        await harness.stop()


def _write_port(path: str, port: int) -> None:
    import os

    with open(path + ".tmp", "w") as fh:
        fh.write(str(port))
    os.replace(path + ".tmp", path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="the HTTP fake forge with load-test admin routes, on 127.0.0.1")
    parser.add_argument("--kind", choices=["gitea", "forgejo", "github"], default="gitea")
    parser.add_argument("--version", default=None)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--port-file")
    args = parser.parse_args(argv)
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()
    asyncio.run(serve(args.kind, args.version, args.port, args.port_file))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
