"""The core driven by the real adapters against the fake forge (loopback HTTP),
the in-memory provider and the stand-in runner: queued → minted the forge's
way → runner runs the job → completed → deregistered and deleted."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from scaler.app import Scaler
from scaler.clock import FakeClock
from scaler.config import parse_config
from scaler.events import JobReported
from scaler.forges.forgejo import ForgejoForge
from scaler.forges.gitea import GiteaForge
from scaler.forges.github import GitHubForge
from scaler.provider import ProviderSettings
from scaler.testing.fake_forge_server import FakeForgeServer
from scaler.testing.memory import MemoryProvider
from scaler.testing.standin import run_launch
from tests.forges.conftest import ADMIN_TOKEN, SECRET, write

KINDS = {"gitea": ("1.25.0", GiteaForge), "forgejo": ("15.0.0", ForgejoForge), "github": (None, GitHubForge)}


async def _noop(_: float) -> None:
    return None


def _deliver(scaler: Scaler, adapter: Any, srv: FakeForgeServer, clock: FakeClock) -> int:
    n = 0
    for d in srv.outbox:
        adapter.verify(d.headers, d.body)
        delivery = adapter.parse(d.headers, d.body)
        if delivery.job is not None:
            assert scaler.inbox.offer(JobReported(delivery.job, clock.now(), delivery.delivery_id))
            n += 1
    srv.outbox.clear()
    return n


@pytest.mark.parametrize("kind", sorted(KINDS))
@pytest.mark.parametrize("lose_webhook", [False, True], ids=["webhook", "polled"])
async def test_job_served_end_to_end(tmp_path: Path, kind: str, lose_webhook: bool) -> None:
    version, cls = KINDS[kind]
    clock = FakeClock()
    with FakeForgeServer(kind, version, clock=clock.now) as srv:
        config = parse_config({
            "controller_id": "rs",
            "forges": [{"name": "f", "type": kind, "url": srv.url, "scope": {"kind": "organization", "name": "acme"},
                        "token_file": str(write(tmp_path, "tok", ADMIN_TOKEN)),
                        "webhook_secret_files": [str(write(tmp_path, "sec", SECRET))]}],
            "providers": [{"name": "mem", "type": "memory"}],
            "pools": [{"name": "small", "forge": "f", "provider": "mem", "max": 3, "repositories": ["acme/*"],
                       "labels": ["ubuntu-latest:docker://node:20"]}],
        })
        adapter = cls(config.forges[0], clock=clock)
        provider = MemoryProvider(ProviderSettings("mem", "memory", "rs", {}))
        scaler = Scaler(config, forges={"f": adapter}, providers={"mem": provider}, clock=clock)
        await scaler.rebuild()
        srv.subscribe("http://127.0.0.1:1/unused", SECRET)
        job = srv.queue_job("acme/app", ["ubuntu-latest"])
        if lose_webhook:
            srv.outbox.clear()
            clock.advance(config.forges[0].poll_interval)  # the next resync pass
            await scaler.resync.run_once()
        else:
            assert _deliver(scaler, adapter, srv, clock) == 1
        await scaler.settle()
        assert len(provider.instances) == 1
        name, inst = next(iter(provider.instances.items()))
        runner = srv.runner_by_name(name)
        assert runner is not None and runner.ephemeral

        files = {f.path: f.content.reveal() for f in inst.spec.files}
        result = await run_launch(files, inst.spec.command, sleep=_noop)
        assert result.job_id == job.id and job.status == "success"
        _deliver(scaler, adapter, srv, clock)
        provider.finish(name)
        await scaler.settle()
        await scaler.resync.run_once()
        await scaler.settle()
        assert provider.instances == {}
        assert srv.runners == {}  # deregistered (Gitea), or gone by itself (Forgejo, GitHub)
        if kind == "gitea":
            assert any(m == "DELETE" and p.endswith(f"/actions/runners/{runner.id}") for m, p in srv.requests)
        await adapter.aclose()
