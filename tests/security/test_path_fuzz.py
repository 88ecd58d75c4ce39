"""Fuzz the whole path, delivery → launch spec, not only the parsers.

A signed delivery of a forge's real shape (``tests/forges/shapes``) with
hostile ids, repository names, labels, runner names and handles goes through
the real webhook route, the real adapter and the real core, against the fake
forge over loopback (so mints happen) and the memory provider. Whatever it
carries: the answer is 202/200/400, never a 5xx; every pass of the loops ends
(bounded time: nothing spins); every launch spec the provider gets has a name
that is a DNS label, stamps that are valid label values, argv of strings, no
credential in env or argv, and only credential files with mode 0600.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scaler.app import Scaler
from scaler.config import parse_config
from scaler.forges import build_forge
from scaler.forges._signature import sign
from scaler.provider import LaunchSpec, ProviderSettings
from scaler.testing.fake_forge_server import ADMIN_TOKEN, FakeForgeServer
from scaler.testing.memory import MemoryProvider
from scaler.web import create_app
from tests.forges.shape_check import ABSENT, Shapes

SECRET = "path-fuzz-webhook-secret-1"
DNS_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")
PASS_BOUND = 5.0  # seconds a settle may take before it counts as spinning

ids = st.one_of(st.integers(1, 2**63 - 1), st.integers(1, 2**63 - 1), st.integers(-(2**70), 2**70),
                st.sampled_from([0, -1, 2**63 - 1, 2**63, 10**30, 10**30 + 1]),
                st.floats(allow_nan=False), st.text(max_size=25), st.booleans(), st.none())
HOSTILE_REPOS = ["acme/app", "acme/..", "acme/.", "acme/x\ny", "acme/a/b", "acme/\uff41pp", "ACME/App",
                 "acme/" + "a" * 100, "acme/-.-_", "acme/app\x00"]
repos = st.one_of(st.just("acme/app"), st.sampled_from(HOSTILE_REPOS), st.text(max_size=30).map(lambda t: f"acme/{t}"))
labels = st.one_of(st.just(["ubuntu-latest"]), st.just(["ubuntu-latest"]),
                   st.lists(st.text(max_size=40) | st.sampled_from(["ubuntu-latest", "UBUNTU-LATEST:x"]),
                            max_size=6),
                   st.just(None), st.text(max_size=10))
names = st.one_of(st.none(), st.text(max_size=80), st.sampled_from(["rs-small-j1", "../../etc", "a\nb"]))


def _config(tmp: Path, kind: str, url: str) -> Any:
    tok, sec = tmp / "tok", tmp / "sec"
    for p, v in ((tok, ADMIN_TOKEN), (sec, SECRET)):
        p.write_text(v)
        p.chmod(0o600)
    return parse_config({
        "controller_id": "rs",
        "forges": [{"name": "f", "type": kind, "url": url, "scope": {"kind": "organization", "name": "acme"},
                    "token_file": str(tok), "webhook_secret_files": [str(sec)], "request_timeout": "3s"}],
        "providers": [{"name": "mem", "type": "memory"}],
        "pools": [{"name": "small", "forge": "f", "provider": "mem", "max": 500, "repositories": ["acme/*"],
                   "labels": ["ubuntu-latest:docker://node:20"]}],
        "limits": {"max_instances": 1000},
    })


@pytest.fixture(scope="module", params=[("gitea", "1.25.0"), ("forgejo", "17.0.0"), ("github", None)],
                ids=["gitea", "forgejo", "github"])
def forge(request: pytest.FixtureRequest) -> Iterator[FakeForgeServer]:
    kind, version = request.param
    srv = FakeForgeServer(kind, version).start()
    try:
        yield srv
    finally:
        srv.stop()


def _delivery(kind: str, seed: int, job: dict[str, Any], repo: Any) -> tuple[dict[str, str], bytes]:
    rng = random.Random(seed)
    if kind == "gitea":
        body = Shapes("gitea", "1.25.0").example("WorkflowJobPayload", rng, {
            "action": "queued", "repository.full_name": repo, **{f"workflow_job.{k}": v for k, v in job.items()}})
        headers = {"x-gitea-event": "workflow_job", "x-gitea-event-type": "workflow_job"}
    elif kind == "forgejo":
        body = Shapes("forgejo", "17.0.0").example("WorkflowJobPayload", rng, {
            "action": "new_job_attempt", "repository": {"full_name": repo},
            **{f"job.{k}": v for k, v in job.items()}})
        headers = {"x-forgejo-event": "workflow_job_waiting", "x-forgejo-event-type": "workflow_job_waiting"}
    else:
        body = Shapes("github").example("webhook-workflow-job-queued", rng, {
            "action": "queued", "repository.full_name": repo, **{f"workflow_job.{k}": v for k, v in job.items()}})
        headers = {"x-github-event": "workflow_job"}
    raw = json.dumps(body).encode()
    headers.update({"content-type": "application/json", "x-hub-signature-256": f"sha256={sign(SECRET, raw)}",
                    "x-github-delivery": f"d-{seed}"})
    return headers, raw


def _check_spec(spec: LaunchSpec, secrets: set[str]) -> None:
    assert DNS_LABEL.match(spec.name) and len(spec.name) <= 63, spec.name
    for key, value in spec.labels.items():
        assert LABEL_VALUE.match(value), (key, value)
    assert spec.command and all(isinstance(a, str) for a in spec.command)
    visible = " ".join(spec.command) + " ".join(f"{k}={v}" for k, v in spec.env.items())
    assert not [s for s in secrets if s in visible], "a credential in argv or env"
    for f in spec.files:
        assert f.mode == 0o600 and f.path.startswith("/") and ".." not in f.path.split("/")


async def _one(config: Any, srv: FakeForgeServer, headers: dict[str, str], body: bytes) -> tuple[int, list[Any]]:
    provider = MemoryProvider(ProviderSettings("mem", "memory", "rs", {}))
    adapter = build_forge(config.forges[0])
    scaler = Scaler(config, forges={"f": adapter}, providers={"mem": provider})
    try:
        await asyncio.wait_for(scaler.rebuild(), PASS_BOUND)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(scaler)),
                                     base_url="http://127.0.0.1") as http:
            status = (await http.post("/webhooks/f", content=body, headers=headers)).status_code
        await asyncio.wait_for(scaler.settle(), PASS_BOUND)
        await asyncio.wait_for(scaler.reconciler.run_once(full=True), PASS_BOUND)
        await asyncio.wait_for(scaler.settle(), PASS_BOUND)
        return status, [i.spec for i in provider.instances.values()]
    finally:
        await scaler.stop()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32), job_id=ids, run_id=ids, repo=repos, job_labels=labels, runner_name=names,
       handle=names)
def test_no_delivery_makes_a_bad_spec_or_a_spin(forge: FakeForgeServer, tmp_path_factory: pytest.TempPathFactory,
                                                seed: int, job_id: Any, run_id: Any, repo: Any, job_labels: Any,
                                                runner_name: Any, handle: Any) -> None:
    config = _config(tmp_path_factory.mktemp("cfg"), forge.kind, forge.url)
    job: dict[str, Any] = {"id": job_id, "run_id": run_id}
    if forge.kind == "forgejo":
        job.update({"runs_on": job_labels, "handle": handle if handle is not None else ABSENT, "status": "waiting"})
    else:
        job.update({"labels": job_labels, "status": "queued", "runner_name": runner_name})
    headers, body = _delivery(forge.kind, seed, job, repo)
    status, specs = asyncio.run(_one(config, forge, headers, body))
    assert status in (200, 202, 400), status
    secrets = {ADMIN_TOKEN, SECRET, *forge.registration_tokens}
    for spec in specs:
        _check_spec(spec, secrets)
    if status == 400:
        assert specs == []  # a refused delivery launches nothing


@pytest.mark.parametrize("job_id", [1, 2**63 - 1, 4242])
def test_a_valid_delivery_reaches_a_checked_spec(forge: FakeForgeServer, tmp_path: Path, job_id: int) -> None:
    """The path above does reach the provider: a valid delivery gets one spec."""
    config = _config(tmp_path, forge.kind, forge.url)
    job: dict[str, Any] = {"id": job_id, "run_id": 7, "status": "waiting" if forge.kind == "forgejo" else "queued"}
    job["runs_on" if forge.kind == "forgejo" else "labels"] = ["ubuntu-latest"]
    headers, body = _delivery(forge.kind, 1, job, "acme/app")
    status, specs = asyncio.run(_one(config, forge, headers, body))
    assert status == 202 and len(specs) == 1
    _check_spec(specs[0], {ADMIN_TOKEN, SECRET, *forge.registration_tokens})
