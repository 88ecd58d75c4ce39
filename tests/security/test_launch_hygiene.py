"""The real forge adapters over loopback HTTP (the fake forge server), the
real core, the memory provider: what reaches a LaunchSpec.

* the scope's registration token (Gitea/Forgejo) and the admin token never
  reach an instance — not even in its credential files;
* a runner's own credential travels only in credential files, mode 0600;
* no token of any kind appears in logs, metrics or provider call arguments.
"""

from __future__ import annotations

import io
import logging
from pathlib import Path

import pytest
import structlog
from prometheus_client import REGISTRY, generate_latest

from scaler import logging as slog
from scaler.app import Scaler
from scaler.clock import FakeClock
from scaler.config import parse_config
from scaler.forges import build_forge
from scaler.provider import LaunchSpec, ProviderSettings
from scaler.testing import MemoryProvider
from tests.scenarios.sim import scenario_config

fake_forge_server = pytest.importorskip("scaler.testing.fake_forge_server")

HOOK_SECRET = "launch-hygiene-hook-secret-77"


def _spec_text(spec: LaunchSpec, *, files: bool) -> str:
    parts = [
        spec.name,
        spec.pool,
        spec.image,
        *spec.command,
        repr(dict(spec.env)),
        repr(dict(spec.labels)),
        repr(dict(spec.options)),
    ]
    if files:
        parts += [f.content.reveal() for f in spec.files]
    return "\n".join(parts)


@pytest.mark.parametrize("kind,version", [("gitea", "1.25.0"), ("forgejo", "15.0.0+gitea-1.22.0"), ("github", None)])
async def test_registration_and_admin_tokens_never_reach_an_instance(
    tmp_path: Path, kind: str, version: str | None
) -> None:
    srv = fake_forge_server.FakeForgeServer(kind, version).start()
    stream = io.StringIO()
    handlers = logging.getLogger().handlers[:]
    slog.configure("debug", "json", stream=stream)
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
        data["pools"][0]["forge"] = "f"
        config = parse_config(data)
        provider = MemoryProvider(ProviderSettings("mem", "memory", "rs", {}))
        scaler = Scaler(
            config, forges={"f": build_forge(config.forges[0])}, providers={"mem": provider}, clock=FakeClock()
        )
        srv.add_repo("acme/app")
        for _ in range(3):
            srv.queue_job("acme/app", ["ubuntu-latest"])
        await scaler.rebuild()
        await scaler.settle()
        specs = [i.spec for i in provider.instances.values()]
        assert len(specs) == 3, [i.last_error for i in scaler.store.instances.values()]
        runner_tokens = [r.token for r in srv.runners.values()]
        forbidden = [srv.token, HOOK_SECRET, *srv.registration_tokens]
        for spec in specs:
            inside = _spec_text(spec, files=True)
            outside = _spec_text(spec, files=False)
            assert spec.files and all(f.mode == 0o600 for f in spec.files)
            for value in forbidden:
                assert value not in inside, f"{kind}: a scope/admin credential reached {spec.name}"
            for value in runner_tokens:
                assert value not in outside, f"{kind}: a runner credential outside the credential files"
        if kind != "github":
            # Each instance's files carry its own runner's token (and only its own).
            for spec in specs:
                r = srv.runner_by_name(spec.name)
                assert r is not None
                files = "".join(f.content.reveal() for f in spec.files)
                assert r.token in files
                assert all(t not in files for t in runner_tokens if t != r.token)
        surfaces = stream.getvalue() + generate_latest(REGISTRY).decode()
        for value in [*forbidden, *runner_tokens]:
            assert value not in surfaces
        await scaler.stop()
    finally:
        structlog.reset_defaults()
        logging.getLogger().handlers[:] = handlers
        srv.stop()
