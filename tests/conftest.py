"""Shared fixtures: configs, and a harness running the real core against the
shipped doubles (fake forge, in-memory provider) with an injected clock."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from scaler.app import Scaler
from scaler.clock import FakeClock
from scaler.config import Config, parse_config
from scaler.events import JobReported
from scaler.provider import ProviderSettings
from scaler.testing import FakeForge, FakeForgeState, MemoryProvider

SECRET = "test-webhook-secret-123"


def base_config(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "controller_id": "rs",
        "forges": [
            {
                "name": "fake",
                "type": "fake",
                "url": "http://127.0.0.1:3000",
                "scope": {"kind": "organization", "name": "acme"},
                "webhook_secret_envs": ["RS_TEST_SECRET"],
            }
        ],
        "providers": [{"name": "mem", "type": "memory"}],
        "pools": [
            {
                "name": "small",
                "forge": "fake",
                "provider": "mem",
                "labels": ["ubuntu-latest:docker://node:20", "self-hosted"],
                "max": 5,
                "repositories": ["acme/*"],
            }
        ],
        "timing": {"reconcile_interval": "1s", "resync_interval": "30s", "collect_interval": "5s"},
    }
    data.update(overrides)
    return data


@pytest.fixture(autouse=True)
def _secret_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("RS_TEST_SECRET", SECRET)
    yield


@dataclass
class Harness:
    config: Config
    scaler: Scaler
    forge: FakeForgeState
    provider: MemoryProvider
    clock: FakeClock

    def deliver(self, headers: dict[str, str], body: bytes) -> None:
        adapter = self.scaler.forges["fake"]
        adapter.verify(headers, body)
        delivery = adapter.parse(headers, body)
        assert delivery.job is not None
        assert self.scaler.inbox.offer(JobReported(delivery.job, self.clock.now(), delivery.delivery_id))

    def queue(self, repo: str = "acme/app", labels: tuple[str, ...] = ("ubuntu-latest",)) -> int:
        job_id, headers, body = self.forge.queue_job(repo, list(labels))
        self.deliver(headers, body)
        return job_id

    async def sync(self) -> None:
        """Settle, run a resync pass (as the timer would), settle again."""
        await self.scaler.settle()
        await self.scaler.resync.run_once()
        await self.scaler.settle()

    def instance_for(self, job_id: int) -> str:
        return next(i.name for i in self.scaler.store.instances.values() if i.job_id == job_id)

    def run_job(self, job_id: int, runner: str) -> None:
        """The runner takes the job, runs it and exits, as a real one would."""
        self.deliver(*self.forge.start_job(job_id, runner))
        self.deliver(*self.forge.complete_job(job_id))
        self.provider.finish(runner)

    def states(self) -> dict[str, str]:
        return {i.name: str(i.state) for i in self.scaler.store.instances.values()}


def make_harness(
    data: dict[str, Any] | None = None, *, auto_online: bool = True, clock: FakeClock | None = None
) -> Harness:
    config = parse_config(data or base_config())
    clock = clock or FakeClock()
    state = FakeForgeState(secret=SECRET, auto_online=auto_online)
    forge = FakeForge(config.forges[0], state)
    providers = {
        p.name: MemoryProvider(ProviderSettings(p.name, p.type, config.controller_id, dict(p.options)))
        for p in config.providers
    }
    scaler = Scaler(config, forges={"fake": forge}, providers=providers, clock=clock)
    return Harness(config, scaler, state, providers["mem"], clock)


@pytest.fixture
def harness() -> Harness:
    return make_harness()
