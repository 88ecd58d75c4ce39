"""2. Scaler-added latency: delivery accepted (the 202 leaves the app) → ``provider.create`` called.

A burst of 1,000 queued deliveries over 20 pools from the load generator (32
connections) against the real app in its own process (``--record``: both
stamps are taken in the server on one ``perf_counter`` clock). Fresh server
per run; the in-memory provider answers at once.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import httpx

from benchmarks.common import median, summary
from benchmarks.ingest import loadgen, server

TARGET_P99_MS = 20.0
ANCHORS = {"GARM (30 s job-age back-off + 5 s loop)": 35_000.0, "AWS Terraform module (30 s webhook delay)": 30_000.0}


def one_run(jobs: int, pools: int, base: int) -> dict[str, Any]:
    per_pool = jobs // pools + 10
    args = [
        "--mode",
        "scaler",
        "--record",
        "--pools",
        str(pools),
        "--pool-max",
        str(per_pool),
        "--max-instances",
        str(jobs + 100),
    ]
    with server(*args) as port:
        sent = loadgen(
            port, "--mode", "burst", "--jobs", str(jobs), "--pools", str(pools), "--conns", "32", "--base", str(base)
        )
        deadline = time.monotonic() + 20
        while True:
            report = httpx.get(f"http://127.0.0.1:{port}/bench/report", timeout=10).json()
            if len(report["creates"]) >= jobs or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    accepted = dict((int(j), t) for j, t in report["accepted"])
    creates: dict[int, float] = {}
    for job, at in report["creates"]:
        creates.setdefault(int(job), at)
    lat = [(creates[j] - a) * 1000 for j, a in accepted.items() if j in creates]
    return {
        "accepted": len(accepted),
        "created": len(creates),
        "create_calls": len(report["creates"]),
        "burst_seconds": sent["elapsed"],
        "latency_ms": summary(lat),
    }


def run(runs: int = 5, jobs: int = 1000, pools: int = 20) -> dict[str, Any]:
    results = [one_run(jobs, pools, 10_000_000 * (r + 1)) for r in range(runs)]
    return {
        "runs": results,
        "p50_ms": median([r["latency_ms"]["p50"] for r in results]),
        "p99_ms": median([r["latency_ms"]["p99"] for r in results]),
        "max_ms": max(r["latency_ms"]["max"] for r in results),
        "p99_runs": [round(r["latency_ms"]["p99"], 2) for r in results],
        "all_created": all(r["created"] == jobs and r["create_calls"] == jobs for r in results),
        "anchors_ms": ANCHORS,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--jobs", type=int, default=1000)
    args = ap.parse_args()
    print(json.dumps(run(args.runs, args.jobs)))


if __name__ == "__main__":
    main()
