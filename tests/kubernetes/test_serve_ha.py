"""Two real ``runner-scaler serve`` processes electing a leader on the fake API
server: both Ready, the follower forwards deliveries and exports no pool state,
a SIGTERM hands over, and every line either process wrote, from start-up to
exit, is a JSON object (uvicorn's and ``scaler.leader``'s included)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from scaler.testing import FakeForgeState
from scaler.testing.fake_kube import FakeKube
from tests.conftest import SECRET, base_config

pytestmark = pytest.mark.kubernetes
# A clean exit, or the SIGTERM uvicorn re-raises once its shutdown is done.
GRACEFUL = (0, -signal.SIGTERM)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _kubeconfig(path: Path, url: str) -> Path:
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "fake", "cluster": {"server": url}}],
                "users": [{"name": "u", "user": {}}],
                "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "u"}}],
                "current-context": "fake",
            }
        )
    )
    return path


class Serve:
    def __init__(self, tmp: Path, name: str, config: dict[str, Any]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cfg = tmp / f"{name}.yaml"
        cfg.write_text(yaml.safe_dump(config))
        self.log = tmp / f"{name}.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("KUBERNETES_")}
        env.update(RS_TEST_SECRET=SECRET, POD_IP="127.0.0.1", PYTHONUNBUFFERED="1")
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "scaler.cli", "serve", "--config", str(cfg), "--port", str(self.port)],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
            )

    def get(self, path: str) -> httpx.Response:
        return httpx.get(self.url + path, timeout=5, trust_env=False)

    def ready_as(self) -> str | None:
        try:
            r = self.get("/readyz")
        except httpx.HTTPError:
            return None
        return str(r.json().get("role")) if r.status_code == 200 else None

    def stop(self) -> int:
        """SIGTERM; the exit status (uvicorn re-raises the signal after its graceful shutdown)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)
            raise

    def lines(self) -> list[dict[str, Any]]:
        out = []
        for raw in self.log.read_text().splitlines():
            try:
                doc = json.loads(raw)
            except ValueError:
                pytest.fail(f"not a JSON log line: {raw!r}")
            assert isinstance(doc, dict) and {"event", "level", "timestamp"} <= doc.keys(), raw
            out.append(doc)
        return out


def until(cond: Callable[[], bool], timeout: float = 20) -> None:
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.05)


@pytest.fixture
def kube() -> Iterator[FakeKube]:
    with FakeKube() as fake:
        yield fake


def test_two_serve_processes_hand_over_and_log_only_json(kube: FakeKube, tmp_path: Path) -> None:
    """Both replicas Ready; the follower forwards and exports no pool series; SIGTERM hands over; all lines JSON."""
    data = base_config()
    data["logging"] = {"level": "info", "format": "json"}
    data["leader_election"] = {
        "enabled": True,
        "lease_name": "rs",
        "lease_duration": "2s",
        "renew_deadline": "1s",
        "retry_period": "200ms",
        "kubeconfig": str(_kubeconfig(tmp_path / "kubeconfig", kube.url)),
    }
    forge = FakeForgeState(secret=SECRET)
    a = Serve(tmp_path, "a", data)
    b: Serve | None = None
    try:
        until(lambda: a.ready_as() == "leader")
        b = Serve(tmp_path, "b", data)
        until(lambda: b is not None and b.ready_as() == "follower")
        _, headers, body = forge.queue_job("acme/app", ["ubuntu-latest"])
        r = httpx.post(f"{b.url}/webhooks/fake", content=body, headers=headers, timeout=10, trust_env=False)
        assert (r.status_code, r.headers["x-runner-scaler-served-by"]) == (202, a.url)
        until(lambda: 'runner_scaler_queued_jobs{pool="small"} 1.0' in a.get("/metrics").text, 10)
        follower_metrics = b.get("/metrics").text
        assert "runner_scaler_leader 0.0" in follower_metrics
        for series in ("queued_jobs{", "instances{", "unservable_jobs{"):
            assert f"runner_scaler_{series}" not in follower_metrics, series
        for loop in ("reconciler", "collector", "resync"):  # the leader's loops (a UI sampler may run anywhere)
            assert f'runner_scaler_loop_last_success_timestamp_seconds{{loop="{loop}"}}' not in follower_metrics
        assert b.get("/api/v1/pools/small").json()["queued"] == 1  # the leader's answer, through the follower

        assert a.stop() in GRACEFUL  # SIGTERM: drains, gives the Lease up
        until(lambda: b is not None and b.ready_as() == "leader", 10)
        _, headers, body = forge.queue_job("acme/app", ["ubuntu-latest"])
        r = httpx.post(f"{b.url}/webhooks/fake", content=body, headers=headers, timeout=10, trust_env=False)
        assert r.status_code == 202 and "x-runner-scaler-served-by" not in r.headers
        assert b.stop() in GRACEFUL
    finally:
        for s in (a, b):
            if s is not None and s.proc.poll() is None:
                s.proc.kill()
                s.proc.wait(timeout=5)
    for s in (a, b):
        assert s is not None
        lines = s.lines()
        loggers = {d.get("logger") for d in lines}
        assert {"uvicorn.error", "scaler.leader", "scaler.cli"} <= loggers, loggers
        assert SECRET not in s.log.read_text()
        assert lines[-1]["event"].startswith("Finished server process")
        assert any(d["event"] == "Application shutdown complete." for d in lines)


def test_serve_start_up_lines_are_all_json(tmp_path: Path) -> None:
    """Every line a plain serve writes from start-up to exit parses as JSON and names its logger."""
    data = base_config()
    data["logging"] = {"level": "debug", "format": "json"}
    s = Serve(tmp_path, "plain", data)
    try:
        until(lambda: s.ready_as() == "leader")
        assert s.stop() in GRACEFUL
    finally:
        if s.proc.poll() is None:
            s.proc.kill()
            s.proc.wait(timeout=5)
    lines = s.lines()
    assert len(lines) >= 5
    assert all(d.get("logger") for d in lines), [d for d in lines if not d.get("logger")]
    events = [d["event"] for d in lines]
    assert any("Uvicorn running" in e for e in events) and any(e == "state rebuilt" for e in events)
