"""Read models for the overview and instances pages: plain values built from
the scaler's read models (``pool_stats()``, ``forge_stats()``, the store, the
journal). Keys another lane may not have added yet (``assigned``,
``held_back``, ``warm``, ``forge_stats``) are shown when present."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from scaler.app import Scaler
from scaler.domain.instance import InstanceState
from scaler.durations import format_duration
from scaler.journal import seconds
from scaler.web.ui.charts import Chart, chart
from scaler.web.ui.fmt import age, masked
from scaler.web.ui.history import History, PoolQueue, queue_by_pool
from scaler.web.ui.probes import Probes

S = InstanceState
# The order states are shown in: what needs a look first.
STATE_ORDER = [S.FAILED, S.PENDING, S.CREATING, S.STARTING, S.IDLE, S.BUSY, S.DONE, S.DELETING]
_RANK = {s.value: i for i, s in enumerate(STATE_ORDER)}


@dataclass(frozen=True, slots=True)
class Segment:
    state: str
    count: int
    x: float
    width: float


def state_bar(counts: dict[str, int], scale: int, width: float = 160.0) -> list[Segment]:
    """A stacked bar of instances by state, ``scale`` instances wide."""
    out, x = [], 0.0
    for state in STATE_ORDER:
        n = counts.get(state.value, 0)
        if n:
            w = width * n / max(scale, 1)
            out.append(Segment(state.value, n, round(x, 1), round(max(w, 1.5), 1)))
            x += w
    return out


def forge_rows(scaler: Scaler) -> list[dict[str, Any]]:
    """``forge_stats()`` when the scaler has it; else the same from the store.
    ``unserved`` adds the deliveries no pool serves, which only the journal keeps."""
    stats = getattr(scaler, "forge_stats", None)
    rows: list[dict[str, Any]] = list(stats().get("forges", [])) if callable(stats) else []
    known = {r.get("name") for r in rows}
    for name, forge in scaler.forges.items():
        if name not in known:
            rows.append({"name": name, "type": forge.kind, "lists_jobs": scaler.store.forge_lists_jobs.get(name)})
    index = scaler.reconciler.index
    queued_unservable = Counter(j.forge for j in scaler.store.queued_jobs() if not index.candidates(j))
    webhook_only = Counter(
        s.forge
        for s in (scaler.journal.stories() if scaler.journal else ())
        if s.state == "unserved" and s.key not in scaler.store.jobs
    )
    for row in rows:
        name = row.get("name", "")
        base = row["unservable"] if isinstance(row.get("unservable"), int) else queued_unservable.get(name, 0)
        row["unserved"] = base + webhook_only.get(name, 0)
    return rows


def provider_rows(scaler: Scaler, now: float) -> list[dict[str, Any]]:
    live = Counter(i.provider for i in scaler.store.instances.values())
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
                "live": live.get(pc.name, 0),
                "max": pc.max_instances,
            }
        )
    return rows


def _pool_row(stats: dict[str, Any], history: History, q: PoolQueue | None, now: float) -> dict[str, Any]:
    """One pool: ``pool_stats()``'s keys where it has them, the journal's
    decisions where it does not (yet)."""
    name = stats["name"]
    q = q or PoolQueue()
    inst = {k: int(v) for k, v in (stats.get("instances") or {}).items() if isinstance(v, int)}
    live = sum(inst.values())
    series = history.series(name, now)
    start = history.start(now)
    queue: Chart = chart([(s.at, s.queued) for s in series], start, now, step=True)
    wait: Chart = chart(
        [(s.at, s.oldest) for s in series],
        start,
        now,
        dots=[(s.at, s.started) for s in series if s.started is not None],
    )
    warm = stats.get("warm")
    return {
        "name": name,
        "forge": stats.get("forge"),
        "provider": stats.get("provider"),
        "queued": stats.get("queued", 0),
        "assigned": stats.get("assigned", q.assigned),
        "held_back": stats.get("held_back", q.held),
        "in_progress": stats.get("in_progress", 0),
        "states": [(s.value, inst[s.value]) for s in STATE_ORDER if inst.get(s.value)],
        "bar": state_bar(inst, max(int(stats.get("max") or 0), live)),
        "live": live,
        "max": stats.get("max"),
        "min_idle": stats.get("min_idle"),
        "warm": warm if isinstance(warm, dict) else None,
        "queue_chart": queue,
        "wait_chart": wait,
        "waiting_for": seconds(q.oldest) if q.assigned or q.held else "",
        "span": format_duration(round(now - start)),
    }


def overview(scaler: Scaler, history: History, probes: Probes) -> dict[str, Any]:
    now = scaler.clock.now()
    queues = queue_by_pool(scaler, now)
    pools = [_pool_row(p, history, queues.get(p["name"]), now) for p in scaler.pool_stats().values()]
    oldest = max((q.oldest for q in queues.values() if q.assigned or q.held), default=None)
    forges = forge_rows(scaler)
    findings = [(f.level, f.subject, masked(f.message)) for f in probes.findings]
    states = Counter(str(i.state) for i in scaler.store.instances.values())
    elector = scaler.elector
    return {
        "now": now,
        "pools": pools,
        "forges": forges,
        "providers": provider_rows(scaler, now),
        "findings": findings,
        "checked": age(probes.at, now) if probes.at is not None else None,
        "checking": probes.running,
        "check_interval": probes.interval,
        "totals": {
            "queued": len(scaler.store.queued_seen),
            "unserved": sum(int(f.get("unserved") or 0) for f in forges),
            "running": len(scaler.store.in_progress),
            "instances": len(scaler.store.instances),
            "failed": states.get(S.FAILED.value, 0),
            "waiting_for": seconds(oldest) if oldest is not None else "",
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


def instances(scaler: Scaler, pool: str | None, state: str | None, limit: int) -> dict[str, Any]:
    now = scaler.clock.now()
    everything = list(scaler.store.instances.values())
    chosen = [i for i in everything if (not pool or i.pool == pool) and (not state or str(i.state) == state)]
    chosen.sort(key=lambda i: (_RANK.get(str(i.state), 99), i.created_at))
    forge_of = {p.name: p.forge for p in scaler.config.pools}
    rows = [
        {
            "name": i.name,
            "state": str(i.state),
            "age": age(i.created_at, now),
            "since": age(i.updated_at, now),
            "pool": i.pool,
            "provider": i.provider,
            "job": (forge_of.get(i.pool, ""), i.job_id) if i.job_id is not None else None,
            "runner_id": i.runner_id,
            "attempts": i.attempts,
            "last_error": masked(i.last_error),
            "retire_reason": masked(i.retire_reason),
            "retry_in": seconds(i.not_before - now) if i.state is S.PENDING and i.not_before > now else "",
        }
        for i in chosen[:limit]
    ]
    by_state = Counter(str(i.state) for i in everything if not pool or i.pool == pool)
    return {
        "rows": rows,
        "shown": len(rows),
        "matching": len(chosen),
        "total": len(everything),
        "pool": pool or "",
        "state": state or "",
        "pools": [p.name for p in scaler.config.pools],
        "states": [(s.value, by_state.get(s.value, 0)) for s in STATE_ORDER],
    }
