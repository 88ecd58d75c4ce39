"""A scaler behind its real webhook route (httpx over ASGI), with logs
captured as JSON lines, for hostile-input tests."""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import logging
from dataclasses import dataclass
from typing import Any

import httpx
import structlog
from prometheus_client import REGISTRY

from scaler import logging as slog
from scaler.app import Scaler
from scaler.clock import FakeClock
from scaler.config import parse_config
from scaler.provider import ProviderSettings
from scaler.testing import FakeForge, FakeForgeState, MemoryProvider
from scaler.web import create_app
from tests.scenarios.sim import CANARY_WEBHOOK, scenario_config


@dataclass
class Answer:
    status: int
    body: dict[str, Any]
    lines: list[dict[str, Any]]
    metric_delta: float


class Target:
    def __init__(self, **config_overrides: Any) -> None:
        self.config = parse_config(scenario_config(**config_overrides))
        self.clock = FakeClock()
        self.forge = FakeForgeState(secret=CANARY_WEBHOOK)
        self.provider = MemoryProvider(ProviderSettings("mem", "memory", "rs", {}))
        self.scaler = Scaler(
            self.config,
            forges={"fake": FakeForge(self.config.forges[0], self.forge)},
            providers={"mem": self.provider},
            clock=self.clock,
        )
        self.app = create_app(self.scaler)
        self.http = httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url="http://127.0.0.1")
        self.logs = io.StringIO()

    async def __aenter__(self) -> Target:
        self._handlers = logging.getLogger().handlers[:]
        slog.configure("debug", "json", stream=self.logs)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.http.aclose()
        structlog.reset_defaults()
        logging.getLogger().handlers[:] = self._handlers

    def state(self) -> tuple[object, ...]:
        """Everything a refused delivery must leave alone."""
        s = self.scaler
        return (
            len(s.inbox),
            dict(s.store.jobs),
            dict(s.store.instances),
            list(s.deliveries._seen),
            list(self.provider.calls),
        )

    def sign(self, body: bytes, **extra: str) -> dict[str, str]:
        headers = self.forge.sign(body)
        headers.update(extra)
        return headers

    async def post(
        self, headers: dict[str, str], body: bytes, *, forge: str = "fake", result: str | None = None
    ) -> Answer:
        start = len(self.logs.getvalue())
        before = _webhook_total()
        r = await self.http.post(f"/webhooks/{forge}", content=body, headers=headers)
        text = self.logs.getvalue()[start:]
        # Every line is JSON; httpx's are the test client's own, not the server's.
        lines = [d for x in text.splitlines() if (d := json.loads(x)).get("logger") not in ("httpx", "httpcore")]
        try:
            data = r.json()
        except ValueError:
            data = {}
        return Answer(r.status_code, data, lines, _webhook_total() - before)


def _webhook_total() -> float:
    total = 0.0
    for metric in REGISTRY.collect():
        if metric.name == "runner_scaler_webhooks":
            total += sum(s.value for s in metric.samples if s.name.endswith("_total"))
    return total


def job_body(**changes: Any) -> dict[str, Any]:
    """A valid queued workflow_job payload, with top-level or nested changes."""
    body: dict[str, Any] = {
        "action": "queued",
        "workflow_job": {
            "id": 4242,
            "run_id": 42,
            "status": "queued",
            "labels": ["ubuntu-latest"],
            "runner_name": None,
        },
        "repository": {"full_name": "acme/app"},
    }
    for key, value in changes.items():
        if "." in key:
            outer, inner = key.split(".", 1)
            body[outer][inner] = value
        else:
            body[key] = value
    return body


def signature(secret: str, body: bytes, algo: str = "sha256") -> str:
    return hmac.new(secret.encode(), body, getattr(hashlib, algo)).hexdigest()
