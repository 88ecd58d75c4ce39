"""Warm pools against fixed ``min_idle``, by replay (issue 14):
``python -m benchmarks.simulate [--trace bitcoin|shifted|office] [--quick]``.

On the trace, provider start 60 s, 7 days of warm-up left out of the report:

* (a) ``examples/simulate/min-idle-0.yaml``;
* (b) the smallest fixed ``min_idle`` whose p95 wait is <= 30 s, searched
  (bisection) both as one number for every pool and per pool (each pool's
  own p95; the pools share no cap here, so one replay per candidate answers
  for all of them) — ``examples/simulate/fixed.yaml`` holds the per-pool one
  found on the bitcoin trace;
* (c) ``examples/simulate/warm.yaml`` (``target_wait: 30s``).

Each replay runs in a subprocess of its own (``runner-scaler simulate``), so
its CPU time and peak RSS are its own. Writes
``benchmarks/results/simulate-<trace>.json`` and a PNG of (b) beside (c).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from benchmarks import traces

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples" / "simulate"
RESULTS = Path(__file__).parent / "results"
TARGET = 30.0


def trace_file(kind: str, tmp: Path) -> Path:
    if kind == "bitcoin":
        return traces.bitcoin_path()
    out = tmp / f"{kind}.csv"
    traces.main([kind, str(out)])
    return out


def replay(config: Path, trace: Path, tmp: Path, *, plot: Path | None = None) -> dict[str, Any]:
    out = tmp / f"{config.stem}-{time.monotonic_ns()}.json"
    cmd = [sys.executable, "-m", "scaler.cli", "simulate", "--config", str(config), "--trace", str(trace),
           "--provider-start", "60s", "--warmup", "7d", "--json", str(out)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env={**os.environ, "PYTHONHASHSEED": "0"})
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    rep: dict[str, Any] = json.loads(out.read_text())
    rep["process"] = {
        "wall_s": round(wall, 2),
        "cpu_s": round(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, 2),
        "peak_rss_mb": rep["replay"]["peak_rss_mb"],
    }
    return rep


def with_min_idle(base: Path, values: dict[str, int] | int, tmp: Path) -> Path:
    data = yaml.safe_load(base.read_text())
    for pool in data["pools"]:
        pool["min_idle"] = values if isinstance(values, int) else values[pool["name"]]
        pool.pop("warm", None)
    name = "uniform-" + str(values) if isinstance(values, int) else "per-pool"
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def search(trace: Path, tmp: Path, hi: int = 20) -> tuple[int, dict[str, int], dict[int, dict[str, Any]]]:
    """Smallest uniform N with overall p95 <= TARGET, and per pool (its own p95)."""
    base = EXAMPLES / "min-idle-0.yaml"
    seen: dict[int, dict[str, Any]] = {}

    def at(n: int) -> dict[str, Any]:
        if n not in seen:
            seen[n] = replay(with_min_idle(base, n, tmp), trace, tmp)
            print(f"  min_idle {n}: p95 {seen[n]['overall']['wait_p95_s']:g}s", file=sys.stderr)
        return seen[n]

    def smallest(ok: Any) -> int:
        lo, top = 0, hi
        if not ok(at(top)):
            return top
        while lo < top:
            mid = (lo + top) // 2
            if ok(at(mid)):
                top = mid
            else:
                lo = mid + 1
        return lo

    uniform = smallest(lambda r: r["overall"]["wait_p95_s"] <= TARGET)
    pools = list(at(0)["pools"])
    per_pool = {p: smallest(lambda r, p=p: r["pools"][p]["wait_p95_s"] <= TARGET) for p in pools}
    return uniform, per_pool, seen


def row(label: str, rep: dict[str, Any]) -> str:
    o, p = rep["overall"], rep["process"]
    return (f"| {label} | {o['wait_p95_s']:g} s | {o['jobs_over_target']} / {o['jobs']} | "
            f"{o['idle_instance_minutes']:,.0f} | {o['instances_created']:,} | "
            f"{rep['replay']['replay_seconds']:.1f} s ({p['cpu_s']:.1f} s CPU) | {p['peak_rss_mb']:.0f} MB |")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--trace", choices=["bitcoin", "shifted", "office"], default="bitcoin")
    ap.add_argument("--quick", action="store_true", help="no search: (b) is examples/simulate/fixed.yaml")
    args = ap.parse_args(argv)
    RESULTS.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        trace = trace_file(args.trace, tmp)
        results: dict[str, Any] = {"trace": args.trace}
        results["a"] = replay(EXAMPLES / "min-idle-0.yaml", trace, tmp)
        if args.quick:
            results["b_per_pool"] = replay(EXAMPLES / "fixed.yaml", trace, tmp)
        else:
            uniform, per_pool, seen = search(trace, tmp)
            results["search"] = {"uniform": uniform, "per_pool": per_pool,
                                 "p95_by_min_idle": {n: r["overall"]["wait_p95_s"] for n, r in sorted(seen.items())}}
            results["b_uniform"] = seen[uniform]
            results["b_per_pool"] = replay(with_min_idle(EXAMPLES / "min-idle-0.yaml", per_pool, tmp), trace, tmp)
        results["c"] = replay(EXAMPLES / "warm.yaml", trace, tmp)
        subprocess.run(
            [sys.executable, "-m", "scaler.cli", "simulate", "--compare", str(EXAMPLES / "fixed.yaml"),
             str(EXAMPLES / "warm.yaml"), "--trace", str(trace), "--provider-start", "60s", "--warmup", "7d",
             "--plot", str(RESULTS / f"simulate-{args.trace}.png")],
            check=True, stdout=subprocess.DEVNULL,
        )
    (RESULTS / f"simulate-{args.trace}.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"trace {args.trace}; provider start 60 s; report after 7 days of warm-up")
    print("| config | p95 wait | jobs over 30 s | idle instance-min | instances created | replay | peak RSS |")
    print("|---|---|---|---|---|---|---|")
    print(row("(a) min_idle 0", results["a"]))
    if "b_uniform" in results:
        print(row(f"(b) min_idle {results['search']['uniform']} on every pool", results["b_uniform"]))
    label = results.get("search", {}).get("per_pool", "fixed.yaml")
    print(row(f"(b') min_idle per pool {label}", results["b_per_pool"]))
    print(row("(c) warm target_wait 30s", results["c"]))
    c_idle = results["c"]["overall"]["idle_instance_minutes"]
    for key in ("b_uniform", "b_per_pool"):
        if key in results:
            ratio = c_idle / max(1.0, results[key]["overall"]["idle_instance_minutes"])
            print(f"(c) idle / {key} idle = {ratio:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
