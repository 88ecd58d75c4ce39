"""A real ``runner-scaler serve`` in its own process, signed deliveries sent to
it over HTTP, and Debian's chromium driven by Playwright."""

from __future__ import annotations

import itertools
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from scaler.testing.fake_forge import FakeForgeState, FakeJob

REPO = Path(__file__).resolve().parents[2]
_JOB_IDS = itertools.count(5000)  # unique across tests: one serve may outlive a test
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium() -> str:
    path = os.environ.get("RUNNER_SCALER_TEST_CHROMIUM", "/usr/bin/chromium")
    if not os.access(path, os.X_OK):
        raise RuntimeError(f"chromium not found at {path}: run .ci/services/chromium.sh (chromium_install)")
    return path


def artifacts_dir() -> Path:
    """Where the screenshots go (git-ignored; .ci/run prints it)."""
    return Path(os.environ.get("RUNNER_SCALER_ARTIFACTS") or REPO / "artifacts") / "browser"


def screenshot(page: Any, name: str, *, full_page: bool = True) -> Path:
    out = artifacts_dir()
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Serve:
    """``runner-scaler serve`` on a free loopback port; stopped by its PID."""

    def __init__(self, config: Path, env: dict[str, str], log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log
        exe = Path(sys.executable).with_name("runner-scaler")
        cmd = [str(exe), "serve", "--config", str(config), "--host", "127.0.0.1", "--port", str(self.port)]
        self._log = log.open("wb")
        self.proc = subprocess.Popen(cmd, env={**os.environ, **env}, stdout=self._log, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"serve exited with {self.proc.returncode}:\n{self.log_path.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"serve not ready in {timeout}s:\n{self.log_path.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self._log.close()


@contextmanager
def serving(config: Path, env: dict[str, str], log: Path) -> Iterator[Serve]:
    serve = Serve(config, env, log)
    try:
        serve.wait_ready()
        yield serve
    finally:
        serve.stop()


class Forge:
    """Signs deliveries the way the local example's fake forge checks them
    (``X-Hub-Signature-256`` over the raw body, GitHub's workflow_job shape)."""

    def __init__(self, url: str, forge: str, secret: str) -> None:
        self.endpoint = f"{url}/webhooks/{forge}"
        self.state = FakeForgeState(secret=secret)
        self.client = httpx.Client(timeout=10)

    def send(self, job: FakeJob, action: str) -> dict[str, Any]:
        headers, body = self.state.delivery(job, action)
        r = self.client.post(self.endpoint, content=body, headers=headers)
        assert r.status_code in (200, 202), (r.status_code, r.text)
        return dict(r.json())

    def queue(self, repository: str, labels: list[str]) -> FakeJob:
        job = FakeJob(next(_JOB_IDS), repository, tuple(labels))
        self.send(job, "queued")
        return job

    def start(self, job: FakeJob, runner: str) -> None:
        job.status, job.runner_name = "in_progress", runner
        self.send(job, "in_progress")

    def complete(self, job: FakeJob) -> None:
        job.status = "completed"
        self.send(job, "completed")


def instance_for(url: str, job_id: int, timeout: float = 5.0) -> str:
    """The name of the instance the scaler made for a job (from the JSON API)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for inst in httpx.get(f"{url}/api/v1/instances", timeout=5).json()["instances"]:
            if inst["job_id"] == job_id:
                return str(inst["name"])
        time.sleep(0.05)
    raise AssertionError(f"no instance for job {job_id} within {timeout}s")
