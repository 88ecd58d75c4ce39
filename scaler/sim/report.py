"""What a replay measured, per pool and overall: as a dict (the JSON) and a table.

Within the report window (the replay after ``--warmup``):

* ``jobs``: jobs that arrived in it and some pool could serve;
* ``wait_*_s``: scaler-caused wait, arrival → a runner takes the job
  (nearest-rank quantiles; a job never taken counts with its wait so far,
  and is also counted in ``unserved``); ``jobs_over_target``: waits above
  the target;
* ``instances_created``, ``peak_instances``;
* instance-minutes inside the window: ``busy`` (running a job), ``idle``
  (runner online without a job, or its job over and not yet deleted) and
  ``boot`` (created, runner not online yet).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from scaler.sim.engine import Replay
from scaler.sim.world import SimInstance, SimJob


def quantile(values: Sequence[float], q: float) -> float:
    """Nearest-rank quantile of sorted ``values`` (0 for none)."""
    if not values:
        return 0.0
    return values[max(0, math.ceil(q * len(values)) - 1)]


def _overlap(a: float, b: float, lo: float, hi: float) -> float:
    return max(0.0, min(b, hi) - max(a, lo))


def _minutes(inst: SimInstance, lo: float, hi: float, stop: float) -> tuple[float, float, float]:
    """(busy, idle, boot) seconds of one instance inside [lo, hi)."""
    end = inst.deleted_at if inst.deleted_at is not None else stop
    online = inst.online_at if inst.online_at is not None and inst.online_at < end else end
    boot = _overlap(inst.created_at, online, lo, hi)
    busy = 0.0
    job = inst.ran
    if job is not None and job.taken_at is not None:
        busy = _overlap(job.taken_at, job.done_at if job.done_at is not None else end, lo, hi)
    alive = _overlap(inst.created_at, end, lo, hi)
    return busy, max(0.0, alive - boot - busy), boot


def _peak(instances: Iterable[SimInstance], lo: float, hi: float, stop: float) -> int:
    edges: list[tuple[float, int]] = []
    for i in instances:
        end = i.deleted_at if i.deleted_at is not None else stop
        a, b = max(i.created_at, lo), min(end, hi)
        if a < b or (a == b and lo <= i.created_at < hi):
            edges += [(a, 1), (b, -1)]
    peak = live = 0
    for _, d in sorted(edges, key=lambda e: (e[0], e[1])):
        live += d
        peak = max(peak, live)
    return peak


def _stats(
    jobs: Sequence[SimJob], instances: Sequence[SimInstance], replay: Replay, target: float
) -> dict[str, float | int]:
    lo, hi = replay.window
    stop = replay.stopped_at
    waits = sorted((j.taken_at if j.taken_at is not None else stop) - j.arrival for j in jobs)
    busy = idle = boot = 0.0
    for inst in instances:
        b, i, s = _minutes(inst, lo, hi, stop)
        busy, idle, boot = busy + b, idle + i, boot + s
    return {
        "jobs": len(jobs),
        "wait_p50_s": round(quantile(waits, 0.50), 3),
        "wait_p95_s": round(quantile(waits, 0.95), 3),
        "wait_p99_s": round(quantile(waits, 0.99), 3),
        "wait_max_s": round(waits[-1], 3) if waits else 0.0,
        "jobs_over_target": sum(1 for w in waits if w > target),
        "unserved": sum(1 for j in jobs if j.taken_at is None),
        "instances_created": sum(1 for i in instances if lo <= i.created_at < hi),
        "peak_instances": _peak(instances, lo, hi, stop),
        "busy_instance_minutes": round(busy / 60, 1),
        "idle_instance_minutes": round(idle / 60, 1),
        "boot_instance_minutes": round(boot / 60, 1),
    }


def build(replay: Replay, *, target_wait: float = 30.0, meta: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The report as plain data (what ``--json`` writes)."""
    lo, hi = replay.window
    world = replay.world
    in_window = [j for j in world.jobs if lo <= j.arrival < hi]
    served = [j for j in in_window if world.servable(j)]
    by_pool: dict[str, list[SimJob]] = defaultdict(list)
    for j in served:
        pool = j.pool or next(p.name for p in replay.config.pools if world.matches(p, j))
        by_pool[pool].append(j)
    inst_by_pool: dict[str, list[SimInstance]] = defaultdict(list)
    for inst in world.history:
        inst_by_pool[inst.pool].append(inst)
    pools = {
        p.name: _stats(by_pool.get(p.name, []), inst_by_pool.get(p.name, []), replay, target_wait)
        for p in replay.config.pools
    }
    return {
        "overall": _stats(served, world.history, replay, target_wait),
        "pools": pools,
        "replay": {
            "from": lo,
            "to": hi,
            "days": round((hi - lo) / 86400, 3),
            "target_wait_s": target_wait,
            "provider_start": replay.options.latency.describe(),
            "warmup_s": replay.options.warmup,
            "unmatched_jobs": len(in_window) - len(served),
            "replay_seconds": round(replay.seconds, 3),
            "passes": replay.passes,
            "resyncs": replay.resyncs,
            **(meta or {}),
        },
    }


_HEAD = ("JOBS", "P50", "P95", "P99", "MAX", "OVER", "CREATED", "PEAK", "BUSY-MIN", "IDLE-MIN")
_COLS = (
    "jobs",
    "wait_p50_s",
    "wait_p95_s",
    "wait_p99_s",
    "wait_max_s",
    "jobs_over_target",
    "instances_created",
    "peak_instances",
    "busy_instance_minutes",
    "idle_instance_minutes",
)


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.0f}" if value >= 100 or value.is_integer() else f"{value:.1f}"
    return str(value)


def table(reports: Mapping[str, Mapping[str, Any]]) -> str:
    """One row per (config, pool) and the overall row of each config; waits in seconds."""
    rows = [("CONFIG", "POOL", *_HEAD)]
    for label, rep in reports.items():
        for name, stats in [*rep["pools"].items(), ("(all)", rep["overall"])]:
            rows.append((label, name, *(_cell(stats[k]) for k in _COLS)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.rjust(w) if i > 1 else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
             for r in rows]
    first = next(iter(reports.values()))["replay"]
    note = (
        f"waits in seconds (arrival -> runner takes the job); OVER = jobs waiting more than "
        f"{first['target_wait_s']:g}s; instance-minutes over {first['days']:g} days; "
        f"provider start {first['provider_start']}"
    )
    return "\n".join([*(line.rstrip() for line in lines), note])
