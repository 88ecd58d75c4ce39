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
from typing import Any, Protocol

from scaler.config import Config, PoolConfig
from scaler.domain.job import Job
from scaler.warm.forecast import ArrivalModel
from scaler.warm.policy import (
    STEP,
    Calibration,
    WarmTarget,
    budget,
    calibrate,
    feedback,
    idle_count,
    predict,
    target,
)

__all__ = ["STEP", "WarmPools", "WarmTarget"]

DEFAULT_START = 60.0  # assumed until the pool's own runners have been seen starting
BOOT_SAMPLES = 50
SEEN_JOBS = 50_000


class _Candidates(Protocol):
    """What WarmPools needs of the planner's PoolIndex."""

    def candidates(self, job: Job) -> tuple[PoolConfig, ...]: ...


@dataclass
class _Pool:
    config: PoolConfig
    model: ArrivalModel
    boots: deque[float]
    calibration: Calibration | None = None
    calibrated_for: tuple[int, float, float, float] | None = None
    start: tuple[int, float] = (-1, DEFAULT_START)  # (boots seen, estimate)
    booted: int = 0
    gain: float = 0.0  # log-scale correction of the budget from real waits (policy.feedback)


class WarmPools:
    def __init__(self, config: Config, index: _Candidates) -> None:
        self.index = index
        self._pools = {
            p.name: _Pool(p, ArrivalModel(), deque(maxlen=BOOT_SAMPLES)) for p in config.pools if p.warm is not None
        }
        self._seen: OrderedDict[tuple[str, int], None] = OrderedDict()
        self._cache: tuple[tuple[object, ...], dict[str, WarmTarget]] | None = None
        self._next: tuple[object, float, float, float | None] | None = None
        self._idle: tuple[object, dict[str, int]] | None = None

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

    def observe_wait(self, pool: str, wait: float) -> None:
        """A job of the pool was taken by a runner ``wait`` seconds after it was queued."""
        p = self._pools.get(pool)
        # Only while the policy is in charge: not while it is still learning.
        if p is not None and p.config.warm is not None and p.calibration is not None and p.calibration.jobs:
            w = p.config.warm
            p.gain = feedback(p.gain, w.quantile, wait > w.target_wait)

    def budget(self, pool: str) -> float:
        """Share of jobs the pool's calibration may leave over its target."""
        p = self._pools[pool]
        assert p.config.warm is not None
        raw = budget(p.config.warm.quantile, p.gain)
        return round(raw, 3)  # steps, so calibration is redone when it moves, not at every job

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
        share = self.budget(name)
        key = (len(p.model.batches), first, start, share)
        if p.calibration is None or p.calibrated_for != key:
            p.calibration = calibrate(p.model, start, p.config.warm.target_wait, share, now)
            p.calibrated_for = key
        return p.calibration

    def targets(self, now: float) -> dict[str, WarmTarget]:
        """Per warm pool: the idle runners to hold at ``now``, and why."""
        if not self._pools:
            return {}
        at = {name: self._at(p, now) for name, p in self._pools.items()}
        key = tuple((at[n], p.model.version, self.start_time(n), self.budget(n)) for n, p in self._pools.items())
        if self._cache is not None and self._cache[0] == key:
            return self._cache[1]
        out = {}
        for name, p in self._pools.items():
            assert p.config.warm is not None
            out[name] = target(p.model, self._calibration(name, p, at[name]), quantile=p.config.warm.quantile,
                               **self._inputs(name, p, at[name]))
        self._cache = (key, out)
        return out

    def target_idle(self, now: float) -> dict[str, int]:
        """The numbers of :meth:`targets` alone (cheaper: no reasons, cached)."""
        key = tuple((self._at(p, now), self._state(n, p)) for n, p in self._pools.items())
        if self._idle is not None and self._idle[0] == key:
            return self._idle[1]
        out = {}
        for (name, p), (at, _) in zip(self._pools.items(), key, strict=True):
            out[name] = idle_count(p.model, self._calibration(name, p, at), **self._inputs(name, p, at))
        self._idle = (key, out)
        return out

    def _inputs(self, name: str, p: _Pool, at: float) -> dict[str, Any]:
        w = p.config.warm
        assert w is not None
        return {
            "now": at,
            "start": self.start_time(name),
            "target_wait": w.target_wait,
            "min_idle": p.config.min_idle,
            "max_idle": w.max_idle,
            "pool_max": p.config.max,
        }

    def _state(self, name: str, p: _Pool) -> tuple[int, float, float]:
        return (p.model.version, self.start_time(name), self.budget(name))

    def next_change(self, now: float, until: float) -> float:
        """The first grid time in ``(now, until]`` at which a target differs from
        now's, else ``until`` (arrivals change targets too; callers know those)."""
        if not self._pools:
            return math.inf
        state = tuple(self._state(n, p) for n, p in self._pools.items())
        current = self.target_idle(now)
        t = math.floor(now / STEP) * STEP + STEP
        if self._next is not None:
            key, asked, scanned, change = self._next
            # Known: no change in (asked, scanned], then one at ``change`` (if
            # any), while nothing was learned and the current target is the same.
            if key == (state, current) and asked <= now:
                if change is not None and now < change:
                    return min(change, until)
                if change is None and now < scanned:
                    t = max(t, scanned + STEP)
                    if until <= scanned:
                        return until
        while t <= until and self.target_idle(t) == current:
            t += STEP
        change = t if t <= until else None
        self._next = ((state, current), now, min(t, until), change)
        return change if change is not None else until
