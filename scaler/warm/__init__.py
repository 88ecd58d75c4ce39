"""Warm pools: idle runners held by a wait target (pool option ``warm``).

:class:`WarmPools` learns, per pool with ``warm`` set, from the jobs the
scaler sees (each job counts for the first pool that would take it) and from
how long its runners take to start, and gives the planner a target number of
idle runners per pool. It is soft state, like the store: rebuilt at start-up
from the forge's job history (:mod:`scaler.warm.history`), learned online
after that, never written anywhere. The planner stays pure: the targets reach
it inside the snapshot.
"""

from __future__ import annotations

import math
from collections import OrderedDict, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from scaler.config import Config, PoolConfig
from scaler.domain.job import Job
from scaler.warm.forecast import ArrivalModel
from scaler.warm.policy import STEP, Calibration, WarmTarget, calibrate, idle_count, predict, target

__all__ = ["STEP", "WarmPools", "WarmTarget"]

DEFAULT_START = 60.0  # assumed until the pool's own runners have been seen starting
BOOT_SAMPLES = 50
SEEN_JOBS = 50_000


class _Candidates:
    """What WarmPools needs of the planner's PoolIndex."""

    def candidates(self, job: Job) -> tuple[PoolConfig, ...]:  # pragma: no cover - protocol
        raise NotImplementedError


@dataclass
class _Pool:
    config: PoolConfig
    model: ArrivalModel
    boots: deque[float]
    calibration: Calibration | None = None
    calibrated_for: tuple[int, float, float] | None = None
    start: tuple[int, float] = (-1, DEFAULT_START)  # (boots seen, estimate)
    booted: int = 0


class WarmPools:
    def __init__(self, config: Config, index: _Candidates) -> None:
        self.index = index
        self._pools = {
            p.name: _Pool(p, ArrivalModel(), deque(maxlen=BOOT_SAMPLES)) for p in config.pools if p.warm is not None
        }
        self._seen: OrderedDict[tuple[str, int], None] = OrderedDict()
        self._cache: tuple[tuple[object, ...], dict[str, WarmTarget]] | None = None
        self._next: tuple[tuple[object, ...], float, float, bool] | None = None

    @property
    def active(self) -> bool:
        return bool(self._pools)

    @property
    def pools(self) -> Mapping[str, PoolConfig]:
        return {name: p.config for name, p in self._pools.items()}

    # --- learning -------------------------------------------------------------

    def observe_job(self, job: Job, seen_at: float) -> None:
        """A job the scaler learned of (webhook, poll or history); counted once."""
        if not self._pools or job.key in self._seen:
            return
        self._seen[job.key] = None
        if len(self._seen) > SEEN_JOBS:
            self._seen.popitem(last=False)
        candidates = self.index.candidates(job)
        pool = self._pools.get(candidates[0].name) if candidates else None
        if pool is not None:
            t = job.queued_at if job.queued_at is not None else seen_at
            if pool.model.starts_batch(t):
                pool.model.pending_prediction = predict(pool.model, t, self.start_time(candidates[0].name))
            pool.model.observe(t)

    def observe_jobs(self, jobs: Iterable[Job]) -> int:
        n = 0
        for job in sorted(jobs, key=lambda j: j.queued_at or 0.0):
            before = len(self._seen)
            self.observe_job(job, job.queued_at or 0.0)
            n += len(self._seen) > before
        return n

    def observe_boot(self, pool: str, seconds: float) -> None:
        """One of the pool's runners came online ``seconds`` after it was planned."""
        p = self._pools.get(pool)
        if p is not None and 0 <= seconds < 86400:
            p.boots.append(seconds)
            p.booted += 1

    def start_time(self, pool: str) -> float:
        """The configured start time, else the low quartile of recent starts
        (a runner seen idle is seen up to one resync late; one seen taking a
        job, at once)."""
        p = self._pools[pool]
        assert p.config.warm is not None
        if p.config.warm.start_time is not None:
            return p.config.warm.start_time
        if not p.boots:
            return DEFAULT_START
        if p.start[0] != p.booted:
            ordered = sorted(p.boots)
            p.start = (p.booted, float(round(ordered[len(ordered) // 4])))
        return p.start[1]

    # --- targets ----------------------------------------------------------------

    def _at(self, p: _Pool, now: float) -> float:
        # Piecewise constant between grid points and arrivals: the same
        # answer for every ``now`` until one of them passes.
        grid = math.floor(now / STEP) * STEP
        latest = p.model.batches[-1].last if p.model.batches else -math.inf
        return max(grid, latest) if latest <= now else grid

    def _calibration(self, name: str, p: _Pool, now: float) -> Calibration:
        assert p.config.warm is not None
        start = self.start_time(name)
        first = p.model.batches[-1].start if p.model.batches else 0.0
        key = (len(p.model.batches), first, start)
        if p.calibration is None or p.calibrated_for != key:
            w = p.config.warm
            p.calibration = calibrate(p.model, start, w.target_wait, w.quantile, now)
            p.calibrated_for = key
        return p.calibration

    def targets(self, now: float) -> dict[str, WarmTarget]:
        """Per warm pool: the idle runners to hold at ``now``, and why."""
        if not self._pools:
            return {}
        at = {name: self._at(p, now) for name, p in self._pools.items()}
        key = tuple((at[n], p.model.version, self.start_time(n)) for n, p in self._pools.items())
        if self._cache is not None and self._cache[0] == key:
            return self._cache[1]
        out = {}
        for name, p in self._pools.items():
            w = p.config.warm
            assert w is not None
            out[name] = target(
                p.model,
                self._calibration(name, p, at[name]),
                now=at[name],
                start=self.start_time(name),
                target_wait=w.target_wait,
                quantile=w.quantile,
                min_idle=p.config.min_idle,
                max_idle=w.max_idle,
                pool_max=p.config.max,
            )
        self._cache = (key, out)
        return out

    def target_idle(self, now: float) -> dict[str, int]:
        """The numbers of :meth:`targets` alone (cheaper: no reasons)."""
        out = {}
        for name, p in self._pools.items():
            w = p.config.warm
            assert w is not None
            at = self._at(p, now)
            out[name] = idle_count(
                p.model,
                self._calibration(name, p, at),
                now=at,
                start=self.start_time(name),
                target_wait=w.target_wait,
                min_idle=p.config.min_idle,
                max_idle=w.max_idle,
                pool_max=p.config.max,
            )
        return out

    def next_change(self, now: float, until: float) -> float:
        """The first grid time in ``(now, until]`` at which a target differs from
        now's, else ``until`` (arrivals change targets too; callers know those)."""
        if not self._pools:
            return math.inf
        state = tuple((p.model.version, self.start_time(n)) for n, p in self._pools.items())
        if self._next is not None:
            key, asked, answer, changed = self._next
            # Known: the target does not change in [asked, answer) (and does at
            # ``answer`` when ``changed``), as long as nothing was learned.
            if key == state and asked <= now < answer and (changed or until <= answer):
                return min(answer, until)
        current = self.target_idle(now)
        t = math.floor(now / STEP) * STEP + STEP
        while t <= until and self.target_idle(t) == current:
            t += STEP
        changed = t <= until
        self._next = (state, now, t if changed else until, changed)
        return t if changed else until
