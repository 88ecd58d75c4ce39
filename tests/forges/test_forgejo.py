"""The Forgejo adapter against the fake Forgejo over loopback HTTP."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from scaler.clock import FakeClock
from scaler.domain.job import JobState
from scaler.errors import ForgePermanentError
from scaler.forges.forgejo import JOB_EVENTS, ForgejoForge
from scaler.forges.webhooks_admin import install_hook
from scaler.testing.fake_forge_server import FakeForgeServer
from scaler.testing.standin import run_launch
from tests.forges.conftest import Receiver, forge_config, pool


async def _noop(_: float) -> None:
    return None


def adapter(tmp_path: Path, server: FakeForgeServer, clock: FakeClock, **extra: Any) -> ForgejoForge:
    return ForgejoForge(forge_config(tmp_path, "forgejo", server.url, **extra), clock=clock)


async def test_poll_mint_with_handle_run_and_cleanup(tmp_path: Path, forgejo_server: FakeForgeServer,
                                                     clock: FakeClock) -> None:
    a = adapter(tmp_path, forgejo_server, clock)
    other = forgejo_server.queue_job("acme/app", ["docker"])
    job = forgejo_server.queue_job("acme/app", ["docker"])
    forgejo_server.outbox.clear()  # webhooks lost
    queued = await a.list_queued_jobs()
    assert queued is not None and {j.id for j in queued} == {other.id, job.id}
    mine = next(j for j in queued if j.id == job.id)
    assert mine.handle == job.handle and mine.repository == "acme/app" and mine.state is JobState.QUEUED

    launch = await a.mint(pool(("docker:docker://node:20",)), "rs-small-7", mine)
    runner = forgejo_server.runner_by_name("rs-small-7")
    assert runner is not None and runner.ephemeral and launch.runner_id == runner.id and launch.bound_to_job
    # forgejo-runner 12.8: a connection from flags, the token from a file, bound by the handle
    assert launch.command == ("forgejo-runner", "one-job", "--url", forgejo_server.url, "--uuid", runner.uuid,
                              "--token-url", "file:/data/token", "--label", "docker:docker://node:20",
                              "--handle", job.handle, "--wait")
    assert launch.env == {} and forgejo_server.registration_tokens == []
    files = {f.path: f.content.reveal() for f in launch.files}
    assert files == {"/data/token": runner.token}  # exactly the token: file: secrets are read as they are
    assert all(f.mode == 0o600 for f in launch.files)

    result = await run_launch(files, launch.command, sleep=_noop)
    assert result.exit_code == 0 and result.calls[1].startswith("FetchSingleTask")
    assert result.job_id == job.task_id  # the handle bound the runner to its own job, not the older one
    assert job.status == "success" and other.status == "waiting"
    assert runner.id not in forgejo_server.runners  # Forgejo removes used ephemeral runners
    await a.deregister(runner.id)  # already gone: success
    await a.aclose()


async def test_runners_listing_pages_with_total_header(tmp_path: Path, forgejo_server: FakeForgeServer,
                                                       clock: FakeClock) -> None:
    a = adapter(tmp_path, forgejo_server, clock)
    for i in range(60):
        await a.mint(pool(), f"rs-{i}", None)
    runners = await a.list_runners()
    assert len(runners) == 60 and {r.name for r in runners} == {f"rs-{i}" for i in range(60)}
    await a.aclose()


async def test_old_forgejo_needs_opt_in(tmp_path: Path, clock: FakeClock) -> None:
    with FakeForgeServer("forgejo", "11.0.3+gitea-1.22.0") as srv:
        a = adapter(tmp_path, srv, clock)
        with pytest.raises(ForgePermanentError, match="insecure_pass_registration_token"):
            await a.mint(pool(), "rs-1", None)
        findings = await a.check()
        assert any(f.level == "error" and "ephemeral" in f.message for f in findings)
        await a.aclose()
        b = adapter(tmp_path, srv, clock, insecure_pass_registration_token=True)
        launch = await b.mint(pool(), "rs-2", None)
        files = {f.path: f.content.reveal() for f in launch.files}
        assert files["/data/registration-token"] == srv.registration_tokens[-1]
        assert srv.registration_tokens[-1] not in " ".join(launch.command)
        await b.aclose()


async def test_check(tmp_path: Path, forgejo_server: FakeForgeServer, clock: FakeClock) -> None:
    a = adapter(tmp_path, forgejo_server, clock)
    findings = await a.check()
    ok = [f.message for f in findings if f.level == "ok"]
    assert any("15.0.1" in m for m in ok) and any("job listing: available" in m for m in ok)
    assert any("ephemeral credentials: available" in m for m in ok)
    await a.aclose()


@pytest.mark.parametrize("top_repository", [True, False], ids=["repository", "run.repository"])
async def test_webhooks_per_status(tmp_path: Path, clock: FakeClock, top_repository: bool) -> None:
    srv = FakeForgeServer("forgejo", "17.0.0", payload_repository=top_repository).start()
    a = adapter(tmp_path, srv, clock)
    rx = Receiver(a)
    try:
        res = await install_hook(a, rx.url)
        assert res["action"] == "created" and tuple(res["events"]) == JOB_EVENTS
        hook = next(iter(srv.hooks.values()))
        assert hook.type == "forgejo" and hook.content_type == "json"
        job = srv.queue_job("acme/app", ["docker"], blocked=True)
        srv.unblock(job)
        srv.set_status(job, "running")
        srv.set_status(job, "cancelled")
        await srv.flush()
        assert rx.refused == []
        assert [d.event for d in rx.deliveries] == ["workflow_job_blocked", "workflow_job_waiting",
                                                   "workflow_job_running", "workflow_job_cancelled"]
        assert [d.job.state if d.job else None for d in rx.deliveries] == [
            None, JobState.QUEUED, JobState.IN_PROGRESS, JobState.COMPLETED]
        assert rx.deliveries[1].job is not None and rx.deliveries[1].job.handle == job.handle
        assert all(d.job.repository == "acme/app" for d in rx.deliveries if d.job)
    finally:
        rx.stop()
        srv.stop()
        await a.aclose()


async def test_user_and_repo_scopes(tmp_path: Path, forgejo_server: FakeForgeServer, clock: FakeClock) -> None:
    j1 = forgejo_server.queue_job("acme/app", ["docker"])
    forgejo_server.queue_job("acme/other", ["docker"])
    a = adapter(tmp_path, forgejo_server, clock, scope={"kind": "repository", "name": "acme/app"})
    queued = await a.list_queued_jobs()
    assert queued is not None and [j.id for j in queued] == [j1.id]
    await a.mint(pool(), "rs-repo", None)
    assert ("POST", "/api/v1/repos/acme/app/actions/runners") in forgejo_server.requests
    await a.aclose()
    b = adapter(tmp_path, forgejo_server, clock, scope={"kind": "user", "name": "me"})
    await b.mint(pool(), "rs-user", None)
    assert ("POST", "/api/v1/user/actions/runners") in forgejo_server.requests
    await b.aclose()


async def test_runner_command_override_keeps_the_handle(tmp_path: Path, forgejo_server: FakeForgeServer,
                                                        clock: FakeClock) -> None:
    a = adapter(tmp_path, forgejo_server, clock, options={"runner_command": ["/standin/runner.sh"],
                                                          "runner_dir": "/var/lib/runner"})
    job = forgejo_server.queue_job("acme/app", ["docker"])
    queued = await a.list_queued_jobs()
    assert queued is not None
    launch = await a.mint(pool(), "rs-o", queued[0])
    runner = forgejo_server.runner_by_name("rs-o")
    assert runner is not None
    assert launch.command == ("/standin/runner.sh", "one-job", "--url", forgejo_server.url, "--uuid", runner.uuid,
                              "--token-url", "file:/var/lib/runner/token", "--label", "ubuntu-latest:docker://node:20",
                              "--handle", job.handle, "--wait")
    assert {f.path for f in launch.files} == {"/var/lib/runner/token"}
    await a.aclose()


async def test_cache_server_goes_into_a_config_file(tmp_path: Path, forgejo_server: FakeForgeServer,
                                                    clock: FakeClock) -> None:
    secret = tmp_path / "cache-secret"
    secret.write_text("c4che-s3cret\n")
    a = adapter(tmp_path, forgejo_server, clock, options={"cache_server": "http://cache.internal:8088/",
                                                          "cache_secret_file": str(secret)})
    launch = await a.mint(pool(), "rs-c", None)
    files = {f.path: f.content.reveal() for f in launch.files}
    assert files["/data/config.yaml"] == ('cache:\n  enabled: true\n  external_server: "http://cache.internal:8088/"\n'
                                          '  secret: "c4che-s3cret"\n')
    assert launch.command[2:4] == ("--config", "/data/config.yaml")
    await a.aclose()


async def test_no_task_exits_2_and_the_job_stays_queued(tmp_path: Path, forgejo_server: FakeForgeServer,
                                                       clock: FakeClock) -> None:
    """forgejo-runner one-job without --wait whose job went elsewhere exits 2;
    its runner record stays until deregistered, and the job is still waiting."""
    a = adapter(tmp_path, forgejo_server, clock, options={"one_job_wait": False})
    job = forgejo_server.queue_job("acme/app", ["ubuntu-latest"])
    queued = await a.list_queued_jobs()
    assert queued is not None
    launch = await a.mint(pool(), "rs-late", queued[0])
    assert "--wait" not in launch.command
    thief = forgejo_server.new_runner("other", labels=["ubuntu-latest"], ephemeral=True)
    forgejo_server.set_status(job, "running", thief)  # taken by another runner first
    forgejo_server.set_status(job, "failure")
    retry = forgejo_server.queue_job("acme/app", ["ubuntu-latest"])  # a re-run: a new attempt, a new handle
    result = await run_launch({f.path: f.content.reveal() for f in launch.files}, launch.command, sleep=_noop)
    assert result.exit_code == 2 and result.job_id is None
    assert launch.runner_id in forgejo_server.runners  # Forgejo removes only runners that ran a task
    await a.deregister(launch.runner_id or 0)
    assert launch.runner_id not in forgejo_server.runners
    assert retry.status == "waiting" and [j.id for j in await a.list_queued_jobs() or []] == [retry.id]
    await a.aclose()


async def test_running_job_names_the_runner_minted_for_its_handle(tmp_path: Path, clock: FakeClock) -> None:
    with FakeForgeServer("forgejo", "17.0.0") as srv:
        a = adapter(tmp_path, srv, clock)
        srv.subscribe("http://127.0.0.1:1/x", "forge-test-secret-1")
        job = srv.queue_job("acme/app", ["ubuntu-latest"])
        queued = await a.list_queued_jobs()
        assert queued is not None
        launch = await a.mint(pool(), "rs-small-j1", queued[0])
        await run_launch({f.path: f.content.reveal() for f in launch.files}, launch.command, sleep=_noop)
        running = [a.parse(d.headers, d.body) for d in srv.outbox if b'"running"' in d.body]
        assert running and running[0].job is not None and running[0].job.runner_name == "rs-small-j1"
        assert job.status == "success"
        await a.aclose()


async def test_listing_with_an_impossible_id_is_logged_and_skipped(tmp_path: Path, forgejo_server: FakeForgeServer,
                                                                   clock: FakeClock) -> None:
    import structlog

    a = adapter(tmp_path, forgejo_server, clock)
    good = forgejo_server.queue_job("acme/app", ["docker"])
    bad = forgejo_server.queue_job("acme/app", ["docker"])
    bad.id = -5
    with structlog.testing.capture_logs() as logs:
        queued = await a.list_queued_jobs()
    assert queued is not None and [j.id for j in queued] == [good.id]
    assert any(e["event"] == "queued job skipped" and "job.id" in e["reason"] for e in logs)
    await a.aclose()
