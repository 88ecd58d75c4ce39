"""The Gitea adapter against the fake Gitea over loopback HTTP."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import structlog

from scaler.clock import FakeClock
from scaler.domain.job import JobState
from scaler.errors import ForgePermanentError, ForgeTemporaryError, RunnerBusyError
from scaler.forges import build_forge
from scaler.forges.gitea import GiteaForge
from scaler.forges.webhooks_admin import install_hook, list_hooks
from scaler.testing.fake_forge_server import DeliveryFaults, FakeForgeServer
from scaler.testing.standin import run_launch
from tests.forges.conftest import Receiver, forge_config, pool


async def _noop(_: float) -> None:
    return None


def adapter(tmp_path: Path, server: FakeForgeServer, clock: FakeClock, **extra: Any) -> GiteaForge:
    return GiteaForge(forge_config(tmp_path, "gitea", server.url, **extra), clock=clock)


async def test_build_forge_by_type(tmp_path: Path, gitea_server: FakeForgeServer) -> None:
    a = build_forge(forge_config(tmp_path, "gitea", gitea_server.url))
    assert isinstance(a, GiteaForge) and a.kind == "gitea" and a.name == "gitea-a"
    await a.aclose()


async def test_queued_job_found_by_polling_minted_run_and_deregistered(
    tmp_path: Path, gitea_server: FakeForgeServer, clock: FakeClock
) -> None:
    a = adapter(tmp_path, gitea_server, clock)
    job = gitea_server.queue_job("acme/app", ["ubuntu-latest"])
    gitea_server.queue_job("other/app", ["ubuntu-latest"])  # another org: not in scope
    blocked = gitea_server.queue_job("acme/app", ["ubuntu-latest"], blocked=True)
    gitea_server.outbox.clear()  # the webhooks were lost
    queued = await a.list_queued_jobs()
    assert queued is not None and [j.id for j in queued] == [job.id]
    assert queued[0].repository == "acme/app" and queued[0].labels == ("ubuntu-latest",)
    assert queued[0].state is JobState.QUEUED and blocked.id not in [j.id for j in queued]

    with structlog.testing.capture_logs() as logs:
        launch = await a.mint(pool(), "rs-small-1", queued[0])
    reg_tokens = list(gitea_server.registration_tokens)
    assert len(reg_tokens) == 1
    runner = gitea_server.runner_by_name("rs-small-1")
    assert runner is not None and runner.ephemeral and launch.runner_id == runner.id
    assert runner.labels == ("ubuntu-latest:docker://node:20",)
    # The registration token never leaves the scaler.
    everything = repr(launch) + json.dumps(dict(launch.env)) + " ".join(launch.command) + repr(logs)
    everything += "".join(f.path + f.content.reveal() for f in launch.files)
    assert reg_tokens[0] not in everything
    assert launch.env == {} or all(runner.token not in v for v in launch.env.values())
    files = {f.path: f for f in launch.files}
    assert all(f.mode == 0o600 for f in launch.files)
    rf = json.loads(files["/data/.runner"].content.reveal())
    assert rf["uuid"] == runner.uuid and rf["token"] == runner.token and rf["ephemeral"] is True
    assert rf["address"] == gitea_server.url and rf["id"] == runner.id and rf["name"] == "rs-small-1"
    assert launch.image.startswith("docker.io/gitea/act_runner")
    assert launch.command == ("act_runner", "daemon", "--config", "/data/config.yaml")
    assert "file: \"/data/.runner\"" in files["/data/config.yaml"].content.reveal()

    result = await run_launch({p: f.content.reveal() for p, f in files.items()}, launch.command, sleep=_noop)
    assert result.job_id == job.task_id and result.exit_code == 0 and result.tasks == (job.task_id,)
    assert job.status == "success" and job.runner_name == "rs-small-1"
    # Gitea deletes an ephemeral runner once its task is done (models/actions/task.go UpdateTask).
    assert await a.get_runner(runner.id) is None
    await a.deregister(runner.id)  # missing is success
    assert await a.get_runner(runner.id) is None
    assert await a.list_queued_jobs() == []
    await a.aclose()


async def test_busy_runner_is_not_deregistered(tmp_path: Path, gitea_server: FakeForgeServer, clock: FakeClock) -> None:
    a = adapter(tmp_path, gitea_server, clock)
    launch = await a.mint(pool(), "rs-busy", None)
    runner = gitea_server.runner_by_name("rs-busy")
    assert runner is not None and launch.runner_id == runner.id
    job = gitea_server.queue_job("acme/app", ["ubuntu-latest"])
    gitea_server.set_status(job, "running", runner)
    with pytest.raises(RunnerBusyError):
        await a.deregister(runner.id)
    assert runner.id in gitea_server.runners
    await a.aclose()


async def test_runner_listing_pages(tmp_path: Path, gitea_server: FakeForgeServer, clock: FakeClock) -> None:
    a = adapter(tmp_path, gitea_server, clock)
    for i in range(123):
        await a.mint(pool(), f"rs-{i}", None)
    runners = await a.list_runners()
    assert len(runners) == 123 and len({r.id for r in runners}) == 123
    assert all(r.ephemeral and not r.online for r in runners)
    pages = [p for m, p in gitea_server.requests if p.endswith("/actions/runners") and m == "GET"]
    assert len(pages) == 3
    await a.aclose()


async def test_gitea_124_has_no_job_listing(tmp_path: Path, gitea124_server: FakeForgeServer, clock: FakeClock) -> None:
    a = adapter(tmp_path, gitea124_server, clock)
    gitea124_server.queue_job("acme/app", ["ubuntu-latest"])
    assert await a.list_queued_jobs() is None
    findings = await a.check()
    text = "\n".join(str(f) for f in findings)
    assert "1.24.6" in text
    assert any(f.level == "warning" and "min_idle" in f.message for f in findings)
    assert any(f.level == "ok" and "ephemeral credentials: available" in f.message for f in findings)
    await a.aclose()


async def test_check_reports_capabilities(tmp_path: Path, gitea_server: FakeForgeServer, clock: FakeClock) -> None:
    a = adapter(tmp_path, gitea_server, clock)
    findings = await a.check()
    msgs = [f.message for f in findings if f.level == "ok"]
    assert any("1.25.2" in m for m in msgs) and any("job listing: available" in m for m in msgs)
    assert any("scope organization acme" in m for m in msgs)
    assert any(f.level == "warning" and "webhooks" in f.message for f in findings)
    await a.aclose()


async def test_insecure_registration_token_opt_in(tmp_path: Path, gitea_server: FakeForgeServer,
                                                  clock: FakeClock) -> None:
    with structlog.testing.capture_logs() as logs:
        a = adapter(tmp_path, gitea_server, clock, insecure_pass_registration_token=True)
        launch = await a.mint(pool(), "rs-insecure", None)
    assert any("insecure" in str(e.get("event")) for e in logs)
    token = gitea_server.registration_tokens[-1]
    files = {f.path: f.content.reveal() for f in launch.files}
    assert files["/data/registration-token"] == token
    assert token not in " ".join(launch.command) and token not in json.dumps(dict(launch.env))
    assert "--ephemeral" in launch.command[-1]
    assert gitea_server.runner_by_name("rs-insecure") is None  # the instance registers itself
    await a.aclose()


async def test_register_refused_is_permanent(tmp_path: Path, gitea_server: FakeForgeServer, clock: FakeClock) -> None:
    a = adapter(tmp_path, gitea_server, clock)
    gitea_server.fail_next("POST", r"RunnerService/Register$", 503)
    with pytest.raises(ForgeTemporaryError):
        await a.mint(pool(), "rs-x", None)
    gitea_server.fail_next("POST", r"RunnerService/Register$", 403, times=2)
    with pytest.raises(ForgePermanentError):
        await a.mint(pool(), "rs-x", None)
    # a 503 is never retried; a refused token is fetched anew once, then it is permanent
    assert sum(1 for m, p in gitea_server.requests if p.endswith("/Register")) == 3
    await a.aclose()


async def test_registration_token_fetched_once(tmp_path: Path, gitea_server: FakeForgeServer, clock: FakeClock) -> None:
    """Mints share the scope's registration token (one forge call per mint); a token refused after a reset
    is replaced once, and that mint still succeeds."""
    a = adapter(tmp_path, gitea_server, clock)
    for k in range(3):
        await a.mint(pool(), f"rs-x{k}", None)
    tokens = [p for m, p in gitea_server.requests if p.endswith("/registration-token")]
    assert len(tokens) == 1
    gitea_server.scope_tokens.clear()  # an admin reset the token
    launch = await a.mint(pool(), "rs-y", None)
    assert launch.runner_id is not None
    assert len([p for m, p in gitea_server.requests if p.endswith("/registration-token")]) == 2
    await a.aclose()


async def test_webhook_install_is_idempotent_and_delivers(tmp_path: Path, gitea_server: FakeForgeServer,
                                                          clock: FakeClock) -> None:
    a = adapter(tmp_path, gitea_server, clock)
    rx = Receiver(a)
    try:
        first = await install_hook(a, rx.url)
        second = await install_hook(a, rx.url)
        assert first["action"] == "created" and second["action"] == "unchanged"
        assert len(gitea_server.hooks) == 1
        hooks = await list_hooks(a, rx.url)
        assert hooks[0]["reaches_scaler"] and hooks[0]["events"] == ["workflow_job"]
        job = gitea_server.queue_job("acme/app", ["ubuntu-latest"])
        gitea_server.set_status(job, "running")
        gitea_server.set_status(job, "success")
        await gitea_server.flush(DeliveryFaults(duplicate=1.0, reorder=True, seed=3))
        assert rx.refused == [] and len(rx.deliveries) == 6
        states = {d.job.state for d in rx.deliveries if d.job}
        assert states == {JobState.QUEUED, JobState.IN_PROGRESS, JobState.COMPLETED}
        merged = None
        for d in rx.deliveries:
            merged = d.job if merged is None else merged.merge(d.job)
        assert merged is not None and merged.state is JobState.COMPLETED
        assert len({d.delivery_id for d in rx.deliveries}) == 3  # duplicates keep their id
        findings = await a.check()
        assert any(f.level == "ok" and "webhooks" in f.message for f in findings)
    finally:
        rx.stop()
        await a.aclose()


async def test_instance_scope_uses_system_hooks(tmp_path: Path, gitea_server: FakeForgeServer,
                                                clock: FakeClock) -> None:
    a = adapter(tmp_path, gitea_server, clock, scope={"kind": "instance"})
    res = await install_hook(a, "http://127.0.0.1:1/webhooks/g")
    assert res["action"] == "created"
    assert ("POST", "/api/v1/admin/hooks") in gitea_server.requests
    assert all(h.system for h in gitea_server.hooks.values())
    await a.aclose()


async def test_old_gitea_refuses_non_ephemeral_register(tmp_path: Path, clock: FakeClock) -> None:
    with FakeForgeServer("gitea", "1.23.1") as srv:
        a = adapter(tmp_path, srv, clock)
        with pytest.raises(ForgePermanentError, match="1.24"):
            await a.mint(pool(), "rs-old", None)
        assert srv.registration_tokens == [] and srv.runners == {}
        findings = await a.check()
        assert any(f.level == "error" and "ephemeral" in f.message for f in findings)
        await a.aclose()


async def test_timeouts_retried_on_get_only(tmp_path: Path, gitea_server: FakeForgeServer, clock: FakeClock) -> None:
    a = adapter(tmp_path, gitea_server, clock, request_timeout=0.2)
    gitea_server.fail_next("GET", r"/actions/runners$", 200, delay=1.0)  # stalls past the client timeout
    assert await a.list_runners() == []
    assert sum(1 for m, p in gitea_server.requests if m == "GET" and p.endswith("/actions/runners")) == 2
    gitea_server.fail_next("POST", r"RunnerService/Register$", 200, delay=1.0)
    with pytest.raises(ForgeTemporaryError):
        await a.mint(pool(), "rs-lost", None)
    assert sum(1 for _, p in gitea_server.requests if p.endswith("/Register")) == 1  # a mint is never retried
    await a.aclose()


async def test_metrics(tmp_path: Path, gitea_server: FakeForgeServer, clock: FakeClock) -> None:
    from prometheus_client import REGISTRY

    a = adapter(tmp_path, gitea_server, clock)
    labels = {"forge": "gitea-a", "endpoint": "list_runners", "status": "200"}
    before = REGISTRY.get_sample_value("runner_scaler_forge_requests_total", labels) or 0.0
    await a.list_runners()
    assert REGISTRY.get_sample_value("runner_scaler_forge_requests_total", labels) == before + 1
    await a.aclose()


async def test_runner_config_with_shared_cache(tmp_path: Path, gitea_server: FakeForgeServer,
                                               clock: FakeClock) -> None:
    import yaml

    secret = tmp_path / "cache-secret"
    secret.write_text("cache-secret-value\n")
    a = adapter(tmp_path, gitea_server, clock, options={"cache_server": "http://cache.internal:8088/",
                                                        "cache_secret_file": str(secret)})
    launch = await a.mint(pool(("ubuntu-latest:docker://node:20", "native:host")), "rs-c", None)
    cfg = yaml.safe_load(next(f.content.reveal() for f in launch.files if f.path.endswith("config.yaml")))
    assert cfg["runner"] == {"file": "/data/.runner", "capacity": 1,
                             "labels": ["ubuntu-latest:docker://node:20", "native:host"]}
    assert cfg["cache"] == {"enabled": True, "external_server": "http://cache.internal:8088/",
                            "external_secret": "cache-secret-value"}
    await a.aclose()


async def test_ephemeral_runner_file_means_one_task_then_exit(tmp_path: Path, gitea_server: FakeForgeServer,
                                                              clock: FakeClock) -> None:
    """act_runner with an ephemeral .runner (daemon.go PollOnce) takes one task
    and exits, leaving the next job for another instance; a runner file
    without ``ephemeral`` would keep taking jobs."""
    a = adapter(tmp_path, gitea_server, clock)
    first = gitea_server.queue_job("acme/app", ["ubuntu-latest"])
    second = gitea_server.queue_job("acme/app", ["ubuntu-latest"])
    launch = await a.mint(pool(), "rs-eph", None)
    files = {f.path: f.content.reveal() for f in launch.files}
    result = await run_launch(files, launch.command, sleep=_noop, max_polls=5)
    assert result.exit_code == 0 and result.tasks == (first.task_id,)
    assert first.status == "success" and second.status == "waiting"
    assert gitea_server.runner_by_name("rs-eph") is None  # the forge removed the used ephemeral runner

    other = json.loads(files["/data/.runner"])
    reused = await a.mint(pool(), "rs-reused", None)
    rf = json.loads(next(f.content.reveal() for f in reused.files if f.path.endswith(".runner")))
    gitea_server.runner_by_name("rs-reused").ephemeral = False  # type: ignore[union-attr]
    rf["ephemeral"] = False
    third = gitea_server.queue_job("acme/app", ["ubuntu-latest"])
    many = await run_launch({"/data/.runner": json.dumps(rf)}, ("act_runner", "daemon"), sleep=_noop, max_polls=5)
    assert many.tasks == (second.task_id, third.task_id) and other["ephemeral"] is True
    await a.aclose()


async def test_unknown_registration_token_is_permanent(tmp_path: Path, gitea_server: FakeForgeServer,
                                                       clock: FakeClock) -> None:
    """Gitea refuses with a plain error (connect ``unknown``, HTTP 500): a
    token it does not know is permanent, not retried as a 5xx."""
    a = adapter(tmp_path, gitea_server, clock)
    original = gitea_server.registration_token
    # the scope's token answer is not a token Register knows (a mismatched URL or scope)
    gitea_server.registration_token = lambda scope: "f" * 40  # type: ignore[method-assign]
    with pytest.raises(ForgePermanentError, match="registration token not found"):
        await a.mint(pool(), "rs-bad", None)
    gitea_server.registration_token = original  # type: ignore[method-assign]
    await a.aclose()


async def test_gitea_127_registration_token_by_post(tmp_path: Path, clock: FakeClock) -> None:
    with FakeForgeServer("gitea", "1.27.0") as srv:
        a = adapter(tmp_path, srv, clock)
        launch = await a.mint(pool(), "rs-127", None)
        assert launch.runner_id is not None
        assert ("POST", "/api/v1/orgs/acme/actions/runners/registration-token") in srv.requests
        assert ("GET", "/api/v1/orgs/acme/actions/runners/registration-token") not in srv.requests
        await a.aclose()


@pytest.mark.parametrize("bad_id", [-5, 0, 2**63])
async def test_listing_with_an_impossible_id_is_logged_and_skipped(tmp_path: Path, gitea_server: FakeForgeServer,
                                                                   clock: FakeClock, bad_id: int) -> None:
    a = adapter(tmp_path, gitea_server, clock)
    good = gitea_server.queue_job("acme/app", ["ubuntu-latest"])
    bad = gitea_server.queue_job("acme/app", ["ubuntu-latest"])
    bad.id = bad_id  # what a broken or hostile forge could answer
    runner = gitea_server.new_runner("rs-x", labels=["ubuntu-latest"])
    runner.id = bad_id
    with structlog.testing.capture_logs() as logs:
        queued = await a.list_queued_jobs()
        runners = await a.list_runners()
    assert queued is not None and [j.id for j in queued] == [good.id]
    assert runners == []
    warned = [e for e in logs if e.get("log_level") == "warning"]
    assert any("queued job skipped" in e["event"] and "workflow_job.id" in e["reason"] for e in warned)
    assert any("runner listing entry skipped" in e["event"] and "runner.id" in e["reason"] for e in warned)
    await a.aclose()
