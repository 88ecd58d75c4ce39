"""A deterministic world for scenarios: the real core (Scaler, store, planner,
reconciler, collector, resync, webhook route) against the in-process fake
forge and in-memory provider, a fake clock, seeded randomness and a runner
simulator.

The runner simulator plays the forge and the runner binary: an instance that
exists on the provider boots after ``boot_delay``, its runner comes online,
takes a queued job it matches (as the forge would hand it out), runs it for a
random time, completes it and exits (``provider.finish``). Deliveries go
through the real ``POST /webhooks/{forge}`` route (httpx over ASGI) and can be
lost, duplicated, reordered and delayed. Forge and provider faults are
functions of (operation, now) so a scenario can describe an outage as a time
window rather than a count of calls.
"""

from __future__ import annotations

import asyncio
import functools
import io
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import structlog

from scaler import logging as slog
from scaler.app import Scaler
from scaler.clock import FakeClock
from scaler.config import Config, PoolConfig, parse_config
from scaler.domain.job import Job, JobState
from scaler.domain.labels import label_name
from scaler.events import InstanceObserved
from scaler.forges.base import RunnerLaunch
from scaler.provider import (
    LABEL_JOB_BOUND,
    LABEL_JOB_ID,
    LABEL_POOL,
    InstanceInfo,
    InstanceStatus,
    LaunchSpec,
    ProviderSettings,
)
from scaler.testing import FakeForge, FakeForgeState, MemoryProvider
from scaler.testing.memory import MemoryInstance
from scaler.web import create_app
from tests.scenarios.invariants import Invariants, wait_bound

# Canary credentials: every scenario runs with these, and invariant 5 looks
# for them (and every minted runner token) everywhere they must not be.
CANARY_WEBHOOK = "canary-webhook-secret-6f1d0c2a9b"
CANARY_TOKEN = "canary-forge-token-93b7e4aa01"
CANARY_ENV = {"RS_CANARY_WEBHOOK": CANARY_WEBHOOK, "RS_CANARY_TOKEN": CANARY_TOKEN}

Fault = Callable[[str, float], Exception | None]


def scenario_config(**overrides: Any) -> dict[str, Any]:
    """The scenario config: one fake forge, one memory provider, one pool."""
    pool: dict[str, Any] = {
        "name": "small",
        "forge": "fake",
        "provider": "mem",
        "labels": ["ubuntu-latest:docker://node:20", "self-hosted"],
        "max": 5,
        "repositories": ["acme/*"],
        "boot_timeout": "5m",
        "idle_timeout": "2m",
        "max_lifetime": "2h",
    }
    data: dict[str, Any] = {
        "controller_id": "rs",
        "forges": [
            {
                "name": "fake",
                "type": "fake",
                "url": "http://127.0.0.1:3000",
                "scope": {"kind": "organization", "name": "acme"},
                "webhook_secret_envs": ["RS_CANARY_WEBHOOK"],
                "token_env": "RS_CANARY_TOKEN",
            }
        ],
        "providers": [{"name": "mem", "type": "memory"}],
        "pools": [pool],
        "timing": {"reconcile_interval": "1s", "resync_interval": "30s", "collect_interval": "5s"},
        "limits": {"backoff_initial": "2s", "backoff_max": "60s"},
    }
    data.update(overrides)
    return data


class Hang(Exception):
    """Returned by a provider fault for op ``hang``: the create never answers."""


# --- the forge side -----------------------------------------------------------


@dataclass
class SimForgeState(FakeForgeState):
    """FakeForgeState whose failures can also be a function of (op, now)."""

    fault: Fault | None = None
    now: Callable[[], float] = lambda: 0.0

    def maybe_fail(self, op: str) -> None:
        super().maybe_fail(op)
        if self.fault is not None:
            exc = self.fault(op, self.now())
            if exc is not None:
                raise exc


class SimForge(FakeForge):
    """Adds lost answers: the forge did the work, the reply never arrived."""

    async def mint(self, pool: PoolConfig, runner_name: str, job: Job | None) -> RunnerLaunch:
        launch = await super().mint(pool, runner_name, job)
        self.state.maybe_fail("mint_reply")
        return launch

    async def deregister(self, runner_id: int) -> None:
        await super().deregister(runner_id)
        self.state.maybe_fail("deregister_reply")


# --- the provider side ----------------------------------------------------------


class SimProvider(MemoryProvider):
    """MemoryProvider with time-based faults, yield points (so a restart can
    land in the middle of a create) and lost replies."""

    def __init__(self, settings: ProviderSettings, *, shared: dict[str, MemoryInstance] | None, world: World) -> None:
        super().__init__(settings, shared=shared)
        self.world = world
        self.yields = 0

    def _fault(self, op: str) -> None:
        if self.world.provider_fault is not None:
            exc = self.world.provider_fault(op, self.world.clock.now())
            if exc is not None:
                raise exc

    async def _maybe_hang(self) -> None:
        if self.world.provider_fault is not None and isinstance(
            self.world.provider_fault("hang", self.world.clock.now()), Hang
        ):
            self.world.hangs += 1
            await asyncio.Event().wait()  # until create_timeout cancels it

    async def create(self, launch: LaunchSpec) -> InstanceInfo:
        for _ in range(self.yields):
            await asyncio.sleep(0)
        await self._maybe_hang()
        self._fault("create")
        existed = launch.name in self.instances
        info = await super().create(launch)
        if not existed and launch.name in self.instances:
            self.world.born.setdefault(launch.name, self.world.clock.now())
            self.world.created_names.append(launch.name)
        self._fault("create_reply")
        return info

    async def delete(self, name: str) -> None:
        self._fault("delete")
        await super().delete(name)
        self._fault("delete_reply")

    async def list(self) -> list[InstanceInfo]:
        self._fault("list")
        return await super().list()


# --- jobs ---------------------------------------------------------------------


@dataclass
class SimJob:
    id: int
    repository: str
    labels: tuple[str, ...]
    queued_at: float
    eligible: bool
    duration: float
    started_at: float | None = None
    completed_at: float | None = None
    runner: str | None = None
    lost_at: float | None = None  # its runner's instance vanished mid-job


@dataclass
class Outgoing:
    due: float
    seq: int
    headers: dict[str, str]
    body: bytes


@dataclass
class WebhookPolicy:
    loss: float = 0.0  # probability a delivery is never sent
    dup: float = 0.0  # probability it is sent twice (half the time with a new delivery id)
    delay: float = 0.0  # each delivery is delayed uniformly in [0, delay] seconds
    reorder: bool = False  # deliveries due in the same step arrive shuffled


@dataclass
class World:
    data: dict[str, Any] = field(default_factory=scenario_config)
    seed: int = 0
    tick_s: float = 2.0
    boot_delay: float = 6.0
    job_time: tuple[float, float] = (20.0, 90.0)
    webhooks: WebhookPolicy = field(default_factory=WebhookPolicy)
    never_boot: float = 0.0  # probability a runner never comes online
    bind_to_job: bool = False  # a runner only takes the job its instance was made for (Forgejo handle)
    forge_removes_runner: bool = False  # ephemeral runner records vanish after the job (GitHub)
    lost_runner_timeout: float = 120.0  # the forge fails a job whose runner vanished, after this
    provider_fault: Fault | None = None
    forge_fault: Fault | None = None
    repos: tuple[str, ...] = ("acme/app", "acme/lib", "acme/web")
    foreign_repos: tuple[str, ...] = ("evil/app",)
    foreign_share: float = 0.1
    odd_labels_share: float = 0.05

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.clock = FakeClock()
        self.t0 = self.clock.now()
        self.config: Config = parse_config(self.data)
        self.forge = SimForgeState(
            secret=CANARY_WEBHOOK,
            auto_online=False,
            bind_to_job=self.bind_to_job,
            now=self.clock.now,
            fault=self._forge_fault,
        )
        self.log_stream = io.StringIO()
        self.canaries: set[str] = {CANARY_WEBHOOK, CANARY_TOKEN}
        self.born: dict[str, float] = {}
        self.created_names: list[str] = []
        self.jobs: dict[int, SimJob] = {}
        self.outbox: list[Outgoing] = []
        self.never: set[str] = set()
        self.seen_instances: set[str] = set()
        self.peak_eligible_waiting = 0
        self.webhook_results: list[int] = []
        self.hangs = 0
        self.inv = Invariants(self)
        self._seq = 0
        self._next_resync = 0.0
        self._arrivals: list[tuple[float, str, tuple[str, ...]]] = []
        self._backend: dict[str, MemoryInstance] = {}
        self._build_scaler()

    # --- wiring -------------------------------------------------------------

    def _build_scaler(self) -> None:
        self.providers: dict[str, SimProvider] = {}
        for pc in self.config.providers:
            p = SimProvider(
                ProviderSettings(pc.name, pc.type, self.config.controller_id, dict(pc.options)),
                shared=self._backend,
                world=self,
            )
            p.on_create.append(functools.partial(self.inv.on_create, pc.name))
            p.on_delete.append(functools.partial(self.inv.on_delete, pc.name))
            self.providers[pc.name] = p
        forge = SimForge(self.config.forges[0], self.forge)
        self.scaler = Scaler(self.config, forges={forge.name: forge}, providers=self.providers, clock=self.clock)
        self.app = create_app(self.scaler)
        self.http = httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url="http://127.0.0.1")

    async def __aenter__(self) -> World:
        self._saved_handlers = logging.getLogger().handlers[:]
        self._saved_level = logging.getLogger().level
        slog.configure("debug", "json", stream=self.log_stream)
        await self.scaler.rebuild()
        self._next_resync = self.clock.now() + self.config.timing.resync_interval
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.scaler.stop()
        await self.http.aclose()
        structlog.reset_defaults()
        root = logging.getLogger()
        root.handlers[:] = self._saved_handlers
        root.setLevel(self._saved_level)

    @property
    def provider(self) -> SimProvider:
        return next(iter(self.providers.values()))

    def pool_of(self, name: str) -> PoolConfig | None:
        inst = self._backend.get(name)
        pool = inst.info.labels.get(LABEL_POOL) if inst else None
        return next((p for p in self.config.pools if p.name == pool), None)

    def eligible(self, repository: str, labels: tuple[str, ...]) -> bool:
        job = Job("fake", 0, repository, labels, JobState.QUEUED)
        return bool(self.scaler.reconciler.index.candidates(job))

    def _forge_fault(self, op: str, now: float) -> Exception | None:
        return self.forge_fault(op, now) if self.forge_fault is not None else None

    # --- restart ------------------------------------------------------------

    async def restart(self, *, mid_flight: bool = False) -> None:
        """Kill the scaler (in-flight launches and teardowns cancelled where
        they stand) and start a new one over the same forge and provider
        backend. Deliveries queued in the old inbox are lost with it."""
        if mid_flight:
            for p in self.providers.values():
                p.yields = 3
            await self.scaler.step_reconcile()
            await self.scaler.collector.run_once()
            for _ in range(self.rng.randint(0, 4)):
                await asyncio.sleep(0)
        await self.scaler.stop()
        await self.http.aclose()
        self._build_scaler()
        await self.scaler.rebuild()
        self._next_resync = self.clock.now() + self.config.timing.resync_interval

    # --- jobs arriving ------------------------------------------------------

    def schedule(self, n: int, *, within: float = 0.0, start: float | None = None) -> None:
        """``n`` jobs arriving uniformly over ``within`` seconds from ``start``
        (default now): mostly served repos and labels, some foreign repos and
        some labels no pool has."""
        base = self.clock.now() if start is None else start
        for _ in range(n):
            r = self.rng.random()
            repo = self.rng.choice(self.foreign_repos if r < self.foreign_share else self.repos)
            labels: tuple[str, ...] = ("ubuntu-latest",)
            if self.rng.random() < self.odd_labels_share:
                labels = ("windows-latest",)
            elif self.rng.random() < 0.3:
                labels = ("self-hosted", "ubuntu-latest")
            self._arrivals.append((base + self.rng.uniform(0, within), repo, labels))
        self._arrivals.sort()

    def _queue_due(self, now: float) -> None:
        while self._arrivals and self._arrivals[0][0] <= now:
            _, repo, labels = self._arrivals.pop(0)
            self.queue_job(repo, labels)

    def queue_job(self, repo: str, labels: tuple[str, ...]) -> int:
        job_id, headers, body = self.forge.queue_job(repo, list(labels))
        lo, hi = self.job_time
        self.jobs[job_id] = SimJob(
            job_id, repo, labels, self.clock.now(), self.eligible(repo, labels), self.rng.uniform(lo, hi)
        )
        self.send(headers, body)
        return job_id

    # --- webhooks -----------------------------------------------------------

    def send(self, headers: dict[str, str], body: bytes) -> None:
        pol = self.webhooks
        if self.rng.random() < pol.loss:
            return
        copies = [headers]
        if self.rng.random() < pol.dup:
            copies.append(headers if self.rng.random() < 0.5 else self.forge.sign(body))
        for h in copies:
            self._seq += 1
            self.outbox.append(Outgoing(self.clock.now() + self.rng.uniform(0, pol.delay), self._seq, h, body))

    async def _deliver_due(self) -> None:
        now = self.clock.now()
        due = [o for o in self.outbox if o.due <= now]
        if not due:
            return
        self.outbox = [o for o in self.outbox if o.due > now]
        if self.webhooks.reorder:
            self.rng.shuffle(due)
        else:
            due.sort(key=lambda o: (o.due, o.seq))
        for o in due:
            resp = await self.http.post("/webhooks/fake", content=o.body, headers=o.headers)
            self.webhook_results.append(resp.status_code)
            self.inv.scan("webhook response", [resp.text])

    # --- the runners ----------------------------------------------------------

    def _simulate_runners(self, now: float) -> None:
        # Jobs that finish.
        for job in self.jobs.values():
            running = job.started_at is not None and job.completed_at is None and job.lost_at is None
            if running and job.started_at is not None and now >= job.started_at + job.duration:
                self._complete(job, now)
        # Jobs whose runner vanished under them: the forge fails them later.
        for job in self.jobs.values():
            if job.started_at is None or job.completed_at is not None or job.runner is None:
                continue
            if job.runner not in self._backend and job.lost_at is None:
                job.lost_at = now
            if job.lost_at is not None and now >= job.lost_at + self.lost_runner_timeout:
                self._complete(job, now, lost=True)
        # Instances that boot, and runners that take a job.
        queued = sorted((j for j in self.forge.jobs.values() if j.status == "queued"), key=lambda j: j.id)
        for name, inst in list(self._backend.items()):
            if inst.info.status is not InstanceStatus.RUNNING:
                continue
            if name not in self.seen_instances:
                self.seen_instances.add(name)
                if self.rng.random() < self.never_boot:
                    self.never.add(name)
            runner = self.forge.runner_by_name(name)
            if runner is None or name in self.never:
                continue
            if not runner.online and now - self.born.get(name, now) >= self.boot_delay:
                runner.online = True
            if not runner.online or runner.busy or any(j.runner == name for j in self.jobs.values()):
                continue
            pool = self.pool_of(name)
            if pool is None:
                continue
            for fj in queued:
                if self._takes(pool, inst, fj.id, fj.repository, fj.labels):
                    queued.remove(fj)
                    self._start(fj.id, name, now)
                    break
        waiting = sum(1 for j in self.jobs.values() if j.eligible and j.started_at is None)
        self.peak_eligible_waiting = max(self.peak_eligible_waiting, waiting)

    def _takes(self, pool: PoolConfig, inst: MemoryInstance, job_id: int, repo: str, labels: tuple[str, ...]) -> bool:
        bound = self.bind_to_job and inst.info.labels.get(LABEL_JOB_BOUND) == "true"
        if bound and inst.info.labels.get(LABEL_JOB_ID) != str(job_id):
            return False
        names = {label_name(x).lower() for x in pool.labels}
        # The runner's registration (scope/group) admits only the pool's repos.
        return pool.allow_list.allows(repo) and all(label_name(x).lower() in names for x in labels)

    def _start(self, job_id: int, runner: str, now: float) -> None:
        sj = self.jobs[job_id]
        sj.started_at, sj.runner = now, runner
        self.send(*self.forge.start_job(job_id, runner))

    def _complete(self, job: SimJob, now: float, *, lost: bool = False) -> None:
        job.completed_at = now
        self.send(*self.forge.complete_job(job.id))
        runner = self.forge.runner_by_name(job.runner or "")
        if lost and runner is not None:
            runner.online = False
        name = job.runner or ""
        if name in self._backend and not lost:
            self.provider.finish(name)
            self.scaler.inbox.post(InstanceObserved(self.provider.name, self._backend[name].info))  # the watch
        if self.forge_removes_runner and runner is not None:
            self.forge.runners.pop(runner.id, None)

    # --- driving --------------------------------------------------------------

    async def step(self, dt: float | None = None) -> None:
        self.clock.advance(self.tick_s if dt is None else dt)
        now = self.clock.now()
        self._queue_due(now)
        self._simulate_runners(now)
        await self._deliver_due()
        if now >= self._next_resync:
            self._next_resync = now + self.config.timing.resync_interval
            await self.scaler.resync.run_once()
        await self.scaler.settle()
        self.inv.check_step()

    async def run_for(self, seconds: float) -> None:
        end = self.clock.now() + seconds
        while self.clock.now() < end:
            await self.step()

    def busy_jobs(self) -> int:
        return sum(1 for j in self.jobs.values() if j.started_at is not None and j.completed_at is None)

    def quiet(self) -> bool:
        eligible_open = any(j.eligible and j.completed_at is None for j in self.jobs.values())
        return not eligible_open and not self._arrivals and not self.outbox

    async def drain(self, limit: float = 6 * 3600.0) -> None:
        """Run until every eligible job is done, then long enough for idle
        instances to be retired and two resyncs to pass."""
        end = self.clock.now() + limit
        while not self.quiet() and self.clock.now() < end:
            await self.step()
        t = self.config.timing
        tail = max(p.idle_timeout for p in self.config.pools) + 2 * t.resync_interval + 4 * self.tick_s
        await self.run_for(tail)

    async def finish(self, *, extra: float = 0.0, drain_limit: float = 6 * 3600.0) -> None:
        """Drain, then check every invariant."""
        await self.drain(drain_limit)
        await self.inv.check_final(wait_bound(self, extra=extra))

    def summary(self) -> dict[str, int]:
        return {
            "jobs": len(self.jobs),
            "eligible": sum(1 for j in self.jobs.values() if j.eligible),
            "creates": self.inv.creates,
            "instances": len(set(self.created_names)),
            "deletes": self.inv.deletes,
        }
