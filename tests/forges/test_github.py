"""The GitHub adapter against the fake GitHub over loopback HTTP."""

from __future__ import annotations

import base64
import itertools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from scaler.clock import FakeClock
from scaler.domain.job import JobState
from scaler.errors import ForgePermanentError, ForgeTemporaryError, PollSkipped, RunnerBusyError
from scaler.forges.github import GitHubForge
from scaler.forges.webhooks_admin import install_hook, list_hooks
from scaler.testing.fake_forge_server import FakeForgeServer
from scaler.testing.standin import run_launch
from tests.forges.conftest import Receiver, forge_config, pool, write


async def _noop(_: float) -> None:
    return None


def adapter(tmp_path: Path, server: FakeForgeServer, clock: FakeClock, **extra: Any) -> GitHubForge:
    return GitHubForge(forge_config(tmp_path, "github", server.url, **extra), clock=clock)


async def test_poll_mint_jit_run_and_deregister(tmp_path: Path, github_server: FakeForgeServer,
                                                clock: FakeClock) -> None:
    a = adapter(tmp_path, github_server, clock, scope={"kind": "repository", "name": "acme/app"})
    job = github_server.queue_job("acme/app", ["self-hosted", "linux", "gpu"])
    github_server.outbox.clear()
    queued = await a.list_queued_jobs()
    assert queued is not None and [j.id for j in queued] == [job.id]
    assert queued[0].labels == ("self-hosted", "linux", "gpu") and queued[0].run_id == job.run_id

    launch = await a.mint(pool(("gpu", "self-hosted")), "rs-gpu-1", queued[0])
    runner = github_server.runner_by_name("rs-gpu-1")
    assert runner is not None and runner.ephemeral and launch.runner_id == runner.id
    files = {f.path: f.content.reveal() for f in launch.files}
    assert files["/run/runner-scaler/jitconfig"] == runner.jit
    assert launch.env == {} and runner.jit not in " ".join(launch.command)
    assert "run.sh --jitconfig" in launch.command[-1] and launch.image.startswith("ghcr.io/actions/actions-runner")
    assert json.loads(base64.b64decode(runner.jit))["name"] == "rs-gpu-1"

    result = await run_launch(files, launch.command, sleep=_noop)
    assert result.job_id == job.id and job.status == "success"
    await a.deregister(runner.id)  # JIT runners remove themselves: 404 is success
    await a.aclose()


async def test_busy_runner_refused_and_name_conflict(tmp_path: Path, github_server: FakeForgeServer,
                                                     clock: FakeClock) -> None:
    a = adapter(tmp_path, github_server, clock)
    await a.mint(pool(), "rs-1", None)
    runner = github_server.runner_by_name("rs-1")
    assert runner is not None
    job = github_server.queue_job("acme/app", ["ubuntu-latest"])
    github_server.set_status(job, "running", runner)
    with pytest.raises(RunnerBusyError):
        await a.deregister(runner.id)
    with pytest.raises(ForgeTemporaryError, match="already exists"):
        await a.mint(pool(), "rs-1", None)
    assert sum(1 for m, p in github_server.requests if p.endswith("generate-jitconfig")) == 2
    info = await a.get_runner(runner.id)
    assert info is not None and info.busy
    assert [r.name for r in await a.list_runners()] == ["rs-1"]
    await a.aclose()


async def test_mint_never_retried_on_5xx(tmp_path: Path, github_server: FakeForgeServer, clock: FakeClock) -> None:
    a = adapter(tmp_path, github_server, clock)
    github_server.fail_next("POST", "generate-jitconfig$", 502)
    with pytest.raises(ForgeTemporaryError):
        await a.mint(pool(), "rs-1", None)
    assert sum(1 for m, p in github_server.requests if p.endswith("generate-jitconfig")) == 1
    await a.aclose()


async def test_etag_conditional_requests(tmp_path: Path, github_server: FakeForgeServer, clock: FakeClock) -> None:
    a = adapter(tmp_path, github_server, clock, scope={"kind": "repository", "name": "acme/app"}, poll_interval=0.001)
    github_server.queue_job("acme/app", ["x"])
    first = await a.list_queued_jobs()
    before = github_server.rate_remaining
    clock.advance(60)
    second = await a.list_queued_jobs()
    assert first == second and first is not None and len(first) == 1
    assert github_server.rate_remaining == before  # all 304s: no budget spent
    await a.aclose()


async def test_org_scope_polls_each_repository(tmp_path: Path, github_server: FakeForgeServer,
                                               clock: FakeClock) -> None:
    a = adapter(tmp_path, github_server, clock)
    j1 = github_server.queue_job("acme/app", ["x"])
    j2 = github_server.queue_job("acme/lib", ["x"])
    github_server.set_status(j2, "running")
    j3 = github_server.queue_job("acme/lib", ["x"])
    github_server.queue_job("other/app", ["x"])
    queued = await a.list_queued_jobs()
    assert queued is not None and sorted(j.id for j in queued) == [j1.id, j3.id]
    await a.aclose()


async def test_poller_slows_down_and_never_exceeds_budget(tmp_path: Path, clock: FakeClock) -> None:
    with FakeForgeServer("github", rate_limit=400, rate_window=3600, clock=clock.now) as srv:
        a = adapter(tmp_path, srv, clock, scope={"kind": "repository", "name": "acme/app"}, poll_interval=30,
                    options={"rate_limit_reserve": 20})
        polls: list[float] = []
        previous = None
        for _ in range(115):  # just under one rate-limit window of 30-second resync passes
            if previous is not None:
                srv.set_status(previous, "success")
            previous = srv.queue_job("acme/app", ["x"])  # every pass changes the data (no free 304s)
            try:
                await a.list_queued_jobs()
                polls.append(clock.now())
            except PollSkipped:
                pass  # waiting for the budget: this pass relies on webhooks
            assert srv.rate_remaining >= 0
            clock.advance(30)
        gaps = [b - a_ for a_, b in itertools.pairwise(polls)]
        assert 10 < len(polls) < 115 and max(gaps) > 30  # slowed down to fit the budget
        assert srv.rate_remaining >= 20 - a._last_poll_cost  # the reserve was kept for mints
        clock.advance(3600)  # the window resets: polling resumes at once
        assert await a.list_queued_jobs() is not None
        assert srv.rate_remaining > 350
        await a.aclose()


async def test_retry_after_on_get_is_honoured(tmp_path: Path, github_server: FakeForgeServer,
                                              clock: FakeClock) -> None:
    slept: list[float] = []

    async def sleep(s: float) -> None:
        slept.append(s)

    clock.sleep = sleep  # type: ignore[method-assign]
    a = adapter(tmp_path, github_server, clock)
    github_server.fail_next("GET", r"/actions/runners$", 429, retry_after=7)
    github_server.fail_next("GET", r"/actions/runners$", 503)
    assert await a.list_runners() == []
    assert slept[0] == 7 and len(slept) == 2
    github_server.fail_next("GET", r"/actions/runners$", 500, times=5)
    with pytest.raises(ForgeTemporaryError):
        await a.list_runners()
    github_server.fail_next("GET", r"/actions/runners$", 429, retry_after=600)  # too long: handed to the core
    with pytest.raises(ForgeTemporaryError) as err:
        await a.list_runners()
    assert err.value.retry_after == 600
    await a.aclose()


async def test_secondary_rate_limit_403(tmp_path: Path, github_server: FakeForgeServer, clock: FakeClock) -> None:
    a = adapter(tmp_path, github_server, clock)
    github_server.rate_remaining = 0
    with pytest.raises(ForgeTemporaryError) as err:
        await a.list_runners()
    assert err.value.retry_after is not None and err.value.retry_after > 0
    await a.aclose()


@pytest.fixture
def app_key(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    pub = key.public_key().public_bytes(serialization.Encoding.PEM,
                                        serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    yield write(tmp_path, "app.pem", pem), pub


async def test_app_token_cached_and_refreshed(tmp_path: Path, clock: FakeClock, app_key: tuple[Path, str]) -> None:
    key_file, pub = app_key
    with FakeForgeServer("github", app_id=12, app_public_key=pub, clock=clock.now) as srv:
        a = adapter(tmp_path, srv, clock, github_app={"app_id": 12, "private_key_file": str(key_file)})
        assert a.app is not None and a.app.installation_id is None
        await a.list_runners()  # installation discovered from the org, token minted
        assert a.app.installation_id == srv.installation_id and a.app.refreshes == 1
        await a.list_runners()
        clock.advance(3000)
        await a.list_runners()
        assert a.app.refreshes == 1  # still valid: cached
        clock.advance(400)  # within 5 minutes of expiry: refreshed before use
        await a.list_runners()
        assert a.app.refreshes == 2 and len(srv.installation_tokens) == 2
        launch = await a.mint(pool(), "rs-app", None)
        assert launch.runner_id is not None
        await a.aclose()


async def test_app_installation_from_delivery(tmp_path: Path, clock: FakeClock, app_key: tuple[Path, str]) -> None:
    key_file, pub = app_key
    with FakeForgeServer("github", app_id=12, app_public_key=pub, clock=clock.now) as srv:
        a = adapter(tmp_path, srv, clock, github_app={"app_id": 12, "private_key_file": str(key_file)})
        srv.subscribe("http://127.0.0.1:1/", "forge-test-secret-1")
        srv.queue_job("acme/app", ["x"])
        d = srv.outbox[0]
        a.verify(d.headers, d.body)
        assert a.parse(d.headers, d.body).job is not None
        assert a.app is not None and a.app.installation_id == srv.installation_id
        await a.list_runners()
        assert not any(p.endswith("/installation") for _, p in srv.requests)
        await a.aclose()


async def test_webhooks_and_check(tmp_path: Path, github_server: FakeForgeServer, clock: FakeClock) -> None:
    a = adapter(tmp_path, github_server, clock)
    rx = Receiver(a)
    try:
        assert (await install_hook(a, rx.url))["action"] == "created"
        assert (await install_hook(a, rx.url))["action"] == "unchanged"
        assert (await list_hooks(a, rx.url))[0]["reaches_scaler"]
        job = github_server.queue_job("acme/app", ["x"])
        github_server.set_status(job, "running")
        github_server.set_status(job, "success")
        await github_server.flush()
        assert [d.job.state for d in rx.deliveries if d.job] == [JobState.QUEUED, JobState.IN_PROGRESS,
                                                                 JobState.COMPLETED]
        findings = await a.check()
        assert all(f.level == "ok" for f in findings), findings
    finally:
        rx.stop()
        await a.aclose()


async def test_rate_limit_gauge(tmp_path: Path, github_server: FakeForgeServer, clock: FakeClock) -> None:
    from prometheus_client import REGISTRY

    a = adapter(tmp_path, github_server, clock)
    await a.list_runners()
    value = REGISTRY.get_sample_value("runner_scaler_forge_rate_limit_remaining", {"forge": "github-a"})
    assert value == github_server.rate_remaining
    await a.aclose()


async def test_poll_delay_grows_as_budget_shrinks(tmp_path: Path, github_server: FakeForgeServer,
                                                  clock: FakeClock) -> None:
    from scaler.forges._http import RateLimit

    a = adapter(tmp_path, github_server, clock, poll_interval=30, options={"rate_limit_reserve": 100})
    a._last_poll_cost = 10
    reset = clock.now() + 3000
    delays = []
    for remaining in (5000, 2000, 1000, 500, 200, 120, 100, 0):
        a.http.rate = RateLimit(limit=5000, remaining=remaining, reset=reset)
        delays.append(a.poll_delay())
    assert delays[0] == 30 and delays == sorted(delays) and delays[-1] >= 3000
    a.http.rate = RateLimit(limit=5000, remaining=105, reset=reset)
    assert not a._budget_allows()  # one more poll would eat into the reserve
    clock.advance(3001)
    assert a._budget_allows()  # the window has reset
    await a.aclose()


async def test_revoked_app_token_is_replaced(tmp_path: Path, clock: FakeClock, app_key: tuple[Path, str]) -> None:
    key_file, pub = app_key
    with FakeForgeServer("github", app_id=12, app_public_key=pub, clock=clock.now) as srv:
        a = adapter(tmp_path, srv, clock, github_app={"app_id": 12, "private_key_file": str(key_file),
                                                      "installation_id": srv.installation_id})
        await a.list_runners()
        srv.installation_tokens.clear()  # revoked on the forge
        with pytest.raises(ForgePermanentError):
            await a.list_runners()
        await a.list_runners()  # a fresh token was minted
        assert a.app is not None and a.app.refreshes == 2
        await a.aclose()
