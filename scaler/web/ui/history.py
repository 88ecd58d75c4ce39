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

    def start(self, now: float) -> float:
        """Where the charts' time axis begins: an hour ago, or (younger) when
        sampling began, with at least 30 samples' worth shown."""
        first = min((ring[0].at for ring in self._pools.values() if ring), default=now)
        return max(now - self.window, min(first, now - 30 * self.every))


@dataclass(slots=True)
class PoolQueue:
    """One pool's share of the queued jobs, from the last plan's decisions."""

    assigned: int = 0  # given to this pool
    held: int = 0  # it may serve them, but no pool had room (counted at the first that may)
    oldest: float = 0.0  # how long the longest-waiting of them has waited


def queue_by_pool(scaler: Scaler, now: float) -> dict[str, PoolQueue]:
    decisions = scaler.journal.decisions if scaler.journal is not None else {}
    out: dict[str, PoolQueue] = {}
    for job in scaler.store.queued_jobs():
        pool = decisions.get(job.key)
        held = pool is None
        if pool is None:
            candidates = scaler.reconciler.index.candidates(job)
            if not candidates:
                continue  # unserved: no pool's business
            pool = candidates[0].name
        q = out.get(pool)
        if q is None:
            q = out[pool] = PoolQueue()
        q.held += held
        q.assigned += not held
        if job.queued_at is not None:
            q.oldest = max(q.oldest, now - job.queued_at)
    return out


def take_sample(scaler: Scaler, history: History) -> None:
    now = scaler.clock.now()
    stats = scaler.pool_stats()
    queues = queue_by_pool(scaler, now)
    started = scaler.journal.take_waits() if scaler.journal is not None else {}
    for name, pool in stats.items():
        queued = pool.get("queued")
        oldest = queues[name].oldest if name in queues else 0.0
        history.add(name, Sample(now, int(queued) if isinstance(queued, int) else 0, oldest, started.get(name)))
