"""The replay: a trace through the real core on a virtual clock.

The core is the one ``serve`` runs — :class:`scaler.app.Scaler` with its
store, planner, reconciler, collector and resync — wired to a simulated
forge and provider (:mod:`scaler.sim.world`) and a :class:`FakeClock`. Only
time is simulated: the clock jumps from one thing that can happen to the
next instead of sleeping, and the loops run when ``serve``'s would:

* the reconciler when an event arrives (a job report, a launch result, an
  exit) and on its timer, ``reconcile_interval`` after its last pass; timer
  passes that can change nothing (no event, no timeout, grace or warm target
  due: :func:`scaler.planner.next_decision_at`) are skipped to the first
  tick at which something can;
* the collector after every reconciler pass, as ``serve`` wakes it;
* the resync every ``resync_interval`` (skipped when neither the world nor
  the store changed since the last one: it would read the same).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import structlog

from scaler.app import Scaler
from scaler.clock import FakeClock
from scaler.config import Config
from scaler.domain.instance import InstanceState
from scaler.domain.job import Job
from scaler.events import InstanceObserved, JobReported
from scaler.planner import next_decision_at
from scaler.provider import InstanceInfo
from scaler.sim.latency import Latency
from scaler.sim.world import SimForge, SimProvider, World
from scaler.trace.format import TraceJob

log = structlog.get_logger("scaler.sim")
S = InstanceState
DAY = 86400.0
MAX_ROUNDS = 1000  # passes in one instant before giving up (a loop that never settles is a bug)


@dataclass(frozen=True, slots=True)
class ReplayOptions:
    latency: Latency = field(default_factory=lambda: Latency(60.0))
    start: float | None = None  # --from: first arrival replayed
    end: float | None = None  # --to: arrivals before this are replayed
    warmup: float = 0.0  # replayed (the core learns) but left out of the report
    forge: str | None = None  # the config's forge the trace's jobs belong to
    seed: int = 0
    drain: float = DAY  # after the last arrival, how long queued jobs may still wait
    # Skip timer passes and resyncs that can change nothing. Off: every tick
    # runs, as in serve (slower; the tests hold the two to the same report).
    skip_quiet: bool = True


@dataclass
class Replay:
    """One replay's outcome: the world's ground truth and the report window."""

    config: Config
    world: World
    window: tuple[float, float]
    stopped_at: float
    options: ReplayOptions
    seconds: float = 0.0  # wall-clock time the replay took
    passes: int = 0
    resyncs: int = 0
    warm: list[tuple[float, int]] = field(default_factory=list)  # (t, sum of warm targets)


class Engine:
    def __init__(self, config: Config, jobs: Sequence[TraceJob], options: ReplayOptions) -> None:
        if not jobs:
            raise ValueError("the trace has no jobs in the chosen window")
        self.config = config
        self.options = options
        forge = options.forge or config.forges[0].name
        if forge not in {f.name for f in config.forges}:
            raise ValueError(f"--forge: no forge named {forge!r} in the config")
        self.world = World(config, forge, options.latency.sampler(options.seed))
        self.t0 = options.start if options.start is not None else jobs[0].queued_at
        self.t_end = options.end if options.end is not None else math.nextafter(jobs[-1].queued_at, math.inf)
        replayed = [j for j in jobs if self.t0 <= j.queued_at < self.t_end]
        if not replayed:
            raise ValueError("the trace has no jobs in the chosen window")
        for j in replayed:
            self.world.add_job(j)
        self.window = (self.t0 + options.warmup, self.t_end)
        self.clock = FakeClock(start=self.t0)
        self.world.now = self.t0
        forges = {f.name: SimForge(self.world) for f in config.forges}
        for name, f in forges.items():
            f.name = name
        self.providers = {p.name: SimProvider(p.name, self.world) for p in config.providers}
        self.scaler = Scaler(config, forges=forges, providers=self.providers, clock=self.clock)
        self._provider_of = {p.name: p.provider for p in config.pools}
        self.world.report = self._report
        self.world.exited = self._exited
        self._refused: list[Job] = []
        self.passes = 0
        self.resyncs = 0
        self._warm: list[tuple[float, int]] = []

    # --- what the world tells the core ------------------------------------------

    def _report(self, job: Job) -> None:
        """A job report, as the webhook route enqueues it after verifying and parsing."""
        s = self.scaler
        if job.runner_name not in s.store.instances and not s.reconciler.index.candidates(job):
            return  # "not served": the route answers 200 and enqueues nothing
        if not s.inbox.offer(JobReported(job, self.clock.now())):
            self._refused.append(job)  # 503: the forge redelivers

    def _exited(self, info: InstanceInfo) -> None:
        provider = self._provider_of.get(info.labels.get("runner-scaler.io/pool", ""), "")
        self.scaler.inbox.post(InstanceObserved(provider, info))  # the provider's watch

    # --- driving ----------------------------------------------------------------

    async def run(self) -> Replay:
        started = time.perf_counter()
        s = self.scaler
        timing = self.config.timing
        await s.rebuild()
        now = self.t0
        next_reconcile = now + timing.reconcile_interval
        next_resync = now + timing.resync_interval
        seen: tuple[int, object] | None = None
        while True:
            at = min(x for x in (self.world.next_event(), next_reconcile, next_resync) if x is not None)
            if at >= self.t_end and self._done(at):
                break
            now = at
            self.clock.set(now)
            self.world.run_due(now)
            if now >= next_resync:
                next_resync = self._grid(next_resync, timing.resync_interval, now)
                if not self.options.skip_quiet or seen != (self.world.version, self._fingerprint()):
                    await s.resync.run_once()
                    self.resyncs += 1
                    await self._settle()
                    seen = (self.world.version, self._fingerprint())
                    next_reconcile = self._next_reconcile(now)
            if len(s.inbox) or self._refused or now >= next_reconcile:
                await self._settle()
                next_reconcile = self._next_reconcile(now)
        await s.stop()
        replay = Replay(self.config, self.world, self.window, now, self.options)
        replay.seconds = time.perf_counter() - started
        replay.passes, replay.resyncs, replay.warm = self.passes, self.resyncs, self._warm
        return replay

    def _done(self, at: float) -> bool:
        if self.world.queue_is_pending():
            return at >= self.t_end + self.options.drain
        return True

    @staticmethod
    def _grid(due: float, interval: float, now: float) -> float:
        """The timer's next tick after ``now`` on the grid ``due + k*interval``."""
        return due + interval * (math.floor((now - due) / interval) + 1)

    async def _settle(self) -> None:
        s = self.scaler
        for _ in range(MAX_ROUNDS):
            for job in self._refused[:]:
                self._refused.remove(job)
                self._report(job)
            await s.step_reconcile()
            self.passes += 1
            await s.reconciler.launches.join()
            await s.collector.run_once()
            await s.collector.tasks.join()
            if not len(s.inbox):
                break
        else:
            raise RuntimeError(f"replay did not settle at t={self.clock.now():.0f}")
        if s.reconciler.warm.active:
            total = sum(s.reconciler.warm.target_idle(self.clock.now()).values())
            if not self._warm or self._warm[-1][1] != total:
                self._warm.append((self.clock.now(), total))

    def _fingerprint(self) -> object:
        store = self.scaler.store
        return (
            tuple((i.name, i.state, i.took_job_at is None, i.runner_id) for i in store.instances.values()),
            len(store.queued_seen),
        )

    def _next_reconcile(self, now: float) -> float:
        """The reconciler's next timer tick at which a pass may change something,
        or sooner when a full plan waits out its gap (serve's loop is woken then)."""
        interval = self.config.timing.reconcile_interval
        due = now + interval
        full = self.scaler.reconciler.full_plan_due
        if full is not None:
            due = min(due, max(full, math.nextafter(now, math.inf)))
        if not self.options.skip_quiet:
            return due
        deadline = self._deadline(now, horizon=now + DAY)
        if deadline <= due:
            return due
        return now + interval * math.ceil((deadline - now) / interval)

    def _deadline(self, now: float, horizon: float) -> float:
        s = self.scaler
        store = s.store
        at = next_decision_at(s.reconciler.snapshot(now), s.reconciler.index)
        for inst in store.instances.values():
            if inst.state in (S.PENDING, S.DELETING) and inst.not_before > now:
                at = min(at, inst.not_before)  # a retry (launch, teardown) falls due
        for health in store.providers.values():
            if health.unhealthy_until > now:
                at = min(at, health.unhealthy_until)
        if s.reconciler.warm.active:
            at = min(at, s.reconciler.warm.next_change(now, min(at, horizon)))
        return min(at, horizon)


async def replay(config: Config, jobs: Sequence[TraceJob], options: ReplayOptions) -> Replay:
    return await Engine(config, jobs, options).run()
