"""A burst mints as many runners at once as the forge's limit allows (issue 17, burst p99).

With ``limits.mint_concurrency`` at 8, a 1,000-job burst minted 8 at a time
whatever the forge's ``concurrency`` (16): throughput was 8 per mint round
trip and accepted -> create p99 1.3 s. The fake forge here holds every
``Register`` answer until 16 are waiting at once; the burst must get there."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from scaler.testing.fake_forge_server import FakeForgeServer
from tests.scenarios.http_world import HttpWorld, http_config

pytestmark = pytest.mark.scenario

JOBS = 64
FORGE_LIMIT = 16


class Gate:
    """ASGI middleware: Register answers wait until FORGE_LIMIT are in flight
    (or 10 s pass, so a scaler that never gets there fails rather than hangs)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.waiting = 0
        self.most = 0
        self.open: asyncio.Event | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not scope["path"].endswith("/Register"):
            await self.app(scope, receive, send)
            return
        self.open = self.open or asyncio.Event()
        self.waiting += 1
        self.most = max(self.most, self.waiting)
        if self.waiting >= FORGE_LIMIT:
            self.open.set()
        try:
            async with asyncio.timeout(10):
                await self.open.wait()
        except TimeoutError:
            self.open.set()
        self.waiting -= 1
        await self.app(scope, receive, send)


async def test_a_burst_fills_the_forge_limit_with_mints(tmp_path: Path) -> None:
    """64 jobs at once: 16 Register calls in flight together (the forge's limit), and every job gets one runner."""
    srv = FakeForgeServer("gitea", "1.25.0")
    gate = Gate(srv.app)
    srv.app = gate  # type: ignore[assignment]
    srv.start()
    world = HttpWorld.build(srv, http_config(tmp_path, srv, forge={"concurrency": FORGE_LIMIT}, max=JOBS))
    try:
        await world.scaler.rebuild()
        for _ in range(JOBS):
            srv.queue_job("acme/app", ["ubuntu-latest"])
        await world.deliver()
        await world.scaler.settle()
        assert gate.most == FORGE_LIMIT
        ours = [r for r in srv.runners.values() if r.name.startswith("rs-")]
        assert len(world.provider.instances) == JOBS == len(ours)
        await world.close()
    finally:
        srv.stop()
