"""The same promise with the real Gitea, Forgejo and GitHub adapters talking
HTTP to the fake forge server on 127.0.0.1 (its own job and runner model,
its own webhook payloads), the real core and the memory provider.

Injected: 30 % of webhooks lost, and forge 5xx / 429 answers on the listing
and registration endpoints. Checked: every job ran; provider, store and the
forge's runners agree at the end (every forge removes a used ephemeral
runner; one that never ran a job is deregistered); no busy runner's instance deleted;
no pool over max; no admin token, webhook secret or runner token in logs."""

from __future__ import annotations

import importlib
import io
import logging
import random
import time
import zlib
from collections import Counter
from pathlib import Path

import httpx
import pytest
import structlog

from scaler import logging as slog
from scaler.app import Scaler
from scaler.clock import FakeClock
from scaler.config import parse_config
from scaler.forges import FORGE_TYPES
from scaler.provider import LABEL_JOB_ID, ProviderSettings
from scaler.testing import MemoryProvider
from scaler.web import create_app
from tests.scenarios.sim import scenario_config

pytestmark = pytest.mark.scenario
fake_forge_server = pytest.importorskip("scaler.testing.fake_forge_server")

HOOK_SECRET = "http-scenario-hook-secret-31"
JOBS = 24


@pytest.mark.parametrize("kind,version", [("gitea", "1.25.0"), ("forgejo", "15.0.0+gitea-1.22.0"),
                                          ("forgejo", "17.0.0"), ("github", None)])
async def test_http_forge_burst(tmp_path: Path, kind: str, version: str | None) -> None:
    rng = random.Random(zlib.crc32(kind.encode()))
    srv = fake_forge_server.FakeForgeServer(kind, version).start()
    stream = io.StringIO()
    handlers = logging.getLogger().handlers[:]
    slog.configure("debug", "json", stream=stream)
    violations: list[str] = []
    try:
        secret = tmp_path / "hook"
        secret.write_text(HOOK_SECRET)
        secret.chmod(0o600)
        token = tmp_path / "token"
        token.write_text(srv.token)
        token.chmod(0o600)
        data = scenario_config()
        data["forges"] = [
            {
                "name": "f",
                "type": kind,
                "url": srv.url,
                "scope": {"kind": "organization", "name": "acme"},
                "webhook_secret_files": [str(secret)],
                "token_file": str(token),
                "request_timeout": 5,
            }
        ]
        data["pools"][0].update(forge="f", max=6)
        config = parse_config(data)
        clock = FakeClock(time.time())  # the fake server stamps rate-limit resets with real time
        provider = MemoryProvider(ProviderSettings("mem", "memory", "rs", {}))

        def on_delete(name: str) -> None:
            r = srv.runner_by_name(name)
            if r is not None and r.busy:
                violations.append(f"inv3: {name} deleted while busy")

        def on_create(spec: object) -> None:
            if len(provider.instances) > 6:
                violations.append(f"inv4: {len(provider.instances)} instances > max 6")

        provider.on_delete.append(on_delete)
        provider.on_create.append(on_create)
        module, attr = FORGE_TYPES[kind].split(":")
        adapter = getattr(importlib.import_module(module), attr)(config.forges[0], clock=clock)
        scaler = Scaler(config, forges={"f": adapter}, providers={"mem": provider}, clock=clock)
        http = httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(scaler)), base_url="http://127.0.0.1")
        srv.subscribe("http://127.0.0.1/webhooks/f", HOOK_SECRET)
        srv.add_repo("acme/app")
        jobs = [srv.queue_job("acme/app", ["ubuntu-latest"]) for _ in range(JOBS)]
        srv.fail_next("GET", r"/actions/", 503, times=3)
        srv.fail_next("POST", r"/actions/runners", 429, retry_after=1, times=2)
        await scaler.rebuild()
        runner_tokens: set[str] = set()
        for step in range(400):
            clock.advance(2)
            # Deliveries (some lost), the runners, then the scaler's passes.
            sent, srv.outbox = srv.outbox, []
            for d in sent:
                if rng.random() >= 0.3:
                    await http.post("/webhooks/f", content=d.body, headers=d.headers)
            for name, inst in list(provider.instances.items()):
                runner = srv.runner_by_name(name)
                if inst.info.status != "running" or runner is None:  # a used ephemeral runner is gone
                    continue
                runner_tokens.add(runner.token)
                runner.online = True
                # The job this runner runs, else the job it was made for, else
                # (GitHub hands any matching job to any runner) the oldest waiting.
                bound = inst.info.labels.get(LABEL_JOB_ID)
                mine = next((j for j in jobs if j.status == "running" and j.runner_name == name), None)
                made_for = next((j for j in jobs if bound and j.id == int(bound) and j.status == "waiting"), None)
                job = mine or made_for or next((j for j in jobs if j.status == "waiting"), None)
                if job is None:
                    continue
                if job.status == "waiting" and not runner.busy:
                    srv.set_status(job, "running", runner)
                elif job.status == "running" and job.runner_name == name:
                    srv.set_status(job, "success")
                    provider.finish(name)
            if step % 5 == 0:
                await scaler.resync.run_once()
            await scaler.settle()
            done = all(j.done for j in jobs)
            ours = [r for r in srv.runners.values() if r.name.startswith("rs-")]
            if done and not provider.instances and not ours and step > 20:
                break
        assert all(j.done for j in jobs), [(j.id, j.status) for j in jobs]
        created = Counter(provider.create_calls())
        per_job = Counter(n.split("-")[2] for n in created)
        states = [(n, str(i.state), i.job_id, i.last_error) for n, i in scaler.store.instances.items()]
        assert provider.instances == {} and scaler.store.instances == {}, states
        # No wasted instances: on GitHub a runner takes any matching job, so one
        # job may see several instances made for it, but each one ran a job.
        assert len(created) <= JOBS + 2, sorted(per_job.items())
        assert [r.name for r in srv.runners.values() if r.name.startswith("rs-")] == []
        assert violations == []
        text = stream.getvalue()
        assert not [t for t in {srv.token, HOOK_SECRET, *runner_tokens} if t in text]
        await scaler.stop()
        await http.aclose()
    finally:
        structlog.reset_defaults()
        logging.getLogger().handlers[:] = handlers
        srv.stop()
