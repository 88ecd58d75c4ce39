"""Read models for the overview and instances pages, from the UI's indexes
(caught up by the caller), the store's small tables and the config: each
costs the rows it shows, or one row per pool, never one per job or instance.
``forge_stats()`` and the warm pools' targets (cached by ``scaler.warm``)
are read as they are; ``pool_stats()``, which walks every instance, is not."""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlencode

from scaler.app import Scaler
from scaler.app import _warm as warm_stats  # the same keys as /api/v1/pools
from scaler.config import PoolConfig
from scaler.domain.instance import Instance, InstanceState
from scaler.journal import seconds
from scaler.warm import WarmTarget
from scaler.web.ui.fmt import Pager, age, job_link, masked
from scaler.web.ui.history import EMPTY, History
from scaler.web.ui.index import STATE_VALUES, Indexes, InstanceIndex, JobIndex
from scaler.web.ui.probes import Probes
from scaler.web.ui.slices import sliced

S = InstanceState


@dataclass(frozen=True, slots=True)
class Segment:
    state: str
    count: int
    x: float
    width: float


def state_bar(counts: dict[str, int], scale: int, width: float = 160.0) -> list[Segment]:
    """A stacked bar of instances by state, ``scale`` instances wide."""
    out, x = [], 0.0
    for state in STATE_VALUES:
        n = counts.get(state, 0)
        if n:
            w = width * n / max(scale, 1)
            out.append(Segment(state, n, round(x, 1), round(max(w, 1.5), 1)))
            x += w
    return out


def forge_rows(scaler: Scaler, jobs: JobIndex) -> list[dict[str, Any]]:
    """``forge_stats()`` when the scaler has it; else the same from the store.
    ``unserved``: the waiting jobs no pool serves, from the queue and from
    deliveries (which only the journal keeps), as the jobs page counts them."""
    stats = getattr(scaler, "forge_stats", None)
    rows: list[dict[str, Any]] = list(stats().get("forges", [])) if callable(stats) else []
    known = {r.get("name") for r in rows}
    for name, forge in scaler.forges.items():
        if name not in known:
            rows.append({"name": name, "type": forge.kind, "lists_jobs": scaler.store.forge_lists_jobs.get(name)})
    for row in rows:
        row["unserved"] = jobs.in_bucket("unserved", forge=str(row.get("name", "")))
    return rows


def provider_rows(scaler: Scaler, instances: InstanceIndex, now: float) -> list[dict[str, Any]]:
    rows = []
    for pc in scaler.config.providers:
        health = scaler.store.providers.get(pc.name)
        unhealthy = health is not None and health.unhealthy_until > now
        rows.append(
            {
                "name": pc.name,
                "type": pc.type,
                "synced": bool(health and health.synced),
                "failures": health.failures if health else 0,
                "unhealthy_for": seconds(health.unhealthy_until - now) if health and unhealthy else "",
                "live": instances.of_provider(pc.name),
                "max": pc.max_instances,
            }
        )
    return rows


def _pool_row(
    pool: PoolConfig, indexes: Indexes, history: History, warm: dict[str, WarmTarget], now: float
) -> SimpleNamespace:
    """One pool: demand as ``/api/v1/pools`` counts it (``queued`` = assigned
    + held back at it), instances by state, and the last drawn charts."""
    name, jobs, instances = pool.name, indexes.jobs, indexes.instances
    inst = {s: n for s in STATE_VALUES if (n := instances.count(s, name))}
    live = sum(inst.values())
    assigned, held = jobs.in_bucket("assigned", pool=name), jobs.in_bucket("held", pool=name)
    first = jobs.oldest_queued_at(name)
    drawn = history.drawn.get(name, EMPTY)
    query = urlencode({"pool": name})
    return SimpleNamespace(  # attributes: the template reads ~40 per row
        name=name,
        jobs_link=f"/ui/jobs?{query}",
        instances_link=f"/ui/instances?{query}",
        forge=pool.forge,
        provider=pool.provider,
        queued=assigned + held,
        assigned=assigned,
        held_back=held,
        in_progress=jobs.in_bucket("in_progress", pool=name),
        states=list(inst.items()),
        bar=state_bar(inst, max(pool.max, live)),
        live=live,
        max=pool.max,
        min_idle=pool.min_idle,
        warm=warm_stats(warm.get(name)),
        queue_chart=drawn.queue,
        wait_chart=drawn.wait,
        queue_svg=drawn.queue_svg,
        wait_svg=drawn.wait_svg,
        waiting_for=seconds(max(0.0, now - first)) if first is not None else "",
        span=drawn.span,
    )


async def overview(
    scaler: Scaler, indexes: Indexes, history: History, probes: Probes, page: int, limit: int
) -> dict[str, Any]:
    now = scaler.clock.now()
    pools = scaler.config.pools
    pager = Pager(page, limit, len(pools))
    rows: list[SimpleNamespace] = []
    warm = scaler.reconciler.warm.targets(now)
    shown = pools[pager.offset : pager.offset + limit]
    await sliced(shown, lambda p: rows.append(_pool_row(p, indexes, history, warm, now)))
    forges = forge_rows(scaler, indexes.jobs)
    findings = [(f.level, f.subject, masked(f.message)) for f in probes.findings]
    oldest = indexes.jobs.oldest_queued_at()
    elector = scaler.elector
    return {
        "now": now,
        "pools": rows,
        "pager": pager,
        "forges": forges,
        "providers": provider_rows(scaler, indexes.instances, now),
        "findings": findings,
        "checked": age(probes.at, now) if probes.at is not None else None,
        "checking": probes.running,
        "check_interval": probes.interval,
        "totals": {
            "queued": len(scaler.store.queued_seen),
            "unserved": sum(int(f.get("unserved") or 0) for f in forges),
            "running": len(scaler.store.in_progress),
            "instances": indexes.instances.count(),
            "failed": indexes.instances.count(S.FAILED.value),
            "waiting_for": seconds(max(0.0, now - oldest)) if oldest is not None else "",
        },
        "leader": {
            "leading": scaler.leading,
            "ready": scaler.ready,
            "election": elector is not None,
            "identity": getattr(elector, "identity", None),
            "transitions": getattr(elector, "transitions", None),
        },
        "stale_loops": {k: age(now - v, now) for k, v in scaler.heartbeats.stale().items()},
    }


def _instance_row(i: Instance, forge_of: dict[str, str], state: str | None, now: float) -> SimpleNamespace:
    forge = forge_of.get(i.pool, "")
    return SimpleNamespace(
        name=i.name,
        state=str(i.state),
        age=age(i.created_at, now),
        since=age(i.updated_at, now),
        pool=i.pool,
        pool_link=f"/ui/instances?{urlencode({'pool': i.pool, 'state': state or ''})}",
        provider=i.provider,
        job=f"{forge}#{i.job_id}" if i.job_id is not None else None,
        job_link=job_link(forge, i.job_id) if i.job_id is not None else None,
        runner_id=i.runner_id,
        attempts=i.attempts,
        last_error=masked(i.last_error),
        retire_reason=masked(i.retire_reason),
        retry_in=seconds(i.not_before - now) if i.state is S.PENDING and i.not_before > now else "",
    )


async def instances(
    scaler: Scaler, index: InstanceIndex, pool: str | None, state: str | None, page: int, limit: int
) -> dict[str, Any]:
    """One page of instances, read from the index (caught up by the caller), a slice at a time."""
    now = scaler.clock.now()
    matching = index.count(state, pool)
    pager = Pager(page, limit, matching)
    forge_of = {p.name: p.forge for p in scaler.config.pools}
    rows: list[SimpleNamespace] = []

    def add(name: str) -> None:
        if (i := scaler.store.instances.get(name)) is not None:
            rows.append(_instance_row(i, forge_of, state, now))

    await sliced(index.names(state, pool, pager.offset, limit), add)
    return {
        "rows": rows,
        "shown": len(rows),
        "matching": matching,
        "pager": pager,
        "total": index.count(),
        "pool": pool or "",
        "state": state or "",
        "pools": [p.name for p in scaler.config.pools],
        "states": [(s, index.count(s, pool)) for s in STATE_VALUES],
    }
