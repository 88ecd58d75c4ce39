"""The scaler as a real process, SIGKILLed at random points of a 500-job burst
and restarted. The forge and the provider outlive it (a JSON file under a
lock, ``filestate.py``); this test plays the forge and the runners.

Checked: every job ran exactly once, at most 10 % extra instances, nothing is left on the provider or the forge, the
provider never saw a pool over its max or a busy runner deleted (recorded at
the moment of each call), and no credential reached the process's logs."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from scaler.provider import LABEL_JOB_ID, LABEL_RUNNER_ID
from tests.scenarios.filestate import FileState
from tests.scenarios.sim import CANARY_ENV, CANARY_TOKEN, CANARY_WEBHOOK, scenario_config

pytestmark = pytest.mark.scenario

JOBS = 500
KILLS = 4
DEADLINE = 75.0  # typically 20-35 s; generous for a loaded 2-core machine
REPO_ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Child:
    def __init__(self, config: Path, state: Path, port: int, log: Path) -> None:
        self.args = [sys.executable, "-m", "tests.scenarios.serve_with_state", str(config), str(state), str(port)]
        self.port, self.log = port, log
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        env = {**os.environ, **CANARY_ENV, "PYTHONPATH": str(REPO_ROOT)}
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(self.args, stdout=out, stderr=out, env=env, cwd=REPO_ROOT)
        self.starts += 1

    def kill(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)  # only the process this test started
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


def _delivery(job_id: int, j: dict[str, Any], action: str) -> tuple[dict[str, str], bytes]:
    body = json.dumps(
        {
            "action": action,
            "workflow_job": {
                "id": job_id,
                "run_id": job_id,
                "status": j["status"],
                "labels": j["labels"],
                "runner_name": j.get("runner_name"),
            },
            "repository": {"full_name": j["repo"]},
        }
    ).encode()
    digest = hmac.new(CANARY_WEBHOOK.encode(), body, hashlib.sha256).hexdigest()
    headers = {
        "content-type": "application/json",
        "x-github-event": "workflow_job",
        "x-github-delivery": f"{job_id}-{action}",
        "x-hub-signature-256": f"sha256={digest}",
    }
    return headers, body


def _config(tmp: Path) -> Path:
    data = scenario_config()
    data["pools"][0].update({"max": 40, "boot_timeout": "8s", "idle_timeout": "1s", "max_lifetime": "1h"})
    data["timing"] = {
        "reconcile_interval": "200ms",
        "resync_interval": "500ms",
        "collect_interval": "200ms",
        "tombstone_ttl": "1h",
    }
    data["limits"] = {"backoff_initial": "200ms", "backoff_max": "2s"}
    data["logging"] = {"level": "info", "format": "json"}
    path = tmp / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_sigkill_mid_burst(tmp_path: Path) -> None:
    rng = random.Random(2024)
    files = FileState(tmp_path)
    port = _free_port()
    log = tmp_path / "scaler.log"
    child = Child(_config(tmp_path), tmp_path, port, log)
    http = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=2)
    pending: list[tuple[dict[str, str], bytes]] = []

    def send_all() -> None:
        # The forge retries failed deliveries a few times; the rest are lost.
        nonlocal pending
        keep = []
        for headers, body in pending:
            try:
                r = http.post("/webhooks/fake", content=body, headers=headers)
                if r.status_code >= 500:
                    keep.append((headers, body))
            except httpx.HTTPError:
                if rng.random() < 0.5:
                    keep.append((headers, body))
        pending = keep

    child.start()
    with files.locked() as d:
        for _ in range(JOBS):
            jid = d["next_id"]
            d["next_id"] += 1
            d["jobs"][str(jid)] = {
                "repo": "acme/app",
                "labels": ["ubuntu-latest"],
                "status": "queued",
                "runner_name": None,
                "started": None,
            }
            pending.append(_delivery(jid, d["jobs"][str(jid)], "queued"))
    started = time.monotonic()
    kills = sorted(rng.uniform(1.0, 14.0) for _ in range(KILLS))
    try:
        while time.monotonic() - started < DEADLINE:
            now = time.monotonic()
            if kills and now - started >= kills[0]:
                kills.pop(0)
                child.kill()
                child.start()
            with files.locked() as d:
                _runners_step(d, now, pending)
                done = all(j["status"] == "completed" for j in d["jobs"].values())
                empty = not d["instances"] and not d["runners"]
            send_all()
            if done and empty and not kills:
                break
            time.sleep(0.02)
        final = files.read()
        elapsed = time.monotonic() - started
        leftovers = (sorted(final["instances"]), [r["name"] for r in final["runners"].values()])
        statuses = Counter(j["status"] for j in final["jobs"].values())
        assert statuses == {"completed": JOBS}, (statuses, elapsed)
        assert leftovers == ([], []), leftovers
        assert final["violations"] == []
        # Each create made a new instance (retries adopt), and few were extra:
        # after a restart a stale ``queued`` delivery for a finished job can
        # make one more instance, which then runs another queued job.
        assert len(final["created"]) == len(set(final["created"]))
        assert len(final["created"]) <= JOBS * 1.1, len(final["created"])
        assert sum(1 for j in final["jobs"].values() if j["runner_name"]) == JOBS
        assert child.starts == KILLS + 1
        text = log.read_text()
        tokens = {CANARY_TOKEN, CANARY_WEBHOOK, *final["tokens_seen"]}
        assert not [t for t in tokens if t in text], "a credential reached the scaler's log"
    finally:
        http.close()
        child.stop()


def _runners_step(d: dict[str, Any], now: float, pending: list[tuple[dict[str, str], bytes]]) -> None:
    """The runners: a running instance's runner (the one stamped on it) comes
    online, takes the job its instance was made for, runs ~50-150 ms, then
    the job completes and the instance exits."""
    d.setdefault("created_job", {})
    seen = d.setdefault("tokens_seen", [])
    seen.extend(r["token"] for r in d["runners"].values() if r["token"] not in seen)
    for name, inst in d["instances"].items():
        labels = inst["labels"]
        d["created_job"].setdefault(name, labels.get(LABEL_JOB_ID))
        if inst["status"] != "running":
            continue
        runner = d["runners"].get(labels.get(LABEL_RUNNER_ID, ""))
        if runner is None:
            continue
        runner["online"] = True
        # The job it was made for if still queued, else any queued job (the
        # fake forge mints without a job handle, as GitHub does).
        job = next((j for j in d["jobs"].values() if j["status"] == "in_progress" and j["runner_name"] == name), None)
        bound = d["jobs"].get(labels.get(LABEL_JOB_ID, ""))
        if job is None and bound is not None and bound["status"] == "queued":
            job = bound
        if job is None and not runner["busy"]:
            job = next((j for j in d["jobs"].values() if j["status"] == "queued"), None)
        if job is None:
            continue
        jid = next(k for k, v in d["jobs"].items() if v is job)
        if job["status"] == "queued" and not runner["busy"]:
            job.update(status="in_progress", runner_name=name, started=now)
            runner["busy"] = True
            pending.append(_delivery(int(jid), job, "in_progress"))
        elif job["status"] == "in_progress" and job["runner_name"] == name and now - job["started"] > 0.1:
            job["status"] = "completed"
            runner["busy"] = False
            inst.update(status="exited", exit_code=0)
            pending.append(_delivery(int(jid), job, "completed"))
