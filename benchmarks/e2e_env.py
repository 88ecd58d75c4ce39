"""The end-to-end set-up: four processes on loopback.

* the HTTP fake forge (``python -m scaler.testing.forge_harness``),
* the real ``runner-scaler serve`` (its config written here: the forge
  above, the memory provider with a launch log and an exit FIFO, one pool),
* the runner simulator (``python -m benchmarks.runner_sim``),
* this process: queues jobs through the forge's admin routes, probes the
  scaler's endpoints, reads CPU from ``/proc``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

from benchmarks.common import free_port, pct
from scaler.testing.rawhttp import RawHTTP

HOOK_SECRET = "e2e-bench-hook-secret-0123456789"
CONTROLLER = "rs"
POOL = "linux"
LIMITS: dict[str, Any] = json.loads(os.environ.get("RS_E2E_LIMITS", "{}"))  # experiments: other limits
ENDPOINTS = ("/healthz", "/readyz", "/metrics", "/api/v1/pools", "/api/v1/instances")


def serve_config(kind: str, forge_url: str, tmp: Path, *, pool_max: int, **timing: str) -> dict[str, Any]:
    (tmp / "hook").write_text(HOOK_SECRET)
    (tmp / "token").write_text("fake-admin-token-0123456789")
    for f in ("hook", "token"):
        (tmp / f).chmod(0o600)
    return {
        "controller_id": CONTROLLER,
        "forges": [
            {
                "name": "f",
                "type": kind,
                "url": forge_url,
                "scope": {"kind": "organization", "name": "acme"},
                "token_file": str(tmp / "token"),
                "webhook_secret_files": [str(tmp / "hook")],
            }
        ],
        "providers": [
            {
                "name": "mem",
                "type": "memory",
                "concurrency": 64,
                "options": {"launch_log": str(tmp / "launches.jsonl"), "exit_fifo": str(tmp / "exits.fifo")},
            }
        ],
        "pools": [
            {
                "name": POOL,
                "forge": "f",
                "provider": "mem",
                "labels": ["ubuntu-latest:docker://node:20"],
                "max": pool_max,
                "repositories": ["acme/*"],
            }
        ],
        "limits": {"max_instances": pool_max, "event_queue_size": max(10_000, 4 * pool_max), **LIMITS},
        "timing": timing,
        "logging": {"level": "info", "format": "json"},
    }


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Prober:
    """Times the scaler's read endpoints from a keep-alive connection each."""

    def __init__(self, port: int, every: float = 0.02) -> None:
        self.port, self.every = port, every
        self.samples: dict[str, list[tuple[float, float, int]]] = {e: [] for e in ENDPOINTS}
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        clients = {e: RawHTTP("127.0.0.1", self.port, 1) for e in ENDPOINTS}
        tick = 0
        while True:
            # /healthz every tick; the heavier read endpoints every 10th.
            for e in ENDPOINTS if tick % 10 == 0 else ENDPOINTS[:1]:
                t0 = time.monotonic()
                try:
                    async with asyncio.timeout(10):
                        status, _ = await clients[e].request("GET", e)
                except (OSError, TimeoutError, asyncio.IncompleteReadError):
                    status = 0
                    clients[e] = RawHTTP("127.0.0.1", self.port, 1)
                self.samples[e].append((t0, time.monotonic() - t0, status))
            tick += 1
            await asyncio.sleep(self.every)

    def report(self, since: float, until: float) -> dict[str, Any]:
        out = {}
        for e, rows in self.samples.items():
            lat = [d * 1000 for t, d, _ in rows if since <= t <= until]
            bad = sum(1 for t, _, s in rows if since <= t <= until and s not in (200,))
            out[e] = {"n": len(lat), "p50_ms": pct(lat, 50), "p99_ms": pct(lat, 99), "max_ms": max(lat or [0]),
                      "not_200": bad}
        return out


class Env:
    def __init__(self, kind: str, *, pool_max: int, hold: bool = False, job_time: float = 0.0,
                 timing: dict[str, str] | None = None, keep: bool = False) -> None:
        self.kind, self.pool_max, self.hold, self.job_time = kind, pool_max, hold, job_time
        self.timing = timing or {}
        self.keep = keep
        self.tmp = Path(tempfile.mkdtemp(prefix="rs-e2e-"))
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    # --- processes -------------------------------------------------------------

    def _spawn(self, name: str, cmd: list[str]) -> subprocess.Popen[bytes]:
        log = open(self.tmp / f"{name}.log", "ab")  # noqa: SIM115 - the child owns it
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        self.procs[name] = proc
        return proc

    def start(self) -> Env:
        port_file = self.tmp / "forge.port"
        self._spawn("forge", [sys.executable, "-m", "scaler.testing.forge_harness", "--kind", self.kind,
                              "--port-file", str(port_file)])
        self.forge_port = int(_wait_for(lambda: port_file.read_text() if port_file.exists() else None, 20))
        self.forge = httpx.Client(base_url=f"http://127.0.0.1:{self.forge_port}", timeout=60)
        cfg = serve_config(self.kind, f"http://127.0.0.1:{self.forge_port}", self.tmp, pool_max=self.pool_max,
                           **self.timing)
        (self.tmp / "config.yaml").write_text(yaml.safe_dump(cfg))
        os.mkfifo(self.tmp / "exits.fifo", 0o600)
        self.port = free_port()
        self.start_serve()
        self.forge.post("/_harness/subscribe", json={"url": f"http://127.0.0.1:{self.port}/webhooks/f",
                                                     "secret": HOOK_SECRET})
        sim = [sys.executable, "-m", "benchmarks.runner_sim", "--launch-log", str(self.tmp / "launches.jsonl"),
               "--exit-fifo", str(self.tmp / "exits.fifo"), "--status", str(self.tmp / "sim.json"),
               "--job-time", str(self.job_time)]
        self._spawn("sim", [*sim, "--hold"] if self.hold else sim)
        return self

    def start_serve(self) -> None:
        exe = str(Path(sys.executable).with_name("runner-scaler"))
        cmd = [exe, "serve", "--config", str(self.tmp / "config.yaml"), "--port", str(self.port)]
        self.serve = self._spawn("serve", cmd)
        self.scaler = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=30)
        _wait_for(lambda: self._ready(), 60)

    def _ready(self) -> bool | None:
        if self.serve.poll() is not None:
            raise RuntimeError(f"serve exited {self.serve.returncode}; see {self.tmp / 'serve.log'}")
        try:
            return self.scaler.get("/readyz").status_code == 200 or None
        except httpx.HTTPError:
            return None

    def sigterm_serve(self, timeout: float = 60.0) -> float:
        t0 = time.monotonic()
        self.serve.send_signal(signal.SIGTERM)
        try:
            self.serve.wait(timeout)
        except subprocess.TimeoutExpired:
            self.serve.kill()
            self.serve.wait()
            return float("inf")
        return time.monotonic() - t0

    def stop(self) -> None:
        for name in ("sim", "serve", "forge"):
            proc = self.procs.get(name)
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        if not self.keep:
            for f in self.tmp.iterdir():
                with contextlib.suppress(OSError):
                    f.unlink()
            with contextlib.suppress(OSError):
                self.tmp.rmdir()

    def __enter__(self) -> Env:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- reading -----------------------------------------------------------------

    def queue(self, n: int) -> None:
        while n > 0:
            k = min(n, 500)
            self.forge.post("/_harness/jobs", json={"repo": "acme/app", "labels": ["ubuntu-latest"], "n": k})
            n -= k

    def forge_stats(self) -> dict[str, Any]:
        stats: dict[str, Any] = self.forge.get("/_harness/stats", params={"prefix": f"{CONTROLLER}-"}).json()
        return stats

    def instances(self) -> int:
        pools = self.scaler.get("/api/v1/pools").json()["pools"]
        return sum(sum(p["instances"].values()) for p in pools)

    def sim_status(self) -> dict[str, Any]:
        try:
            status: dict[str, Any] = json.loads((self.tmp / "sim.json").read_text())
            return status
        except (OSError, ValueError):
            return {}

    def launches(self) -> list[dict[str, Any]]:
        path = self.tmp / "launches.jsonl"
        if not path.exists():
            return []
        return [json.loads(x) for x in path.read_text().splitlines() if x]

    def metric(self, name: str) -> float | None:
        """One sample of the scaler's /metrics (the first series of that name)."""
        for line in self.scaler.get("/metrics").text.splitlines():
            if line.startswith(name + "{") or line.startswith(name + " "):
                return float(line.rsplit(" ", 1)[1])
        return None

    def cpu(self) -> float:
        return cpu_seconds(self.serve.pid)


def _wait_for(probe: Any, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(0.05)
    raise TimeoutError("timed out waiting")


def settled(env: Env) -> bool:
    try:
        return env.forge_stats()["runners_ours"] == 0 and env.instances() == 0
    except httpx.HTTPError:
        return False  # a stalled scaler is not a settled one
