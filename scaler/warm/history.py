"""Warm pools' soft state, rebuilt at start-up from the forges' job history.

The same reader as ``runner-scaler trace export`` (:mod:`scaler.trace.export`):
each forge with a warm pool is asked for its finished jobs of the last
``warm.history`` (the longest of its pools), and every job is counted as an
arrival, as if the scaler had seen it. A forge that cannot list its history
(Gitea < 1.25, a scope that needs repositories named, the in-process fake)
is logged once; its pools learn online from then on. Reading stops short of
the forge's rate limit (:data:`HISTORY_RESERVE`) and waits for its reset.
"""

from __future__ import annotations

import structlog

from scaler.domain.job import Job, JobState
from scaler.errors import ScalerError
from scaler.forges.base import ForgeAdapter
from scaler.trace.export import History, dedupe
from scaler.warm import WarmPools

log = structlog.get_logger("scaler.warm")
HISTORY_RESERVE = 500  # requests left below which learning waits for the rate-limit window


async def rebuild(warm: WarmPools, forges: dict[str, ForgeAdapter], now: float) -> int:
    """Feed the job history of every forge with a warm pool; returns jobs learned."""
    spans: dict[str, float] = {}
    for pool in warm.pools.values():
        if pool.warm is not None and pool.warm.history > 0:
            spans[pool.forge] = max(spans.get(pool.forge, 0.0), pool.warm.history)
    learned = 0
    for name, span in spans.items():
        adapter = forges.get(name)
        if adapter is None:
            continue
        try:
            # Learning must not starve the scaler's own polls and mints: keep
            # well above the adapter's own reserve (GitHub: rate_limit_reserve).
            reserve = max(HISTORY_RESERVE, 2 * int(getattr(adapter, "reserve", 0)))
            rows = dedupe(await History(adapter, reserve=reserve).jobs(now - span, now))
        except (ScalerError, ValueError) as exc:
            log.warning("warm pools: no job history to learn from; learning online", forge=name, reason=str(exc))
            continue
        jobs = [Job(name, r.job_id, r.repository, r.labels, JobState.COMPLETED, queued_at=r.queued_at) for r in rows]
        n = warm.observe_jobs(jobs)
        learned += n
        log.info("warm pools: learned from job history", forge=name, jobs=n, days=round(span / 86400, 1))
    return learned
