"""Wiring: one Scaler holds the store, the loops, the forges and providers."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter, OrderedDict
from collections.abc import Mapping
from typing import Any, Protocol

import structlog

from scaler import metrics
from scaler.clock import Clock, SystemClock
from scaler.collector import Collector
from scaler.config import Config
from scaler.domain.instance import InstanceState
from scaler.domain.job import JobState
from scaler.forges import build_forge
from scaler.forges.base import ForgeAdapter
from scaler.journal import Journal, attach, new_journal
from scaler.loops import Heartbeats, Inbox, guarded_loop
from scaler.planner import HELD_REASONS
from scaler.plugins import build_providers
from scaler.provider import Provider
from scaler.reconciler import Reconciler
from scaler.resync import Resync, watch_provider
from scaler.store import Store
from scaler.warm import WarmTarget

log = structlog.get_logger("scaler.app")

# How long stop() waits for a cancelled loop. A loop that swallows its
# cancellation is a bug; shutting down must not wait on it for ever.
STOP_GRACE = 5.0
# stop() as a whole, well inside Kubernetes' 30 s termination grace (uvicorn
# gives open requests 5 s first): whatever is cut short is found again by the
# next start's rebuild (providers' lists, forge runners by name).
STOP_DEADLINE = 15.0


class Elector(Protocol):
    is_leader: bool

    async def run(self, on_started_leading: Any, on_stopped_leading: Any) -> None: ...


class DeliveryCache:
    """Delivery ids already accepted; bounded, oldest forgotten first."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._seen: OrderedDict[str, None] = OrderedDict()

    def seen(self, key: str) -> bool:
        return key in self._seen

    def add(self, key: str) -> None:
        self._seen[key] = None
        if len(self._seen) > self.size:
            self._seen.popitem(last=False)


class Scaler:
    def __init__(
        self,
        config: Config,
        *,
        forges: Mapping[str, ForgeAdapter] | None = None,
        providers: Mapping[str, Provider] | None = None,
        clock: Clock | None = None,
        elector: Elector | None = None,
    ) -> None:
        self.config = config
        self.clock = clock or SystemClock()
        self.forges = dict(forges) if forges is not None else {f.name: build_forge(f) for f in config.forges}
        self.providers = dict(providers) if providers is not None else build_providers(config)
        self.elector = elector
        self.deliveries = DeliveryCache(config.limits.delivery_cache_size)
        self.heartbeats = Heartbeats(self.clock)
        self.ready = False
        # The job stories the UI shows; kept across leadership terms.
        self.journal: Journal | None = new_journal(config, self.clock) if config.ui.on else None
        self._loops: list[asyncio.Task[None]] = []
        self._elector_task: asyncio.Task[None] | None = None
        self._fresh_state()

    def _fresh_state(self) -> None:
        self.inbox = Inbox(self.config.limits.event_queue_size)
        self.store = Store(self.config)
        parts = (self.config, self.store, self.forges, self.providers, self.clock, self.inbox)
        self.reconciler = Reconciler(*parts)
        self.collector = Collector(*parts)
        self.resync = Resync(self.forges, self.providers, self.clock, self.inbox)
        if self.journal is not None:
            attach(self.journal, self.store, self.reconciler)

    @property
    def leading(self) -> bool:
        return self.elector is None or self.elector.is_leader

    @property
    def campaigning(self) -> bool:
        """Whether this replica takes part in leader election (a follower
        whose election task ended can never lead, so it is not ready)."""
        return self.elector is None or (self._elector_task is not None and not self._elector_task.done())

    # --- life cycle ---------------------------------------------------------

    async def start(self) -> None:
        if self.elector is None:
            await self._start_leading()
        else:
            self._elector_task = asyncio.create_task(self.elector.run(self._start_leading, self._stop_leading))

    async def rebuild(self) -> None:
        """Rebuild the store from the providers and the forges (DESIGN, "Soft state")."""
        await self.resync.run_once()
        await self.reconciler.run_once()
        self.ready = True
        log.info(
            "state rebuilt",
            instances=len(self.store.instances),
            queued=sum(1 for j in self.store.jobs.values() if j.state is JobState.QUEUED),
        )

    async def _start_leading(self) -> None:
        # The state is fresh (made at start, or when the last term ended):
        # replacing it here would lose a delivery accepted in the instant
        # between winning the Lease and this callback running.
        metrics.IS_LEADER.set(1)
        await self.rebuild()
        timing = self.config.timing
        self._loops = [
            asyncio.create_task(
                guarded_loop(
                    "reconciler", timing.reconcile_interval, self.step_reconcile, self.heartbeats, self.inbox.wake
                ),
                name="reconciler",
            ),
            asyncio.create_task(
                guarded_loop(
                    "collector", timing.collect_interval, self.collector.run_once, self.heartbeats, self.collector.wake
                ),
                name="collector",
            ),
            asyncio.create_task(
                guarded_loop("resync", timing.resync_interval, self.resync.run_once, self.heartbeats), name="resync"
            ),
            *(
                asyncio.create_task(watch_provider(name, p, self.inbox, self.clock), name=f"watch-{name}")
                for name, p in self.providers.items()
            ),
        ]
        if self.reconciler.warm.active:  # soft state: warm pools learn the forge's job history first
            self._loops.append(asyncio.create_task(self._learn_history(), name="warm-history"))

    async def _learn_history(self) -> None:
        from scaler.warm.history import rebuild

        try:
            await rebuild(self.reconciler.warm, self.forges, self.clock.now())
        except Exception:  # never take the scaler down: warm pools learn online anyway
            log.exception("warm pools: reading the job history failed")

    async def _stop_leading(self) -> None:
        """Lost the lease: stop acting at once; a new term rebuilds from scratch."""
        metrics.IS_LEADER.set(0)
        self.ready = False
        await self._cancel_loops()
        await self.reconciler.close()
        await self.collector.close()
        # Forget the term's state at once: a follower must not show (or
        # export) what it last saw as leader; the next term rebuilds anyway.
        self._fresh_state()

    async def _cancel_loops(self) -> None:
        for task in self._loops:
            task.cancel()
        if self._loops:
            _, stuck = await asyncio.wait(self._loops, timeout=STOP_GRACE)
            for task in stuck:
                log.error("background loop did not stop when cancelled", loop=task.get_name())
        self._loops = []
        for name in ("reconciler", "collector", "resync"):
            self.heartbeats.unregister(name)

    async def stop(self) -> None:
        started = time.monotonic()
        try:
            async with asyncio.timeout(STOP_DEADLINE):
                await self._stop()
        except TimeoutError:
            log.error("stop did not finish in time; leaving the rest to the next start", seconds=STOP_DEADLINE)
        log.info("stopped", seconds=round(time.monotonic() - started, 3))

    async def _stop(self) -> None:
        if self._elector_task is not None:
            self._elector_task.cancel()
            with contextlib.suppress(BaseException):
                await self._elector_task
        await self._cancel_loops()
        await self.reconciler.close()
        await self.collector.close()
        for provider in self.providers.values():
            with contextlib.suppress(Exception):
                await provider.close()
        for forge in self.forges.values():
            with contextlib.suppress(Exception):
                await forge.aclose()

    # --- passes -------------------------------------------------------------

    async def step_reconcile(self, *, full: bool = False) -> None:
        before = self.reconciler.planned_full
        await self.reconciler.run_once(full=full)
        # Only a full pass changes what is due for teardown (an incremental one
        # places new jobs): a storm's thousands of passes need not each walk
        # every instance again in the collector.
        if self.reconciler.planned_full != before:
            self.collector.wake.set()

    async def settle(self, rounds: int = 10) -> None:
        """Run passes until nothing is left to do (tests and scenarios): each
        round reconciles, waits for launches, collects, waits for teardowns."""
        for _ in range(rounds):
            # Full plans: a test's clock stands still, so the gap between
            # event-driven full plans (FULL_PLAN_GAP) would never pass.
            await self.step_reconcile(full=True)
            await self.reconciler.launches.join()
            await self.collector.run_once()
            await self.collector.tasks.join()
            if not len(self.inbox):
                await self.step_reconcile(full=True)
                if not len(self.inbox) and not len(self.reconciler.launches):
                    return

    # --- read models (API, metrics) -----------------------------------------

    def pool_stats(self) -> dict[str, dict[str, Any]]:
        """Per pool: ``queued`` is demand (waiting jobs this pool serves,
        whatever its capacity) = ``assigned`` + ``held_back`` (see
        :class:`scaler.planner.Demand` for a job that several pools match).
        Empty on a follower: it holds no state, so nothing it says can be
        double-counted (``/api/v1/pools`` is forwarded to the leader)."""
        if not self.leading:
            return {}
        demand = self.reconciler.last_plan.demand()
        warm = self.reconciler.warm.targets(self.clock.now())
        states: dict[str, Counter[str]] = {p.name: Counter() for p in self.config.pools}
        for inst in self.store.instances.values():
            if inst.pool in states:
                states[inst.pool][str(inst.state)] += 1
        running = Counter(
            self.store.instances[j.runner_name].pool
            for j in self.store.in_progress_jobs()
            if j.runner_name in self.store.instances
        )
        return {
            p.name: {
                "name": p.name,
                "forge": p.forge,
                "provider": p.provider,
                "queued": demand.queued_in(p.name),
                "assigned": demand.assigned.get(p.name, 0),
                "held_back": demand.held_back_in(p.name),
                "in_progress": running.get(p.name, 0),
                "instances": {
                    s.value: states[p.name].get(s.value, 0) for s in InstanceState if s is not InstanceState.DELETED
                },
                "min_idle": p.min_idle,
                "max": p.max,
                "warm": _warm(warm.get(p.name)),
                "crash_loop": self._crash_loop(p.name),
            }
            for p in self.config.pools
        }

    def _crash_loop(self, pool: str) -> dict[str, Any] | None:
        """The pool's streak of runners that ended before coming online, and
        how long it makes nothing new (``scaler.domain.boot_failures``)."""
        ends, until, error = self.store.boot_failures.streak(pool)
        if not ends:
            return None
        left = max(0.0, until - self.clock.now())
        return {"ended_before_online": ends, "backoff_seconds_left": round(left, 3), "last_error": error}

    def forge_stats(self) -> dict[str, list[dict[str, Any]]]:
        """Per forge: ``unservable`` waiting jobs (no pool's labels or
        allow-list admit them; from deliveries and listings alike) and
        ``lists_jobs`` (whether the forge can list its queue; None until the
        first listing). Empty on a follower, like :meth:`pool_stats`."""
        if not self.leading:
            return {"forges": []}
        demand = self.reconciler.last_plan.demand()
        return {
            "forges": [
                {
                    "name": f.name,
                    "type": f.type,
                    "unservable": demand.unservable.get(f.name, 0),
                    "lists_jobs": self.store.forge_lists_jobs.get(f.name),
                }
                for f in self.config.forges
            ]
        }

    def publish_gauges(self) -> None:
        """Set the per-pool and per-forge gauges. Called when ``/metrics`` is
        scraped, not on every pass: it walks every instance and pool, which a
        burst of passes cannot afford. A follower clears them instead."""
        for gauge in _STATE_GAUGES:
            gauge.clear()
        if not self.leading:
            return
        demand = self.reconciler.last_plan.demand()
        for name, stats in self.pool_stats().items():
            if stats["warm"] is not None:
                metrics.WARM_TARGET.labels(name).set(stats["warm"]["target_idle"])
                metrics.WARM_FORECAST.labels(name).set(stats["warm"]["forecast"])
            metrics.QUEUED_JOBS.labels(name).set(stats["queued"])
            metrics.ASSIGNED_JOBS.labels(name).set(stats["assigned"])
            for reason in HELD_REASONS:
                metrics.HELD_BACK_JOBS.labels(name, reason).set(demand.held_back.get((name, reason), 0))
            metrics.IN_PROGRESS_JOBS.labels(name).set(stats["in_progress"])
            metrics.POOL_MAX.labels(name).set(stats["max"])
            for state, n in stats["instances"].items():
                metrics.INSTANCES.labels(name, state).set(n)
        for forge in self.config.forges:
            metrics.UNSERVABLE_JOBS.labels(forge.name).set(demand.unservable.get(forge.name, 0))


_STATE_GAUGES = (
    metrics.QUEUED_JOBS,
    metrics.ASSIGNED_JOBS,
    metrics.HELD_BACK_JOBS,
    metrics.IN_PROGRESS_JOBS,
    metrics.POOL_MAX,
    metrics.INSTANCES,
    metrics.UNSERVABLE_JOBS,
    metrics.WARM_TARGET,
    metrics.WARM_FORECAST,
)


def _warm(target: WarmTarget | None) -> dict[str, Any] | None:
    if target is None:
        return None
    return {"target_idle": target.target_idle, "forecast": round(target.forecast, 3), "reason": target.reason}
