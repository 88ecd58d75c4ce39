"""4. Reconcile cost and memory: one pass over N queued jobs, N/2 instances, 200 pools.

Each size runs in a fresh subprocess (``--jobs N``) so its peak RSS (VmHWM)
is its own. The store is filled through its normal paths (``JobReported``
events; instances as the reconciler would record them) and every pool is at
its ``max``, so a pass plans but creates nothing — a steady state. Timed, on
the same state: the whole reconciler pass as the timer runs it
(``Scaler.step_reconcile(full=True)``: drain, expire, snapshot, plan, apply,
dispatch), the planner alone, the pass a webhook for one more queued job
wakes between full passes (placed on the last plan), and one collector pass.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import sys
import time
from typing import Any

from benchmarks.common import SECRET, job_labels, make_config, median, pct, run_json

TARGET_MS = 20.0
TARGET_RSS_MB = 150.0
POOLS = 200


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


async def measure(jobs: int, instances: int, passes: int) -> dict[str, Any]:
    from scaler import logging as slog
    from scaler.app import Scaler
    from scaler.domain.instance import Instance, InstanceState
    from scaler.domain.job import Job, JobState
    from scaler.events import JobReported
    from scaler.planner import plan
    from scaler.provider import ProviderSettings
    from scaler.testing import FakeForge, FakeForgeState, MemoryProvider

    slog.configure("info", "json", stream=open(os.devnull, "w"))  # noqa: SIM115, ASYNC230
    rss_imported = _status_kb("VmRSS") / 1024
    per_pool = max(1, instances // POOLS)
    config = make_config(pools=POOLS, pool_max=per_pool, max_instances=instances * 2)
    forge = FakeForge(config.forges[0], FakeForgeState(secret=SECRET))
    p = config.providers[0]
    provider = MemoryProvider(ProviderSettings(p.name, p.type, config.controller_id, dict(p.options)))
    scaler = Scaler(config, forges={"fake": forge}, providers={"mem": provider})
    store = scaler.store
    store.providers["mem"].synced = True
    now = time.time()
    for i in range(jobs):
        job = Job("fake", 10_000_000 + i, f"acme/repo-{i % 50}", tuple(job_labels(i % POOLS)), JobState.QUEUED)
        store.apply(JobReported(job, now, None), now)
    states = (InstanceState.BUSY, InstanceState.BUSY, InstanceState.IDLE, InstanceState.IDLE, InstanceState.STARTING)
    for i in range(per_pool * POOLS):
        pool = f"p{i % POOLS}"
        st = states[i % len(states)]
        store.instances[f"rs-{pool}-i{i:06x}"] = Instance(
            name=f"rs-{pool}-i{i:06x}",
            pool=pool,
            provider="mem",
            state=st,
            created_at=now,
            updated_at=now,
            runner_id=1_000_000 + i,
            job_id=(10_000_000 + i) if st is InstanceState.STARTING else None,
            provisioned=True,
            idle_since=now if st is InstanceState.IDLE else None,
        )
    step, planner, collector, incremental = [], [], [], []
    for n in range(passes):
        t0 = time.perf_counter()
        await scaler.step_reconcile(full=True)  # the timer's pass: every job re-planned
        step.append((time.perf_counter() - t0) * 1000)
        # what a webhook for one more queued job costs between full passes
        job = Job("fake", 20_000_000 + n, "acme/repo-0", tuple(job_labels(n % POOLS)), JobState.QUEUED)
        scaler.inbox.offer(JobReported(job, time.time(), None))
        t0 = time.perf_counter()
        await scaler.step_reconcile()
        incremental.append((time.perf_counter() - t0) * 1000)
        snap = store.snapshot(time.time())
        t0 = time.perf_counter()
        result = plan(snap, scaler.reconciler.index)
        planner.append((time.perf_counter() - t0) * 1000)
        t0 = time.perf_counter()
        await scaler.collector.run_once()
        collector.append((time.perf_counter() - t0) * 1000)
    return {
        "jobs": jobs,
        "instances": len(store.instances),
        "pools": POOLS,
        "creates_planned": len(result.creates),
        "pass_ms": {"p50": median(step), "p90": pct(step, 90), "max": max(step)},
        "plan_ms": {"p50": median(planner), "p90": pct(planner, 90), "max": max(planner)},
        "incremental_ms": {"p50": median(incremental), "p90": pct(incremental, 90), "max": max(incremental)},
        "collector_ms": {"p50": median(collector), "p90": pct(collector, 90), "max": max(collector)},
        "rss_after_imports_mb": rss_imported,
        "peak_rss_mb": _status_kb("VmHWM") / 1024,
        "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def run(sizes: tuple[int, ...] = (1000, 10_000, 50_000), passes: int = 15) -> dict[str, Any]:
    out = {}
    for n in sizes:
        out[str(n)] = run_json([sys.executable, "-m", "benchmarks.reconcile", "--one", str(n), "--passes", str(passes)])
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--one", type=int, help="measure one size in this process")
    ap.add_argument("--passes", type=int, default=15)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(asyncio.run(measure(args.one, args.one // 2, args.passes))))
    else:
        print(json.dumps(run(passes=args.passes)))


if __name__ == "__main__":
    main()
