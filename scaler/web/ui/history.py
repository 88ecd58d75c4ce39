"""The last hour of queue depth and job wait per pool, for the overview's charts.

A sample every ``ui.sample_interval`` (a guarded loop with a heartbeat, so a
dead sampler fails ``/healthz`` like any loop); kept in a ring per pool, so
memory is bounded by pools x (an hour / the interval).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

from scaler.app import Scaler

WINDOW = 3600.0


@dataclass(frozen=True, slots=True)
class Sample:
    at: float
    queued: int  # the pool's `queued` (as /api/v1/pools says it)
    oldest: float  # how long the longest-waiting job for this pool has waited
    started: float | None  # the longest wait of a job that started since the last sample


class History:
    def __init__(self, every: float, window: float = WINDOW) -> None:
        self.every = every
        self.window = window
        self._size = math.ceil(window / every) + 1
        self._pools: dict[str, deque[Sample]] = {}

    def add(self, pool: str, sample: Sample) -> None:
        ring = self._pools.get(pool)
        if ring is None:
            ring = self._pools[pool] = deque(maxlen=self._size)
        ring.append(sample)

    def series(self, pool: str, now: float) -> list[Sample]:
        return [s for s in self._pools.get(pool, ()) if s.at >= now - self.window]


def oldest_waiting(scaler: Scaler, now: float) -> dict[str, float]:
    """Per pool, the age of its longest-waiting queued job: the pool the last
    plan gave it to, else the first pool that may serve it (held back)."""
    decisions = scaler.journal.decisions if scaler.journal is not None else {}
    oldest: dict[str, float] = {}
    for job in scaler.store.queued_jobs():
        pool = decisions.get(job.key)
        if pool is None:
            candidates = scaler.reconciler.index.candidates(job)
            pool = candidates[0].name if candidates else None
        if pool is not None and job.queued_at is not None:
            oldest[pool] = max(oldest.get(pool, 0.0), now - job.queued_at)
    return oldest


def take_sample(scaler: Scaler, history: History) -> None:
    now = scaler.clock.now()
    stats = scaler.pool_stats()
    oldest = oldest_waiting(scaler, now)
    started = scaler.journal.take_waits() if scaler.journal is not None else {}
    for name, pool in stats.items():
        queued = pool.get("queued")
        history.add(
            name, Sample(now, int(queued) if isinstance(queued, int) else 0, oldest.get(name, 0.0), started.get(name))
        )
