"""The core driven by the real adapters against the fake forge (loopback HTTP),
the in-memory provider and the stand-in runner: queued → minted the forge's
way → runner runs the job → completed → deregistered and deleted. And the
runner side as the real runners behave: a forgejo-runner that got no task
exits 2, which is no failure — its runner record is removed and its job
served by the next instance."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from scaler.app import Scaler
from scaler.clock import FakeClock
from scaler.config import parse_config
from scaler.domain.instance import InstanceState
from scaler.events import JobReported
from scaler.forges.forgejo import ForgejoForge
from scaler.forges.gitea import GiteaForge
from scaler.forges.github import GitHubForge
from scaler.provider import ProviderSettings
from scaler.testing.fake_forge_server import FakeForgeServer
from scaler.testing.memory import MemoryProvider
from scaler.testing.standin import run_launch
from tests.forges.conftest import ADMIN_TOKEN, SECRET, write

ADAPTERS = {"gitea": GiteaForge, "forgejo": ForgejoForge, "github": GitHubForge}
# (kind, version, how the scaler learns of the job): every version the README claims,
# by each way it has (Gitea 1.24 has no job listing; Forgejo 15/16 no job webhooks).
CASES = [
    ("gitea", "1.24.0", "webhook"), ("gitea", "1.25.0", "webhook"), ("gitea", "1.25.0", "polled"),
    ("gitea", "1.27.0", "webhook"), ("gitea", "1.27.0", "polled"),
    ("forgejo", "15.0.0", "polled"), ("forgejo", "16.0.1", "polled"),
    ("forgejo", "17.0.0", "webhook"), ("forgejo", "17.0.0", "polled"),
    ("github", None, "webhook"), ("github", None, "polled"),
]


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


def _config(tmp_path: Path, kind: str, url: str, **options: Any) -> Any:
    return parse_config({
        "controller_id": "rs",
        "forges": [{"name": "f", "type": kind, "url": url, "scope": {"kind": "organization", "name": "acme"},
                    "token_file": str(write(tmp_path, "tok", ADMIN_TOKEN)),
                    "webhook_secret_files": [str(write(tmp_path, "sec", SECRET))], "options": options}],
        "providers": [{"name": "mem", "type": "memory"}],
        "pools": [{"name": "small", "forge": "f", "provider": "mem", "max": 3, "repositories": ["acme/*"],
                   "labels": ["ubuntu-latest:docker://node:20"]}],
    })


async def _scaler(config: Any, kind: str, clock: FakeClock) -> tuple[Scaler, Any, MemoryProvider]:
    adapter = ADAPTERS[kind](config.forges[0], clock=clock)
    provider = MemoryProvider(ProviderSettings("mem", "memory", "rs", {}))
    scaler = Scaler(config, forges={"f": adapter}, providers={"mem": provider}, clock=clock)
    await scaler.rebuild()
    return scaler, adapter, provider


async def _learn(scaler: Scaler, adapter: Any, srv: FakeForgeServer, clock: FakeClock, how: str, config: Any) -> None:
    if how == "polled":
        srv.outbox.clear()  # the webhooks were lost (or the forge sends none)
        clock.advance(config.forges[0].poll_interval)  # the next resync pass
        await scaler.resync.run_once()
    else:
        assert _deliver(scaler, adapter, srv, clock) == 1
    await scaler.settle()


@pytest.mark.parametrize(("kind", "version", "how"), CASES, ids=[f"{k}-{v}-{h}" for k, v, h in CASES])
async def test_job_served_end_to_end(tmp_path: Path, kind: str, version: str | None, how: str) -> None:
    clock = FakeClock()
    with FakeForgeServer(kind, version, clock=clock.now) as srv:
        config = _config(tmp_path, kind, srv.url)
        scaler, adapter, provider = await _scaler(config, kind, clock)
        srv.subscribe("http://127.0.0.1:1/unused", SECRET)
        job = srv.queue_job("acme/app", ["ubuntu-latest"])
        await _learn(scaler, adapter, srv, clock, how, config)
        assert len(provider.instances) == 1
        name, inst = next(iter(provider.instances.items()))
        runner = srv.runner_by_name(name)
        assert runner is not None and runner.ephemeral

        files = {f.path: f.content.reveal() for f in inst.spec.files}
        result = await run_launch(files, inst.spec.command, sleep=_noop)
        assert result.exit_code == 0 and job.status == "success" and job.runner_name == name
        _deliver(scaler, adapter, srv, clock)
        provider.finish(name)
        await scaler.settle()
        await scaler.resync.run_once()
        await scaler.settle()
        assert provider.instances == {}
        assert srv.runners == {}  # every forge removes a used ephemeral runner itself
        await adapter.aclose()


async def test_forgejo_runner_without_a_task_exits_2_and_the_job_is_served_next(tmp_path: Path) -> None:
    """One-job (no --wait) asks once; its job was not ready for it. Exit 2 is
    no failure: the instance is torn down, its runner record (which Forgejo
    keeps for a runner that never had a task) deregistered, and the job,
    still waiting, gets a new instance that runs it."""
    clock = FakeClock()
    with FakeForgeServer("forgejo", "15.0.0", clock=clock.now) as srv:
        config = _config(tmp_path, "forgejo", srv.url, one_job_wait=False)
        scaler, adapter, provider = await _scaler(config, "forgejo", clock)
        job = srv.queue_job("acme/app", ["ubuntu-latest"], blocked=True)
        srv.jobs[job.id].status = "waiting"  # listed as waiting, then blocked again (a concurrency group)
        await _learn(scaler, adapter, srv, clock, "polled", config)
        first, inst = next(iter(provider.instances.items()))
        srv.jobs[job.id].status = "blocked"
        result = await run_launch({f.path: f.content.reveal() for f in inst.spec.files}, inst.spec.command,
                                  sleep=_noop)
        assert result.exit_code == 2 and srv.runner_by_name(first) is not None
        provider.finish(first, exit_code=2)
        await scaler.settle()
        stored = [i for i in scaler.store.instances.values() if i.name == first]
        assert all(i.state is not InstanceState.FAILED for i in stored)
        srv.unblock(job)  # ready again
        clock.advance(config.forges[0].poll_interval)
        await scaler.resync.run_once()
        await scaler.settle()
        assert srv.runner_by_name(first) is None  # deregistered: a record the forge would have kept
        assert first not in provider.instances
        (second, inst2), = provider.instances.items()
        assert second != first or inst2 is not inst
        result = await run_launch({f.path: f.content.reveal() for f in inst2.spec.files}, inst2.spec.command,
                                  sleep=_noop)
        assert result.exit_code == 0 and job.status == "success"
        await adapter.aclose()
