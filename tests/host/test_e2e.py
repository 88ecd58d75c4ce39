"""End to end: ``runner-scaler serve`` as a real process with the host
provider, the fake Gitea over loopback HTTP (in this test's loop), and the
busy-box stand-in runner (``tests/standin/runner.sh``) inside each real
bubblewrap sandbox, reaching the fake forge on 127.0.0.1 with its own runner
file.

A trusted repository's job runs on the host in a fresh sandbox under a UID
of its own and leaves nothing behind; an untrusted repository's job never
gets a runner; the scaler is SIGKILLed while the sandbox runs (with a child
that daemonized itself; killed as soon as the sandbox has processes, often
before its create returned), and the restarted scaler finds it and tears it down.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from providers.host._proc import processes_of
from scaler.testing.fake_forge_server import ADMIN_TOKEN
from tests.docker.test_e2e import Child, Deliverer, _fake_gitea, _free_port, _until, _wait_ready
from tests.host.conftest import STANDIN_DIR, TEST_UID_COUNT, TEST_UID_FIRST, HostEnv, processes_in_test_range

pytestmark = pytest.mark.host

SECRET = "host-e2e-webhook-secret-0123456789"
# The runner takes its one job and lingers a little (log upload, clean-up),
# beside a child that daemonized itself and would run for ten minutes; the
# scaler is killed while the sandbox runs.
RUNNER = [
    "/bin/sh",
    "-c",
    "setsid sh -c 'trap \"\" HUP TERM; sleep 600' </dev/null >/dev/null 2>&1 & "
    f"/bin/sh {STANDIN_DIR}/runner.sh --interval 0.2 --polls 300; rc=$?; sleep 3; exit $rc",
]


def _config(env: HostEnv, secrets_dir: Path, *, forge_url: str, port: int) -> dict[str, Any]:
    token, hook = secrets_dir / "forge-token", secrets_dir / "webhook-secret"
    for path, content in ((token, ADMIN_TOKEN), (hook, SECRET)):
        path.write_text(content)
        path.chmod(0o600)
    return {
        "controller_id": env.controller,
        "forges": [{
            "name": "gitea", "type": "gitea", "url": forge_url,
            "scope": {"kind": "organization", "name": "acme"},
            "token_file": str(token), "webhook_secret_files": [str(hook)],
            "poll_interval": "1s", "request_timeout": "5s",
            "options": {"runner_command": RUNNER},
        }],
        "providers": [{"name": "metal", "type": "host", "create_timeout": "30s",
                       "options": dict(env.settings().options)}],
        "pools": [{
            "name": "metal", "forge": "gitea", "provider": "metal",
            "labels": ["native:host"], "max": 2, "boot_timeout": "60s", "idle_timeout": "30s", "max_lifetime": "10m",
            "repositories": ["acme/app"],
            "provider_options": {
                "read_only_paths": ["/usr", "/bin", "/sbin", "/lib", "/lib64", "/etc", str(STANDIN_DIR)],
                "inaccessible_paths": [str(secrets_dir)],
                "limits": {"tasks": 64, "memory": "256MiB"},
            },
        }],
        "limits": {"backoff_initial": "200ms", "backoff_max": "2s"},
        "timing": {"reconcile_interval": "200ms", "resync_interval": "1s", "collect_interval": "500ms"},
        "server": {"host": "127.0.0.1", "port": port},
        "logging": {"level": "info", "format": "json"},
    }


def _instances(env: HostEnv) -> list[str]:
    d = env.state / "instances"
    return sorted(os.listdir(d)) if d.exists() else []


def _uid_of(env: HostEnv, name: str) -> int | None:
    try:
        uid = json.loads((env.state / "instances" / name / "instance.json").read_text())["uid"]
    except (OSError, ValueError, KeyError):
        return None
    return uid if isinstance(uid, int) else None


def _leftovers(env: HostEnv, uids: set[int]) -> list[str]:
    out = [f"instance dir {n}" for n in _instances(env)]
    out += [f"work dir {n}" for n in (os.listdir(env.work) if env.work.exists() else [])]
    out += [f"lease {n}" for n in os.listdir(env.state / "uids") if n.isdigit()]
    out += [f"process {pid} of uid {uid}" for uid in uids for pid in processes_of(uid)]
    for top in (env.root, Path("/tmp"), Path("/dev/shm")):
        for path in top.rglob("*"):
            try:
                if path.lstat().st_uid in uids:
                    out.append(f"file {path}")
            except OSError:
                continue
    return out


async def test_trusted_job_runs_sandboxed_untrusted_never_and_a_restart_tears_down_what_was_left(
    host_env: HostEnv, tmp_path: Path
) -> None:
    secrets_dir = tmp_path / "secrets"
    secrets_dir.mkdir(mode=0o700)
    deadline = time.monotonic() + 120
    async with _fake_gitea("1.25.0") as srv:
        port = _free_port()
        cfg = tmp_path / "config.yaml"
        cfg.write_text(yaml.safe_dump(_config(host_env, secrets_dir, forge_url=srv.url, port=port)))
        child = Child(cfg, tmp_path / "scaler.log")
        srv.subscribe(f"http://127.0.0.1:{port}/webhooks/gitea", SECRET)
        deliver = Deliverer(srv)
        http = httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=3)
        uids: set[int] = set()
        labels_seen: set[str] = set()
        killed = False
        try:
            child.start()
            await _wait_ready(http, child, deadline)
            trusted = srv.queue_job("acme/app", ["native"])
            untrusted = srv.queue_job("evil/app", ["native"])
            deliver.start()

            async def step() -> None:
                nonlocal killed
                for name in _instances(host_env):
                    uid = _uid_of(host_env, name)
                    if uid is not None:
                        uids.add(uid)
                for r in srv.runners.values():
                    labels_seen.update(r.labels)
                if not killed and uids and any(processes_of(u) for u in uids):
                    child.kill()  # the scaler dies hard; the sandbox runs on
                    killed = True
                    child.start()
                    await _wait_ready(http, child, deadline)

            def done() -> bool:
                return killed and trusted.status == "success" and not _instances(host_env) and not srv.runners

            await _until("the trusted job served and its sandbox torn down across the SIGKILL", done, step,
                         deadline, lambda: f"jobs {trusted.status}/{untrusted.status}; instances "
                         f"{_instances(host_env)}; runners {list(srv.runners)}\n{child.tail()}")
            assert untrusted.status == "waiting" and untrusted.runner_name is None
            stats = (await http.get("/api/v1/instances")).json()["instances"]
            assert stats == []
        finally:
            child.stop()
            await http.aclose()
            await deliver.aclose()
    assert child.starts == 2
    assert len(uids) == 1 and all(TEST_UID_FIRST <= u < TEST_UID_FIRST + TEST_UID_COUNT for u in uids)
    assert trusted.runner_name is not None and trusted.runner_name.startswith(f"{host_env.controller}-metal-")
    assert "native:host" in labels_seen  # registered in full; the job asked for "native"
    assert _leftovers(host_env, uids) == []
    assert processes_in_test_range() == []
    log = (tmp_path / "scaler.log").read_text()
    assert ADMIN_TOKEN not in log and SECRET not in log
