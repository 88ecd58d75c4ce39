"""The real core against the HTTP fake forge over loopback, on a fake clock:
the forge's own adapter (Gitea, Forgejo, GitHub) talks HTTP to a
``FakeForgeServer`` thread, deliveries go through the real webhook route over
ASGI, and the memory provider stands in for machines."""

from __future__ import annotations

import importlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from scaler.app import Scaler
from scaler.clock import FakeClock
from scaler.config import Config, parse_config
from scaler.forges import FORGE_TYPES
from scaler.forges.base import ForgeAdapter
from scaler.provider import ProviderSettings
from scaler.testing import MemoryProvider
from scaler.testing.fake_forge_server import FakeForgeServer
from scaler.web import create_app
from tests.scenarios.sim import scenario_config

HOOK_SECRET = "http-world-hook-secret-5"


def http_config(tmp_path: Path, srv: FakeForgeServer, *, forge: dict[str, Any] | None = None, **pool: Any) -> Config:
    """The scenario config with one forge ``f`` of the server's kind at its URL."""
    (tmp_path / "hook").write_text(HOOK_SECRET)
    (tmp_path / "token").write_text(srv.token)
    for f in ("hook", "token"):
        (tmp_path / f).chmod(0o600)
    data = scenario_config()
    data["forges"] = [
        {
            "name": "f",
            "type": srv.kind,
            "url": srv.url,
            "scope": {"kind": "organization", "name": "acme"},
            "webhook_secret_files": [str(tmp_path / "hook")],
            "token_file": str(tmp_path / "token"),
            **(forge or {}),
        }
    ]
    data["pools"][0].update(forge="f", **pool)
    top = pool.get("max", 5)
    data["limits"] = {"max_instances": top, "event_queue_size": max(1000, 4 * top)}
    return parse_config(data)


@dataclass
class HttpWorld:
    srv: FakeForgeServer
    scaler: Scaler
    forge: ForgeAdapter
    provider: MemoryProvider
    clock: FakeClock
    http: httpx.AsyncClient

    @classmethod
    def build(cls, srv: FakeForgeServer, config: Config) -> HttpWorld:
        clock = FakeClock(time.time())
        module, attr = FORGE_TYPES[srv.kind].split(":")
        forge = getattr(importlib.import_module(module), attr)(config.forges[0], clock=clock)
        provider = MemoryProvider(ProviderSettings("mem", "memory", "rs", {}))
        scaler = Scaler(config, forges={"f": forge}, providers={"mem": provider}, clock=clock)
        http = httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(scaler)), base_url="http://127.0.0.1")
        srv.subscribe("http://127.0.0.1/webhooks/f", HOOK_SECRET)
        return cls(srv, scaler, forge, provider, clock, http)

    async def deliver(self) -> None:
        """Every delivery the forge has queued, through the webhook route."""
        sent, self.srv.outbox = self.srv.outbox, []
        for d in sent:
            assert (await self.http.post("/webhooks/f", content=d.body, headers=d.headers)).status_code in (200, 202)

    async def close(self) -> None:
        await self.scaler.stop()
        await self.http.aclose()
