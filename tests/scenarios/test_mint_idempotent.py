"""A mint whose answer is lost mints once per instance (issue 17, item 4).

The HTTP fake forge registers the runner, then holds its answer past the
client's timeout (``LateAnswers``): Gitea's ``Register`` RPC, Forgejo's
``POST …/actions/runners``, GitHub's ``generate-jitconfig``. The retry must
look the runner up by name and delete it before minting again: at no moment
does the forge hold two runners of the instance's name, and the one left is
the one whose credential the instance got."""

from __future__ import annotations

import importlib
import time
from pathlib import Path

import httpx
import pytest

from scaler.app import Scaler
from scaler.clock import FakeClock
from scaler.config import parse_config
from scaler.forges import FORGE_TYPES
from scaler.provider import LABEL_RUNNER_ID, ProviderSettings
from scaler.testing import MemoryProvider
from scaler.testing.fake_forge_server import FakeForgeServer
from scaler.testing.forge_harness import LateAnswers
from scaler.web import create_app
from tests.scenarios.sim import scenario_config

pytestmark = pytest.mark.scenario

HOOK_SECRET = "mint-idempotent-hook-secret-7"
CASES = [
    ("gitea", "1.25.0", r"RunnerService/Register$"),
    ("forgejo", "15.0.0+gitea-1.22.0", r"^/api/v1/orgs/acme/actions/runners$"),
    ("github", None, r"/actions/runners/generate-jitconfig$"),
]


def _config(tmp_path: Path, kind: str, url: str, token: str) -> object:
    (tmp_path / "hook").write_text(HOOK_SECRET)
    (tmp_path / "token").write_text(token)
    for f in ("hook", "token"):
        (tmp_path / f).chmod(0o600)
    data = scenario_config()
    data["forges"] = [
        {
            "name": "f",
            "type": kind,
            "url": url,
            "scope": {"kind": "organization", "name": "acme"},
            "webhook_secret_files": [str(tmp_path / "hook")],
            "token_file": str(tmp_path / "token"),
            "request_timeout": "300ms",
        }
    ]
    data["pools"][0].update(forge="f")
    return parse_config(data)


@pytest.mark.parametrize(("kind", "version", "mint_path"), CASES)
async def test_lost_mint_answer_mints_once(tmp_path: Path, kind: str, version: str | None, mint_path: str) -> None:
    """The forge acted on a mint but its answer came too late: the retry deletes that runner, then mints."""
    srv = FakeForgeServer(kind, version)
    late = LateAnswers(srv.app)
    srv.app = late  # type: ignore[assignment]
    srv.start()
    try:
        config = _config(tmp_path, kind, srv.url, srv.token)
        clock = FakeClock(time.time())
        module, attr = FORGE_TYPES[kind].split(":")
        adapter = getattr(importlib.import_module(module), attr)(config.forges[0], clock=clock)  # type: ignore[attr-defined]
        provider = MemoryProvider(ProviderSettings("mem", "memory", "rs", {}))
        scaler = Scaler(config, forges={"f": adapter}, providers={"mem": provider}, clock=clock)  # type: ignore[arg-type]
        http = httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(scaler)), base_url="http://127.0.0.1")
        srv.subscribe("http://127.0.0.1/webhooks/f", HOOK_SECRET)
        await scaler.rebuild()
        srv.queue_job("acme/app", ["ubuntu-latest"])
        late.answer_late("POST", mint_path, delay=1.0)
        for d in srv.outbox:
            await http.post("/webhooks/f", content=d.body, headers=d.headers)
        srv.outbox.clear()
        await scaler.resync.run_once()  # Forgejo sends nothing for a new job: its listing finds it
        await scaler.step_reconcile(full=True)
        await scaler.reconciler.launches.join()  # the mint timed out: outcome unknown
        (name,) = scaler.store.instances
        strays = [r for r in srv.runners.values() if r.name == name]
        assert len(strays) == 1 and provider.instances == {}  # the forge made it; nobody has its credential
        await scaler.step_reconcile(full=True)  # applies the failure: a temporary one, retried after back-off
        assert "timed out" in str(scaler.store.instances[name].last_error)

        clock.advance(config.limits.backoff_max)  # the retry is due
        await scaler.settle()
        mine = [r for r in srv.runners.values() if r.name == name]
        assert len(mine) == 1 and mine[0].id != strays[0].id  # the stray is gone, one runner left
        assert provider.instances[name].info.labels[LABEL_RUNNER_ID] == str(mine[0].id)
        # The stray was deleted before the second mint: never two runners of one name.
        mints = [i for i, (m, p) in enumerate(srv.requests) if m == "POST" and late.rules[0].path.search(p)]
        delete = next(i for i, (m, p) in enumerate(srv.requests) if m == "DELETE" and p.endswith(f"/{strays[0].id}"))
        assert len(mints) == 2 and mints[0] < delete < mints[1]
        await scaler.stop()
        await http.aclose()
    finally:
        srv.stop()
