"""3. Lifecycle rate: create → job → delete per minute, with the real loops and clock.

In-process (its own subprocess): the real ``Scaler`` (``start()``: rebuild,
reconciler, collector, resync and watch loops on the system clock), the fake
forge, and the in-memory provider. A simulated runner answers each create: a
moment after the create returns, the forge delivers ``in_progress`` then
``completed`` (signed, verified and parsed like a webhook) and the instance
exits. Every delete queues a new job, so ``--outstanding`` jobs are always in
flight. Counted: provider deletes per minute over the measuring window, after a
warm-up.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from typing import Any

from benchmarks.common import SECRET, job_labels, make_config, summary
from scaler import logging as slog
from scaler.app import Scaler
from scaler.events import JobReported
from scaler.provider import LABEL_JOB_ID, LaunchSpec, ProviderSettings
from scaler.testing import FakeForge, FakeForgeState, MemoryProvider

TARGET_PER_MIN = 3000.0


async def one(
    create_latency: float,
    delete_latency: float,
    concurrency: int,
    outstanding: int,
    warmup: float,
    window: float,
    pools: int = 4,
) -> dict[str, Any]:
    config = make_config(
        pools=pools,
        pool_max=outstanding,
        max_instances=outstanding * 2,
        concurrency=concurrency,
        mint_concurrency=concurrency,
        create_latency=create_latency,
        delete_latency=delete_latency,
        reconcile_interval="1s",
        collect_interval="1s",
        resync_interval="30s",
    )
    state = FakeForgeState(secret=SECRET, auto_online=True)
    forge = FakeForge(config.forges[0], state)
    p = config.providers[0]
    provider = MemoryProvider(ProviderSettings(p.name, p.type, config.controller_id, dict(p.options)))
    scaler = Scaler(config, forges={"fake": forge}, providers={"mem": provider})
    loop = asyncio.get_running_loop()
    seq = iter(range(10**9))
    deletes: list[float] = []
    waits: list[float] = []
    queued_at: dict[int, float] = {}

    def deliver(headers: dict[str, str], body: bytes) -> None:
        forge.verify(headers, body)
        delivery = forge.parse(headers, body)
        assert delivery.job is not None
        if not scaler.inbox.offer(JobReported(delivery.job, scaler.clock.now(), delivery.delivery_id)):
            raise RuntimeError("inbox full")

    def queue() -> None:
        job_id, headers, body = state.queue_job("acme/app", job_labels(next(seq) % pools))
        queued_at[job_id] = time.perf_counter()
        deliver(headers, body)

    def run_job(spec: LaunchSpec) -> None:
        job_id = int(spec.labels[LABEL_JOB_ID])
        waits.append(time.perf_counter() - queued_at.pop(job_id, time.perf_counter()))
        deliver(*state.start_job(job_id, spec.name))
        deliver(*state.complete_job(job_id))
        state.jobs.pop(job_id, None)  # the forge forgets finished jobs (keeps its listing small)
        provider.finish(spec.name)

    def started(spec: LaunchSpec) -> None:
        loop.call_soon(run_job, spec)

    provider.on_create.append(started)

    def deleted(name: str) -> None:
        deletes.append(time.perf_counter())
        queue()

    provider.on_delete.append(deleted)
    await scaler.start()
    for _ in range(outstanding):
        queue()
    t0 = time.perf_counter()
    await asyncio.sleep(warmup + window)
    start, end = t0 + warmup, t0 + warmup + window
    n = sum(1 for d in deletes if start <= d < end)
    creates = provider.create_calls()
    provider.on_delete.clear()
    try:
        await asyncio.wait_for(scaler.stop(), 2)
    except TimeoutError:
        print("warning: Scaler.stop() did not finish within 2 s", file=sys.stderr)
    return {
        "per_min": n / window * 60,
        "lifecycles_in_window": n,
        "create_calls": len(creates),
        "duplicate_creates": len(creates) - len(set(creates)),
        "queued_to_create_ms": {k: (v * 1000 if k != "n" else v) for k, v in summary(waits).items()},
        "store_jobs_at_end": len(scaler.store.jobs),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--create-latency", type=float, default=0.0)
    ap.add_argument("--delete-latency", type=float, default=0.0)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--outstanding", type=int, default=100)
    ap.add_argument("--warmup", type=float, default=2.0)
    ap.add_argument("--window", type=float, default=8.0)
    args = ap.parse_args()
    slog.configure("info", "json", stream=open(os.devnull, "w"))  # noqa: SIM115
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    result = asyncio.run(
        one(args.create_latency, args.delete_latency, args.concurrency, args.outstanding, args.warmup, args.window)
    )
    result["config"] = vars(args)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
