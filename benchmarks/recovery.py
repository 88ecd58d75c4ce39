"""5. Recovery: restart with 500 queued jobs and 300 live instances.

First life: a Scaler with a global cap of 300 instances gets 500 queued jobs
and creates 300 instances (the other 200 wait at the cap). It is stopped and
a new Scaler — new store, new provider and forge objects over the same
provider backend and forge state, the cap raised to 1,000 — starts. Timed from
``start()``: until the store is rebuilt (``ready``) and until the first new
``create`` is called. Then, once settled: duplicate creates (a name created
twice, or a second instance for one job) and leaked instances (on the provider
but unknown to the store, or runners registered with no instance) — both must
be 0.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from typing import Any

from benchmarks.common import SECRET, config_data, job_labels, median, pct
from scaler import logging as slog
from scaler.app import Scaler
from scaler.config import parse_config
from scaler.provider import LABEL_JOB_ID, ProviderSettings
from scaler.testing import FakeForge, FakeForgeState, MemoryProvider
from scaler.testing.memory import MemoryInstance

QUEUED, LIVE, POOLS = 500, 300, 20


def _scaler(cap: int, state: FakeForgeState, backend: dict[str, MemoryInstance]) -> tuple[Scaler, MemoryProvider]:
    config = parse_config(
        config_data(
            pools=POOLS,
            pool_max=QUEUED,
            max_instances=cap,
            concurrency=32,
            mint_concurrency=32,
            reconcile_interval="1s",
            collect_interval="1s",
        )
    )
    p = config.providers[0]
    provider = MemoryProvider(ProviderSettings(p.name, p.type, config.controller_id, dict(p.options)), shared=backend)
    forge = FakeForge(config.forges[0], state)
    return Scaler(config, forges={"fake": forge}, providers={"mem": provider}), provider


async def one() -> dict[str, Any]:
    state = FakeForgeState(secret=SECRET, auto_online=True)
    backend: dict[str, MemoryInstance] = {}
    first, _ = _scaler(LIVE, state, backend)
    for i in range(QUEUED):
        state.queue_job("acme/app", job_labels(i % POOLS))  # the forge lists them; no webhook needed
    await first.rebuild()
    await first.settle()
    await asyncio.wait_for(first.stop(), 10)
    before = set(backend)
    assert len(before) == LIVE, len(before)

    second, provider = _scaler(1000, state, backend)
    t0 = time.perf_counter()
    start = asyncio.create_task(second.start())
    first_create = None
    while first_create is None or not second.ready:
        await asyncio.sleep(0.0005)
        calls = [c for c in provider.calls if c.op == "create"]
        if calls and first_create is None:
            first_create = calls[0].at
        if time.perf_counter() - t0 > 20:
            raise RuntimeError("no create within 20 s")
    rebuilt = time.perf_counter()
    await start
    for _ in range(200):
        await asyncio.sleep(0.02)
        if len(backend) >= QUEUED and not len(second.reconciler.launches):
            break
    created = provider.create_calls()
    jobs_of = [inst.spec.labels.get(LABEL_JOB_ID) for inst in backend.values()]
    leaked = [n for n in backend if n not in second.store.instances]
    runner_names = {r.name for r in state.runners.values()}
    stray_runners = sorted(runner_names - set(backend))
    result = {
        "rebuilt_ms": (rebuilt - t0) * 1000,
        "first_create_ms": (first_create - t0) * 1000,
        "instances_after": len(backend),
        "new_creates": len(created),
        "duplicates": (len(created) - len(set(created)))
        + len(before & set(created))
        + (len(jobs_of) - len(set(jobs_of))),
        "leaked": len(leaked) + len(stray_runners),
    }
    try:
        await asyncio.wait_for(second.stop(), 10)
    except TimeoutError:
        result["stop_timed_out"] = True
    return result


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    slog.configure("info", "json", stream=open(os.devnull, "w"))  # noqa: SIM115
    runs = [asyncio.run(one()) for _ in range(args.runs)]
    print(
        json.dumps(
            {
                "runs": runs,
                "rebuilt_ms_p50": median([r["rebuilt_ms"] for r in runs]),
                "rebuilt_ms_max": max(r["rebuilt_ms"] for r in runs),
                "first_create_ms_p50": median([r["first_create_ms"] for r in runs]),
                "first_create_ms_max": pct([r["first_create_ms"] for r in runs], 100),
                "duplicates": sum(r["duplicates"] for r in runs),
                "leaked": sum(r["leaked"] for r in runs),
            }
        )
    )


if __name__ == "__main__":
    main()
