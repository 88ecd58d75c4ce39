"""End to end against a real dockerd (issue 4): the fake Gitea forge over
loopback HTTP, the Scaler with the real ``GiteaForge`` and ``DockerProvider``,
and the busybox stand-in runner inside every container (``network_mode:
host``, so it reaches the fake forge on 127.0.0.1 with its own runner file).

* a burst of 20 queued jobs, delivered as signed webhooks, served start to
  finish: 20 containers, 20 distinct ephemeral runners, everything torn down;
* the scaler process SIGKILLed mid-burst and started again;
* dockerd stopped and started again mid-burst under a running scaler.

The fake forge runs in the test's event loop (its state is only touched from
that one thread); the forge's webhook deliveries are sent from there too, with
a forge-like retry of deliveries that failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import httpx
import pytest
import uvicorn
import yaml

from providers.docker import DockerProvider
from providers.docker._provider import LABEL_HOST, LABEL_PROVIDER
from scaler.app import Scaler
from scaler.config import parse_config
from scaler.provider import LABEL_CONTROLLER, LABEL_JOB_ID, InstanceStatus
from scaler.testing.fake_forge_server import ADMIN_TOKEN, FakeForgeServer, FJob, SentDelivery
from scaler.web import create_app
from tests.docker.conftest import Engine, MakeLaunch
from tests.docker.test_restart import _ensure_up, _service

pytestmark = pytest.mark.docker

REPO = Path(__file__).resolve().parents[2]
SECRET = "e2e-webhook-secret-0123456789"
POOL_LABELS = ["ubuntu-latest:docker://node:20"]
JOB_LABELS = ["ubuntu-latest"]
# The stand-in baked into the test image (.ci/services/docker.sh); it finds
# its runner file at the Gitea adapter's default /data/.runner. It runs its
# job in no time; the container lingers a second after it, as a real runner
# does (job clean-up, log upload), so the forge's job reports reach the
# scaler before the exit does (see test_zero_length_jobs_race below).
STANDIN = [
    "/bin/sh",
    "-c",
    "/opt/runner/runner.sh --interval 0.2 --polls 300; rc=$?; sleep 1; exit $rc",
]
DELIVERY_TRIES = 20  # a forge gives up on a delivery after a few failures
PROVIDER_CONCURRENCY = 8  # creates in flight at once


# --- plumbing -------------------------------------------------------------------


def _bind() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


def _free_port() -> int:
    with contextlib.closing(_bind()) as s:
        return int(s.getsockname()[1])


class _Server(uvicorn.Server):
    """uvicorn in the test's own loop, leaving the process's signal handlers alone."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


@contextlib.asynccontextmanager
async def _serving(app: Any, sock: socket.socket, *, lifespan: Literal["on", "off"]) -> AsyncIterator[None]:
    config = uvicorn.Config(app, lifespan=lifespan, log_level="warning", access_log=False, log_config=None)
    server = _Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    deadline = time.monotonic() + 30
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError("server exited during start-up")
        if time.monotonic() > deadline:
            raise RuntimeError("server did not start within 30 s")
        await asyncio.sleep(0.01)
    try:
        yield
    finally:
        server.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 30)


@contextlib.asynccontextmanager
async def _fake_gitea(version: str) -> AsyncIterator[FakeForgeServer]:
    srv = FakeForgeServer("gitea", version)
    sock = _bind()
    srv.port = int(sock.getsockname()[1])
    async with _serving(srv.app, sock, lifespan="off"):
        yield srv


class Deliverer:
    """Sends the fake forge's pending webhook deliveries; one that failed (no
    answer or 5xx) is retried on the next pumps, up to DELIVERY_TRIES."""

    def __init__(self, srv: FakeForgeServer) -> None:
        self.srv = srv
        self.client = httpx.AsyncClient(timeout=3)
        self.retry: list[tuple[SentDelivery, int]] = []
        self.statuses: Counter[int] = Counter()
        self.lost = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Deliver as a forge does: promptly, in the background."""

        async def loop() -> None:
            while True:
                await self.pump()
                await asyncio.sleep(0.02)

        self._task = asyncio.create_task(loop())

    async def pump(self) -> None:
        batch = self.retry + [(d, 0) for d in self.srv.outbox]
        self.srv.outbox.clear()
        self.retry = []
        for d, tries in batch:
            assert httpx.URL(d.url).host == "127.0.0.1"
            try:
                status: int | None = (await self.client.post(d.url, content=d.body, headers=d.headers)).status_code
            except httpx.TransportError:
                status = None
            if status is None or status >= 500:
                if tries + 1 < DELIVERY_TRIES:
                    self.retry.append((d, tries + 1))
                else:
                    self.lost += 1
            else:
                self.statuses[status] += 1

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.client.aclose()


@dataclass
class CreateLog:
    """Every container this controller ever created, from the engine's own
    events stream (independent of the scaler and of the provider)."""

    socket_path: str
    controller_id: str
    created: dict[str, tuple[str, str | None]] = field(default_factory=dict)  # id -> (name, job label)
    started: set[str] = field(default_factory=set)  # ids
    since: float = field(default_factory=lambda: time.time() - 1)

    async def run(self) -> None:
        filters = {
            "type": ["container"],
            "event": ["create", "start"],
            "label": [f"{LABEL_CONTROLLER}={self.controller_id}"],
        }
        transport = httpx.AsyncHTTPTransport(uds=self.socket_path)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://docker", timeout=httpx.Timeout(None, connect=3)
        ) as client:
            while True:
                try:
                    params = {"since": f"{self.since:.9f}", "filters": json.dumps(filters)}
                    async with client.stream("GET", "/events", params=params) as resp:
                        async for line in resp.aiter_lines():
                            if line.strip():
                                self._record(json.loads(line))
                except (httpx.HTTPError, ValueError):
                    pass  # dockerd restarting: reconnect and replay from the last event seen
                await asyncio.sleep(0.2)

    def _record(self, ev: dict[str, Any]) -> None:
        actor = ev.get("Actor") or {}
        attrs = actor.get("Attributes") or {}
        cid = str(actor.get("ID"))
        self.created[cid] = (str(attrs.get("name", "")), attrs.get(LABEL_JOB_ID))
        if (ev.get("Action") or ev.get("status")) == "start":
            self.started.add(cid)
        if isinstance(ev.get("timeNano"), int):
            self.since = max(self.since, ev["timeNano"] / 1e9)

    def names(self) -> Counter[str]:
        return Counter(name for name, _ in self.created.values())

    def per_job(self) -> Counter[str]:
        return Counter(job for _, job in self.created.values() if job is not None)


@contextlib.asynccontextmanager
async def _create_log(engine: Engine, controller_id: str) -> AsyncIterator[CreateLog]:
    log = CreateLog(engine.url[len("unix://") :], controller_id)
    task = asyncio.create_task(log.run())
    await asyncio.sleep(0.2)  # connected before the first create
    try:
        yield log
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def _config(
    tmp: Path, *, forge_url: str, docker_host: str, image: str, controller_id: str, port: int, boot_timeout: str
) -> dict[str, Any]:
    token = tmp / "forge-token"
    secret = tmp / "webhook-secret"
    for path, content in ((token, ADMIN_TOKEN), (secret, SECRET)):
        path.write_text(content)
        path.chmod(0o600)
    return {
        "controller_id": controller_id,
        "forges": [
            {
                "name": "gitea",
                "type": "gitea",
                "url": forge_url,
                "scope": {"kind": "organization", "name": "acme"},
                "token_file": str(token),
                "webhook_secret_files": [str(secret)],
                "poll_interval": "1s",
                "request_timeout": "5s",
                "options": {"runner_command": STANDIN},
            }
        ],
        "providers": [
            {
                "name": "docker",
                "type": "docker",
                "concurrency": PROVIDER_CONCURRENCY,
                "create_timeout": "30s",
                "options": {
                    "hosts": [{"name": "local", "url": docker_host}],
                    "health_interval": 0.5,
                    "resync_interval": 2.0,
                    "reconnect_max_delay": 1.0,
                    "request_timeout": 10.0,
                },
            }
        ],
        "pools": [
            {
                "name": "small",
                "forge": "gitea",
                "provider": "docker",
                "labels": POOL_LABELS,
                "image": image,
                "max": 20,
                "boot_timeout": boot_timeout,
                "idle_timeout": "10s",
                "max_lifetime": "5m",
                "repositories": ["acme/*"],
                "provider_options": {"network_mode": "host", "stop_timeout": 1, "pull": "never"},
            }
        ],
        "limits": {"backoff_initial": "200ms", "backoff_max": "2s", "max_attempts": 10},
        "timing": {"reconcile_interval": "200ms", "resync_interval": "1s", "collect_interval": "500ms"},
        "server": {"host": "127.0.0.1", "port": port},
        "logging": {"level": "info", "format": "json"},
    }


def _engine_stuck(engine: Engine, rows: list[dict[str, Any]]) -> set[str]:
    """Containers the engine itself cannot remove: one that was starting when
    dockerd was stopped keeps its root file system mounted underneath the
    restarted engine's mounts ("failed to remove root filesystem ... device or
    resource busy", then "dead"). No client can remove it; the scaler keeps
    it in its store and keeps retrying, which is right. Only ``docker_purge``
    (unmount, wipe the data root) clears it."""
    stuck = set()
    for row in rows:
        if row.get("State") not in ("dead", "removing"):
            continue
        data = engine.inspect(str(row["Id"])) or {}
        if "failed to remove root filesystem" in str((data.get("State") or {}).get("Error", "")):
            stuck.add(str(row["Names"][0]).lstrip("/"))
    return stuck


def _label(controller_id: str) -> str:
    return f"{LABEL_CONTROLLER}={controller_id}"


async def _containers(engine: Engine, controller_id: str) -> list[dict[str, Any]]:
    try:
        return await asyncio.to_thread(engine.containers, _label(controller_id))
    except httpx.HTTPError:
        return []  # dockerd restarting; asked again on the next pass


def _describe(srv: FakeForgeServer, jobs: list[FJob], rows: list[dict[str, Any]], extra: object = "") -> str:
    statuses = Counter(j.status for j in jobs)
    runners = [(r.name, r.online, r.busy, r.had_task) for r in srv.runners.values()]
    containers = [(str(r["Names"][0]).lstrip("/"), r.get("State"), r.get("Status")) for r in rows]
    return f"jobs {dict(statuses)}; forge runners {runners}; containers {containers}; {extra}"


def _assert_one_runner_per_job(jobs: list[FJob], log: CreateLog) -> None:
    ran_on = [j.runner_name for j in jobs]
    assert all(ran_on), ran_on
    assert len(set(ran_on)) == len(jobs), f"a runner took more than one job: {Counter(ran_on)}"
    assert set(ran_on) <= set(log.names()), "a job ran on a runner without a container of this controller"


def _scaler_for(
    srv: FakeForgeServer, tmp_path: Path, docker_host: str, image: str, controller_id: str, *, boot_timeout: str
) -> tuple[socket.socket, Scaler]:
    """A bound loopback socket and an in-process Scaler for it (the real
    GiteaForge and DockerProvider, from the config), subscribed to the fake
    forge's webhooks."""
    sock = _bind()
    port = int(sock.getsockname()[1])
    config = parse_config(
        _config(
            tmp_path,
            forge_url=srv.url,
            docker_host=docker_host,
            image=image,
            controller_id=controller_id,
            port=port,
            boot_timeout=boot_timeout,
        )
    )
    srv.subscribe(f"http://127.0.0.1:{port}/webhooks/gitea", SECRET)
    return sock, Scaler(config)


async def _until(
    what: str, done: Callable[[], bool], step: Callable[[], Any], deadline: float, why: Callable[[], str]
) -> None:
    while True:
        await step()
        if done():
            return
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}: {why()}")
        await asyncio.sleep(0.1)


# --- 1. the burst -------------------------------------------------------------------


async def test_burst_of_20_jobs_served_and_torn_down(
    tmp_path: Path, docker_host: str, docker_image: str, engine: Engine, controller_id: str
) -> None:
    started = time.monotonic()
    deadline = started + 85
    # Gitea 1.24 has no queued-jobs listing: the webhooks are the only demand.
    async with _fake_gitea("1.24.0") as srv, _create_log(engine, controller_id) as created:
        sock, scaler = _scaler_for(srv, tmp_path, docker_host, docker_image, controller_id, boot_timeout="60s")
        deliver = Deliverer(srv)
        rows: list[dict[str, Any]] = []
        peak = 0
        try:
            async with _serving(create_app(scaler), sock, lifespan="on"):
                jobs = [srv.queue_job("acme/app", JOB_LABELS) for _ in range(20)]
                await deliver.pump()
                assert deliver.statuses == {202: 20}, deliver.statuses
                deliver.start()

                async def step() -> None:
                    nonlocal rows, peak
                    rows = await _containers(engine, controller_id)
                    peak = max(peak, len(rows))

                def done() -> bool:
                    return (
                        all(j.status == "success" for j in jobs)
                        and not rows
                        and not srv.runners
                        and not scaler.store.instances
                        # the last reports may still be on their way
                        and not scaler.store.queued_jobs()
                    )

                await _until(
                    "the burst to be served and torn down",
                    done,
                    step,
                    deadline,
                    lambda: _describe(
                        srv, jobs, rows,
                        f"store {sorted(scaler.store.instances)}, queued {[j.id for j in scaler.store.queued_jobs()]}",
                    ),
                )
        finally:
            await deliver.aclose()
        elapsed = time.monotonic() - started
        print(f"burst of 20 served in {elapsed:.1f}s; peak {peak} containers at once")

        # A container per job, each its own ephemeral runner (credential):
        # every job ran once, on a distinct runner, each a container of ours.
        _assert_one_runner_per_job(jobs, created)
        names = created.names()
        assert max(names.values()) == 1, names
        assert set(created.per_job()) == {str(j.id) for j in jobs}
        # An instance seen busy (or exited) before its job's in_progress
        # report stands for that job (planner, TOOK_JOB_GRACE), so none is
        # made twice. What remains is a runner taking its job in the instant
        # between a resync's queue listing and its runner listing: at most
        # an extra idle instance, retired after idle_timeout (0 extras in 6
        # runs of 30 Nov; 1-3 in 1 of 8 before the grace). Bounded here,
        # reported, not hidden.
        extras = sorted(set(names) - {str(j.runner_name) for j in jobs})
        print(f"{len(names)} containers for 20 jobs; idle extras: {extras}")
        assert len(extras) <= 1, extras
        assert max(created.per_job().values()) <= 2, created.per_job()
        # Gitea removes a used ephemeral runner itself (models/actions/task.go
        # UpdateTask); the collector deregisters the rest, which never ran a job.
        deletes = [p for m, p in srv.requests if m == "DELETE" and "/actions/runners/" in p]
        assert len(deletes) == len(extras), deletes
        assert engine.cli("ps", "-a", "-q", "--filter", f"label={_label(controller_id)}").stdout.strip() == ""
        assert deliver.lost == 0


# --- 2. the scaler SIGKILLed mid-burst --------------------------------------------------


class Child:
    """``runner-scaler serve`` as a real process (killed only by its own PID)."""

    def __init__(self, config: Path, log: Path) -> None:
        self.args = [sys.executable, "-m", "scaler.cli", "serve", "--config", str(config)]
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(self.args, stdout=out, stderr=out, env=env, cwd=REPO)
        self.starts += 1

    def kill(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()

    def tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


async def _wait_ready(http: httpx.AsyncClient, child: Child, deadline: float) -> None:
    while time.monotonic() < deadline:
        assert child.proc is not None
        if child.proc.poll() is not None:
            pytest.fail(f"the scaler exited with {child.proc.returncode}:\n{child.tail()}")
        with contextlib.suppress(httpx.HTTPError):
            if (await http.get("/readyz")).status_code == 200:
                return
        await asyncio.sleep(0.1)
    pytest.fail(f"the scaler was not ready in time:\n{child.tail()}")


async def test_scaler_sigkilled_mid_burst(
    tmp_path: Path, docker_host: str, docker_image: str, engine: Engine, controller_id: str
) -> None:
    n_jobs, kill_after = 15, 6
    started = time.monotonic()
    deadline = started + 85
    async with _fake_gitea("1.25.0") as srv, _create_log(engine, controller_id) as created:
        port = _free_port()
        data = _config(
            tmp_path,
            forge_url=srv.url,
            docker_host=docker_host,
            image=docker_image,
            controller_id=controller_id,
            port=port,
            boot_timeout="15s",
        )
        cfg = tmp_path / "config.yaml"
        cfg.write_text(yaml.safe_dump(data))
        child = Child(cfg, tmp_path / "scaler.log")
        srv.subscribe(f"http://127.0.0.1:{port}/webhooks/gitea", SECRET)
        deliver = Deliverer(srv)
        http = httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=3)
        rows: list[dict[str, Any]] = []
        killed_with: tuple[int, int] | None = None  # (containers created, jobs done) at the kill
        try:
            child.start()
            await _wait_ready(http, child, deadline)
            jobs = [srv.queue_job("acme/app", JOB_LABELS) for _ in range(n_jobs)]
            deliver.start()

            async def step() -> None:
                nonlocal rows, killed_with
                rows = await _containers(engine, controller_id)
                if killed_with is None and len(created.created) >= kill_after:
                    killed_with = (len(created.created), sum(j.done for j in jobs))
                    child.kill()
                    await asyncio.sleep(0.5)  # webhooks in this gap fail; the forge retries them
                    child.start()
                    await _wait_ready(http, child, deadline)

            def done() -> bool:
                return (
                    killed_with is not None
                    and all(j.status == "success" for j in jobs)
                    and not rows
                    and not srv.runners
                )

            await _until(
                "the burst to be served across the SIGKILL",
                done,
                step,
                deadline,
                lambda: _describe(srv, jobs, rows, f"killed at {killed_with}\n{child.tail()}"),
            )
            # the restarted scaler's store is empty too
            until = time.monotonic() + 10
            while (await http.get("/api/v1/instances")).json()["instances"] and time.monotonic() < until:
                await asyncio.sleep(0.2)
            assert (await http.get("/api/v1/instances")).json()["instances"] == []
        finally:
            child.stop()
            await http.aclose()
            await deliver.aclose()
        assert killed_with is not None and killed_with[1] < n_jobs, f"not killed mid-burst: {killed_with}"
        print(f"killed at {killed_with} (containers created, jobs done); done in {time.monotonic() - started:.1f}s")
        assert child.starts == 2
        # No container duplicated: never a name twice, every job ran exactly
        # once on its own runner, and every started container but the idle
        # idle extras of the resync race (see the burst test) ran a job. A
        # container the killed process had created but not started is
        # abandoned (reported failed, removed) and its job gets a fresh one.
        names = created.names()
        assert max(names.values()) == 1, names
        _assert_one_runner_per_job(jobs, created)
        started_names = {created.created[cid][0] for cid in created.started}
        extras = sorted(started_names - {str(j.runner_name) for j in jobs})
        abandoned = len(created.created) - len(created.started)
        print(f"{len(names)} containers created, {len(started_names)} started, {abandoned} abandoned, extras {extras}")
        # (Which job a container was made for is only a hint: after the
        # restart, replacements for the abandoned ones are labelled with
        # whichever jobs head the queue, so no per-job bound is asserted.)
        assert len(extras) <= 1, extras
        # nothing leaked: no container, no runner left on the forge
        assert await _containers(engine, controller_id) == []
        assert srv.runners == {}


# --- 3. dockerd restarted mid-burst ----------------------------------------------------------


async def test_dockerd_restarted_mid_burst_with_scaler_running(
    tmp_path: Path, docker_host: str, docker_image: str, engine: Engine, controller_id: str
) -> None:
    n_jobs, restart_after = 12, 4
    started = time.monotonic()
    deadline = started + 85
    async with _fake_gitea("1.25.0") as srv, _create_log(engine, controller_id) as created:
        sock, scaler = _scaler_for(srv, tmp_path, docker_host, docker_image, controller_id, boot_timeout="15s")
        deliver = Deliverer(srv)
        rows: list[dict[str, Any]] = []
        restarted_with: tuple[int, int] | None = None
        stuck: set[str] = set()
        try:
            async with _serving(create_app(scaler), sock, lifespan="on"):
                jobs = [srv.queue_job("acme/app", JOB_LABELS) for _ in range(n_jobs)]
                deliver.start()

                async def step() -> None:
                    nonlocal rows, restarted_with
                    rows = await _containers(engine, controller_id)
                    if restarted_with is not None:
                        stuck.update(await asyncio.to_thread(_engine_stuck, engine, rows))
                    if restarted_with is None and len(created.created) >= restart_after:
                        restarted_with = (len(created.created), sum(j.done for j in jobs))
                        await asyncio.to_thread(_service, "docker_stop")
                        await asyncio.sleep(1.0)  # the scaler works on with the engine gone
                        await asyncio.to_thread(_service, "docker_start")

                def done() -> bool:
                    return (
                        restarted_with is not None
                        and all(j.status == "success" for j in jobs)
                        and {str(r["Names"][0]).lstrip("/") for r in rows} <= stuck
                        and not srv.runners
                        and set(scaler.store.instances) <= stuck
                    )

                await _until(
                    "the burst to be served across the dockerd restart",
                    done,
                    step,
                    deadline,
                    lambda: _describe(
                        srv, jobs, rows, f"restarted at {restarted_with}; store {sorted(scaler.store.instances)}"
                    ),
                )
        finally:
            await deliver.aclose()
            await asyncio.to_thread(_ensure_up)
        assert restarted_with is not None and restarted_with[1] < n_jobs, f"not mid-burst: {restarted_with}"
        print(
            f"dockerd restarted at {restarted_with} (containers created, jobs done); "
            f"{len(created.created)} containers in all; done in {time.monotonic() - started:.1f}s; "
            f"left stuck in the engine: {sorted(stuck)}"
        )
        # every job ran exactly once, on its own runner with a container of ours
        _assert_one_runner_per_job(jobs, created)
        # never two started containers of one name (a name may be created
        # again after a create whose start the stopping engine refused: the
        # provider removes the half-made one first); nothing leaked
        started_names = Counter(created.created[cid][0] for cid in created.started)
        assert max(started_names.values()) == 1, started_names
        left = {str(r["Names"][0]).lstrip("/") for r in await _containers(engine, controller_id)}
        assert left <= stuck, left
        # only a container the stopping engine was starting can be stuck: at
        # most the creates in flight then (usually 0-2, 5 seen on a busy machine)
        assert len(stuck) <= PROVIDER_CONCURRENCY, stuck
        assert srv.runners == {}


# --- regression: a container abandoned between create and start ---------------------------


async def test_container_abandoned_between_create_and_start_is_reported_failed(
    provider: DockerProvider, provider_again: DockerProvider, make_launch: MakeLaunch, engine: Engine
) -> None:
    """What a scaler SIGKILLed between the engine's create and start leaves
    behind (found by test_scaler_sigkilled_mid_burst): a container of ours in
    the "created" state that nothing will ever start. It was listed as
    STARTING, so the restarted core counted it as supply until the pool's
    boot_timeout (300 s by default) while its job waited. Now a provider that
    is not creating it reports it FAILED (the core tears it down and serves the
    job at once); a create of the same name still adopts and starts it."""
    spec = make_launch("abandoned", run_seconds=30)
    labels = {**spec.labels, LABEL_PROVIDER: provider.name, LABEL_HOST: "local"}
    body = {"Image": spec.image, "Cmd": list(spec.command), "Labels": labels, "HostConfig": {"NetworkMode": "none"}}
    resp = await asyncio.to_thread(engine.http.post, "/containers/create", params={"name": spec.name}, json=body)
    assert resp.status_code == 201, resp.text

    listed = {i.name: i for i in await provider.list()}
    assert listed[spec.name].status is InstanceStatus.FAILED, listed[spec.name]
    assert "never started" in (listed[spec.name].reason or "")
    got = await provider.get(spec.name)
    assert got is not None and got.status is InstanceStatus.FAILED

    # the create path (a retried create of this process) still finishes it
    info = await provider_again.create(spec)
    assert info.status is InstanceStatus.RUNNING, info
    await provider_again.delete(spec.name)
