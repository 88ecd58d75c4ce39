"""The server under test, in its own process: ``python -m benchmarks.server``.

``--mode scaler`` serves the real application (``create_app`` around a
``Scaler`` with the in-process fake forge and the in-memory provider, all loops
running); ``--mode bare`` serves a bare Starlette endpoint that reads the body
and answers 202 without verifying anything (the ceiling). Both run under
uvicorn with the production defaults (uvloop + httptools when installed, no
access log). Prints ``READY`` once listening.

``--record`` adds a pass-through ASGI wrapper that stamps when each 202 starts
(keyed by the client's ``x-bench-job`` header) and a ``GET /bench/report``
returning those stamps and the provider's ``create`` calls, on the same
``perf_counter`` clock.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import os
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from uvicorn._compat import asyncio_run

from benchmarks.common import SCHEMES, TOKEN_ENV, config_data
from scaler import logging as slog
from scaler.app import Scaler
from scaler.config import ForgeConfig, parse_config
from scaler.forges import FORGE_TYPES
from scaler.forges.base import Delivery
from scaler.provider import LABEL_JOB_ID, ProviderSettings
from scaler.testing import FakeForge, MemoryProvider
from scaler.web import create_app

Scope = MutableMapping[str, Any]
ASGI = Callable[[Scope, Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]], Awaitable[None]]


class SchemeForge(FakeForge):
    """The fake forge (jobs, runners, credentials in memory) whose webhook
    ``verify`` and ``parse`` are the real adapter's for ``scheme`` (Gitea,
    Forgejo, GitHub), so ingestion runs the production webhook code."""

    def __init__(self, config: ForgeConfig, scheme: str) -> None:
        super().__init__(config)
        real = config.model_copy(update={"type": scheme, "token_env": TOKEN_ENV})
        module, attr = FORGE_TYPES[scheme].split(":")
        self.adapter = getattr(importlib.import_module(module), attr)(real)

    def verify(self, headers: Mapping[str, str], body: bytes) -> None:
        self.adapter.verify(headers, body)

    def parse(self, headers: Mapping[str, str], body: bytes) -> Delivery:
        delivery: Delivery = self.adapter.parse(headers, body)
        return delivery


def bare_app() -> Starlette:
    async def receive(request: Request) -> Response:
        await request.body()
        return JSONResponse({"result": "accepted"}, status_code=202)

    return Starlette(routes=[Route("/webhooks/{forge}", receive, methods=["POST"])])


def scaler_app(args: argparse.Namespace) -> tuple[ASGI, Scaler, MemoryProvider]:
    config = parse_config(
        config_data(
            pools=args.pools,
            pool_max=args.pool_max,
            max_instances=args.max_instances,
            concurrency=args.concurrency,
            mint_concurrency=args.concurrency,
        )
    )
    # cache=True as the CLI does (production); tests reconfigure, the CLI does not
    slog.configure("info", "json", stream=open(os.devnull, "w"), cache=True)  # noqa: SIM115 - lives as long as the process
    forge = SchemeForge(config.forges[0], args.scheme)
    p = config.providers[0]
    provider = MemoryProvider(ProviderSettings(p.name, p.type, config.controller_id, dict(p.options)))
    scaler = Scaler(config, forges={"fake": forge}, providers={"mem": provider})
    return create_app(scaler), scaler, provider


def recording(app: ASGI, provider: MemoryProvider) -> ASGI:
    accepted: dict[int, float] = {}

    async def report(scope: Scope, receive: Any, send: Any) -> None:
        creates = [
            (int(provider.instances[c.name].spec.labels[LABEL_JOB_ID]), c.at)
            for c in provider.calls
            if c.op == "create" and c.name in provider.instances
        ]
        resp = JSONResponse({"accepted": list(accepted.items()), "creates": creates, "now": time.perf_counter()})
        await resp(scope, receive, send)

    async def wrapper(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        if scope["path"] == "/bench/report":
            await report(scope, receive, send)
            return
        job = next((int(v) for k, v in scope["headers"] if k == b"x-bench-job"), None)

        async def stamped(message: Any) -> None:
            if job is not None and message["type"] == "http.response.start" and message["status"] == 202:
                accepted[job] = time.perf_counter()
            await send(message)

        await app(scope, receive, stamped)

    return wrapper


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mode", choices=["bare", "scaler"], default="scaler")
    ap.add_argument("--scheme", choices=sorted(SCHEMES), default="github")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--pools", type=int, default=20)
    ap.add_argument("--pool-max", type=int, default=100)
    ap.add_argument("--max-instances", type=int, default=2000)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--record", action="store_true")
    args = ap.parse_args()
    app: Any
    if args.mode == "bare":
        app = bare_app()
    else:
        app, _scaler, provider = scaler_app(args)
        if args.record:
            app = recording(app, provider)
    config = uvicorn.Config(app, host="127.0.0.1", port=args.port, log_config=None, access_log=False, lifespan="on")
    server = uvicorn.Server(config)

    async def serve() -> None:
        task = asyncio.create_task(server.serve())
        while not server.started:  # noqa: ASYNC110 - uvicorn offers no event for this
            await asyncio.sleep(0.01)
        print("READY", flush=True)
        await task

    with contextlib.suppress(KeyboardInterrupt):
        asyncio_run(serve(), loop_factory=config.get_loop_factory())
    sys.exit(0)


if __name__ == "__main__":
    main()
