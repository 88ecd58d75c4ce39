"""Fixtures for the forge adapter tests: a fake forge over real loopback HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from scaler.clock import FakeClock
from scaler.config import ForgeConfig, PoolConfig
from scaler.testing.fake_forge_server import ADMIN_TOKEN, FakeForgeServer

SECRET = "forge-test-secret-1"
OLD_SECRET = "forge-test-secret-0"


def write(tmp: Path, name: str, content: str) -> Path:
    p = tmp / name
    p.write_text(content)
    p.chmod(0o600)
    return p


def forge_config(tmp: Path, kind: str, url: str, scope: dict[str, Any] | None = None, **extra: Any) -> ForgeConfig:
    data: dict[str, Any] = {
        "name": f"{kind}-a",
        "type": kind,
        "url": url,
        "scope": scope or {"kind": "organization", "name": "acme"},
        "webhook_secret_files": [str(write(tmp, "secret", SECRET)), str(write(tmp, "old-secret", OLD_SECRET))],
        "request_timeout": 5,
    }
    if "github_app" not in extra:
        data["token_file"] = str(write(tmp, "token", ADMIN_TOKEN))
    data.update(extra)
    return ForgeConfig.model_validate(data)


def pool(labels: tuple[str, ...] = ("ubuntu-latest:docker://node:20",), **extra: Any) -> PoolConfig:
    data = {"name": "small", "forge": "f", "provider": "mem", "labels": list(labels), **extra}
    return PoolConfig.model_validate(data)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def _server(kind: str, version: str | None = None, **kw: Any) -> Iterator[FakeForgeServer]:
    server = FakeForgeServer(kind, version, **kw).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def gitea_server() -> Iterator[FakeForgeServer]:
    yield from _server("gitea", "1.25.2")


@pytest.fixture
def gitea124_server() -> Iterator[FakeForgeServer]:
    yield from _server("gitea", "1.24.6")


@pytest.fixture
def forgejo_server() -> Iterator[FakeForgeServer]:
    yield from _server("forgejo", "15.0.1+gitea-1.22.0")


@pytest.fixture
def github_server(clock: FakeClock) -> Iterator[FakeForgeServer]:
    yield from _server("github", clock=clock.now)


class Receiver:
    """A webhook receiver on 127.0.0.1 that verifies and parses with an adapter."""

    def __init__(self, adapter: Any) -> None:
        import socket
        import threading

        import uvicorn
        from starlette.applications import Starlette
        from starlette.requests import Request
        from starlette.responses import JSONResponse
        from starlette.routing import Route

        from scaler.errors import WebhookError

        self.adapter = adapter
        self.deliveries: list[Any] = []
        self.refused: list[int] = []

        async def hook(request: Request) -> JSONResponse:
            body = await request.body()
            headers = {k.lower(): v for k, v in request.headers.items()}
            try:
                adapter.verify(headers, body)
                self.deliveries.append(adapter.parse(headers, body))
            except WebhookError as exc:
                self.refused.append(exc.status)
                return JSONResponse({"error": str(exc)}, status_code=exc.status)
            return JSONResponse({}, status_code=202)

        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}/webhooks/x"
        app = Starlette(routes=[Route("/webhooks/x", hook, methods=["POST"])])
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, daemon=True)
        self.thread.start()
        import time

        deadline = time.monotonic() + 10
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.01)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
