"""Run all five benchmarks: ``python -m benchmarks`` (or ``benchmarks/run``).

Prints a table (target, result, ratio to the in-run ceiling or anchor) and
writes everything to ``benchmarks/results/latest.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks import ingest, latency, reconcile
from benchmarks.common import median, run_json

RESULTS = Path(__file__).parent / "results"


def machine() -> dict[str, Any]:
    model = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            model = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), model)
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "affinity": len(os.sched_getaffinity(0)),
        "cpu": model,
        "python": platform.python_version(),
        "load_avg_at_start": os.getloadavg(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def lifecycle(runs: int) -> dict[str, Any]:
    def series(*args: str) -> dict[str, Any]:
        results = [run_json([sys.executable, "-m", "benchmarks.lifecycle", *args]) for _ in range(runs)]
        return {
            "per_min": median([r["per_min"] for r in results]),
            "per_min_runs": [round(r["per_min"]) for r in results],
            "duplicates": sum(r["duplicate_creates"] for r in results),
            "runs": results,
        }

    return {
        "zero_latency": series("--concurrency", "8", "--outstanding", "100", "--warmup", "2", "--window", "6"),
        "slow_provider": series(
            "--create-latency",
            "1",
            "--delete-latency",
            "0.5",
            "--concurrency",
            "128",
            "--outstanding",
            "300",
            "--warmup",
            "3",
            "--window",
            "6",
        ),
    }


def table(r: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    rows: list[tuple[str, str, str, str]] = []
    ing = r["ingest"]
    ceiling = ing["bare"]["max_rate"]
    rows.append(
        (
            "1. ingestion ceiling: bare Starlette 202",
            "-",
            f"{ceiling:,.0f}/s, p99@2k/s {ing['bare']['at_target_p99_ms']:.1f} ms",
            "1.00",
        )
    )
    for scheme in ("github", "gitea", "forgejo"):
        x = ing[scheme]
        rows.append(
            (
                f"1. ingestion, {scheme} signatures",
                "≥ 2,000/s; p99 ≤ 10 ms @ 2,000/s",
                f"{x['max_rate']:,.0f}/s; p50 {x['at_target_p50_ms']:.1f} / p99 {x['at_target_p99_ms']:.1f} ms",
                f"{x['max_rate'] / ceiling:.2f} of ceiling",
            )
        )
    lat = r["latency"]
    rows.append(
        (
            "2. accepted → create, 1,000-job burst",
            "p99 ≤ 20 ms",
            f"p50 {lat['p50_ms']:.1f} / p99 {lat['p99_ms']:.1f} ms",
            f"{30_000 / max(lat['p99_ms'], 1e-3):,.0f}x under 30 s anchor",
        )
    )
    lc = r["lifecycle"]
    rows.append(
        (
            "3. life cycles, zero-latency provider",
            "≥ 3,000/min",
            f"{lc['zero_latency']['per_min']:,.0f}/min",
            f"{lc['zero_latency']['per_min'] / 200:.0f}x GARM's 200/min",
        )
    )
    rows.append(
        (
            "3. life cycles, 1 s create / 0.5 s delete",
            "≥ 3,000/min",
            f"{lc['slow_provider']['per_min']:,.0f}/min",
            f"{lc['slow_provider']['per_min'] / 200:.0f}x GARM",
        )
    )
    rc = r["reconcile"]
    ten = rc["10000"]
    rows.append(
        (
            "4. pass: 10k jobs / 5k inst / 200 pools",
            "≤ 20 ms",
            f"{ten['pass_ms']['p50']:.1f} ms (plan {ten['plan_ms']['p50']:.1f} ms)",
            "-",
        )
    )
    rows.append(
        (
            "4. webhook-woken pass (1 new job) at 10k",
            "-",
            f"{ten['incremental_ms']['p50']:.2f} ms (p90 {ten['incremental_ms']['p90']:.2f})",
            f"{ten['pass_ms']['p50'] / max(ten['incremental_ms']['p50'], 1e-3):.0f}x cheaper than full",
        )
    )
    rows.append(
        (
            "4. growth 1k → 10k → 50k jobs (pass)",
            "linear",
            " → ".join(f"{rc[k]['pass_ms']['p50']:.1f}" for k in ("1000", "10000", "50000")) + " ms",
            "-",
        )
    )
    rows.append(
        (
            "4. peak RSS at 10k (50k)",
            "≤ 150 MB",
            f"{ten['peak_rss_mb']:.0f} MB ({rc['50000']['peak_rss_mb']:.0f} MB)",
            f"{ten['rss_after_imports_mb']:.0f} MB after imports",
        )
    )
    rec = r["recovery"]
    rows.append(
        (
            "5. restart 500 queued / 300 live: rebuilt",
            "≤ 5 s",
            f"{rec['rebuilt_ms_p50']:.0f} ms (max {rec['rebuilt_ms_max']:.0f})",
            "-",
        )
    )
    rows.append(
        (
            "5. ... first new create; duplicates; leaks",
            "0 dup, 0 leak",
            f"{rec['first_create_ms_p50']:.0f} ms; {rec['duplicates']} dup; {rec['leaked']} leaked",
            "-",
        )
    )
    return rows


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] in ("storm", "sustained", "burst"):
        from benchmarks import e2e  # the end-to-end ones: python -m benchmarks storm --jobs 5000

        e2e.main()
        return
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer rounds (smoke test)")
    args = ap.parse_args()
    runs = 1 if args.quick else 3
    started = time.monotonic()
    results: dict[str, Any] = {"machine": machine()}
    steps: list[tuple[str, Callable[[], Any]]] = [
        ("ingest", lambda: ingest.run(rounds=runs, duration=2.0)),
        ("latency", lambda: latency.run(runs=2 if args.quick else 5)),
        ("lifecycle", lambda: lifecycle(runs)),
        ("reconcile", lambda: reconcile.run(passes=15)),
        ("recovery", lambda: run_json([sys.executable, "-m", "benchmarks.recovery", "--runs", str(runs + 2)])),
    ]
    for name, step in steps:
        t0 = time.monotonic()
        print(f"running {name} ...", file=sys.stderr, flush=True)
        results[name] = step()
        print(f"  {name}: {time.monotonic() - t0:.0f} s", file=sys.stderr, flush=True)
    results["elapsed_s"] = time.monotonic() - started
    rows = table(results)
    results["table"] = rows
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "latest.json").write_text(json.dumps(results, indent=2))
    widths = [max(len(row[i]) for row in [("benchmark", "target", "result", "ratio"), *rows]) for i in range(4)]
    for row in [("benchmark", "target", "result", "ratio"), *rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)))
    m = results["machine"]
    print(
        f"\n{m['nproc']} CPUs ({m['cpu']}), Python {m['python']}, load {m['load_avg_at_start'][0]:.2f} at start; "
        f"{results['elapsed_s']:.0f} s; JSON: {RESULTS / 'latest.json'}"
    )


if __name__ == "__main__":
    main()
